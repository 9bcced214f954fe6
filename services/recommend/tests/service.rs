//! The recommend service in-process against the real broker and Redis.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_bus::headers::HeaderList;
use mesh_bus::{Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{AddToCart, Envelope, LineItem, OrderPlaced, ProductView};
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::{
    CatalogItem, FeedbackStats, FeedbackStatsRequest, RecommendRequest, RecommendResponse,
    SimilarItemsRequest, Source, UpsertItemsRequest,
};
use mesh_recommend::{EventKind, Interaction, ModelSpec};
use mesh_recommend_svc::{model, Deps, ModelHandle, RecommendConfig, Running};
use mesh_store::{RedisStore, StateStore};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const TENANT: &str = "shop";

struct Svc {
    running: Running,
    topics: TopicNames,
    producer: Producer,
    client: RecommendServiceClient<Channel>,
    store: StateStore,
    shutdown: CancellationToken,
}

async fn start(name: &str, model_path: Option<PathBuf>) -> Svc {
    start_with(name, model_path, |_| {}).await
}

async fn start_with(
    name: &str,
    model_path: Option<PathBuf>,
    tweak: impl FnOnce(&mut RecommendConfig),
) -> Svc {
    let name = mesh_testkit::unique(name);
    let brokers = mesh_testkit::kafka_brokers();
    let topics = TopicNames::with_prefix(&name);
    let spec = TopicSpec {
        partitions: 2,
        replication: 1,
    };
    mesh_bus::ensure_topics(&brokers, &topics, spec, Duration::from_secs(10))
        .await
        .unwrap();
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &name)
            .await
            .unwrap(),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &name)).unwrap();
    let deps = Deps {
        brokers,
        topics: topics.clone(),
        partitions: spec.partitions,
        store: store.clone(),
        producer: producer.clone(),
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        peers: Default::default(),
        clock: mesh_runtime::clock::system(),
    };
    let mut cfg = RecommendConfig::from_env(&mesh_runtime::config::Env::default()).unwrap();
    cfg.grpc_addr = "127.0.0.1:0".parse().unwrap();
    cfg.group = name.clone();
    cfg.model_path = model_path;
    cfg.model_poll = Duration::from_millis(100);
    tweak(&mut cfg);
    let shutdown = CancellationToken::new();
    let running = mesh_recommend_svc::start(&cfg, &deps, shutdown.clone())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.assigned.partitions() == 0 {
        assert!(Instant::now() < deadline, "no partitions assigned in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = RecommendServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    Svc {
        running,
        topics,
        producer,
        client,
        store,
        shutdown,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn envelope(user: &str, at: i64, body: Body) -> Envelope {
    Envelope {
        event_id: mesh_testkit::unique("e"),
        tenant_id: TENANT.into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "test".into(),
        context: None,
        body: Some(body),
    }
}

fn view(user: &str, sku: &str, at: i64) -> Envelope {
    envelope(
        user,
        at,
        Body::ProductView(ProductView {
            sku: sku.into(),
            category: format!("cat-{sku}"),
            price: 20.0,
            ..Default::default()
        }),
    )
}

impl Svc {
    async fn publish(&self, events: &[Envelope]) {
        for e in events {
            let topic = match e.body {
                Some(Body::OrderPlaced(_)) => &self.topics.order_events,
                _ => &self.topics.user_events,
            };
            self.producer
                .send(topic, &e.user_key(), &e.encode_to_vec(), &HeaderList::new())
                .await
                .unwrap();
        }
    }

    async fn recommend(&self, user: &str) -> RecommendResponse {
        self.client
            .clone()
            .recommend(RecommendRequest {
                tenant_id: TENANT.into(),
                user_id: user.into(),
                n: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    fn live(&self) -> mesh_recommend_svc::live::LiveReader {
        mesh_recommend_svc::live::LiveReader {
            store: self.store.clone(),
            partitions: 2,
            live: Default::default(),
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.running.consumer.await;
        let _ = self.running.server.await;
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_cooccurrence_is_visible_within_a_second() {
    let svc = start("rec-cooc", None).await;
    // Warm the path (first fetch after assignment) with an unrelated user.
    let t = now_ms();
    svc.publish(&[view("warm", "w1", t)]).await;
    assert!(eventually(Duration::from_secs(20), || async {
        !svc.recommend("warm").await.items.is_empty()
    })
    .await
    .is_some());

    svc.publish(&[view("u1", "A", t + 1), view("u1", "B", t + 2)])
        .await;
    // Wait until the consumer applied the second view (it is in u1's
    // history); from then on the pair must be visible on the very next read:
    // reads go to the store, with no cache in between. The publish→visible
    // delay itself is measured by `mesh bench recommend`.
    let live = svc.live();
    let applied = eventually(Duration::from_secs(20), || async {
        live.user_state(TENANT, "u1")
            .await
            .unwrap()
            .history
            .iter()
            .any(|h| h.item == "B")
    })
    .await;
    assert!(applied.is_some(), "the views of u1 were never applied");
    let mut client = svc.client.clone();
    let similar = |item: &str| SimilarItemsRequest {
        tenant_id: TENANT.into(),
        item_id: item.into(),
        n: 5,
    };
    let a = client
        .similar_items(similar("A"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        a.items
            .iter()
            .any(|i| i.item_id == "B" && i.source == Source::Cooccurrence as i32),
        "{a:?}"
    );
    let b = client
        .similar_items(similar("B"))
        .await
        .unwrap()
        .into_inner();
    assert!(b.items.iter().any(|i| i.item_id == "A"), "{b:?}");
    let bad = client
        .similar_items(SimilarItemsRequest {
            tenant_id: TENANT.into(),
            item_id: String::new(),
            n: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("item_id"));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_never_returns_purchased_or_in_cart_items_and_sets_sources() {
    let svc = start("rec-rules", None).await;
    let t = now_ms() - 60_000;
    let items = ["X", "Y", "Z", "V", "W", "Q"];
    let mut events = Vec::new();
    for (k, u) in ["o1", "o2", "o3"].iter().enumerate() {
        for (j, i) in items.iter().enumerate() {
            events.push(view(u, i, t + (k * 10 + j) as i64));
        }
    }
    // The user bought X, has Y in the cart and looked at Z.
    events.push(view("me", "Z", t + 100));
    events.push(envelope(
        "me",
        t + 101,
        Body::AddToCart(AddToCart {
            sku: "Y".into(),
            quantity: 1,
            ..Default::default()
        }),
    ));
    events.push(envelope(
        "me",
        t + 102,
        Body::OrderPlaced(OrderPlaced {
            order_id: "o-1".into(),
            items: vec![LineItem {
                sku: "X".into(),
                quantity: 1,
                unit_price: 20.0,
                ..Default::default()
            }],
            ..Default::default()
        }),
    ));
    svc.publish(&events).await;
    let seen = eventually(Duration::from_secs(20), || async {
        svc.recommend("me")
            .await
            .items
            .iter()
            .any(|i| i.source == Source::Cooccurrence as i32)
    })
    .await;
    assert!(seen.is_some(), "co-occurrence never reached Recommend");
    // The order is on the other topic: wait until it is applied too.
    let live = svc.live();
    let ordered = eventually(Duration::from_secs(20), || async {
        let s = live.user_state(TENANT, "me").await.unwrap();
        s.purchased.contains("X") && s.in_cart.contains("Y")
    })
    .await;
    assert!(
        ordered.is_some(),
        "the order and the cart never reached the store"
    );
    let r = svc.recommend("me").await;
    assert!(r.items.len() >= 3, "{r:?}");
    for i in &r.items {
        assert!(!["X", "Y"].contains(&i.item_id.as_str()), "{r:?}");
        assert_ne!(i.source, Source::Unspecified as i32);
        assert!(!i.reason.is_empty());
    }
    assert!(!r.cold_start);
    let cold = svc.recommend("newcomer").await;
    assert!(cold.cold_start);
    assert!(!cold.items.is_empty());
    assert!(cold
        .items
        .iter()
        .all(|i| i.source == Source::Popularity as i32));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swapped_model_file_is_picked_up() {
    let dir = std::env::temp_dir().join(mesh_testkit::unique("rec-model"));
    let path = dir.join("model.json");
    let train = |version: &str| {
        let ev: Vec<Interaction> = [("m1", "p1"), ("m1", "p2"), ("m2", "p2"), ("m2", "p3")]
            .iter()
            .map(|(u, i)| Interaction::new(*u, *i, EventKind::Order, 0.0))
            .collect();
        model::train_from_interactions(&ev, &ModelSpec::Popularity, 1, version).unwrap()
    };
    model::write_artifact(&train("one"), &path).unwrap();
    let mut svc = start("rec-swap", Some(path.clone())).await;
    let catalog = |id: &str, out: bool| CatalogItem {
        item_id: id.into(),
        category: "c".into(),
        price: 10.0,
        out_of_stock: out,
        ..Default::default()
    };
    svc.client
        .upsert_items(UpsertItemsRequest {
            tenant_id: TENANT.into(),
            items: vec![
                catalog("p1", false),
                catalog("p2", true),
                catalog("p3", false),
            ],
        })
        .await
        .unwrap();
    let r = svc.recommend("m1").await;
    assert_eq!(r.model_version, "one");
    // m1 trained on p1 and p2; p2 is out of stock anyway: only p3 is left.
    assert_eq!(
        r.items
            .iter()
            .map(|i| (i.item_id.as_str(), i.source))
            .collect::<Vec<_>>(),
        vec![("p3", Source::Model as i32)]
    );
    model::write_artifact(&train("second"), &path).unwrap();
    let swapped = eventually(Duration::from_secs(10), || async {
        svc.recommend("m1").await.model_version == "second"
    })
    .await;
    assert!(swapped.is_some(), "the new model file was not picked up");
    let direct = Arc::new(ModelHandle::fixed(train("fixed")));
    assert_eq!(direct.current().unwrap().version, "fixed");
    svc.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn catalog_item(id: &str, sales: f64) -> CatalogItem {
    CatalogItem {
        item_id: id.into(),
        category: format!("cat-{id}"),
        price: 20.0,
        sales,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_and_promo_abuse_flags_from_alerts_change_the_ranking() {
    let mut svc = start("rec-flags", None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while svc.running.flags_assigned.partitions() == 0 {
        assert!(Instant::now() < deadline, "no alerts partitions in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promo = CatalogItem {
        promotional: true,
        ..catalog_item("P", 100.0)
    };
    let offer = CatalogItem {
        retention_offer: true,
        ..catalog_item("R", 1.0)
    };
    let gone = CatalogItem {
        out_of_stock: true,
        ..catalog_item("S", 90.0)
    };
    let mut items = vec![promo, offer, gone];
    items.extend(["N1", "N2", "N3", "N4"].map(|i| catalog_item(i, 10.0)));
    svc.client
        .upsert_items(UpsertItemsRequest {
            tenant_id: TENANT.into(),
            items,
        })
        .await
        .unwrap();
    let t = now_ms() - 60_000;
    let mut events = Vec::new();
    for (k, u) in ["o1", "o2", "o3"].iter().enumerate() {
        for (j, i) in ["P", "S", "N2", "N3", "N4"].iter().enumerate() {
            events.push(view(u, i, t + (k * 10 + j) as i64));
        }
    }
    for u in ["plain", "abuser", "risky"] {
        events.push(view(u, "N1", t + 100));
    }
    svc.publish(&events).await;
    // The alerts as the churn service (with ce_type) and the fraud service
    // (without) publish them.
    let churn = mesh_proto::churn::v1::ChurnAlert {
        tenant_id: TENANT.into(),
        user_id: "risky".into(),
        risk: 0.9,
        at_ms: now_ms(),
        alert_id: "shop/risky/1".into(),
        arm: "treatment".into(),
        ..Default::default()
    };
    let ce = HeaderList::new().with(
        mesh_bus::headers::CE_TYPE,
        mesh_recommend_svc::alerts::CHURN_ALERT_TYPE,
    );
    svc.producer
        .send(
            &svc.topics.alerts,
            "shop/risky",
            &churn.encode_to_vec(),
            &ce,
        )
        .await
        .unwrap();
    let abuse = mesh_proto::fraud::v1::RiskAlert {
        kind: "promotion_abuse".into(),
        tenant_id: TENANT.into(),
        user_id: "abuser".into(),
        occurred_at_ms: now_ms(),
        ..Default::default()
    };
    svc.producer
        .send(
            &svc.topics.alerts,
            "shop/abuser",
            &abuse.encode_to_vec(),
            &HeaderList::new(),
        )
        .await
        .unwrap();
    let live = svc.live();
    let ready = eventually(Duration::from_secs(20), || async {
        let a = live.user_state(TENANT, "abuser").await.unwrap();
        let r = live.user_state(TENANT, "risky").await.unwrap();
        let p = live.user_state(TENANT, "plain").await.unwrap();
        let o3 = live.user_state(TENANT, "o3").await.unwrap();
        a.promo_abuse_ms.is_some()
            && r.at_risk_ms.is_some()
            && !p.history.is_empty()
            && o3.history.len() == 5
    })
    .await;
    assert!(ready.is_some(), "events or alerts were never applied");
    let ids = |r: &RecommendResponse| {
        r.items
            .iter()
            .map(|i| i.item_id.clone())
            .collect::<Vec<_>>()
    };
    let plain = svc.recommend("plain").await;
    assert!(ids(&plain).contains(&"P".to_string()), "{plain:?}");
    assert!(
        !ids(&plain).contains(&"S".to_string()),
        "out of stock: {plain:?}"
    );
    assert!(!ids(&plain).contains(&"R".to_string()), "{plain:?}");
    let abuser = svc.recommend("abuser").await;
    assert!(!abuser.items.is_empty());
    assert!(!ids(&abuser).contains(&"P".to_string()), "{abuser:?}");
    let risky = svc.recommend("risky").await;
    let r = risky
        .items
        .iter()
        .find(|i| i.item_id == "R")
        .unwrap_or_else(|| panic!("no retention offer for the at-risk user: {risky:?}"));
    assert_eq!(r.source, Source::Rule as i32);
    assert!(r.reason.contains("retention offer"), "{r:?}");
    // Recently shown items are not shown again.
    let shown = svc
        .client
        .recommend(RecommendRequest {
            tenant_id: TENANT.into(),
            user_id: "plain".into(),
            n: 10,
            recently_shown: vec!["P".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!shown.items.is_empty());
    assert!(!ids(&shown).contains(&"P".to_string()), "{shown:?}");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_trained_from_the_store_is_hot_swapped_in() {
    let dir = std::env::temp_dir().join(mesh_testkit::unique("rec-train"));
    let path = dir.join("model.json");
    let svc = start("rec-train", Some(path.clone())).await;
    let t = now_ms() - 60_000;
    let baskets: [(&str, &[&str]); 4] = [
        ("t1", &["a", "b", "c"]),
        ("t2", &["a", "b", "d"]),
        ("t3", &["b", "c", "d"]),
        ("t4", &["a", "c", "d", "e"]),
    ];
    let mut events = Vec::new();
    for (k, (u, items)) in baskets.iter().enumerate() {
        for (j, i) in items.iter().enumerate() {
            events.push(view(u, i, t + (k * 10 + j) as i64));
        }
    }
    svc.publish(&events).await;
    let live = svc.live();
    let applied = eventually(Duration::from_secs(20), || async {
        let mut n = 0;
        for (u, _) in &baskets {
            n += live.user_state(TENANT, u).await.unwrap().history.len();
        }
        n == 13
    })
    .await;
    assert!(applied.is_some(), "the views were never applied");
    assert_eq!(svc.recommend("t1").await.model_version, "");
    let spec = ModelSpec::Als(mesh_recommend::models::AlsParams {
        dims: 4,
        iterations: 5,
        alpha: 10.0,
        reg: 0.1,
    });
    let artifact = model::train_from_store(&live, &spec, 7, "v-test", 1000)
        .await
        .unwrap();
    assert_eq!(artifact.user_ids.len(), 4);
    assert_eq!(artifact.item_ids.len(), 5);
    model::write_artifact(&artifact, &path).unwrap();
    let swapped = eventually(Duration::from_secs(10), || async {
        svc.recommend("t1").await.model_version == "v-test"
    })
    .await;
    assert!(swapped.is_some(), "the trained model was not picked up");
    // t1 saw a, b, c: the model proposes d or e, never an item it trained on.
    let r = svc.recommend("t1").await;
    assert!(
        r.items.iter().any(|i| i.source == Source::Model as i32),
        "{r:?}"
    );
    assert!(r
        .items
        .iter()
        .filter(|i| i.source == Source::Model as i32)
        .all(|i| ["d", "e"].contains(&i.item_id.as_str())));
    svc.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

impl Svc {
    async fn feedback(&self) -> FeedbackStats {
        self.client
            .clone()
            .get_feedback_stats(FeedbackStatsRequest {
                tenant_id: TENANT.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

fn source_row(s: &FeedbackStats, src: Source) -> mesh_proto::recommend::v1::SourceFeedback {
    s.sources
        .iter()
        .find(|r| r.source == src as i32)
        .cloned()
        .unwrap_or_default()
}

fn cell(s: &FeedbackStats, src: Source, slot: u32) -> (u64, u64) {
    s.cells
        .iter()
        .find(|c| c.source == src as i32 && c.slot == slot)
        .map_or((0, 0), |c| (c.impressions, c.clicks))
}

/// Recommend → clicks carrying the attribution through the real topic →
/// the stats count each click once, for the right source and slot, and the
/// clicked source's weight rises above the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_on_recommendations_are_attributed_once_and_move_the_weights() {
    let svc = start_with("rec-feedback", None, |cfg| {
        cfg.feedback.min_impressions = 1;
        cfg.feedback.min_clicks = 1;
        cfg.feedback.refresh = Duration::ZERO;
    })
    .await;
    let t = now_ms();
    // Co-occurrence of A with B and C; popularity of everything (D, E, F
    // only by popularity).
    svc.publish(&[
        view("o1", "A", t),
        view("o1", "B", t + 1),
        view("o2", "A", t + 2),
        view("o2", "C", t + 3),
        view("o3", "D", t + 4),
        view("o3", "E", t + 5),
        view("o4", "F", t + 6),
        view("o4", "D", t + 7),
        view("u", "A", t + 8),
    ])
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let a = svc.recommend("u").await;
        let has = |s: Source| a.items.iter().any(|i| i.source == s as i32);
        if has(Source::Cooccurrence) && has(Source::Popularity) {
            break a;
        }
        assert!(Instant::now() < deadline, "no mixed answer: {a:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer.recommendation_id.len(), 16);
    for (k, i) in answer.items.iter().enumerate() {
        assert_eq!(i.slot, k as u32);
        assert!(i.attribution.starts_with(&answer.recommendation_id));
    }
    let before = svc.feedback().await;
    assert!(!before.learning, "no clicks yet: {before:?}");
    assert!(before.sources.iter().all(|s| s.weight == 1.0));
    let pick = |s: Source| {
        answer
            .items
            .iter()
            .find(|i| i.source == s as i32)
            .cloned()
            .unwrap()
    };
    let co = pick(Source::Cooccurrence);
    let pop = pick(Source::Popularity);
    assert!(cell(&before, Source::Cooccurrence, co.slot).0 >= 1);
    assert_eq!(cell(&before, Source::Cooccurrence, co.slot).1, 0);

    // A click on the co-occurrence item, sent twice with the same event id.
    let mut click = view("u", &co.item_id, now_ms());
    if let Some(Body::ProductView(v)) = &mut click.body {
        v.recommendation_id = co.attribution.clone();
    }
    svc.publish(&[click.clone(), click.clone()]).await;
    // A plain view after them (same user, same partition): once it is in
    // the history, both copies of the click were applied.
    svc.publish(&[view("u", "sentinel", now_ms())]).await;
    let live = svc.live();
    let applied = eventually(Duration::from_secs(20), || async {
        live.user_state(TENANT, "u")
            .await
            .unwrap()
            .history
            .iter()
            .any(|h| h.item == "sentinel")
    })
    .await;
    assert!(applied.is_some(), "the events were not applied");
    let after = svc.feedback().await;
    assert_eq!(
        cell(&after, Source::Cooccurrence, co.slot).1,
        1,
        "{after:?}"
    );
    assert_eq!(cell(&after, Source::Popularity, pop.slot).1, 0);
    let total: u64 = after.cells.iter().map(|c| c.clicks).sum();
    assert_eq!(total, 1, "exactly one click counted: {after:?}");
    let (co_row, pop_row) = (
        source_row(&after, Source::Cooccurrence),
        source_row(&after, Source::Popularity),
    );
    assert_eq!(co_row.clicks, 1);
    assert!(after.learning);
    assert!(
        co_row.posterior_mean > source_row(&before, Source::Cooccurrence).posterior_mean,
        "{before:?} -> {after:?}"
    );
    assert_eq!(co_row.weight, 1.0);
    assert!(pop_row.weight < 1.0, "{after:?}");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rank_items_follows_sales_and_reviews_from_the_stream() {
    let mut svc = start("rec-stream-catalog", None).await;
    // Four items alike in the catalog: no sales, no rating.
    svc.client
        .upsert_items(UpsertItemsRequest {
            tenant_id: TENANT.into(),
            items: ["A", "B", "C", "D"].map(|i| catalog_item(i, 0.0)).to_vec(),
        })
        .await
        .unwrap();
    let t = now_ms() - 60_000;
    let mut events = Vec::new();
    // B sells 6 units to three buyers; C is reviewed 5 stars, D 1 star.
    for (k, u) in ["b1", "b2", "b3"].iter().enumerate() {
        events.push(envelope(
            u,
            t + k as i64,
            Body::OrderPlaced(OrderPlaced {
                order_id: format!("o-{u}"),
                items: vec![LineItem {
                    sku: "B".into(),
                    quantity: 2,
                    unit_price: 20.0,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ));
    }
    for (k, (u, sku, stars)) in [
        ("r1", "C", 5),
        ("r2", "C", 5),
        ("r3", "D", 1),
        ("r4", "D", 1),
    ]
    .into_iter()
    .enumerate()
    {
        events.push(envelope(
            u,
            t + 10 + k as i64,
            Body::ReviewSubmitted(mesh_proto::events::v1::ReviewSubmitted {
                sku: sku.into(),
                rating: stars,
                text: "ok".into(),
                ..Default::default()
            }),
        ));
    }
    svc.publish(&events).await;
    let live = svc.live();
    let ids: Vec<String> = ["A", "B", "C", "D"].map(String::from).to_vec();
    let ready = eventually(Duration::from_secs(20), || async {
        let c = live.catalog(TENANT, &ids).await.unwrap();
        c["B"].sales == 6.0 && c["C"].rating == 5.0 && c["D"].rating == 1.0
    })
    .await;
    let catalog = live.catalog(TENANT, &ids).await.unwrap();
    assert!(
        ready.is_some(),
        "stream sales and ratings never arrived: {catalog:?}"
    );
    assert_eq!((catalog["A"].sales, catalog["A"].rating), (0.0, 0.0));
    let ranked = |candidates: &[&str]| {
        let mut client = svc.client.clone();
        let candidates: Vec<String> = candidates.iter().map(|s| s.to_string()).collect();
        async move {
            client
                .rank_items(mesh_proto::recommend::v1::RankItemsRequest {
                    tenant_id: TENANT.into(),
                    user_id: "newcomer".into(),
                    candidates,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|i| i.item_id)
                .collect::<Vec<_>>()
        }
    };
    // The catalog cache lives a second: wait it out, then rank.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(ranked(&["A", "B"]).await, ["B", "A"], "sales from orders");
    assert_eq!(
        ranked(&["D", "C"]).await,
        ["C", "D"],
        "ratings from reviews"
    );
    svc.stop().await;
}
