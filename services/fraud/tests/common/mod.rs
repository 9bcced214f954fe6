//! Starts the fraud service in-process against the test broker and Redis,
//! with topics, consumer group and key prefix of its own.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mesh_bus::{Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_fraud::PolicyModels;
use mesh_fraud_svc::{Deps, FraudConfig, Running};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Context, Envelope, LineItem, Location, OrderPlaced};
use mesh_proto::fraud::v1 as pb;
use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_store::{RedisStore, StateStore};
use prost::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const PARTITIONS: i32 = 2;

/// Models trained once per test binary and saved, so every test loads
/// them through `MESH_FRAUD_MODEL` instead of training again.
pub fn model_file() -> PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let policy =
                mesh_fraud_svc::scoring::train_policy(&mesh_fraud_svc::scoring::quick_sim_params())
                    .expect("train");
            let path =
                std::env::temp_dir().join(format!("{}.json", mesh_testkit::unique("fraud-models")));
            std::fs::write(&path, PolicyModels::json_of(&policy).expect("json")).expect("write");
            path
        })
        .clone()
}

pub struct Harness {
    pub running: Running,
    pub topics: TopicNames,
    pub producer: Producer,
    pub client: FraudServiceClient<Channel>,
    pub shutdown: CancellationToken,
    pub store: StateStore,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A service with `rules_path` (if any) polled every 50 ms, on the shared
/// test models.
pub async fn start(rules_path: Option<PathBuf>) -> Harness {
    let model = tokio::task::spawn_blocking(model_file)
        .await
        .expect("model");
    start_with(rules_path, model).await
}

/// A service with `rules_path` (if any) and the models file `model`, both
/// polled every 50 ms.
pub async fn start_with(rules_path: Option<PathBuf>, model: PathBuf) -> Harness {
    let brokers = mesh_testkit::kafka_brokers();
    let name = mesh_testkit::unique("fraud");
    let topics = TopicNames::with_prefix(&name);
    mesh_bus::ensure_topics(
        &brokers,
        &topics,
        TopicSpec {
            partitions: PARTITIONS,
            replication: 1,
        },
        Duration::from_secs(20),
    )
    .await
    .expect("topics");
    mesh_bus::ensure_output_topics(
        &brokers,
        &topics,
        TopicSpec {
            partitions: PARTITIONS,
            replication: 1,
        },
        Duration::from_secs(20),
    )
    .await
    .expect("output topics");
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &name)
            .await
            .expect("redis"),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &name)).expect("producer");
    let cfg = FraudConfig {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        group: format!("{name}-group"),
        rules_path,
        rules_poll: Duration::from_millis(50),
        model_path: Some(model),
        model_poll: Duration::from_millis(50),
        review_budget: 0.02,
    };
    let deps = Deps {
        brokers,
        topics: topics.clone(),
        partitions: PARTITIONS,
        store: store.clone(),
        producer: producer.clone(),
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        peers: Default::default(),
        clock: mesh_runtime::clock::system(),
    };
    let shutdown = CancellationToken::new();
    let running = mesh_fraud_svc::start(&cfg, &deps, shutdown.clone())
        .await
        .expect("fraud starts");
    let client = FraudServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .expect("connect");
    Harness {
        running,
        topics,
        producer,
        client,
        shutdown,
        store,
    }
}

impl Harness {
    /// Publishes an envelope on the order topic, keyed by user; returns
    /// where it landed.
    pub async fn publish(&self, env: &Envelope) -> mesh_bus::producer::Delivered {
        self.producer
            .send(
                &self.topics.order_events,
                &env.user_key(),
                &env.encode_to_vec(),
                &Default::default(),
            )
            .await
            .expect("publish")
    }

