//! The state increments an event causes.
//!
//! Updates are pure functions of the event: bucket increments keyed by event time, running
//! sums for the user profile, set-if-absent first-seen markers. Applying them once per event
//! (the service guards this with the event id) yields exactly-once state; nothing here reads
//! state, so the same event always produces the same ops.

use crate::event::{AccountEvent, AccountEventKind, Event, Order, PaymentEvent};
use crate::state::{entity_key, users_key, EntityKind, StateOp, Window, WINDOWS};

/// Which bucket metrics are kept for an entity kind in a window: exactly those the features
/// and detectors read. Shared by the writer ([`updates`]) and the reader
/// ([`crate::features::reads_for`]), so they always agree.
pub fn metrics_for(kind: EntityKind, window: &Window) -> &'static [&'static str] {
    use EntityKind::*;
    match (kind, window.name) {
        (User, "24h") => &["n", "a", "f", "c"],
        (Instrument, "24h") => &["n", "a", "f"],
        (_, "24h") => &["n", "a"],
        (Device | Ip | Instrument, "1h") => &["n", "f"],
        _ => &["n"],
    }
}

/// Hour of day (UTC) of a timestamp.
pub fn hour_of(ts: i64) -> i64 {
    ts.rem_euclid(86_400) / 3_600
}

fn incr_buckets(
    ops: &mut Vec<StateOp>,
    kind: EntityKind,
    id: &str,
    ts: i64,
    metric: &str,
    delta: f64,
) {
    let key = entity_key(kind, id);
    for w in &WINDOWS {
        if metrics_for(kind, w).contains(&metric) {
            let b = w.bucket_of(ts);
            ops.push(StateOp::Incr {
                key: key.clone(),
                field: w.field(b, metric),
                delta,
                expire_at: Some(w.expire_at(b)),
            });
            // the same increment in the bucket's block (see `Window::parts`)
            let block = w.block_of(b);
            ops.push(StateOp::Incr {
                key: key.clone(),
                field: w.block_field(block, metric),
                delta,
                expire_at: Some(w.block_expire_at(block)),
            });
        }
    }
}

fn incr(ops: &mut Vec<StateOp>, key: &str, field: impl Into<String>, delta: f64) {
    ops.push(StateOp::Incr {
        key: key.to_string(),
        field: field.into(),
        delta,
        expire_at: None,
    });
}

fn set_if_absent(ops: &mut Vec<StateOp>, key: String, field: impl Into<String>, value: f64) {
    ops.push(StateOp::SetIfAbsent {
        key,
        field: field.into(),
        value,
    });
}

/// The ops an event causes, in a deterministic order.
pub fn updates(event: &Event) -> Vec<StateOp> {
    match event {
        Event::Order(o) => order_updates(o),
        Event::Payment(p) => payment_updates(p),
        Event::Account(a) => account_updates(a),
    }
}

fn order_ids(o: &Order) -> [(EntityKind, &str); 5] {
    [
        (EntityKind::User, o.user_id.as_str()),
        (EntityKind::Device, o.device_fp.as_str()),
        (EntityKind::Ip, o.ip_fp.as_str()),
        (EntityKind::Instrument, o.instrument_id.as_str()),
        (EntityKind::ShipLoc, o.shipping.id.as_str()),
    ]
}

fn order_updates(o: &Order) -> Vec<StateOp> {
    let mut ops = Vec::with_capacity(72);
    for (kind, id) in order_ids(o) {
        incr_buckets(&mut ops, kind, id, o.ts, "n", 1.0);
        incr_buckets(&mut ops, kind, id, o.ts, "a", o.amount);
    }
    let user = entity_key(EntityKind::User, &o.user_id);
    incr(&mut ops, &user, "amt_n", 1.0);
    incr(&mut ops, &user, "amt_s", o.amount);
    incr(&mut ops, &user, "amt_ss", o.amount * o.amount);
    incr(&mut ops, &user, format!("hr:{}", hour_of(o.ts)), 1.0);
    incr(&mut ops, &user, "geo_n", 1.0);
    incr(&mut ops, &user, "lat_s", o.shipping.lat);
    incr(&mut ops, &user, "lon_s", o.shipping.lon);
    let created = o.account_created_ts.unwrap_or(o.ts) as f64;
    set_if_absent(&mut ops, user.clone(), "created", created);
    set_if_absent(
        &mut ops,
        user.clone(),
        format!("dev:{}", o.device_fp),
        o.ts as f64,
    );
    set_if_absent(
        &mut ops,
        user,
        format!("addr:{}", o.shipping.id),
        o.ts as f64,
    );
    for (kind, id) in [
        (EntityKind::Device, &o.device_fp),
        (EntityKind::ShipLoc, &o.shipping.id),
        (EntityKind::Instrument, &o.instrument_id),
    ] {
        set_if_absent(
            &mut ops,
            users_key(kind, id),
            o.user_id.clone(),
            o.ts as f64,
        );
    }
    ops
}

fn payment_updates(p: &PaymentEvent) -> Vec<StateOp> {
    let mut ops = Vec::new();
    if !p.success {
        for (kind, id) in [
            (EntityKind::User, &p.user_id),
            (EntityKind::Device, &p.device_fp),
            (EntityKind::Ip, &p.ip_fp),
            (EntityKind::Instrument, &p.instrument_id),
        ] {
            incr_buckets(&mut ops, kind, id, p.ts, "f", 1.0);
        }
    }
    ops
}

fn account_updates(a: &AccountEvent) -> Vec<StateOp> {
    let mut ops = Vec::new();
    let user = entity_key(EntityKind::User, &a.user_id);
    match a.kind {
        AccountEventKind::Created => set_if_absent(&mut ops, user, "created", a.ts as f64),
        AccountEventKind::CredentialChange => {
            incr_buckets(&mut ops, EntityKind::User, &a.user_id, a.ts, "c", 1.0)
        }
        AccountEventKind::Refund => incr(&mut ops, &user, "refunds", 1.0),
        AccountEventKind::Cancel => incr(&mut ops, &user, "cancels", 1.0),
        AccountEventKind::Login => {}
    }
    ops
}
