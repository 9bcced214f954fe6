//! Risk detectors beyond single orders, over the same counters as the features: account
//! takeover, promotion abuse and card testing.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::{Order, PaymentEvent};
use crate::features::FeatureVector;
use crate::state::{entity_key, EntityKind, FeatureSource, ReadRequest, W_1H};

/// Kind of risk pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskKind {
    /// Someone else is using the account.
    AccountTakeover,
    /// Many accounts farming promotions from one device or address.
    PromotionAbuse,
    /// Stolen cards being tried with small payments.
    CardTesting,
}

/// An alert about an entity (not only one order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskAlert {
    /// Pattern.
    pub kind: RiskKind,
    /// Entity key, e.g. `fraud:device:d17`.
    pub entity: String,
    /// Human-readable evidence.
    pub reasons: Vec<String>,
}

/// Detector thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Account takeover: minimum amount z-score against the user's history...
    pub ato_min_amount_z: f64,
    /// ...or minimum absolute amount.
    pub ato_min_amount: f64,
    /// Promotion abuse: accounts seen on one device.
    pub promo_device_accounts: f64,
    /// Promotion abuse: accounts seen at one shipping address.
    pub promo_address_accounts: f64,
    /// Card testing: failed payments on one instrument within the hour.
    pub card_instrument_failed_1h: f64,
    /// Card testing: failed payments from one device within the hour.
    pub card_device_failed_1h: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            ato_min_amount_z: 2.0,
            ato_min_amount: 500.0,
            promo_device_accounts: 4.0,
            promo_address_accounts: 5.0,
            card_instrument_failed_1h: 3.0,
            card_device_failed_1h: 4.0,
        }
    }
}

/// Detectors that look at an order's features (computed before its own update).
pub fn detect_order(order: &Order, f: &FeatureVector, cfg: &DetectorConfig) -> Vec<RiskAlert> {
    let mut alerts = Vec::new();
    let big = f.get("amount_z") >= cfg.ato_min_amount_z || order.amount >= cfg.ato_min_amount;
    if f.get("new_device") > 0.0
        && f.get("credential_changes_24h") > 0.0
        && big
        && f.get("user_order_count") > 0.0
    {
        alerts.push(RiskAlert {
            kind: RiskKind::AccountTakeover,
            entity: entity_key(EntityKind::User, &order.user_id),
            reasons: vec![
                format!("new device {}", order.device_fp),
                format!(
                    "{} credential change(s) in 24h",
                    f.get("credential_changes_24h")
                ),
                format!("amount {:.2} (z {:.1})", order.amount, f.get("amount_z")),
            ],
        });
    }
    // accounts seen before plus this one when it is new to the entity
    let dev_accounts = f.get("device_accounts") + f.get("new_device");
    if dev_accounts >= cfg.promo_device_accounts && order.promo_code.is_some() {
        alerts.push(RiskAlert {
            kind: RiskKind::PromotionAbuse,
            entity: entity_key(EntityKind::Device, &order.device_fp),
            reasons: vec![format!(
                "{dev_accounts} accounts on one device using promotions"
            )],
        });
    }
    let addr_accounts = f.get("shiploc_accounts") + f.get("new_address");
    if addr_accounts >= cfg.promo_address_accounts && order.promo_code.is_some() {
        alerts.push(RiskAlert {
            kind: RiskKind::PromotionAbuse,
            entity: entity_key(EntityKind::ShipLoc, &order.shipping.id),
            reasons: vec![format!(
                "{addr_accounts} accounts at one address using promotions"
            )],
        });
    }
    alerts
}

/// Reads the payment detector needs (failed payments in the hour on instrument and device).
pub fn payment_reads(p: &PaymentEvent, now: i64) -> Vec<ReadRequest> {
    let fields: Vec<String> = W_1H
        .parts(now)
        .into_iter()
        .map(|p| W_1H.part_field(p, "f"))
        .collect();
    vec![
        ReadRequest::Fields {
            key: entity_key(EntityKind::Instrument, &p.instrument_id),
            fields: fields.clone(),
        },
        ReadRequest::Fields {
            key: entity_key(EntityKind::Device, &p.device_fp),
            fields,
        },
    ]
}

/// Card-testing detector, run after a payment's own update has been applied.
pub fn detect_payment(
    p: &PaymentEvent,
    source: &impl FeatureSource,
    now: i64,
    cfg: &DetectorConfig,
) -> Result<Vec<RiskAlert>> {
    let res = source.read(&payment_reads(p, now))?;
    let n = W_1H.parts(now).len();
    let sum = |i| -> Result<f64> { Ok(res.fields(i, n)?.iter().map(|v| v.unwrap_or(0.0)).sum()) };
    let (inst, dev) = (sum(0)?, sum(1)?);
    let mut alerts = Vec::new();
    if inst >= cfg.card_instrument_failed_1h {
        alerts.push(RiskAlert {
            kind: RiskKind::CardTesting,
            entity: entity_key(EntityKind::Instrument, &p.instrument_id),
            reasons: vec![format!("{inst} failed payments on the instrument in 1h")],
        });
    }
    if dev >= cfg.card_device_failed_1h {
        alerts.push(RiskAlert {
            kind: RiskKind::CardTesting,
            entity: entity_key(EntityKind::Device, &p.device_fp),
            reasons: vec![format!("{dev} failed payments from the device in 1h")],
        });
    }
    Ok(alerts)
}
