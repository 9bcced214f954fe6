//! A mesh that requires tokens (issue #17, items 3–5), against the real
//! broker and Redis: missing and wrong credentials, the wrong role, another
//! tenant's data, the caller's rate, over gRPC and HTTP, and the service
//! token carrying one service's calls to another.
//!
//! The guard is process-wide ([`mesh_runtime::auth::install`]), so this file
//! holds one test.
use std::time::{Duration, Instant};

use mesh_e2e::raw::{call, grpc_addr_of, schema};
use mesh_e2e::{config, start, Servers};
use mesh_proto::churn::v1::churn_service_client::ChurnServiceClient;
use mesh_proto::churn::v1::{GetModelInfoRequest, ListAtRiskRequest};
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::RecommendRequest;
use mesh_runtime::auth::{self, token_sha256, Guard};
use mesh_runtime::config::Env;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

/// Sends `authorization: Bearer <token>` (nothing for `None`).
#[derive(Clone)]
struct Bearer(Option<&'static str>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = self.0 {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(r)
    }
}

type Ch = InterceptedService<Channel, Bearer>;

fn ch(addr: std::net::SocketAddr, token: Option<&'static str>) -> Ch {
    let c = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    InterceptedService::new(c, Bearer(token))
}

const SVC: &str = "svc-0123456789";
const ADMIN: &str = "admin-0123456789";
const SHOP_A: &str = "shop-a-0123456789";
const SHOP_B: &str = "shop-b-0123456789";
const ANALYST_A: &str = "analyst-a-0123456789";
const LIMITED: &str = "limited-0123456789";
/// An admin of one tenant: every method allowed, only tenant auth-a.
const OPS_A: &str = "ops-a-0123456789";

