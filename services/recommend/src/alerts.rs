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
use std::collections::BTreeMap;
use std::time::Duration;

use mesh_bus::headers;
use mesh_bus::{Handler, HandlerError, Record, TopicNames, TopicSpec};
use mesh_proto::churn::v1::ChurnAlert;
use mesh_proto::fraud::v1::RiskAlert;
use mesh_store::{erasure, Op, PartitionBatch, StateStore};
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
        let Some(first) = records.first() else {
            return Ok(());
        };
        let source = keys::cross_source(&first.topic, first.partition);
        let mut by_slot: BTreeMap<i32, PartitionBatch> = BTreeMap::new();
        for r in records {
            let Some(f) = flag_of(r.headers.get(headers::CE_TYPE), &r.payload) else {
                continue;
            };
            let q = mesh_bus::partition::partition_for(
                &format!("{}/{}", f.tenant, f.user),
                self.partitions,
            );
            by_slot
                .entry(q)
                .or_insert_with(|| PartitionBatch::new(&source, q))
                .push(
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
        let applies = by_slot.values().map(|b| self.store.apply(SCOPE, b));
        futures::future::try_join_all(applies)
            .await
            .map_err(|e| HandlerError(format!("flags: {e}")))?;
        Ok(())
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
