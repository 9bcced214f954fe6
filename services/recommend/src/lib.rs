//! The recommend service: live recommendation signals applied exactly once
//! from the event stream, a hot-swapped trained model, and ranked answers
//! over gRPC (`mesh.recommend.v1.RecommendService`).
//!
//! Consumes both event topics in one consumer group. `product_view`,
//! `add_to_cart` and every `order_placed` line become view / cart / order
//! interactions; each one adds decayed co-occurrence with the user's recent
//! history, popularity and trending counters per scope (global, category,
//! device, channel-as-segment), a bounded history entry, cart and purchase
//! marks and catalog facts — all as store ops applied with the partition's
//! watermark in one atomic step ([`handler`]). A second consumer reads the
//! alerts topic and keeps the churn (at risk) and fraud (promotion abuse)
//! flags the ranking rules use ([`alerts`]). It must not rank or train on
//! the consumer path, and it owns no state outside the `recommend` scope.
//!
//! # Layout
//! - [`keys`]: key names and the stored history entry.
//! - [`signals`]: event → interactions → ops (pure).
//! - [`handler`]: the bus handler (history read, batch, apply per home slot).
//! - [`alerts`]: churn / promotion-abuse flags from the alerts topic.
//! - [`live`]: reads of the live signals (one key per read), catalog upserts.
//! - [`model`]: the hot-swapped [`ModelHandle`], training and artifact files.
//! - [`engine`]: candidate generation and ranking behind each RPC.
//! - [`feedback`]: impressions of answers, the click/impression counters and
//!   the per-source weights the bandit learns from them.
//! - [`grpc`]: the `RecommendService` implementation (conversion only).
//! - [`training`]: the `mesh train recommend` pipeline (log or store → artifact).
//! - [`bench`]: the `mesh bench recommend` load.
//! - [`error`], [`metrics`]: the error enum with its status mapping; metric names.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod bench;
pub mod engine;
pub mod error;
pub mod feedback;
pub mod grpc;
pub mod handler;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod model;
pub mod signals;
pub mod training;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_proto::recommend::v1::recommend_service_server::RecommendServiceServer;
use mesh_recommend::live::LiveConfig;
use mesh_runtime::config::Env;
use mesh_runtime::grpc::GrpcServer;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use model::ModelHandle;

/// Recommend settings (`MESH_RECOMMEND_*`).
#[derive(Debug, Clone)]
pub struct RecommendConfig {
    /// gRPC listen address (`MESH_RECOMMEND_GRPC_ADDR`, default 127.0.0.1:50054).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_RECOMMEND_GROUP`, default `mesh-recommend`).
    pub group: String,
    /// Model artifact JSON (`MESH_RECOMMEND_MODEL`); unset: no model, live
    /// signals and popularity only.
    pub model_path: Option<PathBuf>,
    /// How often the model file is checked for changes
    /// (`MESH_RECOMMEND_MODEL_POLL_MS`, default 2000).
    pub model_poll: Duration,
    /// Live-signal settings: `t_ref` from `MESH_RECOMMEND_T_REF` (Unix
    /// seconds, default 2024-01-01) and `history_len` from
    /// `MESH_RECOMMEND_HISTORY_LEN` (default 50), `cooc_keep` from
    /// `MESH_RECOMMEND_COOC_KEEP` (neighbours kept per item, default 100;
    /// 0 = no cap). `t_ref` is where the decay epochs start; changing it
    /// needs an empty store.
    pub live: LiveConfig,
    /// How long a churn or promotion-abuse flag counts after its alert
    /// (`MESH_RECOMMEND_FLAG_TTL_MS`, default 30 days).
    pub flag_ttl: Duration,
    /// How long catalog entries are cached in process
    /// (`MESH_RECOMMEND_CATALOG_TTL_MS`, default 1000; 0 = no cache).
    pub catalog_ttl: Duration,
    /// The feedback loop (`MESH_RECOMMEND_FEEDBACK_*`, see
    /// [`feedback::FeedbackConfig`]).
    pub feedback: feedback::FeedbackConfig,
    /// Longest time the consumer's fetch waits at the broker for new events
    /// (`MESH_RECOMMEND_FETCH_WAIT_MS`, default 50): bounds how late a new
    /// event reaches the live signals when traffic is low.
    pub fetch_wait: Duration,
}

