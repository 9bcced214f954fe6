//! `ScoreOrder` latency at a fixed offered rate, with the feature store on
//! Redis (`MESH_TEST_REDIS_URL`).
//!
//! ```sh
//! MESH_TEST_REDIS_URL=redis://127.0.0.1:16379 \
//!   cargo run -p mesh-fraud-svc --example bench_score -- [RATE] [SECONDS] [CLIENTS]
//! ```
//! Defaults: 2,000 requests/s for 10 s over 32 concurrent clients (one
//! HTTP/2 connection each). Requests are sent on a fixed schedule (open
//! loop) and latency is measured from each request's *scheduled* time, so a
//! stall shows up in the percentiles instead of lowering the offered rate.
//! State is seeded first with 20,000 orders of 2,000 users over
//! `MESH_PARTITIONS` slots (default 8).
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_fraud_svc::grpc::{system_clock, FraudGrpc};
use mesh_fraud_svc::scoring::{load_policy, load_rules};
use mesh_fraud_svc::state::{store_ops, FeatureReader, SCOPE};
use mesh_fraud_svc::{convert, Scorer};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Context, Envelope, LineItem, Location, OrderPlaced};
use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_proto::fraud::v1::fraud_service_server::FraudServiceServer;
use mesh_proto::fraud::v1::ScoreOrderRequest;
use mesh_store::{PartitionBatch, RedisStore, StateStore};
use tokio_util::sync::CancellationToken;

/// Slots the entity counters are spread over (`MESH_PARTITIONS`, default 8).
fn partitions() -> i32 {
    std::env::var("MESH_PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(8)
}
const USERS: u64 = 2_000;

/// A deterministic order of user `i % USERS` (xorshift, no RNG crate).
fn order(i: u64, at_ms: i64) -> Envelope {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let user = i % USERS;
    let amount = 10.0 + (x % 40_000) as f64 / 100.0;
    Envelope {
        event_id: format!("b-{i}"),
        tenant_id: "bench".into(),
        user_id: format!("u{user}"),
        occurred_at_ms: at_ms,
        source: "bench".into(),
        context: Some(Context {
            device_hash: format!("d{}", user / 2),
            ip_hash: format!("ip{}", user / 10),
            ..Context::default()
        }),
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: format!("o-{i}"),
            items: vec![LineItem {
                sku: "s".into(),
                category: if x.is_multiple_of(5) {
                    "electronics"
                } else {
                    "shoes"
                }
                .into(),
                quantity: 1,
                unit_price: amount,
                ..LineItem::default()
            }],
            total: amount,
            currency: "EUR".into(),
            payment_hash: format!("card{user}"),
            promo_code: if x.is_multiple_of(7) {
                "P10".into()
            } else {
                String::new()
            },
            ship_to: Some(Location {
                lat: 48.0 + (user % 50) as f64 / 10.0,
                lon: 2.0 + (user % 30) as f64 / 10.0,
                country: "FR".into(),
                region: format!("{}", user % 95),
            }),
            ..OrderPlaced::default()
        })),
    }
}

