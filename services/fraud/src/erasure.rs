//! Forgetting a user (`user_erased`): what fraud deletes, what it keeps,
//! and how an erased user's later records are dropped.
//!
//! **Deleted**, in the user's partition slot, in the atomic step of the
//! erasure record (after [`mesh_store::erasure::guard`], so a second
//! erasure changes nothing): the user hash `fraud:user:<tenant>/<user>`;
//! per order of the user, its decision (`decided`), its review queue entries
//! and item (`review:queue`, `review:queue:<tenant>`, `review:items`, also
//! under the bare order id of fields written before they carried the
//! tenant, when the record there is of the user's tenant). In the home slots: the user's
//! field in every distinct-accounts set (`fraud:<kind>:<id>:users`) the
//! user was counted in, and the stand-in entities named after the user
//! (`<tenant>/<user>/no-device`, `/no-ip`, `/no-instrument`, see
//! [`crate::convert`]). Last, the user's link index (below).
//!
//! **Labels** (`review:labels`) are kept for training but no longer name
//! the user: each label of the user's orders moves to an anonymous field
//! (`erased:<hash>`) with the order id, user id, event id and buyer context
//! cleared; its features, label, reviewer and times stay, which is all
//! `mesh train fraud` reads ([`crate::review::anonymized`]), and so does its
//! tenant, so the tenant's `ListLabels` still returns it. Dropping them
//! would bias the training set against reviewed users who later asked to
//! be forgotten.
//!
//! **Kept**: counters of devices, IPs, instruments and shipping locations
//! keyed by their hash. They are shared by every user of the device or
//! card and do not name anyone; the user's orders stay counted in them.
//!
//! **Link index** `fraud:links:<tenant>/<user>` (user slot): one field per
//! order (`order:<id>`) and per distinct-accounts set holding the user
//! (`set:<key>`), written with the user's records: the order ids and sets
//! are not derivable from the erasure event. It is deleted in a third step,
//! after the home slots applied the deletions read from it
//! ([`crate::state::BatchWrite::apply`]), so a crash in between finds it
//! again when the erasure record is redelivered.
//!
//! **Later records.** The guard covers the user slot. Home slots do not
//! hold the erasure, and decisions, alerts and the review budget are side
//! effects outside the store, so the handler reads the `erased` hash for
//! the members of a batch that has orders, failed payments or erasures (one
//! round trip, [`read`]) and drops an erased user's records whole.
use std::collections::{BTreeSet, HashMap, HashSet};

use mesh_fraud::state::{entity_key, users_key, EntityKind};
use mesh_fraud::StateOp;
use mesh_proto::fraud::v1 as pb;
use mesh_store::{erasure, HashRead, HashReply, Op, Slot, StateStore};

use crate::error::Result;
use crate::review::{self, DECIDED_KEY, ITEMS_KEY, LABELS_KEY, QUEUE_KEY};
use crate::state::SCOPE;
use crate::tenant;

/// Key of a user's link index (in the user's partition slot).
pub fn links_key(member: &str) -> String {
    format!("fraud:links:{member}")
}

const ORDER: &str = "order:";
const SET: &str = "set:";

/// The link op of an order of `member`.
pub fn order_link(member: &str, order_id: &str) -> Op {
    link(member, format!("{ORDER}{order_id}"))
}

fn link(member: &str, field: String) -> Op {
    Op::HSet {
        key: links_key(member),
        field,
        value: "1".into(),
    }
}

/// Link fields (`set:<key>`) of the distinct-accounts sets `ops` add
/// `member` to.
pub fn set_links(member: &str, ops: &[StateOp]) -> Vec<String> {
    ops.iter()
        .filter_map(|op| match op {
            StateOp::SetIfAbsent { key, field, .. }
                if field == member && !crate::state::is_user_key(key) =>
            {
                Some(format!("{SET}{key}"))
            }
            _ => None,
        })
        .collect()
}

/// The link ops of `fields` (as [`set_links`] and `order:<id>` give them).
pub fn link_ops(member: &str, fields: &[String]) -> Vec<Op> {
    fields.iter().map(|f| link(member, f.clone())).collect()
}

