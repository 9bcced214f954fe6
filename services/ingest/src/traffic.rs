//! Traffic into a running mesh: a seeded purchase history, then live
//! generated events at a fixed rate, published through ingest's gRPC API
//! (`mesh up --simulate`, `mesh simulate traffic`). The events come from
//! the shared generators in [`mesh_proto::sim`].
use std::net::SocketAddr;
use std::time::Duration;

use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::sim::{events, history};
use tokio_util::sync::CancellationToken;

/// Publishes a seeded 120-day purchase history of 300 users (so churn has
/// lapsed buyers to flag and forecasts have days of demand), then generated
/// live events at `rate` events/s until `stop`.
pub async fn drive(addr: SocketAddr, rate: u32, stop: CancellationToken) {
    drive_uri(format!("http://{addr}"), rate, stop).await
}

/// [`drive`] with an endpoint URI (`http://host:port`).
pub async fn drive_uri(uri: String, rate: u32, stop: CancellationToken) {
    let mut client = loop {
        let ch = match mesh_runtime::tls::endpoint(&uri) {
            Ok(e) => e.connect().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match ch {
            Ok(ch) => break IngestServiceClient::new(mesh_runtime::auth::authed(ch)),
            Err(e) => {
                tracing::warn!(%e, %uri, "simulator waits for ingest");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let seed: u64 = rand::random();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let (past, _) = history(seed, &format!("h{seed:x}"), 300, 120, now);
    for chunk in past.chunks(500) {
        if stop.is_cancelled() {
            return;
        }
        if let Err(e) = client
            .publish(PublishRequest {
                events: chunk.to_vec(),
            })
            .await
        {
            if stop.is_cancelled() {
                return;
            }
            tracing::warn!(%e, "simulator history publish failed");
        }
    }
    let batch = (rate / 10).clamp(1, 500) as usize;
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(batch as f64 / rate.max(1) as f64));
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let evs = events(
            seed ^ round,
            &format!("sim{seed:x}-{round}"),
            1000,
            batch,
            now - batch as i64 * 3000,
        );
        let sent = tokio::select! {
            _ = stop.cancelled() => return,
            r = client.publish(PublishRequest { events: evs }) => r,
        };
        match sent {
            // Shutting down: ingest stopped accepting before this call
            // returned; not worth a warning.
            Err(_) if stop.is_cancelled() => return,
            Err(e) => tracing::warn!(%e, "simulator publish failed"),
            Ok(_) => {}
        }
        round += 1;
    }
}
