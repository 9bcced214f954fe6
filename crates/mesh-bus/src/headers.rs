//! Record headers: CloudEvents attributes (binary content mode, `ce_`
//! prefix as in the CloudEvents Kafka binding), W3C trace context, and the
//! dead-letter reason.
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const CE_SPECVERSION: &str = "ce_specversion";
pub const CE_ID: &str = "ce_id";
pub const CE_SOURCE: &str = "ce_source";
pub const CE_TYPE: &str = "ce_type";
pub const CE_TIME: &str = "ce_time";
pub const CE_SUBJECT: &str = "ce_subject";
pub const CONTENT_TYPE: &str = "content-type";
pub const TENANT: &str = "mesh_tenant";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// Why a record is on the dead-letter topic.
pub const DLQ_REASON: &str = "mesh_dlq_reason";
/// Which field was wrong, when known.
pub const DLQ_FIELD: &str = "mesh_dlq_field";
/// Where the rejected input came from (`grpc`, `http`, a consumer group).
pub const DLQ_ORIGIN: &str = "mesh_dlq_origin";
/// The record a consumer dead-lettered: `<topic>[<partition>]@<offset>`
/// (see [`dlq_source`]).
pub const DLQ_SOURCE: &str = "mesh_dlq_source";
/// How many times a poison record failed before it was dead-lettered.
pub const DLQ_ATTEMPTS: &str = "mesh_dlq_attempts";
/// Prefix of every dead-letter header.
pub const DLQ_PREFIX: &str = "mesh_dlq_";

/// The [`DLQ_SOURCE`] value of a record: `<topic>[<partition>]@<offset>`.
pub fn dlq_source(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}[{partition}]@{offset}")
}

/// Reads a [`DLQ_SOURCE`] value back into `(topic, partition, offset)`.
pub fn parse_dlq_source(v: &str) -> Option<(&str, i32, i64)> {
    let (rest, offset) = v.rsplit_once("]@")?;
    let (topic, partition) = rest.rsplit_once('[')?;
    Some((topic, partition.parse().ok()?, offset.parse().ok()?))
}

/// CloudEvents headers (binary content mode) of one protobuf record the
/// mesh publishes: `kind` is the message's full name
/// (`mesh.churn.v1.ChurnAlert`), `id` stable across re-publishes so
/// consumers can drop repeats, `source` the publishing service. The current
/// span's trace context is added.
pub fn cloud_event(
    kind: &str,
    id: &str,
    source: &str,
    tenant: &str,
    subject: &str,
    time_ms: i64,
) -> HeaderList {
    let time = chrono::DateTime::from_timestamp_millis(time_ms)
        .unwrap_or_default()
        .to_rfc3339();
    HeaderList::new()
        .with(CE_SPECVERSION, "1.0")
        .with(CE_ID, id)
        .with(CE_SOURCE, source)
        .with(CE_TYPE, kind)
        .with(CE_TIME, time)
        .with(CE_SUBJECT, subject)
        .with(TENANT, tenant)
        .with(CONTENT_TYPE, "application/protobuf")
        .with_current_trace()
}

/// Headers of a record sent to the dead-letter topic: why (`reason`), which
/// consumer group gave up on it (`origin`), and where it came from.
pub fn dead_letter(
    reason: &str,
    origin: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> HeaderList {
    HeaderList::new()
        .with(DLQ_REASON, reason)
        .with(DLQ_ORIGIN, origin)
        .with(DLQ_SOURCE, dlq_source(topic, partition, offset))
}

/// Headers being built for one record.
#[derive(Debug, Clone, Default)]
pub struct HeaderList(pub Vec<(String, Vec<u8>)>);

impl HeaderList {
    pub fn new() -> Self {
        HeaderList(Vec::new())
    }

    pub fn with(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.0.push((key.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn push(&mut self, key: &str, value: impl AsRef<[u8]>) {
        self.0.push((key.to_string(), value.as_ref().to_vec()));
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Adds `traceparent`/`tracestate` for the current tracing span.
    pub fn with_current_trace(mut self) -> Self {
        let cx = tracing::Span::current().context();
        if cx.span().span_context().is_valid() {
            propagator().inject_context(&cx, &mut self);
        }
        self
    }

    pub(crate) fn to_owned_headers(&self) -> OwnedHeaders {
        self.0.iter().fold(
            OwnedHeaders::new_with_capacity(self.0.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v),
                })
            },
        )
    }

    /// Copies headers out of a received record.
    pub fn from_kafka<H: Headers>(headers: Option<&H>) -> Self {
        let mut out = HeaderList::new();
        if let Some(h) = headers {
            for hd in h.iter() {
                out.push(hd.key, hd.value.unwrap_or_default());
            }
        }
        out
    }

    /// The OpenTelemetry context carried by these headers (an empty context
    /// when there is none); use it as the parent of the consumer's span.
    pub fn trace_context(&self) -> opentelemetry::Context {
        propagator().extract(self)
    }
}

/// The W3C propagator; it lives in `opentelemetry` itself via the SDK-free
/// text-map API, so the bus does not depend on an SDK.
fn propagator() -> impl TextMapPropagator {
    TraceContext
}

impl Injector for HeaderList {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.push(key, value);
    }
}

impl Extractor for HeaderList {
    fn get(&self, key: &str) -> Option<&str> {
        HeaderList::get(self, key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Minimal W3C Trace Context propagator (traceparent/tracestate). The
/// `opentelemetry` API crate ships only the trait; the SDK's implementation
/// would pull the SDK into every service's bus dependency.
#[derive(Debug, Default, Clone, Copy)]
struct TraceContext;

impl TextMapPropagator for TraceContext {
    fn inject_context(&self, cx: &opentelemetry::Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        injector.set(
            TRACEPARENT,
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            ),
        );
        let state = sc.trace_state().header();
        if !state.is_empty() {
            injector.set(TRACESTATE, state);
        }
    }

    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        extractor: &dyn Extractor,
    ) -> opentelemetry::Context {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let Some(tp) = extractor.get(TRACEPARENT) else {
            return cx.clone();
        };
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if parts.len() < 4 || parts[0] != "00" {
            return cx.clone();
        }
        let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
            TraceId::from_hex(parts[1]),
            SpanId::from_hex(parts[2]),
            u8::from_str_radix(parts[3], 16),
        ) else {
            return cx.clone();
        };
        let state = extractor
            .get(TRACESTATE)
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(flags & 1), true, state);
        if !sc.is_valid() {
            return cx.clone();
        }
        cx.with_remote_span_context(sc)
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        static FIELDS: [String; 0] = [];
        opentelemetry::propagation::text_map_propagator::FieldIter::new(&FIELDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn traceparent_round_trips() {
        let h = HeaderList::new().with(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        let cx = h.trace_context();
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        let mut out = HeaderList::new();
        TraceContext.inject_context(&cx, &mut out);
        assert_eq!(
            out.get(TRACEPARENT),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
    }

    #[test]
    fn dlq_source_round_trips() {
        let v = dlq_source("mesh.user-events", 3, 42);
        assert_eq!(v, "mesh.user-events[3]@42");
        assert_eq!(parse_dlq_source(&v), Some(("mesh.user-events", 3, 42)));
        assert_eq!(parse_dlq_source("t[x]@1"), None);
    }

    #[test]
    fn malformed_traceparent_gives_empty_context() {
        let h = HeaderList::new().with(TRACEPARENT, "00-zz-b7ad6b7169203331-01");
        assert!(!h.trace_context().span().span_context().is_valid());
    }
}
