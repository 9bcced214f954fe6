//! The gRPC server every service runs: its own services plus health and
//! reflection.
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;

use crate::{Error, Result};

/// Health reporter handed to services so they flip their status.
pub type Health = tonic_health::server::HealthReporter;

/// A tonic server builder with health and reflection already added. Add the
/// service's own services to the returned router, then call [`serve`].
pub fn server() -> (Router, Health) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mesh_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the mesh descriptor set is generated at build time and valid");
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection);
    (router, reporter)
}

/// Binds `addr` and serves until `shutdown`; returns the bound address.
pub async fn serve(
    addr: std::net::SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
            .await
            .map_err(Error::from)
    });
    Ok((bound, task))
}
