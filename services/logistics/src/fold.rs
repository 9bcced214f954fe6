//! What an order event does to logistics state, as store ops. Pure: the same
//! envelope always gives the same ops, which makes redelivery and replay
//! safe.
//!
//! Keys (all in the slot of the record's input partition, scope
//! [`crate::SCOPE`]):
//! - `o:<tenant>/<order>`: one hash per order — wave, warehouse, lines
//!   (`items`), location, demand, promised window, and status fields (`paid`, `cancelled`, `shipped_at`,
//!   `delivered`, ...).
//! - `w:<wave>`: wave membership, one field per order key.
//! - `waves`: the wave index, one field per wave id.
//!
//! A wave id is `<tenant>|<warehouse>|<region>|<yyyy-mm-dd>` ([`wave_id`],
//! read back by [`WaveParts::parse`]): orders of different tenants never
//! share a wave, and a wave's tenant is known from its id alone, so the
//! RPCs scope waves without reading them. Ids written before waves carried
//! the tenant (`<warehouse>|<region>|<day>`) still parse, with no tenant.
//! - `d:<tenant>/<series>`: a tenant's daily demand, one float field per
//!   day (days since 1970-01-01), see [`series_keys`] and [`tenant_series`].
//! - `series`: the series index, one field `<tenant>/<series>` per series.
//! - `buyer:<tenant>/<user>`: the user's orders, field stop id, value the
//!   order's wave: what an erasure deletes ([`forget`]).
//!
//! **Erasure** (`user_erased`, [`forget`]): the user's order hashes (lines,
//! location, buyer) are deleted and their stops leave their waves, so the
//! next plan of those waves drops them; the user's index goes too. Demand
//! series, the wave and series indices, plans of other stops and stock
//! stay: they hold no personal data (stock moved by the user's orders
//! stays moved, as it would for a cancelled account).
use std::collections::BTreeMap;

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, OrderPlaced};
use mesh_store::Op;

/// Payment methods paid on delivery: such orders join a wave when placed.
pub const CASH_ON_DELIVERY: &[&str] = &["cod", "cash_on_delivery", "cash"];
/// Cancellation reason that holds a stop instead of cancelling it.
pub const FRAUD_HOLD: &str = "fraud_hold";

const DAY_MS: i64 = 86_400_000;

/// Key of an order's hash.
pub fn order_key(tenant: &str, order: &str) -> String {
    format!("o:{}", stop_id(tenant, order))
}

/// Id of a stop: `<tenant>/<order_id>`.
pub fn stop_id(tenant: &str, order: &str) -> String {
    format!("{tenant}/{order}")
}

/// Key of a user's order index (`member`: `<tenant>/<user>`).
pub fn buyer_key(member: &str) -> String {
    format!("buyer:{member}")
}

/// Key of a wave's membership hash.
pub fn wave_key(wave: &str) -> String {
    format!("w:{wave}")
}

/// Key of a demand series hash; `series` is tenant-qualified
/// ([`tenant_series`]).
pub fn series_hash(series: &str) -> String {
    format!("d:{series}")
}

/// A tenant's series, as stored and indexed: `<tenant>/<series>`. Tenant ids
/// never hold `/` (ingest checks them), so [`split_tenant_series`] undoes it.
pub fn tenant_series(tenant: &str, series: &str) -> String {
    format!("{tenant}/{series}")
}

/// `(tenant, series)` of an indexed series; `None` for a field without a
/// tenant (written before series were per tenant).
pub fn split_tenant_series(indexed: &str) -> Option<(&str, &str)> {
    indexed.split_once('/')
}

/// Key of the wave index hash.
pub const WAVES: &str = "waves";
/// Key of the series index hash.
pub const SERIES: &str = "series";

/// Days since 1970-01-01 (UTC) of a Unix ms time.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// `yyyy-mm-dd` of a day number.
pub fn day_name(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| day.to_string())
}

/// Makes a value safe inside a wave id (`|` separates its parts).
fn clean(s: &str, default: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        default.to_string()
    } else {
        s.replace('|', "_")
    }
}

