//! Seeded CVRP instances generated the way Uchoa et al. (2017, "New benchmark instances for
//! the Capacitated Vehicle Routing Problem", EJOR 257) generated the X set: a 1000 x 1000
//! integer grid, TSPLIB-rounded Euclidean distances, and four attributes —
//! depot position, customer position, demand distribution and average route size `r`,
//! which fixes the capacity as `Q = ceil(r * sum(q) / n)`.
//!
//! The generator is deterministic for a [`GenSpec`] (ChaCha8 seeded with `spec.seed`); the
//! comparison with PyVRP keeps only the specs (`bench/pyvrp_compare.json`) and generates the
//! instances at run time.

use crate::error::{Error, Result};
use crate::instance::Instance;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Grid side: coordinates are integers in `0..=GRID`.
pub const GRID: i64 = 1000;
/// Decay of a cluster seed's attraction (Uchoa et al.: `exp(-d / 40)`).
const CLUSTER_DECAY: f64 = 40.0;

/// Where the depot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepotPos {
    /// Centre of the grid (500, 500).
    Central,
    /// Corner of the grid (0, 0).
    Eccentric,
    /// Uniform on the grid.
    Random,
}

/// How customers are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustomerPos {
    /// Uniform on the grid.
    Random,
    /// Around `U[3, 8]` uniform seeds with attraction `sum exp(-d / 40)`.
    Clustered,
    /// Half clustered, half random.
    RandomClustered,
}

/// Demand distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DemandDist {
    /// Every demand is 1.
    Unitary,
    /// `U[1, 10]`: small values, large variance.
    SmallLargeVar,
    /// `U[5, 10]`: small values, small variance.
    SmallSmallVar,
    /// `U[1, 100]`: large values, large variance.
    LargeLargeVar,
    /// `U[50, 100]`: large values, small variance.
    LargeSmallVar,
    /// `U[1, 50]` in odd quadrants (x and y on the same side of the centre), `U[51, 100]`
    /// in even ones.
    Quadrant,
    /// Many small, few large: 70–95 % of customers `U[1, 10]`, the rest `U[50, 100]`.
    ManySmallFewLarge,
}

/// One generated instance: the four X-set attributes, its size and its seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenSpec {
    /// Number of customers.
    pub n: usize,
    /// Depot position.
    pub depot: DepotPos,
    /// Customer position.
    pub customers: CustomerPos,
    /// Demand distribution.
    pub demand: DemandDist,
    /// Average route size (customers per route): `Q = ceil(r * sum(q) / n)`.
    pub r: f64,
    /// Random seed.
    pub seed: u64,
}

impl GenSpec {
    /// A name in the spirit of the X set: `G-n<nodes>-<depot><customers><demand>-r<r>-s<seed>`.
    pub fn name(&self) -> String {
        let depot = match self.depot {
            DepotPos::Central => "C",
            DepotPos::Eccentric => "E",
            DepotPos::Random => "R",
        };
        let cust = match self.customers {
            CustomerPos::Random => "R",
            CustomerPos::Clustered => "C",
            CustomerPos::RandomClustered => "RC",
        };
        let dem = match self.demand {
            DemandDist::Unitary => "U",
            DemandDist::SmallLargeVar => "1-10",
            DemandDist::SmallSmallVar => "5-10",
            DemandDist::LargeLargeVar => "1-100",
            DemandDist::LargeSmallVar => "50-100",
            DemandDist::Quadrant => "Q",
            DemandDist::ManySmallFewLarge => "SL",
        };
        format!(
            "G-n{}-{depot}{cust}{dem}-r{}-s{}",
            self.n + 1,
            self.r,
            self.seed
        )
    }
}

/// Capacity for average route size `r`: `ceil(r * total / n)` (at least the largest demand).
pub fn capacity_for(r: f64, total_demand: i64, n: usize, max_demand: i64) -> i64 {
    let q = (r * total_demand as f64 / n.max(1) as f64).ceil() as i64;
    q.max(max_demand).max(1)
}

