//! `mesh train recommend` against the real broker and Redis: views are
//! published, the recommend service applies them, the command trains ALS
//! from the event log (offset 0 to the end) and then from the store's recent
//! histories, and writes each version where the running service watches; the
//! service serves each new version without a restart.
use std::time::{Duration, Instant};

use mesh_bus::headers::HeaderList;
use mesh_cli::cmd_recommend::{self, TrainArgs, TrainSource};
use mesh_cli::node::{Backends, MeshConfig};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, ProductView};
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::{RecommendRequest, Source, TrendingRequest};
use mesh_recommend_svc::live::LiveReader;
use prost::Message;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "shop";

fn view(user: &str, sku: &str, at_ms: i64) -> Envelope {
    Envelope {
        event_id: format!("{user}-{sku}"),
        tenant_id: TENANT.into(),
        user_id: user.into(),
        occurred_at_ms: at_ms,
        source: "test".into(),
        body: Some(Body::ProductView(ProductView {
            sku: sku.into(),
            category: "c".into(),
            price: 10.0,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The recommend service on its own, against the shared broker and Redis.
struct Running {
    cfg: MeshConfig,
    backends: Backends,
    shutdown: CancellationToken,
    service: mesh_recommend_svc::Running,
    client: RecommendServiceClient<tonic::transport::Channel>,
}

async fn start(cfg: MeshConfig) -> Running {
    let backends = Backends::connect(&cfg).await.unwrap();
    let deps = backends.deps(&cfg);
    let shutdown = CancellationToken::new();
    let service = mesh_recommend_svc::start(&cfg.recommend, &deps, shutdown.clone())
        .await
        .unwrap();
    let client = RecommendServiceClient::connect(format!("http://{}", service.grpc_addr))
        .await
        .unwrap();
    Running {
        cfg,
        backends,
        shutdown,
        service,
        client,
    }
}

impl Running {
    async fn publish(&self, events: &[Envelope]) {
        let topic = self.cfg.topics().user_events;
        for e in events {
            self.backends
                .producer
                .send(
                    &topic,
                    &e.user_key(),
                    &e.encode_to_vec(),
                    &HeaderList::new(),
                )
                .await
                .unwrap();
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.service.consumer.await;
    }
}

/// A minute ago, Unix ms.
fn a_minute_ago_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_recommend_from_the_log_and_the_store_is_served_without_restart() {
    let _e2e = mesh_e2e::shared().await;
    let name = mesh_testkit::unique("rec-train-cli");
    let mut cfg = MeshConfig::ephemeral(
        Some(mesh_testkit::kafka_brokers()),
        Some(mesh_testkit::redis_url()),
        &name,
    );
    let dir = std::env::temp_dir().join(&name);
    cfg.recommend.model_path = Some(dir.join("model.json"));
    cfg.recommend.model_poll = Duration::from_millis(100);
    let mut mesh = start(cfg).await;
    let cfg = mesh.cfg.clone();

    // 12 users in 3 taste groups of 4 items each; every user sees 3 of them.
    let at = a_minute_ago_ms();
    let mut events = Vec::new();
    for u in 0..12 {
        let g = u % 3;
        for k in 0..3 {
            let item = format!("g{g}-i{}", (u / 3 + k) % 4);
            events.push(view(&format!("u{u}"), &item, at + (u * 10 + k) as i64));
        }
    }
    mesh.publish(&events).await;
    let live = LiveReader {
        store: mesh.backends.store.clone(),
        partitions: cfg.partitions,
        live: cfg.recommend.live.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut n = 0;
        for u in 0..12 {
            n += live
                .user_state(TENANT, &format!("u{u}"))
                .await
                .unwrap()
                .history
                .len();
        }
        if n == events.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {} views applied",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut args = TrainArgs {
        from: TrainSource::Log,
        model: "als".into(),
        out: None,
        version: Some("log-v1".into()),
        seed: 42,
        max_users: 1_000,
        read_timeout_secs: 60,
        json: true,
    };
    for (source, version) in [
        (TrainSource::Log, "log-v1"),
        (TrainSource::Store, "store-v2"),
    ] {
        args.from = source;
        args.version = Some(version.into());
        let r = cmd_recommend::train_report(&cfg, &args).await.unwrap();
        assert_eq!(r.version, version);
        assert_eq!(r.interactions, events.len(), "{source:?}");
        assert_eq!((r.users, r.items), (12, 12), "{source:?}");
        assert!(r.bytes > 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            let a = mesh
                .client
                .recommend(RecommendRequest {
                    tenant_id: TENANT.into(),
                    user_id: "u0".into(),
                    n: 5,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if a.model_version == version {
                break a;
            }
            assert!(Instant::now() < deadline, "{version} was not picked up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            answer
                .items
                .iter()
                .any(|i| i.source == Source::Model as i32),
            "{answer:?}"
        );
    }
    let bad = TrainArgs {
        model: "svd".into(),
        ..args.clone()
    };
    let e = cmd_recommend::train_report(&cfg, &bad).await.unwrap_err();
    assert!(e.to_string().contains("--model"), "{e}");
    mesh.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Trending over gRPC at today's date: 20 fresh views of one item and 2 of
/// another rank the first above the second, with finite scores above 1 (its
/// short-term rate over its long-term one). Until stop 38 a single decay
/// reference time at 2024-01-01 overflowed the one-day half-life from
/// 2026-10-21 on, and every trending score was 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trending_ranks_a_burst_first_at_todays_date() {
    let _e2e = mesh_e2e::shared().await;
    let name = mesh_testkit::unique("rec-trending");
    let mut mesh = start(MeshConfig::ephemeral(
        Some(mesh_testkit::kafka_brokers()),
        Some(mesh_testkit::redis_url()),
        &name,
    ))
    .await;
    let at = a_minute_ago_ms();
    let mut events: Vec<Envelope> = (0..20)
        .map(|k| view(&format!("h{k}"), "hot", at + k))
        .collect();
    events.extend((0..2).map(|k| view(&format!("m{k}"), "mild", at + 100 + k)));
    mesh.publish(&events).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for category in ["", "c"] {
        let items = loop {
            let items = mesh
                .client
                .trending(TrendingRequest {
                    tenant_id: TENANT.into(),
                    category: category.into(),
                    n: 5,
                })
                .await
                .unwrap()
                .into_inner()
                .items;
            let hot = items.iter().find(|i| i.item_id == "hot");
            // Every view applied: "hot" at 20 views scores 7·20/21 ≈ 6.7.
            if items.len() == 2 && hot.is_some_and(|h| h.score > 6.0) {
                break items;
            }
            assert!(
                Instant::now() < deadline,
                "trending in {category:?}: {items:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(items[0].item_id, "hot", "{items:?}");
        assert_eq!(items[1].item_id, "mild", "{items:?}");
        for i in &items {
            assert!(i.score.is_finite() && i.score > 1.0, "{items:?}");
        }
        assert!(items[0].score > items[1].score, "{items:?}");
        assert!(items[0].reason.contains("its usual rate"), "{items:?}");
    }
    mesh.stop().await;
}
