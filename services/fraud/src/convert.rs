//! Protobuf envelopes → the fraud core's event types.
//!
//! Every entity id is scoped by tenant (`<tenant>/<id>`), so two shops never
//! share a device or an address. The user id is the envelope's partition key
//! (`<tenant>/<user>`), which is also what places the user's counters in the
//! slot of the partition that consumes the user's events.
//!
//! An event without a device, IP or payment-instrument hash gets an id of
//! its own user (`<tenant>/<user>/no-device`, ...): an unknown device must
//! not link every account that lacks one. Shipping locations have no address
//! id on the wire; the coarse location (country, region, coordinates rounded
//! to ~100 m) stands in for it.
use mesh_fraud::{AccountEvent, AccountEventKind, Event, LineItem, Location, Order, PaymentEvent};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, OrderPlaced};

use crate::error::{Error, Result};

fn scoped(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

/// Tenant-scoped id of a hash from the context, or the user's own stand-in.
fn entity_id(env: &Envelope, hash: Option<&str>, what: &str) -> String {
    match hash.filter(|h| !h.trim().is_empty()) {
        Some(h) => scoped(&env.tenant_id, h),
        None => stand_in(&env.user_key(), what),
    }
}

/// The stand-in entity id of user `member` (`<tenant>/<user>`) for a
/// missing `what` (`device`, `ip`, `instrument`): it names the user, so an
/// erasure deletes it ([`crate::erasure`]).
pub fn stand_in(member: &str, what: &str) -> String {
    format!("{member}/no-{what}")
}

/// Longest tenant or user id (ingest accepts none over 128 bytes).
const MAX_ID: usize = 256;

fn check_identity(env: &Envelope) -> Result<()> {
    for (field, v) in [("tenant_id", &env.tenant_id), ("user_id", &env.user_id)] {
        if v.trim().is_empty() {
            return Err(Error::invalid(field, "required"));
        }
        if v.len() > MAX_ID {
            return Err(Error::invalid(
                field,
                format!("{} bytes; at most {MAX_ID}", v.len()),
            ));
        }
    }
    if env.occurred_at_ms <= 0 {
        return Err(Error::invalid(
            "occurred_at_ms",
            "required: event time in Unix milliseconds",
        ));
    }
    Ok(())
}

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

fn device(env: &Envelope) -> String {
    entity_id(
        env,
        env.context.as_ref().map(|c| c.device_hash.as_str()),
        "device",
    )
}

fn ip(env: &Envelope) -> String {
    entity_id(env, env.context.as_ref().map(|c| c.ip_hash.as_str()), "ip")
}

/// The order of an `order_placed` envelope, validated. Invalid fields are
/// named relative to the envelope (`order_placed.items[1].quantity`).
pub fn order_from(env: &Envelope) -> Result<Order> {
    check_identity(env)?;
    match &env.body {
        Some(Body::OrderPlaced(o)) => order_placed(env, o),
        Some(_) => Err(Error::invalid(
            "order_placed",
            "the body must be an order_placed event",
        )),
        None => Err(Error::invalid("order_placed", "required: no body is set")),
    }
}

fn order_placed(env: &Envelope, o: &OrderPlaced) -> Result<Order> {
    let f = |name: &str| format!("order_placed.{name}");
    if o.order_id.trim().is_empty() {
        return Err(Error::invalid(f("order_id"), "required"));
    }
    if o.items.is_empty() {
        return Err(Error::invalid(f("items"), "at least one item is required"));
    }
    let mut items = Vec::with_capacity(o.items.len());
    for (i, it) in o.items.iter().enumerate() {
        if it.quantity == 0 {
            return Err(Error::invalid(
                f(&format!("items[{i}].quantity")),
                "must be at least 1",
            ));
        }
        if !(it.unit_price.is_finite() && it.unit_price >= 0.0) {
            return Err(Error::invalid(
                f(&format!("items[{i}].unit_price")),
                format!("must be a finite amount >= 0, got {}", it.unit_price),
            ));
        }
        items.push(LineItem {
            category: it.category.clone(),
            amount: it.unit_price * f64::from(it.quantity),
            quantity: it.quantity,
        });
    }
    if !(o.total.is_finite() && o.total >= 0.0) {
        return Err(Error::invalid(
            f("total"),
            format!("must be a finite amount >= 0, got {}", o.total),
        ));
    }
    let ship = o
        .ship_to
        .as_ref()
        .ok_or_else(|| Error::invalid(f("ship_to"), "required: the coarse shipping location"))?;
    if !(ship.lat.is_finite() && (-90.0..=90.0).contains(&ship.lat)) {
        return Err(Error::invalid(f("ship_to.lat"), "must be within -90..=90"));
    }
    if !(ship.lon.is_finite() && (-180.0..=180.0).contains(&ship.lon)) {
        return Err(Error::invalid(
            f("ship_to.lon"),
            "must be within -180..=180",
        ));
    }
    let place = format!(
        "{}:{}:{:.3},{:.3}",
        ship.country, ship.region, ship.lat, ship.lon
    );
    let billing_region = o
        .bill_to
        .as_ref()
        .map(|b| b.region.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| ship.region.clone());
    Ok(Order {
        order_id: o.order_id.clone(),
        user_id: env.user_key(),
        ts: secs(env.occurred_at_ms),
        amount: o.total,
        device_fp: device(env),
        ip_fp: ip(env),
        instrument_id: entity_id(env, Some(&o.payment_hash), "instrument"),
        shipping: Location {
            id: scoped(&env.tenant_id, &place),
            region: ship.region.clone(),
            lat: ship.lat,
            lon: ship.lon,
        },
        billing_region,
        items,
        account_created_ts: None,
        promo_code: Some(o.promo_code.clone()).filter(|p| !p.trim().is_empty()),
    })
}

/// The core event an envelope stands for: `None` for kinds that do not
/// change fraud state (browsing, shipping, ...).
pub fn event_from(env: &Envelope) -> Result<Option<Event>> {
    let Some(body) = &env.body else {
        return Ok(None);
    };
    let account = |kind, order_id: Option<&str>| -> Result<Option<Event>> {
        check_identity(env)?;
        Ok(Some(Event::Account(AccountEvent {
            user_id: env.user_key(),
            ts: secs(env.occurred_at_ms),
            kind,
            device_fp: Some(device(env)),
            order_id: order_id.map(str::to_string),
        })))
    };
    let payment =
        |order_id: &str, amount: f64, hash: &str, success: bool| -> Result<Option<Event>> {
            check_identity(env)?;
            Ok(Some(Event::Payment(PaymentEvent {
                order_id: order_id.to_string(),
                user_id: env.user_key(),
                ts: secs(env.occurred_at_ms),
                amount,
                instrument_id: entity_id(env, Some(hash), "instrument"),
                device_fp: device(env),
                ip_fp: ip(env),
                success,
            })))
        };
    match body {
        Body::OrderPlaced(_) => Ok(Some(Event::Order(order_from(env)?))),
        Body::PaymentAuthorized(p) => payment(&p.order_id, p.amount, &p.payment_hash, true),
        Body::PaymentFailed(p) => payment(&p.order_id, p.amount, &p.payment_hash, false),
        Body::Login(l) if l.success => account(AccountEventKind::Login, None),
        Body::CredentialChanged(_) => account(AccountEventKind::CredentialChange, None),
        Body::RefundIssued(r) => account(AccountEventKind::Refund, Some(&r.order_id)),
        Body::OrderCancelled(c) => account(AccountEventKind::Cancel, Some(&c.order_id)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::events::v1::{Context, LineItem as PbItem, Location as PbLoc};

    fn env(body: Body) -> Envelope {
        Envelope {
            event_id: "e1".into(),
            tenant_id: "shop".into(),
            user_id: "u1".into(),
            occurred_at_ms: 1_700_000_000_123,
            source: "checkout".into(),
            context: Some(Context {
                device_hash: "d1".into(),
                ..Context::default()
            }),
            body: Some(body),
        }
    }

    fn order() -> OrderPlaced {
        OrderPlaced {
            order_id: "o1".into(),
            items: vec![PbItem {
                sku: "s".into(),
                category: "electronics".into(),
                quantity: 2,
                unit_price: 10.0,
                ..PbItem::default()
            }],
            total: 20.0,
            ship_to: Some(PbLoc {
                lat: 52.5,
                lon: 13.4,
                country: "DE".into(),
                region: "10".into(),
            }),
            ..OrderPlaced::default()
        }
    }

    #[test]
    fn converts_an_order_with_tenant_scoped_ids() {
        let o = order_from(&env(Body::OrderPlaced(order()))).unwrap();
        assert_eq!(o.user_id, "shop/u1");
        assert_eq!(o.device_fp, "shop/d1");
        assert_eq!(o.ip_fp, "shop/u1/no-ip");
        assert_eq!(o.ts, 1_700_000_000);
        assert_eq!(o.items[0].amount, 20.0);
        assert_eq!(o.billing_region, "10");
        assert_eq!(o.promo_code, None);
    }

    #[test]
    fn names_the_bad_field() {
        let mut o = order();
        o.items[0].quantity = 0;
        let e = order_from(&env(Body::OrderPlaced(o))).unwrap_err();
        assert!(
            e.to_string().starts_with("order_placed.items[0].quantity"),
            "{e}"
        );
        let mut o = order();
        o.ship_to = None;
        let e = order_from(&env(Body::OrderPlaced(o))).unwrap_err();
        assert!(e.to_string().starts_with("order_placed.ship_to"), "{e}");
        let mut e2 = env(Body::OrderPlaced(order()));
        e2.user_id.clear();
        assert!(order_from(&e2)
            .unwrap_err()
            .to_string()
            .starts_with("user_id"));
        e2.user_id = "u".repeat(100 << 10);
        assert!(order_from(&e2)
            .unwrap_err()
            .to_string()
            .starts_with("user_id: 102400 bytes"));
    }

    #[test]
    fn browsing_changes_no_fraud_state() {
        let e = env(Body::PageView(Default::default()));
        assert_eq!(event_from(&e).unwrap(), None);
    }
}
