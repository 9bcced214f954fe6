//! SWAP* (Vidal 2022, "Hybrid genetic search for the CVRP: open-source implementation and
//! SWAP* neighborhood"): the best exchange of a customer `u` of route A with a customer `v`
//! of route B where each is reinserted at its best position in the other route — not
//! necessarily where the other one was.
//!
//! Two observations keep it cheap. First, the best position for `u` in B once `v` left is
//! either in `v`'s place or one of the three best positions for `u` in B *with* `v` still
//! there (at most two of those touch `v`), so a per-(route, customer) top-3 cache makes
//! each pair O(1); the cache stays valid until B changes. Second, only routes whose polar
//! sectors around the depot overlap are paired.
//!
//! Capacity-only (no time windows, no re-planning restrictions): there the estimate is
//! exact, and the chosen move is re-evaluated by `try_apply` like every other move.

use super::{LocalSearch, Pieces, EPS, NONE};

/// A circle sector in 1/65536 turns around the depot (HGS-CVRP's `CircleSector`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sector {
    start: i32,
    end: i32,
}

const TURN: i32 = 65_536;

#[inline]
fn pmod(i: i32) -> i32 {
    i.rem_euclid(TURN)
}

impl Sector {
    pub(super) fn at(angle: i32) -> Self {
        Self {
            start: angle,
            end: angle,
        }
    }

    fn encloses(&self, a: i32) -> bool {
        pmod(a - self.start) <= pmod(self.end - self.start)
    }

    /// Grows the sector by the smaller of the two arcs needed to cover `a`.
    pub(super) fn extend(&mut self, a: i32) {
        if !self.encloses(a) {
            if pmod(a - self.end) <= pmod(self.start - a) {
                self.end = a;
            } else {
                self.start = a;
            }
        }
    }

    pub(super) fn overlaps(&self, o: &Sector) -> bool {
        pmod(o.start - self.start) <= pmod(self.end - self.start)
            || pmod(self.start - o.start) <= pmod(o.end - o.start)
    }
}

/// Polar angle of `p` around `depot` in 1/65536 turns.
pub(super) fn polar_angle(depot: (f64, f64), p: (f64, f64)) -> i32 {
    let a = (p.1 - depot.1).atan2(p.0 - depot.0);
    pmod((f64::from(TURN / 2) * a / std::f64::consts::PI) as i32)
}

/// The three cheapest insertion positions of one customer in one route.
#[derive(Debug, Clone, Copy)]
pub(super) struct Top3 {
    cost: [f64; 3],
    /// Node after which to insert (0 = the start depot), `NONE` when unused.
    after: [usize; 3],
    /// `counter` when computed; valid while the route is not modified after it.
    stamp: u64,
}

impl Default for Top3 {
    fn default() -> Self {
        Self {
            cost: [f64::INFINITY; 3],
            after: [NONE; 3],
            stamp: 0,
        }
    }
}

impl Top3 {
    fn offer(&mut self, cost: f64, after: usize) {
        if cost < self.cost[0] {
            self.cost = [cost, self.cost[0], self.cost[1]];
            self.after = [after, self.after[0], self.after[1]];
        } else if cost < self.cost[1] {
            self.cost[2] = self.cost[1];
            self.after[2] = self.after[1];
            self.cost[1] = cost;
            self.after[1] = after;
        } else if cost < self.cost[2] {
            self.cost[2] = cost;
            self.after[2] = after;
        }
    }
}

/// The best SWAP* move found for a pair of routes (positions in the current routes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StarMove {
    /// Route of `u` and the position of `u` in it.
    pub ra: usize,
    pub pa: usize,
    /// Route of `v` and the position of `v` in it.
    pub rb: usize,
    pub pb: usize,
    /// `u` goes after this position of route `rb` (`pb - 1` or `pb`: in `v`'s place).
    pub u_after: usize,
    /// `v` goes after this position of route `ra` (`pa - 1` or `pa`: in `u`'s place).
    pub v_after: usize,
    /// Estimated change of the penalised cost.
    pub delta: f64,
}

