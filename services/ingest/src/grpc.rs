//! The gRPC front door: converts requests and errors, nothing else.
use mesh_bus::headers::HeaderList;
use mesh_proto::ingest::v1::ingest_service_server::IngestService;
use mesh_proto::ingest::v1::{PublishRequest, PublishResponse};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use mesh_runtime::auth::Caller;

use crate::publish::{Candidate, PublishError, Publisher};

pub struct IngestGrpc {
    pub(crate) publisher: Publisher,
}

fn to_status(e: PublishError) -> Status {
    match e {
        PublishError::Unavailable(m) => Status::unavailable(m),
        PublishError::Busy(m) => Status::resource_exhausted(m),
        PublishError::TooLarge(m) => Status::invalid_argument(m),
    }
}

fn candidates(req: PublishRequest, caller: Option<&Caller>) -> Vec<Candidate> {
    req.events
        .into_iter()
        .map(|e| {
            Candidate {
                raw: e.encode_to_vec(),
                parsed: Ok(e),
            }
            .scoped_to(caller)
        })
        .collect()
}

/// Continues the caller's trace when it sent `traceparent` metadata.
fn adopt_trace<T>(req: &Request<T>) {
    let mut h = HeaderList::new();
    for key in [
        mesh_bus::headers::TRACEPARENT,
        mesh_bus::headers::TRACESTATE,
    ] {
        if let Some(v) = req.metadata().get(key).and_then(|v| v.to_str().ok()) {
            h.push(key, v);
        }
    }
    if !h.0.is_empty() {
        let _ = tracing::Span::current().set_parent(h.trace_context());
    }
}

#[tonic::async_trait]
impl IngestService for IngestGrpc {
    #[tracing::instrument(name = "ingest.grpc.Publish", skip_all)]
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        adopt_trace(&request);
        let caller = request.extensions().get::<Caller>().cloned();
        let items = candidates(request.into_inner(), caller.as_ref());
        self.publisher
            .publish(items, "grpc", 0)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    #[tracing::instrument(name = "ingest.grpc.PublishStream", skip_all)]
    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<PublishResponse>, Status> {
        adopt_trace(&request);
        let caller = request.extensions().get::<Caller>().cloned();
        let mut stream = request.into_inner();
        let mut total = PublishResponse::default();
        let mut base = 0u32;
        while let Some(batch) = stream.message().await? {
            let n = batch.events.len() as u32;
            let r = self
                .publisher
                .publish(candidates(batch, caller.as_ref()), "grpc", base)
                .await
                .map_err(|e| {
                    let s = to_status(e);
                    Status::new(
                        s.code(),
                        format!(
                            "{} (events before index {base} of this stream were accepted)",
                            s.message()
                        ),
                    )
                })?;
            total.accepted += r.accepted;
            total.duplicates += r.duplicates;
            total.rejected.extend(r.rejected);
            base += n;
        }
        Ok(Response::new(total))
    }
}
