//! Live features of an order, computed from one batch of reads.
//!
//! [`reads_for`] lists every hash field an order needs; [`features_from`] turns the replies
//! into a [`FeatureVector`] with a fixed, named order ([`FEATURE_NAMES`]). Features are
//! computed *before* the order's own updates are applied, as in live scoring.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::Order;
use crate::state::{
    entity_key, users_key, EntityKind, FeatureSource, ReadRequest, ReadResults, METRICS, WINDOWS,
};
use crate::updates::{hour_of, metrics_for};

/// Basket categories treated as high risk (resellable, easy to fence).
pub const HIGH_RISK_CATEGORIES: [&str; 4] = ["electronics", "gift_cards", "luxury", "sneakers"];

/// Number of features.
pub const N_FEATURES: usize = 43;

/// Feature names, in vector order.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "user_orders_1m",
    "user_orders_1h",
    "user_orders_24h",
    "device_orders_1m",
    "device_orders_1h",
    "device_orders_24h",
    "ip_orders_1m",
    "ip_orders_1h",
    "ip_orders_24h",
    "instrument_orders_1m",
    "instrument_orders_1h",
    "instrument_orders_24h",
    "shiploc_orders_1m",
    "shiploc_orders_1h",
    "shiploc_orders_24h",
    "user_amount_24h",
    "device_amount_24h",
    "ip_amount_24h",
    "instrument_amount_24h",
    "shiploc_amount_24h",
    "user_failed_24h",
    "device_failed_1h",
    "ip_failed_1h",
    "instrument_failed_1h",
    "instrument_failed_24h",
    "amount",
    "amount_z",
    "user_order_count",
    "account_age_days",
    "new_device",
    "new_address",
    "billing_shipping_mismatch",
    "refund_rate",
    "cancel_rate",
    "hour_unusual",
    "distance_from_home_km",
    "high_risk_share",
    "device_accounts",
    "shiploc_accounts",
    "instrument_accounts",
    "credential_changes_24h",
    "basket_items",
    "has_promo",
];

/// Index of a feature by name.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURE_NAMES.iter().position(|n| *n == name)
}

/// The features of one order, in [`FEATURE_NAMES`] order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureVector(pub Vec<f64>);

impl FeatureVector {
    /// Value of a named feature (panics on an unknown name: names are compile-time constants).
    pub fn get(&self, name: &str) -> f64 {
        let i = feature_index(name).unwrap_or_else(|| panic!("unknown feature `{name}`"));
        self.0[i]
    }

    /// `(name, value)` pairs.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        FEATURE_NAMES.iter().copied().zip(self.0.iter().copied())
    }
}

/// Profile fields read from the user hash after the bucket fields, in this order.
const PROFILE: [&str; 9] = [
    "created", "amt_n", "amt_s", "amt_ss", "geo_n", "lat_s", "lon_s", "refunds", "cancels",
];

fn order_ids(o: &Order) -> [&str; 5] {
    [
        &o.user_id,
        &o.device_fp,
        &o.ip_fp,
        &o.instrument_id,
        &o.shipping.id,
    ]
}

fn bucket_fields(kind: EntityKind, now: i64, out: &mut Vec<String>) {
    for w in &WINDOWS {
        let parts = w.parts(now);
        for m in metrics_for(kind, w) {
            out.extend(parts.iter().map(|p| w.part_field(*p, m)));
        }
    }
}

fn bucket_field_count(kind: EntityKind, now: i64) -> usize {
    WINDOWS
        .iter()
        .map(|w| metrics_for(kind, w).len() * w.parts(now).len())
        .sum()
}

/// Window sums `[window][metric]` decoded from the leading bucket fields of a reply.
fn bucket_sums(kind: EntityKind, vals: &[Option<f64>], now: i64) -> [[f64; METRICS.len()]; 3] {
    let mut sums = [[0.0; METRICS.len()]; 3];
    let mut i = 0;
    for (wi, w) in WINDOWS.iter().enumerate() {
        let n = w.parts(now).len();
        for m in metrics_for(kind, w) {
            let mi = METRICS.iter().position(|x| x == m).unwrap_or(0);
            sums[wi][mi] = vals[i..i + n].iter().map(|v| v.unwrap_or(0.0)).sum();
            i += n;
        }
    }
    sums
}

fn hour_fields(ts: i64) -> [String; 3] {
    let h = hour_of(ts);
    [
        format!("hr:{}", (h + 23) % 24),
        format!("hr:{h}"),
        format!("hr:{}", (h + 1) % 24),
    ]
}

