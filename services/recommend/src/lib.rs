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
//! watermark in one atomic step ([`handler`]). It must not rank or train on
//! the consumer path, and it owns no state outside the `recommend` scope.
//!
//! # Layout
//! - [`keys`]: key names and the stored history entry.
//! - [`signals`]: event → interactions → ops (pure).
//! - [`handler`]: the bus handler (history read, batch, apply).
//! - [`live`]: reads merged over partitions, catalog upserts.
//! - [`model`]: the hot-swapped [`ModelHandle`], training and artifact files.
//! - [`engine`]: candidate generation and ranking behind each RPC.
//! - [`grpc`]: the `RecommendService` implementation (conversion only).
//! - [`error`], [`metrics`]: the error enum with its status mapping; metric names.
#![forbid(unsafe_code)]

pub mod engine;
pub mod error;
pub mod grpc;
pub mod handler;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod model;
pub mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_bus::{ConsumerConfig, Producer, TopicNames};
use mesh_proto::recommend::v1::recommend_service_server::RecommendServiceServer;
use mesh_recommend::live::LiveConfig;
use mesh_runtime::config::Env;
use mesh_store::StateStore;
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
    /// `MESH_RECOMMEND_HISTORY_LEN` (default 50). Changing `t_ref` needs an
    /// empty store (or a rebase of every stored score).
    pub live: LiveConfig,
}

impl RecommendConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        let defaults = LiveConfig::default();
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
            live: LiveConfig {
                t_ref,
                history_len: env.positive("MESH_RECOMMEND_HISTORY_LEN", 50)? as usize,
                ..defaults
            },
        })
    }
}

/// What the service needs from the process.
#[derive(Clone)]
pub struct Deps {
    pub brokers: String,
    pub topics: TopicNames,
    pub partitions: i32,
    pub store: StateStore,
    pub producer: Producer,
    /// librdkafka settings for the consumer (tests shorten timeouts).
    pub consumer_extra: Vec<(String, String)>,
}

/// A started recommend service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub model: Arc<ModelHandle>,
    pub consumer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
    pub watcher: tokio::task::JoinHandle<()>,
}

/// Starts the consumer only (replay and tests use it without a server).
pub fn start_consumer(
    cfg: &RecommendConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let mut cc = ConsumerConfig::new(&deps.brokers, &cfg.group, &deps.topics.inputs());
    cc.extra = deps.consumer_extra.clone();
    let handler = Arc::new(handler::RecommendHandler::new(
        deps.store.clone(),
        deps.producer.clone(),
        deps.topics.dead_letter.clone(),
        cfg.group.clone(),
        cfg.live.clone(),
    ));
    let assigned = Assignment::default();
    let a = assigned.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = mesh_bus::run_consumer(cc, handler, a, shutdown).await {
            tracing::error!(%e, "recommend consumer stopped");
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
    let watcher = model
        .clone()
        .spawn_watcher(cfg.model_poll, shutdown.clone());
    let live = live::LiveReader {
        store: deps.store.clone(),
        partitions: deps.partitions,
        live: cfg.live.clone(),
    };
    let engine = Arc::new(engine::Engine::new(live, model.clone()));
    let (grpc_addr, server) = serve_grpc(cfg.grpc_addr, engine, shutdown).await?;
    tracing::info!(%grpc_addr, "recommend serving");
    Ok(Running {
        grpc_addr,
        assigned,
        model,
        consumer,
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
    let (router, health) = mesh_runtime::grpc::server();
    health
        .set_serving::<RecommendServiceServer<grpc::RecommendGrpc>>()
        .await;
    let svc = RecommendServiceServer::new(grpc::RecommendGrpc { engine });
    let (grpc_addr, task) =
        mesh_runtime::grpc::serve(addr, router.add_service(svc), shutdown).await?;
    let server = tokio::spawn(async move {
        if let Ok(Err(e)) = task.await {
            tracing::error!(%e, "recommend gRPC server stopped");
        }
    });
    Ok((grpc_addr, server))
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
