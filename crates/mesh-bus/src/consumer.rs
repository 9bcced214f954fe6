//! The consumer loop: at-least-once delivery with offsets stored only after
//! a handler applied a batch's effects.
//!
//! One `select!` over shutdown, a finished batch, the linger deadline and
//! the next record (biased in that order). Records are buffered per
//! partition and handed to the [`Handler`] as batches of one partition:
//! a partition's batch starts when its buffer holds
//! [`ConsumerConfig::max_batch`] records or its oldest record has waited
//! [`ConsumerConfig::linger`]. Up to [`ConsumerConfig::max_in_flight`]
//! batches of different partitions are in the handler at once, while the
//! loop goes on taking records; a partition's next batch waits for the one
//! before it, so each partition is applied in order. After a batch is
//! applied its partition's next offset is stored and committed in the
//! background. A failing handler is retried with backoff: its partition
//! buffers what arrives meanwhile, up to a few batches, and then the loop
//! stops taking records until the batch is applied or shutdown is asked.
//! With a [`PoisonPolicy`] (`ConsumerConfig::poison`), a batch that keeps
//! failing is split to find the record that fails, and that record alone is
//! dead-lettered after a bounded number of attempts if the handler's
//! dependencies answer (see [`crate::poison`]); without one, it is retried
//! forever. On shutdown the loop lets the batches in the handler end and
//! stores their offsets, drops what it had buffered (neither applied nor
//! committed: the partition's next owner reads it again from the committed
//! offset), commits what was applied, synchronously but bounded, and
//! returns: a stop waits for the batches in the handler, not for a backlog.
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::headers::HeaderList;
use crate::metrics::{CONSUMED, HANDLER_ERRORS, PROCESS_LATENCY, STORE_RESUMES};
use crate::poison::{apply_isolating, pause, timed, Failure, Outcome, PoisonPolicy};
use crate::Result;

/// One received record, owned.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HeaderList,
    /// Broker or producer timestamp, Unix ms.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// Headers for sending this record to the dead-letter topic: the
    /// reason, the consumer group that gave up on it, and its source.
    pub fn dead_letter_headers(&self, reason: &str, origin: &str) -> crate::headers::HeaderList {
        crate::headers::dead_letter(reason, origin, &self.topic, self.partition, self.offset)
    }
}

/// A handler failed; the batch will be retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl From<mesh_store::Error> for HandlerError {
    /// A store refusing a batch because it went back
    /// ([`mesh_store::Error::Behind`]) is also reported to the consumer
    /// running the handler, which then re-reads the partition from the
    /// store's watermark instead of retrying.
    fn from(e: mesh_store::Error) -> Self {
        if let mesh_store::Error::Behind { watermark, .. } = &e {
            let _ = BATCH.try_with(|b| {
                *b.behind.lock().unwrap_or_else(|p| p.into_inner()) = Some(*watermark)
            });
        }
        HandlerError(e.to_string())
    }
}

/// What the consumer knows while a handler applies one batch.
pub(crate) struct BatchCtx {
    pub(crate) expect: Option<i64>,
    /// Set when the store refused the batch for being behind `expect`.
    pub(crate) behind: Mutex<Option<Option<i64>>>,
}

tokio::task_local! {
    pub(crate) static BATCH: BatchCtx;
}

/// The last offset of the batch's partition this consumer applied before
/// the batch now being handled; `None` when it does not know (the first
/// batch after an assignment or a re-read). A handler whose store keeps
/// watermarks sets it as the batch's `expect_through`, so a store that lost
/// writes refuses the batch instead of silently moving past the gap.
pub fn expected_through() -> Option<i64> {
    BATCH.try_with(|b| b.expect).ok().flatten()
}

/// What a handler's store says it applied of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// The handler keeps no watermark: resume from the committed offset.
    Untracked,
    /// The store holds nothing of the partition (new, or flushed).
    Empty,
    /// The store applied every record through this offset.
    At(i64),
}

