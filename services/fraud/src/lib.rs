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
//! come from a file `mesh train fraud` writes (or one training run on the
//! simulator at start), rules from a file an operator edits.
//!
//! # Layout
//! - [`convert`]: protobuf envelope → core events, with field-named errors.
//! - [`state`]: core ops → store ops routed to home slots; one-round-trip reads.
//! - [`scoring`]: the [`scoring::Scorer`], rules reloading, training on the simulator.
//! - [`model`]: the hot-swapped models ([`model::ModelHandle`]) and their file.
//! - [`train`]: `mesh train fraud`: labels from the store and the simulator, time split.
//! - [`handler`]: the bus handler.
//! - [`erasure`]: what `user_erased` deletes, keeps and anonymises.
//! - [`review`]: review queue and labels in the store.
//! - [`tenant`]: the review RPCs' `tenant_id`: its check, `<tenant>/<order>` fields.
//! - [`buyer`]: the buyer's profile, asked over gRPC, attached to decisions.
//! - [`grpc`]: the `FraudService` implementation.
//! - [`bench`]: the `ScoreOrder` load behind `mesh bench fraud`.
//! - [`live_sim`]: labelled fraud traffic, a review team and chargebacks for `mesh up --simulate`.
//! - [`error`], [`metrics`]: the error type and its status mapping; metric names.
#![forbid(unsafe_code)]

pub mod bench;
pub mod buyer;
pub mod convert;
pub mod erasure;
pub mod error;
pub mod grpc;
pub mod handler;
pub mod live_sim;
pub mod metrics;
pub mod model;
pub mod review;
pub mod scoring;
pub mod state;
pub mod tenant;
pub mod train;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_proto::fraud::v1::fraud_service_server::FraudServiceServer;
use mesh_runtime::config::Env;
use mesh_runtime::grpc::GrpcServer;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use mesh_fraud::RulesHandle;
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
    /// Models JSON written by `mesh train fraud` (`MESH_FRAUD_MODEL`),
    /// swapped in without a restart when the file changes; unset, or missing
    /// at start: trained once at start on the seeded simulator.
    pub model_path: Option<PathBuf>,
    /// How often the model file is checked (`MESH_FRAUD_MODEL_POLL_MS`,
    /// default 2000).
    pub model_poll: Duration,
    /// Largest share of orders sent to manual review on the model score
    /// (`MESH_FRAUD_REVIEW_BUDGET`, default 0.02; 0 = no budget, the
    /// configured threshold alone). Rules that ask for review still do.
    pub review_budget: f64,
}

impl FraudConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        Ok(FraudConfig {
            grpc_addr: env.addr("MESH_FRAUD_GRPC_ADDR", "127.0.0.1:50055")?,
            group: env.string("MESH_FRAUD_GROUP", "mesh-fraud"),
            rules_path: env.get("MESH_FRAUD_RULES").map(PathBuf::from),
            rules_poll: env.millis("MESH_FRAUD_RULES_POLL_MS", Duration::from_secs(2))?,
            model_path: env.get("MESH_FRAUD_MODEL").map(PathBuf::from),
            model_poll: env.millis("MESH_FRAUD_MODEL_POLL_MS", Duration::from_secs(2))?,
            review_budget: {
                let v: f64 = env.parse(
                    "MESH_FRAUD_REVIEW_BUDGET",
                    mesh_fraud::DEFAULT_REVIEW_BUDGET,
                    "a share in [0, 1)",
                )?;
                if !(0.0..1.0).contains(&v) {
                    return Err(mesh_runtime::Error::Config {
                        var: "MESH_FRAUD_REVIEW_BUDGET".into(),
                        value: v.to_string(),
                        reason: "a share in [0, 1) (0 turns the budget off)".into(),
                    });
                }
                v
            },
        })
    }
}

/// What the service needs from the process (the runtime's skeleton). Its
/// peers: profile (buyer context in `ScoreOrder`); its clock dates review
/// resolutions.
pub type Deps = mesh_runtime::Deps;

