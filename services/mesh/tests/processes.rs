//! The mesh as production runs it: every service its own OS process (the
//! real `mesh serve <role>` binary) against the test broker and Redis,
//! asking each other over gRPC.
//!
//! One test, in stages, because each stage builds on the processes the
//! previous one started (starting six processes and joining their groups
//! is the expensive part):
//! 1. a mixed stream through ingest: profile's fold equals the offline
//!    fold; churn, recommend, fraud and logistics answer; recommend ranked
//!    with profile's features and fraud decided with profile's answer;
//! 2. one trace, exported over OTLP by four processes to a receiver in this
//!    test, holds ingest → Kafka → fraud → gRPC → profile;
//! 3. kill -9 profile while traffic flows: recommend and fraud keep
//!    answering and say they are degraded, ingest keeps accepting; profile
//!    restarted catches up to the offline fold of everything (0 lost, 0
//!    applied twice);
//! 4. a second recommend replica shares the partitions and answers; the
//!    first stops and the second applies every later event.
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_profile::fold::Counters;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_proto::fraud::v1::ScoreOrderRequest;
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::{RecommendRequest, RecommendResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

const PARTITIONS: i32 = 4;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One exported span: the service that made it, its name and trace.
#[derive(Debug, Clone)]
struct SpanRec {
    service: String,
    name: String,
    trace: Vec<u8>,
}

/// An OTLP/gRPC trace receiver: the collector of this test.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<SpanRec>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(SpanRec {
                        service: service.clone(),
                        name: s.name,
                        trace: s.trace_id,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// One `mesh serve` process.
struct Proc {
    role: &'static str,
    grpc: SocketAddr,
    http: Option<SocketAddr>,
    admin: SocketAddr,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .args(["serve", self.role])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mesh serve starts");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for the graceful exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            c.kill().unwrap();
            c.wait().unwrap();
            panic!("{} did not stop within 30 s of SIGTERM", self.role);
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `GET path` on an admin port: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

async fn wait_ready(p: &Proc, within: Duration) {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < within {
        match http_get(p.admin, "/ready") {
            Some((200, _)) => return,
            other => last = other,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{} not ready within {within:?} (last /ready: {last:?}); log:\n{}",
        p.role,
        p.log_tail()
    );
}

/// A counter's value summed over the series whose labels contain `filter`.
fn metric(admin: SocketAddr, name: &str, filter: &str) -> f64 {
    let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn publish(ingest: &str, events: &[Envelope]) -> u32 {
    let mut c = IngestServiceClient::connect(ingest.to_string())
        .await
        .unwrap();
    let mut accepted = 0;
    for chunk in events.chunks(100) {
        let mut attempt = 0;
        let r = loop {
            attempt += 1;
            match c
                .publish(PublishRequest {
                    events: chunk.to_vec(),
                })
                .await
            {
                Ok(r) => break r.into_inner(),
                Err(s) if s.code() == tonic::Code::Unavailable && attempt < 6 => {
                    tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
                }
                Err(s) => panic!("publish: {s:?}"),
            }
        };
        assert!(r.rejected.is_empty(), "rejected: {:?}", r.rejected);
        accepted += r.accepted + r.duplicates;
    }
    accepted
}

fn fold(events: &[Envelope]) -> HashMap<(String, String), Counters> {
    let mut out: HashMap<(String, String), Counters> = HashMap::new();
    for e in events {
        out.entry((e.tenant_id.clone(), e.user_id.clone()))
            .or_default()
            .fold(e);
    }
    out
}

/// Users whose profile differs from `expected` after `within`.
async fn profiles_differ(
    profile: &str,
    expected: &HashMap<(String, String), Counters>,
    within: Duration,
) -> Vec<String> {
    let started = Instant::now();
    loop {
        let mut bad = Vec::new();
        if let Ok(mut c) = ProfileServiceClient::connect(profile.to_string()).await {
            for ((t, u), want) in expected {
                let ok = match c
                    .get_profile(GetProfileRequest {
                        tenant_id: t.clone(),
                        user_id: u.clone(),
                    })
                    .await
                {
                    Ok(p) => {
                        let p = p.into_inner();
                        p.events == want.events
                            && p.orders == want.orders
                            && p.events_by_type == want.by_type
                            && (p.spend - want.spend).abs() < 1e-6 * want.spend.max(1.0)
                    }
                    Err(_) => false,
                };
                if !ok {
                    bad.push(format!("{t}/{u}"));
                }
            }
        } else {
            bad.push("profile unreachable".into());
        }
        if bad.is_empty() || started.elapsed() > within {
            return bad;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn recommend(url: &str, tenant: &str, user: &str) -> RecommendResponse {
    RecommendServiceClient::connect(url.to_string())
        .await
        .unwrap()
        .recommend(RecommendRequest {
            tenant_id: tenant.into(),
            user_id: user.into(),
            n: 5,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("recommend at {url}: {s:?}"))
        .into_inner()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Seeded events of `users` users over the last hours, ids prefixed.
fn events(seed: u64, prefix: &str, users: u32, n: usize) -> Vec<Envelope> {
    let start = now_ms() - 6 * 3_600_000;
    let mut ev = mesh_proto::sim::events(seed, prefix, users, n, start);
    for (i, e) in ev.iter_mut().enumerate() {
        e.occurred_at_ms = start + i as i64 * 1000;
    }
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_as_its_own_process() {
    let brokers = mesh_testkit::kafka_brokers();
    let redis = mesh_testkit::redis_url();
    let name = mesh_testkit::unique("procs");
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();

    // The test's OTLP collector.
    let spans = Receiver::default();
    let otlp = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = TraceServiceServer::new(spans.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        addr
    };

    let roles: [&'static str; 6] = [
        "ingest",
        "profile",
        "fraud",
        "recommend",
        "churn",
        "logistics",
    ];
    let grpc: HashMap<&str, SocketAddr> = roles.iter().map(|r| (*r, free_addr())).collect();
    let common: Vec<(String, String)> = vec![
        ("MESH_KAFKA_BROKERS".into(), brokers.clone()),
        ("MESH_REDIS_URL".into(), redis.clone()),
        ("MESH_TOPIC_PREFIX".into(), name.clone()),
        ("MESH_REDIS_PREFIX".into(), name.clone()),
        ("MESH_PARTITIONS".into(), PARTITIONS.to_string()),
        ("MESH_CONSUMER_SESSION_TIMEOUT_MS".into(), "6000".into()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://{otlp}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
        ("MESH_LOG".into(), "warn,mesh=info".into()),
        ("MESH_INGEST_HTTP_ADDR".into(), free_addr().to_string()),
        (
            "MESH_PROFILE_ADDR".into(),
            format!("http://{}", grpc["profile"]),
        ),
        (
            "MESH_RECOMMEND_ADDR".into(),
            format!("http://{}", grpc["recommend"]),
        ),
        (
            "MESH_FRAUD_ADDR".into(),
            format!("http://{}", grpc["fraud"]),
        ),
    ]
    .into_iter()
    .chain(roles.iter().flat_map(|r| {
        let up = r.to_uppercase();
        [
            (format!("MESH_{up}_GRPC_ADDR"), grpc[r].to_string()),
            (format!("MESH_{up}_GROUP"), format!("{name}-{r}")),
        ]
    }))
    .collect();
    let make = |role: &'static str, grpc_addr: SocketAddr| {
        let admin = free_addr();
        let mut env = common.clone();
        env.retain(|(k, _)| *k != format!("MESH_{}_GRPC_ADDR", role.to_uppercase()));
        env.push((
            format!("MESH_{}_GRPC_ADDR", role.to_uppercase()),
            grpc_addr.to_string(),
        ));
        env.push(("MESH_ADMIN_ADDR".into(), admin.to_string()));
        let http = (role == "ingest").then(|| {
            common
                .iter()
                .find(|(k, _)| k == "MESH_INGEST_HTTP_ADDR")
                .unwrap()
                .1
                .parse()
                .unwrap()
        });
        Proc {
            role,
            grpc: grpc_addr,
            http,
            admin,
            env,
            log: dir.join(format!("{role}-{}.log", grpc_addr.port())),
            child: None,
        }
    };
    let mut procs: HashMap<&str, Proc> = roles.iter().map(|r| (*r, make(r, grpc[r]))).collect();
    for r in roles {
        procs.get_mut(r).unwrap().start();
    }
    for r in roles {
        wait_ready(&procs[r], Duration::from_secs(120)).await;
    }
    assert!(procs["ingest"].http.is_some());

    // 1. A mixed stream through ingest.
    let first = events(7, &format!("{name}-a"), 12, 600);
    assert_eq!(
        publish(&procs["ingest"].url(), &first).await as usize,
        first.len()
    );
    let bad = profiles_differ(
        &procs["profile"].url(),
        &fold(&first),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        bad.is_empty(),
        "profiles differ from the offline fold: {bad:?}"
    );
    let (tenant, user) = fold(&first)
        .into_iter()
        .max_by_key(|(_, c)| c.orders)
        .map(|(k, _)| k)
        .unwrap();
    let rec = recommend(&procs["recommend"].url(), &tenant, &user).await;
    assert_eq!(rec.user_features, "profile", "{rec:?}");
    assert!(rec.degraded.is_empty(), "{rec:?}");
    assert!(!rec.items.is_empty(), "{rec:?}");
    let order = first
        .iter()
        .rev()
        .find(|e| e.user_id == user && matches!(e.body, Some(Body::OrderPlaced(_))))
        .cloned()
        .unwrap();
    let mut fraud = FraudServiceClient::connect(procs["fraud"].url())
        .await
        .unwrap();
    let d = fraud
        .score_order(ScoreOrderRequest {
            envelope: Some(order.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let buyer = d.buyer.clone().expect("fraud asked profile");
    assert!(buyer.known && buyer.orders >= 1, "{d:?}");
    assert!(d.degraded.is_empty(), "{d:?}");
    {
        use mesh_proto::churn::v1::churn_service_client::ChurnServiceClient;
        use mesh_proto::churn::v1::GetChurnRiskRequest;
        let mut c = ChurnServiceClient::connect(procs["churn"].url())
            .await
            .unwrap();
        let started = Instant::now();
        let risk = loop {
            match c
                .get_churn_risk(GetChurnRiskRequest {
                    tenant_id: tenant.clone(),
                    user_id: user.clone(),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => break r.into_inner(),
                Err(s) if started.elapsed() < Duration::from_secs(30) => {
                    eprintln!("churn: {s:?}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(s) => panic!("churn never answered: {s:?}"),
            }
        };
        assert!((0.0..=1.0).contains(&risk.p_alive), "{risk:?}");
    }
    {
        use mesh_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
        use mesh_proto::logistics::v1::{GetPlanRequest, ListWavesRequest};
        let mut c = LogisticsServiceClient::connect(procs["logistics"].url())
            .await
            .unwrap();
        let started = Instant::now();
        let plan = loop {
            let waves = c
                .list_waves(ListWavesRequest::default())
                .await
                .unwrap()
                .into_inner();
            let planned = waves.waves.iter().find(|w| w.plan_version > 0).cloned();
            if let Some(w) = planned {
                break c
                    .get_plan(GetPlanRequest {
                        tenant_id: String::new(),
                        wave_id: w.wave_id.clone(),
                        compare_fresh: false,
                    })
                    .await
                    .unwrap()
                    .into_inner();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no wave planned: {waves:?}\n{}",
                procs["logistics"].log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(!plan.routes.is_empty(), "{plan:?}");
    }

    // 2. One trace: ingest → Kafka → fraud → gRPC → profile.
    let mut traced = events(11, &format!("{name}-t"), 1, 40);
    traced.retain(|e| matches!(e.body, Some(Body::OrderPlaced(_))));
    traced.truncate(1);
    assert_eq!(traced.len(), 1, "the generator makes orders");
    publish(&procs["ingest"].url(), &traced).await;
    let started = Instant::now();
    let whole = loop {
        let all = spans.0.lock().unwrap().clone();
        let mut by_trace: HashMap<Vec<u8>, BTreeSet<(String, String)>> = HashMap::new();
        for s in &all {
            by_trace
                .entry(s.trace.clone())
                .or_default()
                .insert((s.service.clone(), s.name.clone()));
        }
        let found = by_trace.into_values().find(|set| {
            set.iter().any(|(svc, _)| svc == "ingest")
                && set.contains(&("fraud".into(), "fraud.apply".into()))
                && set.contains(&("fraud".into(), "fraud.buyer_context".into()))
                && set
                    .iter()
                    .any(|(svc, n)| svc == "profile" && n.contains("BatchGetProfiles"))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no trace crossing ingest, Kafka, fraud and profile among {} spans: {:?}",
            all.len(),
            all.iter()
                .map(|s| format!("{}:{}", s.service, s.name))
                .collect::<BTreeSet<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("one trace: {whole:?}");

    // 3. kill -9 profile while traffic flows.
    procs.get_mut("profile").unwrap().kill9();
    let second = events(8, &format!("{name}-b"), 12, 300);
    assert_eq!(
        publish(&procs["ingest"].url(), &second).await as usize,
        second.len(),
        "ingest keeps accepting without profile"
    );
    let rec = recommend(&procs["recommend"].url(), &tenant, &user).await;
    assert_eq!(rec.user_features, "history", "{rec:?}");
    assert!(
        rec.degraded.iter().any(|d| d.starts_with("profile")),
        "{rec:?}"
    );
    let d = fraud
        .score_order(ScoreOrderRequest {
            envelope: Some(order.clone()),
        })
        .await
        .expect("fraud answers without profile")
        .into_inner();
    assert!(d.buyer.is_none(), "{d:?}");
    assert!(d.degraded.iter().any(|r| r.starts_with("profile")), "{d:?}");
    assert!(
        metric(
            procs["recommend"].admin,
            "mesh_degraded_answers_total",
            "peer=\"profile\""
        ) >= 1.0
    );
    procs.get_mut("profile").unwrap().start();
    wait_ready(&procs["profile"], Duration::from_secs(120)).await;
    let everything: Vec<Envelope> = first
        .iter()
        .chain(&traced)
        .chain(&second)
        .cloned()
        .collect();
    let bad = profiles_differ(
        &procs["profile"].url(),
        &fold(&everything),
        Duration::from_secs(90),
    )
    .await;
    assert!(
        bad.is_empty(),
        "after the restart profiles differ from the offline fold (lost or applied twice): {bad:?}\n{}",
        procs["profile"].log_tail()
    );
    let started = Instant::now();
    loop {
        let rec = recommend(&procs["recommend"].url(), &tenant, &user).await;
        if rec.user_features == "profile" && rec.degraded.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "recommend did not go back to profile's features: {rec:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 4. A second recommend replica in the same group.
    let mut replica = make("recommend", free_addr());
    replica.start();
    wait_ready(&replica, Duration::from_secs(120)).await;
    let group = format!("group=\"{name}-recommend\"");
    let before = (
        metric(procs["recommend"].admin, "mesh_bus_consumed_total", &group),
        metric(replica.admin, "mesh_bus_consumed_total", &group),
    );
    let third = events(9, &format!("{name}-c"), 24, 400);
    publish(&procs["ingest"].url(), &third).await;
    let third_users: BTreeSet<(String, String)> = fold(&third).into_keys().collect();
    let started = Instant::now();
    loop {
        let now = (
            metric(procs["recommend"].admin, "mesh_bus_consumed_total", &group),
            metric(replica.admin, "mesh_bus_consumed_total", &group),
        );
        if now.0 > before.0 && now.1 > before.1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "both replicas should consume a share of the partitions: before {before:?}, now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (t, u) in third_users.iter().take(3) {
        recommend(&procs["recommend"].url(), t, u).await;
        recommend(&replica.url(), t, u).await;
    }
    // The first replica leaves; the second takes its partitions and applies
    // every later event.
    procs.get_mut("recommend").unwrap().stop();
    let fourth = events(10, &format!("{name}-d"), 24, 400);
    publish(&procs["ingest"].url(), &fourth).await;
    let fourth_users: BTreeSet<(String, String)> = fold(&fourth)
        .into_iter()
        .filter(|(_, c)| {
            c.by_type
                .keys()
                .any(|k| k == "product_view" || k == "add_to_cart" || k == "order_placed")
        })
        .map(|(k, _)| k)
        .collect();
    assert!(fourth_users.len() >= 10);
    let started = Instant::now();
    loop {
        let mut cold = Vec::new();
        for (t, u) in &fourth_users {
            let r = recommend(&replica.url(), t, u).await;
            if r.cold_start {
                cold.push(format!("{t}/{u}"));
            }
        }
        if cold.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the remaining replica has no history for {cold:?}\n{}",
            replica.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for p in procs.values_mut() {
        p.stop();
    }
    replica.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
