//! Clients of the other services: one [`Peer`] per service a service asks
//! at request time.
//!
//! A peer's address comes from `MESH_<PEER>_ADDR` (an `http://host:port`
//! URL, or a comma-separated list of them for replicas: the channel then
//! balances calls over them, power of two choices). Every call through
//! [`Peer::call`] gets
//! - a deadline (`MESH_PEER_DEADLINE_MS`, default 250 ms), sent to the
//!   server as `grpc-timeout` and enforced on this side too; never later
//!   than the deadline of the call being served (its own `grpc-timeout`,
//!   which [`crate::grpc::MetricsLayer`] keeps in [`with_caller_deadline`]),
//!   and not made at all once that deadline has passed;
//! - retries of UNAVAILABLE / deadline failures with a budget (at most 20%
//!   extra calls over a 10 s window, so a struggling peer is not hit with
//!   retry storms);
//! - a circuit breaker: after 5 failures in a row the peer is skipped for
//!   2 s (calls fail at once with [`PeerError::Open`]), then one call is let
//!   through to probe it;
//! - the caller's W3C trace context in the `traceparent` metadata, so the
//!   server's spans join the caller's trace (the server side is
//!   [`crate::grpc::MetricsLayer`]);
//! - the process's service token (`MESH_AUTH_SERVICE_TOKEN`) when the mesh
//!   requires tokens ([`crate::auth`]).
//!
//! A failed call is an answer the caller must handle: each service defines
//! the degraded answer it gives without the peer, says so in its response,
//! and counts it with [`degraded`].
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use tonic::transport::{Channel, Endpoint};
use tower::retry::budget::{Budget, TpsBudget};

use crate::config::Env;
use crate::{Error, Result};

/// The services a mesh service may ask, with the variable holding each
/// one's address.
pub const PEERS: &[(&str, &str)] = &[
    ("ingest", "MESH_INGEST_ADDR"),
    ("profile", "MESH_PROFILE_ADDR"),
    ("churn", "MESH_CHURN_ADDR"),
    ("recommend", "MESH_RECOMMEND_ADDR"),
    ("fraud", "MESH_FRAUD_ADDR"),
    ("logistics", "MESH_LOGISTICS_ADDR"),
    ("engage", "MESH_ENGAGE_ADDR"),
    ("support", "MESH_SUPPORT_ADDR"),
];

/// How to reach one peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's service name (`profile`, ...), used in metrics and logs.
    pub name: &'static str,
    /// `http://host:port` of each replica.
    pub endpoints: Vec<String>,
    /// Deadline of one attempt.
    pub deadline: Duration,
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// Failures in a row that open the breaker.
    pub trip_after: u32,
    /// How long an open breaker skips the peer.
    pub cool_down: Duration,
}

impl PeerConfig {
    /// Defaults for `endpoints`.
    pub fn new(name: &'static str, endpoints: Vec<String>) -> Self {
        PeerConfig {
            name,
            endpoints,
            deadline: Duration::from_millis(250),
            attempts: 2,
            trip_after: 5,
            cool_down: Duration::from_secs(2),
        }
    }

    /// The peer `name` from `MESH_<NAME>_ADDR`; `None` when unset.
    pub fn from_env(env: &Env, name: &'static str) -> Result<Option<Self>> {
        let var = PEERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or("MESH_PEER_ADDR");
        let Some(raw) = env.get(var) else {
            return Ok(None);
        };
        let endpoints = parse_endpoints(var, raw)?;
        let mut cfg = PeerConfig::new(name, endpoints);
        cfg.deadline = env.millis("MESH_PEER_DEADLINE_MS", cfg.deadline)?;
        Ok(Some(cfg))
    }
}

/// Splits and checks a comma-separated list of `http://host:port` URLs.
pub fn parse_endpoints(var: &str, raw: &str) -> Result<Vec<String>> {
    let list: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s.to_string()
            } else {
                format!("http://{s}")
            }
        })
        .collect();
    if list.is_empty() {
        return Err(Error::Config {
            var: var.into(),
            value: raw.into(),
            reason: "expected http://host:port[,http://host:port...]".into(),
        });
    }
    for e in &list {
        Endpoint::from_shared(e.clone()).map_err(|err| Error::Config {
            var: var.into(),
            value: e.clone(),
            reason: format!("not a URL: {err}"),
        })?;
    }
    Ok(list)
}

