//! Service state with exactly-once effects, on Redis or in memory.
//!
//! Every piece of state belongs to one input partition. A consumer turns a
//! run of records from one partition into [`Op`]s and hands them to
//! [`StateStore::apply`] as a [`PartitionBatch`]; the store applies the ops
//! of every record whose offset is above the partition's watermark **and**
//! moves the watermark, in one atomic step (a Lua script on Redis, one lock
//! in memory). A redelivered record therefore changes nothing, whoever
//! delivers it: a restarted consumer, a zombie after a rebalance, a replay.
//!
//! All keys of one (scope, partition) share a Redis Cluster hash tag,
//! `<prefix>:{<scope>.<partition>}:<key>`, so the atomic step stays on one
//! slot. The same code runs on one Redis server or on a Redis Cluster; the
//! URL chooses ([`RedisStore::connect`]).
//!
//! Reads and writes of many keys (`*_many`, the ledger) answer an empty
//! input with an empty answer and no round trip, in every mode: Redis
//! refuses an empty pipeline.
//!
//! This crate knows nothing of events or Kafka; it must not grow service
//! logic.
//!
//! # Layout
//! - [`op`]: the operations and batches services produce.
//! - [`redis_store`]: the Redis implementation (Lua apply script).
//! - [`connection`]: one server or a cluster behind one connection type;
//!   per-slot pipelines and per-master scans for the cluster.
//! - [`memory`]: the in-memory implementation for the embedded mode.
//! - [`ledger`]: short-lived id claims used by ingest to drop retried
//!   event ids.
//! - [`tls`]: [`RedisTls`], the CA and client certificate for `rediss://`.
#![forbid(unsafe_code)]

pub mod connection;
pub mod erasure;
mod fold;
pub mod ledger;
pub mod memory;
pub mod op;
pub mod redis_store;
pub mod tls;

use std::collections::HashMap;

pub use connection::{StoreConnection, Topology};
pub use fold::{apply_paths, ApplyPaths};
pub use ledger::{Claim, IdLedger};
pub use memory::MemoryStore;
pub use op::{Op, PartitionBatch};
pub use redis_store::RedisStore;
pub use tls::RedisTls;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis could not be reached or refused a command.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    /// A value in the store was not what the reader expected.
    #[error("bad value at {key}: {reason}")]
    BadValue { key: String, reason: String },
    /// The batch was not in offset order.
    #[error("batch for {source_topic}[{partition}] is not in increasing offset order")]
    Unordered {
        source_topic: String,
        partition: i32,
    },
    /// The store's configuration (URL, key prefix) is unusable.
    #[error("store configuration: {0}")]
    Config(String),
    /// The batch expected the partition's watermark at `expected` or above
    /// (the consumer applied that far), but the store is at `watermark`:
    /// the store went back (a flush, a restore from an older snapshot, a
    /// failover to a replica that missed writes). Nothing was written; the
    /// consumer resumes from `watermark + 1` to rebuild what was lost.
    #[error(
        "store went back: {source_topic}[{partition}] is applied through {} but {expected} was \
         applied before",
        watermark.map_or("nothing".to_string(), |w| w.to_string())
    )]
    Behind {
        source_topic: String,
        partition: i32,
        watermark: Option<i64>,
        expected: i64,
    },
}

pub(crate) fn behind(batch: &PartitionBatch, watermark: Option<i64>) -> Error {
    Error::Behind {
        source_topic: batch.source_topic.clone(),
        partition: batch.partition,
        watermark,
        expected: batch.expect_through.unwrap_or(-1),
    }
}

