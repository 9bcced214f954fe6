//! The producer every service shares: acks=all, idempotent, explicit
//! partitions, bounded waiting, and a new librdkafka producer when the old
//! one hit a fatal error (a fenced producer id, say, after the broker
//! restarted), so one broker fault does not stop a service's writes.
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::headers::HeaderList;
use crate::metrics::PRODUCED;
use crate::partition::partition_for;
use crate::topics::partition_count;
use crate::{Error, Result};

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub brokers: String,
    pub client_id: String,
    /// How long a record may wait for acknowledgement before the send fails
    /// as unavailable (librdkafka's `message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Record batch compression (default `zstd`; `lz4` costs less CPU per
    /// record, `none` none). The mesh sets it from
    /// `MESH_PRODUCER_COMPRESSION`.
    pub compression: String,
    /// How long librdkafka waits to fill a batch (default 2 ms; the mesh
    /// sets it from `MESH_PRODUCER_LINGER_MS`): the latency a record may
    /// gain for fewer, larger requests.
    pub linger_ms: u32,
    /// Extra librdkafka settings, applied last.
    pub extra: Vec<(String, String)>,
}

impl ProducerConfig {
    pub fn new(brokers: &str, client_id: &str) -> Self {
        ProducerConfig {
            brokers: brokers.to_string(),
            client_id: client_id.to_string(),
            delivery_timeout: Duration::from_secs(5),
            compression: "zstd".into(),
            linger_ms: 2,
            extra: Vec::new(),
        }
    }
}

/// One record for [`Producer::send_all`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    pub headers: &'a HeaderList,
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A cheap-to-clone handle on one idempotent producer.
#[derive(Clone)]
pub struct Producer {
    /// The current librdkafka producer; replaced after a fatal error.
    inner: Arc<RwLock<FutureProducer>>,
    /// Partition count per topic, looked up once: callers of a topic not
    /// yet known wait for the one lookup in flight.
    partitions: Arc<RwLock<HashMap<String, Arc<tokio::sync::OnceCell<i32>>>>>,
    /// Metadata lookups made for [`Producer::partitions`].
    lookups: Arc<std::sync::atomic::AtomicU64>,
    cfg: Arc<ProducerConfig>,
}

impl Producer {
    pub fn new(cfg: ProducerConfig) -> Result<Self> {
        // Exported at 0 from start, so a dashboard shows 0, not no data.
        LazyLock::force(&crate::metrics::PRODUCER_RENEWED);
        Ok(Producer {
            inner: Arc::new(RwLock::new(Self::client(&cfg)?)),
            partitions: Arc::default(),
            lookups: Arc::default(),
            cfg: Arc::new(cfg),
        })
    }

    fn client(cfg: &ProducerConfig) -> Result<FutureProducer> {
        let mut cc = crate::security::client_config();
        cc.set("bootstrap.servers", &cfg.brokers)
            .set("client.id", &cfg.client_id)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", &cfg.compression)
            .set("linger.ms", cfg.linger_ms.to_string())
            .set(
                "message.timeout.ms",
                cfg.delivery_timeout.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", "200000");
        for (k, v) in &cfg.extra {
            cc.set(k, v);
        }
        Ok(cc.create()?)
    }

    fn current(&self) -> FutureProducer {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// After a failed send: when `used` has a fatal error (librdkafka
    /// refuses every later record of a fatal idempotent producer, e.g. one
    /// whose producer id the broker fenced after a restart), replaces it
    /// with a new producer, unless another send already did. The failed
    /// record is still reported to the caller, who retries it.
    fn renew_if_fatal(&self, used: &FutureProducer, error: &KafkaError) {
        use rdkafka::types::RDKafkaErrorCode as C;
        // A fenced or stale producer id is not always flagged fatal for an
        // idempotent producer, yet every later record fails the same way.
        // `Unknown` (UNKNOWN_SERVER_ERROR) is how tansu's PostgreSQL engine
        // answers a batch whose epoch librdkafka bumped on its own after
        // records timed out (KIP-360; Kafka accepts the bump, that engine
        // finds no row for the epoch): every later batch of the producer
        // fails the same way, and each timeout bumps the epoch again.
        let (code, reason) = match (used.client().fatal_error(), error.rdkafka_error_code()) {
            (Some(fatal), _) => fatal,
            (
                None,
                Some(c @ (C::ProducerFenced | C::InvalidProducerEpoch | C::Fatal | C::Unknown)),
            ) => (c, error.to_string()),
            _ => return,
        };
        let mut current = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !std::ptr::eq(current.client().native_ptr(), used.client().native_ptr()) {
            return;
        }
        match Self::client(&self.cfg) {
            Ok(fresh) => {
                tracing::warn!(client = %self.cfg.client_id, ?code, %reason,
                    "producer hit a fatal error; replaced with a new producer");
                crate::metrics::PRODUCER_RENEWED.inc();
                *current = fresh;
            }
            Err(e) => {
                tracing::error!(client = %self.cfg.client_id, error = %e,
                    "producer hit a fatal error and a new one could not be created; retried on the next send");
            }
        }
    }

    /// Whether the broker answers a metadata request for `topic` within
    /// `timeout` (on the producer's own connections; nothing is cached).
    pub async fn broker_answers(&self, topic: &str, timeout: Duration) -> bool {
        use rdkafka::producer::Producer as _;
        let p = self.current();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(Some(&topic), timeout)
                .is_ok_and(|m| m.topics().iter().all(|t| t.error().is_none()))
        })
        .await
        .unwrap_or(false)
    }

