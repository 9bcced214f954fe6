//! Who may call what: bearer tokens bound to a role and a tenant, per-RPC
//! permissions, per-caller rate limits and an in-flight bound, for every
//! gRPC server ([`GuardLayer`]) and every HTTP endpoint ([`http_guard`]).
//!
//! # Tokens
//! `MESH_AUTH_TOKENS_FILE` names a TOML file of tokens, each stored as the
//! SHA-256 of the token (never the token itself; `mesh auth token` makes
//! one):
//!
//! ```toml
//! [[tokens]]
//! name = "shop-a-storefront"      # in logs and metrics
//! sha256 = "9f86d0...a08"          # hex SHA-256 of the bearer token
//! role = "storefront"
//! tenant = "shop-a"                # omit (or "*") for every tenant
//! rate_per_sec = 200               # optional, overrides MESH_RATE_LIMIT_RPS
//!
//! [roles.merchandiser]             # optional: roles beyond the built-in ones
//! allow = ["RecommendService/*", "EngageService/GetPrice", "http:console"]
//! ```
//!
//! Without the file the mesh runs **open** (every caller may call every
//! RPC) and says so at start. With it, every call but the gRPC health check
//! and `/live`, `/ready` needs `authorization: Bearer <token>` (HTTP also
//! takes the `mesh_token` cookie that `GET /console?token=...` sets, so a
//! browser can open the console).
//!
//! # Permissions
//! A role is a list of patterns: `Service/Method` (`RecommendService/Recommend`),
//! `Service/*`, `http:<area>` (`http:console`, `http:metrics`, `http:events`),
//! `http:*`, or `*` for everything. The built-in roles are [`BUILTIN_ROLES`];
//! a role of the same name in the file replaces one.
//!
//! # Tenants
//! A token bound to a tenant reaches that tenant's data only. For an RPC
//! whose request has a top-level `tenant_id` (found in the mesh's own
//! descriptor set), the guard checks the field: another tenant is
//! PERMISSION_DENIED, an empty one is filled in with the caller's tenant
//! (the field is appended to the message: protobuf keeps the last value).
//! Ingest checks each event's envelope itself ([`Caller`] in the request's
//! extensions). Any other RPC, one with no tenant in its request, is refused
//! to a tenant-bound token: it could not be scoped.
//!
//! # Overload
//! More than `MESH_GRPC_MAX_INFLIGHT` calls in flight (default 4096), or a
//! caller over its rate (`MESH_RATE_LIMIT_RPS`, burst `MESH_RATE_LIMIT_BURST`;
//! default off; keyed by token name, or by peer IP when open), is answered
//! at once with RESOURCE_EXHAUSTED (HTTP 429), not queued.
//!
//! Every refusal is counted in `mesh_auth_rejected_total{reason}`.
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use prometheus::{register_int_counter_vec, IntCounterVec};
use prost::Message;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tonic::Status;

use crate::config::Env;
use crate::{Error, Result};

/// The file of tokens; unset = open.
pub const TOKENS_FILE_VAR: &str = "MESH_AUTH_TOKENS_FILE";
/// The token this process sends to its peers (a `service` token of the file).
pub const SERVICE_TOKEN_VAR: &str = "MESH_AUTH_SERVICE_TOKEN";
/// The token `mesh` commands send when they call a running mesh.
pub const CLIENT_TOKEN_VAR: &str = "MESH_AUTH_TOKEN";
/// Calls in flight per process before RESOURCE_EXHAUSTED.
pub const MAX_INFLIGHT_VAR: &str = "MESH_GRPC_MAX_INFLIGHT";
/// Requests per second per caller; 0 = no limit.
pub const RATE_VAR: &str = "MESH_RATE_LIMIT_RPS";
/// Requests a caller may make at once above its rate.
pub const BURST_VAR: &str = "MESH_RATE_LIMIT_BURST";
/// The cookie the console sets from `?token=`.
pub const COOKIE: &str = "mesh_token";

/// The roles every deployment has. `service` is for the mesh's own
/// processes calling each other.
pub const BUILTIN_ROLES: &[(&str, &[&str])] = &[
    ("admin", &["*"]),
    ("service", &["*"]),
    (
        // A shop's front end: publish events, ask for recommendations,
        // prices, offers, search and the assistant, score its orders.
        "storefront",
        &[
            "IngestService/Publish",
            "IngestService/PublishStream",
            "http:events",
            "RecommendService/Recommend",
            "RecommendService/SimilarItems",
            "RecommendService/RankItems",
            "RecommendService/Trending",
            "FraudService/ScoreOrder",
            "EngageService/GetPrice",
            "EngageService/ChooseOffer",
            "EngageService/RecordResponse",
            "CatalogService/Search",
            "SupportService/Converse",
            "SupportService/AnalyzeFeedback",
        ],
    ),
    (
        // Reads everything, changes nothing.
        "analyst",
        &[
            "ProfileService/*",
            "ChurnService/*",
            "RecommendService/Recommend",
            "RecommendService/SimilarItems",
            "RecommendService/RankItems",
            "RecommendService/Trending",
            "RecommendService/GetFeedbackStats",
            "FraudService/GetDecision",
            "FraudService/GetReviewQueue",
            "FraudService/ListLabels",
            "LogisticsService/GetPlan",
            "LogisticsService/ListWaves",
            "LogisticsService/Forecast",
            "LogisticsService/ReorderSuggestions",
            "LogisticsService/ListSeries",
            "EngageService/GetPrice",
            "EngageService/ExplainPrice",
            "EngageService/ListCampaigns",
            "EngageService/CampaignReport",
            "SupportService/FeedbackTrends",
            "SupportService/ListHandoffs",
            "CatalogService/Search",
            "CatalogService/ListLowConfidence",
            "CatalogService/ZeroResultQueries",
            "http:console",
            "http:metrics",
        ],
    ),
    (
        // The fraud review team: the analyst's reads plus resolving reviews.
        "reviewer",
        &[
            "FraudService/GetDecision",
            "FraudService/GetReviewQueue",
            "FraudService/ListLabels",
            "FraudService/ResolveReview",
            "ProfileService/GetProfile",
            "http:console",
        ],
    ),
];