/// Generates the instance described by `spec` (unlimited fleet, TSPLIB rounding).
pub fn generate(spec: &GenSpec) -> Result<Instance> {
    if spec.n == 0 || !(spec.r > 0.0 && spec.r.is_finite()) {
        return Err(Error::InvalidOptions(format!(
            "generator needs n >= 1 and a positive r, got n = {} and r = {}",
            spec.n, spec.r
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let depot = match spec.depot {
        DepotPos::Central => (GRID / 2, GRID / 2),
        DepotPos::Eccentric => (0, 0),
        DepotPos::Random => random_point(&mut rng),
    };
    let points = customer_points(spec, &mut rng);
    let demand: Vec<i64> = match spec.demand {
        DemandDist::ManySmallFewLarge => {
            let small_share = rng.random_range(0.70..=0.95);
            let small = ((small_share * spec.n as f64).round() as usize).min(spec.n);
            let mut is_small: Vec<bool> = (0..spec.n).map(|k| k < small).collect();
            is_small.shuffle(&mut rng);
            is_small
                .iter()
                .map(|&s| {
                    if s {
                        rng.random_range(1..=10)
                    } else {
                        rng.random_range(50..=100)
                    }
                })
                .collect()
        }
        dist => points
            .iter()
            .map(|&p| match dist {
                DemandDist::Unitary => 1,
                DemandDist::SmallLargeVar => rng.random_range(1..=10),
                DemandDist::SmallSmallVar => rng.random_range(5..=10),
                DemandDist::LargeLargeVar => rng.random_range(1..=100),
                DemandDist::LargeSmallVar => rng.random_range(50..=100),
                DemandDist::Quadrant => {
                    // Odd quadrants (both coordinates on the same side of the centre).
                    let odd = (p.0 > GRID / 2) == (p.1 > GRID / 2);
                    if odd {
                        rng.random_range(1..=50)
                    } else {
                        rng.random_range(51..=100)
                    }
                }
                DemandDist::ManySmallFewLarge => unreachable!("handled above"),
            })
            .collect(),
    };
    let total: i64 = demand.iter().sum();
    let max_demand = demand.iter().copied().max().unwrap_or(1);
    let capacity = capacity_for(spec.r, total, spec.n, max_demand);
    let coords: Vec<(f64, f64)> = std::iter::once(depot)
        .chain(points)
        .map(|(x, y)| (x as f64, y as f64))
        .collect();
    let demand: Vec<i64> = std::iter::once(0).chain(demand).collect();
    Instance::cvrp(&spec.name(), coords, demand, capacity, None)
}

fn random_point(rng: &mut ChaCha8Rng) -> (i64, i64) {
    (rng.random_range(0..=GRID), rng.random_range(0..=GRID))
}

fn customer_points(spec: &GenSpec, rng: &mut ChaCha8Rng) -> Vec<(i64, i64)> {
    let n = spec.n;
    let clustered = match spec.customers {
        CustomerPos::Random => 0,
        CustomerPos::Clustered => n,
        CustomerPos::RandomClustered => n / 2,
    };
    let mut points = Vec::with_capacity(n);
    if clustered > 0 {
        // The seeds are customers themselves (Uchoa et al.); the others are drawn by
        // rejection with acceptance probability sum_s exp(-d(s, p) / 40), capped at 1.
        let seeds = rng.random_range(3..=8usize).min(clustered);
        for _ in 0..seeds {
            points.push(random_point(rng));
        }
        let centres = points.clone();
        while points.len() < clustered {
            let p = random_point(rng);
            let attraction: f64 = centres
                .iter()
                .map(|s| {
                    let d = (((s.0 - p.0).pow(2) + (s.1 - p.1).pow(2)) as f64).sqrt();
                    (-d / CLUSTER_DECAY).exp()
                })
                .sum();
            if rng.random::<f64>() < attraction.min(1.0) {
                points.push(p);
            }
        }
    }
    while points.len() < n {
        points.push(random_point(rng));
    }
    points
}

/// The instance as CVRPLIB / VRPLIB text (`EUC_2D`, no vehicle count: unlimited fleet).
pub fn to_vrplib(inst: &Instance) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "NAME : {}", inst.name);
    let _ = writeln!(out, "COMMENT : generated like Uchoa et al. (2017)");
    let _ = writeln!(out, "TYPE : CVRP");
    let _ = writeln!(out, "DIMENSION : {}", inst.n());
    let _ = writeln!(out, "EDGE_WEIGHT_TYPE : EUC_2D");
    let _ = writeln!(out, "CAPACITY : {}", inst.capacity);
    let _ = writeln!(out, "NODE_COORD_SECTION");
    for (k, (x, y)) in inst.coords.iter().enumerate() {
        let _ = writeln!(out, "{} {} {}", k + 1, x, y);
    }
    let _ = writeln!(out, "DEMAND_SECTION");
    for (k, q) in inst.demand.iter().enumerate() {
        let _ = writeln!(out, "{} {q}", k + 1);
    }
    let _ = writeln!(out, "DEPOT_SECTION\n1\n-1\nEOF");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(n: usize, customers: CustomerPos, demand: DemandDist, r: f64) -> GenSpec {
        GenSpec {
            n,
            depot: DepotPos::Random,
            customers,
            demand,
            r,
            seed: 11,
        }
    }

    #[test]
    fn same_spec_same_instance_other_seed_other_instance() {
        let s = spec(150, CustomerPos::RandomClustered, DemandDist::Quadrant, 8.0);
        let (a, b) = (generate(&s).unwrap(), generate(&s).unwrap());
        assert_eq!(a.coords, b.coords);
        assert_eq!(a.demand, b.demand);
        assert_eq!(a.capacity, b.capacity);
        let c = generate(&GenSpec { seed: 12, ..s }).unwrap();
        assert_ne!(a.coords, c.coords);
    }

    #[test]
    fn x_set_properties_hold_for_every_attribute() {
        let custs = [
            CustomerPos::Random,
            CustomerPos::Clustered,
            CustomerPos::RandomClustered,
        ];
        let dists = [
            (DemandDist::Unitary, 1, 1),
            (DemandDist::SmallLargeVar, 1, 10),
            (DemandDist::SmallSmallVar, 5, 10),
            (DemandDist::LargeLargeVar, 1, 100),
            (DemandDist::LargeSmallVar, 50, 100),
            (DemandDist::Quadrant, 1, 100),
            (DemandDist::ManySmallFewLarge, 1, 100),
        ];
        for (k, &c) in custs.iter().enumerate() {
            for &(d, lo, hi) in &dists {
                let s = spec(120 + k, c, d, 3.0 + k as f64 * 5.5);
                let inst = generate(&s).unwrap();
                assert_eq!(inst.customers(), s.n);
                assert_eq!(inst.demand[0], 0);
                assert!(inst.demand[1..].iter().all(|&q| (lo..=hi).contains(&q)));
                assert!(inst.coords.iter().all(|&(x, y)| (0.0..=1000.0).contains(&x)
                    && (0.0..=1000.0).contains(&y)
                    && x.fract() == 0.0
                    && y.fract() == 0.0));
                let total = inst.total_demand();
                let from_r = (s.r * total as f64 / s.n as f64).ceil() as i64;
                let max_q = inst.demand.iter().copied().max().unwrap();
                assert_eq!(inst.capacity, from_r.max(max_q), "{}", s.name());
                if d == DemandDist::Unitary {
                    assert_eq!(total, s.n as i64);
                    assert_eq!(inst.capacity, s.r.ceil() as i64);
                }
                // r is the average route size: the capacity lower bound on routes is n / r.
                if inst.capacity == from_r {
                    let routes = total as f64 / inst.capacity as f64;
                    assert!(routes <= s.n as f64 / s.r + 1e-9);
                    assert!(routes >= s.n as f64 / s.r * 0.9 - 1.0, "{}", s.name());
                }
            }
        }
    }

    #[test]
    fn quadrant_and_many_small_few_large_demands_follow_their_rules() {
        let inst = generate(&spec(400, CustomerPos::Random, DemandDist::Quadrant, 10.0)).unwrap();
        for c in 1..inst.n() {
            let (x, y) = inst.coords[c];
            let odd = (x > 500.0) == (y > 500.0);
            let q = inst.demand[c];
            assert_eq!(odd, q <= 50, "customer {c} at ({x}, {y}) demand {q}");
        }
        let inst = generate(&spec(
            400,
            CustomerPos::Random,
            DemandDist::ManySmallFewLarge,
            10.0,
        ))
        .unwrap();
        let small = inst.demand[1..].iter().filter(|&&q| q <= 10).count();
        assert!((280..=380).contains(&small), "{small} small of 400");
        assert!(inst.demand[1..]
            .iter()
            .all(|&q| q <= 10 || (50..=100).contains(&q)));
    }

    #[test]
    fn clustered_customers_are_closer_together_than_random_ones() {
        let mean_nn = |c: CustomerPos| {
            let inst = generate(&spec(300, c, DemandDist::Unitary, 10.0)).unwrap();
            (1..inst.n())
                .map(|i| {
                    (1..inst.n())
                        .filter(|&j| j != i)
                        .map(|j| inst.d(i, j))
                        .fold(f64::INFINITY, f64::min)
                })
                .sum::<f64>()
                / 300.0
        };
        assert!(mean_nn(CustomerPos::Clustered) < 0.6 * mean_nn(CustomerPos::Random));
    }

    #[test]
    fn vrplib_text_reads_back_as_the_same_instance() {
        let inst = generate(&spec(
            60,
            CustomerPos::Clustered,
            DemandDist::LargeLargeVar,
            5.0,
        ))
        .unwrap();
        let dir = std::env::temp_dir().join(format!("mesh-vrp-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.vrp", inst.name));
        std::fs::write(&path, to_vrplib(&inst)).unwrap();
        let back = crate::parse::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.coords, inst.coords);
        assert_eq!(back.demand, inst.demand);
        assert_eq!(back.capacity, inst.capacity);
        assert_eq!(back.fleet, None);
        assert_eq!(back.d(3, 7), inst.d(3, 7));
    }
}
