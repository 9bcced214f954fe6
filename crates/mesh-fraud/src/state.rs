//! Feature state as time-bucketed counters in hashes, and the read/write shapes around it.
//!
//! State lives outside this crate. Every event turns into [`StateOp`]s (pure increments and
//! set-if-absent writes on hash fields, see [`crate::updates`]); every order turns into one
//! batch of [`ReadRequest`]s (see [`crate::features::reads_for`]) whose replies come back as
//! [`ReadResults`], positionally aligned with the requests, so one pipelined Redis round trip
//! (`HMGET` per fields request, `HLEN` per length request) serves a whole order.
//!
//! Keys: `fraud:<kind>:<id>` is one hash per entity; bucket fields are
//! `<granularity><bucket index>:<metric>` (e.g. `m5683742:n`, the order count of 5-minute bucket
//! 5683742), profile fields are plain names (`amt_s`, `hr:13`, `dev:<fp>`).
//! `fraud:<kind>:<id>:users` holds one field per distinct account seen on a device or address.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Entities that carry windowed counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// The account.
    User,
    /// Device fingerprint.
    Device,
    /// IP fingerprint.
    Ip,
    /// Payment instrument.
    Instrument,
    /// Shipping location.
    ShipLoc,
}

impl EntityKind {
    /// All kinds, in feature order.
    pub const ALL: [EntityKind; 5] = [
        EntityKind::User,
        EntityKind::Device,
        EntityKind::Ip,
        EntityKind::Instrument,
        EntityKind::ShipLoc,
    ];

    /// Short name used in keys and feature names.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Device => "device",
            EntityKind::Ip => "ip",
            EntityKind::Instrument => "instrument",
            EntityKind::ShipLoc => "shiploc",
        }
    }
}

/// Hash key of an entity.
pub fn entity_key(kind: EntityKind, id: &str) -> String {
    format!("fraud:{}:{id}", kind.as_str())
}

/// Hash key of the distinct-accounts set of an entity (devices and shipping locations).
pub fn users_key(kind: EntityKind, id: &str) -> String {
    format!("fraud:{}:{id}:users", kind.as_str())
}

/// A sliding window, read as a sum of fixed-size buckets.
///
/// A window of length `W` over buckets of size `B` covers the `W / B` buckets ending with the
/// bucket that holds `now`, so its effective span is between `W - B` and `W` seconds. That is
/// the price of pure-increment state; the finest bucket is used for the shortest window.
///
/// Every increment also goes to a **block** of `block` consecutive buckets (aligned on block
/// boundaries). A window is read as the blocks that lie wholly inside it plus the buckets at
/// its two edges ([`Window::parts`]): the same sum from far fewer fields (the 24 h window
/// reads at most 9 fields instead of 24), which is what keeps one order's read small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Name used in feature names (`1m`, `1h`, `24h`).
    pub name: &'static str,
    /// Field prefix of the bucket granularity.
    pub prefix: &'static str,
    /// Bucket size in seconds.
    pub bucket_secs: i64,
    /// Number of buckets in the window.
    pub buckets: i64,
    /// Field prefix of the block granularity.
    pub block_prefix: &'static str,
    /// Buckets per block.
    pub block: i64,
}

/// One field a window read sums: a bucket or a whole block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A bucket index.
    Bucket(i64),
    /// A block index (buckets `block * k .. block * k + k`).
    Block(i64),
}

