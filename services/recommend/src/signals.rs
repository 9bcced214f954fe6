//! What an event does to the live signals, as state ops. Pure: the same
//! envelope and the same history always give the same ops, which is what
//! makes replay and redelivery safe.
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_recommend::feedback::{cell_field, Attribution};
use mesh_recommend::live::{cooccurrence_updates, popularity_updates, LiveConfig};
use mesh_recommend::{EventKind, Interaction};
use mesh_store::{erasure, Op};

use crate::keys::{self, HistEntry, Home};

/// One user-item interaction from an event, with what the catalog learns.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub entry: HistEntry,
    /// Units (carts and orders), 1 for views.
    pub quantity: i64,
}

/// The interactions of one event, in order (one per order line), and the
/// cart removals.
pub fn signals(e: &Envelope) -> (Vec<Signal>, Vec<(String, i64)>) {
    let ts = e.occurred_at_ms as f64 / 1000.0;
    let entry = |sku: &str, kind, category: &str, price: f64| HistEntry {
        item: sku.to_string(),
        kind,
        ts,
        category: (!category.is_empty()).then(|| category.to_string()),
        price: (price.is_finite() && price > 0.0).then_some(price),
    };
    let mut out = Vec::new();
    let mut removed = Vec::new();
    match &e.body {
        Some(Body::ProductView(v)) if !v.sku.is_empty() => out.push(Signal {
            entry: entry(&v.sku, EventKind::View, &v.category, v.price),
            quantity: 1,
        }),
        Some(Body::AddToCart(c)) if !c.sku.is_empty() => out.push(Signal {
            entry: entry(&c.sku, EventKind::Cart, &c.category, c.unit_price),
            quantity: i64::from(c.quantity.max(1)),
        }),
        Some(Body::OrderPlaced(o)) => {
            for l in o.items.iter().filter(|l| !l.sku.is_empty()) {
                out.push(Signal {
                    entry: entry(&l.sku, EventKind::Order, &l.category, l.unit_price),
                    quantity: i64::from(l.quantity.max(1)),
                });
            }
        }
        Some(Body::RemoveFromCart(r)) if !r.sku.is_empty() => {
            removed.push((r.sku.clone(), i64::from(r.quantity.max(1))));
        }
        _ => {}
    }
    (out, removed)
}

/// Whether an event changes anything here (others skip the history read).
pub fn is_relevant(e: &Envelope) -> bool {
    matches!(
        e.body,
        Some(
            Body::ProductView(_)
                | Body::AddToCart(_)
                | Body::OrderPlaced(_)
                | Body::RemoveFromCart(_)
                | Body::ReviewSubmitted(_)
        )
    )
}

/// Item hash fields the event stream keeps (beside `seen_ms`, `category`
/// and `price`): units ordered, and the sum and count of review stars.
pub const SOLD: &str = "sold";
pub const RATING_SUM: &str = "rating_sum";
pub const RATING_N: &str = "rating_n";

/// A review's stars, counted in the item's hash (its home slot): the
/// catalog's rating follows the reviews as they arrive.
fn review_ops(e: &Envelope) -> Vec<(Home, Op)> {
    let Some(Body::ReviewSubmitted(r)) = &e.body else {
        return Vec::new();
    };
    if r.sku.is_empty() || !(1..=5).contains(&r.rating) {
        return Vec::new();
    }
    let key = keys::item(&e.tenant_id, &r.sku);
    let home = Home::item(&e.tenant_id, &r.sku);
    vec![
        (
            home.clone(),
            Op::HIncr {
                key: key.clone(),
                field: RATING_SUM.into(),
                delta: i64::from(r.rating),
            },
        ),
        (
            home,
            Op::HIncr {
                key,
                field: RATING_N.into(),
                delta: 1,
            },
        ),
    ]
}

/// The live-layer interaction of a history entry.
pub fn interaction(user: &str, h: &HistEntry) -> Interaction {
    Interaction {
        user: user.to_string(),
        item: h.item.clone(),
        kind: h.kind,
        ts: h.ts,
        category: h.category.clone(),
        device: None,
        segment: None,
    }
}

