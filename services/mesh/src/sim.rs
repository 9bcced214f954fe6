//! A small seeded event generator: realistic enough mixes of browsing and
//! ordering for load tests and the end-to-end tests. (The labelled
//! population simulator with lifecycle trajectories is its own module when
//! the models need it.)
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
                        payment_method: "card".into(),
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

/// Publishes generated events to an ingest gRPC address at `rate` events/s
/// until `stop`.
pub async fn drive(addr: SocketAddr, rate: u32, stop: CancellationToken) -> anyhow::Result<()> {
    let mut client = IngestServiceClient::connect(format!("http://{addr}")).await?;
    let batch = (rate / 10).clamp(1, 500) as usize;
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(batch as f64 / rate.max(1) as f64));
    let seed: u64 = rand::random();
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
