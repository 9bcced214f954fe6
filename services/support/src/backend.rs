//! What the assistant and the search ask other services over gRPC: order
//! status from fraud's decision (held orders say so), refund and address
//! change requests recorded as events for the order service, and
//! recommend's ranking for a personalized search.
use std::collections::HashMap;
use std::sync::Mutex;

use mesh_proto::fraud::v1 as fpb;
use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_proto::recommend::v1 as rpb;
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_runtime::peers::Peers;
use mesh_text::assistant::{Backend, BackendError, OrderInfo};

/// The assistant's backend for one conversation's user.
pub struct GrpcBackend {
    pub tenant: String,
    pub user: String,
    pub peers: Peers,
    /// Peers that did not answer during the turn.
    pub degraded: Mutex<Vec<String>>,
}

impl GrpcBackend {
    fn note(&self, what: String) {
        if let Ok(mut d) = self.degraded.lock() {
            d.push(what);
        }
    }
}

impl Backend for GrpcBackend {
    async fn order_status(&self, order_id: &str) -> Result<OrderInfo, BackendError> {
        let Some(peer) = &self.peers.fraud else {
            return Err(BackendError::Unavailable("fraud is not configured".into()));
        };
        let req = fpb::GetDecisionRequest {
            tenant_id: self.tenant.clone(),
            user_id: self.user.clone(),
            order_id: order_id.to_string(),
        };
        match peer
            .call("GetDecision", req, |ch, r| async move {
                FraudServiceClient::new(ch).get_decision(r).await
            })
            .await
        {
            Ok(d) if !d.found => Err(BackendError::NotFound(order_id.to_string())),
            Ok(d) => {
                let status = match fpb::Action::try_from(d.action) {
                    Ok(fpb::Action::Approve) => "processing",
                    Ok(fpb::Action::Review) => "on hold for a payment check",
                    Ok(fpb::Action::Reject) => "cancelled after a payment check",
                    _ => "received",
                };
                Ok(OrderInfo {
                    order_id: order_id.to_string(),
                    status: status.into(),
                    eta: None,
                })
            }
            Err(e) => {
                mesh_runtime::peers::degraded("support", "fraud");
                self.note(format!("fraud: {}", e.reason()));
                Err(BackendError::Unavailable(e.reason()))
            }
        }
    }

    async fn refund(&self, order_id: &str, _reason: &str) -> Result<String, BackendError> {
        // The order must exist (fraud has decided on it) before a refund
        // request is taken; the request itself is the conversation event.
        self.order_status(order_id).await?;
        Ok(format!(
            "RF-{}",
            &uuid::Uuid::now_v7().simple().to_string()[..12]
        ))
    }

    async fn change_address(&self, order_id: &str, address: &str) -> Result<(), BackendError> {
        if address.trim().len() < 5 {
            return Err(BackendError::Rejected("the address is too short".into()));
        }
        let info = self.order_status(order_id).await?;
        if info.status.starts_with("cancelled") {
            return Err(BackendError::Rejected(format!(
                "order {order_id} was cancelled"
            )));
        }
        Ok(())
    }
}

/// Recommend's scores for `candidates` for this user, scaled to [0, 1]
/// (best = 1); an error names the peer that did not answer.
pub async fn rank(
    peers: &Peers,
    tenant: &str,
    user: &str,
    candidates: Vec<String>,
) -> Result<HashMap<String, f32>, String> {
    let Some(peer) = &peers.recommend else {
        return Ok(HashMap::new());
    };
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let req = rpb::RankItemsRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
        candidates: candidates.into_iter().take(500).collect(),
        ..Default::default()
    };
    let r = peer
        .call("RankItems", req, |ch, q| async move {
            RecommendServiceClient::new(ch).rank_items(q).await
        })
        .await
        .map_err(|e| {
            mesh_runtime::peers::degraded("support", "recommend");
            format!("recommend: {}", e.reason())
        })?;
    // Rank positions, not raw scores: they are comparable within one answer only.
    let n = r.items.len().max(1) as f32;
    Ok(r.items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.item_id.clone(), 1.0 - i as f32 / n))
        .collect())
}