/// The peers one service asks; `None` where that peer is not configured
/// (the service then gives its fallback answer without trying).
#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub profile: Option<Peer>,
    pub recommend: Option<Peer>,
    pub fraud: Option<Peer>,
    pub churn: Option<Peer>,
    pub logistics: Option<Peer>,
    pub engage: Option<Peer>,
    pub support: Option<Peer>,
}

impl Peers {
    /// Connects (lazily) to each of `names` configured in `env`.
    pub fn from_env(env: &Env, names: &[&'static str]) -> Result<Peers> {
        let mut peers = Peers::default();
        for &name in names {
            if let Some(cfg) = PeerConfig::from_env(env, name)? {
                peers.set(name, Peer::connect(cfg)?);
            }
        }
        Ok(peers)
    }

    /// Sets the peer `name` (an unknown name is ignored).
    pub fn set(&mut self, name: &str, peer: Peer) {
        match name {
            "profile" => self.profile = Some(peer),
            "recommend" => self.recommend = Some(peer),
            "fraud" => self.fraud = Some(peer),
            "churn" => self.churn = Some(peer),
            "logistics" => self.logistics = Some(peer),
            "engage" => self.engage = Some(peer),
            "support" => self.support = Some(peer),
            _ => {}
        }
    }

    /// Every configured peer.
    pub fn all(&self) -> Vec<&Peer> {
        [
            &self.profile,
            &self.recommend,
            &self.fraud,
            &self.churn,
            &self.logistics,
            &self.engage,
            &self.support,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Why a call to a peer gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The breaker is open: the peer failed repeatedly and is skipped.
    #[error("{0}: circuit open after repeated failures")]
    Open(&'static str),
    /// No answer within the deadline.
    #[error("{0}: no answer within {1:?}")]
    Deadline(&'static str, Duration),
    /// The peer answered with an error status.
    #[error("{0}: {1}")]
    Status(&'static str, tonic::Status),
}

impl PeerError {
    /// A short reason for responses and logs, e.g. `profile: unavailable`.
    pub fn reason(&self) -> String {
        match self {
            PeerError::Open(p) => format!("{p}: circuit open"),
            PeerError::Deadline(p, _) => format!("{p}: deadline exceeded"),
            PeerError::Status(p, s) => format!("{p}: {:?}", s.code()).to_lowercase(),
        }
    }

    /// The peer's status, when it answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            PeerError::Status(_, s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is out; others are refused until it returns or its
    /// lease ends (a trial whose future was dropped never returns, and must
    /// not keep the peer refused for good).
    HalfOpen {
        until: Instant,
    },
}

/// A client of one peer service; cheap to clone.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: PeerConfig,
    channel: Channel,
    budget: TpsBudget,
    breaker: Mutex<BreakerState>,
    answered_once: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.inner.cfg.name)
            .field("endpoints", &self.inner.cfg.endpoints)
            .finish()
    }
}

impl Peer {
    /// A lazily connecting client: never blocks, never fails on a peer
    /// that is down (calls do). Must be called inside a tokio runtime.
    pub fn connect(cfg: PeerConfig) -> Result<Peer> {
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| {
                crate::tls::endpoint(e)
                    .map(|ep| {
                        ep.connect_timeout(Duration::from_millis(500))
                            .tcp_nodelay(true)
                            .http2_keep_alive_interval(Duration::from_secs(10))
                            .keep_alive_while_idle(true)
                    })
                    .map_err(|err| Error::Config {
                        var: format!("MESH_{}_ADDR", cfg.name.to_uppercase()),
                        value: e.clone(),
                        reason: format!("not a URL: {err}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let channel = match endpoints.as_slice() {
            [one] => one.connect_lazy(),
            _ => Channel::balance_list(endpoints.into_iter()),
        };
        Ok(Peer {
            inner: Arc::new(Inner {
                budget: TpsBudget::new(Duration::from_secs(10), 10, 0.2),
                breaker: Mutex::new(BreakerState::Closed { failures: 0 }),
                answered_once: Default::default(),
                cfg,
                channel,
            }),
        })
    }

    /// The peer's service name.
    pub fn name(&self) -> &'static str {
        self.inner.cfg.name
    }

    /// The balanced channel, for clients that manage calls themselves.
    pub fn channel(&self) -> Channel {
        self.inner.channel.clone()
    }

    /// Whether the peer has answered any call (or health probe) since start.
    pub fn has_answered(&self) -> bool {
        self.inner
            .answered_once
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the breaker currently lets calls through.
    pub fn is_closed(&self) -> bool {
        matches!(
            *self.inner.breaker.lock().unwrap_or_else(|e| e.into_inner()),
            BreakerState::Closed { .. }
        )
    }

    /// Calls the peer: `f` gets the channel and a request carrying the
    /// deadline and trace context, and makes one attempt. Retried (within
    /// the budget) on UNAVAILABLE and deadline failures; other statuses are
    /// the peer's answer and are returned as they are.
    pub async fn call<Req, T, F, Fut>(
        &self,
        method: &'static str,
        req: Req,
        f: F,
    ) -> std::result::Result<T, PeerError>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let name = self.inner.cfg.name;
        let started = Instant::now();
        let out = self.call_inner(method, req, f).await;
        let outcome = match &out {
            Ok(_) => "ok",
            Err(PeerError::Open(_)) => "open",
            Err(PeerError::Deadline(..)) => "deadline",
            Err(PeerError::Status(_, s)) if retryable(s) => "unavailable",
            Err(PeerError::Status(..)) => "status",
        };
        PEER_CALLS.with_label_values(&[name, method, outcome]).inc();
        PEER_SECONDS
            .with_label_values(&[name, method])
            .observe(started.elapsed().as_secs_f64());
        out
    }

    async fn call_inner<Req, T, F, Fut>(
        &self,
        method: &'static str,
        req: Req,
        f: F,
    ) -> std::result::Result<T, PeerError>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let cfg = &self.inner.cfg;
        let Some(trial) = self.admit() else {
            return Err(PeerError::Open(cfg.name));
        };
        // A trial that ends without an outcome (skipped, or its future
        // dropped) hands the next call the trial at once.
        let mut trial = TrialGuard {
            inner: &self.inner,
            armed: trial,
        };
        self.inner.budget.deposit();
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Never past the deadline of the call being served: its caller
            // has stopped waiting by then.
            let deadline = match caller_remaining() {
                Some(left) if left.is_zero() => {
                    DEADLINE_SKIPPED
                        .with_label_values(&[cfg.name, method])
                        .inc();
                    return Err(PeerError::Deadline(cfg.name, Duration::ZERO));
                }
                Some(left) => left.min(cfg.deadline),
                None => cfg.deadline,
            };
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(deadline);
            inject_trace(request.metadata_mut());
            crate::auth::inject_service_token(request.metadata_mut());
            let res = tokio::time::timeout(deadline, f(self.inner.channel.clone(), request)).await;
            let err = match res {
                Ok(Ok(resp)) => {
                    trial.armed = false;
                    self.record(true);
                    return Ok(resp.into_inner());
                }
                Ok(Err(s)) if !retryable(&s) => {
                    // The peer answered: it is up, the answer is an error.
                    trial.armed = false;
                    self.record(true);
                    return Err(PeerError::Status(cfg.name, s));
                }
                Ok(Err(s)) => PeerError::Status(cfg.name, s),
                Err(_) => PeerError::Deadline(cfg.name, deadline),
            };
            if attempt >= cfg.attempts || !self.inner.budget.withdraw() {
                trial.armed = false;
                self.record(false);
                tracing::debug!(peer = cfg.name, method, %err, attempt, "peer call failed");
                return Err(err);
            }
            RETRIES.with_label_values(&[cfg.name, method]).inc();
            tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
        }
    }

    /// Whether the breaker lets this call through: `None` when it does not,
    /// `Some(true)` when the call is the half-open trial.
    fn admit(&self) -> Option<bool> {
        let cfg = &self.inner.cfg;
        let mut b = self.inner.breaker.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *b {
            BreakerState::Closed { .. } => Some(false),
            BreakerState::Open { until } | BreakerState::HalfOpen { until } if now >= until => {
                // Long enough for every attempt and the pauses between them.
                let lease = cfg.deadline * cfg.attempts.max(1) + Duration::from_secs(1);
                *b = BreakerState::HalfOpen { until: now + lease };
                Some(true)
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => None,
        }
    }

    fn record(&self, answered: bool) {
        let cfg = &self.inner.cfg;
        let mut b = self.inner.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if answered {
            self.inner
                .answered_once
                .store(true, std::sync::atomic::Ordering::Relaxed);
            if !matches!(*b, BreakerState::Closed { .. }) {
                tracing::info!(peer = cfg.name, "peer answers again; circuit closed");
            }
            *b = BreakerState::Closed { failures: 0 };
            return;
        }
        let failures = match *b {
            BreakerState::Closed { failures } => failures + 1,
            _ => cfg.trip_after,
        };
        if failures >= cfg.trip_after {
            if matches!(*b, BreakerState::Closed { .. }) {
                tracing::warn!(peer = cfg.name, failures, cool_down = ?cfg.cool_down, "peer keeps failing; circuit open");
                BREAKER_OPENED.with_label_values(&[cfg.name]).inc();
            }
            *b = BreakerState::Open {
                until: Instant::now() + cfg.cool_down,
            };
        } else {
            *b = BreakerState::Closed { failures };
        }
    }

    /// Asks the peer's `grpc.health.v1` service once; records the answer
    /// like a call (readiness reads [`Peer::has_answered`]).
    pub async fn probe(&self) -> bool {
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::HealthCheckRequest;
        let res = self
            .call(
                "Health/Check",
                HealthCheckRequest::default(),
                |ch, r| async move { HealthClient::new(ch).check(r).await },
            )
            .await;
        res.is_ok()
    }
}

/// The half-open trial of one call: dropped while armed (the call ended
/// without a verdict on the peer), it lets the next call try at once.
struct TrialGuard<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut b = self.inner.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*b, BreakerState::HalfOpen { .. }) {
            *b = BreakerState::Open {
                until: Instant::now(),
            };
        }
    }
}

tokio::task_local! {
    /// When the call this task serves must be answered, from its
    /// `grpc-timeout`; `None` when it sent none.
    static CALLER_DEADLINE: Option<Instant>;
}

/// Runs `f` (a handler) with the served call's deadline, so the peer calls
/// it makes end by then.
pub fn with_caller_deadline<F: Future>(
    deadline: Option<Instant>,
    f: F,
) -> impl Future<Output = F::Output> {
    CALLER_DEADLINE.scope(deadline, f)
}

/// Time left of the served call's deadline, when it has one.
pub fn caller_remaining() -> Option<Duration> {
    CALLER_DEADLINE
        .try_with(|d| *d)
        .ok()
        .flatten()
        .map(|d| d.saturating_duration_since(Instant::now()))
}

/// A `grpc-timeout` value (`<digits><H|M|S|m|u|n>`, at most 8 digits).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Statuses worth another attempt (or another replica).
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
    ) && !s.message().starts_with("peer:")
}

