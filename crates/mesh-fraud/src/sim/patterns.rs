//! Injected fraud patterns. Each draws its incident count from a Poisson law with the
//! configured rate and labels every event it emits.

use rand::Rng;
use rand_distr::{Distribution, LogNormal, Poisson};

use super::{Gen, SimParams, User, CATEGORIES, CITIES};
use crate::event::{AccountEventKind, Order};

fn incidents(g: &mut Gen, rate_per_1k_day: f64, users: usize) -> u64 {
    let days = (g.end - g.start) as f64 / 86_400.0;
    let lambda = rate_per_1k_day * users as f64 / 1000.0 * days;
    if lambda <= 0.0 {
        return 0;
    }
    Poisson::new(lambda)
        .map(|p| p.sample(&mut g.rng) as u64)
        .unwrap_or(0)
}

fn random_ts(g: &mut Gen) -> i64 {
    g.rng.random_range(g.start..g.end)
}

fn weights_for(cats: &[&str]) -> Vec<f64> {
    CATEGORIES
        .iter()
        .map(|c| if cats.contains(c) { 1.0 } else { 0.02 })
        .collect()
}

pub(super) fn inject(g: &mut Gen, users: &[User], p: &SimParams) {
    let n = users.len();
    for _ in 0..incidents(g, p.card_testing_rate, n) {
        card_testing(g);
    }
    for _ in 0..incidents(g, p.account_takeover_rate, n) {
        let victim = &users[g.rng.random_range(0..n)];
        account_takeover(g, victim);
    }
    for _ in 0..incidents(g, p.promo_abuse_rate, n) {
        promo_abuse(g);
    }
    for _ in 0..incidents(g, p.reseller_bot_rate, n) {
        reseller_bot(g);
    }
    for _ in 0..incidents(g, p.friendly_fraud_rate, n) {
        let u = &users[g.rng.random_range(0..n)];
        friendly_fraud(g, u);
    }
}

/// Stolen card numbers tried with small orders from one device, most declined.
fn card_testing(g: &mut Gen) {
    const P: &str = "card_testing";
    let user = g.id("uct");
    let device = g.id("d");
    let ip = g.id("ipx");
    let city = g.rng.random_range(0..CITIES.len());
    let ship = g.location(city, 0.3);
    let mut ts = random_ts(g);
    // half of them register first, the others reuse a fresh guest-like account
    if g.rng.random_bool(0.5) {
        let created = ts - g.rng.random_range(60..3600);
        g.account(
            &user,
            created,
            AccountEventKind::Created,
            Some(&device),
            None,
            true,
            P,
        );
    }
    let attempts = g.rng.random_range(3..=12);
    let careful = g.rng.random_bool(0.3);
    let mut card = g.id("c");
    let digital = g.rng.random_bool(0.6);
    for _ in 0..attempts {
        if g.rng.random_bool(0.6) {
            card = g.id("c");
        }
        let amount = if careful {
            g.rng.random_range(15.0..80.0f64)
        } else {
            g.rng.random_range(1.0..25.0f64)
        };
        let amount = (amount * 100.0).round() / 100.0;
        let weights = if digital {
            weights_for(&["gift_cards"])
        } else {
            weights_for(&["books", "beauty", "groceries"])
        };
        let items = g.basket(&weights, 1, amount);
        let declines = if careful {
            u32::from(g.rng.random_bool(0.3))
        } else {
            g.rng.random_range(0..=2)
        };
        let succeed = g.rng.random_bool(if careful { 0.6 } else { 0.25 });
        let order = Order {
            order_id: String::new(),
            user_id: user.clone(),
            ts,
            amount,
            device_fp: device.clone(),
            ip_fp: ip.clone(),
            instrument_id: card.clone(),
            shipping: ship.clone(),
            billing_region: CITIES[g.rng.random_range(0..CITIES.len())].0.to_string(),
            items,
            account_created_ts: None,
            promo_code: None,
        };
        g.order(order, declines, succeed, true, P);
        ts += if careful {
            g.rng.random_range(600..7200)
        } else {
            g.rng.random_range(20..600)
        };
    }
}