/// The wave an order of `tenant` joins:
/// `<tenant>|<warehouse>|<region>|<yyyy-mm-dd>` of the promised window's
/// start (the order time when there is no window).
pub fn wave_id(
    tenant: &str,
    o: &OrderPlaced,
    occurred_at_ms: i64,
    default_warehouse: &str,
) -> String {
    // Tenant ids hold no `|` (ingest checks them); cleaned all the same so
    // a wave id always has its four parts.
    let tenant = clean(tenant, "");
    let warehouse = clean(&o.warehouse_id, default_warehouse);
    let region = clean(
        o.ship_to.as_ref().map(|l| l.region.as_str()).unwrap_or(""),
        "none",
    );
    let at = if o.promised_from_ms > 0 {
        o.promised_from_ms
    } else {
        occurred_at_ms
    };
    format!("{tenant}|{warehouse}|{region}|{}", day_name(day_of(at)))
}

/// The parts of a wave id ([`wave_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveParts<'a> {
    /// The tenant whose orders the wave holds; empty for an id written
    /// before waves carried the tenant.
    pub tenant: &'a str,
    pub warehouse: &'a str,
    pub region: &'a str,
    /// `yyyy-mm-dd`.
    pub day: &'a str,
}

impl<'a> WaveParts<'a> {
    /// Splits `<tenant>|<warehouse>|<region>|<day>`, or the older
    /// `<warehouse>|<region>|<day>` (no tenant). Missing parts are empty.
    pub fn parse(wave: &'a str) -> Self {
        let parts: Vec<&str> = wave.splitn(4, '|').collect();
        let at = |i: usize| parts.get(i).copied().unwrap_or_default();
        if parts.len() == 4 {
            WaveParts {
                tenant: at(0),
                warehouse: at(1),
                region: at(2),
                day: at(3),
            }
        } else {
            WaveParts {
                tenant: "",
                warehouse: at(0),
                region: at(1),
                day: at(2),
            }
        }
    }

    /// Whether the wave belongs to `tenant`; every wave does when `tenant`
    /// is empty (admin, service and open-mesh callers).
    pub fn visible_to(&self, tenant: &str) -> bool {
        tenant.is_empty() || self.tenant == tenant
    }
}

/// The warehouse an order ships from (`default_warehouse` when it names none).
pub fn warehouse_of(o: &OrderPlaced, default_warehouse: &str) -> String {
    clean(&o.warehouse_id, default_warehouse)
}

/// An order's lines as stored in field `items` of its hash: `sku=qty`
/// joined by `;` (SKUs with `;` or `=` are not counted in stock).
pub fn encode_items(o: &OrderPlaced) -> String {
    o.items
        .iter()
        .filter(|i| !i.sku.is_empty() && !i.sku.contains([';', '=']))
        .map(|i| format!("{}={}", i.sku, i.quantity))
        .collect::<Vec<_>>()
        .join(";")
}

/// The lines of field `items` of an order's hash.
pub fn decode_items(s: &str) -> Vec<(String, f64)> {
    s.split(';')
        .filter_map(|p| {
            let (sku, q) = p.split_once('=')?;
            Some((sku.to_string(), q.parse().ok()?))
        })
        .collect()
}

/// The demand series an order line counts in: per SKU, per SKU and
/// warehouse, per category, per category and region.
pub fn series_keys(sku: &str, category: &str, warehouse: &str, region: &str) -> Vec<String> {
    let mut keys = Vec::with_capacity(4);
    if !sku.is_empty() {
        keys.push(format!("sku:{sku}"));
        keys.push(format!("sku:{sku}@{warehouse}"));
    }
    if !category.is_empty() {
        keys.push(format!("cat:{category}"));
        if !region.is_empty() {
            keys.push(format!("cat:{category}@{region}"));
        }
    }
    keys
}

fn set(key: &str, field: &str, value: impl ToString) -> Op {
    Op::HSet {
        key: key.to_string(),
        field: field.to_string(),
        value: value.to_string(),
    }
}