impl From<redis::RedisError> for Error {
    /// Counts the transient ones (see [`transient_failures`]).
    fn from(e: redis::RedisError) -> Self {
        let e = Error::Redis(e);
        if e.is_transient() {
            TRANSIENT_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        e
    }
}

static TRANSIENT_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many store calls of this process have failed for a transient reason
/// ([`Error::is_transient`]: a timeout, a dropped or refused connection) so
/// far. A consumer compares it before and after a record's attempt: a record
/// that failed while the store was timing out is not blamed for the failure
/// (`mesh_bus::poison`), whatever its handler made of the error.
pub fn transient_failures() -> u64 {
    TRANSIENT_FAILURES.load(std::sync::atomic::Ordering::Relaxed)
}

impl Error {
    /// Whether the failure says the store is unreachable or busy right now
    /// (connection refused or dropped, timeout, cluster down or
    /// resharding), so the same call may succeed later; false for answers
    /// a retry will repeat (a script error, a wrong type, a bad value).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_cluster_error()
                    || !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
            }
            Error::BadValue { .. }
            | Error::Unordered { .. }
            | Error::Config(_)
            | Error::Behind { .. } => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What one [`StateStore::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Records whose ops were applied.
    pub applied: u64,
    /// Records at or below the watermark, skipped as already applied.
    pub skipped: u64,
}

/// Where a key lives: the scope (usually a service name) and the input
/// partition that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot<'a> {
    pub scope: &'a str,
    pub partition: i32,
}

/// One read of [`StateStore::hread_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashRead<'a> {
    /// `HMGET`: the values of `fields`, `None` where absent.
    Fields {
        slot: Slot<'a>,
        key: String,
        fields: Vec<String>,
    },
    /// `HKEYS`: the field names (any order).
    Keys { slot: Slot<'a>, key: String },
}

/// Reply to one [`HashRead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashReply {
    Fields(Vec<Option<String>>),
    Keys(Vec<String>),
}

/// One contract, two implementations. Both run the same test suite
/// (`tests/contract.rs`).
#[derive(Clone)]
pub enum StateStore {
    Redis(RedisStore),
    Memory(MemoryStore),
}

impl StateStore {
    /// Applies the ops of every record above the watermark of
    /// `(batch.source_topic, batch.partition)` and moves the watermark, atomically.
    pub async fn apply(&self, scope: &str, batch: &PartitionBatch) -> Result<Applied> {
        batch.check_order()?;
        match self {
            StateStore::Redis(s) => s.apply(scope, batch).await,
            StateStore::Memory(s) => s.apply(scope, batch),
        }
    }

    /// The last applied offset of a source partition, if any.
    pub async fn watermark(&self, slot: Slot<'_>, source_topic: &str) -> Result<Option<i64>> {
        match self {
            StateStore::Redis(s) => s.watermark(slot, source_topic).await,
            StateStore::Memory(s) => Ok(s.watermark(slot, source_topic)),
        }
    }

    /// How many records of a source partition the slot ever applied (each
    /// counted once, in the same atomic step as its effects and the
    /// watermark; records skipped as already applied are not counted). A
    /// store that went back lost its count with its effects. `mesh chaos`
    /// compares it with the records on the topic: more means a record
    /// was applied twice, fewer that one was lost.
    pub async fn applied_records(&self, slot: Slot<'_>, source_topic: &str) -> Result<u64> {
        match self {
            StateStore::Redis(s) => s.applied_records(slot, source_topic).await,
            StateStore::Memory(s) => Ok(s.applied_records(slot, source_topic)),
        }
    }

    /// All fields of a hash; empty when the key does not exist.
    pub async fn hgetall(&self, slot: Slot<'_>, key: &str) -> Result<HashMap<String, String>> {
        match self {
            StateStore::Redis(s) => s.hgetall(slot, key).await,
            StateStore::Memory(s) => Ok(s.hgetall(slot, key)),
        }
    }

