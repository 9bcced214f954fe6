//! Legitimate users and their everyday behaviour, noise included.

use rand::Rng;
use rand_distr::{Distribution, Gamma, LogNormal};

use super::{Gen, User, CATEGORIES, CITIES, LEGIT};
use crate::event::{AccountEventKind, Location, Order};

pub(super) fn make_users(g: &mut Gen, n: usize) -> Vec<User> {
    let rate = Gamma::new(1.5, 0.08).expect("valid gamma");
    let mut users: Vec<User> = Vec::with_capacity(n);
    let mut shared_houses: Vec<(Location, String, usize)> = Vec::new();
    for i in 0..n {
        let id = format!("u{i}");
        let city = g.rng.random_range(0..CITIES.len());
        // families share devices and address; student houses share an address and Wi-Fi
        let (home, home_ip, shared_device) = if i > 0 && g.rng.random_bool(0.12) {
            let other = &users[g.rng.random_range(0..i)];
            let dev = g.rng.random_bool(0.5).then(|| other.devices[0].clone());
            (other.home.clone(), other.home_ip.clone(), dev)
        } else if g.rng.random_bool(0.03) || (!shared_houses.is_empty() && g.rng.random_bool(0.04))
        {
            if shared_houses.is_empty() || g.rng.random_bool(0.2) {
                let loc = g.location(city, 0.15);
                let ip = g.id("ip");
                shared_houses.push((loc, ip, 0));
            }
            let k = g.rng.random_range(0..shared_houses.len());
            shared_houses[k].2 += 1;
            (shared_houses[k].0.clone(), shared_houses[k].1.clone(), None)
        } else {
            let loc = g.location(city, 0.2);
            (loc, g.id("ip"), None)
        };
        let city = CITIES
            .iter()
            .position(|c| c.0 == home.region)
            .unwrap_or(city);
        let mut devices = vec![shared_device.unwrap_or_else(|| g.id("d"))];
        if g.rng.random_bool(0.4) {
            devices.push(g.id("d"));
        }
        let mut cards = vec![g.id("c")];
        if g.rng.random_bool(0.3) {
            cards.push(g.id("c"));
        }
        let billing_region = if g.rng.random_bool(0.06) {
            CITIES[g.rng.random_range(0..CITIES.len())].0.to_string()
        } else {
            home.region.clone()
        };
        let night_owl = g.rng.random_bool(0.12);
        let peak_hour = if night_owl {
            g.rng.random_range(22.0..27.0) % 24.0
        } else {
            g.rng.random_range(9.0..22.0)
        };
        let mut cat_weights: Vec<f64> = CATEGORIES
            .iter()
            .map(|_| g.rng.random_range(0.0..1.0f64).powi(3))
            .collect();
        cat_weights[7] *= 0.6; // electronics
        cat_weights[8] *= 0.3; // gift cards
        cat_weights[9] *= 0.2; // luxury
        cat_weights[10] *= 0.4; // sneakers
        let joined_during = g.rng.random_bool(0.15);
        let created = if joined_during {
            g.start + g.rng.random_range(0..(g.end - g.start))
        } else {
            g.start - g.rng.random_range(86_400..1_000 * 86_400)
        };
        users.push(User {
            id,
            city,
            home,
            devices,
            home_ip,
            mobile_ip: g.id("ipm"),
            cards,
            billing_region,
            peak_hour,
            orders_per_day: rate.sample(&mut g.rng),
            amount_mu: g.rng.random_range(3.0..4.8),
            cat_weights,
            created,
            refund_prone: g.rng.random_bool(0.05),
            collector: false,
        });
        if g.rng.random_bool(0.03) {
            let u = users.last_mut().expect("just pushed");
            u.collector = true;
            u.cat_weights[7] = 1.0;
            u.cat_weights[10] = 2.0;
            u.amount_mu = g.rng.random_range(4.6..5.6);
            u.orders_per_day = u.orders_per_day.max(0.15);
        }
    }
    users
}

