//! Shared set-up of the service tests: topics, the service in-process on
//! the real broker and Redis, publishing, and an alerts watcher.
#![allow(dead_code)]
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_bus::consumer::Assignment;
use mesh_bus::headers::HeaderList;
use mesh_bus::{Handler, HandlerError, Producer, ProducerConfig, Record, TopicNames, TopicSpec};
use mesh_logistics_svc::{Deps, LogisticsConfig, Running};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_proto::logistics::v1 as pb;
use mesh_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use mesh_runtime::config::Env;
use mesh_store::{RedisStore, StateStore};
use prost::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// 2026-11-20 00:00 UTC: the tests' fixed "now".
pub const NOW: i64 = 1_795_132_800_000;
pub const DAY: i64 = 86_400_000;
pub const MIN: i64 = 60_000;
pub const PARTITIONS: i32 = 4;
pub const CAPACITY: i64 = 10;

pub struct Svc {
    pub topics: TopicNames,
    pub deps: Deps,
    pub running: Running,
    pub client: LogisticsServiceClient<Channel>,
    pub shutdown: CancellationToken,
}

pub async fn create_topics(topics: &TopicNames) {
    let brokers = mesh_testkit::kafka_brokers();
    mesh_bus::ensure_topics(
        &brokers,
        topics,
        TopicSpec {
            partitions: PARTITIONS,
            replication: 1,
        },
        Duration::from_secs(10),
    )
    .await
    .expect("topics");
    // `ensure_topics` creates the four backbone topics; alerts is ours.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new(&topics.alerts, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    mesh_bus::topics::partition_count(&brokers, &topics.alerts, Duration::from_secs(10))
        .await
        .unwrap();
}

pub async fn start(name: &str) -> Svc {
    let prefix = mesh_testkit::unique(name);
    let topics = TopicNames::with_prefix(&prefix);
    create_topics(&topics).await;
    let brokers = mesh_testkit::kafka_brokers();
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &prefix)).unwrap();
    let group = format!("{prefix}-lg");
    let cfg = LogisticsConfig::from_env(&Env::from_pairs([
        ("MESH_LOGISTICS_GRPC_ADDR", "127.0.0.1:0"),
        ("MESH_LOGISTICS_GROUP", group.as_str()),
        ("MESH_LOGISTICS_PLAN_DEBOUNCE_MS", "100"),
        ("MESH_LOGISTICS_SOLVE_MS", "500"),
        ("MESH_LOGISTICS_SOLVE_ITERATIONS", "200"),
        ("MESH_LOGISTICS_REPLAN_MS", "100"),
        ("MESH_LOGISTICS_CAPACITY", "10"),
        ("MESH_LOGISTICS_DEPOTS", "wh-1=52.50,13.40"),
    ]))
    .unwrap();
    let deps = Deps {
        brokers,
        topics: topics.clone(),
        partitions: PARTITIONS,
        store,
        producer,
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        clock: Arc::new(|| NOW),
        peers: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let running = mesh_logistics_svc::start(&cfg, &deps, shutdown.clone())
        .await
        .unwrap();
    let client = LogisticsServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    Svc {
        topics,
        deps,
        running,
        client,
        shutdown,
    }
}

pub async fn publish(svc: &Svc, events: &[Envelope]) {
    for e in events {
        svc.deps
            .producer
            .send(
                &svc.topics.order_events,
                &e.user_key(),
                &e.encode_to_vec(),
                &HeaderList::new(),
            )
            .await
            .unwrap();
    }
}

pub fn envelope(id: &str, user: &str, at: i64, body: Body) -> Envelope {
    Envelope {
        event_id: id.into(),
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "test".into(),
        context: None,
        body: Some(body),
    }
}

/// Collects every alert published on the alerts topic.
pub struct Alerts(mpsc::UnboundedSender<pb::LogisticsAlert>);

impl Handler for Alerts {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        for r in records {
            let a = pb::LogisticsAlert::decode(r.payload.as_slice())
                .map_err(|e| HandlerError(e.to_string()))?;
            let _ = self.0.send(a);
        }
        Ok(())
    }
}

pub fn watch_alerts(svc: &Svc) -> mpsc::UnboundedReceiver<pb::LogisticsAlert> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut cc = mesh_bus::ConsumerConfig::new(
        &svc.deps.brokers,
        &format!("{}-alerts", svc.topics.alerts),
        &[&svc.topics.alerts],
    );
    cc.extra = vec![
        ("session.timeout.ms".into(), "6000".into()),
        ("auto.offset.reset".into(), "earliest".into()),
    ];
    tokio::spawn(mesh_bus::run_consumer(
        cc,
        Arc::new(Alerts(tx)),
        Assignment::default(),
        svc.shutdown.clone(),
    ));
    rx
}

pub async fn next_alert(
    rx: &mut mpsc::UnboundedReceiver<pb::LogisticsAlert>,
    kind: pb::AlertKind,
) -> pb::LogisticsAlert {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let a = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} alert within 60 s"))
            .expect("alert consumer running");
        if a.kind() == kind {
            return a;
        }
    }
}