fn tokens_file() -> String {
    let entry = |name: &str, tok: &str, role: &str, extra: &str| {
        format!(
            "[[tokens]]\nname = {name:?}\nsha256 = {:?}\nrole = {role:?}\n{extra}\n",
            token_sha256(tok)
        )
    };
    [
        entry("svc", SVC, "service", ""),
        entry("ops", ADMIN, "admin", ""),
        entry("shop-a", SHOP_A, "storefront", "tenant = \"auth-a\""),
        entry("shop-b", SHOP_B, "storefront", "tenant = \"auth-b\""),
        entry("analyst-a", ANALYST_A, "analyst", "tenant = \"auth-a\""),
        entry("ops-a", OPS_A, "admin", "tenant = \"auth-a\""),
        entry(
            "limited",
            LIMITED,
            "storefront",
            "tenant = \"auth-a\"\nrate_per_sec = 2\nburst = 3",
        ),
    ]
    .concat()
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match r {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

fn rejected(reason: &str) -> u64 {
    auth::REJECTED.with_label_values(&[reason]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_roles_tenants_and_rates_are_enforced_over_grpc_and_http() {
    let dir = std::env::temp_dir().join(mesh_testkit::unique("mesh-auth"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.toml");
    std::fs::write(&file, tokens_file()).unwrap();
    let env = Env::from_pairs([
        (auth::TOKENS_FILE_VAR, file.to_str().unwrap()),
        (auth::SERVICE_TOKEN_VAR, SVC),
    ]);
    auth::install(Guard::from_env(&env).expect("tokens file is valid"));
    let cfg = config(Servers::Real, "auth");
    let (mesh, shutdown) = start(&cfg).await;
    let mut failures: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            eprintln!("FAILED: {what}");
            failures.push(what);
        }
    };

    // --- Authentication -------------------------------------------------
    let get = |tenant: &str| GetProfileRequest {
        tenant_id: tenant.into(),
        user_id: "u-auth-1".into(),
    };
    let before = rejected("unauthenticated");
    let (c, m) = code(
        ProfileServiceClient::new(ch(mesh.profile.grpc_addr, None))
            .get_profile(get("auth-a"))
            .await,
    );
    check(
        c == Code::Unauthenticated && m.contains("Bearer"),
        format!("no token: {c:?} {m}"),
    );
    let (c, m) = code(
        ProfileServiceClient::new(ch(mesh.profile.grpc_addr, Some("not-a-token")))
            .get_profile(get("auth-a"))
            .await,
    );
    check(
        c == Code::Unauthenticated && m.contains("unknown token"),
        format!("wrong token: {c:?} {m}"),
    );
    check(
        rejected("unauthenticated") >= before + 2,
        "unauthenticated calls are counted".into(),
    );
    // The health check stays open for probes.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(ch(mesh.profile.grpc_addr, None));
    let (c, m) = code(
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await,
    );
    check(c == Code::Ok, format!("health without a token: {c:?} {m}"));

    // --- Publishing binds events to the caller's tenant -------------------
    let mut events = mesh_e2e::events("authev", 1, 12);
    for e in &mut events {
        e.tenant_id = String::new();
        e.user_id = "u-auth-1".into();
    }
    let mut foreign = events[0].clone();
    foreign.event_id = format!("{}-foreign", foreign.event_id);
    foreign.tenant_id = "auth-b".into();
    let mut batch = events.clone();
    batch.push(foreign);
    let r = IngestServiceClient::new(ch(mesh.ingest.grpc_addr, Some(SHOP_A)))
        .publish(PublishRequest { events: batch })
        .await;
    match r {
        Ok(r) => {
            let r = r.into_inner();
            check(
                r.accepted == events.len() as u32,
                format!("shop-a publishes its events: accepted {}", r.accepted),
            );
            check(
                r.rejected.len() == 1
                    && r.rejected[0].field == "tenant_id"
                    && r.rejected[0].reason.contains("auth-b"),
                format!(
                    "another tenant's event is rejected by name: {:?}",
                    r.rejected
                ),
            );
        }
        Err(s) => check(false, format!("shop-a publish: {s:?}")),
    }
    // The events landed under auth-a: the admin sees them there.
    let mut admin_profile = ProfileServiceClient::new(ch(mesh.profile.grpc_addr, Some(ADMIN)));
    let t0 = Instant::now();
    let mut seen = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        if let Ok(p) = admin_profile.get_profile(get("auth-a")).await {
            seen = p.into_inner().events;
            if seen == events.len() as u64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    check(
        seen == events.len() as u64,
        format!(
            "profile of auth-a/u-auth-1 has {seen} of {} events",
            events.len()
        ),
    );

    // --- Tenants -----------------------------------------------------------
    let mut analyst = ProfileServiceClient::new(ch(mesh.profile.grpc_addr, Some(ANALYST_A)));
    let (c, m) = code(analyst.get_profile(get("auth-b")).await);
    check(
        c == Code::PermissionDenied && m.contains("auth-b"),
        format!("analyst of auth-a reading auth-b: {c:?} {m}"),
    );
    match analyst.get_profile(get("")).await {
        Ok(p) => check(
            p.into_inner().events == events.len() as u64,
            "an empty tenant is the caller's own".into(),
        ),
        Err(s) => check(false, format!("analyst of auth-a, empty tenant: {s:?}")),
    }
    // An RPC with no tenant in its request cannot be scoped: refused.
    let (c, m) = code(
        ChurnServiceClient::new(ch(mesh.churn.grpc_addr, Some(ANALYST_A)))
            .get_model_info(GetModelInfoRequest {})
            .await,
    );
    check(
        c == Code::PermissionDenied && m.contains("not scoped"),
        format!("tenant-bound GetModelInfo: {c:?} {m}"),
    );
    let (c, m) = code(
        ChurnServiceClient::new(ch(mesh.churn.grpc_addr, Some(ADMIN)))
            .get_model_info(GetModelInfoRequest {})
            .await,
    );
    check(c == Code::Ok, format!("admin GetModelInfo: {c:?} {m}"));

    // --- Every RPC: another tenant is refused, the own one served ------------
    // The request's tenant is found in the descriptor set the way a client
    // would read the API (top level, or in the one singular message field),
    // independently of the guard's own table.
    let (messages, methods) = schema();
    let (mut scoped, mut unscoped) = (Vec::new(), Vec::new());
    for (package, m) in &methods {
        if m.path.starts_with("/mesh.ingest.v1.IngestService/Publish") {
            continue; // the tenant is in each event; checked above
        }
        let ch = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            grpc_addr_of(&mesh, package)
        ))
        .unwrap()
        .connect_lazy();
        let outcome = |r: Result<(), tonic::Status>| match r {
            Ok(()) => (Code::Ok, String::new()),
            Err(s) => (s.code(), s.message().to_string()),
        };
        match tenant_path(&messages, &m.input) {
            Some(path) => {
                scoped.push(m.path.clone());
                let (c, msg) =
                    outcome(call(ch.clone(), m, with_tenant(&path, "auth-b"), Some(OPS_A)).await);
                check(
                    c == Code::PermissionDenied && msg.contains("auth-b"),
                    format!(
                        "{} for tenant auth-b by a tenant-bound admin: {c:?} {msg}",
                        m.path
                    ),
                );
                let (c, msg) =
                    outcome(call(ch, m, with_tenant(&path, "auth-a"), Some(OPS_A)).await);
                check(
                    !matches!(c, Code::PermissionDenied | Code::Unauthenticated),
                    format!("{} for its own tenant: {c:?} {msg}", m.path),
                );
            }
            None => {
                unscoped.push(m.path.clone());
                let (c, msg) = outcome(call(ch, m, Vec::new(), Some(OPS_A)).await);
                check(
                    c == Code::PermissionDenied && msg.contains("not scoped"),
                    format!("{} has no tenant and is refused: {c:?} {msg}", m.path),
                );
            }
        }
    }
    // Tenants named inside the request (a batch's users, a catalog's
    // products) are the request's tenant or refused by field.
    let (c, m) = code(
        ProfileServiceClient::new(ch(mesh.profile.grpc_addr, Some(OPS_A)))
            .batch_get_profiles(mesh_proto::profile::v1::BatchGetProfilesRequest {
                users: vec![get("auth-a"), get("auth-b")],
                tenant_id: String::new(),
            })
            .await,
    );
    check(
        c == Code::InvalidArgument && m.contains("users[1].tenant_id"),
        format!("tenant-bound BatchGetProfiles naming auth-b inside: {c:?} {m}"),
    );
    let product = |tenant: &str| mesh_proto::catalog::v1::Product {
        tenant_id: tenant.into(),
        sku: "sku-auth".into(),
        title: "a lamp".into(),
        category: "home".into(),
        price: 10.0,
        ..Default::default()
    };
    let mut catalog = mesh_proto::catalog::v1::catalog_service_client::CatalogServiceClient::new(
        ch(mesh.support.grpc_addr, Some(OPS_A)),
    );
    let (c, m) = code(
        catalog
            .upsert_products(mesh_proto::catalog::v1::UpsertProductsRequest {
                products: vec![product("auth-b")],
                tenant_id: String::new(),
            })
            .await,
    );
    check(
        c == Code::InvalidArgument && m.contains("products[0].tenant_id"),
        format!("tenant-bound UpsertProducts of auth-b: {c:?} {m}"),
    );
    let (c, m) = code(
        catalog
            .upsert_products(mesh_proto::catalog::v1::UpsertProductsRequest {
                products: vec![product("")],
                tenant_id: String::new(),
            })
            .await,
    );
    check(
        c == Code::Ok,
        format!("tenant-bound UpsertProducts of its own: {c:?} {m}"),
    );

    // Only what holds no tenant's state is unscoped.
    check(
        unscoped
            == [
                "/mesh.churn.v1.ChurnService/GetModelInfo",
                "/mesh.logistics.v1.LogisticsService/PlanRoutes",
            ],
        format!("unscoped methods: {unscoped:?} ({} scoped)", scoped.len()),
    );

    // --- Roles ---------------------------------------------------------------
    let (c, m) = code(
        ChurnServiceClient::new(ch(mesh.churn.grpc_addr, Some(SHOP_A)))
            .list_at_risk(ListAtRiskRequest::default())
            .await,
    );
    check(
        c == Code::PermissionDenied && m.contains("storefront") && m.contains("ListAtRisk"),
        format!("storefront ListAtRisk: {c:?} {m}"),
    );
    // Recommend asks profile over gRPC with the service token: a refused
    // peer call would show as a degraded answer.
    let rec = RecommendServiceClient::new(ch(mesh.recommend.grpc_addr, Some(SHOP_A)))
        .recommend(RecommendRequest {
            tenant_id: String::new(),
            user_id: "u-auth-1".into(),
            n: 5,
            ..Default::default()
        })
        .await;
    match rec {
        Ok(r) => {
            let r = r.into_inner();
            check(
                r.degraded.iter().all(|d| !d.contains("profile")),
                format!("recommend answered without profile: {:?}", r.degraded),
            );
        }
        Err(s) => check(false, format!("storefront Recommend: {s:?}")),
    }

    // --- Rate ----------------------------------------------------------------
    let mut limited = RecommendServiceClient::new(ch(mesh.recommend.grpc_addr, Some(LIMITED)));
    let (mut ok, mut exhausted) = (0, 0);
    for _ in 0..20 {
        let (c, m) = code(
            limited
                .recommend(RecommendRequest {
                    user_id: "u-auth-1".into(),
                    n: 1,
                    ..Default::default()
                })
                .await,
        );
        match c {
            Code::Ok => ok += 1,
            Code::ResourceExhausted if m.contains("rate limit") => exhausted += 1,
            _ => check(false, format!("limited token: {c:?} {m}")),
        }
    }
    check(
        (3..=6).contains(&ok) && exhausted == 20 - ok,
        format!("2/s burst 3: {ok} served, {exhausted} refused of 20 at once"),
    );

    // --- HTTP ----------------------------------------------------------------
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let events_url = format!("http://{}/v1/events", mesh.ingest.http_addr);
    let mut ev_b = mesh_e2e::events("authhttp", 1, 1).remove(0);
    ev_b.tenant_id = String::new();
    let body = serde_json::json!([mesh_ingest::json::to_json(&ev_b)]);
    let r = http.post(&events_url).json(&body).send().await.unwrap();
    check(
        r.status() == 401 && r.headers().get("www-authenticate").is_some(),
        format!("POST /v1/events without a token: {}", r.status()),
    );
    let r = http
        .post(&events_url)
        .bearer_auth(SHOP_B)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    check(
        status == 200 && v["accepted"] == 1,
        format!("POST /v1/events as shop-b: {status} {v}"),
    );
    let admin = format!("http://{}", mesh.admin_addr);
    let r = http.get(format!("{admin}/live")).send().await.unwrap();
    check(r.status() == 200, format!("/live is open: {}", r.status()));
    let r = http.get(format!("{admin}/metrics")).send().await.unwrap();
    check(
        r.status() == 401,
        format!("/metrics without a token: {}", r.status()),
    );
    let r = http
        .get(format!("{admin}/metrics"))
        .bearer_auth(SHOP_A)
        .send()
        .await
        .unwrap();
    check(
        r.status() == 403,
        format!("/metrics as storefront: {}", r.status()),
    );
    let r = http
        .get(format!("{admin}/metrics"))
        .bearer_auth(ANALYST_A)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap_or_default();
    for reason in [
        "unauthenticated",
        "permission_denied",
        "tenant",
        "rate_limited",
    ] {
        check(
            text.contains(&format!("mesh_auth_rejected_total{{reason=\"{reason}\"}}")),
            format!("/metrics counts {reason} refusals"),
        );
    }
    // Recommend's calls to profile carried the service token and were answered.
    let ok_calls =
        regex::Regex::new(r#"mesh_peer_calls_total\{[^}]*outcome="ok",peer="profile"\} [1-9]"#)
            .unwrap();
    check(
        ok_calls.is_match(&text),
        "/metrics shows answered peer calls to profile".into(),
    );
    let r = http.get(format!("{admin}/console")).send().await.unwrap();
    check(
        r.status() == 401,
        format!("/console without a token: {}", r.status()),
    );
    let r = http
        .get(format!("{admin}/console?token={ANALYST_A}"))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    check(
        r.status().is_redirection()
            && r.headers().get("location").and_then(|v| v.to_str().ok()) == Some("/console")
            && cookie.contains("HttpOnly"),
        format!("/console?token= sets the cookie: {} {cookie}", r.status()),
    );
    let pair = cookie.split(';').next().unwrap_or("").to_string();
    let r = http
        .get(format!("{admin}/api/console"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    check(
        r.status() == 200,
        format!("/api/console with the cookie: {}", r.status()),
    );
    let r = http
        .get(format!("{admin}/console?token=wrong"))
        .send()
        .await
        .unwrap();
    check(
        r.status() == 401,
        format!("/console?token=wrong: {}", r.status()),
    );

    shutdown.cancel();
    mesh.stopped(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Where a request keeps its tenant: `[field]` at the top level, or
/// `[field, inner]` inside its one singular message field that has one.
fn tenant_path(
    messages: &std::collections::HashMap<String, prost_types::DescriptorProto>,
    input: &str,
) -> Option<Vec<u32>> {
    use prost_types::field_descriptor_proto::{Label, Type};
    let tenant_of = |m: &prost_types::DescriptorProto| {
        m.field
            .iter()
            .find(|f| f.name() == "tenant_id" && f.r#type() == Type::String)
            .map(|f| f.number() as u32)
    };
    let msg = &messages[input];
    if let Some(n) = tenant_of(msg) {
        return Some(vec![n]);
    }
    let nested: Vec<Vec<u32>> = msg
        .field
        .iter()
        .filter(|f| f.r#type() == Type::Message && f.label() != Label::Repeated)
        .filter_map(|f| {
            messages
                .get(f.type_name())
                .and_then(tenant_of)
                .map(|n| vec![f.number() as u32, n])
        })
        .collect();
    (nested.len() == 1).then(|| nested.into_iter().next().unwrap())
}

/// A request holding only `tenant_id = tenant` at `path`.
fn with_tenant(path: &[u32], tenant: &str) -> Vec<u8> {
    fn field(n: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(n, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }
    path.iter()
        .rev()
        .fold(tenant.as_bytes().to_vec(), |inner, n| field(*n, &inner))
}
