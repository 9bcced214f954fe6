//! The admin HTTP endpoints of every service: `/live`, `/ready`, `/metrics`,
//! and the server every HTTP endpoint of the mesh runs on.
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// Readiness check: `Ok(())` when ready, else why not.
pub type ReadyCheck = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// The admin router; merge extra routes (the console) into it.
pub fn router(ready: ReadyCheck) -> Router {
    Router::new()
        .route("/live", get(|| async { "ok" }))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics))
        .with_state(ready)
}

async fn ready_handler(State(ready): State<ReadyCheck>) -> (StatusCode, String) {
    match ready() {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn metrics() -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    let mut out = String::new();
    let enc = prometheus::TextEncoder::new();
    let status = match enc.encode_utf8(&prometheus::gather(), &mut out) {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}

/// Serves `router` on `addr` until `shutdown`, behind the process's guard
/// ([`crate::auth::http_guard`]: `/live` and `/ready` open, the rest needs a
/// token when the mesh requires them); returns the bound address.
pub async fn serve(
    addr: std::net::SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
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
    let router = router.layer(axum::middleware::from_fn_with_state(
        crate::auth::installed(),
        crate::auth::http_guard,
    ));
    let task = tokio::spawn(async move {
        let res = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
        if let Err(e) = res {
            tracing::error!(%e, "http server stopped");
        }
    });
    Ok((bound, task))
}
