//! The ingest service: the mesh's front door for platform events.
//!
//! gRPC `IngestService` (batch and client-streaming publish) and HTTP
//! `POST /v1/events` (mesh JSON or CloudEvents structured mode) share one
//! [`publish::Publisher`]: validate each event ([`validate`]), keep rejected
//! input on the dead-letter topic with the reason, drop retried event ids
//! (the id ledger), produce the rest to the user or order topic keyed by
//! user, and answer only after the broker acknowledged (acks=all).
//!
//! It must not keep state of its own beyond the id ledger.
//!
//! # Layout
//! - [`validate`]: the rules, each naming its field.
//! - [`json`]: the JSON forms.
//! - [`publish`]: the shared publishing core.
//! - [`grpc`], [`http`]: the two front doors; conversion only.
//! - [`metrics`]: metric names.
//! - [`traffic`]: simulated traffic published into a running ingest.
#![forbid(unsafe_code)]

pub mod grpc;
pub mod http;
pub mod json;
pub mod metrics;
pub mod pii;
pub mod publish;
pub mod traffic;
pub mod validate;

use std::net::SocketAddr;

use mesh_proto::ingest::v1::ingest_service_server::IngestServiceServer;
use mesh_runtime::config::Env;
use tokio_util::sync::CancellationToken;

pub use publish::Publisher;

/// Ingest settings (`MESH_INGEST_*`).
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// gRPC listen address (`MESH_INGEST_GRPC_ADDR`, default 127.0.0.1:50051).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (`MESH_INGEST_HTTP_ADDR`, default 127.0.0.1:8080).
    pub http_addr: SocketAddr,
    /// Most events in one request (`MESH_INGEST_MAX_BATCH`, default 1000).
    pub max_batch: usize,
    /// Most events being published at once across requests
    /// (`MESH_INGEST_MAX_IN_FLIGHT`, default 20000).
    pub max_in_flight: usize,
    /// Largest HTTP body (`MESH_INGEST_MAX_BODY_BYTES`, default 16 MiB).
    pub max_body_bytes: usize,
}

impl IngestConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        Ok(IngestConfig {
            grpc_addr: env.addr("MESH_INGEST_GRPC_ADDR", "127.0.0.1:50051")?,
            http_addr: env.addr("MESH_INGEST_HTTP_ADDR", "127.0.0.1:8080")?,
            max_batch: env.positive("MESH_INGEST_MAX_BATCH", 1000)? as usize,
            max_in_flight: env.positive("MESH_INGEST_MAX_IN_FLIGHT", 20_000)? as usize,
            max_body_bytes: env.positive("MESH_INGEST_MAX_BODY_BYTES", 16 << 20)? as usize,
        })
    }

    /// Loopback, port 0 everywhere: for tests.
    pub fn ephemeral() -> Self {
        IngestConfig {
            grpc_addr: "127.0.0.1:0".parse().expect("literal"),
            http_addr: "127.0.0.1:0".parse().expect("literal"),
            max_batch: 1000,
            max_in_flight: 20_000,
            max_body_bytes: 16 << 20,
        }
    }
}

/// A started ingest service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts both front doors; they stop when `shutdown` is cancelled.
pub async fn start(
    cfg: &IngestConfig,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> mesh_runtime::Result<Running> {
    let (router, health) = mesh_runtime::grpc::server();
    health
        .set_serving::<IngestServiceServer<grpc::IngestGrpc>>()
        .await;
    let svc = IngestServiceServer::new(grpc::IngestGrpc {
        publisher: publisher.clone(),
    })
    .max_decoding_message_size(cfg.max_body_bytes);
    let (grpc_addr, grpc_task) =
        mesh_runtime::grpc::serve(cfg.grpc_addr, router.add_service(svc), shutdown.clone()).await?;
    let (http_addr, http_task) = mesh_runtime::admin::serve(
        cfg.http_addr,
        http::router(publisher, cfg.max_body_bytes),
        shutdown,
    )
    .await?;
    let grpc_task = tokio::spawn(async move {
        if let Ok(Err(e)) = grpc_task.await {
            tracing::error!(%e, "ingest gRPC server stopped");
        }
    });
    tracing::info!(%grpc_addr, %http_addr, "ingest serving");
    Ok(Running {
        grpc_addr,
        http_addr,
        tasks: vec![grpc_task, http_task],
    })
}
