//! Cost as work grows: `mesh bench scale` and the last stage of `mesh bench
//! all`.
//!
//! For each user count (10,000, 100,000 and 1,000,000 by default) as many
//! simulated events as users are produced to topics of their own and applied
//! by the profile service started in this process, beside the bare consume +
//! Redis loop over the same records ([`mesh_profile::bench::run`] without
//! concurrent readers, so the apply rate is the service's alone). Each level
//! reports the apply rate and its ratio to the bare loop, Redis bytes per
//! user (`MEMORY USAGE` of the profile's keys over the users that have
//! state), Redis's `used_memory`, the resident memory of this process before
//! the service started and once it had applied every event, and that of the
//! broker and redis-server when the bench started them. The largest level's
//! log is then replayed (`mesh replay`'s profile path: clear the scope,
//! re-apply every record) for the replay rate at that size. A level's keys
//! are deleted before the next level starts; its topics stay on the broker
//! until the broker stops.
use std::time::{Duration, Instant};

use crate::bench_all::{delete_keys, redis_bytes, RedisBytes};
use crate::bench_servers::Servers;
use crate::node::MeshConfig;

/// The user counts of a full run.
pub const DEFAULT_USERS: [u32; 3] = [10_000, 100_000, 1_000_000];

/// The user counts of a `--quick` run.
pub const QUICK_USERS: [u32; 2] = [1_000, 4_000];

/// One user count.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleLevel {
    pub users: u32,
    pub events: usize,
    /// Users that have state after the level (the simulation draws users
    /// at random, so about 63% of `users` when `events == users`).
    pub users_with_state: u64,
    pub profile_events_per_s: f64,
    pub bare_events_per_s: f64,
    pub ratio: f64,
    pub redis_bytes_per_user: f64,
    pub redis: RedisBytes,
    /// `INFO memory` `used_memory` after the level, before its keys were
    /// deleted (Redis holds only this level's keys then, and the bench's).
    pub redis_used_memory_bytes: u64,
    /// Resident memory of this process before the profile service started
    /// (the level's events are in memory then) and once it had applied
    /// every event.
    pub process_rss_before_bytes: u64,
    pub process_rss_after_bytes: u64,
    /// Resident memory of the broker and of redis-server after the level,
    /// when this bench started them (`None`: configured servers).
    pub broker_rss_bytes: Option<u64>,
    pub redis_rss_bytes: Option<u64>,
    pub seconds: f64,
}

/// Every level and the replay of the largest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleReport {
    pub levels: Vec<ScaleLevel>,
    /// Records the replay of the largest level re-applied.
    pub replay_records: u64,
    pub replay_seconds: f64,
    /// `replay_records / replay_seconds` (includes the group join and the
    /// replay's 2 s quiet check at the end).
    pub replay_events_per_s: f64,
}

impl ScaleReport {
    /// The largest level.
    pub fn largest(&self) -> Option<&ScaleLevel> {
        self.levels.iter().max_by_key(|l| l.users)
    }
}

/// Arguments of `mesh bench scale`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchScaleArgs {
    /// User counts, one level each (as many events as users per level).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_USERS)]
    pub users: Vec<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

impl std::fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:>9} {:>9} {:>12} {:>12} {:>7} {:>10} {:>11} {:>19} {:>11} {:>11}",
            "users",
            "events",
            "profile ev/s",
            "bare ev/s",
            "ratio",
            "redis B/u",
            "redis MiB",
            "process MiB",
            "broker MiB",
            "redis RSS"
        )?;
        for l in &self.levels {
            let opt = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.0}", mib(b)));
            writeln!(
                f,
                "{:>9} {:>9} {:>12.0} {:>12.0} {:>7.3} {:>10.0} {:>11.0} {:>8.0} → {:>8.0} {:>11} {:>11}",
                l.users,
                l.events,
                l.profile_events_per_s,
                l.bare_events_per_s,
                l.ratio,
                l.redis_bytes_per_user,
                mib(l.redis_used_memory_bytes),
                mib(l.process_rss_before_bytes),
                mib(l.process_rss_after_bytes),
                opt(l.broker_rss_bytes),
                opt(l.redis_rss_bytes),
            )?;
        }
        write!(
            f,
            "replay of the largest level: {} records in {:.1} s, {:.0} events/s",
            self.replay_records, self.replay_seconds, self.replay_events_per_s
        )
    }
}

