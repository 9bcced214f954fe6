//! `SupportService` and `CatalogService`: conversion only; the work is in
//! [`crate::engine`].
use std::sync::Arc;

use mesh_proto::catalog::v1 as cpb;
use mesh_proto::catalog::v1::catalog_service_server::CatalogService;
use mesh_proto::support::v1 as pb;
use mesh_proto::support::v1::support_service_server::SupportService;
use tonic::{Request, Response, Status};

use crate::engine::Support;
use crate::error::to_status;

pub struct SupportGrpc {
    pub support: Arc<Support>,
}

#[tonic::async_trait]
impl SupportService for SupportGrpc {
    async fn analyze_feedback(
        &self,
        request: Request<pb::AnalyzeFeedbackRequest>,
    ) -> Result<Response<pb::FeedbackAnalysis>, Status> {
        self.support
            .analyze_request(&request.into_inner())
            .map(Response::new)
            .map_err(to_status)
    }

    async fn feedback_trends(
        &self,
        request: Request<pb::FeedbackTrendsRequest>,
    ) -> Result<Response<pb::FeedbackTrendsResponse>, Status> {
        let r = request.into_inner();
        self.support
            .trends(&r.tenant_id, &r.subject, r.days)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn converse(
        &self,
        request: Request<pb::ConverseRequest>,
    ) -> Result<Response<pb::ConverseResponse>, Status> {
        self.support
            .converse(&request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_handoffs(
        &self,
        request: Request<pb::ListHandoffsRequest>,
    ) -> Result<Response<pb::ListHandoffsResponse>, Status> {
        let r = request.into_inner();
        self.support
            .handoffs(&r.tenant_id, r.page_size)
            .await
            .map(|handoffs| Response::new(pb::ListHandoffsResponse { handoffs }))
            .map_err(to_status)
    }
}

pub struct CatalogGrpc {
    pub support: Arc<Support>,
}

#[tonic::async_trait]
impl CatalogService for CatalogGrpc {
    async fn upsert_products(
        &self,
        request: Request<cpb::UpsertProductsRequest>,
    ) -> Result<Response<cpb::UpsertProductsResponse>, Status> {
        self.support
            .upsert(&request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn search(
        &self,
        request: Request<cpb::SearchRequest>,
    ) -> Result<Response<cpb::SearchResponse>, Status> {
        self.support
            .search(&request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn classify_product(
        &self,
        request: Request<cpb::Product>,
    ) -> Result<Response<cpb::ProductClass>, Status> {
        let p = request.into_inner();
        if p.title.trim().is_empty() {
            return Err(Status::invalid_argument("title: required"));
        }
        Ok(Response::new(self.support.classify(&p)))
    }

    async fn list_low_confidence(
        &self,
        request: Request<cpb::ListLowConfidenceRequest>,
    ) -> Result<Response<cpb::ListLowConfidenceResponse>, Status> {
        let r = request.into_inner();
        self.support
            .low_confidence(&r.tenant_id, r.page_size)
            .await
            .map(|products| Response::new(cpb::ListLowConfidenceResponse { products }))
            .map_err(to_status)
    }

    async fn zero_result_queries(
        &self,
        request: Request<cpb::ZeroResultQueriesRequest>,
    ) -> Result<Response<cpb::ZeroResultQueriesResponse>, Status> {
        let r = request.into_inner();
        self.support
            .zero_result_queries(&r.tenant_id, r.limit)
            .await
            .map(|queries| Response::new(cpb::ZeroResultQueriesResponse { queries }))
            .map_err(to_status)
    }
}
