//! The consumer side: records of one partition in, one atomic store step
//! out.
//!
//! A `product_view` that carries a recommendation's attribution is also
//! counted as a click of that source and slot, at most once per impression
//! (the user's `clicked` list, read with the history).
//!
//! Co-occurrence needs the user's recent history, so the handler reads the
//! histories of the batch's users from the store first (the user's slot is
//! owned by this partition, so the read is consistent) and then extends
//! them in memory record by record. Batches of the two input topics for the
//! same partition number share those slots, so they are serialized by a
//! per-partition lock: a history read never misses a concurrent batch's
//! writes.
//!
//! **Erasure.** A `user_erased` event deletes the user's keys in the
//! consumed slot and records the erasure there ([`signals::erasure_ops`]);
//! every later record of the user starts with the erasure guard. The guard
//! only protects the consumed slot, so the ops a record would write into
//! other slots (anonymous counts, but still the erased user's activity) are
//! dropped at planning: the slot's erasure hash is read for the batch's
//! users with the histories, and an erasure earlier in the same batch is
//! remembered in memory.
//!
//! **Where the ops go.** User keys are written in the consumed partition's
//! slot; co-occurrence, catalog and popularity keys in their home slot
//! ([`keys::Home`]), so reads need one command per key instead of one per
//! partition. Ops for another slot `q` go in a batch of source
//! `<topic>@<partition>` applied to `q` (its own watermark there), and
//! those batches are applied *before* the batch of the consumed slot. A
//! crash in between leaves the consumed slot's watermark behind: the
//! redelivered records are recomputed from the same history (it lives in the
//! consumed slot, unchanged) into the same ops, and each other slot skips
//! the offsets it already has. Every op lands exactly once.
//!
//! **Resuming from what the store applied.** Every run moves the
//! partition's watermark in *every* slot to its last offset: the consumed
//! slot's batch carries every offset (records without ops too), and every
//! other slot gets the run's last offset (alone, with no ops, when the run
//! writes nothing there). All of them carry the consumer's
//! [`mesh_bus::expected_through`], so a slot that lost ops the consumer
//! applied (the store restored from an older snapshot, flushed, or failed
//! over to a replica that missed writes) refuses the run, nothing of it
//! written there, and the consumer re-reads the partition from what the
//! store still has: [`RecommendHandler::applied_through`], the lowest of
//! those watermarks, which is the consumed slot's (it is written last). The
//! re-read records are planned from the history the store went back to,
//! which is the history they were first planned from, so they give the same
//! ops; every other slot applies the ones it lost and skips the ones it
//! kept.
//!
//! Two things keep a run from writing ops planned from a history the store
//! already lost, since the other slots are written before the consumed
//! slot's batch can refuse: the plan reads the consumed slot's watermark
//! *after* the histories, click lists and erasures it plans from, and
//! refuses the run itself ([`mesh_store::Error::Behind`], nothing written,
//! nothing dead-lettered) when it is below what the consumer applied (a
//! store that went back before those reads went back before the watermark
//! read too, and inputs read before it went back are the right ones); and
//! when the store goes back after that read, the other slots that lost ops
//! refuse the run themselves instead of moving their watermark past the
//! gap. A slot that lost ops while the consumed slot did not (one node of a
//! cluster failed over on its own) cannot be rebuilt from the input, as
//! those ops were planned from histories overwritten since: that is logged
//! as an error (`mesh replay` rebuilds it) and the partition moves on.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use mesh_bus::{Handler, HandlerError, Producer, Record, Watermark};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_recommend::live::LiveConfig;
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::keys::{self, HistEntry, SCOPE};
use crate::metrics::{CLICKS, COOC_ROWS_CUT, INTERACTIONS};
use crate::signals;

pub struct RecommendHandler {
    pub store: StateStore,
    pub producer: Producer,
    pub dead_letter_topic: String,
    pub group: String,
    pub live: LiveConfig,
    /// Partitions of the input topics (home slots are computed with it).
    pub partitions: i32,
    locks: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
}