/// Ingest RPCs whose tenants sit in the events and that ingest checks
/// itself against the [`Caller`].
const SERVICE_SCOPED: &[&str] = &["IngestService/Publish", "IngestService/PublishStream"];

/// Refusals, by reason.
pub static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_auth_rejected_total",
        "Calls refused before reaching a handler, by reason (unauthenticated, permission_denied, tenant, rate_limited, overloaded, malformed)",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Every `reason` label of [`REJECTED`].
pub const REFUSAL_REASONS: [&str; 6] = [
    "unauthenticated",
    "permission_denied",
    "tenant",
    "rate_limited",
    "overloaded",
    "malformed",
];

/// Exports every refusal series at 0, so dashboards and alerts see a rate
/// of zero rather than no data before the first refusal.
pub fn zero_series() {
    for r in REFUSAL_REASONS {
        REJECTED.with_label_values(&[r]);
    }
}

/// Who is calling, as the guard established it; in the extensions of every
/// request that passed (absent when the mesh runs open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: Arc<str>,
    pub role: Arc<str>,
    /// The one tenant the caller may reach; `None` = every tenant.
    pub tenant: Option<Arc<str>>,
}

impl Caller {
    /// The tenant a request of this caller acts for: its own when the
    /// request names none; an error naming both when it names another.
    pub fn scope_tenant(&self, requested: &str) -> std::result::Result<Option<Arc<str>>, String> {
        match &self.tenant {
            None => Ok(None),
            Some(t) if requested.is_empty() || requested == &**t => Ok(Some(t.clone())),
            Some(t) => Err(format!(
                "tenant_id {requested:?} is not this token's tenant ({t:?})"
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    roles: BTreeMap<String, RoleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    role: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    rate_per_sec: Option<f64>,
    #[serde(default)]
    burst: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    allow: Vec<String>,
}

#[derive(Debug)]
struct TokenDef {
    caller: Caller,
    rate: Option<Rate>,
}

/// A token bucket's shape: `per_sec` refill, `burst` capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

/// The tokens and roles of a tokens file.
#[derive(Debug)]
pub struct Policy {
    by_hash: HashMap<[u8; 32], TokenDef>,
    roles: HashMap<String, Vec<String>>,
}

/// The hex SHA-256 of a token, as the tokens file stores it.
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh random token: 64 hex characters (244 random bits).
pub fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

fn valid_pattern(p: &str) -> bool {
    p == "*"
        || p == "http:*"
        || (p.starts_with("http:") && p.len() > 5)
        || matches!(p.split_once('/'), Some((s, m)) if !s.is_empty() && !m.is_empty() && !m.contains('/'))
}

fn pattern_allows(pattern: &str, permission: &str) -> bool {
    if pattern == "*" || pattern == permission {
        return true;
    }
    if pattern == "http:*" {
        return permission.starts_with("http:");
    }
    match pattern.strip_suffix("/*") {
        Some(service) => permission
            .split_once('/')
            .is_some_and(|(s, _)| s == service),
        None => false,
    }
}

impl Policy {
    /// Reads and checks a tokens file; errors name the file and the entry.
    pub fn load(path: &str) -> Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            var: TOKENS_FILE_VAR.into(),
            value: path.into(),
            reason: format!("cannot read: {e}"),
        })?;
        Policy::parse(&text).map_err(|reason| Error::Config {
            var: TOKENS_FILE_VAR.into(),
            value: path.into(),
            reason,
        })
    }

    /// Parses the TOML of a tokens file.
    pub fn parse(text: &str) -> std::result::Result<Policy, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut roles: HashMap<String, Vec<String>> = BUILTIN_ROLES
            .iter()
            .map(|(n, p)| (n.to_string(), p.iter().map(|s| s.to_string()).collect()))
            .collect();
        for (name, r) in file.roles {
            if let Some(bad) = r.allow.iter().find(|p| !valid_pattern(p)) {
                return Err(format!(
                    "roles.{name}.allow: {bad:?} is not a permission (Service/Method, Service/*, http:<area>, http:* or *)"
                ));
            }
            roles.insert(name, r.allow);
        }
        let mut by_hash = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, t) in file.tokens.into_iter().enumerate() {
            let at = format!("tokens[{i}] ({:?})", t.name);
            if t.name.is_empty() || !names.insert(t.name.clone()) {
                return Err(format!("{at}: name must be non-empty and unique"));
            }
            let hash = parse_hex32(&t.sha256.to_ascii_lowercase()).ok_or_else(|| {
                format!("{at}: sha256 must be 64 hex digits (the SHA-256 of the token; `mesh auth token` prints one)")
            })?;
            if !roles.contains_key(&t.role) {
                let mut known: Vec<&str> = roles.keys().map(String::as_str).collect();
                known.sort();
                return Err(format!(
                    "{at}: role {:?} is not defined (known: {})",
                    t.role,
                    known.join(", ")
                ));
            }
            let tenant = match t.tenant.as_deref() {
                None | Some("*") => None,
                Some("") => {
                    return Err(format!(
                        "{at}: tenant must not be empty (omit it, or \"*\", for every tenant)"
                    ))
                }
                Some(x) => Some(Arc::from(x)),
            };
            let rate = match t.rate_per_sec {
                None => None,
                Some(r) if r.is_finite() && r > 0.0 => Some(Rate {
                    per_sec: r,
                    burst: t.burst.unwrap_or(r).max(1.0),
                }),
                Some(r) => {
                    return Err(format!(
                        "{at}: rate_per_sec must be a positive number, not {r}"
                    ))
                }
            };
            let def = TokenDef {
                caller: Caller {
                    name: Arc::from(t.name.as_str()),
                    role: Arc::from(t.role.as_str()),
                    tenant,
                },
                rate,
            };
            if by_hash.insert(hash, def).is_some() {
                return Err(format!("{at}: the same token appears twice"));
            }
        }
        Ok(Policy { by_hash, roles })
    }

    fn lookup(&self, token: &str) -> Option<&TokenDef> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash.get(&hash)
    }

    /// Whether `role` may use `permission` (`Service/Method` or `http:<area>`).
    pub fn allows(&self, role: &str, permission: &str) -> bool {
        self.roles
            .get(role)
            .is_some_and(|ps| ps.iter().any(|p| pattern_allows(p, permission)))
    }

    /// The caller a token stands for.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        self.lookup(token).map(|d| d.caller.clone())
    }
}

