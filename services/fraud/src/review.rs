//! The review queue and the labels reviewers give.
//!
//! Keys, in the slot of the user's partition (scope `fraud`):
//! - `review:queue`: sorted set of queued order ids, score = minus the
//!   order's event time (ms), so the store's "highest first" read returns
//!   the oldest first;
//! - `review:items`: hash order id → `ReviewItem` (protobuf, hex);
//! - `review:labels`: hash order id → `LabelRecord` (protobuf, hex), the
//!   training data.
//!
//! The consumer queues an order in the same atomic step that applies the
//! order's counters, so it is queued exactly once. A resolution is its own
//! one-record input stream (`review-resolution/<random id>`, offset 0; the
//! order id is not in its name, as the watermark field outlives an erasure
//! of the buyer), and `HSETNX` keeps the first label if two reviewers race,
//! or a retry repeats one.
//!
//! An erasure of the buyer ([`crate::erasure`]) takes the buyer's orders
//! off the queue and items, and moves their labels to anonymous fields.
use mesh_fraud::FEATURE_NAMES;
use mesh_proto::fraud::v1 as pb;
use mesh_store::{HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};
use prost::Message;

use crate::error::{Error, Result};
use crate::state::SCOPE;

/// Sorted set of queued order ids.
pub const QUEUE_KEY: &str = "review:queue";
/// Hash of queued items.
pub const ITEMS_KEY: &str = "review:items";
/// Hash of labels.
pub const LABELS_KEY: &str = "review:labels";
/// Keys that no topic can rebuild (reviewers' labels): `mesh replay
/// --service fraud` keeps them.
pub const REPLAY_KEEPS: &[&str] = &[LABELS_KEY];
/// Most queued orders read per partition when listing (the oldest ones).
pub const QUEUE_SCAN: usize = 10_000;

fn slot(partition: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition,
    }
}

/// Lowercase hex of bytes (store values are strings).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(key: &str, s: &str) -> Result<Vec<u8>> {
    let bad = || Error::Corrupt {
        key: key.to_string(),
        reason: "not hex".into(),
    };
    if !s.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

pub(crate) fn decode<M: Message + Default>(key: &str, s: &str) -> Result<M> {
    M::decode(unhex(key, s)?.as_slice()).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// A label of an erased user's order, moved off its order id: the field
/// `erased:<hash of the record>` and the record (hex) with the order id,
/// user id, event id and buyer context cleared. Features, label, reviewer,
/// scores and times stay: they are what training reads
/// ([`crate::train::rows_from_labels`]) and name nobody.
pub fn anonymized(rec: &pb::LabelRecord) -> (String, String) {
    use std::hash::{Hash, Hasher};
    let mut rec = rec.clone();
    if let Some(d) = rec.item.as_mut().and_then(|i| i.decision.as_mut()) {
        d.order_id.clear();
        d.user_id.clear();
        d.event_id.clear();
        d.buyer = None;
    }
    let bytes = rec.encode_to_vec();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    (format!("erased:{:016x}", h.finish()), hex(&bytes))
}

/// Hash of every order's decision in a user slot: field
/// `<tenant>/<order_id>`, value `<ACTION>:<score>` (about 40 bytes an
/// order).
pub const DECIDED_KEY: &str = "decided";

/// The op that records an order's decision (applied with its record), read
/// by `GetDecision`.
pub fn decided_op(d: &pb::Decision) -> Op {
    Op::HSet {
        key: DECIDED_KEY.into(),
        field: format!("{}/{}", d.tenant_id, d.order_id),
        value: format!("{}:{:.4}", d.action().as_str_name(), d.score),
    }
}

/// The stored decision on an order of `user` (`GetDecision`).
pub async fn decision_of(
    store: &StateStore,
    partitions: i32,
    r: &pb::GetDecisionRequest,
) -> Result<pb::GetDecisionResponse> {
    for (field, v) in [
        ("tenant_id", &r.tenant_id),
        ("user_id", &r.user_id),
        ("order_id", &r.order_id),
    ] {
        if v.trim().is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
    }
    let slot = Slot {
        scope: crate::state::SCOPE,
        partition: mesh_bus::partition::partition_for(
            &format!("{}/{}", r.tenant_id, r.user_id),
            partitions,
        ),
    };
    // The erasure deletes the user's decisions; asking the erasure hash in
    // the same round trip also answers "unknown" for a decision the
    // erasure could not find (written before orders were indexed).
    let reply = store
        .hread_many(&[
            HashRead::Fields {
                slot,
                key: DECIDED_KEY.into(),
                fields: vec![format!("{}/{}", r.tenant_id, r.order_id)],
            },
            HashRead::Fields {
                slot,
                key: mesh_store::erasure::KEY.into(),
                fields: vec![mesh_store::erasure::member(&r.tenant_id, &r.user_id)],
            },
        ])
        .await?;
    let mut reply = reply.into_iter().map(|r| match r {
        HashReply::Fields(mut v) => v.pop().flatten(),
        HashReply::Keys(_) => None,
    });
    let (value, erased) = (reply.next().flatten(), reply.next().flatten());
    let value = value.filter(|_| erased.is_none());
    Ok(match value.as_deref().and_then(|v| v.split_once(':')) {
        Some((action, score)) => pb::GetDecisionResponse {
            found: true,
            action: pb::Action::from_str_name(action).unwrap_or_default() as i32,
            score: score.parse().unwrap_or_default(),
        },
        None => pb::GetDecisionResponse::default(),
    })
}

/// Ops that queue an order (applied with the order's record).
pub fn enqueue_ops(item: &pb::ReviewItem) -> Vec<Op> {
    let d = item.decision.clone().unwrap_or_default();
    vec![
        Op::ZSet {
            key: QUEUE_KEY.into(),
            member: d.order_id.clone(),
            score: -(d.occurred_at_ms as f64),
        },
        Op::HSet {
            key: ITEMS_KEY.into(),
            field: d.order_id,
            value: hex(&item.encode_to_vec()),
        },
    ]
}

/// A position in a listing: `(time, order id)` of the last item returned.
fn parse_token(token: &str) -> Result<Option<(i64, String)>> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .split_once(':')
        .and_then(|(t, id)| Some((t.parse().ok()?, id.to_string())))
        .map(Some)
        .ok_or_else(|| Error::invalid("page_token", "not a token returned by this service"))
}

