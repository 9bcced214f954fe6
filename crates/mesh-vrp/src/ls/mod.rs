//! Granular local search over penalised routes: relocate (1, 2, reversed 2 = or-opt),
//! swap (1-1, 2-1, 2-2), intra-route 2-opt, and the two inter-route 2-opt* variants
//! (cross-exchange of tails), each move evaluated in O(1) pieces by concatenating cached
//! prefix / suffix data (distance, load, time-window segments); then, on capacity-only
//! problems, SWAP* between route pairs whose polar sectors overlap (`swap_star`).
//!
//! Distances are assumed symmetric (all supported conventions are Euclidean).

use crate::instance::Instance;
use crate::segment::Segment;
use rand::seq::SliceRandom;
use rand::Rng;

mod moves;
mod ruin;
mod swap_star;

use swap_star::{polar_angle, Sector, Top3};

const EPS: f64 = 1e-7;
const NONE: usize = usize::MAX;

/// Penalty weights for the relaxed constraints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Penalties {
    /// Per unit of load above capacity.
    pub cap: f64,
    /// Per unit of time warp.
    pub tw: f64,
}

/// Granular neighbour lists: for each customer the `k` most correlated customers (distance,
/// plus waiting time and time warp when time windows exist), made symmetric.
pub(crate) fn neighbours(inst: &Instance, k: usize) -> Vec<Vec<usize>> {
    let n = inst.n();
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, list) in lists.iter_mut().enumerate().skip(1) {
        let mut cand: Vec<(f64, usize)> = (1..n)
            .filter(|&j| j != i)
            .map(|j| {
                let d = inst.d(i, j);
                let prox = if inst.has_time_windows() {
                    // i before j: waiting and time warp, as in PyVRP's proximity measure.
                    let wait = (inst.ready[j] - d - inst.service[i] - inst.due[i]).max(0.0);
                    let warp = (inst.ready[i] + inst.service[i] + d - inst.due[j]).max(0.0);
                    d + 0.2 * wait + warp
                } else {
                    d
                };
                (prox, j)
            })
            .collect();
        cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *list = cand.iter().take(k).map(|c| c.1).collect();
    }
    let mut sym = lists.clone();
    for (i, list) in lists.iter().enumerate().skip(1) {
        for &j in list {
            if !sym[j].contains(&i) {
                sym[j].push(i);
            }
        }
    }
    sym
}

/// A piece of an existing route: positions `i..=j` of route `r`, maybe reversed.
#[derive(Debug, Clone, Copy, Default)]
struct Piece {
    r: u32,
    i: u32,
    j: u32,
    rev: bool,
}

/// A proposed route as a concatenation of at most five pieces (kept small: moves copy it).
#[derive(Debug, Clone, Copy, Default)]
struct Pieces {
    p: [Piece; 5],
    n: u8,
}

impl Pieces {
    #[inline]
    fn push(&mut self, r: usize, i: usize, j: usize, rev: bool) -> &mut Self {
        if i <= j {
            self.p[self.n as usize] = Piece {
                r: r as u32,
                i: i as u32,
                j: j as u32,
                rev,
            };
            self.n += 1;
        }
        self
    }
    #[inline]
    fn iter(&self) -> impl Iterator<Item = (usize, usize, usize, bool)> + '_ {
        self.p[..self.n as usize]
            .iter()
            .map(|p| (p.r as usize, p.i as usize, p.j as usize, p.rev))
    }
}

#[derive(Debug, Clone, Default)]
struct RouteData {
    nodes: Vec<usize>,
    cum_dist: Vec<f64>,
    cum_load: Vec<i64>,
    pre: Vec<Segment>,
    suf: Vec<Segment>,
    cost: f64,
    /// Polar sector of the customers around the depot (SWAP* pruning).
    sector: Sector,
}

/// Options that restrict the search (used by re-planning).
#[derive(Debug, Clone, Default)]
pub(crate) struct Restrictions {
    /// Route each customer is anchored to (`usize::MAX` = free).
    pub anchor: Vec<usize>,
    /// Cost added per anchored customer served by another route.
    pub reassign_penalty: f64,
    /// Reject every move that leaves a route over capacity or late.
    pub hard: bool,
}

