//! The problem model: nodes (depot at index 0), distances under the instance's own rounding
//! convention, capacity, time windows, service times, fleet and route-duration limits.

use crate::error::{Error, Result};
use serde::Serialize;

/// How travel distances (= travel times) are derived from coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DistanceConvention {
    /// TSPLIB `EUC_2D`: Euclidean distance rounded to the nearest integer (`nint`).
    TsplibRounded,
    /// DIMACS VRPTW challenge: Euclidean distance truncated to one decimal.
    DimacsTruncated,
    /// Solomon literature convention: double precision Euclidean distance.
    Exact,
}

impl DistanceConvention {
    /// Distance between two points under this convention.
    pub fn distance(self, a: (f64, f64), b: (f64, f64)) -> f64 {
        let d = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
        match self {
            Self::TsplibRounded => (d + 0.5).floor(),
            // The tiny epsilon protects exact tenths (e.g. 5.0) from float noise below them.
            Self::DimacsTruncated => (d * 10.0 + 1e-9).floor() / 10.0,
            Self::Exact => d,
        }
    }

    /// Decimals worth printing for costs under this convention.
    pub fn decimals(self) -> usize {
        match self {
            Self::TsplibRounded => 0,
            Self::DimacsTruncated => 1,
            Self::Exact => 2,
        }
    }
}

/// What "better" means when comparing feasible solutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Objective {
    /// Total distance only (CVRPLIB, DIMACS).
    Distance,
    /// Fewest vehicles first, then distance (Solomon literature convention).
    VehiclesThenDistance,
}

/// A best known solution value published with (or beside) an instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BestKnown {
    /// Best known cost (distance).
    pub cost: f64,
    /// Number of vehicles of that solution, when known.
    pub vehicles: Option<usize>,
}

/// One stop of a custom instance (see [`Instance::from_stops`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Stop {
    /// Planar coordinates (any unit; travel time = Euclidean distance).
    pub x: f64,
    /// Planar coordinates.
    pub y: f64,
    /// Demand (0 for the depot).
    pub demand: i64,
    /// Earliest service start.
    pub ready: f64,
    /// Latest service start (for the depot: latest return).
    pub due: f64,
    /// Service duration.
    pub service: f64,
}

/// A routing problem. Node 0 is the depot; nodes `1..n` are customers.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Instance name.
    pub name: String,
    /// Distance convention used to build `dist`.
    pub convention: DistanceConvention,
    /// Objective used to rank feasible solutions.
    pub objective: Objective,
    /// Coordinates per node.
    pub coords: Vec<(f64, f64)>,
    /// Demand per node (0 for the depot).
    pub demand: Vec<i64>,
    /// Vehicle capacity.
    pub capacity: i64,
    /// Earliest service start per node.
    pub ready: Vec<f64>,
    /// Latest service start per node (depot: latest return).
    pub due: Vec<f64>,
    /// Service time per node.
    pub service: Vec<f64>,
    /// Maximum duration of a route (depot to depot, service included), if any.
    pub max_duration: Option<f64>,
    /// Maximum number of vehicles, `None` for unlimited.
    pub fleet: Option<usize>,
    /// Best known solution from the file's COMMENT or a `.sol` beside it.
    pub best_known: Option<BestKnown>,
    /// Original node label in the source file per internal index.
    pub labels: Vec<usize>,
    dist: Vec<f64>,
    has_time_windows: bool,
}

