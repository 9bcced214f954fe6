//! Drift of incremental replans and the background re-optimization.
//!
//! Why plans drift: a replan keeps every planned stop on its vehicle (the
//! anchored local search charges a penalty per stop moved to another
//! vehicle) and inserts new stops where there is room. Once the early
//! routes are full, every new stop, wherever it lies, goes to the few
//! routes with spare capacity, so those routes grow across the whole
//! area; nothing ever re-solved the wave. Here a replanned wave is
//! compared with a fresh solve of the same stops, and the fresh plan is
//! adopted when the replan is longer by more than half the tolerance.
use crate::error::Result;
use crate::metrics::{PLAN_DRIFT, REOPTIMIZATIONS};
use crate::plan_store::StoredPlan;
use crate::wave::Reoptimize;

/// A cheap drift estimate from distance per served stop against the last
/// fresh solve: for stops in the same area, an optimal plan's distance per
/// stop does not grow as stops are added (the depot legs are shared by more
/// stops and the stops get denser), so growth per stop is drift. Positive
/// values mean the plan looks that much longer than it should.
pub fn estimated_drift(prev: &StoredPlan, distance: f64, served: usize) -> f64 {
    if prev.solved_stops == 0 || prev.solved_distance <= 0.0 || served == 0 {
        return 0.0;
    }
    let per_stop = distance / served as f64;
    let reference = prev.solved_distance / prev.solved_stops as f64;
    per_stop / reference - 1.0
}

/// Whether a replan (the `replans`-th since the last fresh solve) is
/// compared with a fresh solve.
pub fn due(cfg: &Reoptimize, replans: u32, estimated: f64) -> bool {
    cfg.drift > 0.0 && ((cfg.every > 0 && replans >= cfg.every) || estimated > cfg.drift)
}

/// What a drift check decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// No comparison this time.
    NotDue,
    /// Compared; the replan is kept. The fresh solve's distance becomes the
    /// reference of the estimate.
    Kept { fresh_distance: f64 },
    /// The fresh routes replace the replan.
    Adopted { routes: Vec<Vec<usize>> },
}

/// After a replan of `prev` into `routes` (distance `distance`): when a
/// comparison is due, runs `solve` on the served stops and adopts the
/// fresh routes if they are shorter by more than half the tolerance.
pub fn reoptimize(
    cfg: &Reoptimize,
    prev: &StoredPlan,
    replans: u32,
    routes: &[Vec<usize>],
    distance: f64,
    solve: impl FnOnce(&[usize]) -> Result<(Vec<Vec<usize>>, f64)>,
) -> Check {
    let served: Vec<usize> = routes.iter().flatten().copied().collect();
    if served.is_empty() || !due(cfg, replans, estimated_drift(prev, distance, served.len())) {
        return Check::NotDue;
    }
    let (fresh, fresh_distance) = match solve(&served) {
        Ok(f) => f,
        Err(e) => {
            REOPTIMIZATIONS.with_label_values(&["failed"]).inc();
            tracing::warn!(wave = %prev.wave_id, %e, "re-optimization failed; keeping the replan");
            return Check::NotDue;
        }
    };
    let drift = if fresh_distance > 0.0 {
        distance / fresh_distance - 1.0
    } else {
        0.0
    };
    PLAN_DRIFT.observe(drift);
    let serves_all = fresh.iter().map(Vec::len).sum::<usize>() == served.len();
    if serves_all && drift > cfg.drift / 2.0 {
        REOPTIMIZATIONS.with_label_values(&["adopted"]).inc();
        tracing::debug!(wave = %prev.wave_id, drift, replans, "re-optimized drifted plan");
        Check::Adopted { routes: fresh }
    } else {
        REOPTIMIZATIONS.with_label_values(&["kept"]).inc();
        Check::Kept { fresh_distance }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_is_due_periodically_or_on_estimated_drift() {
        let cfg = Reoptimize {
            drift: 0.02,
            every: 10,
        };
        assert!(!due(&cfg, 3, 0.01));
        assert!(due(&cfg, 10, 0.0));
        assert!(due(&cfg, 3, 0.05));
        let off = Reoptimize {
            drift: 0.0,
            every: 10,
        };
        assert!(!due(&off, 100, 1.0));
    }
}
