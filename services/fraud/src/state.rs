//! Feature state in the store: core [`StateOp`]s → store [`Op`]s routed to
//! their home slots on the write side, one pipelined round trip on the read
//! side.
//!
//! **Where a hash lives.** A user's hash (`fraud:user:<tenant>/<user>`)
//! lives in the slot of the user's partition, the one whose consumer sees
//! all of the user's events. Every other hash (device, IP, instrument,
//! shipping location and their distinct-account sets) is shared by users of
//! many partitions; it lives in **one home slot**, `murmur2(key) %
//! partitions` ([`home_partition`]), so a read is one `HMGET` (or `HKEYS`)
//! per hash: an order costs 8 commands in one pipeline, whatever the
//! partition count.
//!
//! **Exactly once.** The consumer of partition `P` of topic `T` applies a
//! batch in three kinds of atomic steps ([`BatchWrite`]):
//! 1. the user slot `P`, under the store's watermark of `(P, T)`: user
//!    counters, the review queue. This is the batch that carries the
//!    consumer's `expect_through` (see below);
//! 2. per home slot `E` touched by the batch, the entity counters, under the
//!    watermark of `(E, "T#P")` ([`entity_source`]): slot `E` remembers, per
//!    input partition, the last offset whose entity ops it applied;
//! 3. the user slot `P` again, under the watermark of `(P, "T#done")`
//!    ([`done_source`]): the deletions that must wait for the home slots
//!    (an erased user's link index), and the batch's last offset, so this
//!    watermark says through which offset *every* step was applied.
//!
//! Step 1 runs first. A crash after step 1 leaves some entity steps undone;
//! the redelivered records are at or below `P`'s watermark, so they are not
//! scored again (their decisions were published), but their entity ops are
//! derived again and handed to step 2, whose own watermarks skip the slots
//! that had them. Every op therefore lands exactly once, and an order is
//! never scored on state that already holds its own update.
//!
//! **A store that went back** (flushed, restored from an older snapshot, a
//! failover to a replica that missed writes) is re-read from the done
//! watermark of step 3, not from step 1's ([`applied`]): a snapshot
//! taken between step 1 and step 2 holds a batch in its user slot but not
//! (all) in its home slots, and the re-read must hand those records to
//! step 2 again. Records between the two watermarks take the redelivery
//! path above (entity ops only, skipped where applied); the home slots'
//! watermarks went back with their state, so every entity op of the re-read
//! lands once. A store older than the done watermark (written before it
//! existed) has none: the user slot's watermark stands in.
//!
//! Steps 1 and 3 carry the offset the consumer applied before the batch
//! (`expect_through`), so a user slot that went back refuses them. A home
//! slot's step carries the last offset of the partition this process
//! applied in that slot ([`HomeMarks`]): a home slot that went back alone
//! (its Redis node failed over to a replica that missed writes), or while
//! a batch was between its steps, refuses the step too, and the consumer
//! re-reads from the lower of the slot's watermark and the done watermark.
//! The re-read hands the records' entity ops on again (they are pure
//! functions of the events), and the refusing slot's own watermark, which
//! went back with its counters, lets exactly the lost ones land.
//!
//! `Incr` becomes `HINCRBYFLOAT`, `SetIfAbsent` becomes `HSETNX`. The
//! core's per-field `expire_at` is **not** honoured: Redis 7.0 has no
//! per-field expiry (`HEXPIREAT` came in 7.4) and the store contract has no
//! expiry op, so old bucket fields stay until a replay rebuilds the scope.
//! Reads never look at them (windows read only their own buckets), so they
//! cost memory, not correctness.
//!
//! **Erasure.** A user's records start with [`mesh_store::erasure::guard`]
//! in the user slot. Home slots do not hold the user's erasure, so the
//! handler drops an erased user's records before they reach this type (see
//! [`crate::erasure`]); an erasure's own home-slot deletions go through
//! [`BatchWrite::push_erasure`], and the user's link index is deleted in the
//! third step ([`BatchWrite::apply`]) only once the home slots had them.
//!
//! **Reads.** `HMGET` of each hash in its slot; a distinct-account set is
//! read with `HKEYS` and counted. An *overlay* of ops not yet applied
//! (earlier records of the batch the consumer is working on) is added on
//! top, so each order sees every event before it.
use std::collections::{BTreeMap, HashMap, HashSet};