impl Watermark {
    /// What `store` applied of `(topic, partition)` in `scope`: the usual
    /// [`Handler::applied_through`] of a handler whose batches are one
    /// [`mesh_store::PartitionBatch`] per input partition.
    pub async fn of(
        store: &mesh_store::StateStore,
        scope: &str,
        topic: &str,
        partition: i32,
    ) -> std::result::Result<Self, HandlerError> {
        let slot = mesh_store::Slot { scope, partition };
        Ok(match store.watermark(slot, topic).await? {
            Some(w) => Watermark::At(w),
            None => Watermark::Empty,
        })
    }
}

/// Applies the effects of a batch of records of one partition.
pub trait Handler: Send + Sync + 'static {
    /// Called with records of one `(topic, partition)` in offset order. Must
    /// be idempotent: after a crash the same records come again.
    fn handle(
        &self,
        records: &[Record],
    ) -> impl Future<Output = std::result::Result<(), HandlerError>> + Send;

    /// What the handler's store applied of `(topic, partition)`. The
    /// consumer asks on assignment and after a store refused a batch as
    /// behind, and resumes from the watermark when it is below the
    /// committed offset: the store, not Kafka's commit, says what was
    /// applied. The default keeps the committed offset.
    fn applied_through(
        &self,
        _topic: &str,
        _partition: i32,
    ) -> impl Future<Output = std::result::Result<Watermark, HandlerError>> + Send {
        async { Ok(Watermark::Untracked) }
    }
}

/// Where a consumer is with one partition of its assignment.
#[derive(Debug, Clone, Copy)]
enum Track {
    /// Not compared with the store yet.
    Unchecked,
    /// The handler keeps no watermark.
    Untracked,
    /// Re-reading from this offset; records below it are stale.
    Resumed(i64),
    /// Applying; the next batch expects the store through this offset.
    Expect(Option<i64>),
}

/// [`ConsumerConfig::max_in_flight`] of [`ConsumerConfig::new`]: what a
/// rebuild from the log (`mesh replay`) wants. The mesh's services set
/// their own (`MESH_CONSUMER_IN_FLIGHT`, default 1): more batches at once
/// apply faster but make reads wait longer behind the store's steps.
pub const DEFAULT_IN_FLIGHT: usize = 4;

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    /// Flush a partition's buffer at this many records.
    pub max_batch: usize,
    /// Flush whatever is buffered after this long.
    pub linger: Duration,
    /// Batches (of different partitions) in the handler at once. While
    /// one is applied the loop goes on taking records, and another
    /// partition's batch can use the store's round trips' wait; batches of
    /// one partition are applied one after another, in order.
    pub max_in_flight: usize,
    /// librdkafka `fetch.wait.max.ms`: how long the broker may hold a fetch
    /// that has too little data to answer (default 10 ms; librdkafka's own
    /// 500 ms). tansu holds a fetch for the whole wait, so the wait is the
    /// floor of publish -> applied latency on a quiet partition (measured:
    /// publish -> visible p99 685 ms at 500 ms). `extra` may override it.
    pub fetch_wait: Duration,
    /// Consumer-group session timeout.
    pub session_timeout: Duration,
    /// Extra librdkafka settings, applied last.
    pub extra: Vec<(String, String)>,
    /// How to get past a record that keeps failing; `None` (the default):
    /// retry it forever.
    pub poison: Option<PoisonPolicy>,
    /// How often an idle consumer compares the store's watermarks with
    /// what it applied, to re-read partitions a store that went back lost
    /// while no records arrived (default 2 s).
    pub store_audit: Duration,
    /// When set, a consumer that has held no partition for this long leaves
    /// its group and joins it again (default: never). A workaround for
    /// tansu 0.6, which can form a group whose assignment is empty: a
    /// member restarted after a `kill -9` joins while the dead leader's
    /// session still runs, syncs as a follower with no assignment, the
    /// leader expires, and that empty sync forms the group; nothing
    /// re-forms it while the member heartbeats. Apache Kafka does not need
    /// it, and where a group has more members than partitions it makes the
    /// idle members rejoin over and over.
    pub rejoin_when_empty: Option<Duration>,
}

