//! The fraud service: one decision per order, on two paths that agree.
//!
//! State is the fraud core's feature counters (`mesh-fraud`), applied
//! exactly once by a consumer of both event topics: orders, payments,
//! logins, credential changes, refunds and cancellations become core events
//! ([`convert`]), their ops become store ops in one atomic step per record
//! batch under scope `fraud` ([`state`], [`handler`]). Every order is scored
//! before its own update — rules (reloaded without restart), the supervised
//! model and the anomaly model ([`scoring`]) — and the consumer publishes a
//! `Decision` per order on the decisions topic, risk alerts on the alerts
//! topic, and queues REVIEW orders for humans ([`review`]). `ScoreOrder`
//! computes the same decision synchronously from the same state ([`grpc`]).
//!
//! It must not train models on live traffic or change rules itself: models
//! come from a file (or one training run on the simulator at start), rules
//! from a file an operator edits.
//!
//! # Layout
//! - [`convert`]: protobuf envelope → core events, with field-named errors.
//! - [`state`]: core ops → store ops; reads merged over every partition.
//! - [`scoring`]: the [`scoring::Scorer`], model loading, rules reloading.
//! - [`handler`]: the bus handler.
//! - [`review`]: review queue and labels in the store.
//! - [`grpc`]: the `FraudService` implementation.
//! - [`error`], [`metrics`]: the error type and its status mapping; metric names.
#![forbid(unsafe_code)]

pub mod convert;
pub mod error;
pub mod grpc;
pub mod handler;
pub mod metrics;
pub mod review;
pub mod scoring;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_bus::{ConsumerConfig, Producer, TopicNames};
use mesh_proto::fraud::v1::fraud_service_server::FraudServiceServer;
use mesh_runtime::config::Env;
use mesh_store::StateStore;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use scoring::Scorer;

/// Fraud settings (`MESH_FRAUD_*`).
#[derive(Debug, Clone)]
pub struct FraudConfig {
    /// gRPC listen address (`MESH_FRAUD_GRPC_ADDR`, default 127.0.0.1:50055).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_FRAUD_GROUP`, default `mesh-fraud`).
    pub group: String,
    /// Rules file (`MESH_FRAUD_RULES`); unset: the core's default rules,
    /// never reloaded.
    pub rules_path: Option<PathBuf>,
    /// How often the rules file is checked (`MESH_FRAUD_RULES_POLL_MS`,
    /// default 2000).
    pub rules_poll: Duration,
    /// Models JSON from the core's `--save-models` (`MESH_FRAUD_MODEL`);
    /// unset: trained once at start on the seeded simulator.
    pub model_path: Option<PathBuf>,
}

impl FraudConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        Ok(FraudConfig {
            grpc_addr: env.addr("MESH_FRAUD_GRPC_ADDR", "127.0.0.1:50055")?,
            group: env.string("MESH_FRAUD_GROUP", "mesh-fraud"),
            rules_path: env.get("MESH_FRAUD_RULES").map(PathBuf::from),
            rules_poll: env.millis("MESH_FRAUD_RULES_POLL_MS", Duration::from_secs(2))?,
            model_path: env.get("MESH_FRAUD_MODEL").map(PathBuf::from),
        })
    }
}

/// What the service needs from the process.
#[derive(Clone)]
pub struct Deps {
    pub brokers: String,
    pub topics: TopicNames,
    pub partitions: i32,
    /// Replication factor of the output topics created at start.
    pub replication: i32,
    pub store: StateStore,
    pub producer: Producer,
    /// librdkafka settings for the consumer (tests shorten timeouts).
    pub consumer_extra: Vec<(String, String)>,
}

/// A started fraud service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub scorer: Arc<Scorer>,
    pub consumer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
    /// The rules reloader, when a rules file is configured.
    pub reloader: Option<tokio::task::JoinHandle<()>>,
}