use mesh_fraud::state::ReadReply;
use mesh_fraud::{ReadRequest, ReadResults, StateOp};
use mesh_store::{HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};

use crate::error::{Error, Result};

/// Scope of every fraud key in the store.
pub const SCOPE: &str = "fraud";

/// Key prefix of user hashes (they live in the user's partition slot).
const USER_PREFIX: &str = "fraud:user:";

/// Whether a core key is a user hash (kept in the user's partition slot).
pub fn is_user_key(key: &str) -> bool {
    key.starts_with(USER_PREFIX)
}

/// The home slot of a shared (non-user) hash.
pub fn home_partition(key: &str, partitions: i32) -> i32 {
    mesh_bus::partition::partition_for(key, partitions)
}

/// The watermark field under which a home slot tracks the entity ops it
/// applied from input partition `partition` of `topic`.
pub fn entity_source(topic: &str, partition: i32) -> String {
    format!("{topic}#{partition}")
}

/// The watermark source, in the input partition's own slot, of the last
/// step of a batch of `topic` ([`BatchWrite`]): every step of every record
/// through its watermark was applied.
pub fn done_source(topic: &str) -> String {
    format!("{topic}#done")
}

/// The watermarks of an input partition's own slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The user slot's step (step 1): records at or below it were scored.
    pub own: Option<i64>,
    /// Every step ([`done_source`]), never above `own` (both are fields of
    /// one hash, so they go back together); without a done watermark (a
    /// store written before it existed), `own`. `None`: nothing (a new or
    /// flushed store).
    pub all: Option<i64>,
}

/// What the store applied of `topic[partition]`, in one slot's two reads.
pub async fn applied(store: &StateStore, topic: &str, partition: i32) -> Result<Applied> {
    let slot = Slot {
        scope: SCOPE,
        partition,
    };
    let done = done_source(topic);
    let (own, done) =
        futures::future::try_join(store.watermark(slot, topic), store.watermark(slot, &done))
            .await?;
    let all = match (own, done) {
        (Some(own), Some(done)) => Some(own.min(done)),
        (own, _) => own,
    };
    Ok(Applied { own, all })
}

/// Per input partition, the last offset this process applied in each home
/// slot, while its consumer applies the partition batch after batch: what
/// a home slot that went back alone (a failover of its Redis node) or
/// while a batch was between its steps must still hold. A home slot's own
/// watermark of `T#P` cannot say it: it is the last offset with ops for
/// that slot, and which offset that is only the writer knows. Forgotten
/// when the consumer starts over (an assignment, a re-read): its first
/// batch expects nothing.
#[derive(Debug, Default)]
pub struct HomeMarks(std::sync::Mutex<HashMap<(String, i32), BTreeMap<i32, i64>>>);

impl HomeMarks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), BTreeMap<i32, i64>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The marks of `topic[partition]` for a batch the consumer applies
    /// right after its previous one (`continued`); otherwise none, and
    /// those kept are forgotten.
    pub fn of(&self, topic: &str, partition: i32, continued: bool) -> BTreeMap<i32, i64> {
        let key = (topic.to_string(), partition);
        let mut marks = self.lock();
        if continued {
            marks.get(&key).cloned().unwrap_or_default()
        } else {
            marks.remove(&key);
            BTreeMap::new()
        }
    }

    /// Records an applied write's [`BatchWrite::home_marks`].
    pub fn applied(&self, topic: &str, partition: i32, applied: Vec<(i32, i64)>) {
        let mut marks = self.lock();
        let slots = marks.entry((topic.to_string(), partition)).or_default();
        for (slot, offset) in applied {
            let m = slots.entry(slot).or_insert(offset);
            *m = (*m).max(offset);
        }
    }

    /// Forgets the marks of `topic[partition]` (the consumer re-reads it).
    pub fn forget(&self, topic: &str, partition: i32) {
        self.lock().remove(&(topic.to_string(), partition));
    }
}

