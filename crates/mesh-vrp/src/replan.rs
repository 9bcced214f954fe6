//! Incremental re-planning: start from the current plan, drop cancelled and held stops,
//! regret-insert new stops, then a short local search that never breaks capacity or time
//! windows and keeps stops on their vehicle unless moving them gains a lot.

use crate::check::check_serving;
use crate::construct::regret_insert;
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::ls::{LocalSearch, Penalties, Restrictions};
use crate::solution::Solution;
use crate::solver::Budget;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What changed since the plan was made (customer indices of the instance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// New stops to serve (not in the plan yet).
    pub added: Vec<usize>,
    /// Stops that will never be served.
    pub cancelled: Vec<usize>,
    /// Stops kept out of this plan for now (e.g. payment on hold).
    pub held: Vec<usize>,
}

/// Re-planning options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReplanOptions {
    /// Bound on the local search (it stops earlier at a local optimum).
    pub budget: Budget,
    /// Cost charged for each planned stop that ends up on another vehicle. `None` means 10% of
    /// the plan's mean route distance. When `Changes::added` is empty the penalty is infinite:
    /// removing stops never moves the others between vehicles.
    pub reassign_penalty: Option<f64>,
    /// Seed for the local search's move order.
    pub seed: u64,
}

impl Default for ReplanOptions {
    fn default() -> Self {
        Self {
            budget: Budget::time(Duration::from_millis(200)),
            reassign_penalty: None,
            seed: 1,
        }
    }
}

/// The new plan and what happened to each changed stop.
#[derive(Debug, Clone, Serialize)]
pub struct ReplanOutcome {
    /// Routes; index `r` is the same vehicle as in the input plan (routes may be empty).
    pub solution: Solution,
    /// New stops that fit nowhere without breaking a constraint.
    pub unassigned: Vec<usize>,
    /// Planned stops that changed vehicle.
    pub moved: Vec<usize>,
    /// Total distance of the new plan.
    pub distance: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Re-plans `plan` for `changes`. Every stop of the plan that is not cancelled or held stays
/// served; new stops are inserted where they fit; constraints are never violated.
pub fn replan(
    inst: &Instance,
    plan: &Solution,
    changes: &Changes,
    opts: &ReplanOptions,
) -> Result<ReplanOutcome> {
    let start = Instant::now();
    let n = inst.n();
    let route_of = plan.route_of(n);
    for &c in changes
        .added
        .iter()
        .chain(&changes.cancelled)
        .chain(&changes.held)
    {
        if c == 0 || c >= n {
            return Err(Error::InvalidChange(format!(
                "stop {c} is not a customer (1..{})",
                n - 1
            )));
        }
    }
    if let Some(&c) = changes.added.iter().find(|&&c| route_of[c].is_some()) {
        return Err(Error::InvalidChange(format!(
            "added stop {c} is already planned"
        )));
    }
    let mut removed = vec![false; n];
    for &c in changes.cancelled.iter().chain(&changes.held) {
        if route_of[c].is_none() && !changes.added.contains(&c) {
            return Err(Error::InvalidChange(format!("stop {c} is not in the plan")));
        }
        removed[c] = true;
    }
    let mut routes: Vec<Vec<usize>> = plan
        .routes
        .iter()
        .map(|r| r.iter().copied().filter(|&c| !removed[c]).collect())
        .collect();
    let added: Vec<usize> = changes
        .added
        .iter()
        .copied()
        .filter(|&c| !removed[c])
        .collect();
    let slots = match inst.fleet {
        Some(k) => k.max(routes.len()),
        None => routes.len() + added.len(),
    };
    routes.resize(slots, Vec::new());
    let mut anchor = vec![usize::MAX; n];
    for (r, route) in routes.iter().enumerate() {
        for &c in route {
            anchor[c] = r;
        }
    }
    let pen = Penalties { cap: 1.0, tw: 1.0 };
    let unassigned = regret_insert(inst, &mut routes, &added, true, pen);

    let used = plan.vehicles().max(1) as f64;
    let reassign_penalty = if added.is_empty() {
        f64::INFINITY
    } else {
        opts.reassign_penalty
            .unwrap_or_else(|| 0.1 * plan.distance(inst) / used)
    };
    let neigh = crate::ls::neighbours(inst, 20);
    let mut ls = LocalSearch::new(inst, &neigh);
    ls.set_restrictions(Some(Restrictions {
        anchor: anchor.clone(),
        reassign_penalty,
        hard: true,
    }));
    ls.load(&routes, pen);
    let deadline = opts.budget.time.map(|t| start + t);
    let max_passes = opts.budget.iterations.unwrap_or(u64::MAX);
    let mut passes = 0u64;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    ls.run(&mut rng, || {
        passes += 1;
        passes >= max_passes || deadline.is_some_and(|d| Instant::now() >= d)
    });
    let routes = ls.routes();

    let mut required = vec![true; n];
    for c in 1..n {
        let planned = route_of[c].is_some() || added.contains(&c);
        required[c] = planned && !removed[c] && !unassigned.contains(&c);
    }
    let solution = Solution::new(routes);
    let checked = check_serving(inst, &solution, &required)?;
    let new_route_of = solution.route_of(n);
    let moved = (1..n)
        .filter(|&c| anchor[c] != usize::MAX && new_route_of[c] != Some(anchor[c]))
        .collect();
    Ok(ReplanOutcome {
        solution,
        unassigned,
        moved,
        distance: checked.distance,
        seconds: start.elapsed().as_secs_f64(),
    })
}