/// Every read an order needs, as one batch: five entity hashes (`HMGET`) then the
/// distinct-account sets of device, shipping location and instrument (`HLEN`).
pub fn reads_for(order: &Order, now: i64) -> Vec<ReadRequest> {
    let mut reqs = Vec::with_capacity(8);
    for (kind, id) in EntityKind::ALL.iter().zip(order_ids(order)) {
        let mut fields = Vec::with_capacity(bucket_field_count(*kind, now) + 16);
        bucket_fields(*kind, now, &mut fields);
        if *kind == EntityKind::User {
            fields.extend(PROFILE.iter().map(|s| s.to_string()));
            fields.extend(hour_fields(order.ts));
            fields.push(format!("dev:{}", order.device_fp));
            fields.push(format!("addr:{}", order.shipping.id));
        }
        reqs.push(ReadRequest::Fields {
            key: entity_key(*kind, id),
            fields,
        });
    }
    for (kind, id) in [
        (EntityKind::Device, &order.device_fp),
        (EntityKind::ShipLoc, &order.shipping.id),
        (EntityKind::Instrument, &order.instrument_id),
    ] {
        reqs.push(ReadRequest::Len {
            key: users_key(kind, id),
        });
    }
    reqs
}

/// Great-circle distance in kilometres.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

/// Features of `order` from the replies to [`reads_for`]`(order, now)`.
pub fn features_from(order: &Order, results: &ReadResults, now: i64) -> Result<FeatureVector> {
    let mut f = vec![0.0; N_FEATURES];
    let mut sums = [[[0.0; METRICS.len()]; 3]; 5];
    let mut user_tail: &[Option<f64>] = &[];
    for (k, kind) in EntityKind::ALL.iter().enumerate() {
        let nb = bucket_field_count(*kind, now);
        let extra = if *kind == EntityKind::User {
            PROFILE.len() + 5
        } else {
            0
        };
        let vals = results.fields(k, nb + extra)?;
        sums[k] = bucket_sums(*kind, &vals[..nb], now);
        if *kind == EntityKind::User {
            user_tail = &vals[nb..];
        }
    }
    // orders per entity and window; amount per entity over 24h
    for k in 0..5 {
        for w in 0..3 {
            f[k * 3 + w] = sums[k][w][0];
        }
        f[15 + k] = sums[k][2][1];
    }
    f[20] = sums[0][2][2]; // user_failed_24h
    f[21] = sums[1][1][2]; // device_failed_1h
    f[22] = sums[2][1][2]; // ip_failed_1h
    f[23] = sums[3][1][2]; // instrument_failed_1h
    f[24] = sums[3][2][2]; // instrument_failed_24h

    let p = |i: usize| user_tail[i].unwrap_or(0.0);
    let (created, n, s, ss) = (user_tail[0], p(1), p(2), p(3));
    let (geo_n, lat_s, lon_s, refunds, cancels) = (p(4), p(5), p(6), p(7), p(8));
    let hour_count = p(9) + p(10) + p(11);
    let seen_device = user_tail[12].is_some();
    let seen_address = user_tail[13].is_some();

    f[25] = order.amount;
    f[26] = if n >= 2.0 {
        let mean = s / n;
        let var = (ss / n - mean * mean).max(0.0);
        (order.amount - mean) / var.sqrt().max(1.0)
    } else {
        0.0
    };
    f[27] = n;
    let created = order
        .account_created_ts
        .map(|t| t as f64)
        .or(created)
        .unwrap_or(now as f64);
    f[28] = ((now as f64 - created) / 86_400.0).max(0.0);
    f[29] = f64::from(u8::from(!seen_device));
    f[30] = f64::from(u8::from(!seen_address));
    f[31] = f64::from(u8::from(order.billing_region != order.shipping.region));
    f[32] = refunds / n.max(1.0);
    f[33] = cancels / n.max(1.0);
    // smoothed share of the user's orders within +-1 hour of this one, prior 3/24
    f[34] = 1.0 - (hour_count + 1.0) / (n + 8.0);
    f[35] = if geo_n > 0.0 {
        haversine_km(
            lat_s / geo_n,
            lon_s / geo_n,
            order.shipping.lat,
            order.shipping.lon,
        )
    } else {
        0.0
    };
    let total: f64 = order.items.iter().map(|i| i.amount).sum();
    let risky: f64 = order
        .items
        .iter()
        .filter(|i| HIGH_RISK_CATEGORIES.contains(&i.category.as_str()))
        .map(|i| i.amount)
        .sum();
    f[36] = if total > 0.0 { risky / total } else { 0.0 };
    f[37] = results.len_at(5)? as f64;
    f[38] = results.len_at(6)? as f64;
    f[39] = results.len_at(7)? as f64;
    f[40] = sums[0][2][3];
    f[41] = order.items.iter().map(|i| f64::from(i.quantity)).sum();
    f[42] = f64::from(u8::from(order.promo_code.is_some()));
    Ok(FeatureVector(f))
}

/// Features of `order` read from `source` at time `now` (one batched read).
pub fn features(order: &Order, source: &impl FeatureSource, now: i64) -> Result<FeatureVector> {
    let reads = reads_for(order, now);
    let results = source.read(&reads)?;
    features_from(order, &results, now)
}