/// What the store says about a batch's users.
#[derive(Debug, Default)]
pub struct Known {
    /// Members already erased.
    pub erased: HashSet<String>,
    /// Their erasure times as stored (Unix ms), where readable.
    pub erased_at: HashMap<String, i64>,
    /// Link fields of each member erased by the batch.
    pub links: HashMap<String, BTreeSet<String>>,
}

/// One round trip: which of `members` are erased, and the links of the
/// members `erasing` (their index, plus the devices and addresses of their
/// user hash, which also covers orders indexed before links existed).
/// Nothing is read when both are empty.
pub async fn read(
    store: &StateStore,
    partition: i32,
    members: &[String],
    erasing: &[String],
) -> Result<Known> {
    let slot = Slot {
        scope: SCOPE,
        partition,
    };
    let mut reads = Vec::with_capacity(1 + 2 * erasing.len());
    if !members.is_empty() {
        reads.push(HashRead::Fields {
            slot,
            key: erasure::KEY.into(),
            fields: members.to_vec(),
        });
    }
    for m in erasing {
        reads.push(HashRead::Keys {
            slot,
            key: links_key(m),
        });
        reads.push(HashRead::Keys {
            slot,
            key: entity_key(EntityKind::User, m),
        });
    }
    if reads.is_empty() {
        return Ok(Known::default());
    }
    let mut replies = store.hread_many(&reads).await?.into_iter();
    let mut known = Known::default();
    if !members.is_empty() {
        if let Some(HashReply::Fields(v)) = replies.next() {
            for (m, v) in members.iter().zip(v) {
                let Some(v) = v else { continue };
                if let Ok(at) = v.parse::<i64>() {
                    known.erased_at.insert(m.clone(), at);
                }
                known.erased.insert(m.clone());
            }
        }
    }
    for m in erasing {
        let mut links = BTreeSet::new();
        if let Some(HashReply::Keys(k)) = replies.next() {
            links.extend(k);
        }
        if let Some(HashReply::Keys(k)) = replies.next() {
            for f in k {
                if let Some(dev) = f.strip_prefix("dev:") {
                    links.insert(format!("{SET}{}", users_key(EntityKind::Device, dev)));
                } else if let Some(addr) = f.strip_prefix("addr:") {
                    links.insert(format!("{SET}{}", users_key(EntityKind::ShipLoc, addr)));
                }
            }
        }
        known.links.insert(m.clone(), links);
    }
    Ok(known)
}

/// Order ids among link fields.
pub fn orders_of(links: &BTreeSet<String>) -> impl Iterator<Item = &str> {
    links.iter().filter_map(|f| f.strip_prefix(ORDER))
}

/// What the review keys hold of some orders of erased users.
#[derive(Debug, Default)]
pub struct Reviews {
    /// Labels, by order field (`<tenant>/<order_id>`).
    pub labels: HashMap<String, pb::LabelRecord>,
    /// Keys (items, labels) holding the order under its bare order id,
    /// written before fields carried the tenant, by order field.
    pub bare: HashMap<String, Vec<&'static str>>,
}

