//! Seeded event generators: realistic enough mixes of browsing and ordering
//! for load tests, benchmarks and the end-to-end tests ([`events`]), and a
//! labelled purchase history with loyal, lapsed and one-time buyers
//! ([`history`]), and the same shop's orders continued in real time
//! ([`shop`], [`ShopOrders`]), so a live shop orders at the rate of the
//! history it published. They live with the event schema so every
//! service, bench and test draws from the same generator; the driver that
//! publishes them into a running mesh is ingest's (`mesh_ingest::traffic`).
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::events::v1::envelope::Body;
use crate::events::v1::{self as ev, Context, Envelope};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The simulated shop's warehouse: every order of the shop ships from it
/// (the simulator's opening stock is set there).
pub const WAREHOUSE: &str = "wh-1";
const DAY: i64 = 86_400_000;

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
/// [`WAREHOUSE`], shipped within a region.
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
        warehouse_id: WAREHOUSE.into(),
        ..Default::default()
    }
}

/// The order a shop customer places in answer to a retention offer (or, in
/// the campaign's control group, without one): one line of the shop's
/// catalog at `at_ms`; event and order id `<user>-r-<tag>`.
pub fn answer_order(tenant: &str, user: &str, tag: &str, at_ms: i64, rng: &mut StdRng) -> Envelope {
    let line = shop_line(rng);
    let id = format!("{user}-r-{tag}");
    Envelope {
        event_id: id.clone(),
        tenant_id: tenant.into(),
        user_id: user.into(),
        occurred_at_ms: at_ms,
        source: "sim-retention".into(),
        context: Some(user_context(user, "web")),
        body: Some(Body::OrderPlaced(ev::OrderPlaced {
            payment_hash: card_of(user),
            ..order(id, line, "card", rng)
        })),
    }
}

/// Generates `n` events for `users` users, seeded, starting at `start_ms`
/// and moving forward a few seconds per event; one in ten is an order.
/// Event ids are `<prefix>-<i>`.
pub fn events(seed: u64, prefix: &str, users: u32, n: usize, start_ms: i64) -> Vec<Envelope> {
    generate(seed, prefix, users, n, start_ms, true)
}

/// [`events`] without orders: sessions, views, searches, carts, checkouts
/// started, logins, reviews and page views in the same proportions. The
/// live shop's orders come from its customers ([`ShopOrders`]) instead.
pub fn browsing(seed: u64, prefix: &str, users: u32, n: usize, start_ms: i64) -> Vec<Envelope> {
    generate(seed, prefix, users, n, start_ms, false)
}

fn generate(
    seed: u64,
    prefix: &str,
    users: u32,
    n: usize,
    start_ms: i64,
    with_orders: bool,
) -> Vec<Envelope> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = start_ms;
    (0..n)
        .map(|i| {
            t += rng.random_range(1..3000);
            let user = format!("u{}", rng.random_range(0..users.max(1)));
            let sku = format!("sku-{}", rng.random_range(0..500));
            let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())].to_string();
            let price = (rng.random_range(100..20_000) as f64) / 100.0;
            let kind = if with_orders {
                rng.random_range(0..100)
            } else {
                // The order band (75..=84) skipped.
                let k = rng.random_range(0..90);
                k + if k >= 75 { 10 } else { 0 }
            };
            let body = match kind {
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
/// first order and have no events. [`shop`] is the same history with its
/// continuation.
pub fn history(
    seed: u64,
    prefix: &str,
    users: u32,
    days: u32,
    now_ms: i64,
) -> (Vec<Envelope>, Vec<(String, Trajectory)>) {
    let s = shop(seed, prefix, users, days, now_ms);
    (s.history, s.truth)
}

/// A simulated shop: its published past and its orders from now on.
#[derive(Debug, Clone)]
pub struct Shop {
    /// The purchase history up to now ([`history`]).
    pub history: Vec<Envelope>,
    /// Each customer's trajectory (the ground truth).
    pub truth: Vec<(String, Trajectory)>,
    /// The same customers' orders after the history.
    pub orders: ShopOrders,
}

/// The line of one order of the shop: `(sku, category, quantity, unit
/// price)`.
fn shop_line(rng: &mut StdRng) -> (String, String, u32, f64) {
    let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())].to_string();
    let sku = format!("sku-{}", rng.random_range(0..500));
    let price = (rng.random_range(500..15_000) as f64) / 100.0;
    let q = rng.random_range(1..3u32);
    (sku, category, q, price)
}

