//! Individuals and the two sub-populations (feasible / infeasible) of the hybrid genetic
//! search, with broken-pairs diversity and biased fitness (Vidal et al. 2012).

use crate::instance::Instance;
use crate::ls::Penalties;
use crate::segment::route_warp;
use rand::Rng;

/// A solution with its evaluation, giant tour and successor / predecessor arrays.
#[derive(Debug, Clone)]
pub(crate) struct Individual {
    pub routes: Vec<Vec<usize>>,
    pub dist: f64,
    pub excess: i64,
    pub warp: f64,
    pub penalized: f64,
    succ: Vec<usize>,
    pred: Vec<usize>,
}

impl Individual {
    pub(crate) fn new(inst: &Instance, routes: Vec<Vec<usize>>, pen: Penalties) -> Self {
        let n = inst.n();
        let (mut succ, mut pred) = (vec![0; n], vec![0; n]);
        let (mut dist, mut excess, mut warp) = (0.0, 0i64, 0.0);
        for r in routes.iter().filter(|r| !r.is_empty()) {
            let mut prev = 0;
            let mut load = 0;
            for &c in r {
                dist += inst.d(prev, c);
                load += inst.demand[c];
                pred[c] = prev;
                if prev != 0 {
                    succ[prev] = c;
                }
                prev = c;
            }
            succ[prev] = 0;
            dist += inst.d(prev, 0);
            excess += (load - inst.capacity).max(0);
            if inst.timed() {
                warp += route_warp(inst, r);
            }
        }
        let mut ind = Self {
            routes,
            dist,
            excess,
            warp,
            penalized: 0.0,
            succ,
            pred,
        };
        ind.reprice(pen);
        ind
    }

    pub(crate) fn reprice(&mut self, pen: Penalties) {
        self.penalized = self.dist + pen.cap * self.excess as f64 + pen.tw * self.warp;
    }

    pub(crate) fn feasible(&self) -> bool {
        self.excess == 0 && self.warp <= 1e-9
    }

    pub(crate) fn vehicles(&self) -> usize {
        self.routes.iter().filter(|r| !r.is_empty()).count()
    }

    pub(crate) fn giant_tour(&self) -> Vec<usize> {
        self.routes.iter().flatten().copied().collect()
    }

    /// Broken-pairs distance in [0, 1].
    fn distance(&self, other: &Individual) -> f64 {
        let n = self.succ.len();
        let mut diff = 0usize;
        for j in 1..n {
            if self.succ[j] != other.succ[j] && self.succ[j] != other.pred[j] {
                diff += 1;
            }
            if self.pred[j] == 0 && other.pred[j] != 0 && other.pred[j] != other.succ[j] {
                diff += 1;
            }
        }
        diff as f64 / (n - 1).max(1) as f64
    }
}

/// Population parameters (HGS-CVRP defaults).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PopParams {
    pub mu: usize,
    pub lambda: usize,
    pub nb_elite: usize,
    pub nb_close: usize,
}

