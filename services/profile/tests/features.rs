//! Features from a small event sequence, through the ops, the store and the
//! read side, against numbers worked out by hand (window boundaries, decay,
//! rates, sessions, preferences).
use std::sync::Arc;

use mesh_profile::engine::{ManualClock, Profiles};
use mesh_profile::features::{self, DAY_MS};
use mesh_profile::{analytics, fold};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{self as ev, Context, Envelope};
use mesh_store::{MemoryStore, PartitionBatch, StateStore};

const D: i64 = DAY_MS;
const NOW: i64 = 1000 * D + 12 * 3_600_000;
const PARTITIONS: i32 = 4;

fn ctx(device: &str, channel: &str, session: &str) -> Option<Context> {
    Some(Context {
        device_type: device.into(),
        channel: channel.into(),
        session_id: session.into(),
        ..Default::default()
    })
}

fn ev(n: usize, at: i64, context: Option<Context>, body: Body) -> Envelope {
    Envelope {
        event_id: format!("e{n}"),
        tenant_id: "shop".into(),
        user_id: "u1".into(),
        occurred_at_ms: at,
        source: "test".into(),
        context,
        body: Some(body),
    }
}

fn line(sku: &str, cat: &str, brand: &str, q: u32, price: f64, disc: f64) -> ev::LineItem {
    ev::LineItem {
        sku: sku.into(),
        category: cat.into(),
        brand: brand.into(),
        quantity: q,
        unit_price: price,
        unit_discount: disc,
    }
}

fn order(total: f64, items: Vec<ev::LineItem>) -> Body {
    Body::OrderPlaced(ev::OrderPlaced {
        order_id: format!("o{total}"),
        total,
        items,
        ..Default::default()
    })
}

fn events() -> Vec<Envelope> {
    let t = 1000 * D;
    let mut v = vec![
        ev(
            1,
            t,
            ctx("web", "email", "s1"),
            Body::SessionStarted(Default::default()),
        ),
        ev(
            2,
            t + 60_000,
            ctx("web", "ads", "s1"),
            Body::ProductView(ev::ProductView {
                sku: "k1".into(),
                category: "shoes".into(),
                brand: "acme".into(),
                price: 50.0,
                ..Default::default()
            }),
        ),
        ev(
            3,
            t + 120_000,
            ctx("ios", "email", "s1"),
            Body::AddToCart(ev::AddToCart {
                sku: "k1".into(),
                category: "shoes".into(),
                quantity: 2,
                ..Default::default()
            }),
        ),
        ev(
            4,
            t + 180_000,
            ctx("", "", "s1"),
            Body::CheckoutStarted(Default::default()),
        ),
        ev(
            5,
            t + 240_000,
            ctx("web", "", "s1"),
            order(
                125.0,
                vec![
                    line("k1", "shoes", "acme", 2, 50.0, 10.0),
                    line("k2", "socks", "nike", 1, 20.0, 0.0),
                ],
            ),
        ),
        ev(
            6,
            990 * D,
            None,
            order(40.0, vec![line("k3", "hats", "acme", 1, 40.0, 5.0)]),
        ),
        // Window edges: day 993 is outside 7 days, 911 inside 90, 910 outside.
        ev(7, 993 * D, None, order(10.0, vec![])),
        ev(8, 940 * D, None, order(35.0, vec![])),
        ev(9, 911 * D, None, order(5.0, vec![])),
        ev(10, 910 * D + D - 1, None, order(1000.0, vec![])),
        ev(
            11,
            995 * D,
            None,
            Body::RefundIssued(ev::RefundIssued {
                order_id: "o40".into(),
                amount: 20.0,
                ..Default::default()
            }),
        ),
        ev(
            12,
            995 * D,
            None,
            Body::OrderCancelled(ev::OrderCancelled {
                order_id: "o10".into(),
                ..Default::default()
            }),
        ),
    ];
    for (i, r) in [5u32, 2].into_iter().enumerate() {
        v.push(ev(
            13 + i,
            996 * D,
            None,
            Body::ReviewSubmitted(ev::ReviewSubmitted {
                sku: "k1".into(),
                rating: r,
                ..Default::default()
            }),
        ));
    }
    for (i, dt) in [0, 600_000].into_iter().enumerate() {
        v.push(ev(
            20 + i,
            999 * D + dt,
            ctx("android", "ads", "s2"),
            Body::PageView(ev::PageView {
                path: "/".into(),
                dwell_seconds: 3.0,
            }),
        ));
    }
    v
}

