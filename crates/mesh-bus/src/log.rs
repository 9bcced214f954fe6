//! Reading topics to their end from offset 0, outside any consumer group:
//! training pipelines and replays. Some brokers (tansu) report end offsets
//! late, so a single early reading is never trusted: a read ends when every
//! partition reached its end offset, nothing arrived for a quiet second,
//! and a fresh reading of the end offsets agrees.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::{Error, Result};

/// High watermark (next offset) of every partition of `topics`.
pub fn end_offsets<T: AsRef<str>>(
    c: &BaseConsumer,
    topics: &[T],
) -> Result<HashMap<(String, i32), i64>> {
    let mut ends = HashMap::new();
    for t in topics {
        let t = t.as_ref();
        let md = c.fetch_metadata(Some(t), Duration::from_secs(10))?;
        for topic in md.topics() {
            for p in topic.partitions() {
                let (_, high) = c.fetch_watermarks(t, p.id(), Duration::from_secs(10))?;
                ends.insert((t.to_string(), p.id()), high);
            }
        }
    }
    Ok(ends)
}

/// A consumer for metadata and reads, outside any consumer group's offsets.
pub fn reader(brokers: &str, purpose: &str) -> Result<BaseConsumer> {
    Ok(crate::security::client_config()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("mesh-{purpose}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // The mesh writes no transactions, so its end offsets are the same
        // either way; tansu 0.6's PostgreSQL engine answers a
        // read-committed end offset with a query PostgreSQL 15 refuses
        // (a subquery without an alias).
        .set("isolation.level", "read_uncommitted")
        .create()?)
}

/// Every record of `topics` from offset 0 to their end that `decode` accepts
/// (see the module docs for how the end is found). `purpose` names the
/// reader in errors and in its group id; `progress` is called with the
/// number of records kept so far. Blocking: call it on a blocking thread.
pub fn read_log<T>(
    brokers: &str,
    topics: &[String],
    timeout: Duration,
    purpose: &str,
    decode: impl Fn(&[u8]) -> Option<T>,
    progress: &dyn Fn(u64),
) -> Result<Vec<T>> {
    let c = reader(brokers, purpose)?;
    let mut ends = end_offsets(&c, topics)?;
    let mut tpl = TopicPartitionList::new();
    for (t, p) in ends.keys() {
        tpl.add_partition_offset(t, *p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut last_message = Instant::now();
    let quiet = Duration::from_secs(1);
    loop {
        if Instant::now() > deadline {
            return Err(Error::Unavailable(format!(
                "{purpose}: the event log was not read to its end within {} s ({} events so far); raise --read-timeout-secs",
                timeout.as_secs(),
                out.len()
            )));
        }
        let caught_up = ends
            .iter()
            .all(|(k, end)| *end == 0 || next.get(k).is_some_and(|n| n >= end));
        if caught_up && last_message.elapsed() >= quiet {
            let again = end_offsets(&c, topics)?;
            if again == ends {
                return Ok(out);
            }
            ends = again;
        }
        let Some(msg) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg?;
        last_message = Instant::now();
        if let Some(v) = msg.payload().and_then(&decode) {
            out.push(v);
            progress(out.len() as u64);
        }
        next.insert((msg.topic().to_string(), msg.partition()), msg.offset() + 1);
    }
}
