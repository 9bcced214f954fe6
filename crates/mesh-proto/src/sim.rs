//! Seeded event generators: realistic enough mixes of browsing and ordering
//! for load tests, benchmarks and the end-to-end tests ([`events`]), and a
//! labelled purchase history with loyal, lapsed and one-time buyers
//! ([`history`]). They live with the event schema so every service, bench
//! and test draws from the same generator; the driver that publishes them
//! into a running mesh is ingest's (`mesh_ingest::traffic`).
use crate::events::v1::envelope::Body;
use crate::events::v1::{self as ev, Context, Envelope};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CATEGORIES: &[&str] = &["shoes", "books", "electronics", "home", "toys", "beauty"];
/// Delivery regions: name and centre (lat, lon), around one city.
const REGIONS: &[(&str, f64, f64)] = &[
    ("north", 52.56, 13.40),
    ("east", 52.51, 13.50),
    ("south", 52.45, 13.40),
];

/// A shipping location within ~3 km of a region's centre.
fn ship_to(rng: &mut StdRng) -> ev::Location {
    let (region, lat, lon) = REGIONS[rng.random_range(0..REGIONS.len())];
    ev::Location {
        lat: lat + rng.random_range(-0.025..0.025),
        lon: lon + rng.random_range(-0.04..0.04),
        country: "DE".into(),
        region: region.into(),
    }
}

/// A stable 64-bit hash of `s` (FNV-1a): per-user attributes that do not
/// draw from the generator, so adding them leaves every seeded sequence as
/// it was.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The context of `user`'s events: the same device, network and (for card
/// payments) card on every event, as a returning customer's are. Without
/// them every order looked like a first order from a new device, which
/// fraud models rightly find suspicious.
fn user_context(user: &str, device_type: &str) -> Context {
    let h = stable_hash(user);
    Context {
        device_type: device_type.into(),
        device_hash: format!("dev-{:012x}", h & 0xffff_ffff_ffff),
        ip_hash: format!("ip-{:08x}", (h >> 20) & 0xffff_ffff),
        ..Default::default()
    }
}

/// Hash of `user`'s payment card.
fn card_of(user: &str) -> String {
    format!(
        "card-{:012x}",
        stable_hash(user).rotate_left(17) & 0xffff_ffff_ffff
    )
}

/// A one-line order of `(sku, category, quantity, unit price)` from
/// warehouse `wh-1`, shipped within a region.
fn order(
    order_id: String,
    (sku, category, quantity, price): (String, String, u32, f64),
    payment_method: &str,
    rng: &mut StdRng,
) -> ev::OrderPlaced {
    ev::OrderPlaced {
        order_id,
        items: vec![ev::LineItem {
            sku,
            category,
            quantity,
            unit_price: price,
            ..Default::default()
        }],
        subtotal: price * quantity as f64,
        total: price * quantity as f64,
        currency: "USD".into(),
        payment_method: payment_method.into(),
        ship_to: Some(ship_to(rng)),
        warehouse_id: "wh-1".into(),
        ..Default::default()
    }
}

/// Generates `n` events for `users` users, seeded, starting at `start_ms`
/// and moving forward a few seconds per event. Event ids are
/// `<prefix>-<i>`.
pub fn events(seed: u64, prefix: &str, users: u32, n: usize, start_ms: i64) -> Vec<Envelope> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = start_ms;
    (0..n)
        .map(|i| {
            t += rng.random_range(1..3000);
            let user = format!("u{}", rng.random_range(0..users.max(1)));
            let sku = format!("sku-{}", rng.random_range(0..500));
            let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())].to_string();
            let price = (rng.random_range(100..20_000) as f64) / 100.0;
            let body = match rng.random_range(0..100) {
                0..=9 => Body::SessionStarted(ev::SessionStarted::default()),
                10..=39 => Body::ProductView(ev::ProductView {
                    sku,
                    category,
                    price,
                    currency: "USD".into(),
                    ..Default::default()
                }),
                40..=49 => Body::Search(ev::Search {
                    query: category,
                    results: 20,
                }),
                50..=64 => Body::AddToCart(ev::AddToCart {
                    sku,
                    category,
                    quantity: 1,
                    unit_price: price,
                    currency: "USD".into(),
                }),
                65..=69 => Body::RemoveFromCart(ev::RemoveFromCart { sku, quantity: 1 }),
                70..=74 => Body::CheckoutStarted(ev::CheckoutStarted {
                    cart_total: price,
                    currency: "USD".into(),
                    items: 1,
                    ..Default::default()
                }),
                75..=84 => {
                    let q = rng.random_range(1..4u32);
                    // Cash on delivery joins a delivery wave at once; card
                    // orders wait for a payment event.
                    let pay = if rng.random_bool(0.5) { "cod" } else { "card" };
                    let line = (sku, category, q, price);
                    let mut o = order(format!("{prefix}-o{i}"), line, pay, &mut rng);
                    if pay == "card" {
                        o.payment_hash = card_of(&user);
                    }
                    Body::OrderPlaced(o)
                }
                85..=89 => Body::Login(ev::Login {
                    success: true,
                    method: "password".into(),
                }),
                90..=94 => Body::ReviewSubmitted(ev::ReviewSubmitted {
                    sku,
                    rating: rng.random_range(1..6),
                    text: "fine".into(),
                    ..Default::default()
                }),
                _ => Body::PageView(ev::PageView {
                    path: "/".into(),
                    dwell_seconds: rng.random_range(0..120) as f64,
                }),
            };
            let context = Some(user_context(&user, ["web", "ios", "android"][i % 3]));
            Envelope {
                event_id: format!("{prefix}-{i}"),
                tenant_id: "demo".into(),
                user_id: user,
                occurred_at_ms: t,
                source: "sim".into(),
                context,
                body: Some(body),
            }
        })
        .collect()
}

