//! The gRPC server every service runs: its own services plus health and
//! reflection, behind a tower layer that records latency and status per
//! method ([`MetricsLayer`]).
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tower::layer::util::{Identity, Stack};

use crate::auth::GuardLayer;
use crate::{Error, Result};

/// Health reporter handed to services so they flip their status.
pub type Health = tonic_health::server::HealthReporter;

/// The router [`server`] returns: tonic's router with [`MetricsLayer`]
/// outside the process's [`GuardLayer`] (so refusals are counted per method
/// too).
pub type Router =
    tonic::transport::server::Router<Stack<GuardLayer, Stack<MetricsLayer, Identity>>>;

/// A tonic server builder with health and reflection already added, behind
/// the process's guard ([`crate::auth::installed`]: tokens, permissions,
/// tenants, limits). Add the service's own services to the returned router,
/// then call [`serve`].
pub fn server() -> (Router, Health) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mesh_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the mesh descriptor set is generated at build time and valid");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = crate::tls::installed() {
        builder = builder
            .tls_config(tls.server())
            .expect("TLS material is checked when it is loaded (tls::Tls::from_pem)");
    }
    let router = builder
        .layer(MetricsLayer)
        .layer(GuardLayer::new(crate::auth::installed()))
        .add_service(health)
        .add_service(reflection);
    (router, reporter)
}

/// Binds `addr` and serves until `shutdown`; returns the bound address.
pub async fn serve(
    addr: std::net::SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })?;
    // TCP_NODELAY on every accepted connection: tonic sets it only on
    // listeners it binds itself. Without it, Nagle holds a response's last
    // frames until the client's delayed ACK, i.e. until the next request on
    // the connection (measured: ScoreOrder p50 = connections x request
    // interval + 1 ms with `mesh bench fraud`).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
            .await
            .map_err(Error::from)
    });
    Ok((bound, task))
}

/// A service's gRPC server: its services, each marked SERVING in health as
/// it is added, then [`GrpcServer::start`]. The skeleton of every service's
/// `start`.
pub struct GrpcServer {
    router: Router,
    health: Health,
}

impl Default for GrpcServer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServer {
    /// Health, reflection and the metrics/tracing layer, no service yet.
    pub fn new() -> Self {
        let (router, health) = server();
        GrpcServer { router, health }
    }

    /// Adds `svc` (a generated `...Server`) and reports it SERVING.
    pub async fn add<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Error = std::convert::Infallible,
                Response: axum::response::IntoResponse,
                Future: Send + 'static,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
    {
        self.health.set_serving::<S>().await;
        self.router = self.router.add_service(svc);
        self
    }

    /// Binds `addr` and serves until `shutdown`. Returns the bound address
    /// and a task that logs (naming `what`) if the server fails.
    pub async fn start(
        self,
        what: &'static str,
        addr: std::net::SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
        let (bound, task) = serve(addr, self.router, shutdown).await?;
        let server = tokio::spawn(async move {
            if let Ok(Err(e)) = task.await {
                tracing::error!(service = what, %e, "gRPC server stopped");
            }
        });
        tracing::info!(service = what, grpc_addr = %bound, "serving");
        Ok((bound, server))
    }
}

