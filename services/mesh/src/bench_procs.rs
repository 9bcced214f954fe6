//! `mesh bench processes`: the memory and CPU of each service process.
//!
//! Starts the mesh as production runs it, one `mesh serve <role>` process
//! per service (as `mesh up --processes`), on the bench's broker and Redis
//! (started here when `MESH_KAFKA_BROKERS` / `MESH_REDIS_URL` are unset),
//! each on free ports with topics and keys of its own. Once every process
//! answers `/ready` it reads each one's resident memory; then it publishes
//! simulated events through ingest at `--rate` for `--seconds` (the write
//! load of `mesh bench all`'s reads stage), and reads each process's
//! resident memory, peak resident memory (`VmHWM`) and the CPU time it used
//! under the load. The processes are stopped at the end (SIGTERM).
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_runtime::procfs;
use tokio_util::sync::CancellationToken;

use crate::node::MeshConfig;
use crate::serve::Role;

/// Arguments of `mesh bench processes`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchProcessesArgs {
    /// Events per second published through ingest while measuring.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// Seconds of write load.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One service process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessFigures {
    pub role: String,
    /// Resident memory once every process was ready, before the load.
    pub rss_ready_bytes: u64,
    /// Resident memory at the end of the load.
    pub rss_loaded_bytes: u64,
    /// Peak resident memory since the process started.
    pub peak_rss_bytes: u64,
    /// CPU seconds used during the load, and as cores (seconds / wall).
    pub load_cpu_secs: f64,
    pub load_cores: f64,
}

/// Every process, and the load they ran under.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessesReport {
    pub servers: String,
    pub processes: Vec<ProcessFigures>,
    pub rate: u32,
    pub seconds: f64,
    /// Events ingest accepted during the load.
    pub accepted: u64,
    pub ready_seconds: f64,
    /// Sums over the processes.
    pub rss_ready_total_bytes: u64,
    pub rss_loaded_total_bytes: u64,
    pub load_cores_total: f64,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for ProcessesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "mesh bench processes: {}; one process per service, ready in {:.1} s; \
             load {} events/s offered for {:.1} s, {} accepted",
            self.servers, self.ready_seconds, self.rate, self.seconds, self.accepted
        )?;
        writeln!(
            f,
            "{:<10} {:>14} {:>15} {:>13} {:>12}",
            "process", "RSS ready MiB", "RSS loaded MiB", "peak RSS MiB", "load cores"
        )?;
        for p in &self.processes {
            writeln!(
                f,
                "{:<10} {:>14.1} {:>15.1} {:>13.1} {:>12.3}",
                p.role,
                mib(p.rss_ready_bytes),
                mib(p.rss_loaded_bytes),
                mib(p.peak_rss_bytes),
                p.load_cores
            )?;
        }
        write!(
            f,
            "{:<10} {:>14.1} {:>15.1} {:>13} {:>12.3}",
            "all",
            mib(self.rss_ready_total_bytes),
            mib(self.rss_loaded_total_bytes),
            "",
            self.load_cores_total
        )
    }
}

/// A free loopback port.
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A loopback address whose port and the `n - 1` after it are free (the
/// children's admin ports follow the first, one each).
fn free_run(n: u16) -> anyhow::Result<SocketAddr> {
    for _ in 0..50 {
        let first = free_addr()?;
        let all_free = (1..n).all(|i| {
            first
                .port()
                .checked_add(i)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return Ok(first);
        }
    }
    anyhow::bail!("found no {n} free consecutive loopback ports")
}

/// Runs the benchmark (see the module documentation).
pub async fn bench(cfg: &MeshConfig, args: &BenchProcessesArgs) -> anyhow::Result<ProcessesReport> {
    anyhow::ensure!(args.rate > 0, "--rate must be above 0");
    anyhow::ensure!(args.seconds > 0, "--seconds must be above 0");
    let servers =
        crate::bench_servers::ensure(cfg.brokers.as_deref(), cfg.redis_url.as_deref()).await?;
    let mut cfg = crate::bench_all::bench_config(cfg, &servers);
    let run = format!("allp{}", std::process::id());
    cfg.topic_prefix = format!("{}.{run}", cfg.topic_prefix);
    cfg.key_prefix = format!("{}:{run}", cfg.key_prefix);
    cfg.ingest.http_addr = free_addr()?;
    cfg.ingest.grpc_addr = free_addr()?;
    cfg.admin_addr = free_run(Role::ALL.len() as u16 + 1)?;
    for role in Role::ALL {
        if let Some((group, addr)) = cfg.group_and_addr(role) {
            *group = format!("{run}-{}", role.name());
            *addr = free_addr()?;
        }
    }
    crate::node::create_topics(
        None,
        &servers.brokers,
        &cfg.topics(),
        mesh_bus::TopicSpec {
            partitions: cfg.partitions,
            replication: 1,
        },
    )
    .await?;
    let bar = crate::cmd_progress::bar("bench processes", 3);
    bar.set_message("bench processes: starting one process per service");
    let started = Instant::now();
    let mut procs = crate::processes::start_with(&cfg, false).await?;
    let report = async {
        procs.wait_ready(Duration::from_secs(180)).await?;
        let ready_seconds = started.elapsed().as_secs_f64();
        bar.inc(1);
        let rss = |pid: u32| procfs::rss_bytes(Some(pid)).unwrap_or(0);
        let ready: Vec<u64> = procs.children.iter().map(|c| rss(c.pid())).collect();
        let cpu0: Vec<f64> = procs
            .children
            .iter()
            .map(|c| procfs::cpu_secs(Some(c.pid())).unwrap_or(0.0))
            .collect();
        bar.set_message("bench processes: write load");
        let ingest_addr = procs
            .children
            .iter()
            .find(|c| c.role == Role::Ingest)
            .map(|c| c.grpc_addr)
            .ok_or_else(|| anyhow::anyhow!("no ingest process"))?;
        let ingest = IngestServiceClient::connect(format!("http://{ingest_addr}")).await?;
        let stop = CancellationToken::new();
        let writer = tokio::spawn(crate::bench_reads::write_load(
            ingest,
            run.clone(),
            args.rate,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.cancel();
        let (accepted, seconds) = writer.await.unwrap_or_default();
        bar.inc(1);
        let mut processes = Vec::new();
        for (i, c) in procs.children.iter().enumerate() {
            let cpu = procfs::cpu_secs(Some(c.pid())).unwrap_or(0.0) - cpu0[i];
            processes.push(ProcessFigures {
                role: c.role.name().to_string(),
                rss_ready_bytes: ready[i],
                rss_loaded_bytes: rss(c.pid()),
                peak_rss_bytes: procfs::peak_rss_bytes(Some(c.pid())).unwrap_or(0),
                load_cpu_secs: cpu,
                load_cores: cpu / seconds.max(1e-9),
            });
        }
        anyhow::Ok(ProcessesReport {
            servers: servers.description.clone(),
            rate: args.rate,
            seconds,
            accepted,
            ready_seconds,
            rss_ready_total_bytes: processes.iter().map(|p| p.rss_ready_bytes).sum(),
            rss_loaded_total_bytes: processes.iter().map(|p| p.rss_loaded_bytes).sum(),
            load_cores_total: processes.iter().map(|p| p.load_cores).sum(),
            processes,
        })
    }
    .await;
    bar.set_message("bench processes: stopping");
    let stop = CancellationToken::new();
    stop.cancel();
    // `run` returns at once on a cancelled token and stops every child.
    let stopped = procs.run(stop, Duration::from_secs(10)).await;
    bar.finish_and_clear();
    let report = report?;
    stopped?;
    Ok(report)
}