/// Why the guard refused a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Unauthenticated(String),
    PermissionDenied(String),
    Tenant(String),
    RateLimited(String),
    Overloaded(String),
    Malformed(String),
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::PermissionDenied(_) => "permission_denied",
            Refusal::Tenant(_) => "tenant",
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::Overloaded(_) => "overloaded",
            Refusal::Malformed(_) => "malformed",
        }
    }

    fn count(&self) {
        REJECTED.with_label_values(&[self.reason()]).inc();
    }

    /// The gRPC status of the refusal.
    pub fn status(&self) -> Status {
        match self {
            Refusal::Unauthenticated(m) => Status::unauthenticated(m.clone()),
            Refusal::PermissionDenied(m) | Refusal::Tenant(m) => {
                Status::permission_denied(m.clone())
            }
            Refusal::RateLimited(m) | Refusal::Overloaded(m) => {
                Status::resource_exhausted(m.clone())
            }
            Refusal::Malformed(m) => Status::invalid_argument(m.clone()),
        }
    }

    fn http(&self) -> axum::response::Response {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let (code, msg) = match self {
            Refusal::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m),
            Refusal::PermissionDenied(m) | Refusal::Tenant(m) => (StatusCode::FORBIDDEN, m),
            Refusal::RateLimited(m) | Refusal::Overloaded(m) => (StatusCode::TOO_MANY_REQUESTS, m),
            Refusal::Malformed(m) => (StatusCode::BAD_REQUEST, m),
        };
        let mut r = (code, format!("{msg}\n")).into_response();
        if code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if code == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        r
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Keys the limiter remembers at most; beyond, it starts afresh (a burst of
/// new callers cannot grow memory without bound).
const MAX_BUCKETS: usize = 100_000;

/// Per-caller token buckets.
#[derive(Debug, Default)]
struct Limiter {
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

impl Limiter {
    fn admit(&self, key: &Arc<str>, rate: Rate, now: Instant) -> bool {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_BUCKETS && !map.contains_key(key) {
            map.clear();
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * rate.per_sec).min(rate.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The process's guard: its policy (none = open), limits and the token it
/// sends to its peers.
#[derive(Debug)]
pub struct Guard {
    policy: Option<Policy>,
    service_token: Option<String>,
    default_rate: Option<Rate>,
    max_inflight: usize,
    inflight: Arc<Semaphore>,
    limiter: Limiter,
}

impl Guard {
    /// An open guard with the given limits (tests, benches).
    pub fn open(max_inflight: usize, default_rate: Option<Rate>) -> Guard {
        Guard::new(None, None, max_inflight, default_rate)
    }

    /// A guard from its parts.
    pub fn new(
        policy: Option<Policy>,
        service_token: Option<String>,
        max_inflight: usize,
        default_rate: Option<Rate>,
    ) -> Guard {
        let max_inflight = max_inflight.clamp(1, Semaphore::MAX_PERMITS);
        Guard {
            policy,
            service_token,
            default_rate,
            max_inflight,
            inflight: Arc::new(Semaphore::new(max_inflight)),
            limiter: Limiter::default(),
        }
    }

    /// From `MESH_AUTH_TOKENS_FILE`, `MESH_AUTH_SERVICE_TOKEN`,
    /// `MESH_GRPC_MAX_INFLIGHT`, `MESH_RATE_LIMIT_RPS` and
    /// `MESH_RATE_LIMIT_BURST`. With a tokens file, the service token is
    /// required and must be one of the file's `service` tokens.
    pub fn from_env(env: &Env) -> Result<Guard> {
        let max_inflight = env.positive(MAX_INFLIGHT_VAR, 4096)? as usize;
        let rps: f64 = env.parse(RATE_VAR, 0.0, "requests per second (0 = no limit)")?;
        if !rps.is_finite() || rps < 0.0 {
            return Err(Error::Config {
                var: RATE_VAR.into(),
                value: rps.to_string(),
                reason: "expected requests per second >= 0 (0 = no limit)".into(),
            });
        }
        let burst: f64 = env.parse(BURST_VAR, rps.max(1.0), "a number of requests >= 1")?;
        if !burst.is_finite() || burst < 1.0 {
            return Err(Error::Config {
                var: BURST_VAR.into(),
                value: burst.to_string(),
                reason: "expected a number of requests >= 1".into(),
            });
        }
        let default_rate = (rps > 0.0).then_some(Rate {
            per_sec: rps,
            burst,
        });
        let policy = match env.get(TOKENS_FILE_VAR).filter(|p| !p.is_empty()) {
            None => None,
            Some(path) => Some(Policy::load(path)?),
        };
        let service_token = env
            .get(SERVICE_TOKEN_VAR)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if let Some(p) = &policy {
            let Some(tok) = &service_token else {
                return Err(Error::Config {
                    var: SERVICE_TOKEN_VAR.into(),
                    value: String::new(),
                    reason: format!(
                        "required when {TOKENS_FILE_VAR} is set: the token this process sends to the services it asks (a token of role \"service\" in the file)"
                    ),
                });
            };
            match p.caller(tok) {
                Some(c) if &*c.role == "service" && c.tenant.is_none() => {}
                Some(c) => {
                    return Err(Error::Config {
                        var: SERVICE_TOKEN_VAR.into(),
                        value: "<redacted>".into(),
                        reason: format!(
                            "token {:?} has role {:?}{}; peers need a \"service\" token for every tenant",
                            c.name,
                            c.role,
                            c.tenant.map(|t| format!(" and tenant {t:?}")).unwrap_or_default()
                        ),
                    })
                }
                None => {
                    return Err(Error::Config {
                        var: SERVICE_TOKEN_VAR.into(),
                        value: "<redacted>".into(),
                        reason: format!("not a token of {TOKENS_FILE_VAR}"),
                    })
                }
            }
        }
        Ok(Guard::new(
            policy,
            service_token,
            max_inflight,
            default_rate,
        ))
    }

    /// Whether callers must present a token.
    pub fn is_enforcing(&self) -> bool {
        self.policy.is_some()
    }

    /// The `authorization` value this process sends to its peers.
    pub fn service_authorization(&self) -> Option<String> {
        self.service_token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// A line for the start-up log.
    pub fn describe(&self) -> String {
        let limits = format!(
            "at most {} calls in flight, rate limit {}",
            self.max_inflight,
            match self.default_rate {
                Some(r) => format!("{}/s (burst {}) per caller", r.per_sec, r.burst),
                None => "off".into(),
            }
        );
        match &self.policy {
            Some(p) => format!("authentication on: {} tokens; {limits}", p.by_hash.len()),
            None => format!(
                "authentication OFF: every caller may call every RPC and read every tenant (set {TOKENS_FILE_VAR} to require tokens); {limits}"
            ),
        }
    }

    /// Authenticates `authorization` (or the console cookie's token), checks
    /// `permission` and the caller's rate. `peer` keys the rate when open.
    fn admit(
        &self,
        token: Option<&str>,
        permission: &str,
        peer: Option<IpAddr>,
    ) -> std::result::Result<Option<Caller>, Refusal> {
        let (caller, rate) = match &self.policy {
            None => (None, self.default_rate),
            Some(p) => {
                let Some(tok) = token else {
                    return Err(Refusal::Unauthenticated(
                        "missing credentials: send `authorization: Bearer <token>`".into(),
                    ));
                };
                let Some(def) = p.lookup(tok) else {
                    return Err(Refusal::Unauthenticated("unknown token".into()));
                };
                if !p.allows(&def.caller.role, permission) {
                    return Err(Refusal::PermissionDenied(format!(
                        "token {:?} (role {:?}) may not call {permission}",
                        def.caller.name, def.caller.role
                    )));
                }
                // The mesh's own calls are not rate-limited by default.
                let rate = def.rate.or(if &*def.caller.role == "service" {
                    None
                } else {
                    self.default_rate
                });
                (Some(def.caller.clone()), rate)
            }
        };
        if let Some(rate) = rate {
            let key: Arc<str> = match (&caller, peer) {
                (Some(c), _) => c.name.clone(),
                (None, Some(ip)) => Arc::from(ip.to_string()),
                (None, None) => Arc::from("unknown"),
            };
            if !self.limiter.admit(&key, rate, Instant::now()) {
                return Err(Refusal::RateLimited(format!(
                    "rate limit of {}/s (burst {}) for {key} exceeded; retry later",
                    rate.per_sec, rate.burst
                )));
            }
        }
        Ok(caller)
    }

    fn acquire(&self) -> std::result::Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        self.inflight.clone().try_acquire_owned().map_err(|_| {
            Refusal::Overloaded(format!(
                "overloaded: {} calls in flight ({MAX_INFLIGHT_VAR}); retry later",
                self.max_inflight
            ))
        })
    }
}

static INSTALLED: LazyLock<Mutex<Arc<Guard>>> =
    LazyLock::new(|| Mutex::new(Arc::new(Guard::open(4096, None))));

/// Makes `guard` the process's guard: servers and peers built after this
/// call use it. (A serving process logs [`Guard::describe`].)
pub fn install(guard: Guard) -> Arc<Guard> {
    let g = Arc::new(guard);
    *INSTALLED.lock().unwrap_or_else(|e| e.into_inner()) = g.clone();
    g
}

/// The process's guard (open with default limits until [`install`]).
pub fn installed() -> Arc<Guard> {
    INSTALLED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Adds the process's service token to a request to a peer (nothing when
/// the mesh runs open).
pub fn inject_service_token(metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(v) = installed()
        .service_authorization()
        .and_then(|a| a.parse().ok())
    {
        metadata.insert("authorization", v);
    }
}

/// A tonic interceptor adding the process's service token, for the mesh's
/// own clients built on a bare channel (the console's, the simulators').
pub fn service_interceptor(
    mut req: tonic::Request<()>,
) -> std::result::Result<tonic::Request<()>, Status> {
    inject_service_token(req.metadata_mut());
    Ok(req)
}

/// A tonic interceptor for `mesh` commands calling a running mesh: sends
/// `MESH_AUTH_TOKEN`, else the service token, else nothing.
pub fn client_interceptor(
    mut req: tonic::Request<()>,
) -> std::result::Result<tonic::Request<()>, Status> {
    match std::env::var(CLIENT_TOKEN_VAR)
        .ok()
        .filter(|t| !t.is_empty())
    {
        Some(t) => {
            if let Ok(v) = format!("Bearer {t}").parse() {
                req.metadata_mut().insert("authorization", v);
            }
        }
        None => inject_service_token(req.metadata_mut()),
    }
    Ok(req)
}

/// The signature of [`service_interceptor`] and [`client_interceptor`].
pub type AuthFn = fn(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, Status>;

/// A channel whose calls carry a token (see [`authed`], [`client`]).
pub type AuthChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AuthFn>;

/// `ch` with the process's service token on every call.
pub fn authed(ch: tonic::transport::Channel) -> AuthChannel {
    tonic::service::interceptor::InterceptedService::new(ch, service_interceptor as AuthFn)
}

/// `ch` with the command's token (`MESH_AUTH_TOKEN`) on every call.
pub fn client(ch: tonic::transport::Channel) -> AuthChannel {
    tonic::service::interceptor::InterceptedService::new(ch, client_interceptor as AuthFn)
}

/// `Bearer <token>` from the `authorization` header.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| tok.trim())
}

fn cookie_token(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// `Service/Method` of a gRPC path `/pkg.Service/Method`.
pub fn permission_of(path: &str) -> Option<String> {
    let (svc, method) = path.strip_prefix('/')?.split_once('/')?;
    let short = svc.rsplit('.').next()?;
    (!short.is_empty() && !method.is_empty()).then(|| format!("{short}/{method}"))
}

/// How a method's request carries its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TenantField {
    /// `string tenant_id = N` in a unary request: `[N]` at the top level,
    /// `[M, N]` inside its one singular message field `M` (`ScoreOrder`'s
    /// envelope).
    Field(&'static [u32]),
    /// Checked by the service from [`Caller`].
    Service,
    /// None: a tenant-bound caller cannot be scoped.
    None,
}

/// Where a message keeps its tenant: a top-level `string tenant_id`, or one
/// inside its only singular message-typed field that has one.
fn tenant_path(
    messages: &HashMap<String, &prost_types::DescriptorProto>,
    name: &str,
) -> Option<Vec<u32>> {
    use prost_types::field_descriptor_proto::{Label, Type};
    let d = messages.get(name)?;
    let direct = |d: &prost_types::DescriptorProto| {
        d.field
            .iter()
            .find(|x| {
                x.name() == "tenant_id"
                    && x.r#type() == Type::String
                    && x.label() != Label::Repeated
            })
            .map(|x| x.number() as u32)
    };
    if let Some(n) = direct(d) {
        return Some(vec![n]);
    }
    let nested: Vec<Vec<u32>> = d
        .field
        .iter()
        .filter(|x| x.r#type() == Type::Message && x.label() != Label::Repeated)
        .filter_map(|x| {
            let inner = messages.get(x.type_name())?;
            direct(inner).map(|n| vec![x.number() as u32, n])
        })
        .collect();
    (nested.len() == 1)
        .then(|| nested.into_iter().next())
        .flatten()
}

/// The tenant field of every mesh method, from the mesh's descriptor set.
static TENANT_FIELDS: LazyLock<HashMap<String, TenantField>> = LazyLock::new(|| {
    let mut out = HashMap::new();
    let Ok(set) = prost_types::FileDescriptorSet::decode(mesh_proto::FILE_DESCRIPTOR_SET) else {
        return out;
    };
    let mut messages: HashMap<String, &prost_types::DescriptorProto> = HashMap::new();
    for f in &set.file {
        for m in &f.message_type {
            messages.insert(format!(".{}.{}", f.package(), m.name()), m);
        }
    }
    for f in &set.file {
        for s in &f.service {
            for m in &s.method {
                let path = format!("/{}.{}/{}", f.package(), s.name(), m.name());
                let perm = format!("{}/{}", s.name(), m.name());
                let field = if SERVICE_SCOPED.contains(&perm.as_str()) {
                    TenantField::Service
                } else if m.client_streaming() {
                    TenantField::None
                } else {
                    tenant_path(&messages, m.input_type())
                        .map(|p| TenantField::Field(Vec::leak(p)))
                        .unwrap_or(TenantField::None)
                };
                out.insert(path, field);
            }
        }
    }
    out
});

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Checks the string field at `path` (field numbers from the top, every
/// step but the last a singular message field) of the protobuf message
/// `msg` against `tenant`, and returns the message with the field set to
/// it: appended at the end, where protobuf's last-value-wins (and merging
/// of repeated occurrences of a message field) makes it the value the
/// handler sees.
pub fn bind_tenant(
    msg: &[u8],
    path: &[u32],
    tenant: &str,
) -> std::result::Result<Vec<u8>, Refusal> {
    check_tenant(msg, path, tenant)?;
    // The appended field, innermost first.
    let mut tail = Vec::new();
    let mut inner = tenant.as_bytes().to_vec();
    for (i, &f) in path.iter().enumerate().rev() {
        tail.clear();
        write_varint(u64::from(f) << 3 | 2, &mut tail);
        write_varint(inner.len() as u64, &mut tail);
        tail.extend_from_slice(&inner);
        if i > 0 {
            inner = std::mem::take(&mut tail);
        }
    }
    let mut out = Vec::with_capacity(msg.len() + tail.len());
    out.extend_from_slice(msg);
    out.extend_from_slice(&tail);
    Ok(out)
}

fn check_tenant(msg: &[u8], path: &[u32], tenant: &str) -> std::result::Result<(), Refusal> {
    let malformed = || Refusal::Malformed("request is not a valid protobuf message".into());
    let Some((&field, rest)) = path.split_first() else {
        return Ok(());
    };
    let mut pos = 0;
    while pos < msg.len() {
        let key = read_varint(msg, &mut pos).ok_or_else(malformed)?;
        let (tag, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                read_varint(msg, &mut pos).ok_or_else(malformed)?;
            }
            1 | 5 => {
                pos += if wire == 1 { 8 } else { 4 };
                if pos > msg.len() {
                    return Err(malformed());
                }
            }
            2 => {
                let len = read_varint(msg, &mut pos).ok_or_else(malformed)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= msg.len())
                    .ok_or_else(malformed)?;
                if tag == u64::from(field) && !rest.is_empty() {
                    check_tenant(&msg[pos..end], rest, tenant)?;
                } else if tag == u64::from(field) {
                    let v = &msg[pos..end];
                    if !v.is_empty() && v != tenant.as_bytes() {
                        return Err(Refusal::Tenant(format!(
                            "tenant_id {:?} is not this token's tenant ({tenant:?})",
                            String::from_utf8_lossy(&v[..v.len().min(64)])
                        )));
                    }
                }
                pos = end;
            }
            _ => return Err(malformed()),
        }
    }
    Ok(())
}

/// Largest unary request the guard reads to bind its tenant; larger ones
/// are refused as tonic refuses them (its default decoding limit).
const MAX_BOUND_REQUEST: usize = 4 << 20;

/// Rewrites a unary gRPC body (one uncompressed frame) so its tenant is the
/// caller's.
async fn bind_body(
    body: tonic::body::Body,
    path: &[u32],
    tenant: &str,
) -> std::result::Result<tonic::body::Body, Refusal> {
    let limited = http_body_util::Limited::new(body, MAX_BOUND_REQUEST + 5);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Err(if e.is::<http_body_util::LengthLimitError>() {
                Refusal::Malformed(format!("request larger than {MAX_BOUND_REQUEST} bytes"))
            } else {
                Refusal::Malformed(format!("request body unreadable: {e}"))
            })
        }
    };
    if bytes.len() < 5 {
        return Err(Refusal::Malformed("request is not one gRPC message".into()));
    }
    if bytes[0] != 0 {
        return Err(Refusal::Malformed(
            "compressed requests are not accepted from tenant-bound tokens".into(),
        ));
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if bytes.len() != 5 + len {
        return Err(Refusal::Malformed("request is not one gRPC message".into()));
    }
    let msg = bind_tenant(&bytes[5..], path, tenant)?;
    let mut framed = Vec::with_capacity(msg.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    Ok(tonic::body::Body::new(http_body_util::Full::new(
        Bytes::from(framed),
    )))
}

/// The gRPC side of the guard, in every server built by
/// [`crate::grpc::server`].
#[derive(Debug, Clone)]
pub struct GuardLayer {
    guard: Arc<Guard>,
}

impl GuardLayer {
    pub fn new(guard: Arc<Guard>) -> Self {
        GuardLayer { guard }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service [`GuardLayer`] wraps around tonic's routes.
#[derive(Debug, Clone)]
pub struct GuardService<S> {
    inner: S,
    guard: Arc<Guard>,
}

type BoxFut<T, E> = Pin<Box<dyn Future<Output = std::result::Result<T, E>> + Send>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for GuardService<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFut<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        let path = req.uri().path().to_string();
        if path.starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.inner.call(req));
        }
        let refuse = |r: Refusal| -> Self::Future {
            r.count();
            let resp = r.status().into_http::<tonic::body::Body>();
            Box::pin(async move { Ok(resp) })
        };
        let permit = match self.guard.acquire() {
            Ok(p) => p,
            Err(r) => return refuse(r),
        };
        // Reflection answers what the mesh serves: any caller may ask.
        let permission = if path.starts_with("/grpc.reflection.") {
            "reflection".to_string()
        } else {
            permission_of(&path).unwrap_or_else(|| path.clone())
        };
        let peer = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr())
            .map(|a| a.ip());
        let token = bearer(req.headers());
        let admitted = if permission == "reflection" && token.is_some() {
            // Still authenticated: an unknown token is refused.
            self.guard.admit(token, "*", peer).or_else(|e| match e {
                Refusal::PermissionDenied(_) => Ok(None),
                e => Err(e),
            })
        } else if permission == "reflection" && self.guard.is_enforcing() {
            Err(Refusal::Unauthenticated(
                "missing credentials: send `authorization: Bearer <token>`".into(),
            ))
        } else {
            self.guard.admit(token, &permission, peer)
        };
        let caller = match admitted {
            Ok(c) => c,
            Err(r) => return refuse(r),
        };
        let bound = match caller.as_ref().and_then(|c| c.tenant.clone()) {
            None => None,
            Some(t) => match TENANT_FIELDS.get(&path).cloned() {
                Some(TenantField::Field(p)) => Some((p, t)),
                Some(TenantField::Service) => None,
                Some(TenantField::None) | None => {
                    return refuse(Refusal::Tenant(format!(
                        "{permission} is not scoped to a tenant; a token bound to tenant {t:?} cannot call it"
                    )))
                }
            },
        };
        if let Some(c) = caller {
            req.extensions_mut().insert(c);
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let _permit = permit;
            let req = match bound {
                None => req,
                Some((path, tenant)) => {
                    let (parts, body) = req.into_parts();
                    match bind_body(body, path, &tenant).await {
                        Ok(b) => http::Request::from_parts(parts, b),
                        Err(r) => {
                            r.count();
                            return Ok(r.status().into_http());
                        }
                    }
                }
            };
            inner.call(req).await
        })
    }
}

/// The HTTP side of the guard: `/live` and `/ready` are open; `/metrics`
/// needs `http:metrics`, `/v1/events` `http:events`, anything else (the
/// console) `http:console`. `GET ...?token=T` with a valid token sets the
/// `mesh_token` cookie and redirects to the same path without it.
pub async fn http_guard(
    axum::extract::State(guard): axum::extract::State<Arc<Guard>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path().to_string();
    if path == "/live" || path == "/ready" {
        return next.run(req).await;
    }
    let permission = match path.as_str() {
        "/metrics" => "http:metrics",
        p if p.starts_with("/v1/events") => "http:events",
        _ => "http:console",
    };
    let _permit = match guard.acquire() {
        Ok(p) => p,
        Err(r) => {
            r.count();
            return r.http();
        }
    };
    // A browser opening the console with ?token=...: keep it in a cookie.
    if guard.is_enforcing() && req.method() == http::Method::GET {
        let query = req.uri().query().unwrap_or("");
        if let Some(tok) = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string)
        {
            if let Err(r) = guard.admit(Some(&tok), permission, None) {
                r.count();
                return r.http();
            }
            let rest: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
                .collect();
            let to = if rest.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", rest.join("&"))
            };
            let mut r = axum::response::Redirect::to(&to).into_response();
            if let Ok(v) = http::HeaderValue::from_str(&format!(
                "{COOKIE}={tok}; Path=/; HttpOnly; SameSite=Strict"
            )) {
                r.headers_mut().insert(http::header::SET_COOKIE, v);
            }
            return r;
        }
    }
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let token = bearer(req.headers()).or_else(|| cookie_token(req.headers()));
    match guard.admit(token, permission, peer) {
        Ok(caller) => {
            if let Some(c) = caller {
                req.extensions_mut().insert(c);
            }
            next.run(req).await
        }
        Err(r) => {
            r.count();
            r.http()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[tokens]]
        name = "svc"
        sha256 = "SVC"
        role = "service"

        [[tokens]]
        name = "shop-a"
        sha256 = "SHOPA"
        role = "storefront"
        tenant = "a"
        rate_per_sec = 2
        burst = 2

        [roles.merch]
        allow = ["EngageService/*", "http:console"]

        [[tokens]]
        name = "m"
        sha256 = "M"
        role = "merch"
    "#;

    fn policy() -> Policy {
        let text = FILE
            .replace("SVC", &token_sha256("svc-token"))
            .replace("SHOPA", &token_sha256("a-token"))
            .replace("\"M\"", &format!("{:?}", token_sha256("m-token")));
        Policy::parse(&text).unwrap()
    }

    #[test]
    fn tokens_resolve_to_their_caller_and_role_permissions_apply() {
        let p = policy();
        let a = p.caller("a-token").unwrap();
        assert_eq!((&*a.name, &*a.role), ("shop-a", "storefront"));
        assert_eq!(a.tenant.as_deref(), Some("a"));
        assert!(p.caller("nope").is_none());
        assert!(p.allows("storefront", "RecommendService/Recommend"));
        assert!(!p.allows("storefront", "ChurnService/ListAtRisk"));
        assert!(!p.allows("storefront", "FraudService/ResolveReview"));
        assert!(!p.allows("storefront", "IngestService/ForgetUser"));
        assert!(!p.allows("analyst", "IngestService/ForgetUser"));
        assert!(p.allows("admin", "IngestService/ForgetUser"));
        assert!(p.allows("merch", "EngageService/CreateCampaign"));
        assert!(!p.allows("merch", "EngageServiceX/CreateCampaign"));
        assert!(p.allows("merch", "http:console"));
        assert!(!p.allows("merch", "http:metrics"));
        assert!(p.allows("service", "LogisticsService/SetStock"));
        assert!(p.allows("analyst", "http:metrics"));
        assert!(!p.allows("analyst", "LogisticsService/SetStock"));
    }

    #[test]
    fn bad_files_are_refused_with_the_entry_named() {
        let bad_hash = r#"[[tokens]]
            name = "x"
            sha256 = "abc"
            role = "admin""#;
        let e = Policy::parse(bad_hash).unwrap_err();
        assert!(e.contains("tokens[0]") && e.contains("sha256"), "{e}");
        let h = token_sha256("t");
        let bad_role = format!("[[tokens]]\nname = \"x\"\nsha256 = \"{h}\"\nrole = \"root\"");
        let e = Policy::parse(&bad_role).unwrap_err();
        assert!(e.contains("role \"root\" is not defined"), "{e}");
        let dup = format!(
            "[[tokens]]\nname = \"x\"\nsha256 = \"{h}\"\nrole = \"admin\"\n[[tokens]]\nname = \"y\"\nsha256 = \"{h}\"\nrole = \"admin\""
        );
        assert!(Policy::parse(&dup).unwrap_err().contains("twice"));
        let bad_pattern = "[roles.x]\nallow = [\"Recommend\"]";
        assert!(Policy::parse(bad_pattern)
            .unwrap_err()
            .contains("roles.x.allow"));
        let unknown_key = format!(
            "[[tokens]]\nname = \"x\"\nsha256 = \"{h}\"\nrole = \"admin\"\ntennant = \"a\""
        );
        assert!(Policy::parse(&unknown_key).unwrap_err().contains("tennant"));
    }

    #[test]
    fn admit_checks_token_permission_and_rate() {
        let g = Guard::new(Some(policy()), Some("svc-token".into()), 10, None);
        let err = g
            .admit(None, "RecommendService/Recommend", None)
            .unwrap_err();
        assert!(matches!(err, Refusal::Unauthenticated(_)));
        let err = g
            .admit(Some("bad"), "RecommendService/Recommend", None)
            .unwrap_err();
        assert!(matches!(err, Refusal::Unauthenticated(_)));
        let err = g
            .admit(Some("a-token"), "ChurnService/ListAtRisk", None)
            .unwrap_err();
        assert!(matches!(err, Refusal::PermissionDenied(ref m) if m.contains("shop-a")));
        // burst 2 at 2/s: the third call at once is refused.
        assert!(g
            .admit(Some("a-token"), "RecommendService/Recommend", None)
            .is_ok());
        assert!(g
            .admit(Some("a-token"), "RecommendService/Recommend", None)
            .is_ok());
        let err = g
            .admit(Some("a-token"), "RecommendService/Recommend", None)
            .unwrap_err();
        assert!(matches!(err, Refusal::RateLimited(_)));
        // The service token has no limit.
        for _ in 0..100 {
            assert!(g
                .admit(Some("svc-token"), "ChurnService/ListAtRisk", None)
                .is_ok());
        }
    }

    #[test]
    fn open_guard_admits_everyone_and_limits_by_peer() {
        let rate = Rate {
            per_sec: 1.0,
            burst: 1.0,
        };
        let g = Guard::open(10, Some(rate));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(g.admit(None, "X/Y", Some(ip)), Ok(None));
        assert!(matches!(
            g.admit(None, "X/Y", Some(ip)),
            Err(Refusal::RateLimited(_))
        ));
        assert_eq!(
            g.admit(None, "X/Y", Some("10.0.0.2".parse().unwrap())),
            Ok(None)
        );
    }

    #[test]
    fn the_in_flight_bound_refuses_at_once() {
        let g = Guard::open(2, None);
        let a = g.acquire().unwrap();
        let _b = g.acquire().unwrap();
        assert!(matches!(g.acquire(), Err(Refusal::Overloaded(_))));
        drop(a);
        assert!(g.acquire().is_ok());
    }

    #[test]
    fn the_service_token_must_be_a_service_token_of_the_file() {
        let dir = std::env::temp_dir().join(format!("mesh-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        let text = FILE
            .replace("SVC", &token_sha256("svc-token"))
            .replace("SHOPA", &token_sha256("a-token"))
            .replace("\"M\"", &format!("{:?}", token_sha256("m-token")));
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let env = Env::from_pairs([(TOKENS_FILE_VAR, p)]);
        let e = Guard::from_env(&env).unwrap_err().to_string();
        assert!(
            e.contains(SERVICE_TOKEN_VAR) && e.contains("required"),
            "{e}"
        );
        let env = Env::from_pairs([(TOKENS_FILE_VAR, p), (SERVICE_TOKEN_VAR, "a-token")]);
        let e = Guard::from_env(&env).unwrap_err().to_string();
        assert!(e.contains("storefront"), "{e}");
        let env = Env::from_pairs([(TOKENS_FILE_VAR, p), (SERVICE_TOKEN_VAR, "svc-token")]);
        let g = Guard::from_env(&env).unwrap();
        assert!(g.is_enforcing());
        assert_eq!(
            g.service_authorization().as_deref(),
            Some("Bearer svc-token")
        );
        let env = Env::from_pairs([(RATE_VAR, "-3")]);
        assert!(Guard::from_env(&env)
            .unwrap_err()
            .to_string()
            .contains(RATE_VAR));
        let env = Env::from_pairs([(TOKENS_FILE_VAR, "/nonexistent/tokens.toml")]);
        assert!(Guard::from_env(&env)
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tenants_are_bound_by_appending_the_field() {
        use mesh_proto::logistics::v1::ForecastRequest;
        let req = ForecastRequest {
            series_key: "sku-1".into(),
            horizon: 7,
            ..Default::default()
        };
        let field = match &TENANT_FIELDS["/mesh.logistics.v1.LogisticsService/Forecast"] {
            TenantField::Field(p) => *p,
            other => panic!("{other:?}"),
        };
        let out = bind_tenant(&req.encode_to_vec(), field, "a").unwrap();
        let back = ForecastRequest::decode(out.as_slice()).unwrap();
        assert_eq!(back.tenant_id, "a");
        assert_eq!(back.series_key, "sku-1");
        assert_eq!(back.horizon, 7);
        // The same tenant is fine; another is refused.
        let same = ForecastRequest {
            tenant_id: "a".into(),
            ..req.clone()
        };
        assert!(bind_tenant(&same.encode_to_vec(), field, "a").is_ok());
        let other = ForecastRequest {
            tenant_id: "b".into(),
            ..req
        };
        assert!(matches!(
            bind_tenant(&other.encode_to_vec(), field, "a"),
            Err(Refusal::Tenant(ref m)) if m.contains("\"b\"")
        ));
        assert!(matches!(
            bind_tenant(&[0x0a, 0x05, b'x'], field, "a"),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn a_tenant_inside_the_one_message_field_is_bound_too() {
        use mesh_proto::events::v1::Envelope;
        use mesh_proto::fraud::v1::ScoreOrderRequest;
        let path = match &TENANT_FIELDS["/mesh.fraud.v1.FraudService/ScoreOrder"] {
            TenantField::Field(p) => *p,
            other => panic!("{other:?}"),
        };
        assert_eq!(path.len(), 2);
        let req = ScoreOrderRequest {
            envelope: Some(Envelope {
                event_id: "e1".into(),
                user_id: "u1".into(),
                ..Default::default()
            }),
        };
        let out = bind_tenant(&req.encode_to_vec(), path, "a").unwrap();
        let env = ScoreOrderRequest::decode(out.as_slice())
            .unwrap()
            .envelope
            .unwrap();
        assert_eq!(
            (
                env.tenant_id.as_str(),
                env.event_id.as_str(),
                env.user_id.as_str()
            ),
            ("a", "e1", "u1")
        );
        let other = ScoreOrderRequest {
            envelope: Some(Envelope {
                tenant_id: "b".into(),
                ..Default::default()
            }),
        };
        assert!(matches!(
            bind_tenant(&other.encode_to_vec(), path, "a"),
            Err(Refusal::Tenant(_))
        ));
    }

    #[test]
    fn every_method_is_classified_and_ingest_checks_its_own() {
        assert_eq!(
            TENANT_FIELDS["/mesh.ingest.v1.IngestService/Publish"],
            TenantField::Service
        );
        assert!(matches!(
            TENANT_FIELDS["/mesh.recommend.v1.RecommendService/Recommend"],
            TenantField::Field(_)
        ));
        assert!(matches!(
            TENANT_FIELDS["/mesh.engage.v1.EngageService/CreateCampaign"],
            TenantField::Field(_)
        ));
        // An erasure is bound to the caller's tenant like a read.
        assert!(matches!(
            TENANT_FIELDS["/mesh.ingest.v1.IngestService/ForgetUser"],
            TenantField::Field(_)
        ));
        // Lists and writes of tenant state are scoped by their request's
        // `tenant_id`.
        for m in [
            "/mesh.churn.v1.ChurnService/ListAtRisk",
            "/mesh.churn.v1.ChurnService/RetentionReport",
            "/mesh.fraud.v1.FraudService/GetReviewQueue",
            "/mesh.fraud.v1.FraudService/ResolveReview",
            "/mesh.fraud.v1.FraudService/ListLabels",
            "/mesh.logistics.v1.LogisticsService/GetPlan",
            "/mesh.logistics.v1.LogisticsService/ListWaves",
            "/mesh.logistics.v1.LogisticsService/SetStock",
            "/mesh.logistics.v1.LogisticsService/ReorderSuggestions",
            "/mesh.profile.v1.ProfileService/BatchGetProfiles",
            "/mesh.catalog.v1.CatalogService/UpsertProducts",
        ] {
            assert!(matches!(TENANT_FIELDS[m], TenantField::Field(_)), "{m}");
        }
        // No tenant to scope by (models fitted over every tenant, a solver
        // of the request's own stops): refused to tenant-bound tokens.
        for m in [
            "/mesh.churn.v1.ChurnService/GetModelInfo",
            "/mesh.logistics.v1.LogisticsService/PlanRoutes",
        ] {
            assert_eq!(TENANT_FIELDS[m], TenantField::None, "{m}");
        }
        assert!(TENANT_FIELDS.len() >= 50, "{}", TENANT_FIELDS.len());
    }

    #[test]
    fn header_and_cookie_tokens_are_read() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            http::header::COOKIE,
            "x=1; mesh_token=zz; y=2".parse().unwrap(),
        );
        assert_eq!(cookie_token(&h), Some("zz"));
        assert_eq!(
            permission_of("/mesh.a.v1.AService/Go").as_deref(),
            Some("AService/Go")
        );
    }
}
