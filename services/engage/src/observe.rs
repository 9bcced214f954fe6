//! What the consumer keeps for the pricer: price observations from product
//! views and order lines (per viewer lifecycle stage), and the platform's
//! market prices, checked.
use mesh_bus::Record;
use mesh_proto::engage::v1::MarketPrice;
use mesh_store::Op;
use prost::Message;

use crate::keys;

const DAY_MS: i64 = 86_400_000;

/// Price as a field name: cents, so float noise does not split a price;
/// the viewer's lifecycle stage last when known.
pub fn price_field(day: i64, price: f64, kind: char, stage: Option<&str>) -> String {
    let cents = (price * 100.0).round() as i64;
    match stage {
        Some(s) => format!("{day}|{cents}|{kind}|{s}"),
        None => format!("{day}|{cents}|{kind}"),
    }
}

/// A market price as the platform sent it, checked.
pub fn market_price(r: &Record) -> Result<MarketPrice, String> {
    let m = MarketPrice::decode(r.payload.as_slice())
        .map_err(|e| format!("undecodable MarketPrice: {e}"))?;
    if m.tenant_id.trim().is_empty() {
        return Err("MarketPrice.tenant_id is required".into());
    }
    if m.sku.trim().is_empty() || m.sku.len() > 256 {
        return Err("MarketPrice.sku is required, 1..=256 bytes".into());
    }
    if m.source.trim().is_empty() || m.source.len() > 64 || m.source.contains('|') {
        return Err("MarketPrice.source is required, 1..=64 bytes without '|'".into());
    }
    if !(m.price.is_finite() && m.price > 0.0) {
        return Err(format!(
            "MarketPrice.price {} must be finite and > 0",
            m.price
        ));
    }
    if m.observed_at_ms <= 0 {
        return Err("MarketPrice.observed_at_ms is required".into());
    }
    Ok(m)
}

/// Ops of one product view or order line for pricing.
#[allow(clippy::too_many_arguments)]
pub fn observation_ops(
    tenant: &str,
    sku: &str,
    category: &str,
    price: f64,
    at_ms: i64,
    views: i64,
    units: i64,
    stage: Option<&str>,
) -> Vec<Op> {
    if sku.is_empty() || !(price.is_finite() && price > 0.0) {
        return Vec::new();
    }
    let day = at_ms.div_euclid(DAY_MS);
    let obs = keys::observations(tenant, sku);
    let item = keys::item(tenant, sku);
    let mut ops = Vec::new();
    if views > 0 {
        ops.push(Op::HIncr {
            key: obs.clone(),
            field: price_field(day, price, 'v', stage),
            delta: views,
        });
        // The latest price shown is the item's base price.
        ops.extend([
            Op::HMax {
                key: item.clone(),
                field: "seen_ms".into(),
                value: at_ms,
            },
            Op::HSet {
                key: item.clone(),
                field: "price".into(),
                value: price.to_string(),
            },
        ]);
    }
    if units > 0 {
        ops.push(Op::HIncr {
            key: obs,
            field: price_field(day, price, 'u', stage),
            delta: units,
        });
    }
    ops.push(Op::HSetNx {
        key: item.clone(),
        field: "list".into(),
        value: price.to_string(),
    });
    if !category.is_empty() {
        ops.push(Op::HSet {
            key: item,
            field: "category".into(),
            value: category.into(),
        });
    }
    ops.push(Op::ZSet {
        key: keys::ITEMS.into(),
        member: keys::member(tenant, sku),
        score: at_ms as f64,
    });
    ops
}