impl RecommendHandler {
    pub fn new(
        store: StateStore,
        producer: Producer,
        dead_letter_topic: String,
        group: String,
        live: LiveConfig,
        partitions: i32,
    ) -> Self {
        RecommendHandler {
            store,
            producer,
            dead_letter_topic,
            group,
            live,
            partitions,
            locks: Mutex::default(),
        }
    }

    /// Cuts the co-occurrence rows `plan` writes back to their
    /// [`LiveConfig::cooc_keep`] strongest neighbours once they are longer
    /// than [`LiveConfig::cooc_cut_above`]: one script per slot, the slots
    /// together. Returns the rows cut. Without it a row holds every item
    /// ever viewed near its item (20–25 KB per item measured at 500 items).
    pub async fn cut_rows(&self, plan: &Plan) -> mesh_store::Result<usize> {
        let Some(above) = self.live.cooc_cut_above() else {
            return Ok(0);
        };
        let rows: Vec<(i32, Vec<&str>)> = plan
            .cross
            .iter()
            .chain(std::iter::once(&plan.home))
            .filter_map(|b| {
                let mut keys: Vec<&str> = b
                    .records
                    .iter()
                    .flat_map(|(_, ops)| ops)
                    .filter_map(|op| match op {
                        Op::ZIncr { key, .. } if keys::is_cooc(key) => Some(key.as_str()),
                        _ => None,
                    })
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                (!keys.is_empty()).then_some((b.partition, keys))
            })
            .collect();
        let cuts = rows.iter().map(|(partition, keys)| {
            let slot = Slot {
                scope: SCOPE,
                partition: *partition,
            };
            self.store.zcap(slot, keys, self.live.cooc_keep, above)
        });
        Ok(futures::future::try_join_all(cuts).await?.into_iter().sum())
    }

    fn lock_of(&self, partition: i32) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(partition)
            .or_default()
            .clone()
    }

    async fn dead_letter(&self, r: &Record, err: prost::DecodeError) -> Result<(), HandlerError> {
        let h = r.dead_letter_headers(&format!("undecodable event envelope: {err}"), &self.group);
        self.producer
            .send(&self.dead_letter_topic, "undecodable", &r.payload, &h)
            .await
            .map_err(|e| HandlerError(format!("dead-letter: {e}")))?;
        Ok(())
    }

    /// Attributions already counted for the users of the click `events`
    /// (newest first), from the store.
    async fn clicked(
        &self,
        slot: Slot<'_>,
        events: &[&Envelope],
    ) -> Result<HashMap<(String, String), Vec<String>>, HandlerError> {
        let mut users: Vec<(String, String)> = events
            .iter()
            .filter(|e| signals::attribution(e).is_some())
            .map(|e| (e.tenant_id.clone(), e.user_id.clone()))
            .collect();
        users.sort();
        users.dedup();
        let list_keys: Vec<String> = users.iter().map(|(t, u)| keys::clicked(t, u)).collect();
        let reads = list_keys
            .iter()
            .map(|k| self.store.lrange(slot, k, keys::CLICKED_LEN));
        let lists = futures::future::try_join_all(reads)
            .await
            .map_err(|e| HandlerError(format!("clicked read: {e}")))?;
        Ok(users.into_iter().zip(lists).collect())
    }

    /// Members (`<tenant>/<user>`) of the users of `events` already erased
    /// in `slot`: one `HMGET` of the slot's erasure hash, none without
    /// events.
    async fn erased(
        &self,
        slot: Slot<'_>,
        events: &[&Envelope],
    ) -> Result<HashSet<String>, HandlerError> {
        let mut members: Vec<String> = events
            .iter()
            .map(|e| erasure::member(&e.tenant_id, &e.user_id))
            .collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return Ok(HashSet::new());
        }
        let read = HashRead::Fields {
            slot,
            key: erasure::KEY.into(),
            fields: members.clone(),
        };
        let replies = self
            .store
            .hread_many(&[read])
            .await
            .map_err(|e| HandlerError(format!("erasure read: {e}")))?;
        let Some(HashReply::Fields(values)) = replies.into_iter().next() else {
            return Err(HandlerError("erasure read: unexpected reply".into()));
        };
        Ok(members
            .into_iter()
            .zip(values)
            .filter(|(_, v)| v.is_some())
            .map(|(m, _)| m)
            .collect())
    }

    /// Histories (oldest first) of the users of `events`, from the store.
    async fn histories(
        &self,
        slot: Slot<'_>,
        events: &[&Envelope],
    ) -> Result<HashMap<(String, String), Vec<HistEntry>>, HandlerError> {
        let mut users: Vec<(String, String)> = events
            .iter()
            .map(|e| (e.tenant_id.clone(), e.user_id.clone()))
            .collect();
        users.sort();
        users.dedup();
        let hist_keys: Vec<String> = users.iter().map(|(t, u)| keys::history(t, u)).collect();
        let reads = hist_keys
            .iter()
            .map(|k| self.store.lrange(slot, k, self.live.history_len.max(1)));
        let lists = futures::future::try_join_all(reads)
            .await
            .map_err(|e| HandlerError(format!("history read: {e}")))?;
        Ok(users
            .into_iter()
            .zip(lists)
            .map(|(k, list)| {
                let h = list
                    .iter()
                    .rev()
                    .filter_map(|s| HistEntry::decode(s))
                    .collect();
                (k, h)
            })
            .collect())
    }
}

