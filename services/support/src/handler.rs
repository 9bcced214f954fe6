//! The consumer: reviews and support messages are analysed into trends
//! (exactly once, with the watermark) and published as `FeedbackAnalysed`;
//! a subject whose negative share jumps raises an alert; searches that found
//! nothing are counted.
use std::collections::BTreeSet;
use std::sync::Arc;

use mesh_bus::{headers, Handler, HandlerError, Record};
use mesh_proto::events::v1::{envelope::Body, Envelope};
use mesh_proto::support::v1 as pb;
use mesh_store::{Op, PartitionBatch};
use prost::Message;

use crate::engine::{Support, SCOPE};
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
        let mut touched = BTreeSet::new();
        let mut events = Vec::new();
        for r in records {
            let e = match Envelope::decode(r.payload.as_slice()) {
                Ok(e) => e,
                Err(err) => {
                    let h = r.dead_letter_headers(
                        &format!("undecodable event envelope: {err}"),
                        &self.group,
                    );
                    s.producer
                        .send(&self.dead_letter_topic, "undecodable", &r.payload, &h)
                        .await?;
                    batch.push(r.offset, Vec::new());
                    continue;
                }
            };
            let mut ops = Vec::new();
            let (text, sku, rating, source) = match &e.body {
                Some(Body::ReviewSubmitted(v)) => {
                    (v.text.as_str(), v.sku.as_str(), v.rating, "review")
                }
                Some(Body::SupportMessage(m)) => (m.text.as_str(), "", 0, "support_message"),
                Some(Body::Search(q)) if q.results == 0 && !q.query.trim().is_empty() => {
                    ops.push(Op::ZIncr {
                        key: format!("zero:{}", e.tenant_id),
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
            batch.push(r.offset, ops);
        }
        // Analyses go out before the state moves: a retry re-sends them with
        // the same ids.
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
        // The trend shards live in this partition's slot.
        let applied = s.store.apply(SCOPE, &batch).await?;
        if applied.applied > 0 {
            for (tenant, subject) in touched {
                s.check_spike(&tenant, &subject).await?;
            }
        }
        Ok(())
    }
}

impl Handler for SupportHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        self.apply(records)
            .await
            .map_err(|e| HandlerError(e.to_string()))
    }
}