impl Window {
    /// Bucket index of a timestamp.
    pub fn bucket_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.bucket_secs)
    }

    /// Block index of a bucket.
    pub fn block_of(&self, bucket: i64) -> i64 {
        bucket.div_euclid(self.block)
    }

    /// Bucket indices of the window ending at `now`, oldest first.
    pub fn range(&self, now: i64) -> std::ops::RangeInclusive<i64> {
        let last = self.bucket_of(now);
        (last - self.buckets + 1)..=last
    }

    /// The fields whose sum is the window ending at `now`: edge buckets and the blocks wholly
    /// inside, oldest first. Covers exactly the buckets of [`Window::range`].
    pub fn parts(&self, now: i64) -> Vec<Part> {
        let range = self.range(now);
        let (first, last) = (*range.start(), *range.end());
        let mut out = Vec::with_capacity(2 * self.block as usize + 4);
        let mut b = first;
        while b <= last {
            if b.rem_euclid(self.block) == 0 && b + self.block - 1 <= last {
                out.push(Part::Block(self.block_of(b)));
                b += self.block;
            } else {
                out.push(Part::Bucket(b));
                b += 1;
            }
        }
        out
    }

    /// When a bucket can be dropped: once no window read can reach it any more.
    pub fn expire_at(&self, bucket: i64) -> i64 {
        (bucket + self.buckets + 1) * self.bucket_secs
    }

    /// When a block can be dropped: once its first bucket has left every window.
    pub fn block_expire_at(&self, block: i64) -> i64 {
        self.expire_at(block * self.block)
    }

    /// Field name of a metric in a bucket.
    pub fn field(&self, bucket: i64, metric: &str) -> String {
        format!("{}{bucket}:{metric}", self.prefix)
    }

    /// Field name of a metric in a block.
    pub fn block_field(&self, block: i64, metric: &str) -> String {
        format!("{}{block}:{metric}", self.block_prefix)
    }

    /// Field name of a metric in a part.
    pub fn part_field(&self, part: Part, metric: &str) -> String {
        match part {
            Part::Bucket(b) => self.field(b, metric),
            Part::Block(b) => self.block_field(b, metric),
        }
    }
}

/// 1 minute over 10-second buckets (blocks of 30 s).
pub const W_1M: Window = Window {
    name: "1m",
    prefix: "t",
    bucket_secs: 10,
    buckets: 6,
    block_prefix: "T",
    block: 3,
};
/// 1 hour over 5-minute buckets (blocks of 15 minutes).
pub const W_1H: Window = Window {
    name: "1h",
    prefix: "m",
    bucket_secs: 300,
    buckets: 12,
    block_prefix: "M",
    block: 3,
};
/// 24 hours over 1-hour buckets (blocks of 6 hours).
pub const W_24H: Window = Window {
    name: "24h",
    prefix: "h",
    bucket_secs: 3600,
    buckets: 24,
    block_prefix: "H",
    block: 6,
};
/// The windows, shortest first.
pub const WINDOWS: [Window; 3] = [W_1M, W_1H, W_24H];

/// Bucket metrics: order count, order amount, failed payments, credential changes.
pub const METRICS: [&str; 4] = ["n", "a", "f", "c"];

/// One write to a hash field. Applying the ops of an event once (e.g. in a `MULTI` or Lua
/// script guarded by the event id) gives exactly-once state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateOp {
    /// `HINCRBYFLOAT key field delta` (and expire the field at `expire_at`, unix seconds).
    Incr {
        /// Hash key.
        key: String,
        /// Hash field.
        field: String,
        /// Increment.
        delta: f64,
        /// Field may be dropped at this time (`HEXPIREAT`), if set.
        expire_at: Option<i64>,
    },
    /// `HSETNX key field value`.
    SetIfAbsent {
        /// Hash key.
        key: String,
        /// Hash field.
        field: String,
        /// Value written when the field does not exist yet.
        value: f64,
    },
}

/// One read of the batch for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub enum ReadRequest {
    /// `HMGET key fields...`: reply is one optional number per field, in order.
    Fields {
        /// Hash key.
        key: String,
        /// Fields to fetch.
        fields: Vec<String>,
    },
    /// `HLEN key`: reply is the number of fields.
    Len {
        /// Hash key.
        key: String,
    },
}

/// Reply to one [`ReadRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReadReply {
    /// Values of the requested fields, `None` where absent.
    Fields(Vec<Option<f64>>),
    /// Number of fields in the hash.
    Len(u64),
}

/// Replies to a batch of reads, positionally aligned with the requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadResults(pub Vec<ReadReply>);

impl ReadResults {
    /// Field values of reply `i`, checked against the expected count.
    pub fn fields(&self, i: usize, expected: usize) -> Result<&[Option<f64>]> {
        match self.0.get(i) {
            Some(ReadReply::Fields(v)) if v.len() == expected => Ok(v),
            other => Err(Error::Invalid(format!(
                "read reply {i}: expected {expected} field values, got {other:?}"
            ))),
        }
    }

    /// Length reply `i`.
    pub fn len_at(&self, i: usize) -> Result<u64> {
        match self.0.get(i) {
            Some(ReadReply::Len(n)) => Ok(*n),
            other => Err(Error::Invalid(format!(
                "read reply {i}: expected a length, got {other:?}"
            ))),
        }
    }
}

