//! Features against hand-computed small sequences, including window boundaries.

use mesh_fraud::state::{entity_key, EntityKind};
use mesh_fraud::{
    features, features_from, reads_for, updates, AccountEvent, AccountEventKind, Event, LineItem,
    Location, MemoryFeatures, Order, PaymentEvent, ReadReply, ReadResults,
};

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z, a multiple of every bucket size

fn berlin() -> Location {
    Location {
        id: "addr-home".into(),
        region: "berlin".into(),
        lat: 52.52,
        lon: 13.40,
    }
}

fn order(user: &str, ts: i64, amount: f64) -> Order {
    Order {
        order_id: format!("o-{user}-{ts}"),
        user_id: user.into(),
        ts,
        amount,
        device_fp: "dev1".into(),
        ip_fp: "ip1".into(),
        instrument_id: "card1".into(),
        shipping: berlin(),
        billing_region: "berlin".into(),
        items: vec![LineItem {
            category: "books".into(),
            amount,
            quantity: 1,
        }],
        account_created_ts: None,
        promo_code: None,
    }
}

fn apply(mem: &mut MemoryFeatures, e: Event) {
    mem.apply(&updates(&e));
}

fn failed(ts: i64) -> Event {
    Event::Payment(PaymentEvent {
        order_id: "x".into(),
        user_id: "u1".into(),
        ts,
        amount: 5.0,
        instrument_id: "card1".into(),
        device_fp: "dev1".into(),
        ip_fp: "ip1".into(),
        success: false,
    })
}

#[test]
fn one_minute_window_is_six_ten_second_buckets() {
    let mut mem = MemoryFeatures::new();
    // now = T0 + 1005 lies in 10 s bucket (T0+1000); the window covers [T0+950, T0+1010)
    apply(&mut mem, Event::Order(order("u1", T0 + 949, 10.0)));
    apply(&mut mem, Event::Order(order("u1", T0 + 950, 10.0)));
    apply(&mut mem, Event::Order(order("u1", T0 + 1004, 10.0)));
    let now = T0 + 1005;
    let f = features(&order("u1", now, 10.0), &mem, now).unwrap();
    assert_eq!(
        f.get("user_orders_1m"),
        2.0,
        "T0+949 is outside, T0+950 inside"
    );
    assert_eq!(f.get("user_orders_1h"), 3.0);
    assert_eq!(f.get("device_orders_1m"), 2.0);
    assert_eq!(f.get("user_amount_24h"), 30.0);
}

#[test]
fn one_hour_and_one_day_windows_at_their_edges() {
    let mut mem = MemoryFeatures::new();
    // now = T0 + 7200: 5-minute buckets cover [T0+3900, T0+7500); hourly [T0-75600, T0+10800)
    apply(&mut mem, Event::Order(order("u1", T0 + 3899, 1.0)));
    apply(&mut mem, Event::Order(order("u1", T0 + 3900, 2.0)));
    apply(&mut mem, Event::Order(order("u1", T0 - 75_601, 4.0)));
    apply(&mut mem, Event::Order(order("u1", T0 - 75_600, 8.0)));
    let now = T0 + 7200;
    let f = features(&order("u1", now, 1.0), &mem, now).unwrap();
    assert_eq!(f.get("user_orders_1h"), 1.0);
    assert_eq!(f.get("user_orders_24h"), 3.0);
    assert_eq!(f.get("user_amount_24h"), 1.0 + 2.0 + 8.0);
    assert_eq!(
        f.get("user_order_count"),
        4.0,
        "lifetime count ignores windows"
    );
}

#[test]
fn amount_z_score_from_running_sums() {
    let mut mem = MemoryFeatures::new();
    for (i, a) in [10.0, 20.0, 30.0].iter().enumerate() {
        apply(&mut mem, Event::Order(order("u1", T0 + i as i64 * 100, *a)));
    }
    let now = T0 + 1000;
    let f = features(&order("u1", now, 50.0), &mem, now).unwrap();
    // mean 20, population variance 200/3
    let z = 30.0 / (200.0f64 / 3.0).sqrt();
    assert!(
        (f.get("amount_z") - z).abs() < 1e-9,
        "{}",
        f.get("amount_z")
    );
    // a single previous order gives no z-score
    let mut one = MemoryFeatures::new();
    apply(&mut one, Event::Order(order("u2", T0, 10.0)));
    let f = features(&order("u2", now, 50.0), &one, now).unwrap();
    assert_eq!(f.get("amount_z"), 0.0);
}

#[test]
fn first_use_distance_hour_and_mismatch() {
    let mut mem = MemoryFeatures::new();
    // two orders at 20:xx in Berlin
    apply(&mut mem, Event::Order(order("u1", T0 + 20 * 3600, 10.0)));
    apply(
        &mut mem,
        Event::Order(order("u1", T0 + 86_400 + 20 * 3600 + 60, 10.0)),
    );
    let now = T0 + 2 * 86_400 + 3 * 3600; // 03:00
    let mut o = order("u1", now, 10.0);
    let f = features(&o, &mem, now).unwrap();
    assert_eq!(f.get("new_device"), 0.0);
    assert_eq!(f.get("new_address"), 0.0);
    assert_eq!(f.get("distance_from_home_km"), 0.0);
    assert_eq!(f.get("billing_shipping_mismatch"), 0.0);
    // no order within 02:00-04:00: 1 - (0 + 1) / (2 + 8)
    assert!((f.get("hour_unusual") - 0.9).abs() < 1e-12);
    assert!((f.get("account_age_days") - (2.0 + (3.0 - 20.0) / 24.0)).abs() < 1e-9);

    o.device_fp = "dev2".into();
    o.shipping = Location {
        id: "addr-paris".into(),
        region: "paris".into(),
        lat: 48.86,
        lon: 2.35,
    };
    o.ts = T0 + 2 * 86_400 + 20 * 3600;
    let f = features(&o, &mem, o.ts).unwrap();
    assert_eq!(f.get("new_device"), 1.0);
    assert_eq!(f.get("new_address"), 1.0);
    assert_eq!(f.get("billing_shipping_mismatch"), 1.0);
    let d = f.get("distance_from_home_km");
    assert!(
        (d - 878.0).abs() < 5.0,
        "Berlin-Paris is about 878 km, got {d}"
    );
    // both previous orders at 20:xx: 1 - (2 + 1) / (2 + 8)
    assert!((f.get("hour_unusual") - 0.7).abs() < 1e-12);
}

