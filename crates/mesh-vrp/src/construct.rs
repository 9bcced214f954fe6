//! Regret-2 insertion: the construction heuristic used to (re)insert customers into existing
//! routes (re-planning, route elimination) and to seed the genetic search.

use crate::instance::Instance;
use crate::ls::Penalties;
use crate::segment::Segment;

struct RouteCache {
    nodes: Vec<usize>,
    load: i64,
    pre: Vec<Segment>,
    suf: Vec<Segment>,
    warp: f64,
}

impl RouteCache {
    fn new(inst: &Instance, custs: &[usize]) -> Self {
        let mut nodes = Vec::with_capacity(custs.len() + 2);
        nodes.push(0);
        nodes.extend_from_slice(custs);
        nodes.push(0);
        let load = custs.iter().map(|&c| inst.demand[c]).sum();
        let (mut pre, mut suf) = (Vec::new(), Vec::new());
        let mut warp = 0.0;
        if inst.timed() {
            let mut s = Segment::single(inst, 0);
            pre.push(s);
            for &v in &nodes[1..] {
                s = s.then(inst, &Segment::single(inst, v));
                pre.push(s);
            }
            warp = s.total_warp(inst);
            suf = vec![s; nodes.len()];
            let mut s = Segment::single(inst, 0);
            suf[nodes.len() - 1] = s;
            for k in (0..nodes.len() - 1).rev() {
                s = Segment::single(inst, nodes[k]).then(inst, &s);
                suf[k] = s;
            }
        }
        Self {
            nodes,
            load,
            pre,
            suf,
            warp,
        }
    }

    /// Cheapest insertion of `c` (position after index `p`), penalised; `None` if `hard`
    /// and no position keeps the route feasible.
    fn best_insertion(
        &self,
        inst: &Instance,
        c: usize,
        pen: Penalties,
        hard: bool,
    ) -> Option<(f64, usize)> {
        let q = inst.capacity;
        let new_load = self.load + inst.demand[c];
        if hard && new_load > q {
            return None;
        }
        let load_pen = pen.cap * ((new_load - q).max(0) - (self.load - q).max(0)) as f64;
        let mut best: Option<(f64, usize)> = None;
        for p in 0..self.nodes.len() - 1 {
            let (a, b) = (self.nodes[p], self.nodes[p + 1]);
            let mut delta = inst.d(a, c) + inst.d(c, b) - inst.d(a, b) + load_pen;
            if inst.timed() {
                let seg = self.pre[p]
                    .then(inst, &Segment::single(inst, c))
                    .then(inst, &self.suf[p + 1]);
                let warp = seg.total_warp(inst);
                if hard && warp > 1e-9 {
                    continue;
                }
                delta += pen.tw * (warp - self.warp);
            }
            if best.is_none_or(|(bd, _)| delta < bd - 1e-9) {
                best = Some((delta, p));
            }
        }
        best
    }
}

/// Inserts `customers` into `routes` (one entry per vehicle slot; empty = unused vehicle) by
/// regret-2. With `hard`, only positions keeping capacity and time windows are used;
/// customers that fit nowhere are returned.
pub(crate) fn regret_insert(
    inst: &Instance,
    routes: &mut [Vec<usize>],
    customers: &[usize],
    hard: bool,
    pen: Penalties,
) -> Vec<usize> {
    let mut todo: Vec<usize> = customers.to_vec();
    let mut caches: Vec<RouteCache> = routes.iter().map(|r| RouteCache::new(inst, r)).collect();
    let mut unassigned = Vec::new();
    while !todo.is_empty() {
        // (regret, -best cost, index in todo, route, position)
        let mut choice: Option<(f64, f64, usize, usize, usize)> = None;
        let mut hopeless = Vec::new();
        for (t, &c) in todo.iter().enumerate() {
            let mut first: Option<(f64, usize, usize)> = None;
            let mut second = f64::INFINITY;
            let mut empty_seen = false;
            for (r, cache) in caches.iter().enumerate() {
                if cache.nodes.len() == 2 {
                    if empty_seen {
                        continue;
                    }
                    empty_seen = true;
                }
                if let Some((cost, p)) = cache.best_insertion(inst, c, pen, hard) {
                    match first {
                        Some((fc, _, _)) if cost >= fc => second = second.min(cost),
                        _ => {
                            if let Some((fc, _, _)) = first {
                                second = second.min(fc);
                            }
                            first = Some((cost, r, p));
                        }
                    }
                }
            }
            match first {
                None => hopeless.push(t),
                Some((cost, r, p)) => {
                    let regret = if second.is_finite() {
                        second - cost
                    } else {
                        1e12
                    };
                    let better = match choice {
                        None => true,
                        Some((cr, cb, _, _, _)) => {
                            regret > cr + 1e-9 || ((regret - cr).abs() <= 1e-9 && -cost > cb)
                        }
                    };
                    if better {
                        choice = Some((regret, -cost, t, r, p));
                    }
                }
            }
        }
        for &t in hopeless.iter().rev() {
            unassigned.push(todo.remove(t));
        }
        let Some((_, _, t, r, p)) = choice else { break };
        let t = t - hopeless.iter().filter(|&&h| h < t).count();
        let c = todo.remove(t);
        routes[r].insert(p, c);
        caches[r] = RouteCache::new(inst, &routes[r]);
    }
    unassigned.sort_unstable();
    unassigned
}
