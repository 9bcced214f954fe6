//! The consumer side: records of one partition in, one atomic store step
//! out.
use mesh_bus::headers::{self, HeaderList};
use mesh_bus::{Handler, HandlerError, Producer, Record};
use mesh_proto::events::v1::Envelope;
use mesh_store::{PartitionBatch, StateStore};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::fold;

/// Scope of the profile's keys in the store.
pub const SCOPE: &str = "profile";

pub struct ProfileHandler {
    pub store: StateStore,
    pub producer: Producer,
    pub dead_letter_topic: String,
    pub group: String,
}

impl Handler for ProfileHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        for r in records {
            match Envelope::decode(r.payload.as_slice()) {
                Ok(e) => {
                    let span = tracing::info_span!("profile.apply", event_id = %e.event_id, offset = r.offset);
                    let _ = span.set_parent(r.headers.trace_context());
                    let _g = span.enter();
                    batch.push(r.offset, fold::ops(&e));
                }
                Err(err) => {
                    // Not ours to fix: keep it with the reason and move on.
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
                    batch.push(r.offset, Vec::new());
                }
            }
        }
        self.store
            .apply(SCOPE, &batch)
            .await
            .map_err(|e| HandlerError(e.to_string()))?;
        Ok(())
    }
}