/// [`history`] of `users` customers, and the process that produced it
/// continued past `now_ms` ([`ShopOrders`]): the one parameter `users`
/// sets both the history's daily volume and the live one.
pub fn shop(seed: u64, prefix: &str, users: u32, days: u32, now_ms: i64) -> Shop {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = now_ms - i64::from(days) * DAY;
    let mut out = Vec::new();
    let mut truth = Vec::new();
    // (customer, next order's day, its number) of the loyal customers.
    let mut next = Vec::new();
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
            let line = shop_line(&mut rng);
            out.push(Envelope {
                event_id: format!("{user}-o{n}"),
                tenant_id: "demo".into(),
                user_id: user.clone(),
                occurred_at_ms: t + rng.random_range(0..DAY / 2),
                source: "sim-history".into(),
                context: Some(user_context(&user, "web")),
                body: Some(Body::OrderPlaced(ev::OrderPlaced {
                    payment_hash: card_of(&user),
                    ..order(format!("{user}-o{n}"), line, "card", &mut rng)
                })),
            });
            n += 1;
            if kind == Trajectory::OneTime {
                break;
            }
            t += rng.random_range(7..15) * DAY;
        }
        if kind == Trajectory::Loyal {
            // The loop ended on the first order day past `stop`: the next one.
            next.push((user.clone(), t, n));
        }
        truth.push((user, kind));
    }
    out.sort_by_key(|e| e.occurred_at_ms);
    Shop {
        history: out,
        truth,
        orders: ShopOrders::new(seed, next),
    }
}

/// The shop's orders after its history, in real time: each loyal customer
/// keeps ordering every one to two weeks, at a time of day drawn as in the
/// history; lapsed and one-time customers stay away. So the shop's daily
/// volume (per category too) stays that of the history's last weeks,
/// where only the loyal customers still order. Seeded; the orders do not
/// depend on how often [`ShopOrders::until`] is called. Live orders pay
/// cash on delivery or by card, half each, as [`events`]' do.
#[derive(Debug, Clone)]
pub struct ShopOrders {
    rng: StdRng,
    /// `(placed at, customer, order day, order number)` of each customer's
    /// next order.
    due: BinaryHeap<Reverse<(i64, usize, i64, u32)>>,
    customers: Vec<String>,
}

impl ShopOrders {
    fn new(seed: u64, next: Vec<(String, i64, u32)>) -> Self {
        // Its own generator: the history's draws stay as they were.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5109_0bde_75c0_11fe);
        let mut due = BinaryHeap::with_capacity(next.len());
        let mut customers = Vec::with_capacity(next.len());
        for (i, (user, day, n)) in next.into_iter().enumerate() {
            due.push(Reverse((day + rng.random_range(0..DAY / 2), i, day, n)));
            customers.push(user);
        }
        ShopOrders {
            rng,
            due,
            customers,
        }
    }

    /// The customers still ordering.
    pub fn customers(&self) -> usize {
        self.customers.len()
    }

    /// When the next order is placed; `None` when no customer orders.
    pub fn next_at(&self) -> Option<i64> {
        self.due.peek().map(|Reverse(d)| d.0)
    }