/// Store op of one core op.
fn store_op(op: &StateOp) -> Op {
    match op {
        // expire_at cannot be honoured per field: see the module docs.
        StateOp::Incr {
            key, field, delta, ..
        } => Op::HIncrFloat {
            key: key.clone(),
            field: field.clone(),
            delta: *delta,
        },
        StateOp::SetIfAbsent { key, field, value } => Op::HSetNx {
            key: key.clone(),
            field: field.clone(),
            value: format!("{value:?}"),
        },
    }
}

/// Store ops of core ops, all in one slot (no routing; the simplest
/// single-slot layout, used by tools that keep everything together).
pub fn store_ops(ops: &[StateOp]) -> Vec<Op> {
    ops.iter().map(store_op).collect()
}

/// The writes of one consumed batch of partition `partition`, routed to
/// their slots; see the module docs for the order and the guarantees.
#[derive(Debug, Clone)]
pub struct BatchWrite {
    partitions: i32,
    own: PartitionBatch,
    entity: BTreeMap<i32, PartitionBatch>,
    entity_source: String,
    /// Step 3: deletions that must wait until the home slots applied the
    /// ops derived from them (an erased user's link index), and the last
    /// offset of the batch, under the pseudo source [`done_source`] of the
    /// partition.
    done: PartitionBatch,
    /// The highest offset pushed or marked ([`BatchWrite::through`]).
    last: Option<i64>,
}

impl BatchWrite {
    /// An empty write for records of `topic[partition]`, with `partitions`
    /// slots.
    pub fn new(topic: &str, partition: i32, partitions: i32) -> Self {
        BatchWrite {
            partitions,
            own: PartitionBatch::new(topic, partition),
            entity: BTreeMap::new(),
            entity_source: entity_source(topic, partition),
            done: PartitionBatch::new(done_source(topic), partition),
            last: None,
        }
    }

    /// Sets the offset the consumer applied before this batch
    /// (`mesh_bus::expected_through`) on the user slot's step and on the
    /// done step: a store whose watermark is below it went back, and
    /// refuses the step with [`mesh_store::Error::Behind`] before writing.
    pub fn expect_through(&mut self, expect: Option<i64>) {
        self.own.expect_through = expect;
        self.done.expect_through = expect;
    }

    /// Marks every record through `offset` as handled, with or without ops:
    /// the done step moves its watermark that far. The handler marks the
    /// last record of every batch.
    pub fn through(&mut self, offset: i64) {
        self.last = self.last.max(Some(offset));
    }

    /// Sets, on each home slot's step, the last offset of this partition
    /// this process applied in that slot ([`HomeMarks`]): a home slot whose
    /// watermark is below it went back, and refuses the step before writing.
    /// Call it once every record is pushed.
    pub fn expect_home(&mut self, marks: &BTreeMap<i32, i64>) {
        for (slot, b) in &mut self.entity {
            b.expect_through = marks.get(slot).copied();
        }
    }

    /// The last offset of each home slot's step: what [`HomeMarks`] keeps
    /// once the write is applied.
    pub fn home_marks(&self) -> Vec<(i32, i64)> {
        self.entity
            .iter()
            .filter_map(|(slot, b)| Some((*slot, b.last_offset()?)))
            .collect()
    }