impl Default for PopParams {
    fn default() -> Self {
        Self {
            mu: 25,
            lambda: 40,
            nb_elite: 4,
            nb_close: 5,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct SubPop {
    pub inds: Vec<Individual>,
    dmat: Vec<Vec<f64>>,
    pub fitness: Vec<f64>,
}

impl SubPop {
    pub(crate) fn len(&self) -> usize {
        self.inds.len()
    }

    pub(crate) fn clear(&mut self) {
        self.inds.clear();
        self.dmat.clear();
        self.fitness.clear();
    }

    pub(crate) fn add(&mut self, ind: Individual, p: &PopParams) {
        let row: Vec<f64> = self.inds.iter().map(|o| ind.distance(o)).collect();
        for (k, d) in row.iter().enumerate() {
            self.dmat[k].push(*d);
        }
        let mut row = row;
        row.push(0.0);
        self.dmat.push(row);
        self.inds.push(ind);
        if self.inds.len() > p.mu + p.lambda {
            while self.inds.len() > p.mu {
                self.update_fitness(p);
                let worst = self.worst();
                self.remove(worst);
            }
        }
        self.update_fitness(p);
    }

    fn remove(&mut self, k: usize) {
        self.inds.remove(k);
        self.dmat.remove(k);
        for row in &mut self.dmat {
            row.remove(k);
        }
    }

    /// Worst biased fitness, clones first (never the best individual).
    fn worst(&self) -> usize {
        let mut worst = 0;
        let mut worst_key = (false, f64::NEG_INFINITY);
        for k in 0..self.inds.len() {
            let clone = (0..self.inds.len()).any(|o| o != k && self.dmat[k][o] < 1e-9);
            let key = (clone, self.fitness[k]);
            if key.0 && !worst_key.0 || (key.0 == worst_key.0 && key.1 > worst_key.1) {
                worst = k;
                worst_key = key;
            }
        }
        worst
    }

    pub(crate) fn update_fitness(&mut self, p: &PopParams) {
        let size = self.inds.len();
        self.fitness = vec![0.0; size];
        if size <= 1 {
            return;
        }
        let mut by_cost: Vec<usize> = (0..size).collect();
        by_cost.sort_by(|&a, &b| self.inds[a].penalized.total_cmp(&self.inds[b].penalized));
        let mut div: Vec<(f64, usize)> = (0..size)
            .map(|k| {
                let mut ds: Vec<f64> = (0..size)
                    .filter(|&o| o != k)
                    .map(|o| self.dmat[k][o])
                    .collect();
                ds.sort_by(|a, b| a.total_cmp(b));
                let take = p.nb_close.min(ds.len());
                (ds[..take].iter().sum::<f64>() / take as f64, k)
            })
            .collect();
        div.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut div_rank = vec![0.0; size];
        for (rank, (_, k)) in div.iter().enumerate() {
            div_rank[*k] = rank as f64 / (size - 1) as f64;
        }
        let elite_factor = 1.0 - p.nb_elite as f64 / size as f64;
        for (rank, &k) in by_cost.iter().enumerate() {
            self.fitness[k] = rank as f64 / (size - 1) as f64 + elite_factor * div_rank[k];
        }
    }

    pub(crate) fn reprice(&mut self, pen: Penalties, p: &PopParams) {
        for ind in &mut self.inds {
            ind.reprice(pen);
        }
        self.update_fitness(p);
    }
}

/// Binary tournament on biased fitness over both sub-populations.
pub(crate) fn tournament<'a, R: Rng>(
    feas: &'a SubPop,
    infeas: &'a SubPop,
    rng: &mut R,
) -> &'a Individual {
    let total = feas.len() + infeas.len();
    let pick = |k: usize| -> (&'a Individual, f64) {
        if k < feas.len() {
            (&feas.inds[k], feas.fitness[k])
        } else {
            (&infeas.inds[k - feas.len()], infeas.fitness[k - feas.len()])
        }
    };
    let a = pick(rng.random_range(0..total));
    let b = pick(rng.random_range(0..total));
    if a.1 <= b.1 {
        a.0
    } else {
        b.0
    }
}

/// Ordered crossover (OX) of two giant tours.
pub(crate) fn ordered_crossover<R: Rng>(
    p1: &[usize],
    p2: &[usize],
    n_nodes: usize,
    rng: &mut R,
) -> Vec<usize> {
    let n = p1.len();
    if n < 2 {
        return p1.to_vec();
    }
    let start = rng.random_range(0..n);
    let mut end = rng.random_range(0..n);
    while end == start {
        end = rng.random_range(0..n);
    }
    let mut child = vec![0usize; n];
    let mut used = vec![false; n_nodes];
    let mut i = start;
    loop {
        child[i] = p1[i];
        used[p1[i]] = true;
        if i == end {
            break;
        }
        i = (i + 1) % n;
    }
    let mut pos = (end + 1) % n;
    for k in 1..=n {
        let c = p2[(end + k) % n];
        if !used[c] {
            child[pos] = c;
            used[c] = true;
            pos = (pos + 1) % n;
        }
    }
    child
}
