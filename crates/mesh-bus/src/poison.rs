//! Getting past a record that cannot be applied, without dropping records
//! during an outage.
//!
//! A batch that keeps failing is split in halves, each half tried once and
//! split again, until the failure is pinned on one record; every record
//! around it is applied in order. A record that fails on its own
//! `max_attempts` times is a **poison record** only if the handler's
//! dependencies answer (the [`PoisonPolicy::healthy`] probe, e.g. the store
//! answers PING) just before its last attempt: then it is produced to the
//! dead-letter topic with the reason and its source, counted in
//! `mesh_bus_poison_records_total`, and the partition moves on. While the
//! probe says no, the failure is an outage and the record is retried
//! without limit: nothing is dead-lettered or skipped because Redis or the
//! broker was down. If producing the dead-letter record fails, the record
//! is retried too.
//!
//! Splitting is safe because handlers are idempotent and the store skips
//! records at or below its watermark, and it is ordered: a later record is
//! applied only after every earlier one was applied or dead-lettered (the
//! watermark would otherwise pass over it).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::consumer::{Handler, HandlerError, Record};
use crate::headers::{self, HeaderList};
use crate::metrics::{BATCH_SECONDS, HANDLER_ERRORS, POISON_RECORDS};
use crate::Producer;

/// Attempts of a record on its own before it is dead-lettered, by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Key of poison records on the dead-letter topic (beside ingest's
/// `rejected` and the services' `undecodable`).
pub const POISON_KEY: &str = "poison";

