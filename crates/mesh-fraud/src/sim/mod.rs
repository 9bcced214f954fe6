//! Labelled event simulator: legitimate user behaviour plus injected fraud patterns.
//!
//! Legitimate users have a home city, one or two devices and cards, usual hours, preferred
//! categories and an amount scale. Noise is deliberate so the task is not separable: people
//! travel, shop at night, change phones, share devices and addresses (families, student
//! houses), use promotions as new customers, have declined cards and ask for refunds. Fraud
//! patterns (see [`patterns`]) are injected at configurable rates, each event carrying its
//! ground-truth label and pattern name.

mod legit;
mod patterns;

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{
    AccountEvent, AccountEventKind, Event, LineItem, Location, Order, PaymentEvent,
};

/// Simulation start: 2026-01-01T00:00:00Z.
pub const SIM_START: i64 = 1_767_225_600;

/// Name of the legitimate "pattern".
pub const LEGIT: &str = "legit";

/// Names of the injected patterns.
pub const PATTERNS: [&str; 5] = [
    "card_testing",
    "account_takeover",
    "promo_abuse",
    "reseller_bot",
    "friendly_fraud",
];

/// Simulator parameters. Rates are incidents per 1,000 users per day.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct SimParams {
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of legitimate users.
    #[arg(long, default_value_t = 3000)]
    pub users: usize,
    /// Days simulated.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Card-testing bursts per 1,000 users per day.
    #[arg(long, default_value_t = 0.4)]
    pub card_testing_rate: f64,
    /// Account takeovers per 1,000 users per day.
    #[arg(long, default_value_t = 0.8)]
    pub account_takeover_rate: f64,
    /// Promotion-abuse rings per 1,000 users per day.
    #[arg(long, default_value_t = 0.25)]
    pub promo_abuse_rate: f64,
    /// Reseller-bot runs per 1,000 users per day.
    #[arg(long, default_value_t = 0.2)]
    pub reseller_bot_rate: f64,
    /// Friendly-fraud orders per 1,000 users per day.
    #[arg(long, default_value_t = 1.0)]
    pub friendly_fraud_rate: f64,
}

impl Default for SimParams {
    fn default() -> Self {
        Self {
            seed: 42,
            users: 3000,
            days: 30,
            card_testing_rate: 0.4,
            account_takeover_rate: 0.8,
            promo_abuse_rate: 0.25,
            reseller_bot_rate: 0.2,
            friendly_fraud_rate: 1.0,
        }
    }
}

/// One simulated event with its ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimEvent {
    /// The event.
    pub event: Event,
    /// Ground truth: part of a fraud pattern.
    pub fraud: bool,
    /// Pattern name ([`PATTERNS`]) or [`LEGIT`].
    pub pattern: String,
}

pub(crate) const CITIES: [(&str, f64, f64); 12] = [
    ("berlin", 52.52, 13.40),
    ("paris", 48.86, 2.35),
    ("madrid", 40.42, -3.70),
    ("rome", 41.90, 12.50),
    ("london", 51.51, -0.13),
    ("warsaw", 52.23, 21.01),
    ("amsterdam", 52.37, 4.90),
    ("vienna", 48.21, 16.37),
    ("lisbon", 38.72, -9.14),
    ("stockholm", 59.33, 18.07),
    ("munich", 48.14, 11.58),
    ("milan", 45.46, 9.19),
];

pub(crate) const CATEGORIES: [&str; 11] = [
    "books",
    "clothing",
    "home",
    "beauty",
    "groceries",
    "toys",
    "sports",
    "electronics",
    "gift_cards",
    "luxury",
    "sneakers",
];

/// A legitimate user.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub city: usize,
    pub home: Location,
    pub devices: Vec<String>,
    pub home_ip: String,
    pub mobile_ip: String,
    pub cards: Vec<String>,
    pub billing_region: String,
    pub peak_hour: f64,
    pub orders_per_day: f64,
    pub amount_mu: f64,
    pub cat_weights: Vec<f64>,
    pub created: i64,
    pub refund_prone: bool,
    /// Sneaker / gadget collectors: bursts of high-risk orders at drop times, like bots.
    pub collector: bool,
}

/// Event collector with id counters.
pub(crate) struct Gen {
    pub rng: ChaCha8Rng,
    pub events: Vec<SimEvent>,
    pub next_order: u64,
    pub next_id: u64,
    pub start: i64,
    pub end: i64,
}