/// A started fraud service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub scorer: Arc<Scorer>,
    pub consumer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
    /// The rules reloader, when a rules file is configured.
    pub reloader: Option<tokio::task::JoinHandle<()>>,
    /// The model file watcher, when a model file is configured.
    pub model_watcher: Option<tokio::task::JoinHandle<()>>,
}

/// Loads rules and models (training them when no model file is given; a
/// few seconds, on a blocking thread).
pub async fn build_scorer(cfg: &FraudConfig, deps: &Deps) -> Result<Arc<Scorer>> {
    let rules = scoring::load_rules(cfg.rules_path.as_deref())?;
    let model_path = cfg.model_path.clone();
    let policy = tokio::task::spawn_blocking(move || scoring::open_models(model_path))
        .await
        .map_err(|e| mesh_fraud::Error::Model(format!("model loading task failed: {e}")))??;
    metrics::REVIEW_BUDGET.set(cfg.review_budget.max(0.0));
    let budget = if cfg.review_budget > 0.0 {
        Some(std::sync::Mutex::new(mesh_fraud::ReviewBudget::new(
            cfg.review_budget,
            // About a thousand orders: enough for a 2% quantile (20 orders
            // above it), short enough to follow a shift in traffic within
            // minutes (a backfill of old orders scores unlike live ones).
            1_000,
        )?))
    } else {
        None
    };
    Ok(Arc::new(Scorer {
        policy: Arc::new(policy),
        rules,
        detectors: Default::default(),
        reader: state::FeatureReader {
            store: deps.store.clone(),
            partitions: deps.partitions,
        },
        budget,
    }))
}

/// Starts the consumer only (replay and tests use it without a server).
pub fn start_consumer(
    cfg: &FraudConfig,
    deps: &Deps,
    scorer: Arc<Scorer>,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let cc = deps.consumer_config(&cfg.group, &deps.topics.inputs());
    let handler = Arc::new(handler::FraudHandler {
        scorer,
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        decisions_topic: deps.topics.decisions.clone(),
        alerts_topic: deps.topics.alerts.clone(),
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: cfg.group.clone(),
        profile: deps.peers.profile.clone(),
        home_marks: Default::default(),
    });
    mesh_runtime::service::start_consumer("fraud", cc, handler, shutdown)
}

/// Builds the scorer, creates the output topics, starts the rules reloader,
/// the consumer and the gRPC server.
pub async fn start(cfg: &FraudConfig, deps: &Deps, shutdown: CancellationToken) -> Result<Running> {
    // The decisions and alerts topics are created with the others by whoever
    // sets the broker up (`mesh up`: `mesh_bus::ensure_output_topics`); a
    // producer to a missing topic would retry the batch until it appears.
    let scorer = build_scorer(cfg, deps).await?;
    let reloader = cfg.rules_path.clone().map(|path| {
        scoring::spawn_rules_reloader(scorer.rules.clone(), path, cfg.rules_poll, shutdown.clone())
    });
    let model_watcher = scorer.policy.path().is_some().then(|| {
        scorer
            .policy
            .clone()
            .spawn_watcher(cfg.model_poll, shutdown.clone())
    });
    let (assigned, consumer) = start_consumer(cfg, deps, scorer.clone(), shutdown.clone());
    let svc = FraudServiceServer::new(grpc::FraudGrpc {
        scorer: scorer.clone(),
        store: deps.store.clone(),
        partitions: deps.partitions,
        clock: deps.clock.clone(),
        profile: deps.peers.profile.clone(),
    });
    let (grpc_addr, server) = GrpcServer::new()
        .add(svc)
        .await
        .start("fraud", cfg.grpc_addr, shutdown)
        .await
        .map_err(|e| Error::invalid("MESH_FRAUD_GRPC_ADDR", e.to_string()))?;
    Ok(Running {
        grpc_addr,
        assigned,
        scorer,
        consumer,
        server,
        reloader,
        model_watcher,
    })
}
