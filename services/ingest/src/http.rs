//! The HTTP JSON front door: `POST /v1/events`.
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use mesh_bus::headers::HeaderList;
use mesh_runtime::auth::Caller;
use serde_json::json;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::json::parse_body;
use crate::publish::{Candidate, PublishError, Publisher};
use crate::validate::Invalid;

/// The router of the ingest HTTP API.
pub fn router(publisher: Publisher, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(publisher)
}

/// Answers with the same shape as the gRPC `PublishResponse`: `200` when
/// anything was accepted (rejections listed), `422` when every event was
/// rejected, `400` for a body that is not JSON (kept on the dead-letter
/// topic), `503` with `Retry-After` when the broker is unavailable.
#[tracing::instrument(name = "ingest.http.post_events", skip_all, fields(bytes = body.len()))]
async fn post_events(
    State(p): State<Publisher>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = caller.map(|Extension(c)| c);
    let mut h = HeaderList::new();
    for key in [
        mesh_bus::headers::TRACEPARENT,
        mesh_bus::headers::TRACESTATE,
    ] {
        if let Some(v) = headers.get(key).and_then(|v| v.to_str().ok()) {
            h.push(key, v);
        }
    }
    if !h.0.is_empty() {
        let _ = tracing::Span::current().set_parent(h.trace_context());
    }
    let candidates: Vec<Candidate> = match parse_body(&body) {
        Ok(items) => items
            .into_iter()
            .map(|i| {
                Candidate {
                    raw: i.raw,
                    parsed: i.parsed,
                }
                .scoped_to(caller.as_ref())
            })
            .collect(),
        Err(inv) => {
            // The whole body is unreadable: keep it as one rejected input.
            let one = vec![Candidate {
                raw: body.to_vec(),
                parsed: Err(inv.clone()),
            }];
            return match p.publish(one, "http", 0).await {
                Ok(r) => (StatusCode::BAD_REQUEST, Json(response_json(&r))).into_response(),
                Err(e) => error_response(e),
            };
        }
    };
    if candidates.is_empty() {
        return error_response(PublishError::TooLarge(
            Invalid::new("", "no events in the request").to_string(),
        ));
    }
    let n = candidates.len() as u32;
    match p.publish(candidates, "http", 0).await {
        Ok(r) => {
            let status = if r.rejected.len() as u32 == n {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            (status, Json(response_json(&r))).into_response()
        }
        Err(e) => error_response(e),
    }
}

fn response_json(r: &mesh_proto::ingest::v1::PublishResponse) -> serde_json::Value {
    json!({
        "accepted": r.accepted,
        "duplicates": r.duplicates,
        "rejected": r.rejected.iter().map(|x| json!({
            "index": x.index, "event_id": x.event_id, "field": x.field, "reason": x.reason
        })).collect::<Vec<_>>(),
    })
}

fn error_response(e: PublishError) -> Response {
    let (status, retry) = match &e {
        PublishError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, true),
        PublishError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, true),
        PublishError::TooLarge(_) => (StatusCode::BAD_REQUEST, false),
    };
    let mut resp = (status, Json(json!({ "error": e.to_string() }))).into_response();
    if retry {
        resp.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    resp
}