impl RecommendConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        let defaults = LiveConfig::default();
        let fb = feedback::FeedbackConfig::default();
        let t_ref = env.parse::<f64>(
            "MESH_RECOMMEND_T_REF",
            defaults.t_ref,
            "Unix seconds, e.g. 1704067200",
        )?;
        if !t_ref.is_finite() || t_ref < 0.0 {
            return Err(mesh_runtime::Error::Config {
                var: "MESH_RECOMMEND_T_REF".into(),
                value: t_ref.to_string(),
                reason: "expected non-negative Unix seconds".into(),
            });
        }
        Ok(RecommendConfig {
            grpc_addr: env.addr("MESH_RECOMMEND_GRPC_ADDR", "127.0.0.1:50054")?,
            group: env.string("MESH_RECOMMEND_GROUP", "mesh-recommend"),
            model_path: env.get("MESH_RECOMMEND_MODEL").map(PathBuf::from),
            model_poll: env.millis("MESH_RECOMMEND_MODEL_POLL_MS", Duration::from_secs(2))?,
            flag_ttl: env.millis("MESH_RECOMMEND_FLAG_TTL_MS", engine::FLAG_TTL)?,
            catalog_ttl: env.millis("MESH_RECOMMEND_CATALOG_TTL_MS", engine::CATALOG_TTL)?,
            fetch_wait: env.millis("MESH_RECOMMEND_FETCH_WAIT_MS", Duration::from_millis(50))?,
            feedback: feedback::FeedbackConfig {
                min_impressions: env.parse::<u64>(
                    "MESH_RECOMMEND_FEEDBACK_MIN_IMPRESSIONS",
                    fb.min_impressions,
                    "a count, e.g. 500",
                )?,
                min_clicks: env.parse::<u64>(
                    "MESH_RECOMMEND_FEEDBACK_MIN_CLICKS",
                    fb.min_clicks,
                    "a count, e.g. 20",
                )?,
                refresh: env.millis("MESH_RECOMMEND_FEEDBACK_REFRESH_MS", fb.refresh)?,
                ..fb
            },
            live: LiveConfig {
                t_ref,
                history_len: env.positive("MESH_RECOMMEND_HISTORY_LEN", 50)? as usize,
                cooc_keep: env.parse::<usize>(
                    "MESH_RECOMMEND_COOC_KEEP",
                    defaults.cooc_keep,
                    "a count of neighbours per item, e.g. 100; 0 = no cap",
                )?,
                ..defaults
            },
        })
    }
}

/// What the service needs from the process (the runtime's skeleton). Its
/// peers: profile (user features for ranking).
pub type Deps = mesh_runtime::Deps;

/// A started recommend service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    /// Partitions of the alerts topic assigned to the flags consumer.
    pub flags_assigned: Assignment,
    pub model: Arc<ModelHandle>,
    pub consumer: tokio::task::JoinHandle<()>,
    pub flags_consumer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
    pub watcher: tokio::task::JoinHandle<()>,
}

/// Starts the consumer only (replay and tests use it without a server).
pub fn start_consumer(
    cfg: &RecommendConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let mut cc = deps.consumer_config(&cfg.group, &deps.topics.inputs());
    // Co-occurrence should show within a second of the event: do not let an
    // idle fetch sit at the broker for librdkafka's default 500 ms.
    cc.extra.insert(
        0,
        (
            "fetch.wait.max.ms".to_string(),
            cfg.fetch_wait.as_millis().to_string(),
        ),
    );
    let handler = Arc::new(handler::RecommendHandler::new(
        deps.store.clone(),
        deps.producer.clone(),
        deps.topics.dead_letter.clone(),
        cfg.group.clone(),
        cfg.live.clone(),
        deps.partitions,
    ));
    mesh_runtime::service::start_consumer("recommend", cc, handler, shutdown)
}

