//! Input events: plain Rust structs the service layer converts from protobuf.
//!
//! All timestamps are unix seconds (event time). Counters are bucketed by event time, so a
//! replay of the same events produces the same state.

use serde::{Deserialize, Serialize};

/// A geographic place with an opaque id (e.g. a hashed, normalised address).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Stable id of the address (hashed by the caller).
    pub id: String,
    /// Region / postcode area, used for the billing vs shipping mismatch.
    pub region: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// One basket line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    /// Product category (compared against [`crate::features::HIGH_RISK_CATEGORIES`]).
    pub category: String,
    /// Line total in currency units.
    pub amount: f64,
    /// Number of units.
    pub quantity: u32,
}

/// An order to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub order_id: String,
    /// Account id.
    pub user_id: String,
    /// Event time, unix seconds.
    pub ts: i64,
    /// Order total in currency units.
    pub amount: f64,
    /// Device fingerprint.
    pub device_fp: String,
    /// IP fingerprint (e.g. /24 prefix hash).
    pub ip_fp: String,
    /// Payment instrument id (token of the card / wallet).
    pub instrument_id: String,
    /// Shipping address.
    pub shipping: Location,
    /// Billing region.
    pub billing_region: String,
    /// Basket lines.
    pub items: Vec<LineItem>,
    /// Account creation time when the caller knows it (else the state's first-seen is used).
    pub account_created_ts: Option<i64>,
    /// Promotion code used, if any.
    pub promo_code: Option<String>,
}

/// Outcome of a payment attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// Order the payment belongs to.
    pub order_id: String,
    /// Account id.
    pub user_id: String,
    /// Event time, unix seconds.
    pub ts: i64,
    /// Attempted amount.
    pub amount: f64,
    /// Payment instrument id.
    pub instrument_id: String,
    /// Device fingerprint.
    pub device_fp: String,
    /// IP fingerprint.
    pub ip_fp: String,
    /// Whether the payment went through.
    pub success: bool,
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountEventKind {
    /// Account created.
    Created,
    /// Successful login.
    Login,
    /// Password, e-mail or phone changed.
    CredentialChange,
    /// A refund (or chargeback) was granted for an order.
    Refund,
    /// An order was cancelled.
    Cancel,
}

/// An account-level event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountEvent {
    /// Account id.
    pub user_id: String,
    /// Event time, unix seconds.
    pub ts: i64,
    /// What happened.
    pub kind: AccountEventKind,
    /// Device fingerprint, when known.
    pub device_fp: Option<String>,
    /// Order concerned (refund / cancel), when any.
    pub order_id: Option<String>,
}

/// Any event that changes feature state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An order was placed.
    Order(Order),
    /// A payment attempt completed.
    Payment(PaymentEvent),
    /// Something happened to an account.
    Account(AccountEvent),
}

impl Event {
    /// Event time, unix seconds.
    pub fn ts(&self) -> i64 {
        match self {
            Event::Order(o) => o.ts,
            Event::Payment(p) => p.ts,
            Event::Account(a) => a.ts,
        }
    }
}
