//! The public solve entry point: budgets, seeds, threads and the route-minimisation phase
//! for the vehicles-then-distance objective.

use crate::check::check;
use crate::construct::regret_insert;
use crate::error::{Error, Result};
use crate::hgs::{better, key, Hgs, Limit};
use crate::ils::{ils, HGS_SHARE, ILS_MIN_CUSTOMERS};
use crate::instance::{Instance, Objective};
use crate::ls::Penalties;
use crate::solution::Solution;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long to search. With only `iterations` the result is a pure function of the seed;
/// with `time`, the search is identical for a seed up to the point the clock stops it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    /// Wall-clock limit.
    pub time: Option<Duration>,
    /// Limit on iterations, summed over all phases: genetic generations (offspring), and on
    /// capacity-only instances of 100+ customers also the steps of the iterated local search
    /// that follows the genetic phase (which gets 20 % of the budget).
    pub iterations: Option<u64>,
}

impl Budget {
    /// A wall-clock budget.
    pub fn time(d: Duration) -> Self {
        Self {
            time: Some(d),
            iterations: None,
        }
    }
    /// A deterministic iteration budget (generations, plus ILS steps on large instances).
    pub fn iterations(n: u64) -> Self {
        Self {
            time: None,
            iterations: Some(n),
        }
    }
}

/// Solver options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SolveOptions {
    /// Random seed; thread `t` uses `seed + t`.
    pub seed: u64,
    /// Search budget (per thread; threads run concurrently).
    pub budget: Budget,
    /// Independent searches run in parallel; the best result is kept.
    pub threads: usize,
}

impl Default for SolveOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            budget: Budget::time(Duration::from_secs(5)),
            threads: 1,
        }
    }
}

