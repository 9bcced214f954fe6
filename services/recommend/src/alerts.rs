//! Flags from the other services' alerts, applied exactly once.
//!
//! A second consumer (group `<group>-flags`) reads the alerts topic. A
//! `ChurnAlert` of the treatment arm flags the user at risk (retention offers
//! are boosted); holdout users are left alone so the churn service's
//! measured lift stays unbiased. A fraud `RiskAlert` of kind
//! `promotion_abuse` flags the user for promotion abuse (promotional items
//! are suppressed). Everything else on the topic is skipped.
//!
//! The flag is a `HMax` of the alert time into the user's slot, under the
//! watermark source `<alerts topic>@<partition>` in that slot, so a
//! redelivered alert changes nothing. It starts with the erasure guard: an
//! alert about an erased user (late, or replayed) sets no flag. The handler
//! has no effect outside the store, so it reads nothing first.
//!
//! **Resuming from what the store applied.** An alerts partition's records
//! land in every user slot, so no single slot knows how far the partition
//! was applied. Every batch therefore moves the partition's watermark in
//! *every* slot to its last offset (a slot without flags in the batch gets
//! that offset alone, with no ops), each slot's batch carrying the
//! consumer's [`mesh_bus::expected_through`]. What the handler applied of
//! the partition is then the lowest of those watermarks
//! ([`AlertsHandler::applied_through`]); a slot that lost writes (the whole
//! store restored from an older snapshot or flushed, or one node of a
//! cluster failed over to a replica that missed them) refuses its batch, and
//! the consumer re-reads from the lowest watermark of the refusing slots.
//! Re-reading is always safe here: a flag depends on its alert alone (no
//! state is read to plan it), slots that kept the flags skip them by their
//! watermark, and `HMax` is idempotent anyway. An erasure the store lost is
//! re-applied by the events consumer from its own re-read, and deletes the
//! flags key whenever it lands, so an erased user ends without flags either
//! way.
use std::collections::BTreeMap;
use std::time::Duration;

use mesh_bus::headers;
use mesh_bus::{Handler, HandlerError, Record, TopicNames, TopicSpec, Watermark};
use mesh_proto::churn::v1::ChurnAlert;
use mesh_proto::fraud::v1::RiskAlert;
use mesh_store::{erasure, Op, PartitionBatch, Slot, StateStore};
use prost::Message;

use crate::keys::{self, SCOPE};

/// `ce_type` of the churn service's alert.
pub const CHURN_ALERT_TYPE: &str = "mesh.churn.v1.ChurnAlert";
/// `ce_type` of the fraud service's risk alert (it may also come without
/// `ce_type`; then it is recognised by decoding).
pub const RISK_ALERT_TYPE: &str = "mesh.fraud.v1.RiskAlert";

/// One flag to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub tenant: String,
    pub user: String,
    /// [`keys::FLAG_AT_RISK`] or [`keys::FLAG_PROMO_ABUSE`].
    pub field: &'static str,
    /// When the alert was raised, Unix ms.
    pub at_ms: i64,
}

/// The flag an alert record sets, if any.
pub fn flag_of(ce_type: Option<&str>, payload: &[u8]) -> Option<Flag> {
    match ce_type {
        Some(CHURN_ALERT_TYPE) => {
            let a = ChurnAlert::decode(payload).ok()?;
            let wanted = a.arm != "holdout" && !a.tenant_id.is_empty() && !a.user_id.is_empty();
            wanted.then_some(Flag {
                tenant: a.tenant_id,
                user: a.user_id,
                field: keys::FLAG_AT_RISK,
                at_ms: a.at_ms,
            })
        }
        Some(RISK_ALERT_TYPE) | None => {
            let a = RiskAlert::decode(payload).ok()?;
            let wanted =
                a.kind == "promotion_abuse" && !a.tenant_id.is_empty() && !a.user_id.is_empty();
            wanted.then_some(Flag {
                tenant: a.tenant_id,
                user: a.user_id,
                field: keys::FLAG_PROMO_ABUSE,
                at_ms: a.occurred_at_ms,
            })
        }
        Some(_) => None,
    }
}