    /// Several hashes in one round trip (one per hash slot on a cluster),
    /// in the order asked; no keys, no round trip.
    pub async fn hgetall_many(
        &self,
        keys: &[(Slot<'_>, String)],
    ) -> Result<Vec<HashMap<String, String>>> {
        match self {
            StateStore::Redis(s) => s.hgetall_many(keys).await,
            StateStore::Memory(s) => Ok(keys.iter().map(|(sl, k)| s.hgetall(*sl, k)).collect()),
        }
    }

    /// Several hash reads (`HMGET` / `HKEYS`) in one round trip (one
    /// pipeline, or one per hash slot on a cluster), replies in the order
    /// asked; no reads, no round trip.
    pub async fn hread_many(&self, reads: &[HashRead<'_>]) -> Result<Vec<HashReply>> {
        match self {
            StateStore::Redis(s) => s.hread_many(reads).await,
            StateStore::Memory(s) => Ok(reads.iter().map(|r| s.hread(r)).collect()),
        }
    }

    /// Members of a sorted set with the highest scores first.
    pub async fn ztop(&self, slot: Slot<'_>, key: &str, n: usize) -> Result<Vec<(String, f64)>> {
        match self {
            StateStore::Redis(s) => s.ztop(slot, key, n).await,
            StateStore::Memory(s) => Ok(s.ztop(slot, key, n)),
        }
    }

    /// Caps sorted sets of one slot: each of `keys` with more than `above`
    /// members keeps its `keep` highest-scored ones (ties: the greater
    /// member, the order of [`Self::ztop`]). Returns how many keys were cut.
    ///
    /// Not tied to an offset (like [`Self::hset_if`]): callers run it after
    /// an apply, so a crash in between leaves a set longer until the next
    /// cap, never an op lost or applied twice; a member cut and incremented
    /// again starts from its new increments. `above` at or below Redis's
    /// `zset-max-listpack-entries` (128) keeps each set in the compact
    /// encoding: on Redis a cut set is rewritten, not trimmed in place.
    pub async fn zcap(
        &self,
        slot: Slot<'_>,
        keys: &[&str],
        keep: usize,
        above: usize,
    ) -> Result<usize> {
        if keep == 0 || above < keep {
            return Err(Error::Config(format!(
                "zcap(keep {keep}, above {above}): keep must be at least 1 and above at least keep"
            )));
        }
        if keys.is_empty() {
            return Ok(0);
        }
        match self {
            StateStore::Redis(s) => s.zcap(slot, keys, keep, above).await,
            StateStore::Memory(s) => Ok(s.zcap(slot, keys, keep, above)),
        }
    }

    /// A list, newest first.
    pub async fn lrange(&self, slot: Slot<'_>, key: &str, n: usize) -> Result<Vec<String>> {
        match self {
            StateStore::Redis(s) => s.lrange(slot, key, n).await,
            StateStore::Memory(s) => Ok(s.lrange(slot, key, n)),
        }
    }

    /// Deletes every key of a scope, watermarks included (used by replay).
    pub async fn clear_scope(&self, scope: &str) -> Result<u64> {
        self.clear_scope_keeping(scope, &[]).await
    }

    /// Like [`clear_scope`](Self::clear_scope), but keeps the keys whose
    /// name starts with one of `keep`: state that no topic can rebuild
    /// (review labels, stock set over gRPC) survives a replay.
    pub async fn clear_scope_keeping(&self, scope: &str, keep: &[&str]) -> Result<u64> {
        match self {
            StateStore::Redis(s) => s.clear_scope(scope, keep).await,
            StateStore::Memory(s) => Ok(s.clear_scope(scope, keep)),
        }
    }

    /// Compare-and-set on one hash, atomically: when every `(field, expected)`
    /// of `guard` holds (`None`: the field is absent), sets every
    /// `(field, value)` of `set` and returns true; otherwise changes nothing
    /// and returns false. For effects not tied to an input offset (timers):
    /// once it succeeded, the same call fails its guard, so the effect
    /// happens once however often it is retried.
    pub async fn hset_if(
        &self,
        slot: Slot<'_>,
        key: &str,
        guard: &[(&str, Option<&str>)],
        set: &[(&str, &str)],
    ) -> Result<bool> {
        match self {
            StateStore::Redis(s) => s.hset_if(slot, key, guard, set).await,
            StateStore::Memory(s) => Ok(s.hset_if(slot, key, guard, set)),
        }
    }

    /// Round trip to the backend, for readiness.
    pub async fn ping(&self) -> Result<()> {
        match self {
            StateStore::Redis(s) => s.ping().await,
            StateStore::Memory(_) => Ok(()),
        }
    }
}

/// Full key of `key` in `slot` under `prefix`.
pub(crate) fn full_key(prefix: &str, slot: Slot<'_>, key: &str) -> String {
    format!("{prefix}:{{{}.{}}}:{key}", slot.scope, slot.partition)
}

/// Whether `full` (a key under `prefix`) is in a partition slot of `scope`
/// (`{prefix}:{{scope}.{partition}}:name`, integer partition) and its key
/// name does not start with one of `keep`. A longer scope that starts with
/// the same name (`profile.model` beside `profile`) is a different scope.
pub(crate) fn clears(prefix: &str, scope: &str, full: &str, keep: &[&str]) -> bool {
    key_in_scope(prefix, scope, full).is_some_and(|name| !keep.iter().any(|k| name.starts_with(k)))
}

/// The key name of `full` when it is in a partition slot of `scope`.
fn key_in_scope<'a>(prefix: &str, scope: &str, full: &'a str) -> Option<&'a str> {
    let rest = full
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_prefix(scope)?
        .strip_prefix('.')?;
    let (partition, name) = rest.split_once('}')?;
    partition.parse::<i32>().ok()?;
    Some(name.strip_prefix(':').unwrap_or(name))
}

/// Key of the watermark hash of a slot (one field per source topic).
pub(crate) const WATERMARK_KEY: &str = "_wm";

/// Field of the watermark hash counting the records of `source_topic` ever
/// applied in the slot, moved in the same atomic step as the watermark.
pub(crate) fn tally_field(source_topic: &str) -> String {
    format!("#n:{source_topic}")
}
