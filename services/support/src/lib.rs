//! The support service: what customers say, and answering them.
//!
//! Consumes the user topic in its own consumer group: every review and
//! support message is scored for sentiment and sorted into a category
//! (delivery, quality, price, service, refund, account), in Chinese or
//! English, added to daily trends per sku (or per support category) exactly
//! once, and published as `FeedbackAnalysed` on the engagement topic; a
//! negative share that jumps raises a `NegativeFeedbackSpike` alert; searches
//! without results are counted ([`handler`]). Serves
//! `mesh.support.v1.SupportService` — feedback analysis and trends, and a
//! customer-service assistant with multi-turn order-status, refund and
//! address-change flows that ask fraud over gRPC and hand what it cannot
//! answer to a human queue with the conversation — and
//! `mesh.catalog.v1.CatalogService` — bilingual search with spelling
//! tolerance, filters and recommend's personalized rerank, and product
//! classification with a review list ([`grpc`], [`engine`]). Search and
//! support share one home because they share the text models.
//!
//! The models live in `mesh-text` and are trained at start from the shipped
//! data and seeded generators (a few seconds).
//!
//! # Layout
//! - [`engine`]: analysis, trends, spikes, conversations, catalog, search.
//! - [`backend`]: the gRPC calls the assistant and the search make.
//! - [`handler`]: the bus handler.
//! - [`grpc`]: the two service implementations.
//! - [`error`], [`metrics`]: the error type and metric names.
#![forbid(unsafe_code)]

pub mod backend;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod handler;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_bus::consumer::Assignment;
use mesh_bus::{ConsumerConfig, Producer, TopicNames};
use mesh_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use mesh_proto::support::v1::support_service_server::SupportServiceServer;
use mesh_runtime::config::Env;
use mesh_store::StateStore;
use tokio_util::sync::CancellationToken;

pub use engine::{Models, Support, SCOPE};

/// Keys no topic can rebuild: conversations, handoffs, the catalog (from
/// `UpsertProducts`) and the spike ledger.
pub const REPLAY_KEEPS: &[&str] = &["conv:", "handoffs:", "catalog", "lowconf:", "spikes:"];
pub use error::{Error, Result};

/// Support settings (`MESH_SUPPORT_*`).
#[derive(Debug, Clone)]
pub struct SupportConfig {
    /// gRPC listen address (`MESH_SUPPORT_GRPC_ADDR`, default 127.0.0.1:50058).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_SUPPORT_GROUP`, default `mesh-support`).
    pub group: String,
    /// Seed of the model training (`MESH_SUPPORT_SEED`, default 42).
    pub seed: u64,
}

impl SupportConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        Ok(SupportConfig {
            grpc_addr: env.addr("MESH_SUPPORT_GRPC_ADDR", "127.0.0.1:50058")?,
            group: env.string("MESH_SUPPORT_GROUP", "mesh-support"),
            seed: env.parse("MESH_SUPPORT_SEED", 42, "an unsigned integer")?,
        })
    }
}

#[derive(Clone)]
pub struct Deps {
    pub brokers: String,
    pub topics: TopicNames,
    pub partitions: i32,
    pub store: StateStore,
    pub producer: Producer,
    pub consumer_extra: Vec<(String, String)>,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Peers asked at request time: fraud (order status), recommend (rerank).
    pub peers: mesh_runtime::peers::Peers,
}

/// The wall clock, Unix ms.
pub fn system_clock() -> Arc<dyn Fn() -> i64 + Send + Sync> {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub support: Arc<Support>,
    pub consumer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
}

/// Trains the models (on a blocking thread) and starts the consumer and the
/// gRPC server.
pub async fn start(
    cfg: &SupportConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> Result<Running> {
    let seed = cfg.seed;
    let started = std::time::Instant::now();
    let models = tokio::task::spawn_blocking(move || Models::train(seed))
        .await
        .map_err(|e| Error::invalid("models", e.to_string()))??;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "support models trained"
    );
    let support = Arc::new(Support {
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        engagement_topic: deps.topics.engagement.clone(),
        alerts_topic: deps.topics.alerts.clone(),
        partitions: deps.partitions,
        peers: deps.peers.clone(),
        models: Arc::new(models),
        indexes: Default::default(),
        clock: deps.clock.clone(),
    });
    let mut cc = ConsumerConfig::new(&deps.brokers, &cfg.group, &[&deps.topics.user_events]);
    cc.extra = deps.consumer_extra.clone();
    let handler = Arc::new(handler::SupportHandler {
        support: support.clone(),
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: cfg.group.clone(),
    });
    let assigned = Assignment::default();
    let a = assigned.clone();
    let stop = shutdown.clone();
    let consumer = tokio::spawn(async move {
        if let Err(e) = mesh_bus::run_consumer(cc, handler, a, stop).await {
            tracing::error!(%e, "support consumer stopped");
        }
    });
    let (router, health) = mesh_runtime::grpc::server();
    health
        .set_serving::<SupportServiceServer<grpc::SupportGrpc>>()
        .await;
    health
        .set_serving::<CatalogServiceServer<grpc::CatalogGrpc>>()
        .await;
    let router = router
        .add_service(SupportServiceServer::new(grpc::SupportGrpc {
            support: support.clone(),
        }))
        .add_service(CatalogServiceServer::new(grpc::CatalogGrpc {
            support: support.clone(),
        }));
    let (grpc_addr, task) = mesh_runtime::grpc::serve(cfg.grpc_addr, router, shutdown).await?;
    let server = tokio::spawn(async move {
        if let Ok(Err(e)) = task.await {
            tracing::error!(%e, "support gRPC server stopped");
        }
    });
    tracing::info!(%grpc_addr, "support serving");
    Ok(Running {
        grpc_addr,
        assigned,
        support,
        consumer,
        server,
    })
}
