//! Seeded event generators: realistic enough mixes of browsing and ordering
//! for load tests and the end-to-end tests ([`events`]), a labelled purchase
//! history with loyal, lapsed and one-time buyers ([`history`]), and the
//! driver behind `mesh up --simulate` ([`drive`]).
use std::net::SocketAddr;
use std::time::Duration;

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{self as ev, Context, Envelope};
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

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
                    Body::OrderPlaced(ev::OrderPlaced {
                        order_id: format!("{prefix}-o{i}"),
                        items: vec![ev::LineItem {
                            sku,
                            category,
                            quantity: q,
                            unit_price: price,
                            ..Default::default()
                        }],
                        subtotal: price * q as f64,
                        total: price * q as f64,
                        currency: "USD".into(),
                        // Cash on delivery joins a delivery wave at once;
                        // card orders wait for a payment event.
                        payment_method: if rng.random_bool(0.5) { "cod" } else { "card" }.into(),
                        ship_to: Some(ship_to(&mut rng)),
                        warehouse_id: "wh-1".into(),
                        ..Default::default()
                    })
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
            Envelope {
                event_id: format!("{prefix}-{i}"),
                tenant_id: "demo".into(),
                user_id: user,
                occurred_at_ms: t,
                source: "sim".into(),
                context: Some(Context {
                    device_type: ["web", "ios", "android"][i % 3].into(),
                    ..Default::default()
                }),
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
                context: Some(Context {
                    device_type: "web".into(),
                    ..Default::default()
                }),
                body: Some(Body::OrderPlaced(ev::OrderPlaced {
                    order_id: format!("{user}-o{n}"),
                    items: vec![ev::LineItem {
                        sku,
                        category,
                        quantity: q,
                        unit_price: price,
                        ..Default::default()
                    }],
                    subtotal: price * q as f64,
                    total: price * q as f64,
                    currency: "USD".into(),
                    payment_method: "card".into(),
                    ship_to: Some(ship_to(&mut rng)),
                    warehouse_id: "wh-1".into(),
                    ..Default::default()
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

/// Publishes a seeded 120-day purchase history of 300 users (so churn has
/// lapsed buyers to flag and forecasts have days of demand), then generated
/// live events at `rate` events/s until `stop`.
pub async fn drive(addr: SocketAddr, rate: u32, stop: CancellationToken) -> anyhow::Result<()> {
    drive_uri(format!("http://{addr}"), rate, stop).await
}

/// Arguments of `mesh simulate traffic`.
#[derive(clap::Args, Debug)]
pub struct TrafficArgs {
    /// Ingest gRPC endpoint of the running mesh.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub ingest: String,
    /// Live events per second after the history.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Stop after this many seconds (0 = until SIGTERM/SIGINT).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
}

/// `mesh simulate traffic`: [`drive_uri`] against a mesh running elsewhere.
pub async fn traffic(args: &TrafficArgs) -> anyhow::Result<()> {
    let stop = mesh_runtime::shutdown::on_signals();
    if args.seconds > 0 {
        let s = stop.clone();
        let secs = args.seconds;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            s.cancel();
        });
    }
    println!("simulating into {} at {} events/s", args.ingest, args.rate);
    drive_uri(args.ingest.clone(), args.rate, stop).await
}

/// [`drive`] with an endpoint URI (`http://host:port`).
pub async fn drive_uri(uri: String, rate: u32, stop: CancellationToken) -> anyhow::Result<()> {
    let mut client = loop {
        match IngestServiceClient::connect(uri.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(%e, %uri, "simulator waits for ingest");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let seed: u64 = rand::random();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let (past, _) = history(seed, &format!("h{seed:x}"), 300, 120, now);
    for chunk in past.chunks(500) {
        if stop.is_cancelled() {
            return Ok(());
        }
        if let Err(e) = client
            .publish(PublishRequest {
                events: chunk.to_vec(),
            })
            .await
        {
            tracing::warn!(%e, "simulator history publish failed");
        }
    }
    let batch = (rate / 10).clamp(1, 500) as usize;
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(batch as f64 / rate.max(1) as f64));
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let evs = events(
            seed ^ round,
            &format!("sim{seed:x}-{round}"),
            1000,
            batch,
            now - batch as i64 * 3000,
        );
        if let Err(e) = client.publish(PublishRequest { events: evs }).await {
            tracing::warn!(%e, "simulator publish failed");
        }
        round += 1;
    }
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
}
