//! The producer every service shares: acks=all, idempotent, explicit
//! partitions, bounded waiting, and a new librdkafka producer when the old
//! one hit a fatal error (a fenced producer id, say, after the broker
//! restarted), so one broker fault does not stop a service's writes.
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
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
    /// Extra librdkafka settings, applied last.
    pub extra: Vec<(String, String)>,
}

impl ProducerConfig {
    pub fn new(brokers: &str, client_id: &str) -> Self {
        ProducerConfig {
            brokers: brokers.to_string(),
            client_id: client_id.to_string(),
            delivery_timeout: Duration::from_secs(5),
            extra: Vec::new(),
        }
    }
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
    partitions: Arc<RwLock<HashMap<String, i32>>>,
    cfg: Arc<ProducerConfig>,
}

impl Producer {
    pub fn new(cfg: ProducerConfig) -> Result<Self> {
        // Exported at 0 from start, so a dashboard shows 0, not no data.
        LazyLock::force(&crate::metrics::PRODUCER_RENEWED);
        Ok(Producer {
            inner: Arc::new(RwLock::new(Self::client(&cfg)?)),
            partitions: Arc::default(),
            cfg: Arc::new(cfg),
        })
    }

    fn client(cfg: &ProducerConfig) -> Result<FutureProducer> {
        let mut cc = crate::security::client_config();
        cc.set("bootstrap.servers", &cfg.brokers)
            .set("client.id", &cfg.client_id)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "zstd")
            .set("linger.ms", "2")
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
        let (code, reason) = match (used.client().fatal_error(), error.rdkafka_error_code()) {
            (Some(fatal), _) => fatal,
            (None, Some(c @ (C::ProducerFenced | C::InvalidProducerEpoch | C::Fatal))) => {
                (c, error.to_string())
            }
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

    /// Partition count of `topic`, fetched once and cached.
    pub async fn partitions(&self, topic: &str) -> Result<i32> {
        if let Some(n) = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
        {
            return Ok(*n);
        }
        let n = partition_count(&self.cfg.brokers, topic, self.cfg.delivery_timeout).await?;
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_string(), n);
        Ok(n)
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
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .partition(partition)
            .headers(headers.to_owned_headers());
        // Enqueue without waiting: a full local queue is back-pressure the
        // caller must see now, not after the delivery timeout.
        let producer = self.current();
        let fut = producer.send(record, Timeout::After(Duration::ZERO));
        let limit = self.cfg.delivery_timeout + Duration::from_secs(1);
        let res = match tokio::time::timeout(limit, fut).await {
            Err(_) => Err(Error::Unavailable(format!(
                "no acknowledgement from the broker within {limit:?}"
            ))),
            Ok(Ok(d)) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((e, _))) => {
                self.renew_if_fatal(&producer, &e);
                Err(Error::Kafka(e))
            }
        };
        PRODUCED
            .with_label_values(&[topic, if res.is_ok() { "ok" } else { "error" }])
            .inc();
        res
    }

    /// Waits for everything in flight, for shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        Ok(self.current().flush(Timeout::After(timeout))?)
    }
}
