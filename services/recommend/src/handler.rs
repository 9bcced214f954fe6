//! The consumer side: records of one partition in, one atomic store step
//! out.
//!
//! Co-occurrence needs the user's recent history, so the handler reads the
//! histories of the batch's users from the store first (the user's slot is
//! owned by this partition, so the read is consistent) and then extends
//! them in memory record by record. Batches of the two input topics for the
//! same partition number share those slots, so they are serialized by a
//! per-partition lock: a history read never misses a concurrent batch's
//! writes.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mesh_bus::headers::{self, HeaderList};
use mesh_bus::{Handler, HandlerError, Producer, Record};
use mesh_proto::events::v1::Envelope;
use mesh_recommend::live::LiveConfig;
use mesh_store::{PartitionBatch, Slot, StateStore};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::keys::{self, HistEntry, SCOPE};
use crate::metrics::INTERACTIONS;
use crate::signals;

pub struct RecommendHandler {
    pub store: StateStore,
    pub producer: Producer,
    pub dead_letter_topic: String,
    pub group: String,
    pub live: LiveConfig,
    locks: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
}

impl RecommendHandler {
    pub fn new(
        store: StateStore,
        producer: Producer,
        dead_letter_topic: String,
        group: String,
        live: LiveConfig,
    ) -> Self {
        RecommendHandler {
            store,
            producer,
            dead_letter_topic,
            group,
            live,
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
        let h = HeaderList::new()
            .with(
                headers::DLQ_REASON,
                format!("undecodable event envelope: {err}"),
            )
            .with(headers::DLQ_ORIGIN, &self.group)
            .with(
                "mesh_dlq_source",
                format!("{}[{}]@{}", r.topic, r.partition, r.offset),
            );
        self.producer
            .send(&self.dead_letter_topic, "undecodable", &r.payload, &h)
            .await
            .map_err(|e| HandlerError(format!("dead-letter: {e}")))?;
        Ok(())
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
        let mut histories = self.histories(slot, &relevant).await?;
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        let mut applied_kinds = Vec::new();
        for (r, e) in &decoded {
            let Some(e) = e.as_ref().filter(|e| signals::is_relevant(e)) else {
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
            let ops = signals::ops(e, history, &self.live);
            applied_kinds.extend(signals::signals(e).0.into_iter().map(|s| s.entry.kind));
            batch.push(r.offset, ops);
        }
        self.store
            .apply(SCOPE, &batch)
            .await
            .map_err(|e| HandlerError(e.to_string()))?;
        for k in applied_kinds {
            INTERACTIONS
                .with_label_values(&[interaction_label(k)])
                .inc();
        }
        Ok(())
    }
}

fn interaction_label(k: mesh_recommend::EventKind) -> &'static str {
    match k {
        mesh_recommend::EventKind::View => "view",
        mesh_recommend::EventKind::Cart => "cart",
        mesh_recommend::EventKind::Order => "order",
    }
}
