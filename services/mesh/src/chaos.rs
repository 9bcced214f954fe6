//! `mesh chaos`: simulator traffic at a fixed rate against ingest and
//! profile, each its own process, on a real broker and a Redis with AOF,
//! while processes are killed and the store is made to lose writes; then
//! every user's profile is compared with an offline fold of the accepted
//! events.
//!
//! Faults, spread evenly over the run in a seeded order:
//! - `kill -9` of profile and of ingest, `--kills` times each, restarted
//!   after a seeded pause;
//! - `kill -9` of Redis, restarted from its append-only file;
//! - a restore of Redis from a snapshot taken `--snapshot-age` seconds
//!   before (the store loses acknowledged writes, as after a failover to a
//!   replica that missed them);
//! - `FLUSHALL` (services rebuild by replay).
//!
//! After each fault a probe event is published for a user of its own; the
//! fault's recovery is the time until that event is visible in
//! `GetProfile`. The broker is the configured one (`MESH_KAFKA_BROKERS`)
//! or the embedded cluster; it is not restarted (tansu's memory storage
//! and the embedded cluster lose their topics on a restart).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use mesh_profile::fold::Counters;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{self as ev, Envelope};
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::node::MeshConfig;

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// How long traffic runs.
    #[arg(long, default_value_t = 120)]
    pub seconds: u64,
    /// Events per second sent to ingest.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Distinct users the events spread over.
    #[arg(long, default_value_t = 2000)]
    pub users: u32,
    /// `kill -9` of each service (profile, ingest) this many times.
    #[arg(long, default_value_t = 3)]
    pub kills: u32,
    /// Age of the snapshot Redis is restored from, seconds.
    #[arg(long, default_value_t = 5)]
    pub snapshot_age: u64,
    /// Seed of the events and of the fault order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How long to wait, after traffic stops, for profiles to match.
    #[arg(long, default_value_t = 180)]
    pub settle_seconds: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One fault and how long the mesh took to show an event sent after it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub what: String,
    pub at_s: f64,
    /// `None`: the probe was not visible before the run ended.
    pub recovery_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub seconds: u64,
    pub rate: u32,
    /// Events sent, valid and invalid.
    pub sent: u64,
    /// Events ingest accepted (the offline fold's input).
    pub accepted: u64,
    /// Events ingest refused and dead-lettered with the reason.
    pub dead_lettered: u64,
    /// Accepted events missing from the profiles at the end.
    pub lost: u64,
    /// Events counted more than once in the profiles.
    pub double_applied: u64,
    pub users: usize,
    /// Users whose orders, spend or first/last seen differ from the fold.
    pub users_mismatched: usize,
    /// Seconds from the end of traffic until every profile matched.
    pub settled_s: Option<f64>,
    /// Up to five users that differ: expected against found.
    pub mismatch_examples: Vec<String>,
    /// Partitions profile re-read from its store's watermark because the
    /// store was behind (warnings in its log).
    pub store_resumes: usize,
    pub faults: Vec<Fault>,
    /// Where the servers' and services' logs are.
    pub logs: String,
}