impl ConsumerConfig {
    pub fn new(brokers: &str, group_id: &str, topics: &[&str]) -> Self {
        ConsumerConfig {
            brokers: brokers.to_string(),
            group_id: group_id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            max_batch: 500,
            linger: Duration::from_millis(5),
            max_in_flight: DEFAULT_IN_FLIGHT,
            fetch_wait: Duration::from_millis(10),
            session_timeout: Duration::from_secs(10),
            extra: Vec::new(),
            poison: None,
            store_audit: Duration::from_secs(2),
            rejoin_when_empty: None,
        }
    }
}

/// Tracks how many partitions are assigned, for readiness.
#[derive(Clone, Default)]
pub struct Assignment(Arc<AtomicUsize>);

impl Assignment {
    pub fn partitions(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

struct Ctx {
    assigned: Assignment,
    group: String,
    /// Bumped on every assignment and revocation.
    generation: Arc<AtomicU64>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(
        &self,
        _base: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.assigned.0.store(tpl.count(), Ordering::Relaxed);
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(_) => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.assigned.0.store(0, Ordering::Relaxed);
                tracing::info!(group = %self.group, "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(group = %self.group, %e, "rebalance error"),
        }
    }
}

/// Runs the loop until `shutdown` is cancelled. `assigned` reports the
/// current assignment (for readiness).
pub async fn run_consumer<H: Handler>(
    cfg: ConsumerConfig,
    handler: Arc<H>,
    assigned: Assignment,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut cc = crate::security::client_config();
    cc.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            cfg.session_timeout.as_millis().to_string(),
        )
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", cfg.fetch_wait.as_millis().to_string());
    for (k, v) in &cfg.extra {
        cc.set(k, v);
    }
    let cfg = Arc::new(cfg);
    let generation = Arc::new(AtomicU64::new(0));
    let held = assigned.clone();
    let consumer: StreamConsumer<Ctx> = cc.create_with_context(Ctx {
        assigned,
        group: cfg.group_id.clone(),
        generation: generation.clone(),
    })?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;

    let mut buffers: HashMap<Key, Buffer> = HashMap::new();
    let mut tracks: HashMap<Key, Track> = HashMap::new();
    // Partitions with a batch in the handler, and those batches.
    let mut busy: HashSet<Key> = HashSet::new();
    let mut inflight = FuturesUnordered::new();
    let max_in_flight = cfg.max_in_flight.max(1);
    // A partition's buffer may grow this far while its batch is applied
    // (librdkafka hands out runs of one partition); the loop stops taking
    // records when one reaches it.
    let cap = cfg.max_batch.max(1).saturating_mul(BUFFER_BATCHES);
    let mut seen_generation = 0;
    let linger = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(linger);
    let mut armed: Option<Instant> = None;
    // Since when the consumer has held no partition (`rejoin_when_empty`).
    let mut empty_since = Instant::now();
    let mut audit = tokio::time::interval(cfg.store_audit);
    audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Hand every due partition that is not being applied to the
        // handler, as far as the bound on batches in flight allows.
        let now = Instant::now();
        for key in due(&buffers, &busy, &cfg, now) {
            if inflight.len() >= max_in_flight {
                break;
            }
            if let Some(recs) = take_batch(&mut buffers, &key, cfg.max_batch, now) {
                let expect = match tracks.get(&key) {
                    Some(Track::Expect(e)) => *e,
                    _ => None,
                };
                busy.insert(key.clone());
                inflight.push(run_batch(&cfg, &handler, key, recs, expect, &shutdown));
            }
        }
        // The earliest linger deadline of a partition that could start.
        let deadline = (inflight.len() < max_in_flight)
            .then(|| {
                buffers
                    .iter()
                    .filter(|(k, _)| !busy.contains(*k))
                    .map(|(_, b)| b.since + cfg.linger)
                    .min()
            })
            .flatten();
        if let Some(d) = deadline {
            if armed != Some(d) {
                linger.as_mut().reset(tokio::time::Instant::from_std(d));
                armed = Some(d);
            }
        }
        let open = buffers.values().all(|b| b.recs.len() < cap);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                busy.remove(&done.key);
                if !settle(&cfg, &consumer, &mut tracks, &mut buffers, done) { break; }
            }
            _ = &mut linger, if deadline.is_some() => {
                armed = None;
            }
            _ = audit.tick() => {
                // Tracks of an earlier assignment are stale, as when a
                // record arrives (and, as then, batches of the old
                // assignment finish first).
                let g = generation.load(Ordering::SeqCst);
                if g != seen_generation {
                    if !drain(&mut inflight, &mut busy, &cfg, &consumer, &mut tracks, &mut buffers).await {
                        break;
                    }
                    seen_generation = g;
                    tracks.clear();
                }
                // Partitions with a batch in the handler are left alone: the
                // batch's outcome says whether the store went back.
                audit_unchecked(&cfg.group_id, &consumer, &*handler, &mut tracks, &busy).await;
                audit_quiet(&cfg.group_id, &consumer, &*handler, &mut tracks, &busy).await;
                // What was buffered of a partition now re-read comes again.
                buffers.retain(|key, _| !matches!(tracks.get(key), Some(Track::Resumed(_))));
                if held.partitions() > 0 {
                    empty_since = Instant::now();
                } else if cfg.rejoin_when_empty.is_some_and(|d| empty_since.elapsed() >= d) {
                    tracing::warn!(group = %cfg.group_id, empty_s = empty_since.elapsed().as_secs(),
                        "no partition assigned; leaving the group and joining it again");
                    crate::metrics::GROUP_REJOINS.inc();
                    consumer.unsubscribe();
                    consumer.subscribe(&topics)?;
                    empty_since = Instant::now();
                }
            }
            msg = consumer.recv(), if open => match msg {
                Ok(m) => {
                    let g = generation.load(Ordering::SeqCst);
                    if g != seen_generation {
                        // Batches of the old assignment finish first: their
                        // outcomes update tracks that are about to be reset.
                        if !drain(&mut inflight, &mut busy, &cfg, &consumer, &mut tracks, &mut buffers).await {
                            break;
                        }
                        seen_generation = g;
                        tracks.clear();
                    }
                    let key = (m.topic().to_string(), m.partition());
                    if !admit(&cfg.group_id, &consumer, &*handler, &mut tracks, &key, m.offset()).await {
                        buffers.remove(&key);
                        continue;
                    }
                    let rec = Record {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers: HeaderList::from_kafka(m.headers()),
                        timestamp_ms: m.timestamp().to_millis(),
                    };
                    buffers
                        .entry(key)
                        .or_insert_with(|| Buffer { recs: Vec::new(), since: Instant::now() })
                        .recs
                        .push(rec);
                }
                Err(e) => {
                    tracing::warn!(group = %cfg.group_id, %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    // Let the batches in the handler end (a retry ends at once: shutdown
    // was asked) and store their offsets, then commit what was applied.
    // What is still buffered is dropped: applying it (up to `cap` records
    // per partition, batch after batch) made a stop under a backlog outlast
    // the caller's grace. None of it was applied or had its offset stored
    // (an offset is stored only in `settle`, just past a batch the handler
    // applied), so the partition's next owner reads it again from the
    // committed offset.
    drain(
        &mut inflight,
        &mut busy,
        &cfg,
        &consumer,
        &mut tracks,
        &mut buffers,
    )
    .await;
    drop(inflight);
    let left: usize = buffers.values().map(|b| b.recs.len()).sum();
    if left > 0 {
        tracing::debug!(group = %cfg.group_id, records = left, partitions = buffers.len(),
            "shutdown: buffered records not applied; the partitions' next owner reads them again");
    }
    drop(buffers);
    close_bounded(consumer, cfg.group_id.clone(), FINAL_COMMIT_TIMEOUT).await;
    Ok(())
}

/// How long shutdown waits for the final commit and the group leave.
const FINAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits what was applied and leaves the group on a thread of its own,
/// waiting at most `limit`. librdkafka's synchronous commit and close have
/// no deadline and can block for good when the coordinator is already gone
/// (the embedded cluster shutting down first); on a timeout the thread is
/// left to finish or die with the process. Nothing is lost either way:
/// effects are idempotent and uncommitted records are re-applied.
async fn close_bounded(consumer: StreamConsumer<Ctx>, group: String, limit: Duration) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_group = group.clone();
    let spawned = std::thread::Builder::new()
        .name("mesh-consumer-close".into())
        .spawn(move || {
            if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
                tracing::debug!(group = %thread_group, %e, "final commit failed");
            }
            consumer.unsubscribe();
            drop(consumer);
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(%group, %e, "could not start the closing thread; skipping the final commit");
        return;
    }
    if tokio::time::timeout(limit, rx).await.is_err() {
        tracing::warn!(%group, ?limit, "final commit did not finish in time; records after the last commit will be re-applied");
    }
}

/// Whether the record at `offset` of `key` is taken. The first record of a
/// partition after an assignment is compared with the store's watermark:
/// when the store applied less than the committed offset says (it went back
/// while this group was away), the consumer seeks back to the watermark and
/// drops the record; records below an offset it seeked to are stale. The
/// first record of a re-read is compared again: the store may have gone
/// back further while the re-read was on its way (a consumer far behind
/// waits minutes for it), and a re-read from a watermark the store no
/// longer holds would apply its records past the new gap.
async fn admit<H: Handler>(
    group: &str,
    consumer: &StreamConsumer<Ctx>,
    handler: &H,
    tracks: &mut HashMap<(String, i32), Track>,
    key: &(String, i32),
    offset: i64,
) -> bool {
    let track = tracks.get(key).copied().unwrap_or(Track::Unchecked);
    // Where the store must have applied up to: before the committed
    // offset, or before the offset the re-read started at.
    let next = match track {
        Track::Untracked | Track::Expect(_) => return true,
        Track::Resumed(from) if offset < from => return false,
        Track::Resumed(from) => from,
        Track::Unchecked => offset,
    };
    match handler.applied_through(&key.0, key.1).await {
        Ok(mark) => match check(mark, next) {
            Ok(checked) => {
                tracks.insert(key.clone(), checked);
                true
            }
            Err(from) => {
                if matches!(track, Track::Resumed(_)) {
                    tracing::warn!(group, topic = %key.0, partition = key.1, resumed_at = next,
                        store = ?mark, "the store went back again during a re-read; re-reading from its watermark");
                } else {
                    tracing::warn!(group, topic = %key.0, partition = key.1, committed = offset,
                        store = ?mark, "the store applied less than the committed offset; re-reading from the store's watermark");
                }
                STORE_RESUMES.with_label_values(&[group]).inc();
                resume(group, consumer, tracks, key, from);
                false
            }
        },
        Err(e) => {
            // The store cannot say; read this record again once it can.
            tracing::warn!(group, topic = %key.0, partition = key.1, error = %e,
                "could not read the store's watermark; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
            if consumer
                .seek(
                    &key.0,
                    key.1,
                    Offset::Offset(offset),
                    Duration::from_secs(1),
                )
                .is_err()
            {
                tracing::warn!(group, topic = %key.0, partition = key.1, offset,
                    "seek failed; the partition is re-read from its committed offset");
                tracks.remove(key);
            } else if matches!(track, Track::Unchecked) {
                tracks.remove(key);
            }
            false
        }
    }
}

/// How a partition whose next record is at `next` goes on, given what the
/// store applied of it: read on (with this track), or re-read from
/// `Err(from)` (`None`: the beginning) because the store applied less than
/// the records before `next`.
fn check(mark: Watermark, next: i64) -> std::result::Result<Track, Option<i64>> {
    match mark {
        Watermark::Untracked => Ok(Track::Untracked),
        Watermark::At(w) if w + 1 >= next => Ok(Track::Expect(Some(w))),
        Watermark::Empty if next == 0 => Ok(Track::Expect(None)),
        Watermark::At(w) => Err(Some(w + 1)),
        Watermark::Empty => Err(None),
    }
}

/// Assigned partitions no record reached since the assignment (a restart
/// with nothing new on them) are compared with the store at their
/// committed offset, where their fetch starts: without it a store that
/// went back before or after such a restart would miss the effects until
/// the partition's next record. One committed-offsets request, and only
/// while some assigned partition is unchecked.
async fn audit_unchecked<H: Handler>(
    group: &str,
    consumer: &StreamConsumer<Ctx>,
    handler: &H,
    tracks: &mut HashMap<(String, i32), Track>,
    skip: &HashSet<Key>,
) {
    for (key, next) in unchecked_starts(group, consumer, tracks) {
        if skip.contains(&key) {
            continue;
        }
        let mark = match handler.applied_through(&key.0, key.1).await {
            Ok(mark) => mark,
            Err(e) => {
                tracing::debug!(group, topic = %key.0, partition = key.1, error = %e,
                    "could not read the store's watermark; checking at the next audit");
                continue;
            }
        };
        match check(mark, next) {
            Ok(track) => {
                tracks.insert(key, track);
            }
            Err(from) => {
                tracing::warn!(group, topic = %key.0, partition = key.1, committed = next,
                    store = ?mark, "the store applied less than the committed offset of a quiet partition; re-reading from the store's watermark");
                STORE_RESUMES.with_label_values(&[group]).inc();
                resume(group, consumer, tracks, &key, from);
            }
        }
    }
}

/// The unchecked partitions of the assignment with the offset their next
/// record will have: the committed offset (the log's beginning when
/// nothing is committed) or the consumer's position, whichever is further
/// (its position may be ahead of the last commit). Empty without a
/// round trip when every assigned partition is checked.
fn unchecked_starts(
    group: &str,
    consumer: &StreamConsumer<Ctx>,
    tracks: &HashMap<(String, i32), Track>,
) -> Vec<((String, i32), i64)> {
    let unchecked = |topic: &str, partition: i32| {
        matches!(
            tracks
                .get(&(topic.to_string(), partition))
                .unwrap_or(&Track::Unchecked),
            Track::Unchecked
        )
    };
    let offsets = |tpl: &TopicPartitionList| -> HashMap<(String, i32), Offset> {
        tpl.elements()
            .iter()
            .filter(|e| unchecked(e.topic(), e.partition()))
            .map(|e| ((e.topic().to_string(), e.partition()), e.offset()))
            .collect()
    };
    match consumer.assignment() {
        Ok(a) if !offsets(&a).is_empty() => {}
        _ => return Vec::new(),
    }
    let committed = match consumer.committed(Duration::from_secs(2)) {
        Ok(c) => offsets(&c),
        Err(e) => {
            tracing::debug!(group, %e, "could not read the committed offsets; checking at the next audit");
            return Vec::new();
        }
    };
    let position = consumer.position().map(|p| offsets(&p)).unwrap_or_default();
    let at = |o: Option<&Offset>| match o {
        Some(Offset::Offset(o)) => *o,
        _ => 0,
    };
    committed
        .into_iter()
        .map(|(key, c)| {
            let next = at(Some(&c)).max(at(position.get(&key)));
            (key, next)
        })
        .collect()
}

/// Compares what the store says it applied of every partition this
/// consumer applied with what it applied, and re-reads the partitions the
/// store lost. A batch refused as behind finds a store that went back only
/// when a record arrives: a quiet partition (traffic stopped, a rarely
/// written topic) would stay without the lost effects until its next
/// record. Runs every [`ConsumerConfig::store_audit`], skipping the
/// partitions with a batch in the handler; one watermark read per partition.
async fn audit_quiet<H: Handler>(
    group: &str,
    consumer: &StreamConsumer<Ctx>,
    handler: &H,
    tracks: &mut HashMap<(String, i32), Track>,
    skip: &HashSet<Key>,
) {
    let applied: Vec<((String, i32), i64)> = tracks
        .iter()
        .filter_map(|(k, t)| match t {
            Track::Expect(Some(o)) if !skip.contains(k) => Some((k.clone(), *o)),
            _ => None,
        })
        .collect();
    for (key, applied) in applied {
        let behind = match handler.applied_through(&key.0, key.1).await {
            Ok(Watermark::At(w)) if w < applied => Some(Some(w + 1)),
            Ok(Watermark::Empty) => Some(None),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(group, topic = %key.0, partition = key.1, error = %e,
                    "could not read the store's watermark; checking at the next audit");
                None
            }
        };
        if let Some(from) = behind {
            tracing::warn!(group, topic = %key.0, partition = key.1, applied, from = ?from,
                "the store went back while the partition was quiet; re-reading the partition from its watermark");
            STORE_RESUMES.with_label_values(&[group]).inc();
            resume(group, consumer, tracks, &key, from);
        }
    }
}

/// Seeks `key` to `from` (`None`: the beginning of the log) and marks it
/// as re-reading. A failed seek leaves the partition unchecked: its next
/// record is compared with the store again.
fn resume(
    group: &str,
    consumer: &StreamConsumer<Ctx>,
    tracks: &mut HashMap<(String, i32), Track>,
    key: &(String, i32),
    from: Option<i64>,
) {
    let target = from.map_or(Offset::Beginning, Offset::Offset);
    match consumer.seek(&key.0, key.1, target, Duration::from_secs(1)) {
        Ok(()) => {
            tracks.insert(key.clone(), Track::Resumed(from.unwrap_or(0)));
        }
        Err(e) => {
            tracing::warn!(group, topic = %key.0, partition = key.1, %e, "seek failed; checking again");
            tracks.remove(key);
        }
    }
}

/// A topic and partition.
type Key = (String, i32);

/// Records of one partition received and not yet handed to the handler.
struct Buffer {
    recs: Vec<Record>,
    /// When the oldest of them arrived: the linger runs from here.
    since: Instant,
}

/// How many batches' worth of records a partition's buffer may hold while
/// its batch is in the handler.
const BUFFER_BATCHES: usize = 64;

/// Partitions whose buffer holds a full batch or has lingered long enough
/// and that have no batch in the handler, fullest first.
fn due(
    buffers: &HashMap<Key, Buffer>,
    busy: &HashSet<Key>,
    cfg: &ConsumerConfig,
    now: Instant,
) -> Vec<Key> {
    let mut due: Vec<(&Key, usize)> = buffers
        .iter()
        .filter(|(k, b)| {
            !busy.contains(*k)
                && !b.recs.is_empty()
                && (b.recs.len() >= cfg.max_batch || now >= b.since + cfg.linger)
        })
        .map(|(k, b)| (k, b.recs.len()))
        .collect();
    due.sort_by_key(|d| std::cmp::Reverse(d.1));
    due.into_iter().map(|(k, _)| k.clone()).collect()
}

/// Takes the oldest `max_batch` records of `key`'s buffer; what stays
/// lingers from `now`.
fn take_batch(
    buffers: &mut HashMap<Key, Buffer>,
    key: &Key,
    max_batch: usize,
    now: Instant,
) -> Option<Vec<Record>> {
    let buf = buffers.get_mut(key)?;
    let n = buf.recs.len().min(max_batch.max(1));
    if n == 0 {
        return None;
    }
    let recs: Vec<Record> = if n == buf.recs.len() {
        buffers.remove(key).map(|b| b.recs).unwrap_or_default()
    } else {
        buf.since = now;
        buf.recs.drain(..n).collect()
    };
    Some(recs)
}

/// One partition's batch after the handler.
struct Done {
    key: Key,
    recs: Vec<Record>,
    outcome: Outcome,
}

/// Applies one partition's batch, retrying failures ([`apply_with_retry`]),
/// as a task of its own, so that batches of different partitions compute
/// on different threads. A handler that panics takes the consumer down
/// with it, as it would on the consumer's own task.
fn run_batch<H: Handler>(
    cfg: &Arc<ConsumerConfig>,
    handler: &Arc<H>,
    key: Key,
    recs: Vec<Record>,
    expect: Option<i64>,
    shutdown: &CancellationToken,
) -> impl Future<Output = Done> {
    let (cfg, handler, shutdown) = (cfg.clone(), handler.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        let outcome = apply_with_retry(&cfg, &*handler, &recs, expect, &shutdown).await;
        (recs, outcome)
    });
    async move {
        match task.await {
            Ok((recs, outcome)) => Done { key, recs, outcome },
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down: nothing of it is stored.
            Err(_) => Done {
                key,
                recs: Vec::new(),
                outcome: Outcome::Interrupted,
            },
        }
    }
}

/// Waits for every batch in the handler and settles each
/// ([`settle`]); false when shutdown interrupted one of them.
async fn drain<F: Future<Output = Done>>(
    inflight: &mut FuturesUnordered<F>,
    busy: &mut HashSet<Key>,
    cfg: &ConsumerConfig,
    consumer: &StreamConsumer<Ctx>,
    tracks: &mut HashMap<Key, Track>,
    buffers: &mut HashMap<Key, Buffer>,
) -> bool {
    let mut all = true;
    while let Some(done) = inflight.next().await {
        busy.remove(&done.key);
        all &= settle(cfg, consumer, tracks, buffers, done);
    }
    all
}

/// Records what became of one partition's batch: an applied batch stores
/// its partition's next offset (committed in the background); a batch the
/// store refused as behind (it lost writes this consumer had applied)
/// stores nothing and its partition is re-read from the store's watermark,
/// dropping what was buffered after the batch. Returns false when shutdown
/// interrupted a retry; nothing of that batch's offsets is stored then,
/// nor anything buffered after it applied.
fn settle(
    cfg: &ConsumerConfig,
    consumer: &StreamConsumer<Ctx>,
    tracks: &mut HashMap<Key, Track>,
    buffers: &mut HashMap<Key, Buffer>,
    done: Done,
) -> bool {
    let Done { key, recs, outcome } = done;
    let (topic, partition) = &key;
    let last = recs.last().map(|r| r.offset).unwrap_or_default();
    match outcome {
        Outcome::Interrupted => {
            buffers.remove(&key);
            return false;
        }
        Outcome::Behind(watermark) => {
            tracing::warn!(group = %cfg.group_id, %topic, partition, applied = last,
                store = ?watermark, "the store went back; re-reading the partition from its watermark");
            STORE_RESUMES.with_label_values(&[&cfg.group_id]).inc();
            buffers.remove(&key);
            resume(
                &cfg.group_id,
                consumer,
                tracks,
                &key,
                watermark.map(|w| w + 1),
            );
            return true;
        }
        Outcome::Applied { through } => {
            if let Some(Track::Expect(e)) = tracks.get_mut(&key) {
                // A dead-lettered record never reached the store, so
                // the watermark may be below its offset.
                *e = through;
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(last + 1));
    if let Err(e) = consumer.store_offsets(&tpl) {
        // The partition was revoked meanwhile; its new owner re-reads the
        // records and the store's watermark drops them.
        tracing::debug!(group = %cfg.group_id, %e, "offset store refused");
    }
    CONSUMED
        .with_label_values(&[&cfg.group_id, topic])
        .inc_by(recs.len() as u64);
    let now = now_ms();
    for r in &recs {
        if let Some(ts) = r.timestamp_ms {
            PROCESS_LATENCY
                .with_label_values(&[&cfg.group_id])
                .observe((now - ts).max(0) as f64 / 1000.0);
        }
    }
    true
}

async fn apply_with_retry<H: Handler>(
    cfg: &ConsumerConfig,
    handler: &H,
    recs: &[Record],
    expect: Option<i64>,
    shutdown: &CancellationToken,
) -> Outcome {
    if let Some(policy) = &cfg.poison {
        return apply_isolating(&cfg.group_id, policy, handler, recs, expect, shutdown).await;
    }
    let mut backoff = Duration::from_millis(50);
    loop {
        match timed(&cfg.group_id, handler, recs, expect).await {
            Ok(()) => {
                return Outcome::Applied {
                    through: recs.last().map(|r| r.offset),
                }
            }
            Err(Failure::Behind(w)) => return Outcome::Behind(w),
            Err(Failure::Handler(e)) => {
                HANDLER_ERRORS.with_label_values(&[&cfg.group_id]).inc();
                tracing::warn!(group = %cfg.group_id, error = %e, records = recs.len(), "batch failed; retrying");
                if !pause(&mut backoff, shutdown).await {
                    return Outcome::Interrupted;
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