/// The ops one event applies (empty for events logistics ignores).
pub fn ops(e: &Envelope, default_warehouse: &str) -> Vec<Op> {
    let Some(body) = &e.body else {
        return Vec::new();
    };
    match body {
        Body::OrderPlaced(o) => placed(e, o, default_warehouse),
        Body::PaymentAuthorized(p) => vec![set(&order_key(&e.tenant_id, &p.order_id), "paid", 1)],
        Body::OrderCancelled(c) => vec![set(
            &order_key(&e.tenant_id, &c.order_id),
            "cancelled",
            if c.reason.is_empty() {
                "unknown"
            } else {
                &c.reason
            },
        )],
        Body::OrderShipped(s) => vec![set(
            &order_key(&e.tenant_id, &s.order_id),
            "shipped_at",
            e.occurred_at_ms,
        )],
        Body::OrderDelivered(d) => {
            let key = order_key(&e.tenant_id, &d.order_id);
            vec![
                set(&key, "delivered", if d.success { 1 } else { 0 }),
                set(&key, "delivered_at", e.occurred_at_ms),
                set(&key, "failure_reason", &d.failure_reason),
            ]
        }
        _ => Vec::new(),
    }
}

fn placed(e: &Envelope, o: &OrderPlaced, default_warehouse: &str) -> Vec<Op> {
    let key = order_key(&e.tenant_id, &o.order_id);
    let wave = wave_id(&e.tenant_id, o, e.occurred_at_ms, default_warehouse);
    let warehouse = warehouse_of(o, default_warehouse);
    let loc = o.ship_to.clone().unwrap_or_default();
    let units: i64 = o.items.iter().map(|i| i64::from(i.quantity)).sum();
    let cod = CASH_ON_DELIVERY.contains(&o.payment_method.to_ascii_lowercase().as_str());
    let mut ops = vec![
        set(&key, "wave", &wave),
        set(&key, "lat", loc.lat),
        set(&key, "lon", loc.lon),
        set(&key, "demand", units.max(1)),
        set(&key, "from_ms", o.promised_from_ms),
        set(&key, "to_ms", o.promised_to_ms),
        set(&key, "placed_at", e.occurred_at_ms),
        set(&key, "user", &e.user_id),
        set(&key, "warehouse", &warehouse),
        set(&key, "items", encode_items(o)),
        set(&wave_key(&wave), &stop_id(&e.tenant_id, &o.order_id), 1),
        set(WAVES, &wave, 1),
        set(
            &buyer_key(&e.user_key()),
            &stop_id(&e.tenant_id, &o.order_id),
            &wave,
        ),
    ];
    if cod {
        ops.push(set(&key, "cod", 1));
    }
    let day = day_of(e.occurred_at_ms).to_string();
    for item in &o.items {
        for s in series_keys(&item.sku, &item.category, &warehouse, &loc.region) {
            let s = tenant_series(&e.tenant_id, &s);
            ops.push(Op::HIncrFloat {
                key: series_hash(&s),
                field: day.clone(),
                delta: f64::from(item.quantity),
            });
            ops.push(set(SERIES, &s, 1));
        }
    }
    ops
}

/// `(stop id, wave)` of an order placement, for the buyer's index.
pub fn placement(e: &Envelope, default_warehouse: &str) -> Option<(String, String)> {
    match e.body.as_ref()? {
        Body::OrderPlaced(o) => Some((
            stop_id(&e.tenant_id, &o.order_id),
            wave_id(&e.tenant_id, o, e.occurred_at_ms, default_warehouse),
        )),
        _ => None,
    }
}