    /// A record of user `member` above the partition's watermark: `links`
    /// (the user's link index, see [`crate::erasure`]), then the erasure
    /// guard, then the user ops and `extra` go to the partition's slot; the
    /// rest to home slots.
    ///
    /// The links come *before* the guard: when the user's erasure arrived
    /// first on the other input topic, this record's home-slot ops still
    /// land (home slots cannot see the erasure), and the erasure on this
    /// topic, which follows every record of the user here, must find them
    /// in the index to delete them.
    pub fn push_user(
        &mut self,
        offset: i64,
        member: &str,
        links: Vec<Op>,
        ops: &[StateOp],
        extra: Vec<Op>,
    ) {
        let mut own = links;
        own.push(mesh_store::erasure::guard(member));
        let mut remote: Vec<&StateOp> = Vec::new();
        for op in ops {
            if is_user_key(op_key(op)) {
                own.push(store_op(op));
            } else {
                remote.push(op);
            }
        }
        own.extend(extra);
        self.through(offset);
        self.own.push(offset, own);
        self.push_remote(offset, remote);
    }

    /// An erasure record: `own` ops for the partition's slot (`None` for a
    /// record at or below the watermark, applied before), `remote` ops
    /// routed to the home slots of their keys, and `cleanup` ops applied
    /// after the home slots (in the done step).
    pub fn push_erasure(
        &mut self,
        offset: i64,
        own: Option<Vec<Op>>,
        remote: Vec<Op>,
        cleanup: Vec<Op>,
    ) {
        self.through(offset);
        if let Some(own) = own {
            self.own.push(offset, own);
        }
        let mut by_slot: BTreeMap<i32, Vec<Op>> = BTreeMap::new();
        for op in remote {
            by_slot
                .entry(home_partition(op.key(), self.partitions))
                .or_default()
                .push(op);
        }
        self.push_slots(offset, by_slot);
        if !cleanup.is_empty() {
            self.done.push(offset, cleanup);
        }
    }

    /// A record above the partition's watermark: user ops and `extra` (e.g.
    /// the review queue) go to the partition's slot, the rest to home slots.
    pub fn push(&mut self, offset: i64, ops: &[StateOp], extra: Vec<Op>) {
        let mut own: Vec<Op> = Vec::new();
        let mut remote: Vec<&StateOp> = Vec::new();
        for op in ops {
            if is_user_key(op_key(op)) {
                own.push(store_op(op));
            } else {
                remote.push(op);
            }
        }
        own.extend(extra);
        self.through(offset);
        self.own.push(offset, own);
        self.push_remote(offset, remote);
    }

    /// A record at or below the partition's watermark (redelivered): only its
    /// entity ops, which the home slots' watermarks skip where applied.
    pub fn push_entity_only(&mut self, offset: i64, ops: &[StateOp]) {
        self.through(offset);
        let remote = ops.iter().filter(|op| !is_user_key(op_key(op))).collect();
        self.push_remote(offset, remote);
    }

    fn push_remote(&mut self, offset: i64, ops: Vec<&StateOp>) {
        let mut by_slot: BTreeMap<i32, Vec<Op>> = BTreeMap::new();
        for op in ops {
            by_slot
                .entry(home_partition(op_key(op), self.partitions))
                .or_default()
                .push(store_op(op));
        }
        self.push_slots(offset, by_slot);
    }

    fn push_slots(&mut self, offset: i64, by_slot: BTreeMap<i32, Vec<Op>>) {
        for (slot, ops) in by_slot {
            self.entity
                .entry(slot)
                .or_insert_with(|| PartitionBatch::new(&self.entity_source, slot))
                .push(offset, ops);
        }
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.own.records.is_empty() && self.entity.is_empty() && self.last.is_none()
    }

    /// Slots touched (the partition's own, when it has records, first).
    pub fn slots(&self) -> usize {
        usize::from(!self.own.records.is_empty()) + self.entity.len()
    }

