//! `mesh forget`: erase a user from a running mesh through ingest's
//! `ForgetUser`, the way a platform's privacy tooling would.
use std::time::Duration;

use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::ForgetUserRequest;

use crate::node::MeshConfig;

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// The user's tenant.
    #[arg(long)]
    pub tenant: String,
    /// The user to forget.
    #[arg(long)]
    pub user: String,
    /// Why (kept with the erasure), e.g. gdpr_request.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Calls `ForgetUser` on the ingest at `MESH_INGEST_GRPC_ADDR` with
/// `MESH_AUTH_TOKEN` (an admin's) when the mesh requires tokens.
pub async fn run(cfg: &MeshConfig, a: &ForgetArgs) -> anyhow::Result<()> {
    let mut addr = cfg.ingest.grpc_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    let ch = mesh_runtime::tls::endpoint(&addr.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("no ingest answers at {addr}: {e} (is the mesh running?)"))?;
    let r = IngestServiceClient::new(mesh_runtime::auth::client(ch))
        .forget_user(ForgetUserRequest {
            tenant_id: a.tenant.clone(),
            user_id: a.user.clone(),
            reason: a.reason.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("ForgetUser: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"event_id": r.event_id, "erased_at_ms": r.erased_at_ms})
        );
    } else {
        println!(
            "erasure {} published at {} ms; every service drops {}/{} as it reads it",
            r.event_id, r.erased_at_ms, a.tenant, a.user
        );
    }
    Ok(())
}
