//! `mesh bench all`: every benchmark in one run, on the same broker and
//! Redis, each figure beside its bare baseline and the ratio.
//!
//! The stages reuse the single benchmarks:
//! 1. ingest ([`crate::bench::ingest`]): mesh ingest vs a bare idempotent
//!    producer; publish → visible in `GetProfile`;
//! 2. profile ([`mesh_profile::bench::run`]): profile's apply rate vs a bare
//!    consume + pipelined Redis write loop; then Redis bytes per user of
//!    profile's state vs the bare loop's one hash per user;
//! 3. replay ([`crate::replay::replay_profile`]) of the profile stage's log
//!    into an empty scope, vs the bare loop's rate;
//! 4. reads ([`crate::bench_reads`]): `GetProfile`, `Recommend` and
//!    `ScoreOrder` at a fixed rate while a writer publishes through ingest
//!    and every consumer applies it, vs the same calls on the idle mesh.
//!
//! Broker and Redis: `MESH_KAFKA_BROKERS` / `MESH_REDIS_URL`, or tansu and
//! redis-server started for the run ([`crate::bench_servers`]). Every stage
//! has its own topics, keys and consumer groups; keys are deleted at the
//! end. Producers wait up to a minute for the broker: a loaded broker is
//! slow, and a benchmark that times out measures nothing.
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::bench::{IngestBenchArgs, IngestBenchReport};
use crate::bench_reads::{ReadOptions, ReadStats, ReadsReport};
use crate::node::MeshConfig;

/// Arguments of `mesh bench all`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchAllArgs {
    /// Print the report as JSON (the progress bar stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Small sizes, well under two minutes: a smoke run that every stage
    /// works, not a measurement.
    #[arg(long)]
    pub quick: bool,
}

/// The sizes of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub ingest_events: usize,
    pub ingest_throughput_events: usize,
    pub ingest_rate: u32,
    pub ingest_baseline_records: usize,
    pub profile_events: usize,
    pub profile_users: u32,
    pub profile_readers: usize,
    pub read_rate: u32,
    pub read_seconds: f64,
    pub load_rate: u32,
    pub read_seed_events: usize,
}

impl Sizes {
    pub fn of(quick: bool) -> Self {
        if quick {
            Sizes {
                ingest_events: 2_000,
                ingest_throughput_events: 2_000,
                ingest_rate: 1_000,
                ingest_baseline_records: 10_000,
                profile_events: 4_000,
                profile_users: 1_000,
                profile_readers: 2,
                read_rate: 100,
                read_seconds: 2.0,
                load_rate: 500,
                read_seed_events: 2_000,
            }
        } else {
            Sizes {
                ingest_events: 50_000,
                ingest_throughput_events: 200_000,
                ingest_rate: 5_000,
                ingest_baseline_records: 100_000,
                profile_events: 50_000,
                profile_users: 10_000,
                profile_readers: 4,
                read_rate: 500,
                read_seconds: 10.0,
                load_rate: 5_000,
                read_seed_events: 20_000,
            }
        }
    }
}

/// One line of the table: a figure, its bare baseline, figure / baseline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub name: &'static str,
    pub figure: f64,
    pub unit: &'static str,
    pub baseline: f64,
    pub baseline_is: &'static str,
    pub ratio: f64,
    /// CPU the served method spent per call (read rows), µs.
    pub cpu_us_per_call: Option<f64>,
}

/// Redis memory (`MEMORY USAGE`) of the profile stage's keys.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RedisBytes {
    pub users: u64,
    pub profile_keys: u64,
    pub profile_bytes: u64,
    pub bare_keys: u64,
    pub bare_bytes: u64,
}