impl Gen {
    pub fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    pub fn push(&mut self, event: Event, fraud: bool, pattern: &str) {
        self.events.push(SimEvent {
            event,
            fraud,
            pattern: pattern.to_string(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub fn account(
        &mut self,
        user: &str,
        ts: i64,
        kind: AccountEventKind,
        device: Option<&str>,
        order: Option<&str>,
        fraud: bool,
        pattern: &str,
    ) {
        self.push(
            Event::Account(AccountEvent {
                user_id: user.to_string(),
                ts,
                kind,
                device_fp: device.map(str::to_string),
                order_id: order.map(str::to_string),
            }),
            fraud,
            pattern,
        );
    }

    /// Emit an order and its payment attempts (`failures` declines before the outcome).
    pub fn order(
        &mut self,
        mut order: Order,
        failures: u32,
        succeed: bool,
        fraud: bool,
        pattern: &str,
    ) -> String {
        self.next_order += 1;
        order.order_id = format!("o{}", self.next_order);
        let id = order.order_id.clone();
        let mut t = order.ts;
        for k in 0..=failures {
            let last = k == failures;
            if last && !succeed && failures > 0 {
                break;
            }
            t += self.rng.random_range(5..40);
            self.push(
                Event::Payment(PaymentEvent {
                    order_id: id.clone(),
                    user_id: order.user_id.clone(),
                    ts: t,
                    amount: order.amount,
                    instrument_id: order.instrument_id.clone(),
                    device_fp: order.device_fp.clone(),
                    ip_fp: order.ip_fp.clone(),
                    success: last && succeed,
                }),
                fraud,
                pattern,
            );
        }
        self.push(Event::Order(order), fraud, pattern);
        id
    }

    pub fn location(&mut self, city: usize, jitter: f64) -> Location {
        let (name, lat, lon) = CITIES[city];
        let id = self.id("a");
        Location {
            id,
            region: name.to_string(),
            lat: lat + self.rng.random_range(-jitter..=jitter),
            lon: lon + self.rng.random_range(-jitter..=jitter),
        }
    }

    /// A basket of `n` lines drawn from category weights, scaled to `total`.
    pub fn basket(&mut self, weights: &[f64], n: usize, total: f64) -> Vec<LineItem> {
        let sum: f64 = weights.iter().sum();
        let mut parts: Vec<(usize, f64)> = (0..n)
            .map(|_| {
                let mut x = self.rng.random_range(0.0..sum);
                let mut c = 0;
                while c + 1 < weights.len() && x >= weights[c] {
                    x -= weights[c];
                    c += 1;
                }
                (c, self.rng.random_range(0.5..1.5))
            })
            .collect();
        let s: f64 = parts.iter().map(|p| p.1).sum();
        parts
            .drain(..)
            .map(|(c, w)| LineItem {
                category: CATEGORIES[c].to_string(),
                amount: (total * w / s * 100.0).round() / 100.0,
                quantity: if self.rng.random_bool(0.2) { 2 } else { 1 },
            })
            .collect()
    }

    /// A time on day `day` around `peak` hour (wrapped), or uniform with probability `uniform`.
    pub fn time_on_day(&mut self, day: i64, peak: f64, spread: f64, uniform: f64) -> i64 {
        let hour = if self.rng.random_bool(uniform) {
            self.rng.random_range(0.0..24.0)
        } else {
            let n = Normal::new(peak, spread).expect("valid normal");
            n.sample(&mut self.rng).rem_euclid(24.0)
        };
        self.start + day * 86_400 + (hour * 3600.0) as i64
    }
}

/// Generate the whole labelled stream, sorted by event time.
pub fn simulate(p: &SimParams) -> Result<impl Iterator<Item = SimEvent>> {
    if p.users == 0 || p.days == 0 {
        return Err(Error::Invalid(
            "simulation needs at least one user and one day".into(),
        ));
    }
    for (name, r) in [
        ("card-testing-rate", p.card_testing_rate),
        ("account-takeover-rate", p.account_takeover_rate),
        ("promo-abuse-rate", p.promo_abuse_rate),
        ("reseller-bot-rate", p.reseller_bot_rate),
        ("friendly-fraud-rate", p.friendly_fraud_rate),
    ] {
        if !(0.0..=1000.0).contains(&r) || r.is_nan() {
            return Err(Error::Invalid(format!(
                "--{name} must be in 0..=1000 incidents per 1,000 users per day, got {r}"
            )));
        }
    }
    let days = i64::from(p.days);
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(p.seed),
        events: Vec::new(),
        next_order: 0,
        next_id: 0,
        start: SIM_START,
        end: SIM_START + days * 86_400,
    };
    let mut users = legit::make_users(&mut g, p.users);
    for u in users.iter_mut() {
        legit::legit_user_events(&mut g, u, days);
    }
    patterns::inject(&mut g, &users, p);
    let mut events = g.events;
    let end = g.end;
    events.retain(|e| e.event.ts() < end);
    // stable sort keeps each order's own events in emission order on equal timestamps
    events.sort_by_key(|e| e.event.ts());
    Ok(events.into_iter())
}

/// Write events as JSON lines.
pub fn write_jsonl(events: impl Iterator<Item = SimEvent>, path: &Path) -> Result<usize> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    let mut n = 0;
    for e in events {
        serde_json::to_writer(&mut w, &e)?;
        w.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        n += 1;
    }
    w.flush().map_err(|e| Error::io(path, e))?;
    Ok(n)
}
