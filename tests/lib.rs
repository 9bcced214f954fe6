//! Helpers for the whole-mesh tests: start a mesh on the test servers (or
//! the embedded default), publish over both front doors, fold offline,
//! wait for the store to agree.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mesh_cli::node::{self, Mesh, MeshConfig};
use mesh_profile::fold::Counters;
use mesh_proto::events::v1::Envelope;
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio_util::sync::CancellationToken;

/// Which servers a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Servers {
    /// The broker and Redis started by `scripts/test.sh`.
    Real,
    /// The embedded cluster and the in-memory store (`mesh up` default).
    Embedded,
}

pub fn config(servers: Servers, name: &str) -> MeshConfig {
    let name = mesh_testkit::unique(name);
    match servers {
        Servers::Real => MeshConfig::ephemeral(
            Some(mesh_testkit::kafka_brokers()),
            Some(mesh_testkit::redis_url()),
            &name,
        ),
        Servers::Embedded => MeshConfig::ephemeral(None, None, &name),
    }
}

/// Starts the mesh and waits until every consumer has partitions (what
/// `/ready` waits for), so a test's traffic never races the group joins.
pub async fn start(cfg: &MeshConfig) -> (Mesh, CancellationToken) {
    let shutdown = CancellationToken::new();
    let mesh = node::start(cfg, shutdown.clone())
        .await
        .expect("mesh starts");
    wait_assigned(&mesh).await;
    (mesh, shutdown)
}

