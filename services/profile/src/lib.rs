//! The profile service: what the mesh knows about each user.
//!
//! Consumes both event topics in one consumer group, turns each event into
//! state ops ([`fold`]) and applies them with the partition's watermark in
//! one atomic store step ([`handler`]), so every event counts exactly once.
//! Answers `GetProfile` from the slot that owns the user ([`grpc`]).
//!
//! # Layout
//! - [`fold`]: event → ops, and the in-memory reference fold.
//! - [`handler`]: the bus handler.
//! - [`grpc`]: the `ProfileService` implementation.
#![forbid(unsafe_code)]

pub mod fold;
pub mod grpc;
pub mod handler;

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_bus::consumer::Assignment;
use mesh_bus::{ConsumerConfig, Producer, TopicNames};
use mesh_proto::profile::v1::profile_service_server::ProfileServiceServer;
use mesh_runtime::config::Env;
use mesh_store::StateStore;
use tokio_util::sync::CancellationToken;

/// Profile settings (`MESH_PROFILE_*`).
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    /// gRPC listen address (`MESH_PROFILE_GRPC_ADDR`, default 127.0.0.1:50052).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_PROFILE_GROUP`, default `mesh-profile`).
    pub group: String,
}

impl ProfileConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        Ok(ProfileConfig {
            grpc_addr: env.addr("MESH_PROFILE_GRPC_ADDR", "127.0.0.1:50052")?,
            group: env.string("MESH_PROFILE_GROUP", "mesh-profile"),
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

/// A started profile service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub consumer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
}

/// Starts the consumer only (replay and tests use it without a server).
pub fn start_consumer(
    cfg: &ProfileConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let mut cc = ConsumerConfig::new(&deps.brokers, &cfg.group, &deps.topics.inputs());
    cc.extra = deps.consumer_extra.clone();
    let handler = Arc::new(handler::ProfileHandler {
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: cfg.group.clone(),
    });
    let assigned = Assignment::default();
    let a = assigned.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = mesh_bus::run_consumer(cc, handler, a, shutdown).await {
            tracing::error!(%e, "profile consumer stopped");
        }
    });
    (assigned, task)
}

/// Starts the consumer and the gRPC server.
pub async fn start(
    cfg: &ProfileConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> mesh_runtime::Result<Running> {
    let (assigned, consumer) = start_consumer(cfg, deps, shutdown.clone());
    let (router, health) = mesh_runtime::grpc::server();
    health
        .set_serving::<ProfileServiceServer<grpc::ProfileGrpc>>()
        .await;
    let svc = ProfileServiceServer::new(grpc::ProfileGrpc {
        store: deps.store.clone(),
        partitions: deps.partitions,
    });
    let (grpc_addr, task) =
        mesh_runtime::grpc::serve(cfg.grpc_addr, router.add_service(svc), shutdown).await?;
    let server = tokio::spawn(async move {
        if let Ok(Err(e)) = task.await {
            tracing::error!(%e, "profile gRPC server stopped");
        }
    });
    tracing::info!(%grpc_addr, "profile serving");
    Ok(Running {
        grpc_addr,
        assigned,
        consumer,
        server,
    })
}