    /// The orders placed up to `now_ms` not returned before, in time order.
    /// Event and order ids continue each customer's history
    /// (`<customer>-o<n>`).
    pub fn until(&mut self, now_ms: i64) -> Vec<Envelope> {
        let mut out = Vec::new();
        while let Some(&Reverse((at, i, day, n))) = self.due.peek() {
            if at > now_ms {
                break;
            }
            self.due.pop();
            let user = &self.customers[i];
            let line = shop_line(&mut self.rng);
            let pay = if self.rng.random_bool(0.5) {
                "cod"
            } else {
                "card"
            };
            let mut o = order(format!("{user}-o{n}"), line, pay, &mut self.rng);
            if pay == "card" {
                o.payment_hash = card_of(user);
            }
            out.push(Envelope {
                event_id: format!("{user}-o{n}"),
                tenant_id: "demo".into(),
                user_id: user.clone(),
                occurred_at_ms: at,
                source: "sim".into(),
                context: Some(user_context(user, "web")),
                body: Some(Body::OrderPlaced(o)),
            });
            let day = day + self.rng.random_range(7..15) * DAY;
            let at = day + self.rng.random_range(0..DAY / 2);
            self.due.push(Reverse((at, i, day, n + 1)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_follows_each_trajectory() {
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

    /// Units per (UTC day, category) of the orders in `evs`.
    fn daily_units(evs: &[Envelope]) -> std::collections::HashMap<(i64, String), f64> {
        let mut m = std::collections::HashMap::new();
        for e in evs {
            let Some(Body::OrderPlaced(o)) = &e.body else {
                continue;
            };
            for l in &o.items {
                *m.entry((e.occurred_at_ms.div_euclid(DAY), l.category.clone()))
                    .or_insert(0.0) += f64::from(l.quantity);
            }
        }
        m
    }

    /// Whether the units per category on `days` of `live` are like those of
    /// the last 28 complete days of `past`: within its range widened by its
    /// width on every day, within the range itself on at least 85% of the
    /// days (a new day falls outside the range of 28 like it one time in
    /// 15), and on average within 25% of its mean.
    fn consistent(past: &[Envelope], live: &[Envelope], days: &[i64]) -> Result<(), String> {
        let (p, l) = (daily_units(past), daily_units(live));
        let last = past.iter().map(|e| e.occurred_at_ms.div_euclid(DAY)).max();
        let recent: Vec<i64> = (1..=28).map(|k| last.unwrap_or(0) - k).collect();
        let mut outside = 0;
        for c in CATEGORIES {
            let of = |m: &std::collections::HashMap<(i64, String), f64>, d: &i64| {
                m.get(&(*d, c.to_string())).copied().unwrap_or(0.0)
            };
            let hist: Vec<f64> = recent.iter().map(|d| of(&p, d)).collect();
            let (lo, hi) = hist
                .iter()
                .fold((f64::MAX, 0.0f64), |(a, b), x| (a.min(*x), b.max(*x)));
            let mean = hist.iter().sum::<f64>() / hist.len() as f64;
            let now: Vec<f64> = days.iter().map(|d| of(&l, d)).collect();
            let live_mean = now.iter().sum::<f64>() / now.len() as f64;
            let w = hi - lo;
            if let Some(x) = now.iter().find(|x| **x < lo - w || **x > hi + w) {
                return Err(format!(
                    "{c}: {x} units a day, the history's last 4 weeks {lo}..{hi}"
                ));
            }
            outside += now.iter().filter(|x| **x < lo || **x > hi).count();
            if (live_mean - mean).abs() > 0.25 * mean {
                return Err(format!(
                    "{c}: {live_mean:.1} units a day live, {mean:.1} before"
                ));
            }
        }
        let all = days.len() * CATEGORIES.len();
        if outside * 100 > all * 15 {
            return Err(format!(
                "{outside} of {all} category-days outside the history's range"
            ));
        }
        Ok(())
    }

    #[test]
    fn the_live_shop_orders_at_its_historys_rate() {
        let now = 1_800_000_000_000;
        let shop = shop(5, "t", 3_000, 120, now);
        // The history is unchanged by its continuation.
        assert_eq!(history(5, "t", 3_000, 120, now).0, shop.history);
        let loyal = shop.truth.iter().filter(|t| t.1 == Trajectory::Loyal);
        assert_eq!(shop.orders.customers(), loyal.count());
        let mut orders = shop.orders.clone();
        assert!(orders.next_at() >= Some(now));
        // Four weeks of the live shop, polled every few hours.
        let today = now.div_euclid(DAY);
        let mut live = Vec::new();
        let mut t = now;
        while t < (today + 30) * DAY {
            t += 3 * 3_600_000 + 17;
            live.extend(orders.until(t));
        }
        assert!(live
            .windows(2)
            .all(|w| w[0].occurred_at_ms <= w[1].occurred_at_ms));
        assert!(live.iter().all(|e| e.occurred_at_ms >= now));
        let days: Vec<i64> = (today + 1..=today + 28).collect();
        consistent(&shop.history, &live, &days).unwrap();
        // Every loyal customer still orders, on the same device and card.
        let buyers: std::collections::HashSet<&str> =
            live.iter().map(|e| e.user_id.as_str()).collect();
        assert_eq!(buyers.len(), shop.orders.customers());
        // The same orders however often it is polled; ids continue the
        // customers' histories.
        let mut once = shop.orders.clone();
        assert_eq!(once.until(t), live);
        let ids: std::collections::HashSet<&str> = shop
            .history
            .iter()
            .chain(&live)
            .map(|e| e.event_id.as_str())
            .collect();
        assert_eq!(ids.len(), shop.history.len() + live.len());
        // The generator the live shop used before: one minute of it at
        // 200 events/s holds more units than any day of the history.
        let old = events(5, "x", 1000, 12_000, (today + 1) * DAY);
        let err = consistent(&shop.history, &old, &[today + 1]).unwrap_err();
        assert!(err.contains("units a day"), "{err}");
    }

    #[test]
    fn browsing_holds_no_orders() {
        let evs = browsing(3, "b", 50, 2_000, 1_800_000_000_000);
        assert_eq!(evs.len(), 2_000);
        assert!(evs
            .iter()
            .all(|e| !matches!(e.body, Some(Body::OrderPlaced(_)))));
        // Every other kind still flows.
        let kinds: std::collections::HashSet<std::mem::Discriminant<Body>> = evs
            .iter()
            .filter_map(|e| e.body.as_ref().map(std::mem::discriminant))
            .collect();
        assert_eq!(kinds.len(), 9);
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
