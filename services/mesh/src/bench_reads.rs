//! The read half of `mesh bench all`: `GetProfile`, `Recommend` and
//! `ScoreOrder` on one in-process mesh, each offered at a fixed rate (open
//! loop: latency counts from each call's scheduled time, so a stall shows
//! in the percentiles), first on an idle mesh (the baseline), then while a
//! writer publishes through ingest at the load rate and every consumer
//! applies it.
//!
//! The clients and the writer run on a runtime of their own
//! ([`BENCH_THREADS`] threads), so the mesh's work does not delay the
//! clock that measures it. CPU per call is the served method's own
//! (`mesh_grpc_cpu_seconds_total`: thread CPU time of its polls), so the
//! consumers' and the writer's CPU do not count however busy they are.
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_proto::fraud::v1::ScoreOrderRequest;
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::RecommendRequest;
use tokio_util::sync::CancellationToken;

use crate::node::{self, MeshConfig};

/// One read RPC at one rate.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReadStats {
    pub calls: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU the served method's handler spent per call, µs
    /// (`mesh_grpc_cpu_seconds_total` of the method over the calls).
    pub cpu_us_per_call: f64,
}

/// Idle and under-load figures of the three reads.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReadsReport {
    pub rate_per_s: u32,
    pub seconds: f64,
    pub load_events_per_s: u32,
    /// Events ingest accepted per second while the reads ran.
    pub load_achieved_events_per_s: f64,
    /// CPU of this process with only the writer and consumers running, as
    /// a share of one core (for context; not subtracted from anything).
    pub background_cpu_cores: f64,
    /// Whether the mesh's CPU fell below [`QUIET_CORES`] before the idle
    /// reads (it keeps applying the seed events for a while).
    pub idle_settled: bool,
    /// Whether the mesh's consumers stopped within the shutdown grace. When
    /// false they still run (and write the mesh's keys) while the later
    /// stages measure, and `mesh bench all` leaves the stage's keys in Redis.
    pub consumers_stopped: bool,
    pub get_profile_idle: ReadStats,
    pub get_profile_load: ReadStats,
    pub recommend_idle: ReadStats,
    pub recommend_load: ReadStats,
    pub score_order_idle: ReadStats,
    pub score_order_load: ReadStats,
}

/// What to offer.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub rate: u32,
    pub seconds: f64,
    pub load_rate: u32,
    /// Events published (and applied) before the idle reads.
    pub seed_events: usize,
}

/// User + system CPU seconds of this process (Linux `/proc`; 0 elsewhere).
pub fn process_cpu_secs() -> f64 {
    mesh_runtime::procfs::cpu_secs(None).unwrap_or(0.0)
}

pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Threads of the runtime the bench's clients and writer run on.
pub const BENCH_THREADS: usize = 2;

/// Process CPU (cores) under which the mesh counts as idle.
pub const QUIET_CORES: f64 = 0.15;

/// CPU seconds the handlers of `method` (full path) spent so far.
fn method_cpu_secs(method: &str) -> f64 {
    mesh_runtime::metrics::GRPC_CPU_SECONDS
        .with_label_values(&[method])
        .get()
}