async fn load(events: &[Envelope]) -> (StateStore, Profiles) {
    let store = StateStore::Memory(MemoryStore::new("t"));
    let p = Profiles {
        clock: Arc::new(ManualClock::new(NOW)),
        ..Profiles::read_only(store.clone(), PARTITIONS)
    };
    for (i, e) in events.iter().enumerate() {
        let slot = p.slot_of(&features::member(&e.tenant_id, &e.user_id));
        let mut ops = fold::ops(e);
        ops.extend(features::ops(e, &p.features));
        let mut b = PartitionBatch::new("in", slot.partition);
        b.push(i as i64, ops);
        store.apply("profile", &b).await.unwrap();
    }
    (store, p)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[tokio::test]
async fn features_match_hand_computed_values() {
    let (_, p) = load(&events()).await;
    let snap = p.snapshot("shop/u1", NOW).await.unwrap().unwrap();
    let f = &snap.features;
    // Six orders: 125 + 40 + 10 + 35 + 5 + 1000.
    assert_eq!((f.frequency, f.monetary), (6, 1215.0));
    assert!(close(f.aov, 202.5));
    // Latest order at day 1000 + 4 min; now is day 1000 + 12 h.
    assert!(close(
        f.recency_days.unwrap(),
        (12.0 * 3_600_000.0 - 240_000.0) / D as f64
    ));
    // 7 days = days 994..=1000; 30 = 971..=1000; 90 = 911..=1000.
    assert_eq!((f.orders_7d, f.spend_7d), (1, 125.0));
    assert_eq!((f.orders_30d, f.spend_30d), (3, 175.0));
    assert_eq!((f.orders_90d, f.spend_90d), (5, 215.0));
    // Discounted lines: 2 x 50 (of 120) and 1 x 40 (of 40).
    assert!(close(f.price_sensitivity, 140.0 / 160.0));
    // web 3 events, android 2, ios 1; ads 3 (1 + 2), email 2.
    assert_eq!(f.preferred_device, "web");
    assert_eq!(f.preferred_channel, "ads");
    // s1: 0 .. 240 s; s2: 0 .. 600 s.
    assert_eq!(f.sessions, 2);
    assert!(close(f.mean_session_seconds, 420.0));
    assert_eq!(f.funnel_step, 4);
    assert!(close(f.refund_rate, 1.0 / 6.0));
    assert!(close(f.cancellation_rate, 1.0 / 6.0));
    assert_eq!(f.reviews, 2);
    assert!(close(f.mean_rating, 3.5));

    // Affinity, τ = 30 days: view 1, cart 3, order line 5, decayed to now.
    let tau = 30.0 * D as f64;
    let w = |ago_ms: i64| (-(ago_ms as f64) / tau).exp();
    let t = 1000 * D;
    let shoes = w(NOW - t - 60_000) + 3.0 * w(NOW - t - 120_000) + 5.0 * w(NOW - t - 240_000);
    let socks = 5.0 * w(NOW - t - 240_000);
    let hats = 5.0 * w(NOW - 990 * D);
    let cats: Vec<_> = f.categories.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(cats, vec!["shoes", "socks", "hats"]);
    assert!(close(f.categories[0].1, shoes), "{:?}", f.categories);
    assert!(close(f.categories[1].1, socks));
    assert!(close(f.categories[2].1, hats));
    // acme: view 1 + order line 5 today + order line 5 ten days ago; nike 5.
    let acme = w(NOW - t - 60_000) + 5.0 * w(NOW - t - 240_000) + 5.0 * hats / 5.0;
    assert_eq!(f.brands[0].0, "acme");
    assert!(close(f.brands[0].1, acme));

    // Activity, τ = 7 days: every event decayed by its age.
    let act: f64 = events()
        .iter()
        .map(|e| (-((NOW - e.occurred_at_ms) as f64) / (7.0 * D as f64)).exp())
        .sum();
    assert!(
        close(f.activity_score, act),
        "{} vs {act}",
        f.activity_score
    );

    // The backbone counters are unchanged by the feature ops.
    assert_eq!(snap.state.counters.events, events().len() as u64);
    assert_eq!(snap.state.counters.by_type["order_placed"], 6);
}

#[test]
fn decay_is_continuous_across_eras_and_forgets_old_eras() {
    let tau = 1000.0;
    let len = (features::ERA_TAUS * tau) as i64; // 64 s
    let (e0, a) = features::decayed_increment(2.0, len - 1, tau);
    let (e1, b) = features::decayed_increment(2.0, len + 1, tau);
    assert_eq!((e0, e1), (0, 1));
    let now = len + 1001;
    let v = features::decayed_value(&[(e0, a), (e1, b)], now, tau);
    // 2·e^-(1002/1000) + 2·e^-1
    assert!(
        close(v, 2.0 * (-1.002f64).exp() + 2.0 * (-1.0f64).exp()),
        "{v}"
    );
    // Two eras later both are gone (older than 64 τ).
    assert_eq!(
        features::decayed_value(&[(e0, a), (e1, b)], 3 * len + 5, tau),
        0.0
    );
}

#[tokio::test]
async fn analytics_count_funnel_activity_and_cohorts() {
    let (_, p) = load(&events()).await;
    let states = p.all_states().await.unwrap();
    assert_eq!(states.len(), 1);
    let s = &states[0].1;
    // Day 1000 reached the order step; day 999 only views.
    let f = analytics::funnel(states.iter().map(|(_, s)| (s, String::new())), 999, 1000);
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].reached, [1, 0, 0, 0]);
    assert_eq!(f[1].reached, [1, 1, 1, 1]);
    assert_eq!(f[1].conversion(), [1.0, 1.0, 1.0]);
    let a = analytics::active(std::iter::once(s), NOW);
    assert_eq!((a.dau, a.wau, a.mau), (1, 1, 1));
    let a = analytics::active(std::iter::once(s), NOW + 8 * D);
    assert_eq!((a.dau, a.wau, a.mau), (0, 0, 1));
    // Day 910 = 1972-06-29: first order month 1972-06; orders in 06
    // (910, 911), 07 (940 = 07-29), 09 (990, 993, 1000 = 09-27), none in 08.
    let c = analytics::cohorts(std::iter::once(s), NOW);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].month, "1972-06");
    assert_eq!(c[0].retention, vec![1.0, 1.0, 0.0, 1.0]);
}