/// The ops of one event, given the user's `history` (oldest first). The
/// history is extended in place with the event's interactions (bounded to
/// `cfg.history_len`), so the next event of the same batch sees them.
pub fn ops(e: &Envelope, history: &mut Vec<HistEntry>, cfg: &LiveConfig) -> Vec<Op> {
    routed_ops(e, history, cfg)
        .into_iter()
        .map(|(_, op)| op)
        .collect()
}

/// [`ops`], each with the slot that owns its key ([`Home`]).
pub fn routed_ops(e: &Envelope, history: &mut Vec<HistEntry>, cfg: &LiveConfig) -> Vec<(Home, Op)> {
    let (tenant, user) = (e.tenant_id.as_str(), e.user_id.as_str());
    let (sigs, removed) = signals(e);
    let mut ops = Vec::new();
    let ctx = e.context.as_ref();
    let device = ctx
        .map(|c| c.device_type.as_str())
        .filter(|s| !s.is_empty());
    let segment = ctx.map(|c| c.channel.as_str()).filter(|s| !s.is_empty());
    let cart = keys::cart(tenant, user);
    ops.extend(review_ops(e));
    for (item, qty) in removed {
        ops.push((
            Home::User,
            Op::HIncr {
                key: cart.clone(),
                field: item,
                delta: -qty,
            },
        ));
    }
    if sigs.is_empty() {
        return ops;
    }
    ops.push((
        Home::User,
        Op::ZSet {
            key: keys::USERS.into(),
            member: format!("{tenant}/{user}"),
            score: e.occurred_at_ms as f64,
        },
    ));
    for s in sigs {
        let past: Vec<Interaction> = history.iter().map(|h| interaction(user, h)).collect();
        let mut now = interaction(user, &s.entry);
        for (a, b, epoch, delta) in cooccurrence_updates(&past, &now, cfg) {
            let home = Home::item(tenant, &a);
            ops.push((
                home,
                Op::ZIncr {
                    key: keys::cooc(tenant, &a, epoch),
                    member: b,
                    delta,
                },
            ));
        }
        now.device = device.map(str::to_string);
        now.segment = segment.map(str::to_string);
        for up in popularity_updates(&now, cfg) {
            ops.push((
                Home::Key,
                Op::ZIncr {
                    key: keys::popularity(tenant, &up.scope, up.horizon, up.epoch),
                    member: up.item,
                    delta: up.delta,
                },
            ));
        }
        let home = Home::item(tenant, &s.entry.item);
        ops.extend(
            catalog_ops(tenant, &s.entry, e.occurred_at_ms)
                .into_iter()
                .map(|op| (home.clone(), op)),
        );
        let item = s.entry.item.clone();
        match s.entry.kind {
            EventKind::View => {}
            EventKind::Cart => ops.push((
                Home::User,
                Op::HIncr {
                    key: cart.clone(),
                    field: item,
                    delta: s.quantity,
                },
            )),
            EventKind::Order => {
                ops.push((
                    home,
                    Op::HIncr {
                        key: keys::item(tenant, &item),
                        field: SOLD.into(),
                        delta: s.quantity,
                    },
                ));
                ops.push((
                    Home::User,
                    Op::HSet {
                        key: keys::bought(tenant, user),
                        field: item.clone(),
                        value: e.occurred_at_ms.to_string(),
                    },
                ));
                // Ordered units leave the cart.
                ops.push((
                    Home::User,
                    Op::HSet {
                        key: cart.clone(),
                        field: item,
                        value: "0".into(),
                    },
                ));
            }
        }
        ops.push((
            Home::User,
            Op::LPushCapped {
                key: keys::history(tenant, user),
                value: s.entry.encode(),
                max_len: cfg.history_len.max(1) as u32,
            },
        ));
        history.push(s.entry);
        if history.len() > cfg.history_len.max(1) {
            let extra = history.len() - cfg.history_len.max(1);
            history.drain(..extra);
        }
    }
    ops
}