/// How long the health probe may take before it counts as "down".
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// An async check of the handler's dependencies: `true` when they answer.
pub type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What the consumer does with a record that keeps failing (see the module
/// docs). Without a policy ([`crate::ConsumerConfig::poison`] `None`) a
/// failing batch is retried forever.
#[derive(Clone)]
pub struct PoisonPolicy {
    /// Producer of the dead-letter records.
    pub producer: Producer,
    /// The mesh's dead-letter topic.
    pub dead_letter_topic: String,
    /// Attempts of the whole batch before it is split, and of one record
    /// on its own before it is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Whether the handler's dependencies answer now; asked before the last
    /// attempt of a record that fails on its own.
    pub healthy: Probe,
}

impl std::fmt::Debug for PoisonPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoisonPolicy")
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl PoisonPolicy {
    /// A policy with [`DEFAULT_MAX_ATTEMPTS`]. `healthy` is usually a store
    /// ping: `move || { let s = store.clone(); async move { s.ping().await.is_ok() } }`.
    pub fn new<F, Fut>(producer: Producer, dead_letter_topic: &str, healthy: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        PoisonPolicy {
            producer,
            dead_letter_topic: dead_letter_topic.to_string(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            healthy: Arc::new(move || Box::pin(healthy())),
        }
    }

    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    async fn probe(&self) -> bool {
        tokio::time::timeout(PROBE_TIMEOUT, (self.healthy)())
            .await
            .unwrap_or(false)
    }
}

/// Applies `recs` (one partition, offset order) with `policy`. Returns
/// false only when shutdown interrupted it; every record was then applied
/// or dead-lettered up to some point, and the caller stores no offset.
pub(crate) async fn apply_isolating<H: Handler>(
    group: &str,
    policy: &PoisonPolicy,
    handler: &H,
    recs: &[Record],
    shutdown: &CancellationToken,
) -> bool {
    let max = policy.max_attempts.max(1);
    // Ranges still to apply, the next one on top.
    let mut todo = vec![(0, recs.len(), max)];
    while let Some((lo, hi, attempts)) = todo.pop() {
        let part = &recs[lo..hi];
        if part.len() == 1 {
            match apply_alone(group, policy, handler, &part[0], shutdown).await {
                Some(()) => continue,
                None => return false,
            }
        }
        match try_times(group, handler, part, attempts, shutdown).await {
            Tried::Applied => {}
            Tried::Interrupted => return false,
            Tried::Failed(e) => {
                let mid = lo + part.len() / 2;
                tracing::warn!(group, error = %e, records = part.len(), first_offset = part[0].offset,
                    "batch keeps failing; splitting it to find the record that fails");
                // Halves are tried once before splitting again: the split
                // only locates the record; the decision is made alone.
                todo.push((mid, hi, 1));
                todo.push((lo, mid, 1));
            }
        }
    }
    true
}

enum Tried {
    Applied,
    Failed(HandlerError),
    Interrupted,
}

/// Up to `attempts` tries with backoff between them.
async fn try_times<H: Handler>(
    group: &str,
    handler: &H,
    part: &[Record],
    attempts: u32,
    shutdown: &CancellationToken,
) -> Tried {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=attempts {
        match timed(group, handler, part).await {
            Ok(()) => return Tried::Applied,
            Err(e) => {
                HANDLER_ERRORS.with_label_values(&[group]).inc();
                tracing::warn!(group, error = %e, records = part.len(), attempt, "batch failed");
                if attempt == attempts {
                    return Tried::Failed(e);
                }
                if !pause(&mut backoff, shutdown).await {
                    return Tried::Interrupted;
                }
            }
        }
    }
    Tried::Failed(HandlerError("no attempt made".into()))
}

/// One record on its own: applied, dead-lettered after `max_attempts`
/// failures while the dependencies answer, or retried without limit while
/// they do not. `None` when shutdown interrupted it.
async fn apply_alone<H: Handler>(
    group: &str,
    policy: &PoisonPolicy,
    handler: &H,
    rec: &Record,
    shutdown: &CancellationToken,
) -> Option<()> {
    let max = policy.max_attempts.max(1);
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0;
    loop {
        if failures + 1 == max && !policy.probe().await {
            // An outage, not this record: wait without counting.
            tracing::warn!(group, topic = %rec.topic, partition = rec.partition, offset = rec.offset,
                "record keeps failing while the handler's dependencies are down; retrying");
            if !pause(&mut backoff, shutdown).await {
                return None;
            }
            continue;
        }
        let err = match timed(group, handler, std::slice::from_ref(rec)).await {
            Ok(()) => return Some(()),
            Err(e) => e,
        };
        HANDLER_ERRORS.with_label_values(&[group]).inc();
        failures += 1;
        tracing::warn!(group, error = %err, topic = %rec.topic, partition = rec.partition,
            offset = rec.offset, attempt = failures, "record failed on its own");
        if failures >= max {
            match dead_letter(group, policy, rec, &err, failures).await {
                Ok(()) => return Some(()),
                Err(e) => {
                    tracing::warn!(group, error = %e, offset = rec.offset,
                        "could not dead-letter a poison record; retrying it");
                    failures = max - 1;
                }
            }
        }
        if !pause(&mut backoff, shutdown).await {
            return None;
        }
    }
}

/// Produces `rec` to the dead-letter topic: its payload and headers (minus
/// any earlier `mesh_dlq_*`), the reason, the consumer group and the source.
async fn dead_letter(
    group: &str,
    policy: &PoisonPolicy,
    rec: &Record,
    err: &HandlerError,
    attempts: u32,
) -> crate::Result<()> {
    let mut h = HeaderList(
        rec.headers
            .0
            .iter()
            .filter(|(k, _)| !k.starts_with(headers::DLQ_PREFIX))
            .cloned()
            .collect(),
    );
    h.push(
        headers::DLQ_REASON,
        format!("failed {attempts} times on its own: {err}"),
    );
    h.push(headers::DLQ_ORIGIN, group);
    h.push(
        headers::DLQ_SOURCE,
        headers::dlq_source(&rec.topic, rec.partition, rec.offset),
    );
    h.push(headers::DLQ_ATTEMPTS, attempts.to_string());
    policy
        .producer
        .send(&policy.dead_letter_topic, POISON_KEY, &rec.payload, &h)
        .await?;
    POISON_RECORDS.with_label_values(&[group, &rec.topic]).inc();
    tracing::error!(group, error = %err, topic = %rec.topic, partition = rec.partition,
        offset = rec.offset, dead_letter = %policy.dead_letter_topic, "poison record dead-lettered");
    Ok(())
}

/// One handler call, its duration observed when it succeeds.
pub(crate) async fn timed<H: Handler>(
    group: &str,
    handler: &H,
    recs: &[Record],
) -> Result<(), HandlerError> {
    let started = std::time::Instant::now();
    handler.handle(recs).await?;
    BATCH_SECONDS
        .with_label_values(&[group])
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

/// Sleeps `backoff` (then doubles it, up to 5 s); false if shutdown came
/// first.
pub(crate) async fn pause(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    true
}