/// What `mesh bench all` measured.
#[derive(Debug, serde::Serialize)]
pub struct BenchAllReport {
    pub servers: String,
    pub build: &'static str,
    pub cpus: usize,
    pub load_average: String,
    pub quick: bool,
    pub seconds: f64,
    pub sizes: Sizes,
    pub rows: Vec<Row>,
    pub ingest: IngestBenchReport,
    pub profile: mesh_profile::bench::BenchProfileReport,
    pub redis: RedisBytes,
    pub replay: crate::replay::ReplayReport,
    pub reads: ReadsReport,
}

/// The keys every run prints (CI checks each is present and finite).
pub const KEYS: &[&str] = &[
    "ingest_ratio",
    "ingest_events_per_s",
    "profile_ratio",
    "profile_events_per_s",
    "visible_p99_ms",
    "get_profile_p99_ms_under_load",
    "get_profile_cpu_us_per_call",
    "recommend_p99_ms_under_load",
    "recommend_cpu_us_per_call",
    "score_order_p99_ms_under_load",
    "score_order_cpu_us_per_call",
    "redis_bytes_per_user",
    "replay_events_per_s",
];

impl BenchAllReport {
    /// The flat headline keys ([`KEYS`]), then the rows and every stage's
    /// own report.
    pub fn to_json(&self) -> Value {
        let (i, p, r) = (&self.ingest, &self.profile, &self.reads);
        let replay = self.replay.records as f64 / self.replay.seconds.max(1e-9);
        let headline = [
            i.ratio_ingest_to_bare,
            i.ingest_events_per_sec,
            p.ratio_profile_to_bare,
            p.profile_events_per_sec,
            i.visible_p99_ms,
            r.get_profile_load.p99_ms,
            r.get_profile_load.cpu_us_per_call,
            r.recommend_load.p99_ms,
            r.recommend_load.cpu_us_per_call,
            r.score_order_load.p99_ms,
            r.score_order_load.cpu_us_per_call,
            self.redis.profile_bytes as f64 / self.redis.users.max(1) as f64,
            replay,
        ];
        let mut m = Map::new();
        for (k, v) in KEYS.iter().zip(headline) {
            m.insert(k.to_string(), json!(v));
        }
        if let Value::Object(rest) = serde_json::to_value(self).unwrap_or_default() {
            m.extend(rest);
        }
        Value::Object(m)
    }
}

impl std::fmt::Display for BenchAllReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "mesh bench all{}: {}; {} build, {} CPUs, load average {}, {:.0} s",
            if self.quick { " --quick" } else { "" },
            self.servers,
            self.build,
            self.cpus,
            self.load_average,
            self.seconds
        )?;
        writeln!(
            f,
            "{:<30} {:>12} {:<9} {:>12}  {:<34} {:>8} {:>10}",
            "figure", "value", "unit", "baseline", "baseline is", "ratio", "CPU/call"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<30} {:>12} {:<9} {:>12}  {:<34} {:>8.3} {:>10}",
                r.name,
                num(r.figure),
                r.unit,
                num(r.baseline),
                r.baseline_is,
                r.ratio,
                r.cpu_us_per_call
                    .map_or(String::new(), |c| format!("{c:.0} µs"))
            )?;
        }
        write!(
            f,
            "reads: {}/s each for {} s; load {} events/s offered, {:.0} accepted; background CPU {:.2} cores; idle baseline {}",
            self.reads.rate_per_s,
            self.reads.seconds,
            self.reads.load_events_per_s,
            self.reads.load_achieved_events_per_s,
            self.reads.background_cpu_cores,
            if self.reads.idle_settled {
                "after the mesh settled"
            } else {
                "taken before the mesh settled (60 s)"
            }
        )
    }
}