/// `INFO memory`'s `used_memory`, bytes.
async fn redis_used_memory(url: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("redis INFO memory has no used_memory field"))
}

/// Runs one level per user count of `users` (in the order given) and
/// replays the largest; `cfg` is the bench's (broker and Redis of
/// `servers`), `step` is told when each level starts.
pub async fn run(
    cfg: &MeshConfig,
    servers: &Servers,
    users: &[u32],
    step: &dyn Fn(&str),
) -> anyhow::Result<ScaleReport> {
    anyhow::ensure!(
        !users.is_empty() && users.iter().all(|&u| u > 0),
        "bench scale needs at least one user count, each above 0 (got {users:?})"
    );
    let largest = *users.iter().max().unwrap_or(&0);
    let pid = std::process::id();
    let mut levels = Vec::new();
    let mut replay = None;
    let mut replay_done = false;
    for &n in users {
        step(&format!("scale: {n} users"));
        let started = Instant::now();
        let run = format!("scale{pid}u{n}");
        let pcfg = crate::bench_all::profile_run_config(cfg, &run);
        let backends = crate::node::Backends::connect(&pcfg).await?;
        let opts = mesh_profile::bench::BenchOptions {
            events: n as usize,
            users: n,
            readers: 0,
        };
        let p = crate::bench_all::profile_bench(&pcfg, &backends, servers, &run, &opts)
            .await
            .map_err(|e| e.context(format!("scale level {n} users")))?;
        // The service's consumer stops with the bench's shutdown; let it
        // leave before the replay group reads the same topics.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let bytes = redis_bytes(&servers.redis_url, &pcfg.key_prefix).await?;
        let used = redis_used_memory(&servers.redis_url).await?;
        let broker_rss = servers
            .broker_pid
            .and_then(|p| mesh_runtime::procfs::rss_bytes(Some(p)));
        let redis_rss = servers
            .redis_pid
            .and_then(|p| mesh_runtime::procfs::rss_bytes(Some(p)));
        if n == largest && !replay_done {
            step(&format!("scale: replay of {n} events"));
            replay = Some(
                crate::replay::replay_profile(&pcfg, &backends, false)
                    .await
                    .map_err(|e| e.context(format!("scale replay of {n} events")))?,
            );
            replay_done = true;
        }
        drop(backends);
        delete_keys(&servers.redis_url, std::slice::from_ref(&pcfg.key_prefix)).await?;
        levels.push(ScaleLevel {
            users: n,
            events: n as usize,
            users_with_state: bytes.users,
            profile_events_per_s: p.profile_events_per_sec,
            bare_events_per_s: p.bare_events_per_sec,
            ratio: p.ratio_profile_to_bare,
            redis_bytes_per_user: bytes.profile_bytes as f64 / bytes.users.max(1) as f64,
            redis: bytes,
            redis_used_memory_bytes: used,
            process_rss_before_bytes: p.rss_before_service_bytes,
            process_rss_after_bytes: p.rss_after_apply_bytes,
            broker_rss_bytes: broker_rss,
            redis_rss_bytes: redis_rss,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let replay = replay.ok_or_else(|| anyhow::anyhow!("bench scale ran no replay"))?;
    Ok(ScaleReport {
        levels,
        replay_records: replay.records,
        replay_seconds: replay.seconds,
        replay_events_per_s: replay.records as f64 / replay.seconds.max(1e-9),
    })
}

/// `mesh bench scale`: the levels on the configured broker and Redis, or on
/// a tansu and a redis-server started for the run.
pub async fn bench(cfg: &MeshConfig, args: &BenchScaleArgs) -> anyhow::Result<ScaleReport> {
    let servers =
        crate::bench_servers::ensure(cfg.brokers.as_deref(), cfg.redis_url.as_deref()).await?;
    let cfg = crate::bench_all::bench_config(cfg, &servers);
    let bar = crate::cmd_progress::bar("bench scale", args.users.len() as u64 + 1);
    let step = |what: &str| {
        bar.set_message(format!("bench scale: {what}"));
        bar.inc(1);
    };
    let r = run(&cfg, &servers, &args.users, &step).await;
    bar.finish_and_clear();
    r
}