/// A service process that can be killed and started again.
struct Proc {
    name: &'static str,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut c = Command::new(&self.cmd[0]);
        c.args(&self.cmd[1..])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            c.process_group(0);
        }
        self.child = Some(
            c.spawn()
                .with_context(|| format!("starting {} ({})", self.name, self.cmd[0]))?,
        );
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_port(port: u16, what: &str, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > within {
            anyhow::bail!("{what} does not listen on 127.0.0.1:{port} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A `redis-server` with AOF on, in a directory of its own.
struct Redis {
    port: u16,
    dir: PathBuf,
    proc: Proc,
}

impl Redis {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let proc = Proc {
            name: "redis-server",
            cmd: Vec::new(),
            env: Vec::new(),
            log: dir.join("redis.log"),
            child: None,
        };
        let mut r = Redis { port, dir, proc };
        r.proc.cmd = r.command(true);
        Ok(r)
    }

    fn command(&self, aof: bool) -> Vec<String> {
        [
            "redis-server",
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &self.dir.display().to_string(),
            "--save",
            "",
            "--appendonly",
            if aof { "yes" } else { "no" },
            "--appendfsync",
            "always",
        ]
        .map(String::from)
        .to_vec()
    }

    async fn start(&mut self, aof: bool) -> anyhow::Result<()> {
        self.proc.cmd = self.command(aof);
        self.proc
            .start()
            .context("mesh chaos needs redis-server on PATH")?;
        wait_port(self.port, "redis-server", Duration::from_secs(20)).await?;
        // Listening is not loaded: wait until commands are served.
        let started = Instant::now();
        while self
            .cli(&["PING"])
            .map(|o| o.trim() != "PONG")
            .unwrap_or(true)
        {
            if started.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("redis-server did not answer PING after loading");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .context("mesh chaos needs redis-cli on PATH")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes the dataset now to `snapshot.rdb`.
    fn snapshot(&self) -> anyhow::Result<PathBuf> {
        let reply = self.cli(&["SAVE"])?;
        anyhow::ensure!(reply.trim() == "OK", "SAVE answered {reply:?}");
        let snap = self.dir.join("snapshot.rdb");
        std::fs::rename(self.dir.join("dump.rdb"), &snap)?;
        Ok(snap)
    }

    /// Kills the server and starts it from `snapshot` alone (its AOF
    /// discarded), then turns AOF on again.
    async fn restore(&mut self, snapshot: &Path) -> anyhow::Result<()> {
        self.proc.kill9();
        let aof = self.dir.join("appendonlydir");
        if aof.exists() {
            std::fs::remove_dir_all(&aof)?;
        }
        std::fs::copy(snapshot, self.dir.join("dump.rdb"))?;
        self.start(false).await?;
        let reply = self.cli(&["CONFIG", "SET", "appendonly", "yes"])?;
        anyhow::ensure!(
            reply.trim() == "OK",
            "CONFIG SET appendonly answered {reply:?}"
        );
        Ok(())
    }
}

/// The events of the run: simulator traffic over the last day, every
/// 100th made invalid (an `occurred_at_ms` before 2000) so the dead-letter
/// path is exercised.
fn traffic(args: &ChaosArgs, tenant: &str) -> Vec<Envelope> {
    let n = (args.rate as u64 * args.seconds) as usize;
    let now = now_ms();
    let day = 86_400_000;
    let mut ev = mesh_proto::sim::events(args.seed, tenant, args.users, n, now - day);
    let step = (day / n.max(1) as i64).max(1);
    for (i, e) in ev.iter_mut().enumerate() {
        e.tenant_id = tenant.to_string();
        e.occurred_at_ms = now - day + i as i64 * step;
        if i % 100 == 99 {
            e.occurred_at_ms = 1_000;
        }
    }
    ev
}

/// A page view of a user of its own, to time a recovery.
fn probe(tenant: &str, k: usize) -> Envelope {
    Envelope {
        event_id: format!("chaos-probe-{k}"),
        tenant_id: tenant.to_string(),
        user_id: format!("chaos-probe-{k}"),
        occurred_at_ms: now_ms(),
        source: "chaos".into(),
        body: Some(Body::PageView(ev::PageView {
            path: "/".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Sends `events` until ingest answers for each one (the same ids on every
/// retry), returning the accepted events and the number rejected.
async fn publish_until_answered(ingest: &str, events: &[Envelope]) -> (Vec<Envelope>, u64) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let client = async {
            let ch = mesh_runtime::tls::endpoint(ingest)?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(10))
                .connect()
                .await?;
            anyhow::Ok(IngestServiceClient::new(mesh_runtime::auth::client(ch)))
        };
        let reply = match client.await {
            Ok(mut c) => c
                .publish(PublishRequest {
                    events: events.to_vec(),
                })
                .await
                .map(|r| r.into_inner())
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match reply {
            Ok(r) => {
                let rejected: std::collections::HashSet<u32> =
                    r.rejected.iter().map(|x| x.index).collect();
                let accepted = events
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !rejected.contains(&(*i as u32)))
                    .map(|(_, e)| e.clone())
                    .collect();
                return (accepted, rejected.len() as u64);
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn profile_client(
    addr: &str,
) -> anyhow::Result<ProfileServiceClient<mesh_runtime::auth::AuthChannel>> {
    let ch = mesh_runtime::tls::endpoint(addr)?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(ProfileServiceClient::new(mesh_runtime::auth::client(ch)))
}

/// Events and orders of one profile, or `None` when not reachable.
async fn counters_of(
    c: &mut ProfileServiceClient<mesh_runtime::auth::AuthChannel>,
    tenant: &str,
    user: &str,
) -> Option<mesh_proto::profile::v1::Profile> {
    c.get_profile(GetProfileRequest {
        tenant_id: tenant.to_string(),
        user_id: user.to_string(),
    })
    .await
    .ok()
    .map(|r| r.into_inner())
}

/// Publishes a probe and waits until profile shows it.
async fn recovery(
    ingest: String,
    profile: String,
    tenant: String,
    p: Envelope,
    at: Instant,
    limit: Duration,
) -> Option<f64> {
    publish_until_answered(&ingest, std::slice::from_ref(&p)).await;
    while at.elapsed() < limit {
        if let Ok(mut c) = profile_client(&profile).await {
            if let Some(got) = counters_of(&mut c, &tenant, &p.user_id).await {
                if got.events >= 1 {
                    return Some(at.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    KillProfile,
    KillIngest,
    KillRedis,
    RestoreSnapshot,
    FlushAll,
}

impl FaultKind {
    fn describe(self, snapshot_age: u64) -> String {
        match self {
            FaultKind::KillProfile => "kill -9 profile".into(),
            FaultKind::KillIngest => "kill -9 ingest".into(),
            FaultKind::KillRedis => "kill -9 redis-server, restart from AOF".into(),
            FaultKind::RestoreSnapshot => {
                format!("restore redis from a snapshot {snapshot_age} s old")
            }
            FaultKind::FlushAll => "FLUSHALL".into(),
        }
    }
}

/// Runs the whole experiment.
pub async fn run(cfg: &MeshConfig, args: &ChaosArgs) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(args.seconds >= 10, "--seconds must be at least 10");
    anyhow::ensure!(args.rate > 0, "--rate must be positive");
    let work = std::env::temp_dir().join(format!("mesh-chaos-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&work)?;
    let run_id = format!("chaos{}", now_ms() % 1_000_000_000);
    let tenant = format!("{run_id}-shop");

    // Broker: the configured one or the embedded cluster.
    let mut run_cfg = cfg.clone();
    run_cfg.topic_prefix = run_id.clone();
    let (_embedded, brokers) = match &cfg.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let e = mesh_bus::EmbeddedKafka::start(1)?;
            let b = e.bootstrap_servers();
            (Some(e), b)
        }
    };
    crate::node::create_topics(
        _embedded.as_ref(),
        &brokers,
        &run_cfg.topics(),
        mesh_bus::TopicSpec {
            partitions: cfg.partitions,
            replication: cfg.replication,
        },
    )
    .await?;

    let mut redis = Redis::new(&work)?;
    redis.start(true).await?;
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);

    let exe = std::env::current_exe()?.display().to_string();
    let ingest_port = free_port()?;
    let profile_port = free_port()?;
    let common = |admin: u16| -> Vec<(String, String)> {
        [
            ("MESH_KAFKA_BROKERS", brokers.clone()),
            ("MESH_REDIS_URL", redis_url.clone()),
            ("MESH_TOPIC_PREFIX", run_id.clone()),
            ("MESH_REDIS_PREFIX", run_id.clone()),
            ("MESH_PARTITIONS", cfg.partitions.to_string()),
            ("MESH_CONSUMER_SESSION_TIMEOUT_MS", "6000".into()),
            ("MESH_ADMIN_ADDR", format!("127.0.0.1:{admin}")),
            ("MESH_INGEST_GRPC_ADDR", format!("127.0.0.1:{ingest_port}")),
            (
                "MESH_INGEST_HTTP_ADDR",
                format!("127.0.0.1:{}", free_port().unwrap_or(0)),
            ),
            (
                "MESH_PROFILE_GRPC_ADDR",
                format!("127.0.0.1:{profile_port}"),
            ),
            ("NO_COLOR", "1".into()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    };
    let mut ingest = Proc {
        name: "ingest",
        cmd: vec![exe.clone(), "serve".into(), "ingest".into()],
        env: common(free_port()?),
        log: work.join("ingest.log"),
        child: None,
    };
    let mut profile = Proc {
        name: "profile",
        cmd: vec![exe.clone(), "serve".into(), "profile".into()],
        env: common(free_port()?),
        log: work.join("profile.log"),
        child: None,
    };
    ingest.start()?;
    profile.start()?;
    wait_port(ingest_port, "ingest", Duration::from_secs(60)).await?;
    wait_port(profile_port, "profile", Duration::from_secs(60)).await?;
    let ingest_url = format!("http://127.0.0.1:{ingest_port}");
    let profile_url = format!("http://127.0.0.1:{profile_port}");

    // The schedule: every fault at an even spacing, in a seeded order; the
    // snapshot for the restore is taken `snapshot_age` seconds before it.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut kinds = Vec::new();
    for _ in 0..args.kills {
        kinds.push(FaultKind::KillProfile);
        kinds.push(FaultKind::KillIngest);
    }
    kinds.extend([
        FaultKind::KillRedis,
        FaultKind::RestoreSnapshot,
        FaultKind::FlushAll,
    ]);
    kinds.shuffle(&mut rng);
    let spacing = args.seconds as f64 / (kinds.len() + 1) as f64;
    let schedule: Vec<(f64, FaultKind)> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| (spacing * (i + 1) as f64, *k))
        .collect();

    // Traffic: batches every 100 ms, each sent until answered.
    let events = traffic(args, &tenant);
    let sent = events.len() as u64;
    let accepted: Arc<Mutex<Vec<Envelope>>> = Arc::default();
    let rejected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let sender = {
        let accepted = accepted.clone();
        let rejected = rejected.clone();
        let ingest_url = ingest_url.clone();
        let per_tick = (args.rate as usize / 10).max(1);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut inflight = tokio::task::JoinSet::new();
            for chunk in events.chunks(per_tick) {
                tick.tick().await;
                let chunk = chunk.to_vec();
                let (accepted, rejected, url) =
                    (accepted.clone(), rejected.clone(), ingest_url.clone());
                inflight.spawn(async move {
                    let (ok, bad) = publish_until_answered(&url, &chunk).await;
                    accepted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(ok);
                    rejected.fetch_add(bad, std::sync::atomic::Ordering::Relaxed);
                });
            }
            while inflight.join_next().await.is_some() {}
        })
    };

    let mut faults = Vec::new();
    let mut snapshot = None;
    let mut probe_events = Vec::new();
    for (k, (at_s, kind)) in schedule.iter().enumerate() {
        if matches!(kind, FaultKind::RestoreSnapshot) {
            let snap_at = (at_s - args.snapshot_age as f64).max(0.0);
            sleep_until(started, snap_at).await;
            snapshot = Some(redis.snapshot()?);
            // At least that old, however late the previous recovery ended.
            tokio::time::sleep(Duration::from_secs(args.snapshot_age)).await;
        }
        sleep_until(started, *at_s).await;
        let at = Instant::now();
        if !args.json {
            eprintln!(
                "{:7.1} s  {}",
                started.elapsed().as_secs_f64(),
                kind.describe(args.snapshot_age)
            );
        }
        match kind {
            FaultKind::KillProfile | FaultKind::KillIngest => {
                let p = if matches!(kind, FaultKind::KillProfile) {
                    &mut profile
                } else {
                    &mut ingest
                };
                p.kill9();
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
                p.start()?;
            }
            FaultKind::KillRedis => {
                redis.proc.kill9();
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
                redis.start(true).await?;
            }
            FaultKind::RestoreSnapshot => {
                let snap = snapshot.take().expect("taken above");
                redis.restore(&snap).await?;
            }
            FaultKind::FlushAll => {
                let reply = redis.cli(&["FLUSHALL"])?;
                anyhow::ensure!(reply.trim() == "OK", "FLUSHALL answered {reply:?}");
            }
        }
        let fault_at = (at - started).as_secs_f64();
        let probe_event = probe(&tenant, k);
        probe_events.push(probe_event.clone());
        // The next fault waits for this one's recovery, so each one hits a
        // running mesh (a snapshot taken while profile was down would hold
        // nothing it could lose).
        let limit = Duration::from_secs(args.seconds + args.settle_seconds);
        let recovered = recovery(
            ingest_url.clone(),
            profile_url.clone(),
            tenant.clone(),
            probe_event,
            at,
            limit,
        )
        .await;
        faults.push(Fault {
            what: kind.describe(args.snapshot_age),
            at_s: (fault_at * 10.0).round() / 10.0,
            recovery_s: recovered.map(|s| (s * 100.0).round() / 100.0),
        });
    }
    sender.await?;
    let traffic_done = Instant::now();

    // The reference: every accepted event folded offline, probes included.
    let accepted = std::mem::take(&mut *accepted.lock().unwrap_or_else(|e| e.into_inner()));
    let mut expected: HashMap<String, Counters> = HashMap::new();
    for e in &accepted {
        expected.entry(e.user_id.clone()).or_default().fold(e);
    }
    for p in &probe_events {
        expected.entry(p.user_id.clone()).or_default().fold(p);
    }
    let settle = Duration::from_secs(args.settle_seconds);
    let (mut lost, mut double, mut mismatched);
    let mut examples = Vec::new();
    let mut client = None;
    loop {
        (lost, double, mismatched) = (0u64, 0u64, 0usize);
        examples.clear();
        if client.is_none() {
            client = profile_client(&profile_url).await.ok();
        }
        match client.as_mut() {
            None => mismatched = expected.len(),
            Some(c) => {
                for (user, want) in &expected {
                    match counters_of(c, &tenant, user).await {
                        Some(got) => {
                            lost += want.events.saturating_sub(got.events);
                            double += got.events.saturating_sub(want.events);
                            let same = got.events == want.events
                                && got.orders == want.orders
                                && (got.spend - want.spend).abs() < 1e-6 * want.spend.max(1.0)
                                && got.first_seen_ms == want.first_seen_ms
                                && got.last_seen_ms == want.last_seen_ms;
                            if !same {
                                mismatched += 1;
                                if examples.len() < 5 {
                                    examples.push(format!(
                                        "{user}: expected events {} orders {} spend {:.2} seen {}..{}, \
                                         found events {} orders {} spend {:.2} seen {}..{}",
                                        want.events,
                                        want.orders,
                                        want.spend,
                                        want.first_seen_ms,
                                        want.last_seen_ms,
                                        got.events,
                                        got.orders,
                                        got.spend,
                                        got.first_seen_ms,
                                        got.last_seen_ms
                                    ));
                                }
                            }
                        }
                        None => {
                            mismatched += 1;
                            client = None;
                            break;
                        }
                    }
                }
            }
        }
        if (mismatched == 0 && client.is_some()) || traffic_done.elapsed() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled_s = (mismatched == 0).then(|| traffic_done.elapsed().as_secs_f64());
    profile.stop();
    ingest.stop();
    redis.proc.kill9();
    Ok(ChaosReport {
        seconds: args.seconds,
        rate: args.rate,
        sent,
        accepted: accepted.len() as u64,
        dead_lettered: rejected.load(std::sync::atomic::Ordering::Relaxed),
        lost,
        double_applied: double,
        users: expected.len(),
        users_mismatched: mismatched,
        settled_s: settled_s.map(|s| (s * 10.0).round() / 10.0),
        mismatch_examples: examples,
        store_resumes: std::fs::read_to_string(&profile.log)
            .map(|l| l.matches("re-reading").count())
            .unwrap_or(0),
        faults,
        logs: work.display().to_string(),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn sleep_until(started: Instant, at_s: f64) {
    let target = started + Duration::from_secs_f64(at_s);
    tokio::time::sleep_until(target.into()).await;
}

/// `mesh chaos`: runs, prints, and fails when anything was lost or applied
/// twice.
pub async fn command(cfg: &MeshConfig, args: &ChaosArgs) -> anyhow::Result<()> {
    // Ctrl-C or SIGTERM drops the run, and with it every process it
    // started (each `Proc` kills its child when dropped).
    let stop = mesh_runtime::shutdown::on_signals();
    let r = tokio::select! {
        r = run(cfg, args) => r?,
        _ = stop.cancelled() => anyhow::bail!("mesh chaos interrupted; its processes were stopped"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "sent {}  accepted {}  dead-lettered {}  lost {}  double-applied {}  users {} ({} differ)  \
             settled {}  store resumes {}",
            r.sent,
            r.accepted,
            r.dead_lettered,
            r.lost,
            r.double_applied,
            r.users,
            r.users_mismatched,
            r.settled_s.map_or("never".into(), |s| format!("{s:.1} s after traffic")),
            r.store_resumes,
        );
        for m in &r.mismatch_examples {
            println!("  differs: {m}");
        }
        for f in &r.faults {
            println!(
                "{:7.1} s  {:<45} recovered {}",
                f.at_s,
                f.what,
                f.recovery_s
                    .map_or("never".into(), |s| format!("in {s:.2} s"))
            );
        }
        println!("logs: {}", r.logs);
    }
    if r.lost > 0 || r.double_applied > 0 || r.users_mismatched > 0 {
        anyhow::bail!(
            "chaos: {} lost, {} double-applied, {} users differ (logs in {})",
            r.lost,
            r.double_applied,
            r.users_mismatched,
            r.logs
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_is_seeded_and_marks_every_hundredth_invalid() {
        let args = ChaosArgs {
            seconds: 10,
            rate: 50,
            users: 20,
            kills: 1,
            snapshot_age: 2,
            seed: 7,
            settle_seconds: 10,
            json: true,
        };
        let a = traffic(&args, "t");
        let b = traffic(&args, "t");
        assert_eq!(a.len(), 500);
        assert_eq!(
            a.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
            b.iter().map(|e| &e.event_id).collect::<Vec<_>>()
        );
        let invalid = a.iter().filter(|e| e.occurred_at_ms == 1_000).count();
        assert_eq!(invalid, 5);
    }
}
