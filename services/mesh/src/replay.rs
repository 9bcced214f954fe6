//! `mesh replay`: rebuild a service's state from offset 0 into an empty
//! store. Run it with the service stopped: a live consumer would move the
//! watermarks past the records being replayed.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_bus::{ConsumerConfig, Handler, HandlerError, Record};
use tokio_util::sync::CancellationToken;

use crate::node::{Backends, MeshConfig};

/// What a replay did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayReport {
    pub service: String,
    pub keys_cleared: u64,
    pub records: u64,
    pub seconds: f64,
}

/// Wraps a handler and counts progress per partition.
struct Tracking<H> {
    inner: H,
    progress: Arc<Mutex<HashMap<(String, i32), i64>>>,
    records: Arc<std::sync::atomic::AtomicU64>,
}

impl<H: Handler> Handler for Tracking<H> {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        self.inner.handle(records).await?;
        self.records
            .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(last) = records.last() {
            self.progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((last.topic.clone(), last.partition), last.offset);
        }
        Ok(())
    }
}

/// High watermarks (next offset) of every partition of `topics`.
fn end_offsets(brokers: &str, topics: &[&str]) -> anyhow::Result<HashMap<(String, i32), i64>> {
    crate::log::end_offsets(&crate::log::reader(brokers, "replay-ends")?, topics)
}

/// Clears the profile scope and re-applies every record. The replay ends
/// when every partition reached its end offset and nothing new arrived for
/// a quiet period, with end offsets fetched again then: some brokers report
/// end offsets late, so a single early reading is not trusted.
pub async fn replay_profile(
    cfg: &MeshConfig,
    backends: &Backends,
    show_progress: bool,
) -> anyhow::Result<ReplayReport> {
    let started = std::time::Instant::now();
    let topics = cfg.topics();
    let cleared = backends
        .store
        .clear_scope(mesh_profile::handler::SCOPE)
        .await?;
    let brokers = backends.brokers.clone();
    let inputs: Vec<String> = topics.inputs().iter().map(|s| s.to_string()).collect();
    let fetch_ends = move || {
        let brokers = brokers.clone();
        let inputs = inputs.clone();
        tokio::task::spawn_blocking(move || {
            end_offsets(
                &brokers,
                &inputs.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        })
    };
    let mut targets = fetch_ends().await??;
    let total: i64 = targets.values().sum();
    let progress = Arc::new(Mutex::new(HashMap::new()));
    let records = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handler = Arc::new(Tracking {
        inner: mesh_profile::handler::ProfileHandler {
            store: backends.store.clone(),
            producer: backends.producer.clone(),
            dead_letter_topic: topics.dead_letter.clone(),
            group: "replay".into(),
            // Re-announces lifecycle transitions with their original ids.
            profiles: mesh_profile::profiles(
                &cfg.profile,
                &backends.profile_deps(cfg),
                Arc::new(mesh_profile::engine::SystemClock),
            ),
        },
        progress: progress.clone(),
        records: records.clone(),
    });
    let group = format!("{}-replay-{}", cfg.profile.group, std::process::id());
    let mut cc = ConsumerConfig::new(&backends.brokers, &group, &topics.inputs());
    cc.extra = cfg.consumer_extra.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(mesh_bus::run_consumer(
        cc,
        handler,
        Assignment::default(),
        stop.clone(),
    ));
    let bar = if show_progress {
        indicatif::ProgressBar::new(total as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "replay {bar:40} {pos}/{len} records {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let quiet = Duration::from_secs(2);
    let (mut last_count, mut last_change) = (0u64, std::time::Instant::now());
    loop {
        let done = {
            let p = progress.lock().unwrap_or_else(|e| e.into_inner());
            targets
                .iter()
                .all(|(k, high)| *high == 0 || p.get(k).is_some_and(|o| *o + 1 >= *high))
        };
        let count = records.load(std::sync::atomic::Ordering::Relaxed);
        if count != last_count {
            (last_count, last_change) = (count, std::time::Instant::now());
        }
        bar.set_length(bar.length().unwrap_or(0).max(count));
        bar.set_position(count);
        if done && last_change.elapsed() >= quiet {
            let again = fetch_ends().await??;
            if again == targets {
                break;
            }
            targets = again;
        }
        if task.is_finished() {
            anyhow::bail!("replay consumer stopped before reaching the end offsets");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await??;
    bar.finish_and_clear();
    Ok(ReplayReport {
        service: "profile".into(),
        keys_cleared: cleared,
        records: records.load(std::sync::atomic::Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}
