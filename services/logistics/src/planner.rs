//! The planner task: waves touched by the consumer are re-planned after a
//! quiet period (debounce), one at a time, outside the exactly-once path.
//!
//! Logging: one plan is a DEBUG line; at INFO the planner writes one
//! summary per `log_summary` period (only when it planned something), so
//! the INFO volume does not grow with the order rate.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mesh_store::StateStore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::{PLANS, PLAN_SECONDS};
use crate::wave::{self, Routing};
use crate::{Clock, Error};

/// Tells the planner a wave changed. Cheap to clone.
#[derive(Clone)]
pub struct PlannerHandle(mpsc::UnboundedSender<String>);

impl PlannerHandle {
    /// Marks `wave` for re-planning (ignored once the planner stopped).
    pub fn touch(&self, wave: &str) {
        let _ = self.0.send(wave.to_string());
    }
}

/// What the planner needs.
pub struct PlannerCtx {
    pub store: StateStore,
    pub partitions: i32,
    pub routing: Routing,
    pub debounce: Duration,
    /// Period of the INFO summary.
    pub log_summary: Duration,
    pub clock: Clock,
    /// Fraud, asked for decisions that have not arrived at planning time.
    pub fraud: Option<mesh_runtime::peers::Peer>,
}

/// Starts the planner; it stops when `shutdown` is cancelled.
pub fn spawn(
    ctx: PlannerCtx,
    shutdown: CancellationToken,
) -> (PlannerHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(Arc::new(ctx), rx, shutdown));
    (PlannerHandle(tx), task)
}

/// What the planner did since the last summary.
#[derive(Debug, Default)]
pub struct Summary {
    /// Plans stored, by method.
    pub plans: BTreeMap<String, u64>,
    /// Latest (served stops, distance) of each wave planned.
    pub waves: BTreeMap<String, (usize, f64)>,
    pub failed: u64,
}

impl Summary {
    pub fn record(&mut self, p: &wave::StoredPlan) {
        *self.plans.entry(p.method.clone()).or_default() += 1;
        let stops = p.routes.iter().map(|r| r.stops.len()).sum();
        self.waves.insert(p.wave_id.clone(), (stops, p.distance));
    }

    /// Writes the INFO summary line and starts a new period; nothing when
    /// nothing happened.
    pub fn flush(&mut self) {
        if self.plans.is_empty() && self.failed == 0 {
            return;
        }
        let count = |m: &str| self.plans.get(m).copied().unwrap_or(0);
        tracing::info!(
            waves = self.waves.len(),
            plans = self.plans.values().sum::<u64>(),
            solves = count("solve"),
            replans = count("replan"),
            reoptimizations = count("reoptimize"),
            stops = self.waves.values().map(|w| w.0).sum::<usize>(),
            distance = self.waves.values().map(|w| w.1).sum::<f64>().round(),
            failed = self.failed,
            "planner summary"
        );
        *self = Summary::default();
    }
}

async fn run(
    ctx: Arc<PlannerCtx>,
    mut rx: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let mut summary = Summary::default();
    let mut refused = HashSet::new();
    let mut tick = tokio::time::interval(ctx.log_summary.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        let mut dirty = BTreeSet::new();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return summary.flush(),
            _ = tick.tick() => {
                summary.flush();
                continue;
            }
            w = rx.recv() => match w {
                Some(w) => { dirty.insert(w); }
                None => return summary.flush(),
            },
        }
        // Debounce: keep collecting until the stream is quiet for a while.
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return summary.flush(),
                w = rx.recv() => match w {
                    Some(w) => { dirty.insert(w); }
                    None => break,
                },
                _ = tokio::time::sleep(ctx.debounce) => break,
            }
        }
        for w in dirty {
            if shutdown.is_cancelled() {
                return summary.flush();
            }
            let timer = std::time::Instant::now();
            match wave::plan_wave(
                &ctx.store,
                ctx.partitions,
                &ctx.routing,
                &w,
                ctx.clock.now_ms(),
                ctx.fraud.as_ref(),
            )
            .await
            {
                Ok(Some(p)) => {
                    PLAN_SECONDS
                        .with_label_values(&[p.method.as_str()])
                        .observe(timer.elapsed().as_secs_f64());
                    tracing::debug!(
                        wave = %w,
                        version = p.version,
                        method = %p.method,
                        vehicles = p.routes.len(),
                        unassigned = p.unassigned.len(),
                        distance = p.distance,
                        "wave planned"
                    );
                    refused.remove(&w);
                    summary.record(&p);
                }
                Ok(None) => {}
                Err(e @ Error::NoDepot { .. }) => {
                    PLANS.with_label_values(&["any", "refused"]).inc();
                    summary.failed += 1;
                    // Once per wave: every order of the wave would repeat it.
                    if refused.insert(w.clone()) {
                        tracing::warn!(wave = %w, %e, "wave refused");
                    }
                }
                Err(e) => {
                    PLANS.with_label_values(&["any", "error"]).inc();
                    summary.failed += 1;
                    tracing::warn!(wave = %w, %e, "wave planning failed");
                }
            }
        }
        if summary_due(&mut tick) {
            summary.flush();
        }
    }
}

/// Whether the summary period elapsed while the planner was busy (the
/// tick then fires at once; consuming it here keeps one line per period).
fn summary_due(tick: &mut tokio::time::Interval) -> bool {
    use futures::FutureExt;
    tick.tick().now_or_never().is_some()
}
