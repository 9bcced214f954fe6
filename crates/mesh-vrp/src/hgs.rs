//! The hybrid genetic search loop (Vidal 2012/2022, HGS-CVRP; PyVRP): random giant tours,
//! OX crossover, split, local-search education, repair, adaptive penalties for capacity and
//! time warp, survivor selection by biased fitness, restarts.

use crate::instance::{Instance, Objective};
use crate::ls::{LocalSearch, Penalties};
use crate::population::{ordered_crossover, tournament, Individual, PopParams, SubPop};
use crate::split::split;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Where a phase must stop: wall clock and / or generation count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub deadline: Option<Instant>,
    pub iterations: Option<u64>,
}

impl Limit {
    pub(crate) fn reached(&self, iterations: u64) -> bool {
        self.iterations.is_some_and(|m| iterations >= m)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

const TARGET_FEASIBLE: f64 = 0.2;
/// Share of the remaining wall-clock budget random initial solutions may use.
const INIT_SHARE: f64 = 0.4;
/// Random initial solutions made in any case (when the clock allows).
const MIN_INITIAL: usize = 4;
const RESTART_AFTER: u64 = 20_000;
const GRANULAR: usize = 20;
const TW_PENALTY_INIT: f64 = 1.0;
/// Educations between penalty updates (HGS-CVRP updates every 100 generations; counting
/// educations, initial ones included, reacts faster under short budgets).
const PENALTY_WINDOW: usize = 50;

/// Ranking key of a feasible individual under the instance's objective.
pub(crate) fn key(inst: &Instance, ind: &Individual) -> (usize, f64) {
    match inst.objective {
        Objective::Distance => (0, ind.dist),
        Objective::VehiclesThenDistance => (ind.vehicles(), ind.dist),
    }
}

pub(crate) fn better(a: (usize, f64), b: (usize, f64)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1 - 1e-7)
}

/// One genetic search with a fixed number of route slots.
pub(crate) struct Hgs<'a> {
    inst: &'a Instance,
    slots: usize,
    ls: LocalSearch<'a>,
    pen: Penalties,
    params: PopParams,
    feas: SubPop,
    infeas: SubPop,
    load_ok: Vec<bool>,
    warp_ok: Vec<bool>,
    /// Best feasible individual found so far.
    pub best: Option<Individual>,
    /// Generations run.
    pub iterations: u64,
    /// Stop as soon as any feasible solution is found (route elimination attempts).
    pub stop_on_feasible: bool,
    /// Educations between penalty updates.
    pub penalty_window: usize,
    educations: u64,
    /// Upper bound of the adaptive penalty weights.
    max_penalty: f64,
}

impl<'a> Hgs<'a> {
    pub(crate) fn new(inst: &'a Instance, slots: usize) -> Self {
        let neigh = crate::ls::neighbours(inst, GRANULAR);
        let max_dist = (0..inst.n())
            .flat_map(|i| (0..inst.n()).map(move |j| (i, j)))
            .map(|(i, j)| inst.d(i, j))
            .fold(0.0, f64::max);
        let max_demand = inst.demand.iter().copied().max().unwrap_or(1).max(1) as f64;
        // HGS-CVRP's penalty bounds are absolute and fit coordinates up to ~1e4; beyond,
        // they scale with the distances, or a 1e6-wide instance never turns feasible.
        let scale = (max_dist / 1e4).max(1.0);
        Self {
            inst,
            slots,
            ls: LocalSearch::new(inst, &neigh),
            pen: Penalties {
                cap: (max_dist / max_demand).clamp(0.1, 1000.0 * scale),
                tw: if inst.timed() { TW_PENALTY_INIT } else { 1.0 },
            },
            params: PopParams::default(),
            feas: SubPop::default(),
            infeas: SubPop::default(),
            load_ok: Vec::new(),
            warp_ok: Vec::new(),
            best: None,
            iterations: 0,
            stop_on_feasible: false,
            penalty_window: PENALTY_WINDOW,
            educations: 0,
            max_penalty: 100_000.0 * scale,
        }
    }