/// Two decimals below 100, none above.
fn num(v: f64) -> String {
    if v.abs() < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

fn read_row(name: &'static str, idle: &ReadStats, load: &ReadStats) -> Row {
    Row {
        name,
        figure: load.p99_ms,
        unit: "ms p99",
        baseline: idle.p99_ms,
        baseline_is: "same calls, idle mesh",
        ratio: load.p99_ms / idle.p99_ms,
        cpu_us_per_call: Some(load.cpu_us_per_call),
    }
}

/// Sums `MEMORY USAGE` of every key under `prefix`, split into the bare
/// loop's keys (`{bare.<p>}`) and the rest (profile's state).
async fn redis_bytes(url: &str, prefix: &str) -> anyhow::Result<RedisBytes> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys = scan(&mut conn, prefix).await?;
    let mut out = RedisBytes::default();
    for chunk in keys.chunks(1_000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("MEMORY").arg("USAGE").arg(k);
        }
        let sizes: Vec<Option<u64>> = pipe.query_async(&mut conn).await?;
        for (k, s) in chunk.iter().zip(sizes) {
            let s = s.unwrap_or(0);
            if k.contains("{bare.") {
                out.bare_keys += 1;
                out.bare_bytes += s;
                out.users += u64::from(k.contains(":u:"));
            } else {
                out.profile_keys += 1;
                out.profile_bytes += s;
            }
        }
    }
    Ok(out)
}

async fn scan(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Deletes every key under each prefix.
async fn delete_keys(url: &str, prefixes: &[String]) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    for p in prefixes {
        let keys = scan(&mut conn, p).await?;
        for chunk in keys.chunks(1_000) {
            let _: () = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut conn)
                .await?;
        }
    }
    Ok(())
}