impl Handler for RecommendHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let lock = self.lock_of(first.partition);
        let _serial = lock.lock().await;
        let plan = self.plan(records).await?;
        // Other slots first, the consumed slot (whose watermark decides what
        // is redelivered) last.
        let applies = plan.cross.iter().map(|b| self.store.apply(SCOPE, b));
        let results = futures::future::join_all(applies).await;
        let mut behind: Vec<(i32, Option<i64>)> = Vec::new();
        let mut failed = None;
        for (b, r) in plan.cross.iter().zip(results) {
            match r {
                Ok(_) => {}
                Err(mesh_store::Error::Behind { watermark, .. }) => {
                    behind.push((b.partition, watermark));
                }
                Err(e) => failed = Some(e),
            }
        }
        if !behind.is_empty() {
            return Err(self.cross_behind(first, &plan, &behind).await);
        }
        if let Some(e) = failed {
            return Err(HandlerError::from(e));
        }
        // Refused as behind when the store lost what the consumer applied:
        // the consumer then re-reads from the watermark.
        self.store
            .apply(SCOPE, &plan.home)
            .await
            .map_err(HandlerError::from)?;
        // After the applies: a crash in between leaves rows longer until the
        // redelivered run (whose ops every slot skips) cuts them.
        let cut = self.cut_rows(&plan).await.map_err(HandlerError::from)?;
        COOC_ROWS_CUT.inc_by(cut as u64);
        for k in plan.kinds {
            INTERACTIONS
                .with_label_values(&[interaction_label(k)])
                .inc();
        }
        for s in plan.clicks {
            CLICKS
                .with_label_values(&[mesh_recommend::feedback::source_name(s)])
                .inc();
        }
        Ok(())
    }

    /// The lowest of the consumed slot's watermark of `topic` and the
    /// partition's watermark (`<topic>@<partition>`) in every other slot.
    /// Every run moves all of them to its last offset, the other slots
    /// first, so this is the consumed slot's watermark: every op of every
    /// record at or below it is in every slot it belongs to (other slots
    /// may hold a few later records, of a run that stopped between the two
    /// steps; re-read, those give the same ops, which the slots skip). It
    /// is lower only for a store written before every run moved every
    /// slot, or after the partition count grew: the records in between are
    /// re-read once, and plan nothing (see the module documentation).
    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        let source = keys::cross_source(topic, partition);
        let reads = (0..self.partitions)
            .filter(|q| *q != partition)
            .map(|q| (q, source.as_str()))
            .chain([(partition, topic)])
            .map(|(q, source)| {
                let slot = Slot {
                    scope: SCOPE,
                    partition: q,
                };
                async move { self.store.watermark(slot, source).await }
            });
        let marks = futures::future::try_join_all(reads)
            .await
            .map_err(HandlerError::from)?;
        // `None` (nothing applied) is the lowest.
        Ok(match marks.into_iter().min().flatten() {
            Some(w) => Watermark::At(w),
            None => Watermark::Empty,
        })
    }
}