/// One legitimate order of `u` on `day` (at `at` when given); returns its time.
fn legit_order(g: &mut Gen, u: &mut User, day: i64, first: bool, at: Option<i64>) -> Option<i64> {
    let mut ts = at.unwrap_or_else(|| g.time_on_day(day, u.peak_hour, 2.5, 0.1));
    if ts < u.created {
        ts = u.created + g.rng.random_range(60..7200);
    }
    if ts >= g.end {
        return None;
    }
    let amount_dist = LogNormal::new(u.amount_mu, 0.7).expect("valid lognormal");
    let mut amount: f64 = amount_dist.sample(&mut g.rng);
    if g.rng.random_bool(0.03) {
        amount *= g.rng.random_range(3.0..8.0); // the occasional big purchase
    }
    let amount = (amount.max(2.0) * 100.0).round() / 100.0;
    let items_per_order = if u.collector { 1..=2 } else { 1..=4 };
    if g.rng.random_bool(0.03) {
        // new phone: becomes the main device from now on
        let d = g.id("d");
        u.devices.insert(0, d);
    }
    let device = if g.rng.random_bool(0.8) || u.devices.len() == 1 {
        u.devices[0].clone()
    } else {
        u.devices[1].clone()
    };
    let travelling = g.rng.random_bool(0.04);
    let (ip, shipping) = if travelling {
        let c = g.rng.random_range(0..CITIES.len());
        let ship = if g.rng.random_bool(0.5) {
            g.location(c, 0.1)
        } else {
            u.home.clone()
        };
        (g.id("ipt"), ship)
    } else if g.rng.random_bool(0.2) {
        (u.mobile_ip.clone(), u.home.clone())
    } else {
        let ship = if g.rng.random_bool(0.03) {
            g.location(u.city, 0.3) // a gift sent to a friend
        } else {
            u.home.clone()
        };
        (u.home_ip.clone(), ship)
    };
    let card = if u.cards.len() > 1 && g.rng.random_bool(0.3) {
        u.cards[1].clone()
    } else {
        u.cards[0].clone()
    };
    if g.rng.random_bool(0.01) {
        let c = g.id("c"); // new card
        u.cards.insert(0, c);
    }
    let n_items = g.rng.random_range(items_per_order);
    let weights = u.cat_weights.clone();
    let items = g.basket(&weights, n_items, amount);
    let promo = (first && g.rng.random_bool(0.6)) || g.rng.random_bool(0.05);
    let declines = if g.rng.random_bool(0.04) {
        g.rng.random_range(1..=3)
    } else {
        0
    };
    if g.rng.random_bool(0.3) {
        let login = ts - g.rng.random_range(30..600);
        g.account(
            &u.id,
            login,
            AccountEventKind::Login,
            Some(&device),
            None,
            false,
            LEGIT,
        );
    }
    let order = Order {
        order_id: String::new(),
        user_id: u.id.clone(),
        ts,
        amount,
        device_fp: device,
        ip_fp: ip,
        instrument_id: card,
        shipping,
        billing_region: u.billing_region.clone(),
        items,
        account_created_ts: None,
        promo_code: promo.then(|| "WELCOME10".to_string()),
    };
    let succeed = !g.rng.random_bool(0.01);
    let id = g.order(order, declines, succeed, false, LEGIT);
    let refund_p = if u.refund_prone { 0.2 } else { 0.03 };
    if g.rng.random_bool(refund_p) {
        let t = ts + g.rng.random_range(86_400..10 * 86_400);
        g.account(
            &u.id,
            t,
            AccountEventKind::Refund,
            None,
            Some(&id),
            false,
            LEGIT,
        );
    } else if g.rng.random_bool(0.03) {
        let t = ts + g.rng.random_range(600..86_400);
        g.account(
            &u.id,
            t,
            AccountEventKind::Cancel,
            None,
            Some(&id),
            false,
            LEGIT,
        );
    }
    Some(ts)
}

pub(super) fn legit_user_events(g: &mut Gen, u: &mut User, days: i64) {
    if u.created >= g.start {
        g.account(
            &u.id,
            u.created,
            AccountEventKind::Created,
            Some(&u.devices[0].clone()),
            None,
            false,
            LEGIT,
        );
    }
    let mut first = u.created >= g.start;
    for day in 0..days {
        let k = rand_distr::Poisson::new(u.orders_per_day.max(1e-6))
            .map(|p| p.sample(&mut g.rng) as u32)
            .unwrap_or(0);
        for _ in 0..k {
            let Some(ts) = legit_order(g, u, day, first, None) else {
                continue;
            };
            first = false;
            // forgotten items, split baskets, collectors at a drop: follow-ups within the hour
            let p_follow = if u.collector { 0.5 } else { 0.06 };
            if g.rng.random_bool(p_follow) {
                let mut t = ts;
                for _ in 0..g.rng.random_range(1..=3) {
                    t += g.rng.random_range(90..2400);
                    legit_order(g, u, day, false, Some(t));
                }
            }
        }
        // password resets, e-mail changes: about once a quarter
        if g.rng.random_bool(1.0 / 90.0) {
            let ts = g.time_on_day(day, u.peak_hour, 3.0, 0.2);
            g.account(
                &u.id,
                ts,
                AccountEventKind::CredentialChange,
                Some(&u.devices[0].clone()),
                None,
                false,
                LEGIT,
            );
        }
    }
}