/// Someone logs into a real account from a new device, often changes credentials, and buys
/// resellable goods, often shipped elsewhere.
fn account_takeover(g: &mut Gen, victim: &User) {
    const P: &str = "account_takeover";
    let device = g.id("d");
    let ip = g.id("ipx");
    let mut ts = random_ts(g).max(victim.created + 86_400);
    if ts >= g.end {
        return;
    }
    g.account(
        &victim.id,
        ts,
        AccountEventKind::Login,
        Some(&device),
        None,
        true,
        P,
    );
    if g.rng.random_bool(0.65) {
        ts += g.rng.random_range(60..1800);
        g.account(
            &victim.id,
            ts,
            AccountEventKind::CredentialChange,
            Some(&device),
            None,
            true,
            P,
        );
    }
    let drop_city = g.rng.random_range(0..CITIES.len());
    let ship = if g.rng.random_bool(0.65) {
        g.location(drop_city, 0.3)
    } else {
        victim.home.clone()
    };
    let orders = g.rng.random_range(1..=3);
    let amounts = LogNormal::new(5.6, 0.7).expect("valid lognormal");
    for _ in 0..orders {
        ts += g.rng.random_range(120..4 * 3600);
        let amount: f64 = amounts.sample(&mut g.rng);
        let amount = (amount * 100.0).round() / 100.0;
        let weights = if g.rng.random_bool(0.75) {
            weights_for(&["electronics", "gift_cards", "luxury"])
        } else {
            victim.cat_weights.clone()
        };
        let n_items = g.rng.random_range(1..=3);
        let items = g.basket(&weights, n_items, amount);
        let card = if g.rng.random_bool(0.85) {
            victim.cards[0].clone()
        } else {
            g.id("c")
        };
        let order = Order {
            order_id: String::new(),
            user_id: victim.id.clone(),
            ts,
            amount,
            device_fp: device.clone(),
            ip_fp: ip.clone(),
            instrument_id: card,
            shipping: ship.clone(),
            billing_region: victim.billing_region.clone(),
            items,
            account_created_ts: None,
            promo_code: None,
        };
        g.order(order, 0, true, true, P);
    }
}

/// One person opens many accounts to reuse a new-customer promotion.
fn promo_abuse(g: &mut Gen) {
    const P: &str = "promo_abuse";
    let city = g.rng.random_range(0..CITIES.len());
    let base_device = g.id("d");
    let base_ip = g.id("ipx");
    let base_addr = g.location(city, 0.2);
    let accounts = g.rng.random_range(3..=10);
    let mut ts = random_ts(g);
    let rotate_devices = g.rng.random_bool(0.3);
    let rotate_addresses = g.rng.random_bool(0.4);
    for _ in 0..accounts {
        let user = g.id("upa");
        let device = if rotate_devices {
            g.id("d")
        } else {
            base_device.clone()
        };
        let ship = if rotate_addresses {
            // a neighbouring flat: different id, same place
            let mut a = g.location(city, 0.0);
            a.lat = base_addr.lat + g.rng.random_range(-0.002..0.002);
            a.lon = base_addr.lon + g.rng.random_range(-0.002..0.002);
            a
        } else {
            base_addr.clone()
        };
        let ip = if g.rng.random_bool(0.7) {
            base_ip.clone()
        } else {
            g.id("ipm")
        };
        g.account(
            &user,
            ts,
            AccountEventKind::Created,
            Some(&device),
            None,
            true,
            P,
        );
        ts += g.rng.random_range(120..3600);
        let amount = (g.rng.random_range(15.0..90.0f64) * 100.0).round() / 100.0;
        let weights: Vec<f64> = (0..CATEGORIES.len())
            .map(|_| g.rng.random_range(0.1..1.0))
            .collect();
        let n_items = g.rng.random_range(1..=3);
        let items = g.basket(&weights, n_items, amount);
        let order = Order {
            order_id: String::new(),
            user_id: user.clone(),
            ts,
            amount,
            device_fp: device,
            ip_fp: ip,
            instrument_id: g.id("c"),
            shipping: ship,
            billing_region: CITIES[city].0.to_string(),
            items,
            account_created_ts: None,
            promo_code: Some("WELCOME10".to_string()),
        };
        g.order(order, 0, true, true, P);
        ts += g.rng.random_range(600..12 * 3600);
    }
}