impl Instance {
    /// Builds an instance and its distance matrix; validates the data.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        name: String,
        convention: DistanceConvention,
        coords: Vec<(f64, f64)>,
        demand: Vec<i64>,
        capacity: i64,
        windows: Option<(Vec<f64>, Vec<f64>)>,
        service: Vec<f64>,
        fleet: Option<usize>,
    ) -> Result<Self> {
        let n = coords.len();
        let invalid = |message: String| Error::InvalidInstance {
            name: name.clone(),
            message,
        };
        if n < 2 {
            return Err(invalid(format!(
                "need a depot and a customer, got {n} nodes"
            )));
        }
        if demand.len() != n || service.len() != n {
            return Err(invalid(
                "demand/service sections do not cover every node".into(),
            ));
        }
        if capacity <= 0 {
            return Err(invalid(format!(
                "capacity must be positive, got {capacity}"
            )));
        }
        if let Some(c) = (1..n).find(|&i| demand[i] > capacity || demand[i] < 0) {
            return Err(invalid(format!(
                "customer {c} has demand {} outside 0..={capacity}",
                demand[c]
            )));
        }
        let has_time_windows = windows.is_some();
        let (ready, due) = windows.unwrap_or_else(|| (vec![0.0; n], vec![f64::INFINITY; n]));
        if ready.len() != n || due.len() != n {
            return Err(invalid(
                "time window section does not cover every node".into(),
            ));
        }
        let mut dist = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                dist[i * n + j] = convention.distance(coords[i], coords[j]);
            }
        }
        Ok(Self {
            name,
            convention,
            objective: Objective::Distance,
            coords,
            demand,
            capacity,
            ready,
            due,
            service,
            max_duration: None,
            fleet,
            best_known: None,
            labels: (0..n).collect(),
            dist,
            has_time_windows,
        })
    }

    /// A capacitated instance without time windows: `coords[0]` is the depot, distances are
    /// TSPLIB-rounded (`nint`) Euclidean, `demand[0]` must be 0.
    pub fn cvrp(
        name: &str,
        coords: Vec<(f64, f64)>,
        demand: Vec<i64>,
        capacity: i64,
        fleet: Option<usize>,
    ) -> Result<Self> {
        let n = coords.len();
        Self::build(
            name.to_string(),
            DistanceConvention::TsplibRounded,
            coords,
            demand,
            capacity,
            None,
            vec![0.0; n],
            fleet,
        )
    }

    /// A custom instance for services: `stops[0]` is the depot; exact Euclidean travel times.
    pub fn from_stops(
        name: &str,
        stops: &[Stop],
        capacity: i64,
        fleet: Option<usize>,
        max_duration: Option<f64>,
    ) -> Result<Self> {
        let windows = (
            stops.iter().map(|s| s.ready).collect(),
            stops.iter().map(|s| s.due).collect(),
        );
        let mut inst = Self::build(
            name.to_string(),
            DistanceConvention::Exact,
            stops.iter().map(|s| (s.x, s.y)).collect(),
            stops.iter().map(|s| s.demand).collect(),
            capacity,
            Some(windows),
            stops.iter().map(|s| s.service).collect(),
            fleet,
        )?;
        inst.max_duration = max_duration;
        Ok(inst)
    }

    /// Number of nodes including the depot.
    #[inline]
    pub fn n(&self) -> usize {
        self.coords.len()
    }

    /// Number of customers.
    #[inline]
    pub fn customers(&self) -> usize {
        self.coords.len() - 1
    }

    /// Travel distance (= time) from `i` to `j`.
    #[inline]
    pub fn d(&self, i: usize, j: usize) -> f64 {
        self.dist[i * self.coords.len() + j]
    }

    /// Whether time windows / route durations must be evaluated at all.
    #[inline]
    pub fn timed(&self) -> bool {
        self.has_time_windows || self.max_duration.is_some()
    }

    /// Whether the instance has time windows.
    pub fn has_time_windows(&self) -> bool {
        self.has_time_windows
    }

    /// Total customer demand.
    pub fn total_demand(&self) -> i64 {
        self.demand.iter().sum()
    }

    /// Lower bound on the number of vehicles from capacity alone.
    pub fn min_vehicles(&self) -> usize {
        let q = self.capacity;
        ((self.total_demand() + q - 1) / q).max(1) as usize
    }

    /// Route slots the search may use: the fleet limit, or a generous bound when unlimited.
    pub fn route_slots(&self) -> usize {
        let bound = (1.3 * self.total_demand() as f64 / self.capacity as f64).ceil() as usize + 3;
        match self.fleet {
            Some(k) => k,
            None if self.has_time_windows => self.customers(),
            None => bound.min(self.customers()),
        }
    }

    /// Total distance of a set of routes (customer indices, depot implicit at both ends).
    pub fn routes_distance(&self, routes: &[Vec<usize>]) -> f64 {
        routes
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| {
                let mut prev = 0;
                let mut total = 0.0;
                for &c in r.iter().chain(std::iter::once(&0)) {
                    total += self.d(prev, c);
                    prev = c;
                }
                total
            })
            .sum()
    }

    /// Rounds a cost to the precision of the instance's convention.
    pub fn round_cost(&self, cost: f64) -> f64 {
        let f = 10f64.powi(self.convention.decimals() as i32);
        (cost * f).round() / f
    }
}
