//! The planner task: waves touched by the consumer are re-planned after a
//! quiet period (debounce), one at a time, outside the exactly-once path.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mesh_store::StateStore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::{PLANS, PLAN_SECONDS};
use crate::wave::{self, Routing};
use crate::Clock;

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

async fn run(
    ctx: Arc<PlannerCtx>,
    mut rx: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    loop {
        let mut dirty = BTreeSet::new();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            w = rx.recv() => match w {
                Some(w) => { dirty.insert(w); }
                None => return,
            },
        }
        // Debounce: keep collecting until the stream is quiet for a while.
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                w = rx.recv() => match w {
                    Some(w) => { dirty.insert(w); }
                    None => break,
                },
                _ = tokio::time::sleep(ctx.debounce) => break,
            }
        }
        for w in dirty {
            if shutdown.is_cancelled() {
                return;
            }
            let timer = std::time::Instant::now();
            match wave::plan_wave(
                &ctx.store,
                ctx.partitions,
                &ctx.routing,
                &w,
                (ctx.clock)(),
                ctx.fraud.as_ref(),
            )
            .await
            {
                Ok(Some(p)) => {
                    PLAN_SECONDS
                        .with_label_values(&[p.method.as_str()])
                        .observe(timer.elapsed().as_secs_f64());
                    tracing::info!(
                        wave = %w,
                        version = p.version,
                        method = %p.method,
                        vehicles = p.routes.len(),
                        unassigned = p.unassigned.len(),
                        "wave planned"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    PLANS.with_label_values(&["any", "error"]).inc();
                    tracing::warn!(wave = %w, %e, "wave planning failed");
                }
            }
        }
    }
}