#[test]
fn failed_payments_refunds_accounts_and_credentials() {
    let mut mem = MemoryFeatures::new();
    let now = T0 + 10 * 3600;
    apply(&mut mem, failed(now - 2 * 3600)); // outside 1h, inside 24h
    for k in 0..3 {
        apply(&mut mem, failed(now - 600 + k * 60));
    }
    for (i, user) in ["u1", "u2", "u3"].iter().enumerate() {
        apply(&mut mem, Event::Order(order(user, T0 + i as i64, 10.0)));
    }
    for _ in 0..3 {
        apply(&mut mem, Event::Order(order("u1", T0 + 100, 10.0)));
    }
    let acct = |kind, ts| {
        Event::Account(AccountEvent {
            user_id: "u1".into(),
            ts,
            kind,
            device_fp: None,
            order_id: None,
        })
    };
    apply(&mut mem, acct(AccountEventKind::Refund, T0 + 200));
    apply(&mut mem, acct(AccountEventKind::Cancel, T0 + 200));
    apply(&mut mem, acct(AccountEventKind::Cancel, T0 + 300));
    apply(
        &mut mem,
        acct(AccountEventKind::CredentialChange, now - 3600),
    );
    let mut o = order("u1", now, 10.0);
    o.items = vec![
        LineItem {
            category: "electronics".into(),
            amount: 30.0,
            quantity: 1,
        },
        LineItem {
            category: "books".into(),
            amount: 10.0,
            quantity: 2,
        },
    ];
    o.promo_code = Some("WELCOME10".into());
    let f = features(&o, &mem, now).unwrap();
    assert_eq!(f.get("instrument_failed_1h"), 3.0);
    assert_eq!(f.get("instrument_failed_24h"), 4.0);
    assert_eq!(f.get("device_failed_1h"), 3.0);
    assert_eq!(f.get("user_failed_24h"), 4.0);
    assert_eq!(f.get("user_order_count"), 4.0);
    assert_eq!(f.get("refund_rate"), 0.25);
    assert_eq!(f.get("cancel_rate"), 0.5);
    assert_eq!(f.get("device_accounts"), 3.0);
    assert_eq!(f.get("shiploc_accounts"), 3.0);
    assert_eq!(f.get("instrument_accounts"), 3.0);
    assert_eq!(f.get("credential_changes_24h"), 1.0);
    assert_eq!(f.get("high_risk_share"), 0.75);
    assert_eq!(f.get("basket_items"), 3.0);
    assert_eq!(f.get("has_promo"), 1.0);
}

#[test]
fn set_if_absent_keeps_first_creation_time() {
    let mut mem = MemoryFeatures::new();
    let created = |ts| {
        Event::Account(AccountEvent {
            user_id: "u1".into(),
            ts,
            kind: AccountEventKind::Created,
            device_fp: None,
            order_id: None,
        })
    };
    apply(&mut mem, created(T0));
    apply(&mut mem, created(T0 + 86_400)); // a redelivered or late event must not move it
    assert_eq!(
        mem.get(&entity_key(EntityKind::User, "u1"), "created"),
        Some(T0 as f64)
    );
    let now = T0 + 3 * 86_400;
    let f = features(&order("u1", now, 1.0), &mem, now).unwrap();
    assert_eq!(f.get("account_age_days"), 3.0);
}

#[test]
fn expiry_drops_old_buckets_without_changing_features() {
    let mut kept = MemoryFeatures::new();
    let mut pruned = MemoryFeatures::new();
    for k in 0..200 {
        let e = Event::Order(order("u1", T0 + k * 1800, 5.0));
        kept.apply(&updates(&e));
        pruned.apply(&updates(&e));
        pruned.expire(T0 + k * 1800);
    }
    assert!(pruned.field_count() < kept.field_count());
    let now = T0 + 200 * 1800;
    pruned.expire(now);
    let o = order("u1", now, 5.0);
    assert_eq!(
        features(&o, &kept, now).unwrap(),
        features(&o, &pruned, now).unwrap()
    );
}

#[test]
fn batched_reads_match_and_bad_replies_are_rejected() {
    let mut mem = MemoryFeatures::new();
    apply(&mut mem, Event::Order(order("u1", T0, 5.0)));
    let o = order("u1", T0 + 60, 7.0);
    let reads = reads_for(&o, T0 + 60);
    assert_eq!(
        reads.len(),
        8,
        "5 entity hashes + 3 distinct-account sets in one batch"
    );
    let res = mesh_fraud::FeatureSource::read(&mem, &reads).unwrap();
    assert_eq!(
        features_from(&o, &res, T0 + 60).unwrap(),
        features(&o, &mem, T0 + 60).unwrap()
    );
    let mut short = res.clone();
    short.0[0] = ReadReply::Fields(vec![None; 3]);
    assert!(features_from(&o, &short, T0 + 60).is_err());
    assert!(features_from(&o, &ReadResults::default(), T0 + 60).is_err());
}