impl RecommendHandler {
    /// The error for a run that other slots refused as behind (they lost
    /// ops the consumer applied to them): the store went back, and the
    /// consumer re-reads the partition from the lowest of the consumed
    /// slot's watermark and the refusing slots' ones. When the consumed slot
    /// did not go back (one node of a cluster failed over on its own), the
    /// refusing slots' lost ops cannot be rebuilt from the input (they were
    /// planned from histories overwritten since), which is logged; the
    /// partition then moves on.
    async fn cross_behind(
        &self,
        first: &Record,
        plan: &Plan,
        behind: &[(i32, Option<i64>)],
    ) -> HandlerError {
        let slot = Slot {
            scope: SCOPE,
            partition: first.partition,
        };
        let home = match self.store.watermark(slot, &first.topic).await {
            Ok(w) => w,
            Err(e) => return HandlerError::from(e),
        };
        let expected = plan.home.expect_through.unwrap_or(-1);
        if home.is_some_and(|h| h >= expected) {
            tracing::error!(topic = %first.topic, partition = first.partition, slots = ?behind,
                expected, "recommend: other slots lost co-occurrence, popularity, catalog or \
                click counts of this partition that its records cannot rebuild; \
                `mesh replay --service recommend` rebuilds them");
        }
        let lowest = behind.iter().map(|(_, w)| *w).fold(home, std::cmp::min);
        HandlerError::from(mesh_store::Error::Behind {
            source_topic: first.topic.clone(),
            partition: first.partition,
            watermark: lowest,
            expected,
        })
    }
}

/// The store steps of one run of records.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Batches for every other slot (source `<topic>@<partition>`),
    /// applied first; each ends at the run's last offset (with no ops when
    /// the run writes nothing there) and carries the consumer's
    /// [`mesh_bus::expected_through`].
    pub cross: Vec<PartitionBatch>,
    /// The batch of the consumed slot, applied last; it carries the
    /// consumer's [`mesh_bus::expected_through`].
    pub home: PartitionBatch,
    /// Interactions, for the metrics.
    pub kinds: Vec<mesh_recommend::EventKind>,
    /// Sources of the clicks on recommendations counted, for the metrics.
    pub clicks: Vec<mesh_recommend::rank::Source>,
}