/// The local search state for one solution.
pub(crate) struct LocalSearch<'a> {
    inst: &'a Instance,
    neigh: Vec<Vec<usize>>,
    routes: Vec<RouteData>,
    route_of: Vec<usize>,
    pos_of: Vec<usize>,
    pen: Penalties,
    restrict: Option<Restrictions>,
    last_modified: Vec<u64>,
    last_tested: Vec<u64>,
    /// Move counter: never reset, so SWAP* caches stamped with it stay comparable.
    counter: u64,
    /// Number of moves applied since creation.
    pub moves: u64,
    /// Number of move evaluations (candidate moves priced) since creation.
    pub evals: u64,
    /// SWAP* exchanges applied since creation.
    pub star_moves: u64,
    /// Whether SWAP* runs (on capacity-only problems).
    pub use_swap_star: bool,
    angle: Vec<i32>,
    star_top: Vec<Top3>,
    star_last_tested: Vec<u64>,
    route_order: Vec<usize>,
}

impl<'a> LocalSearch<'a> {
    pub(crate) fn new(inst: &'a Instance, neigh: &[Vec<usize>]) -> Self {
        Self {
            inst,
            neigh: neigh.to_vec(),
            routes: Vec::new(),
            route_of: vec![NONE; inst.n()],
            pos_of: vec![0; inst.n()],
            pen: Penalties { cap: 1.0, tw: 1.0 },
            restrict: None,
            last_modified: Vec::new(),
            last_tested: vec![0; inst.n()],
            counter: 1,
            moves: 0,
            evals: 0,
            star_moves: 0,
            use_swap_star: true,
            angle: inst
                .coords
                .iter()
                .map(|&p| polar_angle(inst.coords[0], p))
                .collect(),
            star_top: Vec::new(),
            star_last_tested: Vec::new(),
            route_order: Vec::new(),
        }
    }

    pub(crate) fn set_restrictions(&mut self, r: Option<Restrictions>) {
        self.restrict = r;
    }

    /// Loads routes (customers only; one entry per vehicle slot, possibly empty).
    pub(crate) fn load(&mut self, routes: &[Vec<usize>], pen: Penalties) {
        self.pen = pen;
        self.routes.resize_with(routes.len(), RouteData::default);
        // Every route counts as modified now (this also invalidates the SWAP* caches).
        self.counter += 1;
        self.last_modified = vec![self.counter; routes.len()];
        self.star_last_tested = vec![0; routes.len()];
        if self.swap_star_enabled() && self.star_top.len() < routes.len() * self.inst.n() {
            self.star_top
                .resize(routes.len() * self.inst.n(), Top3::default());
        }
        self.route_of.iter_mut().for_each(|r| *r = NONE);
        for (r, custs) in routes.iter().enumerate() {
            let nodes = &mut self.routes[r].nodes;
            nodes.clear();
            nodes.push(0);
            nodes.extend_from_slice(custs);
            nodes.push(0);
            self.refresh(r);
        }
        self.last_tested.iter_mut().for_each(|t| *t = 0);
    }

    /// The current routes, customers only.
    pub(crate) fn routes(&self) -> Vec<Vec<usize>> {
        self.routes
            .iter()
            .map(|r| r.nodes[1..r.nodes.len() - 1].to_vec())
            .collect()
    }

    fn refresh(&mut self, r: usize) {
        let inst = self.inst;
        let rd = &mut self.routes[r];
        let len = rd.nodes.len();
        rd.cum_dist.clear();
        rd.cum_load.clear();
        let (mut d, mut l) = (0.0, 0i64);
        if len > 2 {
            rd.sector = Sector::at(self.angle[rd.nodes[1]]);
        }
        for k in 0..len {
            let node = rd.nodes[k];
            if k > 0 {
                d += inst.d(rd.nodes[k - 1], node);
            }
            l += inst.demand[node];
            rd.cum_dist.push(d);
            rd.cum_load.push(l);
            if node != 0 {
                self.route_of[node] = r;
                self.pos_of[node] = k;
                rd.sector.extend(self.angle[node]);
            }
        }
        let mut warp = 0.0;
        if inst.timed() {
            rd.pre.clear();
            rd.suf.clear();
            let mut seg = Segment::single(inst, rd.nodes[0]);
            rd.pre.push(seg);
            for k in 1..len {
                seg = seg.then(inst, &Segment::single(inst, rd.nodes[k]));
                rd.pre.push(seg);
            }
            warp = seg.total_warp(inst);
            rd.suf.resize(len, seg);
            let mut seg = Segment::single(inst, rd.nodes[len - 1]);
            rd.suf[len - 1] = seg;
            for k in (0..len - 1).rev() {
                seg = Segment::single(inst, rd.nodes[k]).then(inst, &seg);
                rd.suf[k] = seg;
            }
        }
        let off = {
            let nodes = &self.routes[r].nodes;
            self.off_count(r, &nodes[1..len - 1])
        };
        let rd = &mut self.routes[r];
        rd.cost = d + self.pen.cap * (l - inst.capacity).max(0) as f64 + self.pen.tw * warp + off;
    }

