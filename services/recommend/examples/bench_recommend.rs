//! `Recommend` latency under concurrent load, with a trained model.
//!
//! Trains EASE^R on MovieLens-100k (`MESH_ML100K_DIR` holding
//! `ml-100k.inter`) or, without it, on a seeded synthetic shop (2,000 users,
//! 1,000 items in 20 categories, Zipf-like popularity). Every user's last
//! 10 items are applied as live product views through the same ops and
//! atomic store step the consumer uses; every item is upserted into the
//! catalog. Then `BENCH_CLIENTS` gRPC clients (default 16) send
//! `BENCH_REQUESTS` requests (default 5000) for random users, and the
//! example prints the rate, p50 and p99.
//!
//! State is on Redis when `MESH_REDIS_URL` (or `MESH_TEST_REDIS_URL`) is
//! set, in memory otherwise.
//!
//! ```text
//! cargo run --release -p mesh-recommend-svc --example bench_recommend
//! ```
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, ProductView};
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::RecommendRequest;
use mesh_recommend::data::Dataset;
use mesh_recommend::live::LiveConfig;
use mesh_recommend::models::EaseParams;
use mesh_recommend::types::ItemMeta;
use mesh_recommend::{ModelArtifact, ModelSpec};
use mesh_recommend_svc::engine::Engine;
use mesh_recommend_svc::keys::SCOPE;
use mesh_recommend_svc::live::LiveReader;
use mesh_recommend_svc::{signals, ModelHandle};
use mesh_store::{MemoryStore, PartitionBatch, RedisStore, StateStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "bench";
const PARTITIONS: i32 = 8;
const LIVE_PER_USER: usize = 10;

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn synthetic(seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (users, items, cats) = (2_000usize, 1_000usize, 20usize);
    let mut pairs = Vec::new();
    for u in 0..users {
        let fav = rng.random_range(0..cats);
        for _ in 0..30 {
            // Zipf-like rank, mostly inside the favourite category.
            let r = (rng.random::<f64>().powi(3) * (items / cats) as f64) as usize;
            let cat = if rng.random::<f64>() < 0.7 {
                fav
            } else {
                rng.random_range(0..cats)
            };
            pairs.push((format!("u{u}"), format!("i{}", r * cats + cat)));
        }
    }
    Dataset::from_pairs(pairs)
}

fn category(item: usize) -> String {
    format!("cat{}", item % 20)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (data, source) = match std::env::var_os("MESH_ML100K_DIR") {
        Some(dir) => (
            Dataset::load_inter(&std::path::Path::new(&dir).join("ml-100k.inter"))?,
            "ml-100k",
        ),
        None => (synthetic(42), "synthetic"),
    };
    let started = Instant::now();
    let spec = ModelSpec::Ease(EaseParams::default());
    let model = ModelArtifact::train(&data, &spec, 42, "bench")?;
    println!(
        "trained {} on {source}: {} users, {} items, {} interactions in {:.1} s",
        spec.name(),
        data.n_users(),
        data.n_items(),
        data.n_interactions(),
        started.elapsed().as_secs_f64()
    );

    let prefix = mesh_testkit::unique("bench-rec");
    let redis = std::env::var("MESH_REDIS_URL")
        .or_else(|_| std::env::var("MESH_TEST_REDIS_URL"))
        .ok();
    let store = match &redis {
        Some(url) => StateStore::Redis(RedisStore::connect(url, &prefix).await?),
        None => StateStore::Memory(MemoryStore::new(&prefix)),
    };
    let live_cfg = LiveConfig::default();
    let reader = LiveReader {
        store: store.clone(),
        partitions: PARTITIONS,
        live: live_cfg.clone(),
    };

    // Live signals: each user's last items as views, applied like the consumer does.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut batches: HashMap<i32, PartitionBatch> = HashMap::new();
    for (u, items) in data.user_items.iter().enumerate() {
        let user = &data.user_ids[u];
        let p = mesh_bus::partition::partition_for(&format!("{TENANT}/{user}"), PARTITIONS);
        let batch = batches
            .entry(p)
            .or_insert_with(|| PartitionBatch::new("bench-events", p));
        let mut history = Vec::new();
        let start = items.len().saturating_sub(LIVE_PER_USER);
        for (k, &i) in items[start..].iter().enumerate() {
            let e = Envelope {
                event_id: format!("{u}-{k}"),
                tenant_id: TENANT.into(),
                user_id: user.clone(),
                occurred_at_ms: now_ms - 3_600_000 + (k as i64) * 1_000,
                source: "bench".into(),
                context: None,
                body: Some(Body::ProductView(ProductView {
                    sku: data.item_ids[i as usize].clone(),
                    category: category(i as usize),
                    price: 10.0 + (i % 50) as f64,
                    ..Default::default()
                })),
            };
            let offset = batch.records.len() as i64;
            batch.push(offset, signals::ops(&e, &mut history, &live_cfg));
        }
    }
    for b in batches.values() {
        store.apply(SCOPE, b).await?;
    }
    let catalog: Vec<ItemMeta> = data
        .item_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut m = ItemMeta::new(id.clone(), category(i), 10.0 + (i % 50) as f64);
            m.in_stock = i % 17 != 0;
            m.sales = (data.n_items() - i) as f64;
            m
        })
        .collect();
    for chunk in catalog.chunks(500) {
        reader.upsert_items(TENANT, chunk, now_ms * 1000).await?;
    }

    let shutdown = CancellationToken::new();
    let engine = Arc::new(Engine::new(reader, Arc::new(ModelHandle::fixed(model))));
    let (addr, server) =
        mesh_recommend_svc::serve_grpc("127.0.0.1:0".parse()?, engine, shutdown.clone()).await?;
    let client = RecommendServiceClient::connect(format!("http://{addr}")).await?;

    let clients = env_usize("BENCH_CLIENTS", 16).max(1);
    let requests = env_usize("BENCH_REQUESTS", 5_000).max(clients);
    let users = Arc::new(data.user_ids.clone());
    // Warm-up: connections, caches.
    for u in users.iter().take(50) {
        client
            .clone()
            .recommend(RecommendRequest {
                tenant_id: TENANT.into(),
                user_id: u.clone(),
                n: 10,
                ..Default::default()
            })
            .await?;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (mut client, users) = (client.clone(), users.clone());
            tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(c as u64);
                let mut lat = Vec::with_capacity(requests / clients);
                let mut empty = 0usize;
                for _ in 0..requests / clients {
                    let user = users[rng.random_range(0..users.len())].clone();
                    let t = Instant::now();
                    let r = client
                        .recommend(RecommendRequest {
                            tenant_id: TENANT.into(),
                            user_id: user,
                            n: 10,
                            ..Default::default()
                        })
                        .await
                        .expect("recommend answers")
                        .into_inner();
                    lat.push(t.elapsed());
                    empty += usize::from(r.items.is_empty());
                }
                (lat, empty)
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    let mut empty = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        empty += e;
    }
    let wall = started.elapsed();
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "Recommend over gRPC, store {}, {} partitions, {clients} clients, {} requests: \
         {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({empty} empty answers)",
        if redis.is_some() { "redis" } else { "memory" },
        PARTITIONS,
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    shutdown.cancel();
    let _ = server.await;
    let _ = store.clear_scope(SCOPE).await;
    Ok(())
}
