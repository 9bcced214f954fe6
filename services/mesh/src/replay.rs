//! `mesh replay`: rebuild a service's state from offset 0 into an empty
//! store. Run it with the service stopped: a live consumer would move the
//! watermarks past the records being replayed.
//!
//! Profile replays through its handler here (it counts records as they
//! apply). Churn, recommend, fraud and logistics replay by running the
//! service itself under a fresh consumer group that starts at offset 0,
//! until that group's committed offsets reach the ends of its topics. State
//! that no topic can rebuild (fraud's review labels, recommend's catalog
//! from `UpsertItems`, logistics' stock from `SetStock`) is kept: each
//! service names it in its `REPLAY_KEEPS`. Every scope also keeps its
//! erasures (`mesh_store::erasure::KEY`), so a rebuild cannot bring an
//! erased user back.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_bus::{ConsumerConfig, Handler, HandlerError, Record};
use tokio_util::sync::CancellationToken;

use crate::node::{Backends, MeshConfig};
use crate::serve::Role;

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

    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<mesh_bus::Watermark, HandlerError> {
        self.inner.applied_through(topic, partition).await
    }
}

/// High watermarks (next offset) of every partition of `topics`.
fn end_offsets(brokers: &str, topics: &[&str]) -> anyhow::Result<HashMap<(String, i32), i64>> {
    Ok(mesh_bus::log::end_offsets(
        &mesh_bus::log::reader(brokers, "replay-ends")?,
        topics,
    )?)
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
    // Erasures stay: the replay skips an erased user's events.
    let cleared = backends
        .store
        .clear_scope_keeping(mesh_profile::handler::SCOPE, &[mesh_store::erasure::KEY])
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
                &backends.deps(cfg),
                mesh_runtime::clock::system(),
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

/// Rebuilds `role`'s state: clears its scope (keeping what no topic can
/// rebuild) and runs the service under a fresh group from offset 0 until it
/// has committed the end of every partition it reads.
pub async fn replay_service(
    role: Role,
    cfg: &MeshConfig,
    backends: &Backends,
    show_progress: bool,
) -> anyhow::Result<ReplayReport> {
    if role == Role::Profile {
        return replay_profile(cfg, backends, show_progress).await;
    }
    let started = std::time::Instant::now();
    let (scope, keep): (&str, &[&str]) = match role {
        Role::Churn => (mesh_churn_svc::SCOPE, &[]),
        Role::Recommend => (
            mesh_recommend_svc::keys::SCOPE,
            mesh_recommend_svc::keys::REPLAY_KEEPS,
        ),
        Role::Fraud => (
            mesh_fraud_svc::state::SCOPE,
            mesh_fraud_svc::review::REPLAY_KEEPS,
        ),
        Role::Logistics => (mesh_logistics_svc::SCOPE, mesh_logistics_svc::REPLAY_KEEPS),
        Role::Engage => (mesh_engage_svc::SCOPE, mesh_engage_svc::keys::REPLAY_KEEPS),
        Role::Support => (mesh_support_svc::SCOPE, mesh_support_svc::REPLAY_KEEPS),
        Role::Profile | Role::Ingest | Role::Console => {
            anyhow::bail!("mesh replay: {} keeps no state to rebuild", role.name())
        }
    };
    // Erasures stay too: the replay skips an erased user's events.
    let keep: Vec<&str> = keep
        .iter()
        .copied()
        .chain([mesh_store::erasure::KEY])
        .collect();
    let cleared = backends.store.clear_scope_keeping(scope, &keep).await?;
    let mut run = cfg.clone();
    let suffix = format!("-replay-{}", std::process::id());
    let any_port: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    run.admin_addr = any_port;
    let group = {
        let (group, grpc_addr) = run
            .group_and_addr(role)
            .expect("every role with state has a group");
        group.push_str(&suffix);
        *grpc_addr = any_port;
        group.clone()
    };
    let t = cfg.topics();
    let topics: Vec<String> = match role {
        Role::Churn => vec![t.order_events.clone()],
        Role::Support => vec![t.user_events.clone()],
        Role::Logistics => vec![t.order_events.clone(), t.decisions.clone()],
        Role::Engage => vec![
            t.user_events.clone(),
            t.order_events.clone(),
            t.alerts.clone(),
        ],
        _ => vec![t.user_events.clone(), t.order_events.clone()],
    };
    let groups = vec![crate::lag::Group {
        name: group.clone(),
        topics: topics.clone(),
    }];
    let stop = CancellationToken::new();
    // No peers: the replayed service answers nobody while it runs, and what
    // it asks peers for (offers, buyer context) is not part of its state.
    let served = crate::serve::serve(
        role,
        &run,
        &mesh_runtime::config::Env::from_pairs([]),
        stop.clone(),
    )
    .await?;
    let bar = if show_progress {
        indicatif::ProgressBar::new(0)
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
    // Done when the group has committed the log ends and neither moved for
    // a quiet period: some brokers report log ends late, so one reading of
    // "no lag" is not trusted.
    let mut done_since: Option<(std::time::Instant, i64)> = None;
    let mut records: u64;
    loop {
        let (b, g, ts, n) = (
            backends.brokers.clone(),
            groups.clone(),
            topics.clone(),
            cfg.partitions,
        );
        let snap = tokio::task::spawn_blocking(move || crate::lag::sample(&b, &g, &ts, n)).await?;
        let lag = snap.groups.get(&group).copied();
        let total: i64 = snap.topic_ends.values().sum();
        records = total.max(0) as u64;
        bar.set_length(records);
        bar.set_position(records.saturating_sub(lag.unwrap_or(total).max(0) as u64));
        match (snap.error.as_deref(), lag, done_since) {
            (None, Some(0), Some((since, ends))) if ends == total => {
                if since.elapsed() >= quiet {
                    break;
                }
            }
            (None, Some(0), _) => done_since = Some((std::time::Instant::now(), total)),
            _ => done_since = None,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    served.stopped(Duration::from_secs(10)).await;
    if role == Role::Fraud {
        // Every REVIEW order went back on the queue; the labelled ones were
        // resolved before the replay and stay resolved.
        mesh_fraud_svc::review::drop_labelled(&backends.store, cfg.partitions).await?;
    }
    bar.finish_and_clear();
    Ok(ReplayReport {
        service: role.name().into(),
        keys_cleared: cleared,
        records,
        seconds: started.elapsed().as_secs_f64(),
    })
}
