//! `mesh bench recommend`: the recommend service started in-process on the
//! given broker and store, fed a seeded shop through Kafka; measures how
//! long a new co-occurrence takes to become visible, then offers
//! `Recommend` calls at a fixed rate and reports the achieved rate and
//! latency percentiles.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mesh_bus::headers::HeaderList;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, ProductView};
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::{
    CatalogItem, RecommendRequest, SimilarItemsRequest, UpsertItemsRequest,
};
use mesh_recommend::data::Dataset;
use mesh_recommend::ModelArtifact;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::live::LiveReader;
use crate::{Deps, ModelHandle, RecommendConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `mesh bench recommend` asks for (see its arguments for each).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub users: usize,
    pub items: usize,
    /// MovieLens 100k directory instead of the synthetic shop.
    pub data: Option<PathBuf>,
    pub model: String,
    pub live_per_user: usize,
    pub rate: u32,
    pub requests: usize,
    pub max_in_flight: usize,
    pub freshness_samples: usize,
    pub seed: u64,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        Latency {
            samples: v.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: v[v.len() - 1],
        }
    }
}

/// What `mesh bench recommend` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub broker: String,
    pub store: String,
    pub partitions: i32,
    pub data: String,
    pub users: usize,
    pub items: usize,
    pub model: String,
    pub train_seconds: f64,
    pub seed_events: usize,
    pub seed_apply_events_per_sec: f64,
    /// Publish acknowledged → the pair visible in `SimilarItems`.
    pub cooccurrence_visible: Latency,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub requests: usize,
    pub errors: usize,
    pub empty_answers: usize,
    /// From each call's scheduled start (open loop: waiting counts).
    pub recommend: Latency,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "broker {} / store {} / {} partitions",
            self.broker, self.store, self.partitions
        )?;
        writeln!(
            f,
            "data {}: {} users, {} items; {} trained in {:.2} s",
            self.data, self.users, self.items, self.model, self.train_seconds
        )?;
        writeln!(
            f,
            "live seed      {} events through Kafka, applied at {:.0} events/s",
            self.seed_events, self.seed_apply_events_per_sec
        )?;
        let c = &self.cooccurrence_visible;
        writeln!(
            f,
            "co-occurrence  publish→visible p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} samples)",
            c.p50_ms, c.p99_ms, c.max_ms, c.samples
        )?;
        writeln!(
            f,
            "Recommend      offered {:.0}/s  achieved {:.0}/s  {} calls, {} errors, {} empty",
            self.offered_rate, self.achieved_rate, self.requests, self.errors, self.empty_answers
        )?;
        let r = &self.recommend;
        write!(
            f,
            "Recommend      p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            r.p50_ms, r.p99_ms, r.max_ms
        )
    }
}

const TENANT: &str = "bench";
const CATEGORIES: usize = 20;

/// A seeded shop: each user has a favourite category, picks mostly there,
/// with Zipf-like popularity inside a category.
pub fn synthetic_shop(users: usize, items: usize, seed: u64) -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let per_cat = (items / CATEGORIES).max(1);
    let mut pairs = Vec::new();
    for u in 0..users {
        let fav = rng.random_range(0..CATEGORIES);
        for _ in 0..30 {
            let r = (rng.random::<f64>().powi(3) * per_cat as f64) as usize;
            let cat = if rng.random::<f64>() < 0.7 {
                fav
            } else {
                rng.random_range(0..CATEGORIES)
            };
            pairs.push((format!("u{u}"), format!("i{}", r * CATEGORIES + cat)));
        }
    }
    Dataset::from_pairs(pairs)
}

fn category(item: &str) -> String {
    let n: usize = item
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0);
    format!("cat{}", n % CATEGORIES)
}