/// Puts the current span's W3C trace context into `metadata`.
pub fn inject_trace(metadata: &mut tonic::metadata::MetadataMap) {
    let headers = mesh_bus::headers::HeaderList::new().with_current_trace();
    for (k, v) in &headers.0 {
        if let (Ok(key), Ok(val)) = (
            tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
            tonic::metadata::MetadataValue::try_from(v.as_slice()),
        ) {
            metadata.insert(key, val);
        }
    }
}

/// The W3C trace context of an incoming request's headers (an empty
/// context without one).
pub fn extract_trace(headers: &http::HeaderMap) -> opentelemetry::Context {
    let mut list = mesh_bus::headers::HeaderList::new();
    for key in [
        mesh_bus::headers::TRACEPARENT,
        mesh_bus::headers::TRACESTATE,
    ] {
        if let Some(v) = headers.get(key) {
            list.push(key, v.as_bytes());
        }
    }
    list.trace_context()
}

/// Counts one degraded answer: `service` answered without `peer`.
pub fn degraded(service: &str, peer: &str) {
    DEGRADED.with_label_values(&[service, peer]).inc();
}

/// Calls to peers by outcome.
pub static PEER_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_peer_calls_total",
        "Calls to another mesh service, by peer, method and outcome (ok, status, unavailable, deadline, open)",
        &["peer", "method", "outcome"]
    )
    .expect("metric registers once")
});

