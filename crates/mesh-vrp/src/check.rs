//! The independent feasibility checker. It simulates each route from scratch (no shared
//! code with the search's incremental evaluation) and lists every violation.

use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::solution::Solution;
use serde::Serialize;

const EPS: f64 = 1e-6;

/// What the checker measured on a feasible solution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Checked {
    /// Total distance (instance convention, unrounded sum).
    pub distance: f64,
    /// Non-empty routes.
    pub vehicles: usize,
}

/// Checks every constraint: each customer exactly once, capacity, time windows (service may
/// start no later than the due time; waiting is allowed), depot return time, route duration
/// (with the best departure time) and fleet size.
pub fn check(inst: &Instance, sol: &Solution) -> Result<Checked> {
    check_serving(inst, sol, &vec![true; inst.n()])
}

/// Like [`check`], but only customers `c` with `required[c]` must be served (exactly once);
/// the others must not appear. Used for re-planned solutions with held or cancelled stops.
pub fn check_serving(inst: &Instance, sol: &Solution, required: &[bool]) -> Result<Checked> {
    let n = inst.n();
    let mut violations = Vec::new();
    let mut seen = vec![0usize; n];
    for (r, route) in sol.routes.iter().enumerate() {
        if route.is_empty() {
            continue;
        }
        let mut load = 0i64;
        let mut time = inst.ready[0];
        let mut prev = 0usize;
        let mut wait_total = 0.0f64;
        let mut slack = f64::INFINITY; // how late the vehicle could leave the depot
        for &c in route {
            if c == 0 || c >= n {
                violations.push(format!("route {}: node {c} is not a customer", r + 1));
                continue;
            }
            seen[c] += 1;
            load += inst.demand[c];
            let arrive = time + inst.d(prev, c);
            if arrive > inst.due[c] + EPS {
                violations.push(format!(
                    "route {}: customer {c} reached at {arrive:.2}, after its due time {}",
                    r + 1,
                    inst.due[c]
                ));
            }
            slack = slack.min(inst.due[c] - arrive + wait_total);
            let start = arrive.max(inst.ready[c]);
            wait_total += start - arrive;
            time = start + inst.service[c];
            prev = c;
        }
        let back = time + inst.d(prev, 0);
        if back > inst.due[0] + EPS {
            violations.push(format!(
                "route {}: returns at {back:.2}, after the depot closes at {}",
                r + 1,
                inst.due[0]
            ));
        }
        slack = slack.min(inst.due[0] - back + wait_total);
        if load > inst.capacity {
            violations.push(format!(
                "route {}: load {load} exceeds capacity {}",
                r + 1,
                inst.capacity
            ));
        }
        if let Some(limit) = inst.max_duration {
            let duration = back - inst.ready[0] - slack.max(0.0).min(wait_total);
            if duration > limit + EPS {
                violations.push(format!(
                    "route {}: duration {duration:.2} exceeds {limit}",
                    r + 1
                ));
            }
        }
    }
    for (c, &k) in seen.iter().enumerate().skip(1) {
        let want = usize::from(required.get(c).copied().unwrap_or(true));
        if k != want {
            violations.push(format!("customer {c} visited {k} times, expected {want}"));
        }
    }
    let vehicles = sol.vehicles();
    if let Some(k) = inst.fleet {
        if vehicles > k {
            violations.push(format!("{vehicles} routes but the fleet has {k} vehicles"));
        }
    }
    if violations.is_empty() {
        Ok(Checked {
            distance: sol.distance(inst),
            vehicles,
        })
    } else {
        Err(Error::Infeasible {
            name: inst.name.clone(),
            violations,
        })
    }
}