/// Offers `call(i)` at `rate` for `seconds`; `method` names the served
/// method whose CPU is counted per call.
async fn open_loop<F, Fut>(rate: u32, seconds: f64, method: &str, call: F) -> ReadStats
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let total = ((f64::from(rate) * seconds) as u64).max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let cpu = method_cpu_secs(method);
    let started = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let fut = call(i);
        tasks.push(tokio::spawn(async move {
            let ok = fut.await;
            (ok, due.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let (mut lat, mut errors) = (Vec::with_capacity(tasks.len()), 0);
    for t in tasks {
        match t.await {
            Ok((true, ms)) => lat.push(ms),
            _ => errors += 1,
        }
    }
    let cpu = method_cpu_secs(method) - cpu;
    ReadStats {
        calls: lat.len(),
        errors,
        p50_ms: pct(&mut lat, 0.5),
        p99_ms: pct(&mut lat, 0.99),
        cpu_us_per_call: cpu * 1e6 / total as f64,
    }
}

/// Full paths of the three measured methods.
const GET_PROFILE: &str = "/mesh.profile.v1.ProfileService/GetProfile";
const RECOMMEND: &str = "/mesh.recommend.v1.RecommendService/Recommend";
const SCORE_ORDER: &str = "/mesh.fraud.v1.FraudService/ScoreOrder";

/// The read clients, connected from the bench's own runtime (a channel's
/// connection task runs where it was created).
struct Clients {
    profile: ProfileServiceClient<tonic::transport::Channel>,
    recommend: RecommendServiceClient<tonic::transport::Channel>,
    fraud: FraudServiceClient<tonic::transport::Channel>,
    users: Arc<Vec<String>>,
}

/// Where the mesh serves.
#[derive(Clone, Copy)]
struct Addrs {
    ingest: std::net::SocketAddr,
    profile: std::net::SocketAddr,
    recommend: std::net::SocketAddr,
    fraud: std::net::SocketAddr,
}

fn http(a: std::net::SocketAddr) -> String {
    format!("http://{a}")
}

impl Clients {
    async fn connect(a: Addrs, users: Arc<Vec<String>>) -> anyhow::Result<Self> {
        Ok(Clients {
            profile: ProfileServiceClient::connect(http(a.profile)).await?,
            recommend: RecommendServiceClient::connect(http(a.recommend)).await?,
            fraud: FraudServiceClient::connect(http(a.fraud)).await?,
            users,
        })
    }

    async fn three(&self, o: &ReadOptions) -> [ReadStats; 3] {
        let now = chrono::Utc::now().timestamp_millis();
        let (c, u) = (self.profile.clone(), self.users.clone());
        let profile = open_loop(o.rate, o.seconds, GET_PROFILE, |i| {
            let (mut c, user) = (c.clone(), u[i as usize % u.len()].clone());
            async move {
                c.get_profile(GetProfileRequest {
                    tenant_id: "demo".into(),
                    user_id: user,
                })
                .await
                .is_ok()
            }
        })
        .await;
        let c = self.recommend.clone();
        let recommend = open_loop(o.rate, o.seconds, RECOMMEND, |i| {
            let (mut c, user) = (c.clone(), u[(i as usize * 7) % u.len()].clone());
            async move {
                c.recommend(RecommendRequest {
                    tenant_id: "demo".into(),
                    user_id: user,
                    n: 10,
                    ..Default::default()
                })
                .await
                .is_ok()
            }
        })
        .await;
        let c = self.fraud.clone();
        let score = open_loop(o.rate, o.seconds, SCORE_ORDER, |i| {
            let mut c = c.clone();
            let envelope = mesh_fraud_svc::bench::bench_order(100_000 + i, now - 1_000);
            async move {
                c.score_order(ScoreOrderRequest {
                    envelope: Some(envelope),
                })
                .await
                .is_ok()
            }
        })
        .await;
        [profile, recommend, score]
    }
}

/// Most publish calls the writer keeps in flight: enough that the offered
/// rate does not depend on one call's latency.
const WRITER_IN_FLIGHT: usize = 64;

/// Publishes generated events through ingest at `rate` until `stop`, each
/// call on its own task (at most [`WRITER_IN_FLIGHT`] at once; a tick that
/// finds them all busy is skipped, so the load never queues up); returns
/// the events ingest accepted and the seconds the writer ran.
pub(crate) async fn write_load(
    ingest: IngestServiceClient<tonic::transport::Channel>,
    run: String,
    rate: u32,
    stop: CancellationToken,
) -> (u64, f64) {
    let batch = (rate / 50).clamp(1, 500) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        batch as f64 / f64::from(rate.max(1)),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let accepted = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(WRITER_IN_FLIGHT));
    let mut calls = tokio::task::JoinSet::new();
    let started = Instant::now();
    for round in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let now = chrono::Utc::now().timestamp_millis();
        let events = mesh_proto::sim::events(
            round,
            &format!("{run}-w{round}"),
            2_000,
            batch,
            now - batch as i64 * 3_000,
        );
        let (mut ingest, accepted) = (ingest.clone(), accepted.clone());
        calls.spawn(async move {
            if let Ok(r) = ingest.publish(PublishRequest { events }).await {
                accepted.fetch_add(u64::from(r.into_inner().accepted), Ordering::Relaxed);
            }
            drop(slot);
        });
    }
    let secs = started.elapsed().as_secs_f64();
    calls.abort_all();
    (accepted.load(Ordering::Relaxed), secs)
}

/// CPU of this process over `window`, in cores.
async fn process_cores(window: Duration) -> f64 {
    let (c, t) = (process_cpu_secs(), Instant::now());
    tokio::time::sleep(window).await;
    (process_cpu_secs() - c) / t.elapsed().as_secs_f64()
}

/// Waits (up to `limit`) until the process's CPU stays under
/// [`QUIET_CORES`]: after the seed is visible in profile, the other
/// consumers are still applying it, and an idle baseline taken then is not
/// idle. Returns whether it got quiet.
async fn settle(limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if process_cores(Duration::from_millis(500)).await < QUIET_CORES {
            return true;
        }
    }
    false
}