/// Applies `n` orders over the last day, each in its user's slot.
async fn seed(store: &StateStore, n: u64, now_ms: i64) {
    let mut batches: Vec<PartitionBatch> = (0..partitions())
        .map(|p| PartitionBatch::new("bench-seed", p))
        .collect();
    for i in 0..n {
        let env = order(i, now_ms - 86_400_000 + (i as i64 * 86_000_000 / n as i64));
        let p = mesh_bus::partition::partition_for(&env.user_key(), partitions()) as usize;
        let ev = convert::event_from(&env).expect("valid").expect("an order");
        let off = batches[p].records.len() as i64;
        batches[p].push(off, store_ops(&mesh_fraud::updates(&ev)));
    }
    for b in &batches {
        for chunk in b.records.chunks(200) {
            let mut c = PartitionBatch::new(&b.source_topic, b.partition);
            c.records = chunk.to_vec();
            store.apply(SCOPE, &c).await.expect("seed");
        }
    }
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Sequential cost of one order, split into the feature read (one Redis
/// round trip) and the decision (rules + forest + isolation forest).
async fn breakdown(scorer: &Scorer, now: i64) -> Result<(), Box<dyn std::error::Error>> {
    let (mut read, mut decide) = (Vec::new(), Vec::new());
    for i in 0..300 {
        let o = convert::order_from(&order(900_000 + i, now - 1_000))?;
        let reqs = mesh_fraud::reads_for(&o, o.ts);
        let user = mesh_fraud::state::entity_key(mesh_fraud::state::EntityKind::User, &o.user_id);
        let p = mesh_bus::partition::partition_for(&o.user_id, partitions());
        let t = Instant::now();
        let res = scorer.reader.read(&reqs, &user, p, &[]).await?;
        read.push(t.elapsed());
        let t = Instant::now();
        let f = mesh_fraud::features_from(&o, &res, o.ts)?;
        scorer.policy.decide(&f, &scorer.rules.current())?;
        decide.push(t.elapsed());
    }
    read.sort();
    decide.sort();
    println!(
        "one order, sequential: feature read p50 {:.3} ms p99 {:.3} ms; decide p50 {:.3} ms p99 {:.3} ms",
        pct(&read, 0.5),
        pct(&read, 0.99),
        pct(&decide, 0.5),
        pct(&decide, 0.99)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (rate, seconds, clients) = (arg(0, 2_000), arg(1, 10), arg(2, 32));
    let url = std::env::var("MESH_TEST_REDIS_URL")
        .map_err(|_| "set MESH_TEST_REDIS_URL to a Redis URL (e.g. redis://127.0.0.1:16379)")?;
    let prefix = format!("bench-fraud-{}", std::process::id());
    let store = StateStore::Redis(RedisStore::connect(&url, &prefix).await?);
    let now = system_clock();
    println!("seeding 20000 orders ...");
    seed(&store, 20_000, now).await;
    println!("training models on the simulator ...");
    let policy = tokio::task::spawn_blocking(|| load_policy(None)).await??;
    let scorer = Arc::new(Scorer {
        policy,
        rules: load_rules(None)?,
        detectors: Default::default(),
        reader: FeatureReader {
            store: store.clone(),
            partitions: partitions(),
        },
    });
    breakdown(&scorer, now).await?;
    let shutdown = CancellationToken::new();
    let (router, _health) = mesh_runtime::grpc::server();
    let svc = FraudServiceServer::new(FraudGrpc {
        scorer,
        store: store.clone(),
        partitions: partitions(),
        clock: system_clock,
    });
    let (addr, _server) = mesh_runtime::grpc::serve(
        "127.0.0.1:0".parse()?,
        router.add_service(svc),
        shutdown.clone(),
    )
    .await?;

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = FraudServiceClient::connect(format!("http://{addr}")).await?;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = c;
            while i < total {
                let due = started + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                let env = order(100_000 + i, now - 1_000);
                let req = ScoreOrderRequest {
                    envelope: Some(env),
                };
                match client.score_order(req).await {
                    Ok(_) => lat.push(due.elapsed()),
                    Err(_) => errors += 1,
                }
                i += clients;
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(total as usize);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "ScoreOrder offered {rate}/s for {seconds}s over {clients} clients: achieved {:.0}/s, {} ok, {errors} errors",
        lat.len() as f64 / elapsed,
        lat.len()
    );
    if !lat.is_empty() {
        println!(
            "latency ms: p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}",
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            pct(&lat, 0.999),
            pct(&lat, 1.0)
        );
    }
    let cleared = store.clear_scope(SCOPE).await?;
    println!("cleared {cleared} bench keys under prefix {prefix}");
    shutdown.cancel();
    Ok(())
}