/// The alerts-topic handler.
pub struct AlertsHandler {
    pub store: StateStore,
    /// Partitions of the input topics (the user's slot is computed with it).
    pub partitions: i32,
}

impl Handler for AlertsHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let source = keys::cross_source(&first.topic, first.partition);
        let expect = mesh_bus::expected_through();
        let batch = |q: i32| {
            let mut b = PartitionBatch::new(&source, q);
            b.expect_through = expect;
            b
        };
        // Every slot, so that every slot's watermark says how far the
        // partition was applied.
        let mut by_slot: BTreeMap<i32, PartitionBatch> =
            (0..self.partitions).map(|q| (q, batch(q))).collect();
        for r in records {
            let Some(f) = flag_of(r.headers.get(headers::CE_TYPE), &r.payload) else {
                continue;
            };
            let q = mesh_bus::partition::partition_for(
                &format!("{}/{}", f.tenant, f.user),
                self.partitions,
            );
            by_slot.entry(q).or_insert_with(|| batch(q)).push(
                r.offset,
                vec![
                    // The flag lands in the user's slot, where an
                    // erasure of the user is recorded.
                    erasure::guard(&erasure::member(&f.tenant, &f.user)),
                    Op::HMax {
                        key: keys::flags(&f.tenant, &f.user),
                        field: f.field.into(),
                        value: f.at_ms,
                    },
                ],
            );
        }
        for b in by_slot.values_mut() {
            if b.last_offset() != Some(last.offset) {
                b.push(last.offset, Vec::new());
            }
        }
        let applies = by_slot.values().map(|b| self.store.apply(SCOPE, b));
        let results = futures::future::join_all(applies).await;
        // A slot that went back decides where the partition is re-read:
        // the lowest watermark of the slots that refused.
        let mut behind: Option<(Option<i64>, i64)> = None;
        let mut failed = None;
        for r in results {
            match r {
                Ok(_) => {}
                Err(mesh_store::Error::Behind {
                    watermark,
                    expected,
                    ..
                }) => {
                    if behind.is_none_or(|(w, _)| watermark < w) {
                        behind = Some((watermark, expected));
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some((watermark, expected)) = behind {
            return Err(HandlerError::from(mesh_store::Error::Behind {
                source_topic: first.topic.clone(),
                partition: first.partition,
                watermark,
                expected,
            }));
        }
        match failed {
            Some(e) => Err(HandlerError(format!("flags: {e}"))),
            None => Ok(()),
        }
    }

    /// The lowest watermark of the partition's source
    /// (`<alerts topic>@<partition>`) over every slot: every batch moves
    /// all of them to its last offset, so each slot holds every flag of
    /// the records at or below it (see the module documentation). A slot
    /// without one ([`Watermark::Empty`]: flushed, or the partition count
    /// grew) makes the partition re-read from its start. A store written
    /// by a version that only moved the slots with flags is re-read once,
    /// from its lowest slot.
    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        if self.partitions <= 0 {
            return Ok(Watermark::Untracked);
        }
        let source = keys::cross_source(topic, partition);
        let reads = (0..self.partitions).map(|q| {
            let slot = Slot {
                scope: SCOPE,
                partition: q,
            };
            let source = source.as_str();
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

/// Makes sure the alerts topic exists before the flags consumer subscribes
/// (a subscription to a missing topic is only retried at the next metadata
/// refresh): creates the output topics that are missing with the input
/// topics' partition count and replication 1. The churn and fraud services
/// normally created it already, with the configured replication. Returns
/// whether the topic exists; the embedded cluster has no CreateTopics, so
/// there the flags consumer is not started unless the topic was made by
/// someone else.
pub async fn ensure_alerts_topic(
    brokers: &str,
    topics: &TopicNames,
    partitions: i32,
    timeout: Duration,
) -> bool {
    let exists = |wait: Duration| async move {
        mesh_bus::topics::partition_count(brokers, &topics.alerts, wait)
            .await
            .is_ok()
    };
    if exists(timeout / 4).await {
        return true;
    }
    let spec = TopicSpec {
        partitions,
        replication: 1,
    };
    let created = tokio::time::timeout(
        timeout,
        mesh_bus::ensure_output_topics(brokers, topics, spec, timeout / 2),
    )
    .await;
    match created {
        Ok(Ok(())) => exists(timeout / 2).await,
        Ok(Err(e)) => {
            tracing::warn!(topic = %topics.alerts, %e, "could not create the alerts topic; churn and promotion-abuse flags are off");
            false
        }
        Err(_) => {
            tracing::warn!(topic = %topics.alerts, "no answer creating the alerts topic; churn and promotion-abuse flags are off");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_bus::headers::HeaderList;
    use mesh_store::MemoryStore;

    #[tokio::test]
    async fn every_batch_moves_every_slot_and_applied_through_is_the_lowest() {
        let store = StateStore::Memory(MemoryStore::new("flags"));
        let h = AlertsHandler {
            store: store.clone(),
            partitions: 4,
        };
        assert_eq!(
            h.applied_through("alerts", 1).await.unwrap(),
            Watermark::Empty
        );
        let alert = ChurnAlert {
            tenant_id: "t".into(),
            user_id: "u".into(),
            at_ms: 7,
            arm: "treatment".into(),
            ..Default::default()
        };
        let rec = |offset: i64, payload: Vec<u8>| Record {
            topic: "alerts".into(),
            partition: 1,
            offset,
            key: None,
            payload,
            headers: HeaderList::new().with(headers::CE_TYPE, CHURN_ALERT_TYPE),
            timestamp_ms: None,
        };
        // One flag, then a record that sets none: every slot moves anyway.
        h.handle(&[rec(5, alert.encode_to_vec()), rec(6, b"junk".to_vec())])
            .await
            .unwrap();
        let source = keys::cross_source("alerts", 1);
        for q in 0..4 {
            let slot = Slot {
                scope: SCOPE,
                partition: q,
            };
            assert_eq!(store.watermark(slot, &source).await.unwrap(), Some(6));
        }
        assert_eq!(
            h.applied_through("alerts", 1).await.unwrap(),
            Watermark::At(6)
        );
        let user = Slot {
            scope: SCOPE,
            partition: mesh_bus::partition::partition_for("t/u", 4),
        };
        let flags = store.hgetall(user, &keys::flags("t", "u")).await.unwrap();
        assert_eq!(flags.get(keys::FLAG_AT_RISK).map(String::as_str), Some("7"));
    }

    #[test]
    fn churn_treatment_and_promo_abuse_set_flags_holdout_and_others_do_not() {
        let churn = |arm: &str| ChurnAlert {
            tenant_id: "t".into(),
            user_id: "u".into(),
            at_ms: 7,
            arm: arm.into(),
            ..Default::default()
        };
        let f = flag_of(Some(CHURN_ALERT_TYPE), &churn("treatment").encode_to_vec()).unwrap();
        assert_eq!(
            (f.field, f.at_ms, f.user.as_str()),
            (keys::FLAG_AT_RISK, 7, "u")
        );
        assert!(flag_of(Some(CHURN_ALERT_TYPE), &churn("holdout").encode_to_vec()).is_none());
        let risk = |kind: &str| RiskAlert {
            kind: kind.into(),
            tenant_id: "t".into(),
            user_id: "u".into(),
            occurred_at_ms: 9,
            ..Default::default()
        };
        let f = flag_of(None, &risk("promotion_abuse").encode_to_vec()).unwrap();
        assert_eq!((f.field, f.at_ms), (keys::FLAG_PROMO_ABUSE, 9));
        assert!(flag_of(Some(RISK_ALERT_TYPE), &risk("card_testing").encode_to_vec()).is_none());
        assert!(flag_of(Some("mesh.logistics.v1.LogisticsAlert"), b"x").is_none());
        assert!(flag_of(None, b"\xff\xff").is_none());
    }
}
