//! The review queue and the labels reviewers give.
//!
//! Keys, in the slot of the user's partition (scope `fraud`); every member
//! and field naming an order is `<tenant>/<order_id>`
//! ([`crate::tenant::order_field`]), since two shops may use the same order
//! id:
//! - `review:queue`: sorted set of every tenant's queued orders, score =
//!   minus the order's event time (ms), so the store's "highest first" read
//!   returns the oldest first;
//! - `review:queue:<tenant>`: the same, for one tenant (`GetReviewQueue`
//!   with a tenant reads only it);
//! - `review:items`: hash order → `ReviewItem` (protobuf, hex);
//! - `review:labels`: hash order → `LabelRecord` (protobuf, hex), the
//!   training data; anonymised labels under `erased:<hash>` fields.
//!
//! Fields and members written before they carried the tenant are bare order
//! ids. The queues and items are rebuilt by `mesh replay`, labels are not
//! (they are its keeps), so readers still take a bare field, but only when
//! the record in it is of the tenant asked for.
//!
//! The consumer queues an order in the same atomic step that applies the
//! order's counters, so it is queued exactly once. A resolution is its own
//! one-record input stream (`review-resolution/<random id>`, offset 0; the
//! order id is not in its name, as the watermark field outlives an erasure
//! of the buyer), and `HSETNX` keeps the first label if two reviewers race,
//! or a retry repeats one.
//!
//! An erasure of the buyer ([`crate::erasure`]) takes the buyer's orders
//! off the queues and items, and moves their labels to anonymous fields;
//! the records keep their tenant, so the tenant's `ListLabels` still
//! returns them.
use std::collections::BTreeSet;

use mesh_fraud::FEATURE_NAMES;
use mesh_proto::fraud::v1 as pb;
use mesh_store::{HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};
use prost::Message;

use crate::error::{Error, Result};
use crate::state::SCOPE;
use crate::tenant;

/// Sorted set of every tenant's queued orders.
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
/// ([`crate::train::rows_from_labels`]) and name nobody. The tenant stays
/// too (a shop, not a person): the label is still that tenant's training
/// data ([`labels_page`]).
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

/// A tenant's queue: the same members as [`QUEUE_KEY`], that tenant's only,
/// so a tenant's page reads no other tenant's backlog.
pub fn tenant_queue_key(tenant: &str) -> String {
    format!("{QUEUE_KEY}:{tenant}")
}

/// Ops that queue an order (applied with the order's record).
pub fn enqueue_ops(item: &pb::ReviewItem) -> Vec<Op> {
    let d = item.decision.clone().unwrap_or_default();
    let member = tenant::order_field(&d.tenant_id, &d.order_id);
    let score = -(d.occurred_at_ms as f64);
    vec![
        Op::ZSet {
            key: QUEUE_KEY.into(),
            member: member.clone(),
            score,
        },
        Op::ZSet {
            key: tenant_queue_key(&d.tenant_id),
            member: member.clone(),
            score,
        },
        Op::HSet {
            key: ITEMS_KEY.into(),
            field: member,
            value: hex(&item.encode_to_vec()),
        },
    ]
}

/// Ops that take an order off both queues.
pub fn dequeue_ops(tenant: &str, order_id: &str) -> Vec<Op> {
    let member = tenant::order_field(tenant, order_id);
    vec![
        Op::ZRem {
            key: QUEUE_KEY.into(),
            member: member.clone(),
        },
        Op::ZRem {
            key: tenant_queue_key(tenant),
            member,
        },
    ]
}

/// The decision a stored item or label carries (`key` says which).
fn decision_in(key: &str, raw: &str) -> Result<Option<pb::Decision>> {
    Ok(if key == LABELS_KEY {
        decode::<pb::LabelRecord>(key, raw)?
            .item
            .and_then(|i| i.decision)
    } else {
        decode::<pb::ReviewItem>(key, raw)?.decision
    })
}