/// A bot buying limited items in bulk for resale, from a data-centre IP, at any hour.
fn reseller_bot(g: &mut Gen) {
    const P: &str = "reseller_bot";
    let user = g.id("urb");
    let device = g.id("d");
    let ip = g.id("ipdc");
    let city = g.rng.random_range(0..CITIES.len());
    let addresses: Vec<_> = (0..g.rng.random_range(1..=3))
        .map(|_| g.location(city, 0.3))
        .collect();
    let cards: Vec<String> = (0..g.rng.random_range(1..=4)).map(|_| g.id("c")).collect();
    let mut ts = random_ts(g);
    let created = ts - g.rng.random_range(3600..20 * 86_400);
    g.account(
        &user,
        created,
        AccountEventKind::Created,
        Some(&device),
        None,
        true,
        P,
    );
    let orders = g.rng.random_range(4..=15);
    let stealthy = g.rng.random_bool(0.4);
    for _ in 0..orders {
        let ip = if stealthy { g.id("ipm") } else { ip.clone() };
        let per_unit = g.rng.random_range(90.0..260.0f64);
        let qty = if stealthy {
            g.rng.random_range(1..=2u32)
        } else {
            g.rng.random_range(1..=4u32)
        };
        let amount = (per_unit * f64::from(qty) * 100.0).round() / 100.0;
        let cat = if g.rng.random_bool(0.7) {
            "sneakers"
        } else {
            "electronics"
        };
        let items = vec![crate::event::LineItem {
            category: cat.to_string(),
            amount,
            quantity: qty,
        }];
        let order = Order {
            order_id: String::new(),
            user_id: user.clone(),
            ts,
            amount,
            device_fp: device.clone(),
            ip_fp: ip,
            instrument_id: cards[g.rng.random_range(0..cards.len())].clone(),
            shipping: addresses[g.rng.random_range(0..addresses.len())].clone(),
            billing_region: CITIES[city].0.to_string(),
            items,
            account_created_ts: None,
            promo_code: None,
        };
        let declines = u32::from(g.rng.random_bool(0.15));
        g.order(order, declines, true, true, P);
        ts += if stealthy {
            g.rng.random_range(1800..6 * 3600)
        } else {
            g.rng.random_range(30..2400)
        };
    }
}

/// A real customer orders as usual and later claims the parcel never arrived.
fn friendly_fraud(g: &mut Gen, u: &User) {
    const P: &str = "friendly_fraud";
    let day = g.rng.random_range(0..((g.end - g.start) / 86_400));
    let ts = g
        .time_on_day(day, u.peak_hour, 2.5, 0.15)
        .max(u.created + 3600);
    if ts >= g.end {
        return;
    }
    let amount: f64 = LogNormal::new(u.amount_mu + 0.6, 0.7)
        .expect("valid lognormal")
        .sample(&mut g.rng);
    let amount = (amount * 100.0).round() / 100.0;
    let weights = if g.rng.random_bool(0.5) {
        weights_for(&["electronics", "luxury", "clothing"])
    } else {
        u.cat_weights.clone()
    };
    let n_items = g.rng.random_range(1..=3);
    let items = g.basket(&weights, n_items, amount);
    let order = Order {
        order_id: String::new(),
        user_id: u.id.clone(),
        ts,
        amount,
        device_fp: u.devices[0].clone(),
        ip_fp: if g.rng.random_bool(0.8) {
            u.home_ip.clone()
        } else {
            u.mobile_ip.clone()
        },
        instrument_id: u.cards[0].clone(),
        shipping: u.home.clone(),
        billing_region: u.billing_region.clone(),
        items,
        account_created_ts: None,
        promo_code: None,
    };
    let id = g.order(order, 0, true, true, P);
    let t = ts + g.rng.random_range(3 * 86_400..20 * 86_400);
    g.account(&u.id, t, AccountEventKind::Refund, None, Some(&id), true, P);
}