/// Where feature reads go: Redis in the service, [`MemoryFeatures`] in tests and evaluation.
pub trait FeatureSource {
    /// Answer a batch of reads in one go, replies aligned with `requests`.
    fn read(&self, requests: &[ReadRequest]) -> Result<ReadResults>;
}

/// In-memory hashes with field expiry; the reference implementation of the state contract.
#[derive(Debug, Default, Clone)]
pub struct MemoryFeatures {
    hashes: HashMap<String, HashMap<String, f64>>,
    expiry: BinaryHeap<Reverse<(i64, String, String)>>,
}

impl MemoryFeatures {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply the ops of one event.
    pub fn apply(&mut self, ops: &[StateOp]) {
        for op in ops {
            match op {
                StateOp::Incr {
                    key,
                    field,
                    delta,
                    expire_at,
                } => {
                    let hash = self.hashes.entry(key.clone()).or_default();
                    match hash.get_mut(field) {
                        Some(v) => *v += delta,
                        None => {
                            hash.insert(field.clone(), *delta);
                            if let Some(at) = expire_at {
                                self.expiry.push(Reverse((*at, key.clone(), field.clone())));
                            }
                        }
                    }
                }
                StateOp::SetIfAbsent { key, field, value } => {
                    self.hashes
                        .entry(key.clone())
                        .or_default()
                        .entry(field.clone())
                        .or_insert(*value);
                }
            }
        }
    }

    /// Drop fields whose expiry time is `<= now`.
    pub fn expire(&mut self, now: i64) {
        while let Some(Reverse((at, _, _))) = self.expiry.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key, field))) = self.expiry.pop() else {
                break;
            };
            if let Some(h) = self.hashes.get_mut(&key) {
                h.remove(&field);
                if h.is_empty() {
                    self.hashes.remove(&key);
                }
            }
        }
    }

    /// Value of one field (for tests and debugging).
    pub fn get(&self, key: &str, field: &str) -> Option<f64> {
        self.hashes.get(key).and_then(|h| h.get(field)).copied()
    }

    /// Number of stored fields across all hashes.
    pub fn field_count(&self) -> usize {
        self.hashes.values().map(HashMap::len).sum()
    }
}

impl FeatureSource for MemoryFeatures {
    fn read(&self, requests: &[ReadRequest]) -> Result<ReadResults> {
        let replies = requests
            .iter()
            .map(|r| match r {
                ReadRequest::Fields { key, fields } => {
                    let h = self.hashes.get(key);
                    ReadReply::Fields(
                        fields
                            .iter()
                            .map(|f| h.and_then(|h| h.get(f)).copied())
                            .collect(),
                    )
                }
                ReadRequest::Len { key } => {
                    ReadReply::Len(self.hashes.get(key).map_or(0, |h| h.len() as u64))
                }
            })
            .collect();
        Ok(ReadResults(replies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_exactly_the_window_with_few_fields() {
        for w in WINDOWS {
            let mut most = 0;
            for now in (0..3 * w.buckets * w.block * w.bucket_secs).step_by(7) {
                let parts = w.parts(now);
                let mut covered: Vec<i64> = parts
                    .iter()
                    .flat_map(|p| match *p {
                        Part::Bucket(b) => b..b + 1,
                        Part::Block(k) => k * w.block..(k + 1) * w.block,
                    })
                    .collect();
                covered.sort_unstable();
                assert_eq!(
                    covered,
                    w.range(now).collect::<Vec<_>>(),
                    "{} at {now}",
                    w.name
                );
                most = most.max(parts.len());
            }
            let limit = match w.name {
                "24h" => 9,
                "1h" => 6,
                _ => 4,
            };
            assert_eq!(most, limit, "{}: most fields per read", w.name);
        }
    }

    #[test]
    fn a_block_expires_when_its_first_bucket_does() {
        let w = W_24H;
        let block = 100;
        let at = w.block_expire_at(block);
        // the last time a read still uses the block
        assert!(w
            .parts(at - w.bucket_secs - 1)
            .contains(&Part::Block(block)));
        assert!(!w.parts(at).contains(&Part::Block(block)));
    }
}