    /// Applies the partition's slot, then every home slot (concurrently),
    /// then the done step.
    pub async fn apply(&self, store: &StateStore) -> Result<()> {
        if !self.own.records.is_empty() {
            store.apply(SCOPE, &self.own).await?;
        }
        futures::future::try_join_all(self.entity.values().map(|b| store.apply(SCOPE, b))).await?;
        if let Some(done) = self.done_batch() {
            store.apply(SCOPE, &done).await?;
        }
        Ok(())
    }

    /// The done step: the erasures' deletions, then the last offset.
    fn done_batch(&self) -> Option<PartitionBatch> {
        let last = self.last?;
        let mut done = self.done.clone();
        if done.last_offset() < Some(last) {
            done.push(last, Vec::new());
        }
        Some(done)
    }

    /// Applies only the partition's own slot: a crash before the home slots
    /// (for tests of the recovery path).
    pub async fn apply_own_only(&self, store: &StateStore) -> Result<()> {
        if !self.own.records.is_empty() {
            store.apply(SCOPE, &self.own).await?;
        }
        Ok(())
    }
}

fn op_key(op: &StateOp) -> &str {
    match op {
        StateOp::Incr { key, .. } | StateOp::SetIfAbsent { key, .. } => key,
    }
}

/// Reads feature state in one round trip.
#[derive(Clone)]
pub struct FeatureReader {
    /// The state store.
    pub store: StateStore,
    /// Partitions of the input topics (= number of slots).
    pub partitions: i32,
}

impl FeatureReader {
    /// Answers `reqs` in one round trip. `owner_key` is the user hash, which
    /// lives in `owner_partition`; every other key is read in its home slot.
    /// `overlay` holds ops not applied yet, added on top in order.
    pub async fn read(
        &self,
        reqs: Vec<ReadRequest>,
        owner_key: &str,
        owner_partition: i32,
        overlay: &[StateOp],
    ) -> Result<ReadResults> {
        let mut fetched = self
            .fetch(vec![ReadSet {
                reqs,
                owner_key: owner_key.to_string(),
                owner_partition,
            }])
            .await?;
        let one = fetched
            .pop()
            .ok_or_else(|| corrupt(owner_key, "no reply"))?;
        Ok(one.with_overlay(overlay))
    }

    /// Answers several read sets (a batch's orders) in one round trip. The
    /// stored state is read as it is now; each set's overlay is added later
    /// ([`Fetched::with_overlay`]), when the ops before it are known.
    pub async fn fetch(&self, sets: Vec<ReadSet>) -> Result<Vec<Fetched>> {
        let mut reads: Vec<HashRead<'static>> = Vec::new();
        let mut bounds = Vec::with_capacity(sets.len());
        for set in sets {
            let start = reads.len();
            let slot_of = |key: &str| Slot {
                scope: SCOPE,
                partition: if key == set.owner_key {
                    set.owner_partition
                } else {
                    home_partition(key, self.partitions)
                },
            };
            // The requests move into the store reads (no copy of the ~450
            // field names an order reads).
            reads.extend(set.reqs.into_iter().map(|req| match req {
                ReadRequest::Fields { key, fields } => HashRead::Fields {
                    slot: slot_of(&key),
                    key,
                    fields,
                },
                ReadRequest::Len { key } => HashRead::Keys {
                    slot: slot_of(&key),
                    key,
                },
            }));
            bounds.push((start, reads.len(), set.owner_key));
        }
        let replies = self.store.hread_many(&reads).await?;
        if replies.len() != reads.len() {
            let owner = bounds.first().map(|b| b.2.as_str()).unwrap_or_default();
            return Err(corrupt(
                owner,
                &format!("{} replies to {} reads", replies.len(), reads.len()),
            ));
        }
        let mut merged = reads
            .iter()
            .zip(&replies)
            .map(|(read, reply)| decode(read, reply))
            .collect::<Result<Vec<_>>>()?
            .into_iter();
        let mut reads = reads.into_iter();
        Ok(bounds
            .into_iter()
            .map(|(start, end, _)| Fetched {
                reads: reads.by_ref().take(end - start).collect(),
                merged: merged.by_ref().take(end - start).collect(),
            })
            .collect())
    }
}

