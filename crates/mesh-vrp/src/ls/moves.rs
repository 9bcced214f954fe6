//! The move operators: each builds the new route(s) as pieces of the current ones and hands
//! them to `try_apply`, which applies the move only if it lowers the penalised cost.

use super::{LocalSearch, Pieces};

impl LocalSearch<'_> {
    /// Moves block `[pu, pu+len)` of route `ru` (reversed if `rev`) after position `pv` of `rv`.
    pub(super) fn relocate(
        &mut self,
        ru: usize,
        pu: usize,
        len: usize,
        rev: bool,
        rv: usize,
        pv: usize,
    ) -> bool {
        let lu = self.routes[ru].nodes.len();
        let end = pu + len - 1;
        if end >= lu - 1 {
            return false;
        }
        if ru != rv {
            let lv = self.routes[rv].nodes.len();
            let mut a = Pieces::default();
            a.push(ru, 0, pu - 1, false)
                .push(ru, end + 1, lu - 1, false);
            let mut b = Pieces::default();
            b.push(rv, 0, pv, false)
                .push(ru, pu, end, rev)
                .push(rv, pv + 1, lv - 1, false);
            return self.try_apply(ru, &a, rv, Some(&b));
        }
        if pv + 1 >= pu && pv <= end {
            return false;
        }
        let mut a = Pieces::default();
        if pu < pv {
            a.push(ru, 0, pu - 1, false)
                .push(ru, end + 1, pv, false)
                .push(ru, pu, end, rev)
                .push(ru, pv + 1, lu - 1, false);
        } else {
            a.push(ru, 0, pv, false)
                .push(ru, pu, end, rev)
                .push(ru, pv + 1, pu - 1, false)
                .push(ru, end + 1, lu - 1, false);
        }
        self.try_apply(ru, &a, ru, None)
    }

    /// Exchanges block `[pu, pu+la)` of `ru` with block `[pv, pv+lb)` of `rv`.
    pub(super) fn swap(
        &mut self,
        ru: usize,
        pu: usize,
        la: usize,
        rv: usize,
        pv: usize,
        lb: usize,
    ) -> bool {
        let lu = self.routes[ru].nodes.len();
        let lv = self.routes[rv].nodes.len();
        let (eu, ev) = (pu + la - 1, pv + lb - 1);
        if eu >= lu - 1 || ev >= lv - 1 {
            return false;
        }
        if ru != rv {
            let mut a = Pieces::default();
            a.push(ru, 0, pu - 1, false)
                .push(rv, pv, ev, false)
                .push(ru, eu + 1, lu - 1, false);
            let mut b = Pieces::default();
            b.push(rv, 0, pv - 1, false)
                .push(ru, pu, eu, false)
                .push(rv, ev + 1, lv - 1, false);
            return self.try_apply(ru, &a, rv, Some(&b));
        }
        let (p1, e1, p2, e2) = if pu < pv {
            (pu, eu, pv, ev)
        } else {
            (pv, ev, pu, eu)
        };
        if e1 >= p2 {
            return false;
        }
        let mut a = Pieces::default();
        a.push(ru, 0, p1 - 1, false)
            .push(ru, p2, e2, false)
            .push(ru, e1 + 1, p2 - 1, false)
            .push(ru, p1, e1, false)
            .push(ru, e2 + 1, lu - 1, false);
        self.try_apply(ru, &a, ru, None)
    }

    /// Intra-route 2-opt: reverses the path strictly after `pu` up to `pv` (pu < pv).
    pub(super) fn two_opt(&mut self, r: usize, pu: usize, pv: usize) -> bool {
        if pu + 1 >= pv {
            return false;
        }
        let l = self.routes[r].nodes.len();
        let mut a = Pieces::default();
        a.push(r, 0, pu, false)
            .push(r, pu + 1, pv, true)
            .push(r, pv + 1, l - 1, false);
        self.try_apply(r, &a, r, None)
    }

    /// 2-opt*: replaces (u,x),(v,y) by (u,y),(v,x) — exchange of route tails.
    pub(super) fn two_opt_star(&mut self, ru: usize, pu: usize, rv: usize, pv: usize) -> bool {
        let (lu, lv) = (self.routes[ru].nodes.len(), self.routes[rv].nodes.len());
        let mut a = Pieces::default();
        a.push(ru, 0, pu, false).push(rv, pv + 1, lv - 1, false);
        let mut b = Pieces::default();
        b.push(rv, 0, pv, false).push(ru, pu + 1, lu - 1, false);
        self.try_apply(ru, &a, rv, Some(&b))
    }

    /// 2-opt* variant: replaces (u,x),(v,y) by (u,v),(x,y), reversing the heads/tails.
    pub(super) fn two_opt_star_rev(&mut self, ru: usize, pu: usize, rv: usize, pv: usize) -> bool {
        let (lu, lv) = (self.routes[ru].nodes.len(), self.routes[rv].nodes.len());
        let mut a = Pieces::default();
        a.push(ru, 0, pu, false)
            .push(rv, 1, pv, true)
            .push(ru, lu - 1, lu - 1, false);
        let mut b = Pieces::default();
        b.push(rv, 0, 0, false)
            .push(ru, pu + 1, lu - 2, true)
            .push(rv, pv + 1, lv - 1, false);
        self.try_apply(ru, &a, rv, Some(&b))
    }

    pub(super) fn try_pair(&mut self, u: usize, v: usize) -> bool {
        let (ru, pu, rv, pv) = (
            self.route_of[u],
            self.pos_of[u],
            self.route_of[v],
            self.pos_of[v],
        );
        if self.relocate(ru, pu, 1, false, rv, pv)
            || self.relocate(ru, pu, 2, false, rv, pv)
            || self.relocate(ru, pu, 2, true, rv, pv)
            || self.swap(ru, pu, 1, rv, pv, 1)
            || self.swap(ru, pu, 2, rv, pv, 1)
            || self.swap(ru, pu, 2, rv, pv, 2)
        {
            return true;
        }
        if ru == rv {
            if pu < pv && self.two_opt(ru, pu, pv) {
                return true;
            }
        } else if self.two_opt_star(ru, pu, rv, pv) || self.two_opt_star_rev(ru, pu, rv, pv) {
            return true;
        }
        // Insert u before v when v opens its route.
        if pv == 1 && (ru != rv || pu != 1) && self.relocate(ru, pu, 1, false, rv, 0) {
            return true;
        }
        false
    }

    pub(super) fn try_empty(&mut self, u: usize) -> bool {
        let Some(e) = (0..self.routes.len()).find(|&r| self.routes[r].nodes.len() == 2) else {
            return false;
        };
        let (ru, pu) = (self.route_of[u], self.pos_of[u]);
        self.relocate(ru, pu, 1, false, e, 0) || self.two_opt_star(ru, pu, e, 0)
    }
}
