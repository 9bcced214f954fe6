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
}

impl Window {
    /// Bucket index of a timestamp.
    pub fn bucket_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.bucket_secs)
    }

    /// Bucket indices of the window ending at `now`, oldest first.
    pub fn range(&self, now: i64) -> std::ops::RangeInclusive<i64> {
        let last = self.bucket_of(now);
        (last - self.buckets + 1)..=last
    }

    /// When a bucket can be dropped: once no window read can reach it any more.
    pub fn expire_at(&self, bucket: i64) -> i64 {
        (bucket + self.buckets + 1) * self.bucket_secs
    }

    /// Field name of a metric in a bucket.
    pub fn field(&self, bucket: i64, metric: &str) -> String {
        format!("{}{bucket}:{metric}", self.prefix)
    }
}

/// 1 minute over 10-second buckets.
pub const W_1M: Window = Window {
    name: "1m",
    prefix: "t",
    bucket_secs: 10,
    buckets: 6,
};
/// 1 hour over 5-minute buckets.
pub const W_1H: Window = Window {
    name: "1h",
    prefix: "m",
    bucket_secs: 300,
    buckets: 12,
};
/// 24 hours over 1-hour buckets.
pub const W_24H: Window = Window {
    name: "24h",
    prefix: "h",
    bucket_secs: 3600,
    buckets: 24,
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
