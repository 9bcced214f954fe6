//! What every mesh service shares at run time.
//!
//! Config from environment variables with errors that name the variable
//! ([`config`]), tracing and OpenTelemetry that never block without a
//! collector ([`telemetry`]), the admin HTTP endpoints `/live`, `/ready`,
//! `/metrics` ([`admin`]), the gRPC server with health and reflection
//! ([`grpc`]), and one shutdown token cancelled by SIGTERM/SIGINT
//! ([`shutdown`]). It must not contain service logic.
//!
//! # Layout
//! - [`config`]: [`config::Env`], typed lookups.
//! - [`telemetry`]: `init` once per process.
//! - [`admin`]: admin router and server.
//! - [`auth`]: tokens, roles, tenants, rate and in-flight limits for gRPC and HTTP.
//! - [`tls`]: mutual TLS for gRPC servers and channels; certificates for a mesh.
//! - [`grpc`]: `serve` a tonic router with health, reflection and per-method metrics.
//! - [`metrics`]: gRPC, store and consumer-lag metrics shared by every service.
//! - [`peers`]: clients of the other services: deadlines, retry budget, circuit breaker, trace context.
//! - [`shutdown`]: signal handling.
//! - [`clock`]: the one [`Clock`] trait, the wall clock and a manual one.
//! - [`service`]: the service skeleton: [`Deps`], consumer start-up, periodic tasks.
//! - [`background`]: the runtime consumers run on, apart from the gRPC servers.
//! - [`model_file`]: model files written atomically and hot-reloaded when they change.
//! - [`announce`]: "announce once, then mark sent" for alerts and transitions.
//! - [`procfs`]: a process's resident memory (benchmarks and reports).
#![forbid(unsafe_code)]

pub mod admin;
pub mod announce;
pub mod auth;
pub mod background;
pub mod clock;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod model_file;
pub mod peers;
pub mod procfs;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use clock::{Clock, ManualClock, SystemClock};
pub use service::Deps;

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration variable had a value the mesh cannot use.
    #[error("{var}={value:?}: {reason}")]
    Config {
        var: String,
        value: String,
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// Telemetry could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(String),
}

pub type Result<T> = std::result::Result<T, Error>;