/// The ops of the erasure of `member` at `at_ms`, whose orders are
/// `orders` (stop id → wave): guarded, so a second erasure changes nothing;
/// the erasure recorded last.
pub fn forget(member: &str, at_ms: i64, orders: &BTreeMap<String, String>) -> Vec<Op> {
    let mut ops = vec![mesh_store::erasure::guard(member)];
    for (stop, wave) in orders {
        ops.push(Op::Del {
            key: format!("o:{stop}"),
        });
        ops.push(Op::HDel {
            key: wave_key(wave),
            field: stop.clone(),
        });
    }
    ops.push(Op::Del {
        key: buyer_key(member),
    });
    ops.push(mesh_store::erasure::record(member, at_ms));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::events::v1::{LineItem, Location, OrderCancelled};

    fn order(method: &str) -> Envelope {
        Envelope {
            event_id: "e1".into(),
            tenant_id: "shop".into(),
            user_id: "u1".into(),
            occurred_at_ms: 1_764_288_000_000,
            body: Some(Body::OrderPlaced(OrderPlaced {
                order_id: "o1".into(),
                items: vec![LineItem {
                    sku: "s1".into(),
                    category: "shoes".into(),
                    quantity: 3,
                    ..Default::default()
                }],
                payment_method: method.into(),
                ship_to: Some(Location {
                    lat: 52.5,
                    lon: 13.4,
                    region: "north".into(),
                    ..Default::default()
                }),
                warehouse_id: "wh|1".into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn placed_order_joins_its_wave_and_counts_demand() {
        let ops = ops(&order("card"), "default");
        let wave = "shop|wh_1|north|2025-11-28";
        assert!(ops.contains(&set("o:shop/o1", "wave", wave)));
        assert!(ops.contains(&set(&wave_key(wave), "shop/o1", 1)));
        assert!(ops.contains(&set(WAVES, wave, 1)));
        assert!(ops.contains(&set("o:shop/o1", "demand", 3)));
        assert!(ops.contains(&set("buyer:shop/u1", "shop/o1", wave)));
        assert!(!ops
            .iter()
            .any(|o| matches!(o, Op::HSet { field, .. } if field == "cod")));
        let series: Vec<_> = ops
            .iter()
            .filter_map(|o| match o {
                Op::HIncrFloat { key, delta, .. } => Some((key.clone(), *delta)),
                _ => None,
            })
            .collect();
        assert_eq!(series.len(), 4);
        assert!(series.contains(&("d:shop/cat:shoes@north".into(), 3.0)));
        assert!(ops.contains(&set(SERIES, "shop/sku:s1@wh_1", 1)));
        assert_eq!(
            split_tenant_series("shop/sku:a/b@wh"),
            Some(("shop", "sku:a/b@wh"))
        );
    }

    #[test]
    fn wave_ids_carry_the_tenant_and_parse_back() {
        let lab = Envelope {
            tenant_id: "lab".into(),
            ..order("card")
        };
        let (_, a) = placement(&order("card"), "d").unwrap();
        let (_, b) = placement(&lab, "d").unwrap();
        assert_ne!(a, b, "two tenants' orders share no wave");
        let p = WaveParts::parse(&b);
        assert_eq!(
            (p.tenant, p.warehouse, p.region, p.day),
            ("lab", "wh_1", "north", "2025-11-28")
        );
        assert!(p.visible_to("lab") && p.visible_to(""));
        assert!(!p.visible_to("shop") && !p.visible_to("la"));
        // An id written before waves carried the tenant: no tenant.
        let old = WaveParts::parse("wh|north|2025-11-28");
        assert_eq!(
            (old.tenant, old.warehouse, old.day),
            ("", "wh", "2025-11-28")
        );
        assert!(!old.visible_to("shop") && old.visible_to(""));
    }

    #[test]
    fn cash_on_delivery_is_paid_on_placement() {
        let ops = ops(&order("COD"), "default");
        assert!(ops.contains(&set("o:shop/o1", "cod", 1)));
    }

    #[test]
    fn cancellation_records_the_reason() {
        let e = Envelope {
            tenant_id: "shop".into(),
            body: Some(Body::OrderCancelled(OrderCancelled {
                order_id: "o1".into(),
                reason: FRAUD_HOLD.into(),
            })),
            ..Default::default()
        };
        assert_eq!(
            ops(&e, "d"),
            vec![set("o:shop/o1", "cancelled", FRAUD_HOLD)]
        );
    }
}