/// The reads of one order: its requests and where its user hash lives.
pub struct ReadSet {
    /// The feature requests.
    pub reqs: Vec<ReadRequest>,
    /// The user hash, read in `owner_partition`'s slot.
    pub owner_key: String,
    /// The user's partition.
    pub owner_partition: i32,
}

/// One read set's stored values, before the overlay.
pub struct Fetched {
    reads: Vec<HashRead<'static>>,
    merged: Vec<Merged>,
}

impl Fetched {
    /// The results with `overlay` (ops not applied yet) added on top, in
    /// order.
    pub fn with_overlay(mut self, overlay: &[StateOp]) -> ReadResults {
        apply_overlay(&self.reads, &mut self.merged, overlay);
        ReadResults(
            self.merged
                .into_iter()
                .map(|m| match m {
                    Merged::Fields(v) => ReadReply::Fields(v),
                    Merged::Members(m) => ReadReply::Len(m.len() as u64),
                })
                .collect(),
        )
    }
}

/// One request's reply, decoded.
enum Merged {
    /// Field values.
    Fields(Vec<Option<f64>>),
    /// Member fields of a distinct-accounts set.
    Members(HashSet<String>),
}

fn decode(read: &HashRead<'_>, reply: &HashReply) -> Result<Merged> {
    match (read, reply) {
        (HashRead::Fields { key, .. }, HashReply::Fields(v)) => v
            .iter()
            .map(|raw| {
                raw.as_deref()
                    .map(|raw| {
                        raw.parse::<f64>()
                            .map_err(|_| corrupt(key, &format!("not a number: {raw:?}")))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()
            .map(Merged::Fields),
        (HashRead::Keys { .. }, HashReply::Keys(k)) => {
            Ok(Merged::Members(k.iter().cloned().collect()))
        }
        (HashRead::Fields { key, .. }, _) => Err(corrupt(key, "expected field values")),
        (HashRead::Keys { key, .. }, _) => Err(corrupt(key, "expected field names")),
    }
}

fn corrupt(key: &str, reason: &str) -> Error {
    Error::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// Adds not-yet-applied ops to merged replies, in order, with the store's
/// semantics (`HINCRBYFLOAT` adds, `HSETNX` fills an absent field or adds a
/// member).
fn apply_overlay(reads: &[HashRead<'_>], merged: &mut [Merged], overlay: &[StateOp]) {
    if overlay.is_empty() {
        return;
    }
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in reads.iter().enumerate() {
        let key = match r {
            HashRead::Fields { key, .. } | HashRead::Keys { key, .. } => key.as_str(),
        };
        by_key.entry(key).or_default().push(i);
    }
    for op in overlay {
        let (key, field) = match op {
            StateOp::Incr { key, field, .. } | StateOp::SetIfAbsent { key, field, .. } => {
                (key.as_str(), field.as_str())
            }
        };
        let Some(idx) = by_key.get(key) else { continue };
        for &i in idx {
            match (&reads[i], &mut merged[i]) {
                (HashRead::Fields { fields, .. }, Merged::Fields(vals)) => {
                    if let Some(j) = fields.iter().position(|f| f == field) {
                        vals[j] = match op {
                            StateOp::Incr { delta, .. } => Some(vals[j].unwrap_or(0.0) + delta),
                            StateOp::SetIfAbsent { value, .. } => Some(vals[j].unwrap_or(*value)),
                        };
                    }
                }
                (HashRead::Keys { .. }, Merged::Members(m)) => {
                    m.insert(field.to_string());
                }
                _ => {}
            }
        }
    }
}
