//! Consumer lag, sampled from outside the consumers: every few seconds the
//! committed offset of each service's group and the high watermark of each
//! partition are read from the broker, and `mesh_consumer_lag` /
//! `mesh_topic_high_watermark` are set. Reading committed offsets
//! (OffsetFetch) never joins the group, so the sampler cannot trigger a
//! rebalance. The console and `mesh status` read the latest snapshot.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_runtime::metrics::{CONSUMER_LAG, HIGH_WATERMARK};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// One consumer group and the topics it reads.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub topics: Vec<String>,
}

/// Lag of one partition for one group.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub high: i64,
    pub lag: i64,
}

/// The latest sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LagSnapshot {
    /// Unix ms of the sample (0 = none yet).
    pub at_ms: i64,
    /// Total lag per group.
    pub groups: BTreeMap<String, i64>,
    /// Records ever written per topic (sum of high watermarks).
    pub topic_ends: BTreeMap<String, i64>,
    pub partitions: Vec<PartitionLag>,
    /// Why the last sample failed, if it did.
    pub error: Option<String>,
}

pub type SharedLag = Arc<Mutex<LagSnapshot>>;

/// Starts the sampler on a blocking thread; it stops with `shutdown`.
pub fn spawn(
    brokers: String,
    groups: Vec<Group>,
    topics: Vec<String>,
    partitions: i32,
    every: Duration,
    shutdown: CancellationToken,
) -> SharedLag {
    let shared = SharedLag::default();
    let out = shared.clone();
    tokio::spawn(async move {
        loop {
            let (b, g, t) = (brokers.clone(), groups.clone(), topics.clone());
            let snap = tokio::task::spawn_blocking(move || sample(&b, &g, &t, partitions))
                .await
                .unwrap_or_else(|e| LagSnapshot {
                    error: Some(e.to_string()),
                    ..Default::default()
                });
            *out.lock().expect("lag lock") = snap;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    shared
}

fn client(brokers: &str, group: &str) -> rdkafka::error::KafkaResult<BaseConsumer> {
    mesh_bus::security::client_config()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        // The mesh writes no transactions; see `mesh_bus::log::reader`.
        .set("isolation.level", "read_uncommitted")
        .create()
}

/// One sample; errors are reported in the snapshot, never panic.
pub fn sample(brokers: &str, groups: &[Group], topics: &[String], partitions: i32) -> LagSnapshot {
    let timeout = Duration::from_secs(2);
    let mut snap = LagSnapshot {
        at_ms: now_ms(),
        ..Default::default()
    };
    let probe = match client(brokers, "mesh-lag-sampler") {
        Ok(c) => c,
        Err(e) => {
            snap.error = Some(e.to_string());
            return snap;
        }
    };
    let mut high: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    for topic in topics {
        for p in 0..partitions {
            match probe.fetch_watermarks(topic, p, timeout) {
                Ok((l, h)) => {
                    high.insert((topic.clone(), p), (l, h));
                    *snap.topic_ends.entry(topic.clone()).or_default() += h;
                    HIGH_WATERMARK
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .set(h);
                }
                // A topic that does not exist yet (outputs on a broker
                // without the admin API): skip it.
                Err(_) => break,
            }
        }
    }
    for g in groups {
        let c = match client(brokers, &g.name) {
            Ok(c) => c,
            Err(e) => {
                snap.error = Some(e.to_string());
                continue;
            }
        };
        let mut tpl = TopicPartitionList::new();
        for t in &g.topics {
            for p in 0..partitions {
                if high.contains_key(&(t.clone(), p)) {
                    tpl.add_partition(t, p);
                }
            }
        }
        let committed = match c.committed_offsets(tpl, timeout) {
            Ok(c) => c,
            Err(e) => {
                snap.error = Some(format!("group {}: {e}", g.name));
                continue;
            }
        };
        let mut total = 0;
        for el in committed.elements() {
            let (low, h) = high[&(el.topic().to_string(), el.partition())];
            let done = match el.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            // Nothing committed yet: the group reads from the start.
            let lag = (h - done.unwrap_or(low)).max(0);
            total += lag;
            CONSUMER_LAG
                .with_label_values(&[g.name.as_str(), el.topic(), &el.partition().to_string()])
                .set(lag);
            snap.partitions.push(PartitionLag {
                group: g.name.clone(),
                topic: el.topic().to_string(),
                partition: el.partition(),
                committed: done,
                high: h,
                lag,
            });
        }
        snap.groups.insert(g.name.clone(), total);
    }
    snap
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
