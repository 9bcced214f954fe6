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
//! A failure during which the process saw its store or producer fail for a
//! transient reason (a timeout, a dropped connection:
//! [`mesh_store::transient_failures`], [`crate::producer::transient_failures`])
//! is blamed on the dependency, not the record, whatever text the handler
//! made of it: it is not counted toward `max_attempts`, and a batch failing
//! that way is retried whole, not split. A store that answers PING but
//! times out under load would otherwise turn valid records into poison.
//!
//! A batch is split only while the probe says the dependencies answer: a
//! batch failing during an outage (or against a store too slow to answer
//! the probe in time) is retried whole, so an overloaded store does not get
//! one round trip per record on top of its load.
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

use crate::consumer::{BatchCtx, Handler, HandlerError, Record, BATCH};
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

/// How applying one partition's batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every record applied, or dead-lettered. `through`: the last offset
    /// the store applied (a dead-lettered record never reached it), or the
    /// expectation the call started with when none was applied.
    Applied { through: Option<i64> },
    /// Shutdown interrupted it; the caller stores no offset.
    Interrupted,
    /// The store is behind what the consumer applied before the batch
    /// (its watermark, `None`: nothing); nothing of the batch was applied.
    Behind(Option<i64>),
}

/// One failed handler call.
pub(crate) enum Failure {
    Handler(HandlerError),
    Behind(Option<i64>),
}

