//! Iterated local search for large capacity-only instances (PyVRP 0.14's design, our code):
//! each step ruins a few routes around a random customer (`LocalSearch::ruin_recreate`),
//! re-optimises only around what changed (`LocalSearch::run_focused`), repairs an
//! overloaded result with a 10x penalty, and keeps the candidate when it is feasible and
//! better than the current solution or within a threshold of the best (record-to-record,
//! the threshold shrinking linearly to zero over the budget). A rejected step is undone
//! route by route, so a step costs time in proportion to what it touched, not to `n`.
//!
//! At 500+ customers a generation of the genetic search (a whole-solution education) takes
//! ~0.035 s of CPU (at ~0.9 of a core); an ILS step ~7 ms (measured: 135 steps/s vs 25
//! generations/s over 600-950 customers). Measured on 100-500 customers too, HGS for 20 %
//! of the time then the ILS beat HGS alone on all six benchmark instances (NOTES-issue16.md),
//! hence the threshold of 100 customers; smaller instances (set A) keep the pure HGS.

use crate::hgs::Limit;
use crate::instance::Instance;
use crate::ls::{neighbours, LocalSearch, Penalties};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Customers from which the solver runs HGS followed by the ILS (capacity-only).
pub(crate) const ILS_MIN_CUSTOMERS: usize = 100;
/// Share of the budget the genetic search gets before the ILS takes over.
pub(crate) const HGS_SHARE: f64 = 0.2;
const GRANULAR: usize = 20;
/// Nearest customers listed per customer for ruin and reinsertion.
const NEAR: usize = 40;
/// Customers removed per step: uniform in this range.
const RUIN_MIN: usize = 5;
const RUIN_MAX: usize = 25;
/// Initial acceptance threshold, relative to the best distance.
const THRESHOLD: f64 = 0.002;
/// Steps between penalty updates, and the target share of feasible search results.
const PENALTY_WINDOW: usize = 100;
const TARGET_FEASIBLE: f64 = 0.5;

/// What the ILS found and the work it did.
pub(crate) struct IlsOutcome {
    /// Best feasible routes (one entry per route slot), if any step or the start was feasible.
    pub best: Option<Vec<Vec<usize>>>,
    pub steps: u64,
    pub ls_evals: u64,
    pub ls_moves: u64,
}

/// Nearest customers of every customer, in increasing distance.
fn nearest(inst: &Instance, k: usize) -> Vec<Vec<usize>> {
    let n = inst.n();
    let mut out = vec![Vec::new(); n];
    for (i, list) in out.iter_mut().enumerate().skip(1) {
        let mut cand: Vec<usize> = (1..n).filter(|&j| j != i).collect();
        cand.sort_by(|&a, &b| inst.d(i, a).total_cmp(&inst.d(i, b)).then(a.cmp(&b)));
        cand.truncate(k);
        *list = cand;
    }
    out
}

/// Runs the ILS from the feasible routes `start` (customers only) until `limit`; every step
/// counts as one iteration.
pub(crate) fn ils(
    inst: &Instance,
    start: &[Vec<usize>],
    slots: usize,
    mut pen: Penalties,
    max_penalty: f64,
    rng: &mut ChaCha8Rng,
    limit: &Limit,
) -> IlsOutcome {
    let t0 = Instant::now();
    let neigh = neighbours(inst, GRANULAR);
    let near = nearest(inst, NEAR);
    let mut ls = LocalSearch::new(inst, &neigh);
    let mut routes = start.to_vec();
    routes.resize(slots.max(routes.len()), Vec::new());
    ls.load(&routes, pen);
    ls.run(rng, || false);
    if !ls.load_feasible() {
        ls.load(&routes, pen);
    }
    let mut cur = ls.routes();
    let mut cur_cost = ls.distance();
    let mut best = ls.load_feasible().then(|| cur.clone());
    let mut best_cost = if best.is_some() {
        cur_cost
    } else {
        f64::INFINITY
    };
    ls.mark_all_tested();
    let mut steps = 0u64;
    let mut window = (0usize, 0usize);
    let progress = |steps: u64| -> f64 {
        match (limit.deadline, limit.iterations) {
            (Some(d), _) => {
                let total = d.saturating_duration_since(t0).as_secs_f64();
                if total <= 0.0 {
                    1.0
                } else {
                    (t0.elapsed().as_secs_f64() / total).min(1.0)
                }
            }
            (None, Some(m)) => steps as f64 / m.max(1) as f64,
            (None, None) => 0.0,
        }
    };
    while !limit.reached(steps) {
        steps += 1;
        let stamp = ls.stamp();
        let k = rng.random_range(RUIN_MIN..=RUIN_MAX);
        ls.ruin_recreate(rng, &near, k);
        ls.run_focused(rng);
        let mut feasible = ls.load_feasible();
        window.0 += 1;
        window.1 += usize::from(feasible);
        if !feasible {
            ls.set_penalties(Penalties {
                cap: pen.cap * 10.0,
                tw: pen.tw,
            });
            ls.touch_overloaded();
            ls.run_focused(rng);
            ls.set_penalties(pen);
            feasible = ls.load_feasible();
        }
        let cost = ls.distance();
        let threshold = best_cost * (1.0 + THRESHOLD * (1.0 - progress(steps)));
        let changed = ls.changed_since(stamp);
        if feasible && (cost < cur_cost - 1e-9 || cost < threshold) {
            for &r in &changed {
                cur[r] = ls.route(r).to_vec();
            }
            cur_cost = cost;
            if cost < best_cost - 1e-9 {
                best_cost = cost;
                best = Some(cur.clone());
            }
        } else {
            for &r in &changed {
                ls.set_route(r, &cur[r]);
            }
        }
        ls.mark_all_tested();
        if window.0 >= PENALTY_WINDOW {
            let frac = window.1 as f64 / window.0 as f64;
            let cap = if frac < TARGET_FEASIBLE - 0.1 {
                (pen.cap * 1.2).min(max_penalty)
            } else if frac > TARGET_FEASIBLE + 0.1 {
                (pen.cap * 0.85).max(0.1)
            } else {
                pen.cap
            };
            if cap != pen.cap {
                pen.cap = cap;
                ls.set_penalties(pen);
            }
            window = (0, 0);
        }
    }
    debug_assert!(ls.penalised_cost().is_finite());
    IlsOutcome {
        best,
        steps,
        ls_evals: ls.evals,
        ls_moves: ls.moves,
    }
}
