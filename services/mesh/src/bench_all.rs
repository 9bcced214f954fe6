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
//!    and every consumer applies it, vs the same calls on the idle mesh;
//! 5. scale ([`crate::bench_scale`]): profile's apply rate, Redis bytes per
//!    user and the processes' memory at 10k, 100k and 1M users, and the
//!    replay rate of the largest level.
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
use crate::bench_servers::Servers;
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
    /// User counts of the scale stage ([`crate::bench_scale`]).
    pub scale_users: Vec<u32>,
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
                scale_users: crate::bench_scale::QUICK_USERS.to_vec(),
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
                scale_users: crate::bench_scale::DEFAULT_USERS.to_vec(),
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

/// Redis memory of one service's keys in the reads stage's mesh.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScopeBytes {
    pub scope: String,
    pub keys: u64,
    pub bytes: u64,
}

/// Redis memory (`MEMORY USAGE`) of every service's keys after the reads
/// stage: the whole mesh applied the seed and the load there.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServiceBytes {
    /// Per store scope (service; `ingest` is its id ledger), largest first.
    pub scopes: Vec<ScopeBytes>,
    /// Users profile holds state for (`u:` keys).
    pub users: u64,
    /// Items recommend holds metadata for (`item:` keys).
    pub items: u64,
    /// Recommend's per-item keys: item metadata, co-occurrence rows and
    /// popularity buckets (`item:`, `co:`, `pop:`).
    pub recommend_item_keys: u64,
    pub recommend_item_bytes: u64,
}

impl ServiceBytes {
    /// All services' bytes over the users (item keys included).
    pub fn bytes_per_user(&self) -> f64 {
        self.scopes.iter().map(|s| s.bytes).sum::<u64>() as f64 / self.users.max(1) as f64
    }

    /// Recommend's per-item keys over the items.
    pub fn recommend_bytes_per_item(&self) -> f64 {
        self.recommend_item_bytes as f64 / self.items.max(1) as f64
    }
}

/// Sums `MEMORY USAGE` of the keys under `prefix` per store scope
/// (`<prefix>:{<scope>.<partition>}:<key>`; a key outside a slot counts
/// for its first name part, [`split_slot_key`]).
async fn service_bytes(url: &str, prefix: &str) -> anyhow::Result<ServiceBytes> {
    let mut by: std::collections::BTreeMap<String, ScopeBytes> = Default::default();
    let mut out = ServiceBytes::default();
    key_sizes(url, prefix, |k, size| {
        let (scope, rest) = split_slot_key(&k[(prefix.len() + 1).min(k.len())..]);
        let e = by.entry(scope.to_string()).or_insert_with(|| ScopeBytes {
            scope: scope.to_string(),
            ..Default::default()
        });
        e.keys += 1;
        e.bytes += size;
        match scope {
            "profile" if rest.starts_with("u:") => out.users += 1,
            "recommend" if ["item:", "co:", "pop:"].iter().any(|p| rest.starts_with(p)) => {
                out.items += u64::from(rest.starts_with("item:"));
                out.recommend_item_keys += 1;
                out.recommend_item_bytes += size;
            }
            _ => {}
        }
    })
    .await?;
    out.scopes = by.into_values().collect();
    out.scopes.sort_by_key(|s| std::cmp::Reverse(s.bytes));
    Ok(out)
}

/// `{<scope>.<partition>}:<key>` → (scope, key); a key outside a slot,
/// `<owner>:<rest>` (ingest's id ledger: `ingest:ids:...`) → (owner, all);
/// anything else → ("-", all).
fn split_slot_key(k: &str) -> (&str, &str) {
    let Some(inner) = k.strip_prefix('{') else {
        return match k.split_once(':') {
            Some((owner, _)) if !owner.is_empty() && !owner.contains('{') => (owner, k),
            _ => ("-", k),
        };
    };
    match (inner.find('}'), inner.find('.')) {
        (Some(close), Some(dot)) if dot < close => {
            let rest = inner[close + 1..]
                .strip_prefix(':')
                .unwrap_or(&inner[close + 1..]);
            (&inner[..dot], rest)
        }
        _ => ("-", k),
    }
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
    /// Every service's Redis memory after the reads stage.
    pub services_redis: ServiceBytes,
    pub scale: crate::bench_scale::ScaleReport,
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
    "mesh_redis_bytes_per_user",
    "recommend_redis_bytes_per_item",
    "scale_max_users",
    "scale_profile_events_per_s",
    "scale_redis_bytes_per_user",
    "scale_replay_events_per_s",
];

