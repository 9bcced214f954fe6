//! The consumer side: order records of one partition in, one atomic store
//! step out, then every user the batch touched re-scored.
use std::collections::BTreeSet;
use std::sync::Arc;

use mesh_bus::{Handler, HandlerError, Record};
use mesh_proto::events::v1::Envelope;
use mesh_store::{PartitionBatch, Slot};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::engine::{Churn, SCOPE};
use crate::metrics::APPLIED;
use crate::summary::{self, Summary};

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
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        let mut touched = BTreeSet::new();
        for r in records {
            match Envelope::decode(r.payload.as_slice()) {
                Ok(e) => {
                    let span = tracing::info_span!("churn.apply", event_id = %e.event_id, offset = r.offset);
                    let _ = span.set_parent(r.headers.trace_context());
                    let _g = span.enter();
                    let ops = summary::ops(&e);
                    if !ops.is_empty() {
                        touched.insert(summary::member(&e.tenant_id, &e.user_id));
                    }
                    batch.push(r.offset, ops);
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
                    batch.push(r.offset, Vec::new());
                }
            }
        }
        let applied = self.churn.store.apply(SCOPE, &batch).await?;
        APPLIED.inc_by(applied.applied);
        // Re-score even when the batch was a redelivery: the transitions are
        // compare-and-sets, and a previous attempt may have stopped between
        // firing and publishing.
        let slot = Slot {
            scope: SCOPE,
            partition: first.partition,
        };
        let members: Vec<String> = touched.into_iter().collect();
        let keys: Vec<_> = members
            .iter()
            .map(|m| (slot, summary::user_key(m)))
            .collect();
        let hashes = self.churn.store.hgetall_many(&keys).await?;
        let now = self.churn.now();
        for (member, h) in members.iter().zip(hashes) {
            if let Some(s) = Summary::from_hash(h) {
                self.churn.evaluate(slot, member, &s, now).await?;
            }
        }
        Ok(())
    }
}

impl Handler for ChurnHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        self.apply(records)
            .await
            .map_err(|e| HandlerError(e.to_string()))
    }
}