/// Applies `recs` (one partition, offset order) with `policy`. Every record
/// is applied or dead-lettered unless shutdown interrupted it (some prefix
/// is then done, and the caller stores no offset) or the store refused the
/// first part as behind `expect` (nothing done). Every part carries what
/// the store must hold by then: `expect`, then the last offset of the parts
/// this call applied, so a store that goes back between two parts (a
/// failover while a batch is being split) refuses the later one instead of
/// moving its watermark past the gap.
pub(crate) async fn apply_isolating<H: Handler>(
    group: &str,
    policy: &PoisonPolicy,
    handler: &H,
    recs: &[Record],
    expect: Option<i64>,
    shutdown: &CancellationToken,
) -> Outcome {
    let max = policy.max_attempts.max(1);
    let mut through = expect;
    // Ranges still to apply, the next one on top; popped in offset order.
    let mut todo = vec![(0, recs.len(), max)];
    while let Some((lo, hi, attempts)) = todo.pop() {
        let part = &recs[lo..hi];
        let part_expect = through;
        let last = part[part.len() - 1].offset;
        if part.len() == 1 {
            match apply_alone(group, policy, handler, &part[0], part_expect, shutdown).await {
                Alone::Applied => {
                    through = Some(last);
                    continue;
                }
                Alone::DeadLettered => continue,
                Alone::Interrupted => return Outcome::Interrupted,
                Alone::Behind(w) => return Outcome::Behind(w),
            }
        }
        match try_times(group, handler, part, part_expect, attempts, shutdown).await {
            Tried::Applied => through = Some(last),
            Tried::Interrupted => return Outcome::Interrupted,
            Tried::Behind(w) => return Outcome::Behind(w),
            Tried::Failed(e, transient) => {
                if transient || !policy.probe().await {
                    // An outage (or a store too slow to answer a PING), not
                    // a record: splitting would multiply the round trips
                    // against a store that is already struggling. Retry
                    // the part whole, without counting, until it answers.
                    tracing::warn!(group, error = %e, records = part.len(), first_offset = part[0].offset,
                        "batch keeps failing while the handler's dependencies are down; retrying it whole");
                    let mut backoff = Duration::from_millis(500);
                    if !pause(&mut backoff, shutdown).await {
                        return Outcome::Interrupted;
                    }
                    todo.push((lo, hi, attempts));
                    continue;
                }
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
    Outcome::Applied { through }
}

enum Tried {
    Applied,
    /// The last attempt's error, and whether a dependency failed
    /// transiently during that attempt.
    Failed(HandlerError, bool),
    Interrupted,
    Behind(Option<i64>),
}

enum Alone {
    Applied,
    DeadLettered,
    Interrupted,
    Behind(Option<i64>),
}

/// Up to `attempts` tries with backoff between them.
async fn try_times<H: Handler>(
    group: &str,
    handler: &H,
    part: &[Record],
    expect: Option<i64>,
    attempts: u32,
    shutdown: &CancellationToken,
) -> Tried {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=attempts {
        let mark = transient_mark();
        match timed(group, handler, part, expect).await {
            Ok(()) => return Tried::Applied,
            Err(Failure::Behind(w)) => return Tried::Behind(w),
            Err(Failure::Handler(e)) => {
                HANDLER_ERRORS.with_label_values(&[group]).inc();
                tracing::warn!(group, error = %e, records = part.len(), attempt, "batch failed");
                if attempt == attempts {
                    return Tried::Failed(e, transient_mark() != mark);
                }
                if !pause(&mut backoff, shutdown).await {
                    return Tried::Interrupted;
                }
            }
        }
    }
    Tried::Failed(HandlerError("no attempt made".into()), false)
}

/// One record on its own: applied, dead-lettered after `max_attempts`
/// failures while the dependencies answer, or retried without limit while
/// they do not.
async fn apply_alone<H: Handler>(
    group: &str,
    policy: &PoisonPolicy,
    handler: &H,
    rec: &Record,
    expect: Option<i64>,
    shutdown: &CancellationToken,
) -> Alone {
    let max = policy.max_attempts.max(1);
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0;
    loop {
        if failures + 1 == max && !policy.probe().await {
            // An outage, not this record: wait without counting.
            tracing::warn!(group, topic = %rec.topic, partition = rec.partition, offset = rec.offset,
                "record keeps failing while the handler's dependencies are down; retrying");
            if !pause(&mut backoff, shutdown).await {
                return Alone::Interrupted;
            }
            continue;
        }
        let mark = transient_mark();
        let err = match timed(group, handler, std::slice::from_ref(rec), expect).await {
            Ok(()) => return Alone::Applied,
            Err(Failure::Behind(w)) => return Alone::Behind(w),
            Err(Failure::Handler(e)) => e,
        };
        HANDLER_ERRORS.with_label_values(&[group]).inc();
        if transient_mark() != mark {
            // The store or the broker failed transiently meanwhile: not
            // this record's fault, not counted.
            tracing::warn!(group, error = %err, topic = %rec.topic, partition = rec.partition,
                offset = rec.offset, "record failed while a dependency was timing out; retrying");
            if !pause(&mut backoff, shutdown).await {
                return Alone::Interrupted;
            }
            continue;
        }
        failures += 1;
        tracing::warn!(group, error = %err, topic = %rec.topic, partition = rec.partition,
            offset = rec.offset, attempt = failures, "record failed on its own");
        if failures >= max {
            match dead_letter(group, policy, rec, &err, failures).await {
                Ok(()) => return Alone::DeadLettered,
                Err(e) => {
                    tracing::warn!(group, error = %e, offset = rec.offset,
                        "could not dead-letter a poison record; retrying it");
                    failures = max - 1;
                }
            }
        }
        if !pause(&mut backoff, shutdown).await {
            return Alone::Interrupted;
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

/// One handler call, its duration observed when it succeeds. The handler
/// sees `expect` through [`crate::expected_through`]; a store refusing the
/// batch as behind it comes back as [`Failure::Behind`].
pub(crate) async fn timed<H: Handler>(
    group: &str,
    handler: &H,
    recs: &[Record],
    expect: Option<i64>,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let ctx = BatchCtx {
        expect,
        behind: std::sync::Mutex::new(None),
    };
    let (result, behind) = BATCH
        .scope(ctx, async {
            let r = handler.handle(recs).await;
            let b = BATCH.with(|c| c.behind.lock().unwrap_or_else(|p| p.into_inner()).take());
            (r, b)
        })
        .await;
    if let Err(e) = result {
        return Err(match behind {
            Some(w) if expect.is_some() => Failure::Behind(w),
            _ => Failure::Handler(e),
        });
    }
    BATCH_SECONDS
        .with_label_values(&[group])
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

/// Sleeps `backoff` (then doubles it, up to 5 s); false if shutdown came
/// first.
/// The process's transient dependency failures so far (store, producer);
/// a change across an attempt means a dependency failed during it.
fn transient_mark() -> (u64, u64) {
    (
        mesh_store::transient_failures(),
        crate::producer::transient_failures(),
    )
}

pub(crate) async fn pause(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_store::{MemoryStore, PartitionBatch, StateStore};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    /// Applies records one at a time only (a batch of several always
    /// fails, so every batch is split down to single records); before the
    /// record at `back_at` it replaces its store with an empty one once: a
    /// store that went back between two parts of one split batch.
    struct SplitsAndGoesBack {
        store: Mutex<StateStore>,
        back_at: i64,
        went_back: AtomicBool,
    }

    impl Handler for SplitsAndGoesBack {
        async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
            if records.len() > 1 {
                return Err(HandlerError("only one record at a time".into()));
            }
            let r = &records[0];
            if r.offset == self.back_at && !self.went_back.swap(true, Ordering::SeqCst) {
                *self.store.lock().unwrap() = StateStore::Memory(MemoryStore::new("t"));
            }
            let store = self.store.lock().unwrap().clone();
            let mut b = PartitionBatch::new(&r.topic, r.partition);
            b.expect_through = crate::expected_through();
            b.push(r.offset, Vec::new());
            store.apply("s", &b).await?;
            Ok(())
        }
    }

    fn records(n: i64) -> Vec<Record> {
        (0..n)
            .map(|offset| Record {
                topic: "t".into(),
                partition: 0,
                offset,
                key: None,
                payload: Vec::new(),
                headers: HeaderList::new(),
                timestamp_ms: None,
            })
            .collect()
    }

    async fn run(back_at: i64) -> Outcome {
        let producer =
            crate::Producer::new(crate::ProducerConfig::new("127.0.0.1:1", "t")).unwrap();
        let policy = PoisonPolicy::new(producer, "dlq", || async { true }).with_max_attempts(2);
        let handler = SplitsAndGoesBack {
            store: Mutex::new(StateStore::Memory(MemoryStore::new("t"))),
            back_at,
            went_back: AtomicBool::new(false),
        };
        let shutdown = CancellationToken::new();
        apply_isolating("g", &policy, &handler, &records(4), None, &shutdown).await
    }

    /// Fails every call until `ok_after` calls were made; counts the
    /// records of each call.
    struct FailsFor {
        ok_after: usize,
        calls: Mutex<Vec<usize>>,
    }

    impl Handler for FailsFor {
        async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(records.len());
            if calls.len() <= self.ok_after {
                return Err(HandlerError("store timed out".into()));
            }
            Ok(())
        }
    }

    /// Held by the tests whose batches must split: the transient-failure
    /// counts are the process's, so a concurrent test's timeouts would
    /// keep their batches whole.
    static SPLITTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Fails its first `fail` calls with a real store timeout (converted to
    /// the store's error, as a handler's store call does), then succeeds.
    struct TimesOut {
        fail: usize,
        calls: Mutex<Vec<usize>>,
    }

    impl Handler for TimesOut {
        async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(records.len());
            if calls.len() <= self.fail {
                let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out");
                let e = mesh_store::Error::from(redis::RedisError::from(io));
                // The handler's own wording: the text alone says nothing.
                return Err(HandlerError(format!("reading orders: {e}")));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn records_failing_on_store_timeouts_are_never_poison() {
        let _split = SPLITTING.lock().await;
        // The store answers PING (the probe says healthy) but its commands
        // time out: neither split nor dead-lettered (the dead-letter
        // producer points at no broker, so a dead-letter attempt would
        // show as more calls of single records).
        let producer =
            crate::Producer::new(crate::ProducerConfig::new("127.0.0.1:1", "t")).unwrap();
        let policy = PoisonPolicy::new(producer, "dlq", || async { true }).with_max_attempts(2);
        let handler = TimesOut {
            fail: 9,
            calls: Mutex::new(Vec::new()),
        };
        let shutdown = CancellationToken::new();
        let out = apply_isolating("g", &policy, &handler, &records(8), None, &shutdown).await;
        assert_eq!(out, Outcome::Applied { through: Some(7) });
        assert_eq!(*handler.calls.lock().unwrap(), vec![8; 10]);

        // A record that times out on its own is retried past max_attempts.
        let handler = TimesOut {
            fail: 5,
            calls: Mutex::new(Vec::new()),
        };
        let out = apply_isolating("g", &policy, &handler, &records(1), None, &shutdown).await;
        assert_eq!(out, Outcome::Applied { through: Some(0) });
        assert_eq!(handler.calls.lock().unwrap().len(), 6);
    }

    #[tokio::test]
    async fn a_batch_failing_during_an_outage_is_retried_whole_not_split() {
        let _split = SPLITTING.lock().await;
        let producer =
            crate::Producer::new(crate::ProducerConfig::new("127.0.0.1:1", "t")).unwrap();
        let down = Arc::new(AtomicBool::new(true));
        let d = down.clone();
        let policy = PoisonPolicy::new(producer, "dlq", move || {
            let d = d.clone();
            async move { !d.load(Ordering::SeqCst) }
        })
        .with_max_attempts(2);
        let handler = FailsFor {
            ok_after: 6,
            calls: Mutex::new(Vec::new()),
        };
        let shutdown = CancellationToken::new();
        let out = apply_isolating("g", &policy, &handler, &records(8), None, &shutdown).await;
        assert_eq!(out, Outcome::Applied { through: Some(7) });
        // Every attempt carried the whole batch: nothing was split.
        assert_eq!(*handler.calls.lock().unwrap(), vec![8; 7]);

        // The same failures while the probe says the store answers: split.
        down.store(false, Ordering::SeqCst);
        let handler = FailsFor {
            ok_after: 3,
            calls: Mutex::new(Vec::new()),
        };
        let out = apply_isolating("g", &policy, &handler, &records(8), None, &shutdown).await;
        assert_eq!(out, Outcome::Applied { through: Some(7) });
        let calls = handler.calls.lock().unwrap();
        assert!(calls.iter().any(|n| *n < 8), "not split: {calls:?}");
    }

    #[tokio::test]
    async fn a_split_batch_reports_what_the_store_applied() {
        let _split = SPLITTING.lock().await;
        assert_eq!(run(-1).await, Outcome::Applied { through: Some(3) });
    }

    #[tokio::test]
    async fn a_store_that_goes_back_between_two_parts_refuses_the_later_part() {
        let _split = SPLITTING.lock().await;
        // Records 0 and 1 applied alone, then the store lost them: record
        // 2 must not move the watermark past the gap.
        assert_eq!(run(2).await, Outcome::Behind(None));
    }
}