/// Whether a stored decision is the one of `order_id` of `tenant` (a field
/// written before fields carried the tenant is a bare order id, and may be
/// another tenant's order of the same id).
fn names(d: Option<&pb::Decision>, tenant: &str, order_id: &str) -> bool {
    d.is_some_and(|d| d.tenant_id == tenant && d.order_id == order_id)
}

/// The tenant a label belongs to (an anonymised label keeps it).
pub fn label_tenant(rec: &pb::LabelRecord) -> &str {
    rec.item
        .as_ref()
        .and_then(|i| i.decision.as_ref())
        .map_or("", |d| d.tenant_id.as_str())
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

/// One page of every tenant's queue, oldest first.
pub async fn list_queue(
    store: &StateStore,
    partitions: i32,
    page_size_asked: u32,
    token: &str,
) -> Result<pb::GetReviewQueueResponse> {
    let req = pb::GetReviewQueueRequest {
        page_size: page_size_asked,
        page_token: token.to_string(),
        tenant_id: String::new(),
    };
    queue_page(store, partitions, &req).await
}

/// One page of the queue of `tenant_id` (empty: every tenant's), oldest
/// first. A tenant's page reads that tenant's queue only, so it is full
/// unless it is the last.
pub async fn queue_page(
    store: &StateStore,
    partitions: i32,
    req: &pb::GetReviewQueueRequest,
) -> Result<pb::GetReviewQueueResponse> {
    tenant::check(&req.tenant_id)?;
    let after = parse_token(&req.page_token)?;
    let size = page_size(req.page_size, 50, 500);
    let key = if req.tenant_id.is_empty() {
        QUEUE_KEY.to_string()
    } else {
        tenant_queue_key(&req.tenant_id)
    };
    let tops = futures::future::try_join_all(
        (0..partitions).map(|p| store.ztop(slot(p), &key, QUEUE_SCAN)),
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
        .map(|(_, member, p)| HashRead::Fields {
            slot: slot(*p),
            key: ITEMS_KEY.into(),
            fields: vec![member.clone()],
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

/// What the store holds of one order of one tenant.
#[derive(Debug, Default)]
struct Found {
    /// Its item: partition, whether under the bare order id (written before
    /// fields carried the tenant), the item.
    item: Option<(i32, bool, pb::ReviewItem)>,
    /// Its label, if resolved.
    label: Option<pb::LabelRecord>,
}

/// Finds the item and any label of `order_id` of `tenant`, in one round
/// trip. Another tenant's order of the same id is not found.
async fn find(store: &StateStore, partitions: i32, tenant: &str, order_id: &str) -> Result<Found> {
    let fields = vec![tenant::order_field(tenant, order_id), order_id.to_string()];
    let mut reads = Vec::with_capacity(2 * partitions as usize);
    for p in 0..partitions {
        for key in [ITEMS_KEY, LABELS_KEY] {
            reads.push(HashRead::Fields {
                slot: slot(p),
                key: key.into(),
                fields: fields.clone(),
            });
        }
    }
    let replies = store.hread_many(&reads).await?;
    let mut found = Found::default();
    for (i, reply) in replies.into_iter().enumerate() {
        let HashReply::Fields(v) = reply else {
            continue;
        };
        let p = (i / 2) as i32;
        for (j, raw) in v.into_iter().enumerate() {
            let Some(raw) = raw else { continue };
            if i % 2 == 0 {
                let item: pb::ReviewItem = decode(ITEMS_KEY, &raw)?;
                if found.item.is_none() && names(item.decision.as_ref(), tenant, order_id) {
                    found.item = Some((p, j == 1, item));
                }
            } else {
                let label: pb::LabelRecord = decode(LABELS_KEY, &raw)?;
                let d = label.item.as_ref().and_then(|i| i.decision.as_ref());
                if found.label.is_none() && names(d, tenant, order_id) {
                    found.label = Some(label);
                }
            }
        }
    }
    Ok(found)
}

/// Tenants with an order `order_id` under `key` (items or labels), in one
/// round trip: the fields of every partition, and the bare order id of a
/// field written before fields carried the tenant. For a resolution that
/// names no tenant.
async fn owners(
    store: &StateStore,
    partitions: i32,
    key: &'static str,
    order_id: &str,
) -> Result<BTreeSet<String>> {
    let mut reads = Vec::with_capacity(2 * partitions as usize);
    for p in 0..partitions {
        reads.push(HashRead::Keys {
            slot: slot(p),
            key: key.into(),
        });
        reads.push(HashRead::Fields {
            slot: slot(p),
            key: key.into(),
            fields: vec![order_id.to_string()],
        });
    }
    let mut tenants = BTreeSet::new();
    for reply in store.hread_many(&reads).await? {
        match reply {
            HashReply::Keys(fields) => tenants.extend(
                fields
                    .iter()
                    .filter_map(|f| tenant::split(f))
                    .filter(|(_, o)| *o == order_id)
                    .map(|(t, _)| t.to_string()),
            ),
            HashReply::Fields(v) => {
                for raw in v.into_iter().flatten() {
                    if let Some(d) = decision_in(key, &raw)? {
                        if d.order_id == order_id {
                            tenants.insert(d.tenant_id);
                        }
                    }
                }
            }
        }
    }
    Ok(tenants)
}

/// The one tenant with an order `order_id` queued or labelled; `None` when
/// there is none, INVALID_ARGUMENT (`tenant_id`) when several tenants use
/// that order id.
async fn owner(store: &StateStore, partitions: i32, order_id: &str) -> Result<Option<String>> {
    let mut tenants = owners(store, partitions, ITEMS_KEY, order_id).await?;
    if tenants.is_empty() {
        // Items stay after a resolution; a label without one is left by a
        // replay whose model no longer sends the order to review.
        tenants = owners(store, partitions, LABELS_KEY, order_id).await?;
    }
    if tenants.len() > 1 {
        return Err(Error::invalid(
            "tenant_id",
            format!(
                "order {order_id} is an order of {} tenants; name its tenant",
                tenants.len()
            ),
        ));
    }
    Ok(tenants.pop_first())
}

/// Takes `order_id` (of `tenant_id`, or of the one tenant that has it when
/// empty) off the queue and records its label; returns the label and
/// whether it had been recorded before. Another tenant's order answers
/// NOT_FOUND, as an order never queued.
pub async fn resolve(
    store: &StateStore,
    partitions: i32,
    req: &pb::ResolveReviewRequest,
    now_ms: i64,
) -> Result<(pb::LabelRecord, bool)> {
    tenant::check(&req.tenant_id)?;
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
    let not_found =
        || Error::NotFound(format!("order {} is not in the review queue", req.order_id));
    let tenant = if req.tenant_id.is_empty() {
        owner(store, partitions, &req.order_id)
            .await?
            .ok_or_else(not_found)?
    } else {
        req.tenant_id.clone()
    };
    let found = find(store, partitions, &tenant, &req.order_id).await?;
    if let Some(l) = found.label {
        return Ok((l, true));
    }
    let Some((partition, bare, item)) = found.item else {
        return Err(not_found());
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
    let mut ops = vec![
        // The buyer's erasure may have landed since the item was read:
        // then no label naming them is written.
        mesh_store::erasure::guard(&buyer),
        Op::HSetNx {
            key: LABELS_KEY.into(),
            field: tenant::order_field(&tenant, &req.order_id),
            value: hex(&record.encode_to_vec()),
        },
    ];
    ops.extend(dequeue_ops(&tenant, &req.order_id));
    if bare {
        ops.push(Op::ZRem {
            key: QUEUE_KEY.into(),
            member: req.order_id.clone(),
        });
    }
    batch.push(0, ops);
    store.apply(SCOPE, &batch).await?;
    match find(store, partitions, &tenant, &req.order_id).await?.label {
        // The buyer was erased meanwhile: the guard wrote nothing.
        None => Err(not_found()),
        // Someone resolved it between our read and our write: theirs stands.
        Some(l) if l != record => Ok((l, true)),
        Some(_) => Ok((record, false)),
    }
}

/// One page of every tenant's labels, in resolution order.
pub async fn list_labels(
    store: &StateStore,
    partitions: i32,
    page_size_asked: u32,
    token: &str,
) -> Result<pb::ListLabelsResponse> {
    let req = pb::ListLabelsRequest {
        page_size: page_size_asked,
        page_token: token.to_string(),
        tenant_id: String::new(),
    };
    labels_page(store, partitions, &req).await
}

/// One page of the labels of `tenant_id` (empty: every tenant's), in
/// resolution order. A label's tenant is the one in its record, which an
/// anonymised label keeps ([`anonymized`]), so training data of a tenant
/// outlives its buyers' erasures.
pub async fn labels_page(
    store: &StateStore,
    partitions: i32,
    req: &pb::ListLabelsRequest,
) -> Result<pb::ListLabelsResponse> {
    tenant::check(&req.tenant_id)?;
    let after = parse_token(&req.page_token)?;
    let size = page_size(req.page_size, 100, 1000);
    let keys: Vec<(Slot<'_>, String)> = (0..partitions)
        .map(|p| (slot(p), LABELS_KEY.to_string()))
        .collect();
    let hashes = store.hgetall_many(&keys).await?;
    let mut labels = Vec::new();
    for h in hashes {
        for (field, raw) in h {
            let rec: pb::LabelRecord = decode(LABELS_KEY, &raw)?;
            if !req.tenant_id.is_empty() && label_tenant(&rec) != req.tenant_id {
                continue;
            }
            let pos = (rec.resolved_at_ms, field);
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

/// Takes every labelled order off the review queues; returns how many were
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
        let mut ops = Vec::new();
        for raw in labels.values() {
            // The record names its order whatever the field (bare order
            // ids before fields carried the tenant); an anonymised one
            // names none, and its order was erased off the queue.
            let rec: pb::LabelRecord = decode(LABELS_KEY, raw)?;
            let Some(d) = rec.item.and_then(|i| i.decision) else {
                continue;
            };
            if d.order_id.is_empty()
                || !queued.contains(&tenant::order_field(&d.tenant_id, &d.order_id))
            {
                continue;
            }
            dropped += 1;
            ops.extend(dequeue_ops(&d.tenant_id, &d.order_id));
        }
        if ops.is_empty() {
            continue;
        }
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

    #[test]
    fn an_anonymised_label_keeps_its_tenant_and_nothing_of_the_buyer() {
        let rec = pb::LabelRecord {
            item: Some(pb::ReviewItem {
                decision: Some(pb::Decision {
                    tenant_id: "shop-a".into(),
                    user_id: "u1".into(),
                    order_id: "o1".into(),
                    event_id: "e1".into(),
                    ..Default::default()
                }),
                features: vec![1.0, 2.0],
            }),
            label: pb::Label::Fraud as i32,
            reviewer: "rev".into(),
            resolved_at_ms: 5,
        };
        let (field, value) = anonymized(&rec);
        assert!(field.starts_with("erased:"), "{field}");
        let kept: pb::LabelRecord = decode(LABELS_KEY, &value).unwrap();
        assert_eq!(label_tenant(&kept), "shop-a");
        let d = kept.item.unwrap().decision.unwrap();
        assert_eq!((d.user_id, d.order_id, d.event_id), Default::default());
    }

    #[test]
    fn an_order_is_queued_for_every_tenant_and_its_own() {
        let item = pb::ReviewItem {
            decision: Some(pb::Decision {
                tenant_id: "shop-a".into(),
                order_id: "o1".into(),
                occurred_at_ms: 7,
                ..Default::default()
            }),
            features: Vec::new(),
        };
        let ops = enqueue_ops(&item);
        for key in [QUEUE_KEY.to_string(), tenant_queue_key("shop-a")] {
            assert!(ops.contains(&Op::ZSet {
                key,
                member: "shop-a/o1".into(),
                score: -7.0
            }));
        }
        assert!(ops
            .iter()
            .any(|op| matches!(op, Op::HSet { key, field, .. } if key == ITEMS_KEY && field == "shop-a/o1")));
        assert!(dequeue_ops("shop-a", "o1")
            .iter()
            .all(|op| matches!(op, Op::ZRem { member, .. } if member == "shop-a/o1")));
    }
}
