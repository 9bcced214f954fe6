//! The consumer side: order and user-event records of one partition in
//! (duplicate event ids dropped, every record guarded by the user's
//! erasure, see [`crate::summary`]), one atomic store step out, then every
//! user the batch touched and still holds re-scored.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use mesh_bus::{Handler, HandlerError, Record, Watermark};
use mesh_proto::events::v1::Envelope;
use mesh_store::{HashRead, HashReply, Op, PartitionBatch, Slot};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::engine::{Churn, SCOPE};
use crate::metrics::{APPLIED, DUPLICATES};
use crate::summary::{self, Summary};

/// A decoded envelope and the ops it applies.
type Decoded = (Envelope, Vec<Op>);

pub struct ChurnHandler {
    pub churn: Arc<Churn>,
    pub dead_letter_topic: String,
    pub group: String,
}

impl ChurnHandler {
    /// Applies a batch and re-scores its users; what the consumer and the
    /// benchmark call.
    pub async fn apply(&self, records: &[Record]) -> Result<(), crate::Error> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let slot = Slot {
            scope: SCOPE,
            partition: first.partition,
        };
        let mut decoded = Vec::with_capacity(records.len());
        for r in records {
            match Envelope::decode(r.payload.as_slice()) {
                Ok(e) => {
                    let ops = summary::ops(&e);
                    decoded.push((r, Some((e, ops))));
                }
                Err(err) => {
                    let h = r.dead_letter_headers(
                        &format!("undecodable event envelope: {err}"),
                        &self.group,
                    );
                    self.churn
                        .producer
                        .send(&self.dead_letter_topic, "undecodable", &r.payload, &h)
                        .await?;
                    decoded.push((r, None));
                }
            }
        }
        let folded = self.already_folded(slot, &decoded).await?;
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = mesh_bus::expected_through();
        let mut in_batch = HashSet::new();
        let mut touched = BTreeSet::new();
        let mut erased = BTreeSet::new();
        for (r, event) in decoded {
            let Some((e, mut ops)) = event else {
                batch.push(r.offset, Vec::new());
                continue;
            };
            let span =
                tracing::info_span!("churn.apply", event_id = %e.event_id, offset = r.offset);
            let _ = span.set_parent(r.headers.trace_context());
            let _g = span.enter();
            let member = summary::member(&e.tenant_id, &e.user_id);
            if summary::is_erasure(&e) {
                // The guard makes a second erasure a no-op; its id (a
                // digest of the user) is not kept.
                erased.insert(member);
                batch.push(r.offset, ops);
                continue;
            }
            if !ops.is_empty() && !e.event_id.is_empty() {
                if folded.contains(&e.event_id) || !in_batch.insert(e.event_id.clone()) {
                    DUPLICATES.inc();
                    tracing::debug!(event_id = %e.event_id, "churn: duplicate event id dropped");
                    ops.clear();
                } else {
                    ops.push(Op::HSet {
                        key: summary::seen_key(&e),
                        field: e.event_id.clone(),
                        value: "1".into(),
                    });
                }
            }
            if !ops.is_empty() {
                touched.insert(member);
            }
            batch.push(r.offset, ops);
        }
        let applied = self.churn.store.apply(SCOPE, &batch).await?;
        APPLIED.inc_by(applied.applied);
        // Re-score even when the batch was a redelivery: the transitions are
        // compare-and-sets, and a previous attempt may have stopped between
        // firing and publishing. Scoring reads the summary the erasure
        // deleted (and the guard keeps deleted), so an erased user is never
        // scored, alerted or offered anything: the summary read is the
        // erasure check, with no round trip of its own. Users erased in this
        // batch are not even read.
        let members: Vec<String> = touched.difference(&erased).cloned().collect();
        let keys: Vec<_> = members
            .iter()
            .map(|m| (slot, summary::user_key(m)))
            .collect();
        let hashes = self.churn.store.hgetall_many(&keys).await?;
        let users: Vec<(String, Summary)> = members
            .into_iter()
            .zip(hashes)
            .filter_map(|(member, h)| Summary::from_hash(h).map(|s| (member, s)))
            .collect();
        self.churn
            .evaluate_all(slot, users, self.churn.now())
            .await?;
        Ok(())
    }
}

impl ChurnHandler {
    /// The event ids of `decoded` (those with ops) already marked as folded
    /// in the store: one `HMGET` per event day, pipelined.
    async fn already_folded(
        &self,
        slot: Slot<'_>,
        decoded: &[(&Record, Option<Decoded>)],
    ) -> Result<HashSet<String>, crate::Error> {
        let mut by_day: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, event) in decoded {
            if let Some((e, ops)) = event {
                if !ops.is_empty() && !e.event_id.is_empty() && !summary::is_erasure(e) {
                    by_day
                        .entry(summary::seen_key(e))
                        .or_default()
                        .push(e.event_id.clone());
                }
            }
        }
        if by_day.is_empty() {
            return Ok(HashSet::new());
        }
        let reads: Vec<HashRead> = by_day
            .iter()
            .map(|(key, ids)| HashRead::Fields {
                slot,
                key: key.clone(),
                fields: ids.clone(),
            })
            .collect();
        let replies = self.churn.store.hread_many(&reads).await?;
        let mut out = HashSet::new();
        for ((_, ids), reply) in by_day.into_iter().zip(replies) {
            if let HashReply::Fields(values) = reply {
                for (id, v) in ids.into_iter().zip(values) {
                    if v.is_some() {
                        out.insert(id);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Handler for ChurnHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        self.apply(records).await.map_err(|e| match e {
            // Keeps a store that went back visible to the consumer.
            crate::Error::Store(s) => HandlerError::from(s),
            other => HandlerError(other.to_string()),
        })
    }

    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        Watermark::of(&self.churn.store, SCOPE, topic, partition).await
    }
}