    /// Waits (at most 60 s) until the consumer applied the order `env`,
    /// delivered at `at`, to its user slot and to every home slot.
    pub async fn wait_applied(&self, env: &Envelope, at: &mesh_bus::producer::Delivered) {
        use mesh_fraud_svc::state::{entity_source, home_partition, is_user_key, SCOPE};
        let event = mesh_fraud_svc::convert::event_from(env)
            .expect("valid")
            .expect("an order");
        let mut slots = vec![(at.partition, self.topics.order_events.clone())];
        for op in mesh_fraud::updates(&event) {
            let key = match &op {
                mesh_fraud::StateOp::Incr { key, .. }
                | mesh_fraud::StateOp::SetIfAbsent { key, .. } => key.clone(),
            };
            if !is_user_key(&key) {
                slots.push((
                    home_partition(&key, PARTITIONS),
                    entity_source(&self.topics.order_events, at.partition),
                ));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for (partition, source) in slots {
            let slot = mesh_store::Slot {
                scope: SCOPE,
                partition,
            };
            while self.store.watermark(slot, &source).await.expect("wm") < Some(at.offset) {
                assert!(Instant::now() < deadline, "order not applied within 60 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// A reader of the decisions topic from the beginning.
    pub fn decisions_reader(&self) -> StreamConsumer {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", mesh_testkit::kafka_brokers())
            .set("group.id", mesh_testkit::unique("fraud-reader"))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("reader");
        c.subscribe(&[&self.topics.decisions]).expect("subscribe");
        c
    }
}

/// Waits (at most 60 s) for the decision on `order_id`.
pub async fn decision_for(reader: &StreamConsumer, order_id: &str) -> pb::Decision {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no decision for {order_id} within 60 s");
        if let Ok(Ok(m)) = tokio::time::timeout(left, reader.recv()).await {
            let d = pb::Decision::decode(m.payload().unwrap_or_default()).expect("decision");
            if d.order_id == order_id {
                let ce_type = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == mesh_bus::headers::CE_TYPE)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                });
                assert_eq!(
                    ce_type.as_deref(),
                    Some(mesh_fraud_svc::handler::DECISION_TYPE),
                    "decision record's ce_type header"
                );
                return d;
            }
        }
    }
}

/// An ordinary order: one line, card, shipped to Berlin.
pub fn order(user: &str, order_id: &str, amount: f64, at_ms: i64) -> Envelope {
    Envelope {
        event_id: format!("ev-{order_id}"),
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at_ms,
        source: "checkout".into(),
        context: Some(Context {
            device_hash: format!("dev-{user}"),
            ip_hash: format!("ip-{user}"),
            ..Context::default()
        }),
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: order_id.into(),
            items: vec![LineItem {
                sku: "sku-1".into(),
                category: "shoes".into(),
                quantity: 1,
                unit_price: amount,
                ..LineItem::default()
            }],
            subtotal: amount,
            total: amount,
            currency: "EUR".into(),
            payment_method: "card".into(),
            payment_hash: format!("card-{user}"),
            ship_to: Some(Location {
                lat: 52.52,
                lon: 13.40,
                country: "DE".into(),
                region: "10115".into(),
            }),
            ..OrderPlaced::default()
        })),
    }
}

pub fn now_ms() -> i64 {
    mesh_runtime::Clock::now_ms(&mesh_runtime::SystemClock)
}

/// The consumer's handler and the gRPC service on one store, without a
/// consumer: tests feed the handler records of one partition themselves.
pub struct Direct {
    pub handler: mesh_fraud_svc::handler::FraudHandler,
    pub grpc: mesh_fraud_svc::grpc::FraudGrpc,
    pub store: StateStore,
    pub prefix: String,
    /// The order-events topic the records claim to come from.
    pub topic: String,
}

/// [`Direct`] with topics, key prefix and group named after `name`, the
/// rules of `rules` (TOML) and the shared test models; no review budget.
pub async fn direct(name: &str, rules: &str) -> Direct {
    let brokers = mesh_testkit::kafka_brokers();
    let prefix = mesh_testkit::unique(name);
    let topics = TopicNames::with_prefix(&prefix);
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    mesh_bus::ensure_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .expect("topics");
    mesh_bus::ensure_output_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .expect("output topics");
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .expect("redis"),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &prefix)).expect("producer");
    let dir = std::env::temp_dir().join(mesh_testkit::unique(&format!("{name}-rules")));
    std::fs::create_dir_all(&dir).unwrap();
    let rules_path = dir.join("rules.toml");
    std::fs::write(&rules_path, rules).unwrap();
    let model = tokio::task::spawn_blocking(model_file).await.unwrap();
    let cfg = FraudConfig {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        group: format!("{prefix}-group"),
        rules_path: Some(rules_path),
        rules_poll: Duration::from_secs(60),
        model_path: Some(model),
        model_poll: Duration::from_secs(60),
        review_budget: 0.0,
    };
    let deps = Deps {
        brokers,
        topics: topics.clone(),
        partitions: PARTITIONS,
        store: store.clone(),
        producer: producer.clone(),
        consumer_extra: Vec::new(),
        peers: Default::default(),
        clock: mesh_runtime::clock::system(),
    };
    let scorer = mesh_fraud_svc::build_scorer(&cfg, &deps)
        .await
        .expect("scorer");
    let handler = mesh_fraud_svc::handler::FraudHandler {
        scorer: std::sync::Arc::clone(&scorer),
        store: store.clone(),
        producer,
        decisions_topic: topics.decisions.clone(),
        alerts_topic: topics.alerts.clone(),
        dead_letter_topic: topics.dead_letter.clone(),
        group: cfg.group.clone(),
        profile: None,
        home_marks: Default::default(),
    };
    let grpc = mesh_fraud_svc::grpc::FraudGrpc {
        scorer,
        store: store.clone(),
        partitions: PARTITIONS,
        clock: mesh_runtime::clock::system(),
        profile: None,
    };
    Direct {
        handler,
        grpc,
        store,
        prefix,
        topic: topics.order_events.clone(),
    }
}