    /// Partition count of `topic`, fetched once and cached. Concurrent
    /// first sends to a topic share one metadata lookup: each lookup is a
    /// librdkafka client of its own (threads, buffers), and 5,000 sends at
    /// once to a new topic made some 2,000 threads and ~400 MB of them. A
    /// failed lookup is not cached; the next caller tries again.
    pub async fn partitions(&self, topic: &str) -> Result<i32> {
        let cell = {
            let known = self.partitions.read().unwrap_or_else(|e| e.into_inner());
            match known.get(topic) {
                Some(c) => match c.get() {
                    Some(n) => return Ok(*n),
                    None => c.clone(),
                },
                None => {
                    drop(known);
                    self.partitions
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(topic.to_string())
                        .or_default()
                        .clone()
                }
            }
        };
        let n = cell
            .get_or_try_init(|| {
                self.lookups
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                partition_count(&self.cfg.brokers, topic, self.cfg.delivery_timeout)
            })
            .await?;
        Ok(*n)
    }

    /// Partition-count lookups this producer (and its clones) made.
    pub fn partition_lookups(&self) -> u64 {
        self.lookups.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends one record to the partition that owns `key` and waits for the
    /// broker's acknowledgement, at most the delivery timeout (plus a
    /// second of slack, so a wedged client never hangs the caller).
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &HeaderList,
    ) -> Result<Delivered> {
        let partition = partition_for(key, self.partitions(topic).await?);
        self.send_to(topic, partition, key, payload, headers).await
    }

    /// Sends to an explicit partition.
    pub async fn send_to(
        &self,
        topic: &str,
        partition: i32,
        key: &str,
        payload: &[u8],
        headers: &HeaderList,
    ) -> Result<Delivered> {
        let producer = self.current();
        let res = match Self::enqueue(&producer, topic, partition, key, payload, headers) {
            Ok(fut) => self.acked(&producer, fut, self.deadline()).await,
            Err(e) => Err(e),
        };
        count_produced(topic, res.is_ok(), 1);
        note_transient(&res);
        res
    }

    /// Sends every record to the partition that owns its key: all are
    /// enqueued before any acknowledgement is awaited, so a batch shares
    /// librdkafka's linger and one deadline instead of paying them per
    /// record. Results come back in the order of `records`.
    ///
    /// Records of one partition land in slice order (idempotent producer).
    /// After the first record that cannot be enqueued (local queue full,
    /// say) the rest are not enqueued and fail with the same error, so a
    /// later record never overtakes a failed one of the same key.
    pub async fn send_all(&self, records: &[Outgoing<'_>]) -> Vec<Result<Delivered>> {
        let producer = self.current();
        let mut enqueued = Vec::with_capacity(records.len());
        let mut refused: Option<String> = None;
        for r in records {
            let fut = match &refused {
                Some(why) => Err(Error::Unavailable(why.clone())),
                None => match self.partitions(r.topic).await {
                    Ok(n) => {
                        let partition = partition_for(r.key, n);
                        Self::enqueue(&producer, r.topic, partition, r.key, r.payload, r.headers)
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = &fut {
                refused
                    .get_or_insert_with(|| format!("not enqueued after an earlier failure: {e}"));
            }
            enqueued.push(fut);
        }
        let deadline = self.deadline();
        let mut out = Vec::with_capacity(records.len());
        for (r, fut) in records.iter().zip(enqueued) {
            let res = match fut {
                Ok(fut) => self.acked(&producer, fut, deadline).await,
                Err(e) => Err(e),
            };
            count_produced(r.topic, res.is_ok(), 1);
            note_transient(&res);
            out.push(res);
        }
        out
    }

    /// Hands one record to librdkafka without waiting: a full local queue
    /// is back-pressure the caller must see now, not after the delivery
    /// timeout.
    fn enqueue(
        producer: &FutureProducer,
        topic: &str,
        partition: i32,
        key: &str,
        payload: &[u8],
        headers: &HeaderList,
    ) -> Result<DeliveryFuture> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .partition(partition)
            .headers(headers.to_owned_headers());
        producer
            .send_result(record)
            .map_err(|(e, _)| Error::Kafka(e))
    }

    /// The delivery timeout plus a second of slack, so a wedged client
    /// never hangs the caller.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.cfg.delivery_timeout + Duration::from_secs(1)
    }

    /// Waits for the broker's acknowledgement of an enqueued record.
    async fn acked(
        &self,
        producer: &FutureProducer,
        fut: DeliveryFuture,
        deadline: tokio::time::Instant,
    ) -> Result<Delivered> {
        match tokio::time::timeout_at(deadline, fut).await {
            Err(_) => Err(Error::Unavailable(format!(
                "no acknowledgement from the broker within {:?}",
                self.cfg.delivery_timeout + Duration::from_secs(1)
            ))),
            Ok(Err(_canceled)) => Err(Error::Unavailable(
                "the producer was dropped before the broker acknowledged".into(),
            )),
            Ok(Ok(Ok(d))) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Ok(Err((e, _)))) => {
                self.renew_if_fatal(producer, &e);
                Err(Error::Kafka(e))
            }
        }
    }

    /// Waits for everything in flight, for shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        Ok(self.current().flush(Timeout::After(timeout))?)
    }
}

fn count_produced(topic: &str, ok: bool, n: u64) {
    PRODUCED
        .with_label_values(&[topic, if ok { "ok" } else { "error" }])
        .inc_by(n);
}

static TRANSIENT_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn note_transient<T>(res: &Result<T>) {
    if matches!(res, Err(e) if e.is_transient()) {
        TRANSIENT_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How many sends of this process have failed for a transient reason
/// ([`Error::is_transient`]: no acknowledgement in time, broker down) so far;
/// see [`mesh_store::transient_failures`].
pub fn transient_failures() -> u64 {
    TRANSIENT_FAILURES.load(std::sync::atomic::Ordering::Relaxed)
}
