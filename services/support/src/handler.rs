//! The consumer: reviews and support messages are analysed into trends
//! (exactly once, with the watermark) and published as `FeedbackAnalysed`;
//! a subject whose negative share jumps raises an alert; searches that found
//! nothing are counted.
//!
//! A `user_erased` event deletes the user's conversations and handoffs
//! ([`keys::erasure_ops`]) and records the erasure; every later record of
//! the user starts with the erasure guard. Publishing an analysis is an
//! effect outside the store, so a batch with feedback text first reads the
//! slot's erasure hash for its users (one round trip), and an erasure
//! earlier in the batch is remembered: an erased user's text is neither
//! analysed into the trends nor published.
//!
//! **A store that went back.** The batch carries the consumer's
//! `expect_through`, so a store that lost applied writes (a flush, a restore
//! from an older snapshot, a failover to a lagging replica) refuses it and
//! the consumer re-reads the partition from what the store kept
//! ([`Handler::applied_through`]). Before anything is published the same
//! check is made with a read of the watermark: an erasure the store forgot
//! must be re-applied before a later record of that user is analysed and
//! published, not after.
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use mesh_bus::{headers, Handler, HandlerError, Record, Watermark};
use mesh_proto::events::v1::{envelope::Body, Envelope};
use mesh_proto::support::v1 as pb;
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, Slot};
use prost::Message;

use crate::engine::{Support, SCOPE};
use crate::keys;
use crate::metrics::FEEDBACK;

pub struct SupportHandler {
    pub support: Arc<Support>,
    pub dead_letter_topic: String,
    pub group: String,
}

impl SupportHandler {
    pub async fn apply(&self, records: &[Record]) -> Result<(), crate::Error> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let s = &self.support;
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = mesh_bus::expected_through();
        let mut touched = BTreeSet::new();
        let mut events = Vec::new();
        let mut decoded = Vec::with_capacity(records.len());
        for r in records {
            match Envelope::decode(r.payload.as_slice()) {
                Ok(e) => decoded.push((r, Some(e))),
                Err(err) => {
                    let h = r.dead_letter_headers(
                        &format!("undecodable event envelope: {err}"),
                        &self.group,
                    );
                    s.producer
                        .send(&self.dead_letter_topic, "undecodable", &r.payload, &h)
                        .await?;
                    decoded.push((r, None));
                }
            }
        }
        let slot = Slot {
            scope: SCOPE,
            partition: first.partition,
        };
        // Analyses are published before the apply: a batch that publishes
        // first checks that the store did not go back.
        let publishes = decoded
            .iter()
            .any(|(_, e)| e.as_ref().is_some_and(has_text));
        let (mut erased, ()) = tokio::try_join!(self.erased(slot, &decoded), async {
            match publishes {
                true => self.not_behind(slot, &batch).await,
                false => Ok(()),
            }
        })?;
        for (r, e) in decoded {
            let Some(e) = e else {
                batch.push(r.offset, Vec::new());
                continue;
            };
            let member = erasure::member(&e.tenant_id, &e.user_id);
            if matches!(e.body, Some(Body::UserErased(_))) {
                batch.push(
                    r.offset,
                    keys::erasure_ops(&e.tenant_id, &e.user_id, e.occurred_at_ms),
                );
                erased.insert(member);
                continue;
            }
            if erased.contains(&member) {
                batch.push(r.offset, Vec::new());
                continue;
            }
            let mut ops = vec![erasure::guard(&member)];
            let (text, sku, rating, source) = match &e.body {
                Some(Body::ReviewSubmitted(v)) => {
                    (v.text.as_str(), v.sku.as_str(), v.rating, "review")
                }
                Some(Body::SupportMessage(m)) => (m.text.as_str(), "", 0, "support_message"),
                Some(Body::Search(q)) if q.results == 0 && !q.query.trim().is_empty() => {
                    ops.push(Op::ZIncr {
                        key: keys::zero_results(&e.tenant_id),
                        member: q.query.trim().to_lowercase().chars().take(200).collect(),
                        delta: 1.0,
                    });
                    ("", "", 0, "")
                }
                _ => ("", "", 0, ""),
            };
            if !text.trim().is_empty() {
                let a = s.analyze(text);
                FEEDBACK
                    .with_label_values(&[source, a.sentiment.as_str()])
                    .inc();
                let subject = if sku.is_empty() {
                    format!("support:{}", a.category)
                } else {
                    sku.to_string()
                };
                ops.extend(Support::trend_ops(
                    &e.tenant_id,
                    &subject,
                    &a,
                    e.occurred_at_ms,
                ));
                touched.insert((e.tenant_id.clone(), subject));
                events.push(pb::FeedbackAnalysed {
                    tenant_id: e.tenant_id.clone(),
                    user_id: e.user_id.clone(),
                    event_id: e.event_id.clone(),
                    sku: sku.into(),
                    analysis: Some(a),
                    rating,
                    at_ms: e.occurred_at_ms,
                });
            }
            if ops.len() == 1 {
                // Only the guard: nothing to apply.
                ops.clear();
            }
            batch.push(r.offset, ops);
        }
        // Analyses go out before the state moves: a retry, or a re-read
        // after the store went back, re-sends them with the same ids.
        for ev in &events {
            let h = headers::cloud_event(
                "mesh.support.v1.FeedbackAnalysed",
                &format!("{}/analysis", ev.event_id),
                "mesh-support",
                &ev.tenant_id,
                &ev.user_id,
                ev.at_ms,
            );
            s.producer
                .send(
                    &s.engagement_topic,
                    &format!("{}/{}", ev.tenant_id, ev.user_id),
                    &ev.encode_to_vec(),
                    &h,
                )
                .await?;
        }
        // The trend shards live in this partition's slot. A spike is
        // published once per subject and day by its own compare-and-set in
        // the tenant's slot: a re-read after the store went back finds it
        // again only if the store forgot the ledger too (then with the same
        // alert id).
        let applied = s.store.apply(SCOPE, &batch).await?;
        if applied.applied > 0 {
            for (tenant, subject) in touched {
                s.check_spike(&tenant, &subject).await?;
            }
        }
        Ok(())
    }
}