    fn off_count(&self, target: usize, custs: &[usize]) -> f64 {
        match &self.restrict {
            Some(rs) if rs.reassign_penalty > 0.0 => {
                let moved = custs
                    .iter()
                    .filter(|&&c| rs.anchor[c] != NONE && rs.anchor[c] != target)
                    .count();
                if moved == 0 {
                    0.0
                } else {
                    moved as f64 * rs.reassign_penalty
                }
            }
            _ => 0.0,
        }
    }

    fn piece_segment(&self, r: usize, i: usize, j: usize, rev: bool) -> Segment {
        let rd = &self.routes[r];
        let inst = self.inst;
        if i == j {
            return Segment::single(inst, rd.nodes[i]);
        }
        if !rev {
            if i == 0 {
                return rd.pre[j];
            }
            if j == rd.nodes.len() - 1 {
                return rd.suf[i];
            }
            let mut s = Segment::single(inst, rd.nodes[i]);
            for k in i + 1..=j {
                s = s.then(inst, &Segment::single(inst, rd.nodes[k]));
            }
            s
        } else {
            let mut s = Segment::single(inst, rd.nodes[j]);
            for k in (i..j).rev() {
                s = s.then(inst, &Segment::single(inst, rd.nodes[k]));
            }
            s
        }
    }

    /// Distance of the route formed by `ps` (a lower bound of its penalised cost).
    #[inline]
    fn eval_dist(&self, ps: &Pieces) -> f64 {
        let inst = self.inst;
        let mut dist = 0.0;
        let mut prev_last = NONE;
        for (r, i, j, rev) in ps.iter() {
            let rd = &self.routes[r];
            let (first, last) = if rev {
                (rd.nodes[j], rd.nodes[i])
            } else {
                (rd.nodes[i], rd.nodes[j])
            };
            if prev_last != NONE {
                dist += inst.d(prev_last, first);
            }
            prev_last = last;
            dist += rd.cum_dist[j] - rd.cum_dist[i];
        }
        dist
    }

    /// Penalised cost of the route formed by `ps` (whose distance is `dist`), placed in
    /// route slot `target`; `None` when hard restrictions reject it.
    fn eval(&self, ps: &Pieces, dist: f64, target: usize) -> Option<f64> {
        let inst = self.inst;
        let mut load = 0i64;
        let mut seg: Option<Segment> = None;
        let mut off = 0.0;
        for (r, i, j, rev) in ps.iter() {
            let rd = &self.routes[r];
            load += rd.cum_load[j] - if i > 0 { rd.cum_load[i - 1] } else { 0 };
            if inst.timed() {
                let s = self.piece_segment(r, i, j, rev);
                seg = Some(match seg {
                    None => s,
                    Some(a) => a.then(inst, &s),
                });
            }
            if self.restrict.is_some() {
                let lo = i.max(1);
                let hi = j.min(rd.nodes.len() - 2);
                if lo <= hi {
                    off += self.off_count(target, &rd.nodes[lo..=hi]);
                }
            }
        }
        if off.is_infinite() {
            return None;
        }
        let warp = seg.map_or(0.0, |s| s.total_warp(inst));
        let excess = (load - inst.capacity).max(0);
        if let Some(rs) = &self.restrict {
            if rs.hard && (excess > 0 || warp > 1e-9) {
                return None;
            }
        }
        Some(dist + self.pen.cap * excess as f64 + self.pen.tw * warp + off)
    }

    fn materialise(&self, ps: &Pieces) -> Vec<usize> {
        let mut out = Vec::new();
        for (r, i, j, rev) in ps.iter() {
            let nodes = &self.routes[r].nodes;
            if rev {
                out.extend(nodes[i..=j].iter().rev());
            } else {
                out.extend_from_slice(&nodes[i..=j]);
            }
        }
        out
    }