/// Starts the consumer of the alerts topic (group `<group>-flags`), once the
/// topic exists.
pub fn start_flags_consumer(
    cfg: &RecommendConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let cc = deps.consumer_config(
        &format!("{}-flags", cfg.group),
        &[deps.topics.alerts.as_str()],
    );
    let handler = Arc::new(alerts::AlertsHandler {
        store: deps.store.clone(),
        partitions: deps.partitions,
    });
    let (brokers, topics, partitions) =
        (deps.brokers.clone(), deps.topics.clone(), deps.partitions);
    let assigned = Assignment::default();
    let a = assigned.clone();
    let task = tokio::spawn(async move {
        let ready = tokio::select! {
            _ = shutdown.cancelled() => false,
            ok = alerts::ensure_alerts_topic(&brokers, &topics, partitions, Duration::from_secs(4)) => ok,
        };
        if !ready {
            return;
        }
        if let Err(e) = mesh_bus::run_consumer(cc, handler, a, shutdown).await {
            tracing::error!(%e, "recommend flags consumer stopped");
        }
    });
    (assigned, task)
}

/// Loads the model (a bad artifact stops the start; a missing file does
/// not), then starts the consumer, the model watcher and the gRPC server.
pub async fn start(
    cfg: &RecommendConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> std::result::Result<Running, StartError> {
    let model = Arc::new(ModelHandle::open(cfg.model_path.clone())?);
    start_with_model(cfg, deps, model, shutdown).await
}

/// [`start`] with a model handle made by the caller (benches and tests).
pub async fn start_with_model(
    cfg: &RecommendConfig,
    deps: &Deps,
    model: Arc<ModelHandle>,
    shutdown: CancellationToken,
) -> std::result::Result<Running, StartError> {
    let (assigned, consumer) = start_consumer(cfg, deps, shutdown.clone());
    let (flags_assigned, flags_consumer) = start_flags_consumer(cfg, deps, shutdown.clone());
    let watcher = model
        .clone()
        .spawn_watcher(cfg.model_poll, shutdown.clone());
    let live = live::LiveReader {
        store: deps.store.clone(),
        partitions: deps.partitions,
        live: cfg.live.clone(),
    };
    let mut engine = engine::Engine::new(live, model.clone());
    engine.flag_ttl = cfg.flag_ttl;
    engine.catalog = engine::CatalogCache::new(cfg.catalog_ttl);
    engine.profile = deps.peers.profile.clone();
    engine.feedback = Arc::new(feedback::Feedback::new(
        deps.store.clone(),
        deps.partitions,
        cfg.feedback.clone(),
    ));
    let engine = Arc::new(engine);
    let (grpc_addr, server) = serve_grpc(cfg.grpc_addr, engine, shutdown).await?;
    Ok(Running {
        grpc_addr,
        assigned,
        flags_assigned,
        model,
        consumer,
        flags_consumer,
        server,
        watcher,
    })
}

/// Serves `RecommendService` (with health and reflection) for `engine` on
/// `addr` until `shutdown`; the consumer is not started (benches, or a
/// read-only replica next to a consumer elsewhere).
pub async fn serve_grpc(
    addr: SocketAddr,
    engine: Arc<engine::Engine>,
    shutdown: CancellationToken,
) -> mesh_runtime::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    // Impressions of this server's answers are written in the background.
    let _flusher = engine.feedback.clone().spawn_flusher(shutdown.clone());
    GrpcServer::new()
        .add(RecommendServiceServer::new(grpc::RecommendGrpc { engine }))
        .await
        .start("recommend", addr, shutdown)
        .await
}

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The model file exists but could not be loaded.
    #[error("MESH_RECOMMEND_MODEL: {0}")]
    Model(#[from] Error),
    /// The gRPC listener could not be bound.
    #[error(transparent)]
    Runtime(#[from] mesh_runtime::Error),
}