/// Waits up to 90 s until every consumer of `mesh` has partitions assigned.
/// Until then a consumer has not joined its group: a test that publishes
/// and expects effects at once (a bandit learning from conversions as they
/// come) would see them late. The support service's start used to hide the
/// joins (it trained its models for ~20 s); it shares them now.
pub async fn wait_assigned(mesh: &Mesh) {
    let consumers = [
        ("profile", &mesh.profile.assigned),
        ("fraud", &mesh.fraud.assigned),
        ("churn", &mesh.churn.assigned),
        ("logistics", &mesh.logistics.assigned),
        ("recommend", &mesh.recommend.assigned),
        ("recommend flags", &mesh.recommend.flags_assigned),
        ("engage", &mesh.engage.assigned),
        ("support", &mesh.support.assigned),
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let waiting: Vec<&str> = consumers
            .iter()
            .filter(|(_, a)| a.partitions() == 0)
            .map(|(name, _)| *name)
            .collect();
        if waiting.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumers without partitions 90 s after the mesh started: {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events of `users` users over the last day.
pub fn events(prefix: &str, users: u32, n: usize) -> Vec<Envelope> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut ev = mesh_proto::sim::events(42, prefix, users, n, now - 86_400_000);
    // Keep every event in the past whatever the generator's spacing.
    let span = ev.last().map(|e| e.occurred_at_ms).unwrap_or(now) - (now - 86_400_000);
    if span > 86_000_000 {
        for (i, e) in ev.iter_mut().enumerate() {
            e.occurred_at_ms = now - 86_400_000 + i as i64;
        }
    }
    ev
}

/// The offline reference: every user's counters folded in memory.
pub fn fold(events: &[Envelope]) -> HashMap<(String, String), Counters> {
    let mut out: HashMap<(String, String), Counters> = HashMap::new();
    for e in events {
        out.entry((e.tenant_id.clone(), e.user_id.clone()))
            .or_default()
            .fold(e);
    }
    out
}

/// Attempts per batch: ingest answers UNAVAILABLE (HTTP 503) when the
/// broker did not acknowledge every event and asks the client to retry.
const ATTEMPTS: usize = 5;

/// Publishes `events` over gRPC in batches, retrying a batch the way the
/// ingest contract asks (on UNAVAILABLE). Returns (accepted, duplicates);
/// in a retried batch the events the failed attempt had already published
/// come back as duplicates and are counted as accepted — whether each
/// event was applied exactly once is checked against the profiles.
pub async fn publish_grpc(mesh: &Mesh, events: &[Envelope], batch: usize) -> (u32, u32) {
    let mut c = IngestServiceClient::connect(format!("http://{}", mesh.ingest.grpc_addr))
        .await
        .unwrap();
    let (mut accepted, mut dups) = (0, 0);
    for chunk in events.chunks(batch) {
        let mut attempt = 1;
        let r = loop {
            match c
                .publish(PublishRequest {
                    events: chunk.to_vec(),
                })
                .await
            {
                Ok(r) => break r.into_inner(),
                Err(s) if s.code() == tonic::Code::Unavailable && attempt < ATTEMPTS => {
                    eprintln!("publish attempt {attempt}: {}; retrying", s.message());
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
                Err(s) => panic!("publish: {s:?}"),
            }
        };
        assert!(
            r.rejected.is_empty(),
            "unexpected rejections: {:?}",
            r.rejected
        );
        if attempt > 1 {
            accepted += r.accepted + r.duplicates;
        } else {
            accepted += r.accepted;
            dups += r.duplicates;
        }
    }
    (accepted, dups)
}

/// [`publish_grpc`] over the HTTP front door (retrying on 503).
pub async fn publish_http(mesh: &Mesh, events: &[Envelope], batch: usize) -> (u64, u64) {
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/events", mesh.ingest.http_addr);
    let (mut accepted, mut dups) = (0, 0);
    for chunk in events.chunks(batch) {
        let body: Vec<serde_json::Value> = chunk.iter().map(mesh_ingest::json::to_json).collect();
        let mut attempt = 1;
        let r = loop {
            let r = client
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("http publish");
            if r.status() == 503 && attempt < ATTEMPTS {
                eprintln!("http publish attempt {attempt}: 503; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                continue;
            }
            break r;
        };
        assert_eq!(r.status(), 200, "http publish status");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["rejected"].as_array().map(Vec::len), Some(0), "{v}");
        let (a, d) = (
            v["accepted"].as_u64().unwrap(),
            v["duplicates"].as_u64().unwrap(),
        );
        if attempt > 1 {
            accepted += a + d;
        } else {
            accepted += a;
            dups += d;
        }
    }
    (accepted, dups)
}

/// Polls `GetProfile` for every user until all match `expected` or the
/// deadline passes; returns the users that still differ (empty = success).
pub async fn wait_for_profiles(
    profile_addr: std::net::SocketAddr,
    expected: &HashMap<(String, String), Counters>,
    deadline: Duration,
) -> Vec<String> {
    let mut c = ProfileServiceClient::connect(format!("http://{profile_addr}"))
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let mut bad = Vec::new();
        for ((t, u), want) in expected {
            let got = c
                .get_profile(GetProfileRequest {
                    tenant_id: t.clone(),
                    user_id: u.clone(),
                })
                .await;
            let ok = match got {
                Ok(p) => {
                    let p = p.into_inner();
                    p.events == want.events
                        && p.orders == want.orders
                        && (p.spend - want.spend).abs() < 1e-6 * want.spend.max(1.0)
                        && p.first_seen_ms == want.first_seen_ms
                        && p.last_seen_ms == want.last_seen_ms
                        && p.events_by_type == want.by_type
                }
                Err(_) => false,
            };
            if !ok {
                bad.push(format!("{t}/{u}"));
            }
        }
        if bad.is_empty() || start.elapsed() > deadline {
            return bad;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `mesh` binary of this build, built if missing or stale. It asks
/// for the binary the way `cargo test --workspace` builds it: the same
/// packages and a test target (mesh-cli's `bench_all`, whose build makes
/// cargo build and place the `mesh` binary), so features resolve as they
/// did for the test binaries and every artifact is reused (`cargo build
/// --bin mesh` resolves them without dev-dependencies and rebuilt ~60
/// crates, six minutes of a CI run).
pub fn mesh_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["test", "--workspace", "--no-run", "--test", "bench_all"])
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building the mesh binary failed");
    profile_dir.join("mesh")
}

/// The whole-mesh tests share one test binary (`tests/e2e.rs`: one link
/// of the mesh instead of one per file). The test harness runs two at a
/// time; the heaviest (every service as a process, a browser) hold this
/// lock exclusively, every other test holds it shared, so no two heavy
/// tests and no heavy and light test overlap.
static E2E: RwLock<()> = RwLock::const_new(());

/// Held by a test that may run beside another light one.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    E2E.read().await
}

/// [`shared`] for a test outside a runtime.
pub fn shared_blocking() -> RwLockReadGuard<'static, ()> {
    E2E.blocking_read()
}

/// Held by a test that must run alone.
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    E2E.write().await
}

/// [`exclusive`] for a test outside a runtime.
pub fn exclusive_blocking() -> RwLockWriteGuard<'static, ()> {
    E2E.blocking_write()
}