/// The labels of `orders` (tenant, order id) in the partition slot, and
/// where they are still stored under their bare order id, in one round
/// trip (none when there are no orders). A bare field counts only when its
/// record is of that tenant: another tenant may use the same order id.
pub async fn reviews_of(
    store: &StateStore,
    partition: i32,
    orders: &[(String, String)],
) -> Result<Reviews> {
    if orders.is_empty() {
        return Ok(Reviews::default());
    }
    let slot = Slot {
        scope: SCOPE,
        partition,
    };
    let fields: Vec<String> = orders
        .iter()
        .map(|(t, o)| tenant::order_field(t, o))
        .collect();
    let bare: Vec<String> = orders.iter().map(|(_, o)| o.clone()).collect();
    let reply = store
        .hread_many(&[
            HashRead::Fields {
                slot,
                key: LABELS_KEY.into(),
                fields,
            },
            HashRead::Fields {
                slot,
                key: LABELS_KEY.into(),
                fields: bare.clone(),
            },
            HashRead::Fields {
                slot,
                key: ITEMS_KEY.into(),
                fields: bare,
            },
        ])
        .await?;
    let mut replies = reply.into_iter().map(|r| match r {
        HashReply::Fields(v) => v,
        HashReply::Keys(_) => Vec::new(),
    });
    let (labels, bare_labels, bare_items) = (
        replies.next().unwrap_or_default(),
        replies.next().unwrap_or_default(),
        replies.next().unwrap_or_default(),
    );
    let mut out = Reviews::default();
    let of = |d: Option<&pb::Decision>, (t, o): &(String, String)| {
        d.is_some_and(|d| &d.tenant_id == t && &d.order_id == o)
    };
    for (i, order) in orders.iter().enumerate() {
        let field = tenant::order_field(&order.0, &order.1);
        if let Some(Some(raw)) = labels.get(i) {
            out.labels
                .insert(field.clone(), review::decode(LABELS_KEY, raw)?);
        }
        if let Some(Some(raw)) = bare_labels.get(i) {
            let rec: pb::LabelRecord = review::decode(LABELS_KEY, raw)?;
            if of(rec.item.as_ref().and_then(|i| i.decision.as_ref()), order) {
                out.bare.entry(field.clone()).or_default().push(LABELS_KEY);
                out.labels.entry(field.clone()).or_insert(rec);
            }
        }
        if let Some(Some(raw)) = bare_items.get(i) {
            let item: pb::ReviewItem = review::decode(ITEMS_KEY, raw)?;
            if of(item.decision.as_ref(), order) {
                out.bare.entry(field).or_default().push(ITEMS_KEY);
            }
        }
    }
    Ok(out)
}

/// The ops of one erasure, by step.
#[derive(Debug, Default)]
pub struct Forget {
    /// User slot, atomic with the erasure record (guard first).
    pub own: Vec<Op>,
    /// Home slots of their keys.
    pub remote: Vec<Op>,
    /// User slot, after the home slots.
    pub cleanup: Vec<Op>,
}