impl RecommendHandler {
    /// The batches for `records` (one partition of one topic, in offset
    /// order), from the histories in the store. Callers hold the
    /// partition's lock. Refuses the run ([`mesh_store::Error::Behind`],
    /// through [`HandlerError::from`]) when the consumed slot's watermark
    /// is below what the consumer applied: the store went back and the
    /// inputs may be older than the records.
    pub async fn plan(&self, records: &[Record]) -> Result<Plan, HandlerError> {
        let Some(first) = records.first() else {
            return Ok(Plan {
                cross: Vec::new(),
                home: PartitionBatch::default(),
                kinds: Vec::new(),
                clicks: Vec::new(),
            });
        };
        let slot = Slot {
            scope: SCOPE,
            partition: first.partition,
        };
        let parsed: Vec<(&Record, Result<Envelope, prost::DecodeError>)> = records
            .iter()
            .map(|r| (r, Envelope::decode(r.payload.as_slice())))
            .collect();
        let relevant: Vec<&Envelope> = parsed
            .iter()
            .filter_map(|(_, e)| e.as_ref().ok())
            .filter(|e| signals::is_relevant(e))
            .collect();
        let (mut histories, mut clicked, mut erased) = futures::future::try_join3(
            self.histories(slot, &relevant),
            self.clicked(slot, &relevant),
            self.erased(slot, &relevant),
        )
        .await?;
        // Read after the inputs: when it is not behind what the consumer
        // applied, neither were they (see the module documentation).
        let stored = self
            .store
            .watermark(slot, &first.topic)
            .await
            .map_err(|e| HandlerError(format!("watermark read: {e}")))?;
        let expect = mesh_bus::expected_through();
        if let Some(expected) = expect.filter(|e| stored.is_none_or(|w| w < *e)) {
            return Err(HandlerError::from(mesh_store::Error::Behind {
                source_topic: first.topic.clone(),
                partition: first.partition,
                watermark: stored,
                expected,
            }));
        }
        // Records at or below the watermark were applied already: the store
        // would skip their ops, and their history is in the store.
        let wm = stored.unwrap_or(-1);
        let mut decoded: Vec<(&Record, Option<Envelope>)> = Vec::with_capacity(records.len());
        for (r, e) in parsed {
            if r.offset <= wm {
                decoded.push((r, None));
                continue;
            }
            match e {
                Ok(e) => decoded.push((r, Some(e))),
                Err(err) => {
                    // Not ours to fix: keep it with the reason and move on.
                    self.dead_letter(r, err).await?;
                    decoded.push((r, None));
                }
            }
        }
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = expect;
        let cross_source = keys::cross_source(&first.topic, first.partition);
        let mut cross: BTreeMap<i32, PartitionBatch> = BTreeMap::new();
        let mut applied_kinds = Vec::new();
        let mut clicks = Vec::new();
        for (r, e) in &decoded {
            if let Some(e) = e
                .as_ref()
                .filter(|e| matches!(e.body, Some(Body::UserErased(_))))
            {
                // Later records of the user in this batch plan nothing.
                let user = (e.tenant_id.clone(), e.user_id.clone());
                histories.remove(&user);
                clicked.remove(&user);
                erased.insert(erasure::member(&e.tenant_id, &e.user_id));
                batch.push(r.offset, signals::erasure_ops(e));
                continue;
            }
            let Some(e) = e.as_ref().filter(|e| {
                signals::is_relevant(e)
                    && !erased.contains(&erasure::member(&e.tenant_id, &e.user_id))
            }) else {
                batch.push(r.offset, Vec::new());
                continue;
            };
            let span =
                tracing::info_span!("recommend.apply", event_id = %e.event_id, offset = r.offset);
            let _ = span.set_parent(r.headers.trace_context());
            let _g = span.enter();
            let history = histories
                .entry((e.tenant_id.clone(), e.user_id.clone()))
                .or_default();
            let mut own = Vec::new();
            let mut others: BTreeMap<i32, Vec<Op>> = BTreeMap::new();
            let mut routed = signals::routed_ops(e, history, &self.live);
            if let Some(list) = clicked.get_mut(&(e.tenant_id.clone(), e.user_id.clone())) {
                if let Some((a, ops)) = signals::click_ops(e, list) {
                    clicks.push(a.source);
                    routed.extend(ops);
                }
            }
            for (home, op) in routed {
                match home.partition(&op, first.partition, self.partitions) {
                    q if q == first.partition => own.push(op),
                    q => others.entry(q).or_default().push(op),
                }
            }
            for (q, ops) in others {
                cross
                    .entry(q)
                    .or_insert_with(|| PartitionBatch::new(&cross_source, q))
                    .push(r.offset, ops);
            }
            applied_kinds.extend(signals::signals(e).0.into_iter().map(|s| s.entry.kind));
            if !own.is_empty() {
                own.insert(
                    0,
                    erasure::guard(&erasure::member(&e.tenant_id, &e.user_id)),
                );
            }
            batch.push(r.offset, own);
        }
        // Every other slot moves to the run's last offset too, and expects
        // what the consumer applied: a slot that lost ops refuses the run.
        let last = records.last().map_or(first.offset, |r| r.offset);
        for q in (0..self.partitions).filter(|q| *q != first.partition) {
            let b = cross
                .entry(q)
                .or_insert_with(|| PartitionBatch::new(&cross_source, q));
            if b.last_offset() != Some(last) {
                b.push(last, Vec::new());
            }
            b.expect_through = expect;
        }
        Ok(Plan {
            cross: cross.into_values().collect(),
            home: batch,
            kinds: applied_kinds,
            clicks,
        })
    }
}

