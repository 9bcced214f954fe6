//! Drift of incremental replans and the background re-optimization.
//!
//! Why plans drift: a replan keeps every planned stop on its vehicle (the
//! anchored local search charges a penalty per stop moved to another
//! vehicle) and inserts new stops where there is room. Once the early
//! routes are full, every new stop, wherever it lies, goes to the few
//! routes with spare capacity, so those routes grow across the whole
//! area; nothing ever re-solved the wave. Here a replanned wave is
//! compared with a fresh solve of the same stops, and the fresh plan is
//! adopted when the replan is longer by more than a quarter of the
//! tolerance.
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

/// A fresh plan replaces the replan when the replan is longer by more
/// than `drift / ADOPT_SHARE` (0.5% at the default 2%): small enough that
/// the plan stays well inside the tolerance between comparisons, large
/// enough that solver noise does not reshuffle vehicles on every check.
pub const ADOPT_SHARE: f64 = 4.0;

/// How far a replan is from the last fresh solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Since {
    /// Replans since the last fresh solve, this one included.
    pub replans: u32,
    /// Milliseconds since the last fresh solve.
    pub age_ms: i64,
}

/// Whether a replan is compared with a fresh solve: `served` stops against
/// the `solved` ones of the last fresh solve, `estimated` drift.
pub fn due(cfg: &Reoptimize, since: Since, served: usize, solved: usize, estimated: f64) -> bool {
    let grown = cfg.growth > 0.0 && served as f64 > solved as f64 * (1.0 + cfg.growth);
    let old = !cfg.max_age.is_zero() && since.age_ms >= cfg.max_age.as_millis() as i64;
    cfg.drift > 0.0
        && ((cfg.every > 0 && since.replans >= cfg.every) || grown || old || estimated > cfg.drift)
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
/// fresh routes if they are shorter by more than [`ADOPT_SHARE`]th of the
/// tolerance.
pub fn reoptimize(
    cfg: &Reoptimize,
    prev: &StoredPlan,
    since: Since,
    routes: &[Vec<usize>],
    distance: f64,
    solve: impl FnOnce(&[usize]) -> Result<(Vec<Vec<usize>>, f64)>,
) -> Check {
    // Sorted: the fresh solve sees the stops in the order a fresh solve of
    // the wave would (`wave::fresh_distance`), so both find the same plan.
    let mut served: Vec<usize> = routes.iter().flatten().copied().collect();
    served.sort_unstable();
    let estimated = estimated_drift(prev, distance, served.len());
    if served.is_empty() || !due(cfg, since, served.len(), prev.solved_stops, estimated) {
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
    if serves_all && drift > cfg.drift / ADOPT_SHARE {
        REOPTIMIZATIONS.with_label_values(&["adopted"]).inc();
        tracing::debug!(wave = %prev.wave_id, drift, replans = since.replans, "re-optimized drifted plan");
        Check::Adopted { routes: fresh }
    } else {
        REOPTIMIZATIONS.with_label_values(&["kept"]).inc();
        Check::Kept { fresh_distance }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn since(replans: u32, age_ms: i64) -> Since {
        Since { replans, age_ms }
    }

    #[test]
    fn comparison_is_due_on_count_growth_age_or_estimated_drift() {
        let cfg = Reoptimize {
            drift: 0.02,
            every: 10,
            growth: 0.05,
            max_age: Duration::from_secs(10),
        };
        assert!(!due(&cfg, since(3, 1_000), 100, 100, 0.01));
        assert!(due(&cfg, since(10, 1_000), 100, 100, 0.0));
        assert!(due(&cfg, since(3, 1_000), 100, 100, 0.05));
        assert!(!due(&cfg, since(3, 1_000), 105, 100, 0.0));
        assert!(due(&cfg, since(3, 1_000), 106, 100, 0.0));
        assert!(due(&cfg, since(1, 10_000), 100, 100, 0.0));
        let off = Reoptimize { drift: 0.0, ..cfg };
        assert!(!due(&off, since(100, 100_000), 1_000, 1, 1.0));
        let count_only = Reoptimize {
            growth: 0.0,
            max_age: Duration::ZERO,
            ..cfg
        };
        assert!(!due(&count_only, since(3, 1_000_000), 1_000, 1, 0.0));
    }
}