/// Whether an event has text to analyse: its analysis is published, an
/// effect the erasure guard cannot stop.
fn has_text(e: &Envelope) -> bool {
    match &e.body {
        Some(Body::ReviewSubmitted(v)) => !v.text.trim().is_empty(),
        Some(Body::SupportMessage(m)) => !m.text.trim().is_empty(),
        _ => false,
    }
}

impl SupportHandler {
    /// Refuses `batch` as the store's apply would, before anything is
    /// published, when the store holds less of the partition than the
    /// consumer applied (`batch.expect_through`): it went back, and the
    /// consumer must re-read from what it kept. One `HGET`, none when the
    /// consumer expects nothing (the first batch after an assignment or a
    /// re-read).
    async fn not_behind(&self, slot: Slot<'_>, batch: &PartitionBatch) -> Result<(), crate::Error> {
        let Some(expected) = batch.expect_through else {
            return Ok(());
        };
        let watermark = self
            .support
            .store
            .watermark(slot, &batch.source_topic)
            .await?;
        if watermark.is_some_and(|w| w >= expected) {
            return Ok(());
        }
        Err(mesh_store::Error::Behind {
            source_topic: batch.source_topic.clone(),
            partition: batch.partition,
            watermark,
            expected,
        }
        .into())
    }

    /// Members (`<tenant>/<user>`) of the users with text in `decoded`
    /// already erased in `slot`: one `HMGET` of the slot's erasure hash,
    /// none when no record has text.
    async fn erased(
        &self,
        slot: Slot<'_>,
        decoded: &[(&Record, Option<Envelope>)],
    ) -> Result<HashSet<String>, crate::Error> {
        let mut members: Vec<String> = decoded
            .iter()
            .filter_map(|(_, e)| e.as_ref().filter(|e| has_text(e)))
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
        let values = match self.support.store.hread_many(&[read]).await?.pop() {
            Some(HashReply::Fields(v)) => v,
            _ => Vec::new(),
        };
        Ok(members
            .into_iter()
            .zip(values)
            .filter(|(_, v)| v.is_some())
            .map(|(m, _)| m)
            .collect())
    }
}

impl Handler for SupportHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        self.apply(records).await.map_err(|e| match e {
            // Keeps a store that went back visible to the consumer.
            crate::Error::Store(s) => HandlerError::from(s),
            other => HandlerError(other.to_string()),
        })
    }

    /// The watermark of the partition's batches: every record of a
    /// `(topic, partition)` is applied by one batch named after the topic in
    /// the partition's slot, with everything it writes there (trend and
    /// zero-result shards, the erasure of the partition's users). What is
    /// outside that step (the published analyses, the spike ledger and
    /// alert) is keyed by ids that a re-read produces again.
    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        Watermark::of(&self.support.store, SCOPE, topic, partition).await
    }
}