fn page_size(asked: u32, default: u32, max: u32) -> usize {
    (if asked == 0 { default } else { asked.min(max) }) as usize
}

/// One page of the queue, oldest first.
pub async fn list_queue(
    store: &StateStore,
    partitions: i32,
    page_size_asked: u32,
    token: &str,
) -> Result<pb::GetReviewQueueResponse> {
    let after = parse_token(token)?;
    let size = page_size(page_size_asked, 50, 500);
    let tops = futures::future::try_join_all(
        (0..partitions).map(|p| store.ztop(slot(p), QUEUE_KEY, QUEUE_SCAN)),
    )
    .await?;
    let mut queued: Vec<(i64, String, i32)> = tops
        .into_iter()
        .enumerate()
        .flat_map(|(p, members)| {
            members
                .into_iter()
                .map(move |(id, score)| (-score as i64, id, p as i32))
        })
        .filter(|(t, id, _)| match &after {
            Some((at, aid)) => (*t, id.as_str()) > (*at, aid.as_str()),
            None => true,
        })
        .collect();
    queued.sort();
    let more = queued.len() > size;
    queued.truncate(size);
    let reads: Vec<HashRead<'_>> = queued
        .iter()
        .map(|(_, id, p)| HashRead::Fields {
            slot: slot(*p),
            key: ITEMS_KEY.into(),
            fields: vec![id.clone()],
        })
        .collect();
    let replies = store.hread_many(&reads).await?;
    let mut items = Vec::with_capacity(queued.len());
    for reply in replies {
        if let HashReply::Fields(v) = reply {
            if let Some(Some(raw)) = v.into_iter().next() {
                items.push(decode::<pb::ReviewItem>(ITEMS_KEY, &raw)?);
            }
        }
    }
    let next_page_token = match (more, queued.last()) {
        (true, Some((t, id, _))) => format!("{t}:{id}"),
        _ => String::new(),
    };
    Ok(pb::GetReviewQueueResponse {
        items,
        next_page_token,
    })
}

/// Finds the queued item and any label of `order_id`, in one round trip.
async fn find(
    store: &StateStore,
    partitions: i32,
    order_id: &str,
) -> Result<(Option<(i32, pb::ReviewItem)>, Option<pb::LabelRecord>)> {
    let mut reads = Vec::with_capacity(2 * partitions as usize);
    for p in 0..partitions {
        for key in [ITEMS_KEY, LABELS_KEY] {
            reads.push(HashRead::Fields {
                slot: slot(p),
                key: key.into(),
                fields: vec![order_id.to_string()],
            });
        }
    }
    let replies = store.hread_many(&reads).await?;
    let (mut item, mut label) = (None, None);
    for (i, reply) in replies.into_iter().enumerate() {
        let HashReply::Fields(v) = reply else {
            continue;
        };
        let Some(Some(raw)) = v.into_iter().next() else {
            continue;
        };
        let p = (i / 2) as i32;
        if i % 2 == 0 {
            item = Some((p, decode(ITEMS_KEY, &raw)?));
        } else {
            label = Some(decode(LABELS_KEY, &raw)?);
        }
    }
    Ok((item, label))
}

