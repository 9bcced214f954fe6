//! State operations and the per-partition batches that carry them.
use crate::{Error, Result};

/// One change to state. Keys are relative to the slot the batch belongs to.
/// Every op is a pure function of its arguments and the current value, so a
/// batch replayed above the watermark gives the same state.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Adds `delta` to an integer hash field (missing = 0).
    HIncr {
        key: String,
        field: String,
        delta: i64,
    },
    /// Adds `delta` to a float hash field (missing = 0).
    HIncrFloat {
        key: String,
        field: String,
        delta: f64,
    },
    /// Sets a hash field.
    HSet {
        key: String,
        field: String,
        value: String,
    },
    /// Sets a hash field only if it is absent.
    HSetNx {
        key: String,
        field: String,
        value: String,
    },
    /// Keeps the larger of the stored integer and `value`.
    HMax {
        key: String,
        field: String,
        value: i64,
    },
    /// Keeps the smaller of the stored integer and `value`.
    HMin {
        key: String,
        field: String,
        value: i64,
    },
    /// Adds `delta` to a sorted-set member's score.
    ZIncr {
        key: String,
        member: String,
        delta: f64,
    },
    /// Sets a sorted-set member's score.
    ZSet {
        key: String,
        member: String,
        score: f64,
    },
    /// Removes a sorted-set member (no-op when absent).
    ZRem { key: String, member: String },
    /// Pushes to the head of a list and keeps the newest `max_len` items.
    LPushCapped {
        key: String,
        value: String,
        max_len: u32,
    },
    /// Applies the rest of its record's ops only once per `field`: when the
    /// hash `key` already holds `field`, the record's later ops are skipped;
    /// otherwise the field is set and the key kept `ttl_ms` more (Redis;
    /// the in-memory store keeps it). Put first, it makes a record carrying
    /// an id already applied under another offset (a publisher's retry that
    /// was produced twice) change nothing.
    Once {
        key: String,
        field: String,
        ttl_ms: i64,
    },
    /// Skips the rest of its record's ops when the hash `key` holds `field`
    /// (reads only). Put first, it makes every event of an erased user
    /// change nothing: the erasure sets the field, see [`crate::erasure`].
    Unless { key: String, field: String },
    /// Removes a hash field (no-op when absent).
    HDel { key: String, field: String },
    /// Deletes a key, whatever it holds (no-op when absent).
    Del { key: String },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::HIncr { key, .. }
            | Op::HIncrFloat { key, .. }
            | Op::HSet { key, .. }
            | Op::HSetNx { key, .. }
            | Op::HMax { key, .. }
            | Op::HMin { key, .. }
            | Op::ZIncr { key, .. }
            | Op::ZSet { key, .. }
            | Op::ZRem { key, .. }
            | Op::LPushCapped { key, .. }
            | Op::Once { key, .. }
            | Op::Unless { key, .. }
            | Op::HDel { key, .. }
            | Op::Del { key } => key,
        }
    }
}

/// The ops of a run of records of one source partition, in offset order.
#[derive(Debug, Clone, Default)]
pub struct PartitionBatch {
    /// The topic the records came from; watermarks are per source topic.
    pub source_topic: String,
    /// The input partition; also the partition of every key written.
    pub partition: i32,
    /// `(offset, ops)` per record, offsets strictly increasing. A record with
    /// no ops still moves the watermark.
    pub records: Vec<(i64, Vec<Op>)>,
    /// When set, the batch is refused with [`crate::Error::Behind`] (nothing
    /// written) if the partition's watermark is below this offset: the
    /// caller knows it applied that far, so a lower watermark means the
    /// store lost writes. Consumers set it to the last offset they applied
    /// (see `mesh_bus::expected_through`).
    pub expect_through: Option<i64>,
}

impl PartitionBatch {
    pub fn new(source_topic: impl Into<String>, partition: i32) -> Self {
        PartitionBatch {
            source_topic: source_topic.into(),
            partition,
            records: Vec::new(),
            expect_through: None,
        }
    }

    pub fn push(&mut self, offset: i64, ops: Vec<Op>) {
        self.records.push((offset, ops));
    }

    pub fn last_offset(&self) -> Option<i64> {
        self.records.last().map(|(o, _)| *o)
    }

    pub(crate) fn check_order(&self) -> Result<()> {
        if self.records.windows(2).all(|w| w[0].0 < w[1].0) {
            Ok(())
        } else {
            Err(Error::Unordered {
                source_topic: self.source_topic.clone(),
                partition: self.partition,
            })
        }
    }
}