/// The attribution a click event carries: a `product_view` whose
/// `recommendation_id` parses as an [`Attribution`]. Anything else is not a
/// click on a recommendation (and is not an error: it is still a view).
pub fn attribution(e: &Envelope) -> Option<Attribution> {
    match &e.body {
        Some(Body::ProductView(v)) if !v.sku.is_empty() && !v.recommendation_id.is_empty() => {
            Attribution::parse(&v.recommendation_id)
        }
        _ => None,
    }
}

/// The ops that count a click event once: one more click of the
/// attribution's (source, slot) in the tenant's click hash, and the
/// attribution remembered in the user's `clicked` list. `clicked` (newest
/// first, as stored) is updated in place, so a second event of the same
/// batch with the same attribution (a re-sent event, or another click on
/// the same impression) is not counted again. `None` when `e` is no click
/// or was counted already.
pub fn click_ops(
    e: &Envelope,
    clicked: &mut Vec<String>,
) -> Option<(Attribution, Vec<(Home, Op)>)> {
    let a = attribution(e)?;
    let token = a.encode();
    if clicked.contains(&token) {
        return None;
    }
    clicked.insert(0, token.clone());
    clicked.truncate(keys::CLICKED_LEN);
    let (tenant, user) = (e.tenant_id.as_str(), e.user_id.as_str());
    let ops = vec![
        (
            Home::Key,
            Op::HIncr {
                key: keys::clicks(tenant),
                field: cell_field(a.source, a.slot),
                delta: 1,
            },
        ),
        (
            Home::User,
            Op::LPushCapped {
                key: keys::clicked(tenant, user),
                value: token,
                max_len: keys::CLICKED_LEN as u32,
            },
        ),
    ];
    Some((a, ops))
}

/// The ops of a `user_erased` event, all in the user's slot: the guard
/// first (a second erasure changes nothing), every key of the user deleted
/// ([`keys::user_keys`]), the user out of [`keys::USERS`], and the erasure
/// recorded. What the user added to co-occurrence, popularity, the catalog
/// and the click counters stays: those are counts per item or per
/// (source, slot), with no user in them.
pub fn erasure_ops(e: &Envelope) -> Vec<Op> {
    let (tenant, user) = (e.tenant_id.as_str(), e.user_id.as_str());
    let member = erasure::member(tenant, user);
    let mut ops = vec![erasure::guard(&member)];
    ops.extend(
        keys::user_keys(tenant, user)
            .into_iter()
            .map(|key| Op::Del { key }),
    );
    ops.push(Op::ZRem {
        key: keys::USERS.into(),
        member: member.clone(),
    });
    ops.push(erasure::record(&member, e.occurred_at_ms));
    ops
}

