//! The gRPC front door: converts requests and errors, nothing else.
use mesh_bus::headers::HeaderList;
use mesh_proto::events::v1::{envelope::Body, Envelope, UserErased};
use mesh_proto::ingest::v1::ingest_service_server::IngestService;
use mesh_proto::ingest::v1::{
    ForgetUserRequest, ForgetUserResponse, PublishRequest, PublishResponse,
};
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
        .map(|mut e| {
            // Kept bytes of a rejected event hold no personal data either.
            crate::pii::redact_envelope(&mut e);
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

    #[tracing::instrument(name = "ingest.grpc.ForgetUser", skip_all)]
    async fn forget_user(
        &self,
        request: Request<ForgetUserRequest>,
    ) -> Result<Response<ForgetUserResponse>, Status> {
        adopt_trace(&request);
        let caller = request.extensions().get::<Caller>().cloned();
        let r = request.into_inner();
        let event = erasure_event(&r, crate::publish::now_ms());
        let (event_id, erased_at_ms) = (event.event_id.clone(), event.occurred_at_ms);
        let item = Candidate {
            raw: event.encode_to_vec(),
            parsed: Ok(event),
        }
        .scoped_to(caller.as_ref());
        let resp = self
            .publisher
            .publish(vec![item], "grpc", 0)
            .await
            .map_err(to_status)?;
        if let Some(bad) = resp.rejected.first() {
            // The envelope's fields are the request's: name them as such.
            let field = match bad.field.as_str() {
                "user_erased.reason" => "reason",
                f => f,
            };
            return Err(Status::invalid_argument(format!("{field}: {}", bad.reason)));
        }
        tracing::info!("user erasure published");
        Ok(Response::new(ForgetUserResponse {
            event_id,
            erased_at_ms,
        }))
    }
}

/// The `user_erased` event for a request. Its id is a digest of tenant and
/// user, so a retried call is recognised by the id ledger and not published
/// twice; the digest keeps the user id out of the id.
pub(crate) fn erasure_event(r: &ForgetUserRequest, now_ms: i64) -> Envelope {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}\n{}", r.tenant_id, r.user_id));
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Envelope {
        event_id: format!("erase-{hex}"),
        tenant_id: r.tenant_id.clone(),
        user_id: r.user_id.clone(),
        occurred_at_ms: now_ms,
        source: "ingest.forget_user".into(),
        context: None,
        body: Some(Body::UserErased(UserErased {
            reason: r.reason.clone(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(tenant: &str, user: &str) -> ForgetUserRequest {
        ForgetUserRequest {
            tenant_id: tenant.into(),
            user_id: user.into(),
            reason: "gdpr_request".into(),
        }
    }

    #[test]
    fn an_erasure_is_a_valid_event_with_a_stable_id_that_hides_the_user() {
        let now = 1_700_000_000_000;
        let a = erasure_event(&req("shop", "alice@example.com"), now);
        crate::validate::validate(&a, now).expect("valid");
        assert_eq!(
            a.kind(),
            Some(mesh_proto::events::v1::EventKind::UserErased)
        );
        assert_eq!(
            a.kind().map(|k| k.topic()),
            Some(mesh_proto::events::v1::Topic::Both)
        );
        assert!(!a.event_id.contains("alice"), "{}", a.event_id);
        // A retried call has the same id; another user, or the same user
        // name in another tenant, has another.
        let later = erasure_event(&req("shop", "alice@example.com"), now + 5);
        assert_eq!(a.event_id, later.event_id);
        assert_ne!(a.event_id, erasure_event(&req("shop", "bob"), now).event_id);
        assert_ne!(
            a.event_id,
            erasure_event(&req("other", "alice@example.com"), now).event_id
        );
        // A request without a user is refused by validation, naming it.
        let bad = crate::validate::validate(&erasure_event(&req("shop", ""), now), now);
        assert_eq!(bad.expect_err("no user").field, "user_id");
    }
}