/// Runs every stage; `cfg` supplies the broker and Redis (started here
/// when unset) and the services' settings.
pub async fn run(cfg: &MeshConfig, args: &BenchAllArgs) -> anyhow::Result<BenchAllReport> {
    let started = Instant::now();
    let sizes = Sizes::of(args.quick);
    let bar = crate::cmd_progress::bar("bench all", 9);
    let step = |what: &str| {
        bar.set_message(format!("bench all: {what}"));
        bar.inc(1);
    };
    bar.set_message("bench all: broker and redis");
    let servers =
        crate::bench_servers::ensure(cfg.brokers.as_deref(), cfg.redis_url.as_deref()).await?;
    let mut cfg = cfg.clone();
    cfg.brokers = Some(servers.brokers.clone());
    cfg.redis_url = Some(servers.redis_url.clone());
    cfg.delivery_timeout = cfg.delivery_timeout.max(Duration::from_secs(60));
    if !cfg
        .consumer_extra
        .iter()
        .any(|(k, _)| k == "session.timeout.ms")
    {
        // A consumer that joins a group waits about half the session
        // timeout; librdkafka's 45 s default would dominate a quick run.
        cfg.consumer_extra
            .push(("session.timeout.ms".into(), "6000".into()));
    }
    // Every listener on a free port: the bench may run beside a mesh.
    let any: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    cfg.admin_addr = any;
    for role in crate::serve::Role::ALL {
        if let Some((_, addr)) = cfg.group_and_addr(role) {
            *addr = any;
        }
    }
    let base_prefix = cfg.key_prefix.clone();
    let pid = std::process::id();

    step("ingest vs a bare producer");
    let ingest = crate::bench::ingest(
        &cfg,
        &IngestBenchArgs {
            events: sizes.ingest_events,
            throughput_events: sizes.ingest_throughput_events,
            rate: sizes.ingest_rate,
            batch: 100,
            concurrency: crate::bench::DEFAULT_CONCURRENCY.to_vec(),
            baseline_records: sizes.ingest_baseline_records,
            json: true,
        },
    )
    .await
    .map_err(|e| e.context("stage ingest"))?;

    step("profile vs a bare consume + redis loop");
    let run = format!("allp{pid}");
    let mut pcfg = cfg.clone();
    pcfg.topic_prefix = format!("{}.{run}", cfg.topic_prefix);
    pcfg.key_prefix = format!("{base_prefix}:{run}");
    pcfg.profile.group = format!("{run}-profile");
    pcfg.profile.grpc_addr = "127.0.0.1:0".parse()?;
    let backends = crate::node::Backends::connect(&pcfg).await?;
    let profile = mesh_profile::bench::run(
        &pcfg.profile,
        &backends.deps(&pcfg),
        &servers.redis_url,
        &pcfg.key_prefix,
        &run,
        &backends.broker_name(),
        &mesh_profile::bench::BenchOptions {
            events: sizes.profile_events,
            users: sizes.profile_users,
            readers: sizes.profile_readers,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("stage profile: {e}"))?;
    // The service's consumer stops with the bench's shutdown; let it
    // leave before the replay group reads the same topics.
    tokio::time::sleep(Duration::from_millis(500)).await;

    step("redis bytes per user");
    let redis = redis_bytes(&servers.redis_url, &pcfg.key_prefix).await?;

    step("replay profile");
    let replay = crate::replay::replay_profile(&pcfg, &backends, false)
        .await
        .map_err(|e| e.context("stage replay"))?;
    drop(backends);

    let reads = crate::bench_reads::run(
        &cfg,
        &ReadOptions {
            rate: sizes.read_rate,
            seconds: sizes.read_seconds,
            load_rate: sizes.load_rate,
            seed_events: sizes.read_seed_events,
        },
        &step,
    )
    .await
    .map_err(|e| e.context("stage reads"))?;

    delete_keys(
        &servers.redis_url,
        &[
            pcfg.key_prefix.clone(),
            format!("{base_prefix}:allr{pid}"),
            format!("{base_prefix}:bench{pid}"),
        ],
    )
    .await?;
    bar.finish_and_clear();

    let replay_rate = replay.records as f64 / replay.seconds.max(1e-9);
    let per_user = |b: u64| b as f64 / redis.users.max(1) as f64;
    let rows = vec![
        Row {
            name: "ingest",
            figure: ingest.ingest_events_per_sec,
            unit: "events/s",
            baseline: ingest.bare_producer_records_per_sec,
            baseline_is: "bare idempotent producer",
            ratio: ingest.ratio_ingest_to_bare,
            cpu_us_per_call: None,
        },
        Row {
            name: "publish → visible (GetProfile)",
            figure: ingest.visible_p99_ms,
            unit: "ms p99",
            baseline: ingest.publish_call_p99_ms,
            baseline_is: "publish call (broker ack) p99",
            ratio: ingest.visible_p99_ms / ingest.publish_call_p99_ms,
            cpu_us_per_call: None,
        },
        Row {
            name: "profile apply",
            figure: profile.profile_events_per_sec,
            unit: "events/s",
            baseline: profile.bare_events_per_sec,
            baseline_is: "bare consume + redis write",
            ratio: profile.ratio_profile_to_bare,
            cpu_us_per_call: None,
        },
        read_row(
            "GetProfile under load",
            &reads.get_profile_idle,
            &reads.get_profile_load,
        ),
        read_row(
            "Recommend under load",
            &reads.recommend_idle,
            &reads.recommend_load,
        ),
        read_row(
            "ScoreOrder under load",
            &reads.score_order_idle,
            &reads.score_order_load,
        ),
        Row {
            name: "redis bytes per user",
            figure: per_user(redis.profile_bytes),
            unit: "bytes",
            baseline: per_user(redis.bare_bytes),
            baseline_is: "bare loop: one small hash",
            ratio: redis.profile_bytes as f64 / redis.bare_bytes.max(1) as f64,
            cpu_us_per_call: None,
        },
        Row {
            name: "replay profile",
            figure: replay_rate,
            unit: "events/s",
            baseline: profile.bare_events_per_sec,
            baseline_is: "bare consume + redis write",
            ratio: replay_rate / profile.bare_events_per_sec,
            cpu_us_per_call: None,
        },
    ];
    Ok(BenchAllReport {
        servers: servers.description.clone(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_default(),
        quick: args.quick,
        seconds: started.elapsed().as_secs_f64(),
        sizes,
        rows,
        ingest,
        profile,
        redis,
        replay,
        reads,
    })
}