/// How a backfilled user behaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trajectory {
    /// Orders every one to two weeks up to now.
    Loyal,
    /// Ordered regularly, then stopped 45 to 100 days ago.
    Lapsed,
    /// One order, long ago.
    OneTime,
}

/// Purchase history of `users` users (`<prefix>-u<i>`) over the last
/// `days` days, in time order, seeded: 40% loyal, 35% lapsed, 25% one-time
/// (see [`Trajectory`]). Card-paid, so the orders feed churn, profile,
/// fraud and demand history without opening delivery waves in the past.
/// Returns the events and each user's trajectory (the ground truth).
/// With `days` under about 115 some lapsed users may lapse before their
/// first order and have no events.
pub fn history(
    seed: u64,
    prefix: &str,
    users: u32,
    days: u32,
    now_ms: i64,
) -> (Vec<Envelope>, Vec<(String, Trajectory)>) {
    const DAY: i64 = 86_400_000;
    let mut rng = StdRng::seed_from_u64(seed);
    let start = now_ms - i64::from(days) * DAY;
    let mut out = Vec::new();
    let mut truth = Vec::new();
    for u in 0..users {
        let user = format!("{prefix}-u{u}");
        let kind = match rng.random_range(0..100) {
            0..=39 => Trajectory::Loyal,
            40..=74 => Trajectory::Lapsed,
            _ => Trajectory::OneTime,
        };
        let mut t = start + rng.random_range(0..14) * DAY;
        let stop = match kind {
            Trajectory::Loyal => now_ms - DAY,
            Trajectory::Lapsed => now_ms - rng.random_range(45..100) * DAY,
            Trajectory::OneTime => t,
        };
        let mut n = 0;
        while t <= stop {
            let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())].to_string();
            let sku = format!("sku-{}", rng.random_range(0..500));
            let price = (rng.random_range(500..15_000) as f64) / 100.0;
            let q = rng.random_range(1..3u32);
            out.push(Envelope {
                event_id: format!("{user}-o{n}"),
                tenant_id: "demo".into(),
                user_id: user.clone(),
                occurred_at_ms: t + rng.random_range(0..DAY / 2),
                source: "sim-history".into(),
                context: Some(user_context(&user, "web")),
                body: Some(Body::OrderPlaced(ev::OrderPlaced {
                    payment_hash: card_of(&user),
                    ..order(
                        format!("{user}-o{n}"),
                        (sku, category, q, price),
                        "card",
                        &mut rng,
                    )
                })),
            });
            n += 1;
            if kind == Trajectory::OneTime {
                break;
            }
            t += rng.random_range(7..15) * DAY;
        }
        truth.push((user, kind));
    }
    out.sort_by_key(|e| e.occurred_at_ms);
    (out, truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_follows_each_trajectory() {
        const DAY: i64 = 86_400_000;
        let now = 1_800_000_000_000;
        let (evs, truth) = history(7, "t", 200, 120, now);
        assert_eq!(truth.len(), 200);
        assert!(evs
            .windows(2)
            .all(|w| w[0].occurred_at_ms <= w[1].occurred_at_ms));
        let last: std::collections::HashMap<&str, (i64, usize)> =
            evs.iter().fold(Default::default(), |mut m, e| {
                let x = m.entry(e.user_id.as_str()).or_insert((0, 0));
                *x = (x.0.max(e.occurred_at_ms), x.1 + 1);
                m
            });
        for (user, kind) in &truth {
            let (at, n) = last[user.as_str()];
            match kind {
                Trajectory::Loyal => assert!(now - at < 16 * DAY && n >= 5, "{user}: {n} orders"),
                Trajectory::Lapsed => assert!(now - at >= 45 * DAY, "{user}"),
                Trajectory::OneTime => assert_eq!(n, 1, "{user}"),
            }
        }
        for k in [Trajectory::Loyal, Trajectory::Lapsed, Trajectory::OneTime] {
            assert!(truth.iter().any(|(_, t)| *t == k), "no {k:?} user");
        }
        // Same seed, same history.
        assert_eq!(history(7, "t", 200, 120, now).0, evs);
    }

    #[test]
    fn a_user_orders_from_one_device_and_card() {
        let evs = events(3, "s", 20, 3_000, 1_800_000_000_000);
        let mut seen: std::collections::HashMap<&str, (String, String, String)> =
            Default::default();
        let mut orders = 0;
        for e in &evs {
            let ctx = e.context.as_ref().unwrap();
            assert!(!ctx.device_hash.is_empty() && !ctx.ip_hash.is_empty());
            let Some(Body::OrderPlaced(o)) = &e.body else {
                continue;
            };
            orders += 1;
            let ship = o.ship_to.as_ref().unwrap();
            assert!(REGIONS.iter().any(|r| r.0 == ship.region));
            let key = (
                String::new(),
                ctx.device_hash.clone(),
                if o.payment_method == "card" {
                    o.payment_hash.clone()
                } else {
                    String::new()
                },
            );
            let first = seen.entry(e.user_id.as_str()).or_insert(key.clone());
            assert_eq!((&first.0, &first.1), (&key.0, &key.1), "{}", e.user_id);
            if !key.2.is_empty() && !first.2.is_empty() {
                assert_eq!(first.2, key.2);
            }
        }
        assert!(orders > 100 && seen.len() == 20);
        // Different users, different devices.
        let devices: std::collections::HashSet<&String> = seen.values().map(|k| &k.1).collect();
        assert_eq!(devices.len(), 20);
    }
}