/// The clients' half of the run, on the bench's runtime: the idle reads,
/// then the reads under the writer's load. Returns the idle and loaded
/// figures, the background CPU and the writer's (accepted, seconds).
async fn measure(
    addrs: Addrs,
    users: Arc<Vec<String>>,
    run: String,
    o: ReadOptions,
    step: impl Fn(&str),
) -> anyhow::Result<([ReadStats; 3], [ReadStats; 3], f64, (u64, f64))> {
    let clients = Clients::connect(addrs, users).await?;
    step("reads: idle");
    let idle = clients.three(&o).await;

    step("reads: under write load");
    let ingest = IngestServiceClient::connect(http(addrs.ingest)).await?;
    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_load(ingest, run, o.load_rate, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let background = process_cores(Duration::from_secs(1)).await;
    let load = clients.three(&o).await;
    stop.cancel();
    let written = writer.await.unwrap_or_default();
    Ok((idle, load, background, written))
}

/// Starts a mesh on `cfg`'s backends (own topics, keys and groups), seeds
/// it, measures the reads idle, then under the write load. `step` names
/// the stages for the progress bar.
pub async fn run(
    cfg: &MeshConfig,
    o: &ReadOptions,
    step: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<ReadsReport> {
    let run = format!("allr{}", std::process::id());
    let mut cfg = cfg.clone();
    cfg.topic_prefix = format!("{}.{run}", cfg.topic_prefix);
    cfg.key_prefix = format!("{}:{run}", cfg.key_prefix);
    let any: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    cfg.ingest.grpc_addr = any;
    cfg.ingest.http_addr = any;
    cfg.admin_addr = any;
    for role in crate::serve::Role::ALL {
        if let Some((group, addr)) = cfg.group_and_addr(role) {
            *group = format!("{run}-{}", role.name());
            *addr = any;
        }
    }
    step("reads: starting a mesh");
    let shutdown = CancellationToken::new();
    let mesh = node::start(&cfg, shutdown.clone()).await?;
    let joined = Instant::now();
    while (mesh.profile.assigned.partitions() == 0 || mesh.fraud.assigned.partitions() == 0)
        && joined.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addrs = Addrs {
        ingest: mesh.ingest.grpc_addr,
        profile: mesh.profile.grpc_addr,
        recommend: mesh.recommend.grpc_addr,
        fraud: mesh.fraud.grpc_addr,
    };
    let mut ingest = IngestServiceClient::connect(http(addrs.ingest)).await?;
    // Seed users so the reads find state (2,000 users).
    step("reads: seeding");
    let now = chrono::Utc::now().timestamp_millis();
    let seed = mesh_proto::sim::events(
        5,
        &format!("{run}-seed"),
        2_000,
        o.seed_events,
        now - 86_400_000,
    );
    let users: Vec<String> = {
        let mut u: Vec<String> = seed.iter().map(|e| e.user_id.clone()).collect();
        u.sort();
        u.dedup();
        u
    };
    for chunk in seed.chunks(500) {
        ingest
            .publish(PublishRequest {
                events: chunk.to_vec(),
            })
            .await?;
    }
    // Settle: wait until the last seeded user is visible (or 30 s), then
    // until every consumer is done with the seed, so the idle baseline is
    // idle.
    let mut profile = ProfileServiceClient::connect(http(addrs.profile)).await?;
    let last = seed.last().map(|e| e.user_id.clone()).unwrap_or_default();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let r = profile
            .get_profile(GetProfileRequest {
                tenant_id: "demo".into(),
                user_id: last.clone(),
            })
            .await;
        if r.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_settled = settle(Duration::from_secs(60)).await;

    // The clients and the writer on threads of their own.
    let bench_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BENCH_THREADS)
        .thread_name("mesh-bench-client")
        .enable_all()
        .build()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let measured = bench_rt.spawn(measure(
        addrs,
        Arc::new(users),
        run.clone(),
        o.clone(),
        move |s: &str| {
            let _ = tx.send(s.to_string());
        },
    ));
    // The progress bar is the caller's (not `Send`): relay its steps here.
    while let Some(s) = rx.recv().await {
        step(&s);
    }
    let measured = measured.await;
    bench_rt.shutdown_background();
    let (idle, load, background, (accepted, writer_secs)) = measured??;
    shutdown.cancel();
    // A consumer still running after the grace still applies records and
    // writes its keys: deleting them under it (bench all's cleanup) would
    // leave it with half its state (recommend logs that its other slots
    // lost their counts) and a fresh write behind the delete. Waiting
    // longer is no cure: a stop is bounded (the batches in the handler
    // and a 5 s final commit), so one past 10 s is stuck on something
    // (the store, the broker) a longer wait need not end. So the stage
    // says so, and bench all keeps the keys and warns that the later
    // stages share the machine with it.
    let consumers_stopped = mesh
        .stopped(Duration::from_secs(10))
        .await
        .consumers_stopped;
    if !consumers_stopped {
        tracing::warn!(
            "reads: the mesh's consumers did not stop within the 10 s grace; its keys are left in Redis and the figures of later stages may be disturbed"
        );
    }
    let [gi, ri, si] = idle;
    let [gl, rl, sl] = load;
    Ok(ReadsReport {
        rate_per_s: o.rate,
        seconds: o.seconds,
        load_events_per_s: o.load_rate,
        load_achieved_events_per_s: accepted as f64 / writer_secs.max(1e-9),
        background_cpu_cores: background,
        idle_settled,
        consumers_stopped,
        get_profile_idle: gi,
        get_profile_load: gl,
        recommend_idle: ri,
        recommend_load: rl,
        score_order_idle: si,
        score_order_load: sl,
    })
}