fn catalog_ops(tenant: &str, h: &HistEntry, at_ms: i64) -> Vec<Op> {
    let key = keys::item(tenant, &h.item);
    let mut ops = vec![Op::HMax {
        key: key.clone(),
        field: "seen_ms".into(),
        value: at_ms,
    }];
    if let Some(c) = &h.category {
        ops.push(Op::HSet {
            key: key.clone(),
            field: "category".into(),
            value: c.clone(),
        });
    }
    if let Some(p) = h.price {
        ops.push(Op::HSet {
            key,
            field: "price".into(),
            value: p.to_string(),
        });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::events::v1::{AddToCart, LineItem, OrderPlaced, ProductView};
    use mesh_recommend::live::{Horizon, Scope};
    use mesh_recommend::rank::Source;

    fn env(body: Body, ms: i64) -> Envelope {
        Envelope {
            event_id: format!("e{ms}"),
            tenant_id: "t".into(),
            user_id: "u".into(),
            occurred_at_ms: ms,
            source: "test".into(),
            context: None,
            body: Some(body),
        }
    }

    fn view(sku: &str, ms: i64) -> Envelope {
        env(
            Body::ProductView(ProductView {
                sku: sku.into(),
                category: "c".into(),
                price: 10.0,
                ..Default::default()
            }),
            ms,
        )
    }

    fn zincr(ops: &[Op], key: &str, member: &str) -> Option<f64> {
        ops.iter().find_map(|o| match o {
            Op::ZIncr {
                key: k,
                member: m,
                delta,
            } if k == key && m == member => Some(*delta),
            _ => None,
        })
    }

    #[test]
    fn a_second_view_pairs_with_the_first_in_both_directions() {
        let cfg = LiveConfig::default();
        let mut h = Vec::new();
        let e = cfg.cooc_decay().epoch(1_800_000_000.0);
        let first = ops(&view("a", 1_800_000_000_000), &mut h, &cfg);
        assert!(zincr(&first, &keys::cooc("t", "a", e), "b").is_none());
        let second = ops(&view("b", 1_800_000_001_000), &mut h, &cfg);
        let ab = zincr(&second, &keys::cooc("t", "a", e), "b").unwrap();
        assert_eq!(zincr(&second, &keys::cooc("t", "b", e), "a"), Some(ab));
        assert_eq!(h.len(), 2);
    }

    /// 2027-01-15, past the day (2026-10-21) a single reference time at the default
    /// `t_ref` overflowed the 1-day trending half-life: every popularity increment is
    /// finite and positive, and trending writes the key of its epoch.
    #[test]
    fn popularity_increments_stay_finite_years_after_t_ref() {
        let cfg = LiveConfig::default();
        let ts = 1_800_000_000.0;
        let o = ops(&view("a", 1_800_000_000_000), &mut Vec::new(), &cfg);
        let short = keys::popularity(
            "t",
            &Scope::Global,
            Horizon::Short,
            cfg.trending_decay().epoch(ts),
        );
        assert!(short.ends_with(":e2"), "{short}");
        let mut n = 0;
        for op in &o {
            if let Op::ZIncr { key, delta, .. } = op {
                if key.starts_with("pop:") {
                    assert!(delta.is_finite() && *delta > 0.0, "{key}: {delta}");
                    n += 1;
                }
            }
        }
        assert!(n >= 2);
        let d = zincr(&o, &short, "a").expect("a trending increment in its epoch's key");
        assert!((cfg.trending_decay().read(d, ts) - cfg.weights.view).abs() < 1e-9);
    }

    #[test]
    fn order_lines_pair_with_each_other_and_mark_purchases() {
        let cfg = LiveConfig::default();
        let mut h = Vec::new();
        let line = |sku: &str| LineItem {
            sku: sku.into(),
            quantity: 1,
            unit_price: 5.0,
            ..Default::default()
        };
        let e = env(
            Body::OrderPlaced(OrderPlaced {
                order_id: "o".into(),
                items: vec![line("x"), line("y")],
                ..Default::default()
            }),
            1_800_000_000_000,
        );
        let o = ops(&e, &mut h, &cfg);
        let epoch = cfg.cooc_decay().epoch(1_800_000_000.0);
        assert!(zincr(&o, &keys::cooc("t", "x", epoch), "y").is_some());
        let bought: Vec<&str> = o
            .iter()
            .filter_map(|op| match op {
                Op::HSet { key, field, .. } if *key == keys::bought("t", "u") => {
                    Some(field.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(bought, vec!["x", "y"]);
    }

    fn hincr(ops: &[Op], key: &str, field: &str) -> Option<i64> {
        ops.iter().find_map(|o| match o {
            Op::HIncr {
                key: k,
                field: f,
                delta,
            } if k == key && f == field => Some(*delta),
            _ => None,
        })
    }

    #[test]
    fn orders_count_units_sold_and_reviews_count_stars() {
        let cfg = LiveConfig::default();
        let mut h = Vec::new();
        let e = env(
            Body::OrderPlaced(OrderPlaced {
                order_id: "o".into(),
                items: vec![LineItem {
                    sku: "x".into(),
                    quantity: 3,
                    unit_price: 5.0,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            1_800_000_000_000,
        );
        let o = ops(&e, &mut h, &cfg);
        assert_eq!(hincr(&o, &keys::item("t", "x"), SOLD), Some(3));
        let review = |rating: u32| {
            env(
                Body::ReviewSubmitted(mesh_proto::events::v1::ReviewSubmitted {
                    sku: "x".into(),
                    rating,
                    ..Default::default()
                }),
                1_800_000_001_000,
            )
        };
        assert!(is_relevant(&review(4)));
        let r = ops(&review(4), &mut h, &cfg);
        assert_eq!(hincr(&r, &keys::item("t", "x"), RATING_SUM), Some(4));
        assert_eq!(hincr(&r, &keys::item("t", "x"), RATING_N), Some(1));
        // Out of range stars (ingest refuses them) change nothing.
        assert!(ops(&review(9), &mut h, &cfg).is_empty());
        // A review is not an interaction: the history is unchanged.
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn every_op_names_the_slot_that_owns_its_key() {
        let cfg = LiveConfig::default();
        let mut h = Vec::new();
        routed_ops(&view("a", 1_800_000_000_000), &mut h, &cfg);
        let ops = routed_ops(&view("b", 1_800_000_001_000), &mut h, &cfg);
        for (home, op) in &ops {
            let key = op.key();
            let want = if key.starts_with("co:t:a") || key.starts_with("item:t/a") {
                Home::item("t", "a")
            } else if key.starts_with("co:t:b") || key.starts_with("item:t/b") {
                Home::item("t", "b")
            } else if key.starts_with("pop:") {
                Home::Key
            } else {
                assert!(
                    key.starts_with("hist:") || key == keys::USERS,
                    "unexpected key {key}"
                );
                Home::User
            };
            assert_eq!(home, &want, "{key}");
        }
        assert!(ops.iter().any(|(h, _)| *h == Home::item("t", "a")));
        assert_eq!(
            Home::item("t", "a").partition(&ops[0].1, 3, 8),
            keys::item_partition("t", "a", 8)
        );
    }

    #[test]
    fn a_click_counts_once_per_impression() {
        let click = |sku: &str, rec: &str, id: &str| {
            let mut e = view(sku, 1_800_000_000_000);
            e.event_id = id.into();
            if let Some(Body::ProductView(v)) = &mut e.body {
                v.recommendation_id = rec.into();
            }
            e
        };
        let mut clicked = Vec::new();
        let (a, ops) = click_ops(&click("a", "r1:cooccurrence:2", "e1"), &mut clicked).unwrap();
        assert_eq!((a.source, a.slot), (Source::Cooccurrence, 2));
        assert!(ops.contains(&(
            Home::Key,
            Op::HIncr {
                key: keys::clicks("t"),
                field: "cooccurrence:2".into(),
                delta: 1
            }
        )));
        // The same event again, and another click on the same impression.
        assert!(click_ops(&click("a", "r1:cooccurrence:2", "e1"), &mut clicked).is_none());
        assert!(click_ops(&click("a", "r1:cooccurrence:2", "e9"), &mut clicked).is_none());
        // Another impression of the same answer counts.
        assert!(click_ops(&click("b", "r1:popularity:0", "e2"), &mut clicked).is_some());
        // Plain views and junk are no clicks.
        assert!(click_ops(&click("c", "", "e3"), &mut clicked).is_none());
        assert!(click_ops(&click("c", "garbage", "e4"), &mut clicked).is_none());
        assert_eq!(clicked, vec!["r1:popularity:0", "r1:cooccurrence:2"]);
    }

    #[test]
    fn history_is_bounded_and_carts_count_units() {
        let cfg = LiveConfig {
            history_len: 3,
            ..LiveConfig::default()
        };
        let mut h = Vec::new();
        for k in 0..5 {
            ops(&view(&format!("i{k}"), 1_800_000_000_000 + k), &mut h, &cfg);
        }
        assert_eq!(
            h.iter().map(|e| e.item.as_str()).collect::<Vec<_>>(),
            vec!["i2", "i3", "i4"]
        );
        let cart = env(
            Body::AddToCart(AddToCart {
                sku: "z".into(),
                quantity: 2,
                ..Default::default()
            }),
            1_800_000_010_000,
        );
        let o = ops(&cart, &mut h, &cfg);
        assert!(o.contains(&Op::HIncr {
            key: keys::cart("t", "u"),
            field: "z".into(),
            delta: 2
        }));
    }
}