fn view(user: &str, sku: &str, at_ms: i64, id: String) -> Envelope {
    Envelope {
        event_id: id,
        tenant_id: TENANT.into(),
        user_id: user.into(),
        occurred_at_ms: at_ms,
        source: "bench".into(),
        context: None,
        body: Some(Body::ProductView(ProductView {
            sku: sku.into(),
            category: category(sku),
            price: 10.0,
            ..Default::default()
        })),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Produces one event to `topic`, keyed by its user, without headers.
async fn publish(deps: &Deps, topic: &str, e: &Envelope) -> Result<(), mesh_bus::Error> {
    let headers = HeaderList::new();
    deps.producer
        .send(topic, &e.user_key(), &e.encode_to_vec(), &headers)
        .await?;
    Ok(())
}

/// Runs the bench with the service's settings `cfg` on `deps` (give it its
/// own topics, keys and group: it clears the recommend scope at the end).
/// `broker` and `store` label the report.
pub async fn run(
    cfg: &RecommendConfig,
    deps: &Deps,
    broker: &str,
    store: &str,
    args: &BenchOptions,
) -> Result<BenchReport, BoxError> {
    if args.rate == 0 || args.requests == 0 {
        return Err("--rate and --requests must be positive".into());
    }
    let spec =
        mesh_recommend::cli::default_spec(&args.model).map_err(|e| format!("--model: {e}"))?;
    let (data, data_name) = match &args.data {
        Some(dir) => (
            Dataset::load_inter(&dir.join("ml-100k.inter"))
                .map_err(|e| format!("--data {}: {e}", dir.display()))?,
            "ml-100k".to_string(),
        ),
        None => (
            synthetic_shop(args.users.max(1), args.items.max(CATEGORIES), args.seed),
            "synthetic".to_string(),
        ),
    };
    let t = Instant::now();
    let (d, s, seed) = (data.clone(), spec, args.seed);
    let trained =
        tokio::task::spawn_blocking(move || ModelArtifact::train(&d, &s, seed, "bench")).await??;
    let train_seconds = t.elapsed().as_secs_f64();

    let shutdown = CancellationToken::new();
    let running = crate::start_with_model(
        cfg,
        deps,
        Arc::new(ModelHandle::fixed(trained)),
        shutdown.clone(),
    )
    .await?;
    let joined = Instant::now();
    while running.assigned.partitions() == 0 {
        if joined.elapsed() > Duration::from_secs(60) {
            return Err("the recommend consumer got no partitions in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr))?
        .connect()
        .await?;
    let client = RecommendServiceClient::new(channel);

    // Catalog, then live signals through Kafka: each user's last items as views.
    let catalog: Vec<CatalogItem> = data
        .item_ids
        .iter()
        .enumerate()
        .map(|(i, id)| CatalogItem {
            item_id: id.clone(),
            category: category(id),
            price: 10.0 + (i % 50) as f64,
            out_of_stock: i % 17 == 0,
            sales: (data.n_items() - i) as f64,
            ..Default::default()
        })
        .collect();
    for chunk in catalog.chunks(1000) {
        client
            .clone()
            .upsert_items(UpsertItemsRequest {
                tenant_id: TENANT.into(),
                items: chunk.to_vec(),
            })
            .await?;
    }
    let base = now_ms() - 3_600_000;
    let mut seed_events = Vec::new();
    for (u, items) in data.user_items.iter().enumerate() {
        let user = &data.user_ids[u];
        let start = items.len().saturating_sub(args.live_per_user);
        for (k, &i) in items[start..].iter().enumerate() {
            seed_events.push(view(
                user,
                &data.item_ids[i as usize],
                base + k as i64 * 1_000,
                format!("seed-{u}-{k}"),
            ));
        }
    }
    // One sentinel per partition, published last: when every sentinel is
    // visible, every seed event before it was applied.
    let mut sentinels = Vec::new();
    for p in 0..deps.partitions {
        let user = (0..)
            .map(|k| format!("sentinel-{p}-{k}"))
            .find(|u| {
                mesh_bus::partition::partition_for(&format!("{TENANT}/{u}"), deps.partitions) == p
            })
            .expect("some user hashes to every partition");
        sentinels.push(user);
    }
    let t = Instant::now();
    let topic = deps.topics.user_events.clone();
    for chunk in seed_events.chunks(2_000) {
        let encoded: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|e| (e.user_key(), e.encode_to_vec()))
            .collect();
        let headers = HeaderList::new();
        let sends = encoded
            .iter()
            .map(|(k, v)| deps.producer.send(&topic, k, v, &headers));
        futures::future::try_join_all(sends).await?;
    }
    for (k, u) in sentinels.iter().enumerate() {
        let e = view(u, "sentinel-item", base + 60_000, format!("sentinel-{k}"));
        publish(deps, &topic, &e).await?;
    }
    let live = LiveReader {
        store: deps.store.clone(),
        partitions: deps.partitions,
        live: cfg.live.clone(),
    };
    for u in &sentinels {
        loop {
            if !live.user_state(TENANT, u).await?.history.is_empty() {
                break;
            }
            if t.elapsed() > Duration::from_secs(300) {
                return Err("the seed events were not applied within 300 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let seed_apply_events_per_sec = seed_events.len() as f64 / t.elapsed().as_secs_f64();

    // Freshness: a new pair, published, until SimilarItems shows it.
    let mut fresh = Vec::new();
    for k in 0..args.freshness_samples {
        let (a, b) = (format!("fresh-a-{k}"), format!("fresh-b-{k}"));
        let user = format!("fresh-user-{k}");
        let at = now_ms();
        let pair = [
            view(&user, &a, at, format!("fresh-{k}-a")),
            view(&user, &b, at + 1, format!("fresh-{k}-b")),
        ];
        for e in &pair {
            publish(deps, &topic, e).await?;
        }
        let published = Instant::now();
        loop {
            let r = client
                .clone()
                .similar_items(SimilarItemsRequest {
                    tenant_id: TENANT.into(),
                    item_id: a.clone(),
                    n: 5,
                })
                .await?
                .into_inner();
            if r.items.iter().any(|i| i.item_id == b) {
                fresh.push(published.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if published.elapsed() > Duration::from_secs(30) {
                return Err("a new co-occurrence was not visible within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    // Open-loop load: call i is due at start + i / rate.
    let users = Arc::new(data.user_ids.clone());
    for u in users.iter().take(50) {
        let _ = client
            .clone()
            .recommend(RecommendRequest {
                tenant_id: TENANT.into(),
                user_id: u.clone(),
                n: 10,
                ..Default::default()
            })
            .await;
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let (mut client, users, gate) = (client.clone(), users.clone(), gate.clone());
        // A fixed stride over users (coprime with most sizes): every run
        // asks for the same users in the same order.
        let user = users[(i * 7_919) % users.len()].clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let r = client
                .recommend(RecommendRequest {
                    tenant_id: TENANT.into(),
                    user_id: user,
                    n: 10,
                    ..Default::default()
                })
                .await;
            let ms = due.elapsed().as_secs_f64() * 1e3;
            (ms, r.map(|r| r.into_inner().items.is_empty()))
        }));
    }
    let (mut lat, mut errors, mut empty) = (Vec::with_capacity(tasks.len()), 0, 0);
    for t in tasks {
        match t.await? {
            (ms, Ok(is_empty)) => {
                lat.push(ms);
                empty += usize::from(is_empty);
            }
            (_, Err(_)) => errors += 1,
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let report = BenchReport {
        broker: broker.to_string(),
        store: store.to_string(),
        partitions: deps.partitions,
        data: data_name,
        users: data.n_users(),
        items: data.n_items(),
        model: spec.name().to_string(),
        train_seconds,
        seed_events: seed_events.len(),
        seed_apply_events_per_sec,
        cooccurrence_visible: Latency::of(fresh),
        offered_rate: f64::from(args.rate),
        achieved_rate: lat.len() as f64 / wall,
        requests: args.requests,
        errors,
        empty_answers: empty,
        recommend: Latency::of(lat),
    };
    shutdown.cancel();
    let _ = running.server.await;
    let _ = running.consumer.await;
    let _ = deps.store.clear_scope(crate::keys::SCOPE).await;
    Ok(report)
}