/// Loads rules and models (training them when no model file is given; a
/// few seconds, on a blocking thread).
pub async fn build_scorer(cfg: &FraudConfig, deps: &Deps) -> Result<Arc<Scorer>> {
    let rules = scoring::load_rules(cfg.rules_path.as_deref())?;
    let model_path = cfg.model_path.clone();
    let policy = tokio::task::spawn_blocking(move || scoring::load_policy(model_path.as_deref()))
        .await
        .map_err(|e| mesh_fraud::Error::Model(format!("model loading task failed: {e}")))??;
    Ok(Arc::new(Scorer {
        policy,
        rules,
        detectors: Default::default(),
        reader: state::FeatureReader {
            store: deps.store.clone(),
            partitions: deps.partitions,
        },
    }))
}

/// Creates the decisions and alerts topics when missing (the input topics
/// are the ingest's to create).
pub async fn ensure_output_topics(deps: &Deps, timeout: Duration) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &deps.brokers)
        .create()
        .map_err(mesh_bus::Error::from)?;
    let topics = [&deps.topics.decisions, &deps.topics.alerts];
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                deps.partitions,
                TopicReplication::Fixed(deps.replication),
            )
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(mesh_bus::Error::from)?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(mesh_bus::Error::Topic {
                    topic,
                    reason: format!("could not create: {code}"),
                }
                .into())
            }
        }
    }
    for t in topics {
        mesh_bus::topics::partition_count(&deps.brokers, t, timeout).await?;
    }
    Ok(())
}

/// Starts the consumer only (replay and tests use it without a server).
pub fn start_consumer(
    cfg: &FraudConfig,
    deps: &Deps,
    scorer: Arc<Scorer>,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let mut cc = ConsumerConfig::new(&deps.brokers, &cfg.group, &deps.topics.inputs());
    cc.extra = deps.consumer_extra.clone();
    let handler = Arc::new(handler::FraudHandler {
        scorer,
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        decisions_topic: deps.topics.decisions.clone(),
        alerts_topic: deps.topics.alerts.clone(),
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: cfg.group.clone(),
    });
    let assigned = Assignment::default();
    let a = assigned.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = mesh_bus::run_consumer(cc, handler, a, shutdown).await {
            tracing::error!(%e, "fraud consumer stopped");
        }
    });
    (assigned, task)
}

/// Builds the scorer, creates the output topics, starts the rules reloader,
/// the consumer and the gRPC server.
pub async fn start(cfg: &FraudConfig, deps: &Deps, shutdown: CancellationToken) -> Result<Running> {
    let scorer = build_scorer(cfg, deps).await?;
    // The decisions and alerts topics are normally created with the others
    // (`mesh_bus::TopicNames::all`); make sure, but do not fail on brokers
    // without the admin API (the embedded cluster creates them itself).
    match tokio::time::timeout(
        Duration::from_secs(4),
        ensure_output_topics(deps, Duration::from_secs(3)),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(%e, "could not ensure the decisions/alerts topics"),
        Err(_) => {
            tracing::warn!("no answer from the admin API; decisions/alerts topics not checked")
        }
    }
    let reloader = cfg.rules_path.clone().map(|path| {
        scoring::spawn_rules_reloader(scorer.rules.clone(), path, cfg.rules_poll, shutdown.clone())
    });
    let (assigned, consumer) = start_consumer(cfg, deps, scorer.clone(), shutdown.clone());
    let (router, health) = mesh_runtime::grpc::server();
    health
        .set_serving::<FraudServiceServer<grpc::FraudGrpc>>()
        .await;
    let svc = FraudServiceServer::new(grpc::FraudGrpc {
        scorer: scorer.clone(),
        store: deps.store.clone(),
        partitions: deps.partitions,
        clock: grpc::system_clock,
    });
    let (grpc_addr, task) =
        mesh_runtime::grpc::serve(cfg.grpc_addr, router.add_service(svc), shutdown)
            .await
            .map_err(|e| Error::invalid("MESH_FRAUD_GRPC_ADDR", e.to_string()))?;
    let server = tokio::spawn(async move {
        if let Ok(Err(e)) = task.await {
            tracing::error!(%e, "fraud gRPC server stopped");
        }
    });
    tracing::info!(%grpc_addr, "fraud serving");
    Ok(Running {
        grpc_addr,
        assigned,
        scorer,
        consumer,
        server,
        reloader,
    })
}
