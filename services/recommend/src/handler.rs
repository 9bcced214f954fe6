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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use mesh_bus::{Handler, HandlerError, Producer, Record};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_recommend::live::LiveConfig;
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::keys::{self, HistEntry, SCOPE};
use crate::metrics::{CLICKS, INTERACTIONS};
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
        futures::future::try_join_all(applies)
            .await
            .map_err(|e| HandlerError(e.to_string()))?;
        self.store
            .apply(SCOPE, &plan.home)
            .await
            .map_err(|e| HandlerError(e.to_string()))?;
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
}

/// The store steps of one run of records.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Batches for other slots (source `<topic>@<partition>`), applied first.
    pub cross: Vec<PartitionBatch>,
    /// The batch of the consumed slot, applied last.
    pub home: PartitionBatch,
    /// Interactions, for the metrics.
    pub kinds: Vec<mesh_recommend::EventKind>,
    /// Sources of the clicks on recommendations counted, for the metrics.
    pub clicks: Vec<mesh_recommend::rank::Source>,
}

impl RecommendHandler {
    /// The batches for `records` (one partition of one topic, in offset
    /// order), from the histories in the store. Callers hold the
    /// partition's lock.
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
        // Records at or below the watermark were applied already: the store
        // would skip their ops, and their history is in the store.
        let wm = self
            .store
            .watermark(slot, &first.topic)
            .await
            .map_err(|e| HandlerError(format!("watermark read: {e}")))?
            .unwrap_or(-1);
        let mut decoded: Vec<(&Record, Option<Envelope>)> = Vec::with_capacity(records.len());
        for r in records.iter() {
            if r.offset <= wm {
                decoded.push((r, None));
                continue;
            }
            match Envelope::decode(r.payload.as_slice()) {
                Ok(e) => decoded.push((r, Some(e))),
                Err(err) => {
                    // Not ours to fix: keep it with the reason and move on.
                    self.dead_letter(r, err).await?;
                    decoded.push((r, None));
                }
            }
        }
        let relevant: Vec<&Envelope> = decoded
            .iter()
            .filter_map(|(_, e)| e.as_ref())
            .filter(|e| signals::is_relevant(e))
            .collect();
        let (mut histories, mut clicked, mut erased) = futures::future::try_join3(
            self.histories(slot, &relevant),
            self.clicked(slot, &relevant),
            self.erased(slot, &relevant),
        )
        .await?;
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
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
        store.ztop(slot, &keys::cooc("t", item), 10).await.unwrap()
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
}