/// Waits until every consumer group of the mesh has committed the end of
/// its topics, twice in a row (some brokers report log ends late, so one
/// reading of "no lag" is not trusted); fails after 120 s.
pub async fn caught_up(mesh: &Mesh, cfg: &MeshConfig) {
    let groups = node::lag_groups(cfg);
    let topics = node::lag_topics(cfg);
    let started = Instant::now();
    let mut quiet = 0;
    while quiet < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "consumers never caught up"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (b, g, t, n) = (
            mesh.backends.brokers.clone(),
            groups.clone(),
            topics.clone(),
            cfg.partitions,
        );
        let snap = tokio::task::spawn_blocking(move || mesh_cli::lag::sample(&b, &g, &t, n))
            .await
            .unwrap();
        let done = snap.error.is_none()
            && snap.groups.len() == groups.len()
            && snap.groups.values().all(|l| *l == 0);
        quiet = if done { quiet + 1 } else { 0 };
    }
}

/// Calls to any method of the mesh with raw message bytes, found in the
/// mesh's own descriptor set: for tests that cover every RPC.
pub mod raw {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use bytes::{Buf, BufMut};
    use mesh_cli::node::Mesh;
    use prost::Message;
    use prost_types::{DescriptorProto, FileDescriptorSet};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::Status;

    /// Sends and receives raw message bytes.
    #[derive(Clone, Copy, Default)]
    pub struct RawCodec;

    impl Encoder for RawCodec {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawCodec {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            let mut out = vec![0; src.remaining()];
            src.copy_to_slice(&mut out);
            Ok(Some(out))
        }
    }

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawCodec;
        type Decoder = RawCodec;
        fn encoder(&mut self) -> RawCodec {
            RawCodec
        }
        fn decoder(&mut self) -> RawCodec {
            RawCodec
        }
    }

    /// One method of the mesh.
    pub struct Method {
        /// `/pkg.Service/Method`.
        pub path: String,
        /// Full name of the request message (`.pkg.Msg`).
        pub input: String,
        pub client_streaming: bool,
    }

    /// Every message of the descriptor set by full name (`.pkg.Msg`,
    /// `.pkg.Outer.Inner`), and every method with its package.
    pub fn schema() -> (HashMap<String, DescriptorProto>, Vec<(String, Method)>) {
        fn add(out: &mut HashMap<String, DescriptorProto>, prefix: &str, m: &DescriptorProto) {
            let name = format!("{prefix}.{}", m.name());
            for n in &m.nested_type {
                add(out, &name, n);
            }
            out.insert(name, m.clone());
        }
        let set = FileDescriptorSet::decode(mesh_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut messages = HashMap::new();
        let mut methods = Vec::new();
        for f in &set.file {
            let prefix = format!(".{}", f.package());
            for m in &f.message_type {
                add(&mut messages, &prefix, m);
            }
            for s in &f.service {
                for m in &s.method {
                    methods.push((
                        f.package().to_string(),
                        Method {
                            path: format!("/{}.{}/{}", f.package(), s.name(), m.name()),
                            input: m.input_type().to_string(),
                            client_streaming: m.client_streaming(),
                        },
                    ));
                }
            }
        }
        (messages, methods)
    }

    /// The gRPC address of the service that serves `package`.
    pub fn grpc_addr_of(mesh: &Mesh, package: &str) -> SocketAddr {
        match package {
            "mesh.ingest.v1" => mesh.ingest.grpc_addr,
            "mesh.profile.v1" => mesh.profile.grpc_addr,
            "mesh.churn.v1" => mesh.churn.grpc_addr,
            "mesh.recommend.v1" => mesh.recommend.grpc_addr,
            "mesh.fraud.v1" => mesh.fraud.grpc_addr,
            "mesh.logistics.v1" => mesh.logistics.grpc_addr,
            "mesh.engage.v1" => mesh.engage.grpc_addr,
            "mesh.support.v1" | "mesh.catalog.v1" => mesh.support.grpc_addr,
            other => panic!("no service serves {other}"),
        }
    }

    /// Calls `m` with `msg` (twice in one stream for a client-streaming
    /// method), with `authorization: Bearer <token>` when given.
    pub async fn call(
        ch: tonic::transport::Channel,
        m: &Method,
        msg: Vec<u8>,
        token: Option<&str>,
    ) -> Result<(), Status> {
        let mut grpc = tonic::client::Grpc::new(ch);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path: http::uri::PathAndQuery = m.path.parse().unwrap();
        let bearer = |r: &mut tonic::metadata::MetadataMap| {
            if let Some(t) = token {
                r.insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
        };
        if m.client_streaming {
            let mut req = tonic::Request::new(tokio_stream::iter(vec![msg.clone(), msg]));
            bearer(req.metadata_mut());
            grpc.client_streaming(req, path, RawCodec).await.map(|_| ())
        } else {
            let mut req = tonic::Request::new(msg);
            bearer(req.metadata_mut());
            grpc.unary(req, path, RawCodec).await.map(|_| ())
        }
    }
}
