//! Logging and tracing.
//!
//! Spans always get real OpenTelemetry ids (so trace context propagates
//! through Kafka headers and gRPC metadata whether or not anything is
//! exported); spans are exported over OTLP only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `MESH_OTLP_ENDPOINT`) is set, with a
//! batch exporter that drops rather than blocks when the collector is away.
//!
//! Log lines go to stderr, so a command's stdout (`--json` reports, tables)
//! stays machine-readable.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::Env;
use crate::{Error, Result};

/// Keeps the tracer provider alive; flushes spans on drop.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber once per process. `MESH_LOG` (or
/// `RUST_LOG`) sets the filter, default `info`; `MESH_LOG_FORMAT=json`
/// switches to JSON lines.
pub fn init(env: &Env, service: &str) -> Result<Telemetry> {
    init_with(env, service, SdkTracerProvider::builder())
}

/// [`init`] with spans also handed, as they end, to `exporter` (tests use
/// the SDK's in-memory exporter to check a trace's spans).
pub fn init_with_exporter<E>(env: &Env, service: &str, exporter: E) -> Result<Telemetry>
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    init_with(
        env,
        service,
        SdkTracerProvider::builder().with_simple_exporter(exporter),
    )
}

fn init_with(
    env: &Env,
    service: &str,
    mut builder: opentelemetry_sdk::trace::TracerProviderBuilder,
) -> Result<Telemetry> {
    let endpoint = env
        .get("MESH_OTLP_ENDPOINT")
        .or_else(|| env.get("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if let Some(ep) = endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(ep)
            .build()
            .map_err(|e| Error::Telemetry(format!("OTLP exporter for {ep}: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build();
    let tracer = provider.tracer("lifecycle-mesh");
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = env
        .get("MESH_LOG")
        .or_else(|| env.get("RUST_LOG"))
        .map(EnvFilter::new)
        .unwrap_or_else(|| EnvFilter::new("info,rdkafka=warn,h2=warn,tower=warn"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let res = if env.get("MESH_LOG_FORMAT") == Some("json") {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    // Already initialised (a second service in the same process): keep it.
    let _ = res;
    Ok(Telemetry { provider })
}