/// A checked solution and how it was found.
#[derive(Debug, Clone, Serialize)]
pub struct SolveResult {
    /// The routes (only non-empty ones).
    pub solution: Solution,
    /// Total distance (instance convention).
    pub distance: f64,
    /// Routes used.
    pub vehicles: usize,
    /// Iterations run, summed over threads: genetic generations plus, on capacity-only
    /// instances of 100+ customers, iterated-local-search steps.
    pub iterations: u64,
    /// Local-search move evaluations (candidate moves priced), summed over threads.
    pub ls_evaluations: u64,
    /// Local-search moves applied, summed over threads.
    pub ls_moves: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Solves `inst` and verifies the answer with the independent checker.
pub fn solve(inst: &Instance, opts: &SolveOptions) -> Result<SolveResult> {
    if opts.budget.time.is_none() && opts.budget.iterations.is_none() {
        return Err(Error::InvalidOptions(
            "the budget needs a time or an iteration limit".into(),
        ));
    }
    let start = Instant::now();
    let threads = opts.threads.max(1);
    let results: Vec<(Option<Vec<Vec<usize>>>, Work)> = if threads == 1 {
        vec![solve_one(inst, opts.seed, &opts.budget, start)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        solve_one(inst, opts.seed.wrapping_add(t as u64), &opts.budget, start)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or((None, Work::default())))
                .collect()
        })
    };
    let work = results.iter().fold(Work::default(), |acc, r| acc.plus(r.1));
    let mut best: Option<(Solution, (usize, f64))> = None;
    for routes in results.into_iter().filter_map(|r| r.0) {
        let sol = Solution::new(routes.into_iter().filter(|r| !r.is_empty()).collect());
        let k = sol_key(inst, &sol);
        if best.as_ref().is_none_or(|(_, bk)| better(k, *bk)) {
            best = Some((sol, k));
        }
    }
    let (solution, _) = best.ok_or_else(|| Error::NoFeasibleSolution {
        name: inst.name.clone(),
    })?;
    let checked = check(inst, &solution)?;
    Ok(SolveResult {
        distance: checked.distance,
        vehicles: checked.vehicles,
        solution,
        iterations: work.iterations,
        ls_evaluations: work.ls_evals,
        ls_moves: work.ls_moves,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn sol_key(inst: &Instance, sol: &Solution) -> (usize, f64) {
    match inst.objective {
        Objective::Distance => (0, sol.distance(inst)),
        Objective::VehiclesThenDistance => (sol.vehicles(), sol.distance(inst)),
    }
}

/// Minimum time-warp penalty weight in route elimination attempts.
const ELIMINATION_TW_PENALTY: f64 = 10.0;

/// Search effort of one thread: generations and local-search work.
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    iterations: u64,
    ls_evals: u64,
    ls_moves: u64,
}

impl Work {
    fn plus(self, o: Work) -> Work {
        Work {
            iterations: self.iterations + o.iterations,
            ls_evals: self.ls_evals + o.ls_evals,
            ls_moves: self.ls_moves + o.ls_moves,
        }
    }

    fn of(hgs: &Hgs) -> Work {
        let (ls_evals, ls_moves) = hgs.ls_work();
        Work {
            iterations: hgs.iterations,
            ls_evals,
            ls_moves,
        }
    }
}

/// A share of what is left of the budget.
struct Clock {
    start: Instant,
    budget: Budget,
    used_iterations: u64,
    work: Work,
}

impl Clock {
    fn phase(&self, share: f64) -> Limit {
        let deadline = self.budget.time.map(|t| {
            let end = self.start + t;
            let now = Instant::now();
            if now >= end {
                now
            } else {
                now + (end - now).mul_f64(share)
            }
        });
        let iterations = self
            .budget
            .iterations
            .map(|m| ((m.saturating_sub(self.used_iterations)) as f64 * share).ceil() as u64);
        Limit {
            deadline,
            iterations,
        }
    }
}

fn solve_one(
    inst: &Instance,
    seed: u64,
    budget: &Budget,
    start: Instant,
) -> (Option<Vec<Vec<usize>>>, Work) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut clock = Clock {
        start,
        budget: *budget,
        used_iterations: 0,
        work: Work::default(),
    };
    let slots = inst.route_slots();
    if inst.objective == Objective::Distance {
        let large = inst.customers() >= ILS_MIN_CUSTOMERS && !inst.timed();
        let mut hgs = Hgs::new(inst, slots);
        hgs.run(
            &[],
            &mut rng,
            &clock.phase(if large { HGS_SHARE } else { 1.0 }),
        );
        let work = Work::of(&hgs);
        if !large {
            return (hgs.best.map(|b| b.routes), work);
        }
        // Larger instances: a generation educates a whole solution; the ILS improves the
        // genetic search's best by small local steps, many more per second.
        clock.used_iterations += hgs.iterations;
        clock.work = work;
        let Some(start) = hgs.best.take() else {
            hgs.run(&[], &mut rng, &clock.phase(1.0));
            let work = Work::of(&hgs);
            return (hgs.best.map(|b| b.routes), work);
        };
        let out = ils(
            inst,
            &start.routes,
            slots,
            hgs.penalties(),
            hgs.max_penalty(),
            &mut rng,
            &clock.phase(1.0),
        );
        let work = clock.work.plus(Work {
            iterations: out.steps,
            ls_evals: out.ls_evals,
            ls_moves: out.ls_moves,
        });
        let best = match out.best {
            Some(b) if inst.routes_distance(&b) < start.dist - 1e-9 => b,
            _ => start.routes,
        };
        return (Some(best), work);
    }
    // Vehicles first: a distance phase, then repeated route elimination, then polishing.
    let mut hgs = Hgs::new(inst, slots);
    hgs.run(&[], &mut rng, &clock.phase(0.15));
    clock.used_iterations += hgs.iterations;
    clock.work = clock.work.plus(Work::of(&hgs));
    let mut pen = hgs.penalties();
    let Some(mut best) = hgs.best.take() else {
        return (None, clock.work);
    };
    let min_vehicles = inst.min_vehicles();
    while best.vehicles() > min_vehicles {
        let target = best.vehicles() - 1;
        let seeds = eliminate_route_variants(inst, &best.routes, target, 5);
        let mut attempt = Hgs::new(inst, target);
        attempt.stop_on_feasible = true;
        attempt.penalty_window = 20;
        // Eliminating a route needs firm time-window pressure from the start.
        attempt.set_penalties(Penalties {
            cap: pen.cap,
            tw: pen.tw.max(ELIMINATION_TW_PENALTY),
        });
        attempt.run(&seeds, &mut rng, &clock.phase(0.4));
        pen = attempt.penalties();
        clock.used_iterations += attempt.iterations;
        clock.work = clock.work.plus(Work::of(&attempt));
        tracing::debug!(
            instance = %inst.name,
            target,
            found = ?attempt.best.as_ref().map(|b| (b.vehicles(), b.dist)),
            iterations = attempt.iterations,
            stats = %attempt.stats(),
            "route elimination attempt"
        );
        match attempt.best {
            Some(b) if better(key(inst, &b), key(inst, &best)) && b.vehicles() <= target => {
                best = b
            }
            _ => break,
        }
    }
    let mut polish = Hgs::new(inst, best.vehicles());
    polish.set_penalties(pen);
    polish.run(
        std::slice::from_ref(&best.routes),
        &mut rng,
        &clock.phase(1.0),
    );
    clock.used_iterations += polish.iterations;
    clock.work = clock.work.plus(Work::of(&polish));
    if let Some(b) = polish.best {
        if better(key(inst, &b), key(inst, &best)) {
            best = b;
        }
    }
    (Some(best.routes), clock.work)
}

/// Up to `variants` starting points with one route fewer: each removes one of the smallest
/// routes and reinserts its customers (penalised regret insertion) into `target` slots.
fn eliminate_route_variants(
    inst: &Instance,
    routes: &[Vec<usize>],
    target: usize,
    variants: usize,
) -> Vec<Vec<Vec<usize>>> {
    let used: Vec<&Vec<usize>> = routes.iter().filter(|r| !r.is_empty()).collect();
    let mut by_size: Vec<usize> = (0..used.len()).collect();
    by_size.sort_by_key(|&k| (used[k].len(), k));
    let pen = Penalties {
        cap: 100.0,
        tw: 100.0,
    };
    by_size
        .into_iter()
        .take(variants)
        .map(|drop| {
            let mut rs: Vec<Vec<usize>> = (0..used.len())
                .filter(|&k| k != drop)
                .map(|k| used[k].clone())
                .collect();
            rs.resize(target.max(rs.len()), Vec::new());
            let left = regret_insert(inst, &mut rs, used[drop], false, pen);
            debug_assert!(left.is_empty(), "penalised insertion always succeeds");
            rs
        })
        .collect()
}
