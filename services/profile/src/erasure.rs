//! Forgetting a user: every record starts with the erasure guard, and a
//! `user_erased` record deletes what the profile holds of the user, in the
//! same store step as the rest of its batch.
//!
//! What the profile keeps of a user, in the slot of the user's partition,
//! and what the erasure does with it:
//! - `u:<member>` (counters, features, lifecycle fields): deleted;
//! - `s:<member>` (sessions): deleted;
//! - `ca:<era>:<member>`, `br:<era>:<member>` (decayed affinities, one set
//!   per era): deleted for every era from the user's first event to one era
//!   past the erasure ([`Span`]);
//! - the member of `users` (every user) and `due` (lifecycle deadlines):
//!   removed.
//!
//! What stays: `seen:<day>:<bucket>` (digests of the event ids of the last
//! two days, for retries: not keyed by user, and the guard comes before it,
//! so no id of an erased user is added); the segment model (centroids and segment sizes over all
//! users). Lifecycle transitions already published stay on their topic:
//! the lifecycle consumers get the `user_erased` event themselves.
//!
//! The affinity keys are named by era, and the store has no "delete by
//! pattern" op: the eras to delete come from the user's `first_seen` and
//! `last_seen`, read before the batch is applied (one `HMGET` round trip,
//! only for a batch holding an erasure), widened by the user's events
//! earlier in the same batch and by the erasure's own time (events of the
//! user's other topic may be applied concurrently; they happened before
//! the erasure).
use std::collections::HashMap;

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_store::{erasure, HashRead, HashReply, Op, Slot, StateStore};

use crate::error::Result;
use crate::features::{self, FeatureConfig};
use crate::fold;

/// Most affinity eras one erasure deletes, per kind: far beyond any real
/// history (with the shortest time constant, one day, an era is 64 days
/// and 4096 of them span seven centuries); a bound for nonsense event
/// times only.
pub const MAX_ERAS: i64 = 4096;

/// The times a user's events span, Unix ms (first, last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Span {
    fn at(ms: i64) -> Self {
        Span {
            first_ms: ms,
            last_ms: ms,
        }
    }

    fn widen(&mut self, ms: i64) {
        self.first_ms = self.first_ms.min(ms);
        self.last_ms = self.last_ms.max(ms);
    }
}

/// Whether an event is an erasure.
pub fn is_erasure(e: &Envelope) -> bool {
    matches!(e.body, Some(Body::UserErased(_)))
}

/// The ops of a `user_erased` record: the guard first (a second erasure
/// changes nothing), every key of the user deleted, the user out of the
/// partition's indexes, and the erasure recorded. `span` is what the user's
/// events covered, `None` when the profile never saw them.
pub fn erasure_ops(e: &Envelope, cfg: &FeatureConfig, span: Option<Span>) -> Vec<Op> {
    let member = erasure::member(&e.tenant_id, &e.user_id);
    let mut ops = vec![
        erasure::guard(&member),
        Op::Del {
            key: fold::user_key(&e.tenant_id, &e.user_id),
        },
        Op::Del {
            key: features::sessions_key(&member),
        },
    ];
    let mut span = span.unwrap_or(Span::at(e.occurred_at_ms));
    span.widen(e.occurred_at_ms);
    let tau = cfg.affinity_tau_ms;
    let (first, _) = features::era_of(span.first_ms, tau);
    // One era past the erasure: an event a few minutes ahead of the
    // erasure's clock may sit in the next era.
    let (last, _) = features::era_of(span.last_ms, tau);
    let last = last.saturating_add(1);
    if last.saturating_sub(first) >= MAX_ERAS {
        tracing::warn!(
            member,
            first_ms = span.first_ms,
            last_ms = span.last_ms,
            "erasure: the user's events span more than {MAX_ERAS} affinity eras; deleting the latest"
        );
    }
    let first = first.max(last.saturating_sub(MAX_ERAS - 1));
    for era in first..=last {
        for what in ["ca", "br"] {
            ops.push(Op::Del {
                key: features::affinity_key(what, era, &member),
            });
        }
    }
    for index in [features::USERS_KEY, features::DUE_KEY] {
        ops.push(Op::ZRem {
            key: index.into(),
            member: member.clone(),
        });
    }
    ops.push(erasure::record(&member, e.occurred_at_ms));
    ops
}

/// The ops of one decoded record of a partition: the erasure guard, then
/// the erasure's deletions ([`erasure_ops`]), or `first` (the handler's
/// once-per-id op) and the event's effects ([`fold::ops`],
/// [`features::ops`]). The guard comes before everything, so an event of an
/// erased user leaves no trace, not even its id.
pub fn record_ops(
    e: &Envelope,
    cfg: &FeatureConfig,
    spans: &HashMap<String, Span>,
    first: Option<Op>,
) -> Vec<Op> {
    let member = erasure::member(&e.tenant_id, &e.user_id);
    if is_erasure(e) {
        return erasure_ops(e, cfg, spans.get(&member).copied());
    }
    let mut ops = vec![erasure::guard(&member)];
    ops.extend(first);
    ops.extend(fold::ops(e));
    ops.extend(features::ops(e, cfg));
    ops
}

