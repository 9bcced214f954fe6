//! A solution (routes of customer indices) and the CVRPLIB `.sol` writer.

use crate::instance::Instance;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A set of routes. Each route lists customer indices (1..n) in visiting order; the depot
/// (0) is implicit at both ends. Route order is the vehicle order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Solution {
    /// Routes, possibly empty (an empty route is an unused vehicle).
    pub routes: Vec<Vec<usize>>,
}

impl Solution {
    /// Wraps routes.
    pub fn new(routes: Vec<Vec<usize>>) -> Self {
        Self { routes }
    }

    /// Number of non-empty routes.
    pub fn vehicles(&self) -> usize {
        self.routes.iter().filter(|r| !r.is_empty()).count()
    }

    /// Total distance under the instance's convention (unrounded sum).
    pub fn distance(&self, inst: &Instance) -> f64 {
        inst.routes_distance(&self.routes)
    }

    /// The route index serving each customer (`None` when unserved); index 0 unused.
    pub fn route_of(&self, n: usize) -> Vec<Option<usize>> {
        let mut of = vec![None; n];
        for (r, route) in self.routes.iter().enumerate() {
            for &c in route {
                if c < n {
                    of[c] = Some(r);
                }
            }
        }
        of
    }

    /// CVRPLIB `.sol` text: `Route #k: ...` for each non-empty route, then `Cost X` with the
    /// precision of the instance's convention.
    pub fn to_sol(&self, inst: &Instance) -> String {
        let mut out = String::new();
        for (k, route) in self.routes.iter().filter(|r| !r.is_empty()).enumerate() {
            let _ = write!(out, "Route #{}:", k + 1);
            for c in route {
                let _ = write!(out, " {c}");
            }
            out.push('\n');
        }
        let cost = inst.round_cost(self.distance(inst));
        let _ = writeln!(out, "Cost {cost:.*}", inst.convention.decimals());
        out
    }
}