    /// Evaluates a move producing `a` in route `ra` (and `b` in `rb` when distinct) and
    /// applies it when it improves the penalised cost.
    fn try_apply(&mut self, ra: usize, a: &Pieces, rb: usize, b: Option<&Pieces>) -> bool {
        self.evals += 1;
        let old = self.routes[ra].cost
            + if b.is_some() {
                self.routes[rb].cost
            } else {
                0.0
            };
        // Penalties are non-negative: distance alone rules out most moves cheaply.
        let da = self.eval_dist(a);
        let db = b.map_or(0.0, |b| self.eval_dist(b));
        if da + db >= old - EPS {
            return false;
        }
        let Some(ca) = self.eval(a, da, ra) else {
            return false;
        };
        if ca + db >= old - EPS {
            return false;
        }
        let cb = match b {
            Some(b) => match self.eval(b, db, rb) {
                Some(c) => c,
                None => return false,
            },
            None => 0.0,
        };
        if ca + cb >= old - EPS {
            return false;
        }
        let na = self.materialise(a);
        let nb = b.map(|b| self.materialise(b));
        self.routes[ra].nodes = na;
        self.refresh(ra);
        self.counter += 1;
        self.last_modified[ra] = self.counter;
        if let Some(nb) = nb {
            self.routes[rb].nodes = nb;
            self.refresh(rb);
            self.last_modified[rb] = self.counter;
        }
        self.moves += 1;
        true
    }

    /// Runs the local search to a local optimum (or until `stop()` says so).
    pub(crate) fn run<R: Rng>(&mut self, rng: &mut R, stop: impl FnMut() -> bool) {
        self.search(rng, stop, false);
    }

    /// Local search around what changed since the last [`LocalSearch::mark_all_tested`]:
    /// a pair (or a route pair for SWAP*) is tried only when one of its routes was modified
    /// since, from the first loop on. Used by the iterated local search, whose perturbations
    /// touch a few routes of an otherwise locally optimal solution.
    pub(crate) fn run_focused<R: Rng>(&mut self, rng: &mut R) {
        self.search(rng, || false, true);
    }

    fn search<R: Rng>(&mut self, rng: &mut R, mut stop: impl FnMut() -> bool, focused: bool) {
        let mut order: Vec<usize> = (1..self.inst.n())
            .filter(|&c| self.route_of[c] != NONE)
            .collect();
        order.shuffle(rng);
        if !focused {
            for c in &order {
                self.neigh[*c].shuffle(rng);
            }
        }
        let mut loop_id = 0u32;
        let mut improved = true;
        // Route order for SWAP*, shuffled like the customer order.
        self.route_order = (0..self.routes.len()).collect();
        self.route_order.shuffle(rng);
        while improved {
            improved = false;
            for &u in &order {
                let last_test = self.last_tested[u];
                self.last_tested[u] = self.counter;
                for k in 0..self.neigh[u].len() {
                    let v = self.neigh[u][k];
                    if self.route_of[v] == NONE {
                        continue;
                    }
                    if (loop_id > 0 || focused)
                        && self.last_modified[self.route_of[u]]
                            .max(self.last_modified[self.route_of[v]])
                            <= last_test
                    {
                        continue;
                    }
                    if self.try_pair(u, v) {
                        improved = true;
                    }
                }
                // Focused: only customers whose route changed since they were last tried
                // (the scan for an empty route costs O(routes) per customer).
                let try_empty = if focused {
                    self.last_modified[self.route_of[u]] > last_test
                } else {
                    loop_id > 0
                };
                if try_empty && self.try_empty(u) {
                    improved = true;
                }
            }
            if self.swap_star_enabled() && self.star_loop(loop_id, focused) {
                improved = true;
            }
            loop_id += 1;
            if stop() {
                break;
            }
        }
    }
}

impl LocalSearch<'_> {
    /// One pass of SWAP* over the route pairs whose sectors overlap and of which one route
    /// changed since the pair was last tested (HGS-CVRP's route loop).
    fn star_loop(&mut self, loop_id: u32, focused: bool) -> bool {
        let mut improved = false;
        for k in 0..self.route_order.len() {
            let ra = self.route_order[k];
            let last = self.star_last_tested[ra];
            self.star_last_tested[ra] = self.counter;
            for rb in ra + 1..self.routes.len() {
                if self.routes[ra].nodes.len() <= 2 || self.routes[rb].nodes.len() <= 2 {
                    continue;
                }
                if (loop_id > 0 || focused)
                    && self.last_modified[ra].max(self.last_modified[rb]) <= last
                {
                    continue;
                }
                if !self.sector(ra).overlaps(&self.sector(rb)) {
                    continue;
                }
                if self.swap_star(ra, rb) {
                    improved = true;
                }
            }
        }
        improved
    }
}