fn interaction_label(k: mesh_recommend::EventKind) -> &'static str {
    match k {
        mesh_recommend::EventKind::View => "view",
        mesh_recommend::EventKind::Cart => "cart",
        mesh_recommend::EventKind::Order => "order",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_bus::ProducerConfig;
    use mesh_proto::events::v1::envelope::Body;
    use mesh_proto::events::v1::ProductView;
    use mesh_store::MemoryStore;

    const PARTITIONS: i32 = 4;

    fn handler(store: &StateStore) -> RecommendHandler {
        // Nothing here is undecodable: the producer never sends.
        let producer = Producer::new(ProducerConfig::new("127.0.0.1:1", "test")).unwrap();
        RecommendHandler::new(
            store.clone(),
            producer,
            "dlq".into(),
            "g".into(),
            LiveConfig::default(),
            PARTITIONS,
        )
    }

    fn records() -> Vec<Record> {
        let p = mesh_bus::partition::partition_for("t/u", PARTITIONS);
        ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(k, sku)| {
                let e = Envelope {
                    event_id: format!("e{k}"),
                    tenant_id: "t".into(),
                    user_id: "u".into(),
                    occurred_at_ms: 1_800_000_000_000 + k as i64,
                    source: "test".into(),
                    context: None,
                    body: Some(Body::ProductView(ProductView {
                        sku: sku.to_string(),
                        category: "c".into(),
                        ..Default::default()
                    })),
                };
                Record {
                    topic: "events".into(),
                    partition: p,
                    offset: 10 + k as i64,
                    key: None,
                    payload: e.encode_to_vec(),
                    headers: mesh_bus::headers::HeaderList::new(),
                    timestamp_ms: None,
                }
            })
            .collect()
    }

    async fn cooc(store: &StateStore, item: &str) -> Vec<(String, f64)> {
        let slot = Slot {
            scope: SCOPE,
            partition: keys::item_partition("t", item, PARTITIONS),
        };
        // The records' time (2027-01-15) is in epoch 0 of the co-occurrence decay.
        let epoch = LiveConfig::default().cooc_decay().epoch(1_800_000_000.0);
        store
            .ztop(slot, &keys::cooc("t", item, epoch), 10)
            .await
            .unwrap()
    }

    /// One user alternating a hub item with 150 new items, 50 records per
    /// run: the hub's row is cut back to `cooc_keep` once it passes 128
    /// neighbours, and keeps exactly the strongest of the uncut row.
    #[tokio::test]
    async fn long_cooc_rows_are_cut_to_their_strongest_neighbours() {
        let p = mesh_bus::partition::partition_for("t/u", PARTITIONS);
        let recs: Vec<Record> = (0..300)
            .map(|k| {
                let sku = if k % 2 == 1 {
                    "hub".to_string()
                } else {
                    format!("x{}", k / 2)
                };
                let e = Envelope {
                    event_id: format!("e{k}"),
                    tenant_id: "t".into(),
                    user_id: "u".into(),
                    occurred_at_ms: 1_800_000_000_000 + 1000 * k as i64,
                    source: "test".into(),
                    context: None,
                    body: Some(Body::ProductView(ProductView {
                        sku,
                        category: "c".into(),
                        ..Default::default()
                    })),
                };
                Record {
                    topic: "events".into(),
                    partition: p,
                    offset: k as i64,
                    key: None,
                    payload: e.encode_to_vec(),
                    headers: mesh_bus::headers::HeaderList::new(),
                    timestamp_ms: None,
                }
            })
            .collect();
        let row = |store: StateStore| async move {
            let slot = Slot {
                scope: SCOPE,
                partition: keys::item_partition("t", "hub", PARTITIONS),
            };
            let epoch = LiveConfig::default().cooc_decay().epoch(1_800_000_000.0);
            store
                .ztop(slot, &keys::cooc("t", "hub", epoch), 1000)
                .await
                .unwrap()
        };
        let mut rows = Vec::new();
        for keep in [0, 100] {
            let store = StateStore::Memory(MemoryStore::new("cut"));
            let mut h = handler(&store);
            h.live.cooc_keep = keep;
            for run in recs.chunks(50) {
                h.handle(run).await.unwrap();
            }
            rows.push(row(store).await);
        }
        let (whole, cut) = (&rows[0], &rows[1]);
        assert_eq!(whole.len(), 150, "every new item is a neighbour of the hub");
        assert_eq!(cut.len(), 100, "cut at 150 (> 128) back to 100");
        assert_eq!(
            &cut[..20],
            &whole[..20],
            "the strongest neighbours and their scores"
        );
        let store = StateStore::Memory(MemoryStore::new("plan"));
        let h = handler(&store);
        let plan = h.plan(&recs[..10]).await.unwrap();
        store.apply(SCOPE, &plan.home).await.unwrap();
        assert_eq!(h.cut_rows(&plan).await.unwrap(), 0, "short rows are left");
    }

    #[tokio::test]
    async fn a_crash_between_slots_and_redeliveries_still_apply_every_op_once() {
        let recs = records();
        let once = StateStore::Memory(MemoryStore::new("once"));
        handler(&once).handle(&recs).await.unwrap();
        let expected: Vec<_> =
            futures::future::join_all(["a", "b", "c", "d"].map(|i| cooc(&once, i))).await;
        assert!(expected.iter().all(|c| !c.is_empty()));
        let plan = handler(&once).plan(&recs).await.unwrap();
        assert!(
            plan.home.records.iter().all(|(_, ops)| ops.is_empty()),
            "records under the watermark must plan no ops"
        );

        let crashed = StateStore::Memory(MemoryStore::new("crashed"));
        let h = handler(&crashed);
        // The other slots were written, then the process died before the
        // consumed slot's step: the records come again, twice.
        let plan = h.plan(&recs).await.unwrap();
        assert!(!plan.cross.is_empty(), "some keys live in other slots");
        for b in &plan.cross {
            crashed.apply(SCOPE, b).await.unwrap();
        }
        h.handle(&recs).await.unwrap();
        h.handle(&recs).await.unwrap();
        let got: Vec<_> =
            futures::future::join_all(["a", "b", "c", "d"].map(|i| cooc(&crashed, i))).await;
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn every_run_moves_every_slot_and_applied_through_is_the_lowest() {
        let recs = records();
        let (p, last) = (recs[0].partition, recs[3].offset);
        let source = keys::cross_source("events", p);
        let store = StateStore::Memory(MemoryStore::new("all"));
        let h = handler(&store);
        assert_eq!(
            h.applied_through("events", p).await.unwrap(),
            Watermark::Empty
        );
        h.handle(&recs).await.unwrap();
        for q in (0..PARTITIONS).filter(|q| *q != p) {
            let slot = Slot {
                scope: SCOPE,
                partition: q,
            };
            assert_eq!(store.watermark(slot, &source).await.unwrap(), Some(last));
        }
        assert_eq!(
            h.applied_through("events", p).await.unwrap(),
            Watermark::At(last)
        );

        // The consumed slot's step without the other slots' (they lost
        // theirs): what was applied is what they still have.
        let lost = StateStore::Memory(MemoryStore::new("lost"));
        let h = handler(&lost);
        let plan = h.plan(&recs).await.unwrap();
        assert_eq!(plan.cross.len(), PARTITIONS as usize - 1);
        lost.apply(SCOPE, &plan.home).await.unwrap();
        lost.apply(SCOPE, &plan.cross[0]).await.unwrap();
        assert_eq!(
            h.applied_through("events", p).await.unwrap(),
            Watermark::Empty
        );
        for b in &plan.cross {
            lost.apply(SCOPE, b).await.unwrap();
        }
        assert_eq!(
            h.applied_through("events", p).await.unwrap(),
            Watermark::At(last)
        );
    }
}
