//! `FraudService`: conversion and error mapping only; the work is in
//! [`crate::scoring`] and [`crate::review`].
use std::sync::Arc;

use mesh_proto::fraud::v1 as pb;
use mesh_proto::fraud::v1::fraud_service_server::FraudService;
use mesh_store::StateStore;
use tonic::{Request, Response, Status};

use crate::error::{to_status, Error};
use crate::metrics::{DECISIONS, RESOLUTIONS};
use crate::scoring::Scorer;
use crate::{buyer, convert, review};

/// "Now" (the runtime's one clock); a parameter so tests can fix it.
pub type Clock = Arc<dyn mesh_runtime::Clock>;

/// How far ahead of now an order to score may be dated: its time feeds the
/// velocity windows, and an order from the far future is no order yet.
const MAX_AHEAD_MS: i64 = 86_400_000;

pub struct FraudGrpc {
    pub scorer: Arc<Scorer>,
    pub store: StateStore,
    pub partitions: i32,
    pub clock: Clock,
    /// Profile, asked for the buyer's account age, history and stage.
    pub profile: Option<mesh_runtime::peers::Peer>,
}

impl FraudGrpc {
    /// Decides on one order from the current state (no state change).
    ///
    /// An erased user is scored as a new one: the erasure deleted their
    /// counters, and nothing here writes, so nothing of them comes back.
    /// Refusing instead would block a checkout for an id that the shop may
    /// hand out again; the decision is made on shared entities only.
    pub async fn score_order(&self, req: pb::ScoreOrderRequest) -> Result<pb::Decision, Error> {
        let env = req
            .envelope
            .ok_or_else(|| Error::invalid("envelope", "required: the order_placed event"))?;
        let now = self.clock.now_ms();
        if env.occurred_at_ms > now.saturating_add(MAX_AHEAD_MS) {
            return Err(Error::invalid(
                "envelope.occurred_at_ms",
                format!(
                    "{} is more than a day ahead of now ({now})",
                    env.occurred_at_ms
                ),
            ));
        }
        let order = convert::order_from(&env).map_err(|e| e.in_field("envelope"))?;
        // Profile is asked while the order is scored, so the call adds no
        // latency unless profile is slower than scoring.
        let (scored, buyer) =
            tokio::join!(self.scorer.score(&order, &[], "grpc"), self.buyer(&env));
        let mut d = self.scorer.decision_proto(&env, &order, &scored?);
        match buyer {
            Ok(Some(b)) => buyer::attach(&mut d, b),
            Ok(None) => {}
            Err(reason) => buyer::degrade(&mut d, &reason),
        }
        DECISIONS
            .with_label_values(&["grpc", d.action().as_str_name()])
            .inc();
        Ok(d)
    }

    /// Profile's answer for the order's buyer: `Ok(None)` without a
    /// profile peer, `Err(reason)` when profile did not answer.
    async fn buyer(
        &self,
        env: &mesh_proto::events::v1::Envelope,
    ) -> Result<Option<pb::BuyerContext>, String> {
        use mesh_proto::profile::v1 as ppb;
        use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
        let Some(peer) = &self.profile else {
            return Ok(None);
        };
        let req = ppb::GetProfileRequest {
            tenant_id: env.tenant_id.clone(),
            user_id: env.user_id.clone(),
        };
        let res = peer
            .call("GetProfile", req, |ch, r| async move {
                ProfileServiceClient::new(ch).get_profile(r).await
            })
            .await;
        match res {
            Ok(p) => Ok(Some(buyer::context(&p, env.occurred_at_ms))),
            Err(e)
                if e.status()
                    .is_some_and(|s| s.code() == tonic::Code::NotFound) =>
            {
                Ok(Some(buyer::unknown()))
            }
            Err(e) => Err(e.reason()),
        }
    }
}

#[tonic::async_trait]
impl FraudService for FraudGrpc {
    async fn score_order(
        &self,
        request: Request<pb::ScoreOrderRequest>,
    ) -> Result<Response<pb::Decision>, Status> {
        FraudGrpc::score_order(self, request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_decision(
        &self,
        request: Request<pb::GetDecisionRequest>,
    ) -> Result<Response<pb::GetDecisionResponse>, Status> {
        review::decision_of(&self.store, self.partitions, &request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_review_queue(
        &self,
        request: Request<pb::GetReviewQueueRequest>,
    ) -> Result<Response<pb::GetReviewQueueResponse>, Status> {
        review::queue_page(&self.store, self.partitions, &request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn resolve_review(
        &self,
        request: Request<pb::ResolveReviewRequest>,
    ) -> Result<Response<pb::ResolveReviewResponse>, Status> {
        let r = request.into_inner();
        let (label, already_resolved) =
            review::resolve(&self.store, self.partitions, &r, self.clock.now_ms())
                .await
                .map_err(to_status)?;
        if !already_resolved {
            RESOLUTIONS
                .with_label_values(&[label.label().as_str_name()])
                .inc();
        }
        Ok(Response::new(pb::ResolveReviewResponse {
            label: Some(label),
            already_resolved,
        }))
    }

    async fn list_labels(
        &self,
        request: Request<pb::ListLabelsRequest>,
    ) -> Result<Response<pb::ListLabelsResponse>, Status> {
        review::labels_page(&self.store, self.partitions, &request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}