/// What erasing `member` (of `tenant`) at `at_ms` does, given its links and
/// what the review keys hold of its orders.
pub fn forget(
    tenant: &str,
    member: &str,
    at_ms: i64,
    links: &BTreeSet<String>,
    reviews: &Reviews,
) -> Forget {
    let mut own = vec![
        erasure::guard(member),
        Op::Del {
            key: entity_key(EntityKind::User, member),
        },
    ];
    for order in orders_of(links) {
        let field = tenant::order_field(tenant, order);
        own.push(Op::HDel {
            key: DECIDED_KEY.into(),
            field: field.clone(),
        });
        own.extend(review::dequeue_ops(tenant, order));
        for key in [ITEMS_KEY, LABELS_KEY] {
            own.push(Op::HDel {
                key: key.into(),
                field: field.clone(),
            });
        }
        for key in reviews.bare.get(&field).into_iter().flatten() {
            own.push(Op::HDel {
                key: key.to_string(),
                field: order.to_string(),
            });
            if *key == ITEMS_KEY {
                own.push(Op::ZRem {
                    key: QUEUE_KEY.into(),
                    member: order.to_string(),
                });
            }
        }
        if let Some(label) = reviews.labels.get(&field) {
            let (field, value) = review::anonymized(label);
            own.push(Op::HSet {
                key: LABELS_KEY.into(),
                field,
                value,
            });
        }
    }
    own.push(erasure::record(member, at_ms));
    let mut remote: Vec<Op> = links
        .iter()
        .filter_map(|f| f.strip_prefix(SET))
        .map(|key| Op::HDel {
            key: key.to_string(),
            field: member.to_string(),
        })
        .collect();
    for (kind, what, with_users) in [
        (EntityKind::Device, "device", true),
        (EntityKind::Ip, "ip", false),
        (EntityKind::Instrument, "instrument", true),
    ] {
        let id = crate::convert::stand_in(member, what);
        remote.push(Op::Del {
            key: entity_key(kind, &id),
        });
        if with_users {
            remote.push(Op::Del {
                key: users_key(kind, &id),
            });
        }
    }
    Forget {
        own,
        remote,
        cleanup: vec![Op::Del {
            key: links_key(member),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_links_name_only_shared_sets_holding_the_member() {
        let ops = vec![
            StateOp::SetIfAbsent {
                key: "fraud:device:shop/d1:users".into(),
                field: "shop/u1".into(),
                value: 1.0,
            },
            StateOp::SetIfAbsent {
                key: "fraud:user:shop/u1".into(),
                field: "shop/u1".into(),
                value: 1.0,
            },
            StateOp::SetIfAbsent {
                key: "fraud:device:shop/d1:users".into(),
                field: "shop/u2".into(),
                value: 1.0,
            },
        ];
        assert_eq!(
            set_links("shop/u1", &ops),
            vec!["set:fraud:device:shop/d1:users".to_string()]
        );
    }

    #[test]
    fn forget_guards_first_records_last_and_deletes_what_the_links_name() {
        let links: BTreeSet<String> = ["order:o1", "set:fraud:device:shop/d1:users"]
            .into_iter()
            .map(String::from)
            .collect();
        let f = forget("shop", "shop/u1", 7, &links, &Reviews::default());
        assert_eq!(f.own.first(), Some(&erasure::guard("shop/u1")));
        assert_eq!(f.own.last(), Some(&erasure::record("shop/u1", 7)));
        assert!(f.own.contains(&Op::HDel {
            key: DECIDED_KEY.into(),
            field: "shop/o1".into()
        }));
        for key in [QUEUE_KEY.to_string(), review::tenant_queue_key("shop")] {
            assert!(f.own.contains(&Op::ZRem {
                key,
                member: "shop/o1".into()
            }));
        }
        assert!(f.own.contains(&Op::HDel {
            key: ITEMS_KEY.into(),
            field: "shop/o1".into()
        }));
        // Nothing under the bare order id: it may be another tenant's.
        assert!(!f.own.iter().any(|op| matches!(op,
            Op::HDel { field, .. } | Op::ZRem { member: field, .. } if field == "o1")));
        assert!(f.remote.contains(&Op::HDel {
            key: "fraud:device:shop/d1:users".into(),
            field: "shop/u1".into()
        }));
        assert!(f.remote.contains(&Op::Del {
            key: "fraud:ip:shop/u1/no-ip".into()
        }));
        assert_eq!(
            f.cleanup,
            vec![Op::Del {
                key: "fraud:links:shop/u1".into()
            }]
        );
    }

    #[test]
    fn forget_removes_bare_fields_only_where_the_read_found_the_tenant() {
        let links: BTreeSet<String> = ["order:o1".to_string()].into();
        let label = pb::LabelRecord {
            item: Some(pb::ReviewItem {
                decision: Some(pb::Decision {
                    tenant_id: "shop".into(),
                    order_id: "o1".into(),
                    user_id: "u1".into(),
                    ..Default::default()
                }),
                features: vec![1.0],
            }),
            label: pb::Label::Fraud as i32,
            ..Default::default()
        };
        let reviews = Reviews {
            labels: [("shop/o1".to_string(), label.clone())].into(),
            bare: [("shop/o1".to_string(), vec![ITEMS_KEY, LABELS_KEY])].into(),
        };
        let f = forget("shop", "shop/u1", 7, &links, &reviews);
        for (key, field) in [
            (ITEMS_KEY, "o1"),
            (LABELS_KEY, "o1"),
            (LABELS_KEY, "shop/o1"),
        ] {
            assert!(f.own.contains(&Op::HDel {
                key: key.into(),
                field: field.into()
            }));
        }
        assert!(f.own.contains(&Op::ZRem {
            key: QUEUE_KEY.into(),
            member: "o1".into()
        }));
        let (field, value) = review::anonymized(&label);
        assert!(f.own.contains(&Op::HSet {
            key: LABELS_KEY.into(),
            field,
            value
        }));
    }
}