/// Latency of calls to peers, retries included.
pub static PEER_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "mesh_peer_call_seconds",
        "Seconds per call to another mesh service, retries included",
        &["peer", "method"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    )
    .expect("metric registers once")
});

static DEADLINE_SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_peer_deadline_skipped_total",
        "Calls to another mesh service not made because the call being served had passed its deadline",
        &["peer", "method"]
    )
    .expect("metric registers once")
});

static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_peer_retries_total",
        "Retried calls to another mesh service (within the retry budget)",
        &["peer", "method"]
    )
    .expect("metric registers once")
});

static BREAKER_OPENED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_peer_circuit_opened_total",
        "Times the circuit breaker to a peer opened",
        &["peer"]
    )
    .expect("metric registers once")
});

/// Answers given without a peer, by answering service and missing peer.
pub static DEGRADED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_degraded_answers_total",
        "Answers a service gave with its fallback because a peer did not answer, by service and peer",
        &["service", "peer"]
    )
    .expect("metric registers once")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_bad_ones_name_the_variable() {
        let env = Env::from_pairs([("MESH_PROFILE_ADDR", "10.0.0.1:50052, http://b:1")]);
        let cfg = PeerConfig::from_env(&env, "profile").unwrap().unwrap();
        assert_eq!(cfg.endpoints, vec!["http://10.0.0.1:50052", "http://b:1"]);
        assert!(PeerConfig::from_env(&env, "fraud").unwrap().is_none());
        let e = parse_endpoints("MESH_FRAUD_ADDR", " , ").unwrap_err();
        assert!(e.to_string().contains("MESH_FRAUD_ADDR"), "{e}");
    }

    /// A peer on a port nothing listens on.
    fn dead_peer() -> PeerConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        PeerConfig::new("profile", vec![format!("http://127.0.0.1:{port}")])
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        for bad in ["", "m", "12", "123456789m", "-1S", "5x", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_served_calls_deadline_bounds_and_skips_peer_calls() {
        let mut cfg = dead_peer();
        cfg.deadline = Duration::from_secs(5);
        cfg.trip_after = 1;
        let peer = Peer::connect(cfg).unwrap();
        let made = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let call = |made: std::sync::Arc<std::sync::atomic::AtomicU32>| {
            let peer = peer.clone();
            async move {
                peer.call("Health/Check", (), move |_ch, r: tonic::Request<()>| {
                    made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let t = r
                        .metadata()
                        .get("grpc-timeout")
                        .map(|v| v.to_str().unwrap().to_string());
                    async move {
                        Err::<tonic::Response<()>, _>(tonic::Status::unavailable(
                            t.unwrap_or_default(),
                        ))
                    }
                })
                .await
            }
        };
        // Past its deadline: no call is made, and the breaker stays closed.
        let past = Some(Instant::now() - Duration::from_millis(1));
        let r = with_caller_deadline(past, call(made.clone())).await;
        assert!(
            matches!(r, Err(PeerError::Deadline(_, d)) if d.is_zero()),
            "{r:?}"
        );
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(peer.is_closed());
        // 100 ms left: the peer is asked with at most that, not its 5 s.
        let soon = Some(Instant::now() + Duration::from_millis(100));
        let r = with_caller_deadline(soon, call(made.clone())).await;
        match r {
            Err(PeerError::Status(_, s)) => {
                let sent = parse_grpc_timeout(s.message()).expect("grpc-timeout sent");
                assert!(sent <= Duration::from_millis(100), "{sent:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(made.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn a_dead_peer_fails_fast_then_opens_the_circuit() {
        let mut cfg = dead_peer();
        cfg.trip_after = 2;
        cfg.cool_down = Duration::from_secs(60);
        let peer = Peer::connect(cfg).unwrap();
        assert!(!peer.probe().await);
        assert!(!peer.has_answered());
        assert!(!peer.probe().await);
        assert!(!peer.is_closed(), "two failures trip a breaker set to 2");
        let started = Instant::now();
        let e = peer
            .call("Health/Check", (), |_ch, _r| async {
                Ok::<_, tonic::Status>(tonic::Response::new(()))
            })
            .await
            .unwrap_err();
        assert!(matches!(e, PeerError::Open("profile")), "{e}");
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    /// Opens the breaker of a peer set to trip after one failure, and waits
    /// out its cool-down, so the next call is the half-open trial.
    async fn tripped_peer() -> Peer {
        let mut cfg = dead_peer();
        cfg.trip_after = 1;
        cfg.attempts = 1;
        cfg.deadline = Duration::from_millis(50);
        cfg.cool_down = Duration::from_millis(20);
        let peer = Peer::connect(cfg).unwrap();
        let e = peer
            .call("Health/Check", (), |_ch, _r| async {
                Err::<tonic::Response<()>, _>(tonic::Status::unavailable("down"))
            })
            .await
            .unwrap_err();
        assert!(matches!(e, PeerError::Status(..)), "{e}");
        assert!(!peer.is_closed());
        tokio::time::sleep(Duration::from_millis(30)).await;
        peer
    }

    async fn answers(peer: &Peer) -> std::result::Result<(), PeerError> {
        peer.call("Health/Check", (), |_ch, _r| async {
            Ok::<_, tonic::Status>(tonic::Response::new(()))
        })
        .await
    }

    #[tokio::test]
    async fn a_trial_call_dropped_midway_does_not_keep_the_circuit_open() {
        let peer = tripped_peer().await;
        // The trial's caller gives up (a client hung up, a select! moved on):
        // its future is dropped while the peer has not answered.
        let trial = peer.call("Health/Check", (), |_ch, _r| {
            std::future::pending::<std::result::Result<tonic::Response<()>, tonic::Status>>()
        });
        assert!(tokio::time::timeout(Duration::from_millis(5), trial)
            .await
            .is_err());
        answers(&peer)
            .await
            .expect("the next call is the new trial");
        assert!(peer.is_closed());
        assert!(peer.has_answered());
    }

    #[tokio::test]
    async fn a_trial_that_never_ends_is_replaced_after_its_lease() {
        let peer = tripped_peer().await;
        // A trial that neither finishes nor is dropped (leaked).
        let mut trial = Box::pin(peer.call("Health/Check", (), |_ch, _r| {
            std::future::pending::<std::result::Result<tonic::Response<()>, tonic::Status>>()
        }));
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(trial.as_mut().poll(&mut cx).is_pending());
        std::mem::forget(trial);
        let e = answers(&peer).await.unwrap_err();
        assert!(matches!(e, PeerError::Open("profile")), "{e}");
        // Lease: one attempt of 50 ms plus a second.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        answers(&peer)
            .await
            .expect("a call after the lease is the new trial");
        assert!(peer.is_closed());
    }

    #[tokio::test]
    async fn a_trial_skipped_for_its_callers_deadline_hands_the_trial_on() {
        let peer = tripped_peer().await;
        let past = Some(Instant::now() - Duration::from_millis(1));
        let r = with_caller_deadline(past, answers(&peer)).await;
        assert!(matches!(r, Err(PeerError::Deadline(..))), "{r:?}");
        answers(&peer)
            .await
            .expect("the next call is the new trial");
        assert!(peer.is_closed());
    }
}
