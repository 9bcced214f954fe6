//! Risk detectors over the shared counters.

use mesh_fraud::risk::{detect_order, detect_payment, DetectorConfig};
use mesh_fraud::{
    features, updates, AccountEvent, AccountEventKind, Event, LineItem, Location, MemoryFeatures,
    Order, PaymentEvent, RiskKind,
};

const T0: i64 = 1_767_225_600;

fn order(user: &str, device: &str, ts: i64, amount: f64) -> Order {
    Order {
        order_id: format!("o-{user}-{ts}"),
        user_id: user.into(),
        ts,
        amount,
        device_fp: device.into(),
        ip_fp: "ip".into(),
        instrument_id: format!("card-{user}"),
        shipping: Location {
            id: "flat-1".into(),
            region: "rome".into(),
            lat: 41.9,
            lon: 12.5,
        },
        billing_region: "rome".into(),
        items: vec![LineItem {
            category: "toys".into(),
            amount,
            quantity: 1,
        }],
        account_created_ts: None,
        promo_code: None,
    }
}

#[test]
fn account_takeover_needs_new_device_credential_change_and_big_amount() {
    let mut mem = MemoryFeatures::new();
    for k in 0..5 {
        mem.apply(&updates(&Event::Order(order(
            "u1",
            "phone",
            T0 + k * 86_400,
            40.0 + k as f64,
        ))));
    }
    let now = T0 + 6 * 86_400;
    let cfg = DetectorConfig::default();
    let big = order("u1", "laptop-x", now, 900.0);
    let f = features(&big, &mem, now).unwrap();
    assert!(
        detect_order(&big, &f, &cfg).is_empty(),
        "no credential change yet"
    );

    mem.apply(&updates(&Event::Account(AccountEvent {
        user_id: "u1".into(),
        ts: now - 600,
        kind: AccountEventKind::CredentialChange,
        device_fp: Some("laptop-x".into()),
        order_id: None,
    })));
    let f = features(&big, &mem, now).unwrap();
    let alerts = detect_order(&big, &f, &cfg);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, RiskKind::AccountTakeover);
    assert_eq!(alerts[0].entity, "fraud:user:u1");
    // same order from the usual device: no alert
    let usual = order("u1", "phone", now, 900.0);
    let f = features(&usual, &mem, now).unwrap();
    assert!(detect_order(&usual, &f, &cfg).is_empty());
}

#[test]
fn promotion_abuse_counts_accounts_per_device() {
    let mut mem = MemoryFeatures::new();
    let cfg = DetectorConfig::default();
    let mut raised = Vec::new();
    for k in 0..5 {
        let mut o = order(&format!("new{k}"), "shared-dev", T0 + k * 3600, 25.0);
        o.shipping.id = format!("flat-{k}"); // different addresses, same device
        o.promo_code = Some("WELCOME10".into());
        let f = features(&o, &mem, o.ts).unwrap();
        raised.push(
            detect_order(&o, &f, &cfg)
                .iter()
                .any(|a| a.kind == RiskKind::PromotionAbuse),
        );
        mem.apply(&updates(&Event::Order(o)));
    }
    // the 4th account on the device is the first to trip the default threshold of 4
    assert_eq!(raised, [false, false, false, true, true]);
}

#[test]
fn card_testing_from_failed_payments_on_one_instrument() {
    let mut mem = MemoryFeatures::new();
    let cfg = DetectorConfig::default();
    let pay = |ts| PaymentEvent {
        order_id: "o".into(),
        user_id: "x".into(),
        ts,
        amount: 2.0,
        instrument_id: "stolen".into(),
        device_fp: "emu".into(),
        ip_fp: "dc".into(),
        success: false,
    };
    let mut counts = Vec::new();
    for k in 0..4 {
        let p = pay(T0 + k * 60);
        mem.apply(&updates(&Event::Payment(p.clone())));
        counts.push(detect_payment(&p, &mem, p.ts, &cfg).unwrap().len());
    }
    // instrument alert from the 3rd failure, device alert too from the 4th
    assert_eq!(counts, [0, 0, 1, 2]);
    // two hours later the window has moved on
    let later = pay(T0 + 2 * 3600);
    assert!(detect_payment(&later, &mem, later.ts, &cfg)
        .unwrap()
        .is_empty());
}
