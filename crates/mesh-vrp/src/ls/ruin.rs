//! What the iterated local search (`crate::ils`) needs from the local search state: a
//! ruin-and-recreate perturbation applied in place (string removals around a random customer,
//! SISR-style, then cheapest insertion), route-level undo, and the bookkeeping that lets the
//! next search look only at what the perturbation touched.

use super::{LocalSearch, Penalties, NONE};
use rand::seq::SliceRandom;
use rand::Rng;

/// Longest string cut from one route by a perturbation.
const MAX_STRING: usize = 10;
/// Nearest customers whose routes are tried when reinserting a customer.
const INSERT_ROUTES_FROM: usize = 20;

impl LocalSearch<'_> {
    /// The move counter: routes modified after this value have `last_modified > stamp`.
    pub(crate) fn stamp(&self) -> u64 {
        self.counter
    }

    /// Route slots modified since `stamp`.
    pub(crate) fn changed_since(&self, stamp: u64) -> Vec<usize> {
        (0..self.routes.len())
            .filter(|&r| self.last_modified[r] > stamp)
            .collect()
    }

    /// Declares the current solution a local optimum: a focused search afterwards tries
    /// only pairs with a route modified after this call.
    pub(crate) fn mark_all_tested(&mut self) {
        let now = self.counter;
        self.last_tested.iter_mut().for_each(|t| *t = now);
        self.star_last_tested.iter_mut().for_each(|t| *t = now);
    }

    fn touch(&mut self, r: usize) {
        self.counter += 1;
        self.last_modified[r] = self.counter;
    }

    /// The customers of route slot `r`.
    pub(crate) fn route(&self, r: usize) -> &[usize] {
        let nodes = &self.routes[r].nodes;
        &nodes[1..nodes.len() - 1]
    }

    /// Replaces route slot `r` by `customers` (undoing a rejected step). The caller keeps
    /// every customer in exactly one route.
    pub(crate) fn set_route(&mut self, r: usize, customers: &[usize]) {
        let nodes = &mut self.routes[r].nodes;
        for &c in &nodes[1..nodes.len() - 1] {
            if self.route_of[c] == r {
                self.route_of[c] = NONE;
            }
        }
        nodes.clear();
        nodes.push(0);
        nodes.extend_from_slice(customers);
        nodes.push(0);
        self.refresh(r);
        self.touch(r);
    }

    /// Changes the penalty weights and re-prices every route (no route counts as modified).
    pub(crate) fn set_penalties(&mut self, pen: Penalties) {
        self.pen = pen;
        for r in 0..self.routes.len() {
            self.refresh(r);
        }
    }

    /// Marks every overloaded route as modified, so that a focused search revisits it.
    pub(crate) fn touch_overloaded(&mut self) {
        for r in 0..self.routes.len() {
            if self.route_load(r) > self.inst.capacity {
                self.touch(r);
            }
        }
    }

    fn route_load(&self, r: usize) -> i64 {
        *self.routes[r].cum_load.last().unwrap_or(&0)
    }

    /// Total distance of the current routes.
    pub(crate) fn distance(&self) -> f64 {
        self.routes
            .iter()
            .map(|r| *r.cum_dist.last().unwrap_or(&0.0))
            .sum()
    }

    /// Total penalised cost of the current routes.
    pub(crate) fn penalised_cost(&self) -> f64 {
        self.routes.iter().map(|r| r.cost).sum()
    }

    /// Whether no route exceeds the capacity (the only constraint the ILS is used with).
    pub(crate) fn load_feasible(&self) -> bool {
        (0..self.routes.len()).all(|r| self.route_load(r) <= self.inst.capacity)
    }

    /// Removes up to `k` customers as strings (at most one per route, each containing a
    /// customer near a random seed customer, `near[c]` being `c`'s nearest customers in
    /// increasing distance), then reinserts them one by one, in random order, at their
    /// cheapest penalised position in the routes of their nearest customers or in an empty
    /// route. Returns the number of customers moved.
    pub(crate) fn ruin_recreate<R: Rng>(
        &mut self,
        rng: &mut R,
        near: &[Vec<usize>],
        k: usize,
    ) -> usize {
        let n = self.inst.n();
        if n < 2 || k == 0 {
            return 0;
        }
        let seed = rng.random_range(1..n);
        let mut removed: Vec<usize> = Vec::with_capacity(k);
        let mut cut: Vec<usize> = Vec::new();
        for &c in std::iter::once(&seed).chain(near[seed].iter()) {
            if removed.len() >= k {
                break;
            }
            let r = self.route_of[c];
            if r == NONE || cut.contains(&r) {
                continue;
            }
            cut.push(r);
            let len = self.routes[r].nodes.len() - 2;
            let l = rng.random_range(1..=len.min(MAX_STRING).min(k - removed.len()));
            let p = self.pos_of[c];
            let start = rng.random_range(p.saturating_sub(l - 1).max(1)..=p.min(len - l + 1));
            let string: Vec<usize> = self.routes[r].nodes.drain(start..start + l).collect();
            for &x in &string {
                self.route_of[x] = NONE;
            }
            removed.extend(string);
            self.refresh(r);
            self.touch(r);
        }
        removed.shuffle(rng);
        for &c in &removed {
            self.insert_cheapest(c, &near[c]);
        }
        removed.len()
    }

    /// Inserts the unrouted customer `c` at its cheapest position (penalised cost) in the
    /// routes of its nearest routed customers (all routes when none is routed) or an empty
    /// route.
    fn insert_cheapest(&mut self, c: usize, near: &[usize]) {
        let inst = self.inst;
        let mut cands: Vec<usize> = Vec::with_capacity(INSERT_ROUTES_FROM);
        for &v in near.iter().take(INSERT_ROUTES_FROM) {
            let r = self.route_of[v];
            if r != NONE && !cands.contains(&r) {
                cands.push(r);
            }
        }
        if cands.is_empty() {
            cands = (0..self.routes.len())
                .filter(|&r| self.routes[r].nodes.len() > 2)
                .collect();
        }
        if let Some(e) = (0..self.routes.len()).find(|&r| self.routes[r].nodes.len() == 2) {
            cands.push(e);
        }
        let q = inst.demand[c];
        let excess = |l: i64| (l - inst.capacity).max(0) as f64;
        let mut best = (f64::INFINITY, NONE, 0);
        for &r in &cands {
            let load = self.route_load(r);
            let pen = self.pen.cap * (excess(load + q) - excess(load));
            let nodes = &self.routes[r].nodes;
            for (p, w) in nodes.windows(2).enumerate() {
                let delta = inst.d(w[0], c) + inst.d(c, w[1]) - inst.d(w[0], w[1]) + pen;
                if delta < best.0 {
                    best = (delta, r, p);
                }
            }
        }
        let (_, r, p) = best;
        // There is always a candidate route (the customer came from one).
        debug_assert!(r != NONE);
        self.routes[r].nodes.insert(p + 1, c);
        self.refresh(r);
        self.touch(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{generate, CustomerPos, DemandDist, DepotPos, GenSpec};
    use crate::instance::Instance;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn route_cost(inst: &Instance, pen: f64, r: &[usize]) -> f64 {
        let load: i64 = r.iter().map(|&c| inst.demand[c]).sum();
        inst.routes_distance(&[r.to_vec()]) + pen * (load - inst.capacity).max(0) as f64
    }

    /// Every customer in exactly one route, `route_of` / `pos_of` and the cached route
    /// costs consistent with the routes, totals equal to the recomputed ones.
    fn assert_consistent(ls: &LocalSearch, inst: &Instance, pen: f64) -> Result<(), TestCaseError> {
        let routes = ls.routes();
        let mut all: Vec<usize> = routes.concat();
        all.sort_unstable();
        prop_assert_eq!(all, (1..inst.n()).collect::<Vec<_>>());
        let mut total = 0.0;
        for (r, custs) in routes.iter().enumerate() {
            for (k, &c) in custs.iter().enumerate() {
                prop_assert_eq!(ls.route_of[c], r);
                prop_assert_eq!(ls.pos_of[c], k + 1);
            }
            let cost = route_cost(inst, pen, custs);
            prop_assert!((ls.routes[r].cost - cost).abs() < 1e-6);
            total += cost;
        }
        prop_assert!((ls.penalised_cost() - total).abs() < 1e-6);
        prop_assert!((ls.distance() - inst.routes_distance(&routes)).abs() < 1e-6);
        let feasible = routes
            .iter()
            .all(|r| r.iter().map(|&c| inst.demand[c]).sum::<i64>() <= inst.capacity);
        prop_assert_eq!(ls.load_feasible(), feasible);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Ruin-and-recreate followed by the focused search keeps every customer exactly
        /// once and the cached costs exact, the focused search never raises the penalised
        /// cost, and undoing the changed routes restores the solution exactly.
        #[test]
        fn perturbation_and_focused_search_keep_the_solution_consistent(
            seed in 0u64..10_000,
            n in 6usize..80,
            r in 3.0f64..12.0,
            pen in prop_oneof![Just(0.0), 0.1f64..5.0, 5.0f64..500.0],
            k in 1usize..30,
        ) {
            let inst = generate(&GenSpec {
                n,
                depot: DepotPos::Random,
                customers: [CustomerPos::Random, CustomerPos::Clustered][(seed % 2) as usize],
                demand: DemandDist::SmallLargeVar,
                r,
                seed,
            })
            .unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let neigh = crate::ls::neighbours(&inst, 8);
            let near: Vec<Vec<usize>> = (0..inst.n())
                .map(|i| {
                    let mut c: Vec<usize> = (1..inst.n()).filter(|&j| j != i).collect();
                    c.sort_by(|&a, &b| inst.d(i, a).total_cmp(&inst.d(i, b)));
                    c.truncate(10);
                    c
                })
                .collect();
            let mut ls = LocalSearch::new(&inst, &neigh);
            let slots = inst.route_slots();
            let mut start = vec![Vec::new(); slots];
            for c in 1..inst.n() {
                start[c % slots].push(c);
            }
            let pen = Penalties { cap: pen, tw: 1.0 };
            ls.load(&start, pen);
            ls.run(&mut rng, || false);
            ls.mark_all_tested();
            for _ in 0..5 {
                let before = ls.routes();
                let stamp = ls.stamp();
                let moved = ls.ruin_recreate(&mut rng, &near, k);
                prop_assert!(moved >= 1 && moved <= k);
                assert_consistent(&ls, &inst, pen.cap)?;
                let ruined = ls.penalised_cost();
                ls.run_focused(&mut rng);
                assert_consistent(&ls, &inst, pen.cap)?;
                prop_assert!(ls.penalised_cost() <= ruined + 1e-6);
                let changed = ls.changed_since(stamp);
                // Routes not reported as changed are untouched.
                let after = ls.routes();
                for r in 0..slots {
                    if !changed.contains(&r) {
                        prop_assert_eq!(&after[r], &before[r]);
                    }
                }
                if seed % 2 == 0 {
                    for &r in &changed {
                        ls.set_route(r, &before[r]);
                    }
                    prop_assert_eq!(ls.routes(), before);
                    assert_consistent(&ls, &inst, pen.cap)?;
                }
                ls.mark_all_tested();
            }
        }
    }
}