/// The ops of a run of one partition's records, in order (`None`: an
/// undecodable record, no ops). Reads the stored span of every user erased
/// in the run first: one round trip, none when the run holds no erasure.
pub async fn run_ops(
    store: &StateStore,
    slot: Slot<'_>,
    cfg: &FeatureConfig,
    records: &[Option<&Envelope>],
    first: impl Fn(&Envelope) -> Option<Op>,
) -> Result<Vec<Vec<Op>>> {
    let erased: Vec<String> = records
        .iter()
        .flatten()
        .filter(|e| is_erasure(e))
        .map(|e| erasure::member(&e.tenant_id, &e.user_id))
        .collect();
    let mut spans = stored_spans(store, slot, &erased).await?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Some(e) = r else {
            out.push(Vec::new());
            continue;
        };
        if !is_erasure(e) {
            let member = erasure::member(&e.tenant_id, &e.user_id);
            if let Some(s) = spans.get_mut(&member) {
                s.widen(e.occurred_at_ms);
            } else if erased.contains(&member) {
                spans.insert(member, Span::at(e.occurred_at_ms));
            }
        }
        out.push(record_ops(e, cfg, &spans, first(e)));
    }
    Ok(out)
}

/// `first_seen` and `last_seen` of each member's stored counters, in one
/// round trip; members the profile does not hold are left out.
async fn stored_spans(
    store: &StateStore,
    slot: Slot<'_>,
    members: &[String],
) -> Result<HashMap<String, Span>> {
    let reads: Vec<HashRead> = members
        .iter()
        .map(|m| HashRead::Fields {
            slot,
            key: format!("u:{m}"),
            fields: vec!["first_seen".into(), "last_seen".into()],
        })
        .collect();
    let replies = store.hread_many(&reads).await?;
    let mut out = HashMap::new();
    for (m, reply) in members.iter().zip(replies) {
        let HashReply::Fields(v) = reply else {
            continue;
        };
        let ms = |i: usize| v.get(i)?.as_deref()?.parse::<i64>().ok();
        if let (Some(first_ms), Some(last_ms)) = (ms(0), ms(1)) {
            out.insert(m.clone(), Span { first_ms, last_ms });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::events::v1::UserErased;

    fn erasure_at(ms: i64) -> Envelope {
        Envelope {
            event_id: "x".into(),
            tenant_id: "shop".into(),
            user_id: "u1".into(),
            occurred_at_ms: ms,
            body: Some(Body::UserErased(UserErased::default())),
            ..Default::default()
        }
    }

    fn deleted(ops: &[Op]) -> Vec<&str> {
        ops.iter()
            .filter_map(|o| match o {
                Op::Del { key } => Some(key.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn erasure_deletes_every_era_the_user_covered_and_records_last() {
        let cfg = FeatureConfig::default();
        let era_ms = (crate::features::ERA_TAUS * cfg.affinity_tau_ms) as i64;
        let span = Span {
            first_ms: 2 * era_ms + 5,
            last_ms: 4 * era_ms + 5,
        };
        let ops = erasure_ops(&erasure_at(4 * era_ms + 10), &cfg, Some(span));
        assert!(matches!(&ops[0], Op::Unless { field, .. } if field == "shop/u1"));
        assert!(matches!(ops.last(), Some(Op::HSet { field, .. }) if field == "shop/u1"));
        let d = deleted(&ops);
        assert!(
            d.contains(&"u:shop/u1") && d.contains(&"s:shop/u1"),
            "{d:?}"
        );
        for era in 2..=5 {
            assert!(d.contains(&format!("ca:{era}:shop/u1").as_str()), "{d:?}");
            assert!(d.contains(&format!("br:{era}:shop/u1").as_str()), "{d:?}");
        }
        assert!(!d
            .iter()
            .any(|k| k.starts_with("ca:1:") || k.starts_with("ca:6:")));
        let removed: Vec<_> = ops
            .iter()
            .filter_map(|o| match o {
                Op::ZRem { key, member } => Some((key.as_str(), member.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(removed, vec![("users", "shop/u1"), ("due", "shop/u1")]);
        // A user never seen still gets the erasure's own eras deleted.
        let d = erasure_ops(&erasure_at(4 * era_ms + 10), &cfg, None);
        assert!(deleted(&d).contains(&"ca:4:shop/u1"));
    }

    #[test]
    fn nonsense_times_are_bounded() {
        let cfg = FeatureConfig::default();
        let span = Span {
            first_ms: i64::MIN,
            last_ms: 0,
        };
        let ops = erasure_ops(&erasure_at(1_000), &cfg, Some(span));
        assert!(ops.len() < 2 * MAX_ERAS as usize + 10, "{}", ops.len());
    }

    #[test]
    fn every_other_record_starts_with_the_guard_then_the_once_op() {
        let e = Envelope {
            body: Some(Body::PageView(Default::default())),
            ..erasure_at(5)
        };
        let once = Op::HSet {
            key: "k".into(),
            field: "f".into(),
            value: "v".into(),
        };
        let ops = record_ops(&e, &FeatureConfig::default(), &HashMap::new(), Some(once));
        assert!(
            matches!(&ops[0], Op::Unless { key, field } if key == "erased" && field == "shop/u1")
        );
        assert!(matches!(&ops[1], Op::HSet { key, .. } if key == "k"));
    }
}
