//! The consumer loop: at-least-once delivery with offsets stored only after
//! a handler applied a batch's effects.
//!
//! One `select!` over shutdown, a linger tick and the next record (biased in
//! that order). Records are buffered per partition and handed to the
//! [`Handler`] as one batch per partition; after every batch of a flush
//! succeeded the next offsets are stored and committed in the background.
//! A failing handler is retried with backoff: the loop stops taking new
//! records until the batch is applied or shutdown is asked. With a
//! [`PoisonPolicy`] (`ConsumerConfig::poison`), a batch that keeps failing
//! is split to find the record that fails, and that record alone is
//! dead-lettered after a bounded number of attempts if the handler's
//! dependencies answer (see [`crate::poison`]); without one, it is retried
//! forever. On shutdown the loop finishes the flush in progress, commits
//! synchronously and returns.
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::headers::HeaderList;
use crate::metrics::{CONSUMED, HANDLER_ERRORS, PROCESS_LATENCY};
use crate::poison::{apply_isolating, pause, timed, PoisonPolicy};
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

/// Applies the effects of a batch of records of one partition.
pub trait Handler: Send + Sync + 'static {
    /// Called with records of one `(topic, partition)` in offset order. Must
    /// be idempotent: after a crash the same records come again.
    fn handle(
        &self,
        records: &[Record],
    ) -> impl Future<Output = std::result::Result<(), HandlerError>> + Send;
}

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
    /// Consumer-group session timeout.
    pub session_timeout: Duration,
    /// Extra librdkafka settings, applied last.
    pub extra: Vec<(String, String)>,
    /// How to get past a record that keeps failing; `None` (the default):
    /// retry it forever.
    pub poison: Option<PoisonPolicy>,
}

impl ConsumerConfig {
    pub fn new(brokers: &str, group_id: &str, topics: &[&str]) -> Self {
        ConsumerConfig {
            brokers: brokers.to_string(),
            group_id: group_id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            max_batch: 500,
            linger: Duration::from_millis(5),
            session_timeout: Duration::from_secs(10),
            extra: Vec::new(),
            poison: None,
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
                self.assigned.0.store(tpl.count(), Ordering::Relaxed);
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(_) => {
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
    let mut cc = ClientConfig::new();
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
        .set("enable.partition.eof", "false");
    for (k, v) in &cfg.extra {
        cc.set(k, v);
    }
    let consumer: StreamConsumer<Ctx> = cc.create_with_context(Ctx {
        assigned,
        group: cfg.group_id.clone(),
    })?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;

    let mut buffers: HashMap<(String, i32), Vec<Record>> = HashMap::new();
    let mut buffered = 0usize;
    let mut tick = tokio::time::interval(cfg.linger);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick(), if buffered > 0 => {
                if !flush(&cfg, &consumer, &*handler, &mut buffers, &shutdown).await { break; }
                buffered = 0;
            }
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let rec = Record {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers: HeaderList::from_kafka(m.headers()),
                        timestamp_ms: m.timestamp().to_millis(),
                    };
                    let full = {
                        let buf = buffers.entry((rec.topic.clone(), rec.partition)).or_default();
                        buf.push(rec);
                        buf.len() >= cfg.max_batch
                    };
                    buffered += 1;
                    if full {
                        if !flush(&cfg, &consumer, &*handler, &mut buffers, &shutdown).await { break; }
                        buffered = 0;
                    }
                }
                Err(e) => {
                    tracing::warn!(group = %cfg.group_id, %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    // Finish what was received, then commit what was applied.
    if buffered > 0 {
        flush(
            &cfg,
            &consumer,
            &*handler,
            &mut buffers,
            &CancellationToken::new(),
        )
        .await;
    }
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

/// Hands every buffered partition batch to the handler (concurrently across
/// partitions), retrying failures, then stores the next offsets. Returns
/// false when shutdown interrupted a retry; nothing of that batch's offsets
/// is stored then.
async fn flush<H: Handler>(
    cfg: &ConsumerConfig,
    consumer: &StreamConsumer<Ctx>,
    handler: &H,
    buffers: &mut HashMap<(String, i32), Vec<Record>>,
    shutdown: &CancellationToken,
) -> bool {
    let batches: Vec<((String, i32), Vec<Record>)> =
        buffers.drain().filter(|(_, v)| !v.is_empty()).collect();
    let runs = batches
        .iter()
        .map(|(_, recs)| apply_with_retry(cfg, handler, recs, shutdown));
    let done = futures::future::join_all(runs).await;
    let mut tpl = TopicPartitionList::new();
    let mut all = true;
    for (((topic, partition), recs), ok) in batches.iter().zip(done) {
        if !ok {
            all = false;
            continue;
        }
        let last = recs.last().map(|r| r.offset).unwrap_or_default();
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(last + 1));
        CONSUMED
            .with_label_values(&[&cfg.group_id, topic])
            .inc_by(recs.len() as u64);
        let now = now_ms();
        for r in recs {
            if let Some(ts) = r.timestamp_ms {
                PROCESS_LATENCY
                    .with_label_values(&[&cfg.group_id])
                    .observe((now - ts).max(0) as f64 / 1000.0);
            }
        }
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.store_offsets(&tpl) {
            // The partition was revoked meanwhile; its new owner re-reads the
            // records and the store's watermark drops them.
            tracing::debug!(group = %cfg.group_id, %e, "offset store refused");
        }
    }
    all
}

async fn apply_with_retry<H: Handler>(
    cfg: &ConsumerConfig,
    handler: &H,
    recs: &[Record],
    shutdown: &CancellationToken,
) -> bool {
    if let Some(policy) = &cfg.poison {
        return apply_isolating(&cfg.group_id, policy, handler, recs, shutdown).await;
    }
    let mut backoff = Duration::from_millis(50);
    loop {
        match timed(&cfg.group_id, handler, recs).await {
            Ok(()) => return true,
            Err(e) => {
                HANDLER_ERRORS.with_label_values(&[&cfg.group_id]).inc();
                tracing::warn!(group = %cfg.group_id, error = %e, records = recs.len(), "batch failed; retrying");
                if !pause(&mut backoff, shutdown).await {
                    return false;
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
