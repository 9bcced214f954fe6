//! Time-window segments: constant-time concatenation of route pieces with the time-warp
//! relaxation of Vidal et al. (2013), as in HGS-TW and PyVRP's `DurationSegment`.
//!
//! A segment summarises a visit sequence by its minimum duration (travel, service and
//! waiting), accumulated time warp (lateness repaired by "travelling back in time"), and the
//! earliest / latest start that achieve them.

use crate::instance::Instance;

/// Summary of a sequence of visits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// First node.
    pub first: usize,
    /// Last node.
    pub last: usize,
    /// Minimum duration including service and waiting.
    pub duration: f64,
    /// Total time warp.
    pub time_warp: f64,
    /// Earliest start time at `first` achieving the minimum.
    pub early: f64,
    /// Latest start time at `first` without extra time warp.
    pub late: f64,
}

impl Segment {
    /// A single visit.
    #[inline]
    pub fn single(inst: &Instance, node: usize) -> Self {
        Self {
            first: node,
            last: node,
            duration: inst.service[node],
            time_warp: 0.0,
            early: inst.ready[node],
            late: inst.due[node],
        }
    }

    /// `self` followed by `other`.
    #[inline]
    pub fn then(&self, inst: &Instance, other: &Segment) -> Self {
        let travel = inst.d(self.last, other.first);
        let delta = self.duration - self.time_warp + travel;
        let wait = (other.early - delta - self.late).max(0.0);
        let warp = (self.early + delta - other.late).max(0.0);
        Self {
            first: self.first,
            last: other.last,
            duration: self.duration + other.duration + travel + wait,
            time_warp: self.time_warp + other.time_warp + warp,
            early: (other.early - delta).max(self.early) - wait,
            late: (other.late - delta).min(self.late) + warp,
        }
    }

    /// Time warp including any excess over the instance's maximum route duration.
    #[inline]
    pub fn total_warp(&self, inst: &Instance) -> f64 {
        match inst.max_duration {
            Some(limit) => self.time_warp + (self.duration - limit).max(0.0),
            None => self.time_warp,
        }
    }
}

/// Time warp of a full route (customers only, depot implicit at both ends).
pub fn route_warp(inst: &Instance, route: &[usize]) -> f64 {
    let mut seg = Segment::single(inst, 0);
    for &c in route.iter().chain(std::iter::once(&0)) {
        seg = seg.then(inst, &Segment::single(inst, c));
    }
    seg.total_warp(inst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Stop;
    use crate::solution::Solution;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// The O(1) segment algebra must agree with the checker's plain simulation on whether a
    /// route is on time, for windows tight enough that about half the routes are late.
    #[test]
    fn zero_time_warp_iff_the_checker_finds_no_lateness() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut stops = vec![Stop {
            x: 50.0,
            y: 50.0,
            demand: 0,
            ready: 0.0,
            due: 400.0,
            service: 0.0,
        }];
        for _ in 0..12 {
            let ready = rng.random_range(0.0..200.0);
            stops.push(Stop {
                x: rng.random_range(0.0..100.0),
                y: rng.random_range(0.0..100.0),
                demand: 1,
                ready,
                due: ready + rng.random_range(20.0..150.0),
                service: 5.0,
            });
        }
        let inst = Instance::from_stops("seg", &stops, 100, None, Some(300.0)).unwrap();
        let (mut on_time, mut late) = (0, 0);
        for _ in 0..400 {
            let mut custs: Vec<usize> = (1..inst.n()).collect();
            custs.shuffle(&mut rng);
            let len = rng.random_range(1..6);
            let route = custs[..len].to_vec();
            let warp = route_warp(&inst, &route);
            let required: Vec<bool> = (0..inst.n()).map(|c| route.contains(&c)).collect();
            let checked =
                crate::check::check_serving(&inst, &Solution::new(vec![route.clone()]), &required);
            assert_eq!(
                warp <= 1e-9,
                checked.is_ok(),
                "route {route:?}: warp {warp}, checker {checked:?}"
            );
            if checked.is_ok() {
                on_time += 1;
            } else {
                late += 1;
            }
        }
        assert!(
            on_time > 20 && late > 20,
            "test needs both cases: {on_time} / {late}"
        );
    }
}