impl BenchAllReport {
    /// The flat headline keys ([`KEYS`]), then the rows and every stage's
    /// own report.
    pub fn to_json(&self) -> Value {
        let (i, p, r) = (&self.ingest, &self.profile, &self.reads);
        let replay = self.replay.records as f64 / self.replay.seconds.max(1e-9);
        let largest = self.scale.largest();
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
            self.services_redis.bytes_per_user(),
            self.services_redis.recommend_bytes_per_item(),
            largest.map_or(f64::NAN, |l| f64::from(l.users)),
            largest.map_or(f64::NAN, |l| l.profile_events_per_s),
            largest.map_or(f64::NAN, |l| l.redis_bytes_per_user),
            self.scale.replay_events_per_s,
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
        writeln!(
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
        )?;
        if !self.reads.consumers_stopped {
            writeln!(
                f,
                "reads: the mesh's consumers did not stop within the shutdown grace; later stages ran beside them and its keys were left in Redis"
            )?;
        }
        let sb = &self.services_redis;
        writeln!(
            f,
            "redis after the reads stage: {:.0} bytes per user over every service ({} users); recommend {:.0} bytes per item ({} items)",
            sb.bytes_per_user(),
            sb.users,
            sb.recommend_bytes_per_item(),
            sb.items
        )?;
        for s in &sb.scopes {
            writeln!(
                f,
                "  {:<12} {:>9} keys {:>12} bytes {:>8.0} per user",
                s.scope,
                s.keys,
                s.bytes,
                s.bytes as f64 / sb.users.max(1) as f64
            )?;
        }
        writeln!(
            f,
            "cost as work grows (profile apply, one event per user on average):"
        )?;
        write!(f, "{}", self.scale)
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
pub(crate) async fn redis_bytes(url: &str, prefix: &str) -> anyhow::Result<RedisBytes> {
    let mut out = RedisBytes::default();
    key_sizes(url, prefix, |k, s| {
        if k.contains("{bare.") {
            out.bare_keys += 1;
            out.bare_bytes += s;
            out.users += u64::from(k.contains(":u:"));
        } else {
            out.profile_keys += 1;
            out.profile_bytes += s;
        }
    })
    .await?;
    Ok(out)
}

/// Calls `each(key, MEMORY USAGE)` for every key under `prefix` (a key
/// gone meanwhile counts 0 bytes), 1,000 keys per pipeline.
async fn key_sizes(url: &str, prefix: &str, mut each: impl FnMut(&str, u64)) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys = scan(&mut conn, prefix).await?;
    for chunk in keys.chunks(1_000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("MEMORY").arg("USAGE").arg(k);
        }
        let sizes: Vec<Option<u64>> = pipe.query_async(&mut conn).await?;
        for (k, s) in chunk.iter().zip(sizes) {
            each(k, s.unwrap_or(0));
        }
    }
    Ok(())
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
pub(crate) async fn delete_keys(url: &str, prefixes: &[String]) -> anyhow::Result<()> {
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

/// The bench's settings on `servers`: their broker and Redis, a delivery
/// timeout of at least 60 s, a 6 s session timeout unless one is set, and
/// every listener on a free port (the bench may run beside a mesh).
pub(crate) fn bench_config(cfg: &MeshConfig, servers: &Servers) -> MeshConfig {
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
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.admin_addr = any;
    for role in crate::serve::Role::ALL {
        if let Some((_, addr)) = cfg.group_and_addr(role) {
            *addr = any;
        }
    }
    cfg
}

/// `cfg` for one profile bench run named `run`: its own topics, keys,
/// consumer group and a free gRPC port.
pub(crate) fn profile_run_config(cfg: &MeshConfig, run: &str) -> MeshConfig {
    let mut pcfg = cfg.clone();
    pcfg.topic_prefix = format!("{}.{run}", cfg.topic_prefix);
    pcfg.key_prefix = format!("{}:{run}", cfg.key_prefix);
    pcfg.profile.group = format!("{run}-profile");
    pcfg.profile.grpc_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    pcfg
}

/// `mesh bench profile`'s run on `pcfg` ([`profile_run_config`]).
pub(crate) async fn profile_bench(
    pcfg: &MeshConfig,
    backends: &crate::node::Backends,
    servers: &Servers,
    run: &str,
    opts: &mesh_profile::bench::BenchOptions,
) -> anyhow::Result<mesh_profile::bench::BenchProfileReport> {
    mesh_profile::bench::run(
        &pcfg.profile,
        &backends.deps(pcfg),
        &servers.redis_url,
        &pcfg.key_prefix,
        run,
        &backends.broker_name(),
        opts,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

/// Runs every stage; `cfg` supplies the broker and Redis (started here
/// when unset) and the services' settings.
pub async fn run(cfg: &MeshConfig, args: &BenchAllArgs) -> anyhow::Result<BenchAllReport> {
    let started = Instant::now();
    let sizes = Sizes::of(args.quick);
    let bar = crate::cmd_progress::bar("bench all", 10 + sizes.scale_users.len() as u64);
    let step = |what: &str| {
        bar.set_message(format!("bench all: {what}"));
        bar.inc(1);
    };
    bar.set_message("bench all: broker and redis");
    let servers =
        crate::bench_servers::ensure(cfg.brokers.as_deref(), cfg.redis_url.as_deref()).await?;
    let cfg = bench_config(cfg, &servers);
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
    let pcfg = profile_run_config(&cfg, &run);
    let backends = crate::node::Backends::connect(&pcfg).await?;
    let opts = mesh_profile::bench::BenchOptions {
        events: sizes.profile_events,
        users: sizes.profile_users,
        readers: sizes.profile_readers,
    };
    let profile = profile_bench(&pcfg, &backends, &servers, &run, &opts)
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

    let services_redis = service_bytes(&servers.redis_url, &format!("{base_prefix}:allr{pid}"))
        .await
        .map_err(|e| e.context("redis bytes per service"))?;
    let mut spent = vec![pcfg.key_prefix.clone(), format!("{base_prefix}:bench{pid}")];
    // Not under a consumer of the reads mesh that is still running (the
    // stage warned; see `bench_reads::run`).
    if reads.consumers_stopped {
        spent.push(format!("{base_prefix}:allr{pid}"));
    }
    delete_keys(&servers.redis_url, &spent).await?;

    // Last: its largest level leaves the broker holding a million records.
    let scale = crate::bench_scale::run(&cfg, &servers, &sizes.scale_users, &step)
        .await
        .map_err(|e| e.context("stage scale"))?;
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
        services_redis,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::split_slot_key;

    #[test]
    fn slot_keys_split_into_scope_and_key() {
        assert_eq!(
            split_slot_key("{recommend.3}:co:demo:sku-1"),
            ("recommend", "co:demo:sku-1")
        );
        assert_eq!(
            split_slot_key("{profile.0}:u:demo/u1"),
            ("profile", "u:demo/u1")
        );
        assert_eq!(
            split_slot_key("ingest:ids:{12}:20000"),
            ("ingest", "ingest:ids:{12}:20000")
        );
        assert_eq!(split_slot_key("plain"), ("-", "plain"));
        assert_eq!(split_slot_key("{nodot}:k"), ("-", "{nodot}:k"));
        assert_eq!(split_slot_key("{a}.b}:k"), ("-", "{a}.b}:k"));
    }
}
