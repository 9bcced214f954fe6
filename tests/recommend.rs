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
use mesh_proto::recommend::v1::{RecommendRequest, Source};
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
    let backends = Backends::connect(&cfg).await.unwrap();
    let deps = backends.deps(&cfg);
    let shutdown = CancellationToken::new();
    let running = mesh_recommend_svc::start(&cfg.recommend, &deps, shutdown.clone())
        .await
        .unwrap();
    let mut client = RecommendServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();

    // 12 users in 3 taste groups of 4 items each; every user sees 3 of them.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000;
    let mut events = Vec::new();
    for u in 0..12 {
        let g = u % 3;
        for k in 0..3 {
            let item = format!("g{g}-i{}", (u / 3 + k) % 4);
            events.push(view(&format!("u{u}"), &item, at + (u * 10 + k) as i64));
        }
    }
    let topic = cfg.topics().user_events;
    for e in &events {
        backends
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
    let live = LiveReader {
        store: backends.store.clone(),
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
            let a = client
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
    shutdown.cancel();
    let _ = running.consumer.await;
    let _ = std::fs::remove_dir_all(&dir);
}