    /// Local search on `routes` with the given penalties.
    fn educate(
        &mut self,
        routes: &[Vec<usize>],
        pen: Penalties,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<usize>> {
        self.educations += 1;
        self.ls.load(routes, pen);
        self.ls.run(rng, || false);
        self.ls.routes()
    }

    fn consider_best(&mut self, ind: &Individual) {
        if ind.feasible() {
            let better_than_best = match &self.best {
                None => true,
                Some(b) => better(key(self.inst, ind), key(self.inst, b)),
            };
            if better_than_best {
                self.best = Some(ind.clone());
            }
        }
    }

    /// Educates, inserts and (half the time, when infeasible) repairs a new solution.
    /// Returns whether the best solution improved.
    fn offer(&mut self, routes: Vec<Vec<usize>>, rng: &mut ChaCha8Rng) -> bool {
        if self.load_ok.len() >= self.penalty_window {
            self.adjust_penalties();
        }
        let before = self.best.as_ref().map(|b| key(self.inst, b));
        let routes = self.educate(&routes, self.pen, rng);
        let ind = Individual::new(self.inst, routes, self.pen);
        self.load_ok.push(ind.excess == 0);
        self.warp_ok.push(ind.warp <= 1e-9);
        self.consider_best(&ind);
        let feasible = ind.feasible();
        // Always repair while nothing feasible is known: a short clock may allow only a
        // handful of educations on a large instance.
        let repair = !feasible && (self.best.is_none() || rng.random_bool(0.5));
        let routes_for_repair = repair.then(|| ind.routes.clone());
        self.insert(ind);
        if let Some(r) = routes_for_repair {
            let strong = Penalties {
                cap: self.pen.cap * 10.0,
                tw: self.pen.tw * 10.0,
            };
            let repaired = self.educate(&r, strong, rng);
            let ind = Individual::new(self.inst, repaired, self.pen);
            if ind.feasible() {
                self.consider_best(&ind);
                self.insert(ind);
            }
        }
        let after = self.best.as_ref().map(|b| key(self.inst, b));
        match (before, after) {
            (None, Some(_)) => true,
            (Some(b), Some(a)) => better(a, b),
            _ => false,
        }
    }

    fn insert(&mut self, ind: Individual) {
        if ind.feasible() {
            self.feas.add(ind, &self.params);
        } else {
            self.infeas.add(ind, &self.params);
        }
    }

    fn random_individual(&mut self, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
        let mut tour: Vec<usize> = (1..self.inst.n()).collect();
        tour.shuffle(rng);
        split(self.inst, &tour, self.slots, self.pen.cap)
    }

    fn adjust_penalties(&mut self) {
        // HGS multiplies by 1.2 / 0.85; the further from the target, the larger the step
        // here (up to x2), since short budgets allow only a few updates.
        let max_penalty = self.max_penalty;
        let adjust = |ok: &[bool], p: f64| -> f64 {
            let frac = ok.iter().filter(|&&b| b).count() as f64 / ok.len().max(1) as f64;
            if frac < TARGET_FEASIBLE - 0.05 {
                (p * (1.2 + 4.0 * (TARGET_FEASIBLE - frac))).min(max_penalty)
            } else if frac > TARGET_FEASIBLE + 0.05 {
                (p * 0.85).max(0.1)
            } else {
                p
            }
        };
        self.pen.cap = adjust(&self.load_ok, self.pen.cap);
        if self.inst.timed() {
            self.pen.tw = adjust(&self.warp_ok, self.pen.tw);
        }
        self.load_ok.clear();
        self.warp_ok.clear();
        self.infeas.reprice(self.pen, &self.params);
    }

    fn initialise(&mut self, seeds: &[Vec<Vec<usize>>], rng: &mut ChaCha8Rng, limit: &Limit) {
        for s in seeds {
            let mut routes = s.clone();
            routes.resize(self.slots.max(routes.len()), Vec::new());
            self.offer(routes, rng);
        }
        // HGS-CVRP starts from 4 * mu random solutions; with time windows a random solution
        // costs far more local search, so (like PyVRP) start from mu.
        let initial = if self.inst.has_time_windows() {
            self.params.mu
        } else {
            4 * self.params.mu
        };
        // Under a clock, random starts may take only a share of what is left: on large
        // instances with short budgets educating 100 random solutions would otherwise eat
        // the whole budget, while children of two local optima educate much faster.
        let init_deadline = limit.deadline.map(|d| {
            let now = Instant::now();
            now + d.saturating_duration_since(now).mul_f64(INIT_SHARE)
        });
        for k in 0..initial {
            // At least one educated solution, however short the budget.
            let first = k == 0 && seeds.is_empty();
            if !first && (limit.reached(self.iterations) || self.done()) {
                break;
            }
            if k >= MIN_INITIAL && init_deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let routes = self.random_individual(rng);
            self.offer(routes, rng);
        }
    }

    pub(crate) fn stats(&self) -> String {
        format!(
            "ls_moves {} educations {} pen {:?} feas {} infeas {}",
            self.ls.moves,
            self.educations,
            self.pen,
            self.feas.len(),
            self.infeas.len()
        )
    }

    /// Local-search move evaluations and applied moves so far.
    pub(crate) fn ls_work(&self) -> (u64, u64) {
        (self.ls.evals, self.ls.moves)
    }

    /// Current penalty weights (handed to a follow-up phase).
    pub(crate) fn penalties(&self) -> Penalties {
        self.pen
    }

    /// Upper bound of the adaptive penalty weights.
    pub(crate) fn max_penalty(&self) -> f64 {
        self.max_penalty
    }

    /// Starts from given penalty weights instead of the default guess.
    pub(crate) fn set_penalties(&mut self, pen: Penalties) {
        self.pen = pen;
    }

    fn done(&self) -> bool {
        self.stop_on_feasible && self.best.is_some()
    }

    /// Runs the genetic search until `limit`, starting from `seeds` plus random solutions.
    pub(crate) fn run(&mut self, seeds: &[Vec<Vec<usize>>], rng: &mut ChaCha8Rng, limit: &Limit) {
        self.initialise(seeds, rng, limit);
        let mut since_improvement = 0u64;
        while !limit.reached(self.iterations) && !self.done() {
            if self.feas.len() + self.infeas.len() < 2 {
                let routes = self.random_individual(rng);
                self.offer(routes, rng);
                self.iterations += 1;
                continue;
            }
            let p1 = tournament(&self.feas, &self.infeas, rng).giant_tour();
            let p2 = tournament(&self.feas, &self.infeas, rng).giant_tour();
            let child = ordered_crossover(&p1, &p2, self.inst.n(), rng);
            let routes = split(self.inst, &child, self.slots, self.pen.cap);
            if self.offer(routes, rng) {
                since_improvement = 0;
            } else {
                since_improvement += 1;
            }
            self.iterations += 1;
            if since_improvement >= RESTART_AFTER {
                self.feas.clear();
                self.infeas.clear();
                since_improvement = 0;
                self.initialise(&[], rng, limit);
            }
        }
    }
}