/// Longest `grpc-message` a response carries, in its percent-encoded form.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// Cuts a status message longer than [`MAX_STATUS_MESSAGE`] (it may echo a
/// caller's oversize input) so the response headers stay far below a
/// client's HTTP/2 header-list limit (16 KB in h2): past it, the client gets
/// a reset stream (CANCELLED) instead of the reason. Found by
/// `tests/fuzz_rpc.rs`.
pub fn cap_status_message(headers: &mut http::HeaderMap) {
    let Some(v) = headers.get("grpc-message") else {
        return;
    };
    let b = v.as_bytes();
    if b.len() <= MAX_STATUS_MESSAGE {
        return;
    }
    // Not inside a %XX escape...
    let mut cut = MAX_STATUS_MESSAGE;
    if b[cut - 1] == b'%' {
        cut -= 1;
    } else if b[cut - 2] == b'%' {
        cut -= 2;
    }
    // ...nor inside the escapes of one UTF-8 character.
    let escaped = |i: usize| -> Option<u8> {
        (b.get(i) == Some(&b'%'))
            .then(|| std::str::from_utf8(b.get(i + 1..i + 3)?).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
    };
    let (mut i, mut continuations) = (cut, 0);
    while i >= 3 {
        match escaped(i - 3) {
            Some(x) if x & 0xC0 == 0x80 => {
                continuations += 1;
                i -= 3;
            }
            Some(x) if x >= 0xC0 => {
                let need = if x >= 0xF0 {
                    3
                } else if x >= 0xE0 {
                    2
                } else {
                    1
                };
                if continuations < need {
                    cut = i - 3;
                }
                break;
            }
            _ => break,
        }
    }
    let mut out = b[..cut].to_vec();
    out.extend_from_slice(b"%E2%80%A6 (truncated)");
    if let Ok(v) = http::HeaderValue::from_bytes(&out) {
        headers.insert("grpc-message", v);
    }
}

/// tonic answers a request whose bytes are not the method's protobuf
/// message with INTERNAL; it is the caller's error, so INVALID_ARGUMENT
/// (found by `tests/fuzz_rpc.rs`: a third of its hostile requests).
pub fn undecodable_is_invalid_argument(headers: &mut http::HeaderMap) {
    let internal = headers.get("grpc-status").map(|v| v.as_bytes()) == Some(b"13");
    let decode = headers.get("grpc-message").is_some_and(|m| {
        // Percent-encoded on the wire (tonic escapes spaces).
        let m = m.as_bytes();
        m.starts_with(b"failed%20to%20decode%20Protobuf%20message")
            || m.starts_with(b"failed to decode Protobuf message")
    });
    if internal && decode {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

/// Records `mesh_grpc_requests_total{method, code}`,
/// `mesh_grpc_request_seconds{method}` and
/// `mesh_grpc_cpu_seconds_total{method}` ([`CpuTimed`]) for every call. The time is until the
/// response headers (the whole call for unary methods; the stream's start
/// for streaming ones). The code is `grpc-status` from the headers (errors
/// are trailers-only responses, so their status is there) or `0`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner }
    }
}

/// The service [`MetricsLayer`] wraps around tonic's routes.
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let start = Instant::now();
        // One server span per call, child of the caller's span when the
        // request carries `traceparent` (see `peers::inject_trace`): the
        // handler's spans nest under it, so a trace crosses gRPC hops.
        let span = tracing::info_span!("grpc.server", otel.name = %path, rpc.method = %path);
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let _ = span.set_parent(crate::peers::extract_trace(req.headers()));
        }
        // The caller's deadline bounds the peer calls the handler makes.
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::peers::parse_grpc_timeout)
            .and_then(|d| start.checked_add(d));
        let fut = {
            let _entered = span.enter();
            crate::peers::with_caller_deadline(deadline, self.inner.call(req))
        };
        Box::pin(tracing::Instrument::instrument(
            async move {
                let (mut res, cpu) = CpuTimed::new(fut).await;
                if let Ok(r) = &mut res {
                    cap_status_message(r.headers_mut());
                    undecodable_is_invalid_argument(r.headers_mut());
                }
                let code = match &res {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("0")
                        .to_string(),
                    Err(_) => "transport".to_string(),
                };
                // Unknown paths (UNIMPLEMENTED) share one label so a client
                // cannot grow the series without bound.
                let method = if code == "12" {
                    "unknown"
                } else {
                    path.as_str()
                };
                crate::metrics::GRPC_REQUESTS
                    .with_label_values(&[method, code.as_str()])
                    .inc();
                crate::metrics::GRPC_SECONDS
                    .with_label_values(&[method])
                    .observe(start.elapsed().as_secs_f64());
                crate::metrics::GRPC_CPU_SECONDS
                    .with_label_values(&[method])
                    .inc_by(cpu.as_secs_f64());
                res
            },
            span,
        ))
    }
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A future and the thread CPU time its polls took: the CPU of one call
/// whatever else its runtime runs meanwhile (the process's CPU would count
/// the consumers' too). Two clock reads per poll, ~0.1 µs each.
pub struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    spent: std::time::Duration,
}

impl<F: Future> CpuTimed<F> {
    pub fn new(inner: F) -> Self {
        CpuTimed {
            inner: Box::pin(inner),
            spent: std::time::Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, std::time::Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let before = thread_cpu();
        let polled = self.inner.as_mut().poll(cx);
        self.spent += thread_cpu().saturating_sub(before);
        polled.map(|out| (out, self.spent))
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn cpu_of_a_call_counts_its_polls_only() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A call polled twice (it yields once), computing in between.
        let (sum, spent) = rt.block_on(CpuTimed::new(async {
            tokio::task::yield_now().await;
            let sum = (0..2_000_000u64).fold(0u64, |a, x| a.wrapping_add(x * x));
            std::hint::black_box(sum)
        }));
        assert_eq!(
            sum,
            (0..2_000_000u64).fold(0u64, |a, x| a.wrapping_add(x * x))
        );
        assert!(spent > std::time::Duration::ZERO);
    }

    #[test]
    fn long_status_messages_are_cut_below_the_header_limit() {
        let mut h = http::HeaderMap::new();
        let long = format!("user_id {} is unknown", "x".repeat(100 << 10));
        h.insert("grpc-message", long.parse().unwrap());
        cap_status_message(&mut h);
        let v = h["grpc-message"].to_str().unwrap();
        assert!(v.len() < MAX_STATUS_MESSAGE + 32, "{}", v.len());
        assert!(
            v.starts_with("user_id xxx") && v.ends_with("(truncated)"),
            "{v}"
        );
        // Escaped non-ASCII text is not cut inside an escape.
        let esc = "%E7%94%A8".repeat(1000);
        h.insert("grpc-message", esc.parse().unwrap());
        cap_status_message(&mut h);
        let v = h["grpc-message"].to_str().unwrap();
        let kept = v.trim_end_matches("%E2%80%A6 (truncated)");
        assert!(kept.len() > 900 && kept.len().is_multiple_of(9), "{kept}");
        // tonic's INTERNAL for undecodable bytes becomes INVALID_ARGUMENT.
        let mut d = http::HeaderMap::new();
        d.insert("grpc-status", "13".parse().unwrap());
        d.insert(
            "grpc-message",
            "failed%20to%20decode%20Protobuf%20message:%20invalid%20wire%20type"
                .parse()
                .unwrap(),
        );
        undecodable_is_invalid_argument(&mut d);
        assert_eq!(d["grpc-status"], "3");
        d.insert("grpc-status", "13".parse().unwrap());
        d.insert("grpc-message", "store failed".parse().unwrap());
        undecodable_is_invalid_argument(&mut d);
        assert_eq!(d["grpc-status"], "13");
        // Short messages are left alone.
        h.insert("grpc-message", "short".parse().unwrap());
        cap_status_message(&mut h);
        assert_eq!(h["grpc-message"], "short");
    }
}