/// Takes `order_id` off the queue and records its label; returns the label
/// and whether it had been recorded before.
pub async fn resolve(
    store: &StateStore,
    partitions: i32,
    req: &pb::ResolveReviewRequest,
    now_ms: i64,
) -> Result<(pb::LabelRecord, bool)> {
    // Bounded: the NOT_FOUND answer names the order, and a 100 KB id in
    // the status message broke the caller's HTTP/2 connection.
    if req.order_id.trim().is_empty() || req.order_id.len() > 256 {
        return Err(Error::invalid("order_id", "required, 1..=256 bytes"));
    }
    let label = match pb::Label::try_from(req.label) {
        Ok(l @ (pb::Label::Fraud | pb::Label::Legit)) => l,
        _ => {
            return Err(Error::invalid(
                "label",
                "must be LABEL_FRAUD or LABEL_LEGIT",
            ))
        }
    };
    if req.reviewer.trim().is_empty() || req.reviewer.len() > 128 {
        return Err(Error::invalid("reviewer", "required, 1..=128 characters"));
    }
    let (item, existing) = find(store, partitions, &req.order_id).await?;
    if let Some(l) = existing {
        return Ok((l, true));
    }
    let Some((partition, item)) = item else {
        return Err(Error::NotFound(format!(
            "order {} is not in the review queue",
            req.order_id
        )));
    };
    let record = pb::LabelRecord {
        item: Some(item),
        label: label as i32,
        reviewer: req.reviewer.clone(),
        resolved_at_ms: now_ms,
    };
    let buyer = record
        .item
        .as_ref()
        .and_then(|i| i.decision.as_ref())
        .map(|d| mesh_store::erasure::member(&d.tenant_id, &d.user_id))
        .unwrap_or_default();
    let stream = format!("review-resolution/{:016x}", rand::random::<u64>());
    let mut batch = PartitionBatch::new(stream, partition);
    batch.push(
        0,
        vec![
            // The buyer's erasure may have landed since the item was read:
            // then no label naming them is written.
            mesh_store::erasure::guard(&buyer),
            Op::HSetNx {
                key: LABELS_KEY.into(),
                field: req.order_id.clone(),
                value: hex(&record.encode_to_vec()),
            },
            Op::ZRem {
                key: QUEUE_KEY.into(),
                member: req.order_id.clone(),
            },
        ],
    );
    store.apply(SCOPE, &batch).await?;
    match find(store, partitions, &req.order_id).await?.1 {
        // The buyer was erased meanwhile: the guard wrote nothing.
        None => Err(Error::NotFound(format!(
            "order {} is not in the review queue",
            req.order_id
        ))),
        // Someone resolved it between our read and our write: theirs stands.
        Some(l) if l != record => Ok((l, true)),
        Some(_) => Ok((record, false)),
    }
}

/// One page of labels, in resolution order.
pub async fn list_labels(
    store: &StateStore,
    partitions: i32,
    page_size_asked: u32,
    token: &str,
) -> Result<pb::ListLabelsResponse> {
    let after = parse_token(token)?;
    let size = page_size(page_size_asked, 100, 1000);
    let keys: Vec<(Slot<'_>, String)> = (0..partitions)
        .map(|p| (slot(p), LABELS_KEY.to_string()))
        .collect();
    let hashes = store.hgetall_many(&keys).await?;
    let mut labels = Vec::new();
    for h in hashes {
        for (order_id, raw) in h {
            let rec: pb::LabelRecord = decode(LABELS_KEY, &raw)?;
            let pos = (rec.resolved_at_ms, order_id);
            if after
                .as_ref()
                .is_none_or(|(t, id)| (pos.0, pos.1.as_str()) > (*t, id.as_str()))
            {
                labels.push((pos, rec));
            }
        }
    }
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    let more = labels.len() > size;
    labels.truncate(size);
    let next_page_token = match (more, labels.last()) {
        (true, Some(((t, id), _))) => format!("{t}:{id}"),
        _ => String::new(),
    };
    Ok(pb::ListLabelsResponse {
        labels: labels.into_iter().map(|(_, r)| r).collect(),
        next_page_token,
        feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
    })
}

/// Takes every labelled order off the review queue; returns how many were
/// queued. After a replay has re-queued every REVIEW order, this restores
/// what reviewers had resolved.
pub async fn drop_labelled(store: &StateStore, partitions: i32) -> Result<u64> {
    let keys: Vec<(Slot<'_>, String)> = (0..partitions)
        .map(|p| (slot(p), LABELS_KEY.to_string()))
        .collect();
    let mut dropped = 0;
    for (p, labels) in (0..partitions).zip(store.hgetall_many(&keys).await?) {
        if labels.is_empty() {
            continue;
        }
        let queued: std::collections::HashSet<String> = store
            .ztop(slot(p), QUEUE_KEY, i64::MAX as usize)
            .await?
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        let ops: Vec<Op> = labels
            .into_keys()
            .filter(|id| queued.contains(id))
            .map(|member| Op::ZRem {
                key: QUEUE_KEY.into(),
                member,
            })
            .collect();
        if ops.is_empty() {
            continue;
        }
        dropped += ops.len() as u64;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut batch = PartitionBatch::new(format!("review-replay/{now_ms}"), p);
        batch.push(0, ops);
        store.apply(SCOPE, &batch).await?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let b = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex("k", &hex(&b)).unwrap(), b);
        assert!(unhex("k", "abc").is_err());
        assert!(unhex("k", "zz").is_err());
    }

    #[test]
    fn tokens_are_positions() {
        assert_eq!(parse_token("").unwrap(), None);
        assert_eq!(
            parse_token("12:o:1").unwrap(),
            Some((12, "o:1".to_string()))
        );
        assert!(parse_token("nonsense").is_err());
    }
}
