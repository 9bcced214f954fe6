//! `EngageService`: conversion only; the work is in [`crate::engine`],
//! [`crate::pricing`], [`crate::audience`] and [`crate::ads`].
use std::sync::Arc;

use mesh_proto::engage::v1 as pb;
use mesh_proto::engage::v1::engage_service_server::EngageService;
use tonic::{Request, Response, Status};

use crate::engine::Engage;
use crate::error::to_status;
use crate::pricing;

pub struct EngageGrpc {
    pub engage: Arc<Engage>,
}

#[tonic::async_trait]
impl EngageService for EngageGrpc {
    async fn get_price(
        &self,
        request: Request<pb::GetPriceRequest>,
    ) -> Result<Response<pb::PriceQuote>, Status> {
        let r = request.into_inner();
        pricing::explain(&self.engage, &r.tenant_id, &r.sku)
            .await
            .map(|x| Response::new(x.quote.unwrap_or_default()))
            .map_err(to_status)
    }

    async fn explain_price(
        &self,
        request: Request<pb::GetPriceRequest>,
    ) -> Result<Response<pb::PriceExplanation>, Status> {
        let r = request.into_inner();
        pricing::explain(&self.engage, &r.tenant_id, &r.sku)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn set_price_bounds(
        &self,
        request: Request<pb::SetPriceBoundsRequest>,
    ) -> Result<Response<pb::SetPriceBoundsResponse>, Status> {
        pricing::set_bounds(&self.engage, &request.into_inner())
            .await
            .map(|()| Response::new(pb::SetPriceBoundsResponse {}))
            .map_err(to_status)
    }

    async fn create_campaign(
        &self,
        request: Request<pb::Campaign>,
    ) -> Result<Response<pb::Campaign>, Status> {
        self.engage
            .create_campaign(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        self.engage
            .list_campaigns(&request.into_inner().tenant_id)
            .await
            .map(|campaigns| Response::new(pb::ListCampaignsResponse { campaigns }))
            .map_err(to_status)
    }

    async fn choose_offer(
        &self,
        request: Request<pb::ChooseOfferRequest>,
    ) -> Result<Response<pb::OfferDecision>, Status> {
        let r = request.into_inner();
        self.engage
            .choose_offer(&r.tenant_id, &r.campaign_id, &r.user_id, None)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn record_response(
        &self,
        request: Request<pb::RecordResponseRequest>,
    ) -> Result<Response<pb::RecordResponseResponse>, Status> {
        self.engage
            .record_response(&request.into_inner())
            .await
            .map(|recorded| Response::new(pb::RecordResponseResponse { recorded }))
            .map_err(to_status)
    }

    async fn campaign_report(
        &self,
        request: Request<pb::CampaignReportRequest>,
    ) -> Result<Response<pb::CampaignReportResponse>, Status> {
        let r = request.into_inner();
        self.engage
            .report(&r.tenant_id, &r.campaign_id)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn build_audience(
        &self,
        request: Request<pb::BuildAudienceRequest>,
    ) -> Result<Response<pb::Audience>, Status> {
        self.engage
            .build_audience(&request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn score_creatives(
        &self,
        request: Request<pb::ScoreCreativesRequest>,
    ) -> Result<Response<pb::ScoreCreativesResponse>, Status> {
        self.engage
            .score_creatives(&request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn record_ad_deliveries(
        &self,
        request: Request<pb::RecordAdDeliveriesRequest>,
    ) -> Result<Response<pb::RecordAdDeliveriesResponse>, Status> {
        self.engage
            .record_ad_deliveries(&request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn allocate_budget(
        &self,
        request: Request<pb::AllocateBudgetRequest>,
    ) -> Result<Response<pb::BudgetAllocation>, Status> {
        self.engage
            .allocate_budget(&request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn report_ad_spend(
        &self,
        request: Request<pb::ReportAdSpendRequest>,
    ) -> Result<Response<pb::ReportAdSpendResponse>, Status> {
        self.engage
            .report_ad_spend(&request.into_inner())
            .await
            .map(|recorded| Response::new(pb::ReportAdSpendResponse { recorded }))
            .map_err(to_status)
    }
}
