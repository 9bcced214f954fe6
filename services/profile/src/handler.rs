//! The consumer side: records of one partition in, one atomic store step
//! out.
use mesh_bus::{Handler, HandlerError, Producer, Record, Watermark};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_store::{Op, PartitionBatch, Slot, StateStore};
use prost::Message;
use std::collections::HashSet;
use std::sync::Arc;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::engine::Profiles;
use crate::{erasure, features};

/// Scope of the profile's keys in the store.
pub const SCOPE: &str = "profile";

pub struct ProfileHandler {
    pub store: StateStore,
    pub producer: Producer,
    pub dead_letter_topic: String,
    pub group: String,
    pub profiles: Arc<Profiles>,
}

/// How long the ids of one day of events are remembered after that day's
/// last event: a publisher's retry comes within ingest's pending-claim TTL
/// (30 s) or is answered by its done-ledger (24 h).
const SEEN_TTL_MS: i64 = 2 * 86_400_000;

/// Hashes one partition's ids of one day are spread over. Small hashes
/// stay in Redis's compact listpack encoding (up to 128 fields each by
/// default, so up to 8,192 ids per partition and day); one big hash would
/// cost some 70 bytes per id instead of about 20.
pub const SEEN_BUCKETS: u8 = 64;

/// Every key of the id ledger of `day` (UTC day number) in a partition.
pub fn seen_keys(day: i64) -> impl Iterator<Item = String> {
    (0..SEEN_BUCKETS).map(move |b| format!("seen:{day}:{b}"))
}

/// The op after the erasure guard of every event's record (erasures have
/// none: the guard already makes a second one a no-op): skip the rest if
/// its id was seen. Ids are kept per day of `occurred_at_ms`, the same for
/// every copy, as 64 bits of the SHA-256 of `<tenant>/<event id>` (16 hex
/// digits, whatever the id's length) in one of [`SEEN_BUCKETS`] hashes
/// chosen by other bits of the digest. Two ids of one partition and day
/// share a field with odds of about n²/2^71 for n ids (n = 10^6: 4·10^-10).
/// Ids kept by an earlier release (`seen:<day>`, field `<tenant>/<event id>`)
/// are not consulted: a copy produced twice across the upgrade, within the
/// two days, would be applied twice.
fn once(e: &Envelope) -> Op {
    use sha2::Digest as _;
    let d = sha2::Sha256::new()
        .chain_update(e.tenant_id.as_bytes())
        .chain_update(b"/")
        .chain_update(e.event_id.as_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    Op::Once {
        key: format!(
            "seen:{}:{}",
            e.occurred_at_ms.div_euclid(86_400_000),
            d[8] % SEEN_BUCKETS
        ),
        field: format!("{:016x}", u64::from_be_bytes(id)),
        ttl_ms: SEEN_TTL_MS,
    }
}

impl Handler for ProfileHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
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
                Ok(e) => decoded.push(Some(e)),
                Err(err) => {
                    // Not ours to fix: keep it with the reason and move on.
                    let h = r.dead_letter_headers(
                        &format!("undecodable event envelope: {err}"),
                        &self.group,
                    );
                    self.producer
                        .send(&self.dead_letter_topic, "undecodable", &r.payload, &h)
                        .await
                        .map_err(|e| HandlerError(format!("dead-letter: {e}")))?;
                    decoded.push(None);
                }
            }
        }
        let envelopes: Vec<Option<&Envelope>> = decoded.iter().map(Option::as_ref).collect();
        // Every record starts with the erasure guard; an id this partition
        // applied under another offset (ingest produced a retry twice after
        // a crash) changes nothing.
        let ops = erasure::run_ops(
            &self.store,
            slot,
            &self.profiles.features,
            &envelopes,
            |e| Some(once(e)),
        )
        .await
        .map_err(|e| match e {
            crate::error::Error::Store(s) => HandlerError::from(s),
            other => HandlerError(other.to_string()),
        })?;
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = mesh_bus::expected_through();
        let mut members = Vec::new();
        let mut erased = HashSet::new();
        for ((r, e), ops) in records.iter().zip(&decoded).zip(ops) {
            if let Some(e) = e {
                let span =
                    tracing::info_span!("profile.apply", event_id = %e.event_id, offset = r.offset);
                let _ = span.set_parent(r.headers.trace_context());
                let _g = span.enter();
                let member = features::member(&e.tenant_id, &e.user_id);
                // Only orders move a user's stage (time does the rest,
                // through the sweep).
                if matches!(e.body, Some(Body::OrderPlaced(_))) {
                    members.push(member);
                } else if erasure::is_erasure(e) {
                    erased.insert(member);
                }
            }
            batch.push(r.offset, ops);
        }
        self.store.apply(SCOPE, &batch).await?;
        // Stage changes caused by these events, after the store step and
        // off the consumer's path: announcing waits for the broker's
        // acknowledgement of the lifecycle topic, which must not hold up
        // the input. Every step is a compare-and-set, so a late or failed
        // evaluation is repaired by the next one (the user's next order, or
        // the sweep at the user's deadline). An erased user has no state
        // left to evaluate (the evaluation reads it, and its steps are
        // guarded by it): users erased in this batch are not even asked.
        let members = crate::engine::distinct_members(
            members
                .iter()
                .map(String::as_str)
                .filter(|m| !erased.contains(*m)),
        );
        if !members.is_empty() {
            let profiles = self.profiles.clone();
            let partition = first.partition;
            tokio::spawn(async move {
                let slot = Slot {
                    scope: SCOPE,
                    partition,
                };
                let eval = profiles.evaluate_members(slot, &members);
                match tokio::time::timeout(std::time::Duration::from_secs(30), eval).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(%e, "lifecycle evaluation failed; retried later"),
                    Err(_) => tracing::warn!("lifecycle evaluation timed out; retried later"),
                }
            });
        }
        Ok(())
    }

    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        Watermark::of(&self.store, SCOPE, topic, partition).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tenant: &str, id: &str, at_ms: i64) -> Envelope {
        Envelope {
            tenant_id: tenant.into(),
            event_id: id.into(),
            occurred_at_ms: at_ms,
            ..Default::default()
        }
    }

    fn key_field(op: Op) -> (String, String) {
        match op {
            Op::Once { key, field, .. } => (key, field),
            other => panic!("not a once op: {other:?}"),
        }
    }

    #[test]
    fn every_copy_of_an_id_names_the_same_ledger_field_and_tenants_differ() {
        let day = 20_000;
        let at = day * 86_400_000 + 5;
        let (k, f) = key_field(once(&event("shop", "e-1", at)));
        assert_eq!(
            key_field(once(&event("shop", "e-1", at))),
            (k.clone(), f.clone())
        );
        assert!(seen_keys(day).any(|s| s == k), "{k}");
        assert_eq!(f.len(), 16);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()), "{f}");
        let (_, other) = key_field(once(&event("mall", "e-1", at)));
        assert_ne!(f, other);
        let (k2, _) = key_field(once(&event("shop", "e-1", at + 86_400_000)));
        assert!(k2.starts_with(&format!("seen:{}:", day + 1)), "{k2}");
    }
}