impl LocalSearch<'_> {
    /// Whether SWAP* applies: capacity-only problems without re-planning restrictions.
    pub(super) fn swap_star_enabled(&self) -> bool {
        self.use_swap_star && !self.inst.timed() && self.restrict.is_none()
    }

    pub(super) fn sector(&self, r: usize) -> Sector {
        self.routes[r].sector
    }

    #[inline]
    fn load_penalty(&self, load: i64) -> f64 {
        self.pen.cap * (load - self.inst.capacity).max(0) as f64
    }

    /// Distance change of removing position `p` of route `r`.
    #[inline]
    fn removal(&self, r: usize, p: usize) -> f64 {
        let nodes = &self.routes[r].nodes;
        let d = |i, j| self.inst.d(i, j);
        d(nodes[p - 1], nodes[p + 1]) - d(nodes[p - 1], nodes[p]) - d(nodes[p], nodes[p + 1])
    }

    /// The (cached) three best insertion positions of customer `u` in route `r`.
    fn top3(&mut self, r: usize, u: usize) -> Top3 {
        let n = self.inst.n();
        let slot = r * n + u;
        let cached = self.star_top[slot];
        if cached.stamp >= self.last_modified[r] && cached.stamp > 0 {
            return cached;
        }
        let nodes = &self.routes[r].nodes;
        let d = |i, j| self.inst.d(i, j);
        let mut top = Top3 {
            stamp: self.counter,
            ..Top3::default()
        };
        for w in nodes.windows(2) {
            top.offer(d(w[0], u) + d(u, w[1]) - d(w[0], w[1]), w[0]);
        }
        self.star_top[slot] = top;
        top
    }

    /// Best insertion of `u` into route `r` whose position `p` is removed at the same time:
    /// (distance change relative to the route without `p`, position to insert after).
    fn insert_with_removal(&mut self, u: usize, r: usize, p: usize) -> (f64, usize) {
        let top = self.top3(r, u);
        let nodes = &self.routes[r].nodes;
        let d = |i, j| self.inst.d(i, j);
        let mut best = (
            d(nodes[p - 1], u) + d(u, nodes[p + 1]) - d(nodes[p - 1], nodes[p + 1]),
            p - 1,
        );
        for k in 0..3 {
            let after = top.after[k];
            if after == NONE {
                break;
            }
            let pos = if after == 0 { 0 } else { self.pos_of[after] };
            if pos != p && pos + 1 != p {
                if top.cost[k] < best.0 {
                    best = (top.cost[k], pos);
                }
                break;
            }
        }
        best
    }

    /// The best SWAP* exchange between routes `ra` and `rb` (both non-empty), if any
    /// improves the penalised cost by more than `EPS`.
    pub(crate) fn best_swap_star(&mut self, ra: usize, rb: usize) -> Option<StarMove> {
        let inst = self.inst;
        let (la, lb) = (self.routes[ra].nodes.len(), self.routes[rb].nodes.len());
        let load_a = self.routes[ra].cum_load[la - 1];
        let load_b = self.routes[rb].cum_load[lb - 1];
        let (pen_a, pen_b) = (self.load_penalty(load_a), self.load_penalty(load_b));
        let rem_b: Vec<f64> = (1..lb - 1).map(|p| self.removal(rb, p)).collect();
        let mut best: Option<StarMove> = None;
        let mut best_delta = -EPS;
        for pa in 1..la - 1 {
            let u = self.routes[ra].nodes[pa];
            let rem_u = self.removal(ra, pa);
            for pb in 1..lb - 1 {
                let v = self.routes[rb].nodes[pb];
                self.evals += 1;
                let (qu, qv) = (inst.demand[u], inst.demand[v]);
                let base = rem_u + rem_b[pb - 1] + self.load_penalty(load_a - qu + qv) - pen_a
                    + self.load_penalty(load_b + qu - qv)
                    - pen_b;
                // Both insertions are evaluated exactly (O(1) with the cache): with
                // rounded distances an insertion can shorten a route, so HGS-CVRP's
                // "skip when removal gains nothing" shortcut would miss moves.
                let (ins_u, u_after) = self.insert_with_removal(u, rb, pb);
                let (ins_v, v_after) = self.insert_with_removal(v, ra, pa);
                let delta = base + ins_u + ins_v;
                if delta < best_delta {
                    best_delta = delta;
                    best = Some(StarMove {
                        ra,
                        pa,
                        rb,
                        pb,
                        u_after,
                        v_after,
                        delta,
                    });
                }
            }
        }
        best
    }

    /// The two routes a SWAP* move produces.
    fn star_pieces(&self, m: &StarMove) -> (Pieces, Pieces) {
        let build = |r: usize, p: usize, fr: usize, fp: usize, after: usize| {
            let l = self.routes[r].nodes.len();
            let mut ps = Pieces::default();
            if after + 1 == p || after == p {
                ps.push(r, 0, p - 1, false)
                    .push(fr, fp, fp, false)
                    .push(r, p + 1, l - 1, false);
            } else if after < p {
                ps.push(r, 0, after, false)
                    .push(fr, fp, fp, false)
                    .push(r, after + 1, p - 1, false)
                    .push(r, p + 1, l - 1, false);
            } else {
                ps.push(r, 0, p - 1, false)
                    .push(r, p + 1, after, false)
                    .push(fr, fp, fp, false)
                    .push(r, after + 1, l - 1, false);
            }
            ps
        };
        (
            build(m.ra, m.pa, m.rb, m.pb, m.v_after),
            build(m.rb, m.pb, m.ra, m.pa, m.u_after),
        )
    }

    /// Applies `m` if the exact evaluation confirms an improvement.
    pub(crate) fn apply_star(&mut self, m: &StarMove) -> bool {
        let (a, b) = self.star_pieces(m);
        self.try_apply(m.ra, &a, m.rb, Some(&b))
    }

    /// SWAP* on one route pair, then (as HGS-CVRP) the best plain relocation of a customer
    /// of either route to its best position in the other.
    pub(super) fn swap_star(&mut self, ra: usize, rb: usize) -> bool {
        if let Some(m) = self.best_swap_star(ra, rb) {
            if self.apply_star(&m) {
                self.star_moves += 1;
                return true;
            }
        }
        self.best_relocation(ra, rb) || self.best_relocation(rb, ra)
    }

    /// The best relocation of a customer of `from` into `to` (top-3 cache, first entry).
    fn best_relocation(&mut self, from: usize, to: usize) -> bool {
        let l = self.routes[from].nodes.len();
        if l <= 2 {
            return false;
        }
        let q = self.inst.demand.as_slice();
        let lf = self.routes[from].cum_load[l - 1];
        let lt = self.routes[to].cum_load[self.routes[to].nodes.len() - 1];
        let (pen_f, pen_t) = (self.load_penalty(lf), self.load_penalty(lt));
        let mut best: Option<(f64, usize, usize)> = None;
        let mut best_delta = -EPS;
        for p in 1..l - 1 {
            let u = self.routes[from].nodes[p];
            self.evals += 1;
            let base = self.removal(from, p) + self.load_penalty(lf - q[u]) - pen_f
                + self.load_penalty(lt + q[u])
                - pen_t;
            let top = self.top3(to, u);
            let delta = base + top.cost[0];
            if delta < best_delta {
                best_delta = delta;
                let pos = if top.after[0] == 0 {
                    0
                } else {
                    self.pos_of[top.after[0]]
                };
                best = Some((delta, p, pos));
            }
        }
        match best {
            Some((_, p, pos)) => self.relocate(from, p, 1, false, to, pos),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{generate, CustomerPos, DemandDist, DepotPos, GenSpec};
    use crate::instance::Instance;
    use crate::ls::Penalties;
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    fn route_cost(inst: &Instance, pen: f64, r: &[usize]) -> f64 {
        let load: i64 = r.iter().map(|&c| inst.demand[c]).sum();
        inst.routes_distance(&[r.to_vec()]) + pen * (load - inst.capacity).max(0) as f64
    }

    /// The best exchange by enumeration: every u of A, v of B, every reinsertion position.
    fn brute_force(inst: &Instance, pen: f64, a: &[usize], b: &[usize]) -> f64 {
        let old = route_cost(inst, pen, a) + route_cost(inst, pen, b);
        let mut best = f64::INFINITY;
        for (i, &u) in a.iter().enumerate() {
            for (j, &v) in b.iter().enumerate() {
                let mut a2 = a.to_vec();
                a2.remove(i);
                let mut b2 = b.to_vec();
                b2.remove(j);
                let best_a = (0..=a2.len())
                    .map(|k| {
                        let mut x = a2.clone();
                        x.insert(k, v);
                        route_cost(inst, pen, &x)
                    })
                    .fold(f64::INFINITY, f64::min);
                let best_b = (0..=b2.len())
                    .map(|k| {
                        let mut x = b2.clone();
                        x.insert(k, u);
                        route_cost(inst, pen, &x)
                    })
                    .fold(f64::INFINITY, f64::min);
                best = best.min(best_a + best_b - old);
            }
        }
        best
    }

    fn case(seed: u64, n: usize, routes: usize) -> (Instance, Vec<Vec<usize>>) {
        let custs = [
            CustomerPos::Random,
            CustomerPos::Clustered,
            CustomerPos::RandomClustered,
        ];
        let inst = generate(&GenSpec {
            n,
            depot: DepotPos::Random,
            customers: custs[(seed % 3) as usize],
            demand: DemandDist::LargeLargeVar,
            r: n as f64 / routes as f64,
            seed,
        })
        .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (1..=n).collect();
        order.shuffle(&mut rng);
        let mut rs = vec![Vec::new(); routes];
        for (k, c) in order.into_iter().enumerate() {
            // Every route gets a customer, the rest go anywhere (loads deliberately uneven).
            let r = if k < routes {
                k
            } else {
                rng.random_range(0..routes)
            };
            rs[r].push(c);
        }
        (inst, rs)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The move SWAP* picks is the best exchange there is, its estimated delta is the
        /// cost change recomputed from scratch after applying it, and the other routes
        /// are untouched.
        #[test]
        fn swap_star_delta_is_the_recomputed_change_and_the_best_one(
            seed in 0u64..10_000,
            n in 4usize..28,
            routes in 2usize..5,
            pen in prop_oneof![Just(0.0), 0.01f64..5.0, 5.0f64..200.0],
        ) {
            let routes = routes.min(n);
            let (inst, rs) = case(seed, n, routes);
            let neigh = crate::ls::neighbours(&inst, 5);
            let mut ls = LocalSearch::new(&inst, &neigh);
            ls.load(&rs, Penalties { cap: pen, tw: 1.0 });
            let (ra, rb) = (0, 1);
            let before: Vec<f64> = rs.iter().map(|r| route_cost(&inst, pen, r)).collect();
            let brute = brute_force(&inst, pen, &rs[ra], &rs[rb]);
            match ls.best_swap_star(ra, rb) {
                None => prop_assert!(brute >= -EPS, "missed an improving swap: {brute}"),
                Some(m) => {
                    prop_assert!((m.delta - brute).abs() < 1e-6, "delta {} brute {}", m.delta, brute);
                    prop_assert!(ls.apply_star(&m));
                    let after = ls.routes();
                    let after_cost: Vec<f64> =
                        after.iter().map(|r| route_cost(&inst, pen, r)).collect();
                    let change = after_cost[ra] + after_cost[rb] - before[ra] - before[rb];
                    prop_assert!((change - m.delta).abs() < 1e-6, "estimate {} recomputed {}", m.delta, change);
                    for k in 2..routes {
                        prop_assert_eq!(&after[k], &rs[k]);
                    }
                    let mut all: Vec<usize> = after.concat();
                    all.sort_unstable();
                    prop_assert_eq!(all, (1..=n).collect::<Vec<_>>());
                    // The cached route costs follow the applied move.
                    for (k, r) in after.iter().enumerate() {
                        prop_assert!((ls.routes[k].cost - route_cost(&inst, pen, r)).abs() < 1e-6);
                    }
                }
            }
        }
    }

    #[test]
    fn sectors_cover_their_angles_and_detect_overlap() {
        let mut s = Sector::at(100);
        s.extend(200);
        s.extend(65_500); // wraps around zero: the short way is backwards
        assert!(s.encloses(0) && s.encloses(150) && !s.encloses(30_000));
        assert!(s.overlaps(&Sector::at(50)));
        assert!(!s.overlaps(&Sector::at(30_000)));
        let mut t = Sector::at(30_000);
        t.extend(65_520);
        assert!(s.overlaps(&t) && t.overlaps(&s));
    }
}
