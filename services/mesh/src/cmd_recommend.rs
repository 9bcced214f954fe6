//! `mesh train recommend` and `mesh bench recommend` ([`bench`]).
//!
//! `train` reads the interactions (the event log from offset 0, or the
//! recent histories kept in the store), trains a model, and writes a
//! versioned artifact atomically where the running service watches
//! (`MESH_RECOMMEND_MODEL`); the service swaps it in at its next poll.
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use mesh_recommend_svc::live::LiveReader;
use mesh_recommend_svc::model;

use crate::node::{Backends, MeshConfig};

/// Where `mesh train recommend` reads interactions from.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainSource {
    /// Both input topics from offset 0 (needs MESH_KAFKA_BROKERS).
    Log,
    /// The recent histories the service keeps (needs MESH_REDIS_URL).
    Store,
}

/// Arguments of `mesh train recommend`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Interactions from the event log or from the store's recent histories.
    #[arg(long, value_enum, default_value_t = TrainSource::Log)]
    pub from: TrainSource,
    /// Model: als, bpr, ease, item_knn, popularity or blend.
    #[arg(long, default_value = "als")]
    pub model: String,
    /// Artifact path; default MESH_RECOMMEND_MODEL (the file the service watches).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Version label; default `v<unix seconds>`.
    #[arg(long)]
    pub version: Option<String>,
    /// Training seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// With --from store: most users read per partition.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_users: usize,
    /// With --from log: give up reading the log after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub read_timeout_secs: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `mesh train recommend` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub version: String,
    pub model: String,
    pub source: TrainSource,
    pub path: PathBuf,
    pub interactions: usize,
    pub users: usize,
    pub items: usize,
    pub read_seconds: f64,
    pub train_seconds: f64,
    pub bytes: u64,
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "trained {} version {} from the {:?} ({} interactions, {} users, {} items)",
            self.model, self.version, self.source, self.interactions, self.users, self.items
        )?;
        writeln!(
            f,
            "read {:.2} s, train {:.2} s",
            self.read_seconds, self.train_seconds
        )?;
        write!(
            f,
            "wrote {} ({} bytes); the service loads it at its next poll",
            self.path.display(),
            self.bytes
        )
    }
}

pub async fn train(cfg: &MeshConfig, args: &TrainArgs) -> anyhow::Result<()> {
    let r = train_report(cfg, args).await?;
    print(&r, args.json)
}

pub(crate) fn print<R: serde::Serialize + std::fmt::Display>(
    r: &R,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!("{r}");
    }
    Ok(())
}

/// [`train`] without printing.
pub async fn train_report(cfg: &MeshConfig, args: &TrainArgs) -> anyhow::Result<TrainReport> {
    let spec = mesh_recommend::cli::default_spec(&args.model)
        .map_err(|e| anyhow::anyhow!("--model: {e}"))?;
    let path = args
        .out
        .clone()
        .or_else(|| cfg.recommend.model_path.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("no artifact path: pass --out or set MESH_RECOMMEND_MODEL")
        })?;
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| model::version_label(SystemTime::now()));
    let started = Instant::now();
    let interactions = match args.from {
        TrainSource::Log => {
            let Some(brokers) = cfg.brokers.clone() else {
                anyhow::bail!(
                    "--from log needs MESH_KAFKA_BROKERS (the embedded cluster of this process has no events)"
                );
            };
            let topics = cfg.topics();
            let inputs = [topics.user_events.clone(), topics.order_events.clone()];
            let timeout = Duration::from_secs(args.read_timeout_secs);
            let reading = crate::cmd_progress::spinner("reading the event log: events");
            let tick = reading.clone();
            let events = tokio::task::spawn_blocking(move || {
                crate::log::read_log(&brokers, &inputs, timeout, "train-recommend", &|n| {
                    tick.set_position(n)
                })
            })
            .await??;
            reading.finish_and_clear();
            model::interactions_from_events(&events)
        }
        TrainSource::Store => {
            if cfg.redis_url.is_none() {
                anyhow::bail!(
                    "--from store needs MESH_REDIS_URL (the in-memory store of this process is empty)"
                );
            }
            let backends = Backends::connect(cfg).await?;
            let live = LiveReader {
                store: backends.store.clone(),
                partitions: cfg.partitions,
                live: cfg.recommend.live.clone(),
            };
            model::interactions_from_store(&live, args.max_users).await?
        }
    };
    let read_seconds = started.elapsed().as_secs_f64();
    if interactions.is_empty() {
        anyhow::bail!(
            "no interactions found in the {:?}: nothing to train on",
            args.from
        );
    }
    let t = Instant::now();
    let (seed, v) = (args.seed, version.clone());
    let training = crate::cmd_progress::spinner("training the recommender");
    let artifact = tokio::task::spawn_blocking(move || {
        model::train_from_interactions(&interactions, &spec, seed, &v)
            .map(|a| (a, interactions.len()))
    })
    .await?;
    training.finish_and_clear();
    let artifact = artifact?;
    let train_seconds = t.elapsed().as_secs_f64();
    let (artifact, n_interactions) = artifact;
    model::write_artifact(&artifact, &path)?;
    Ok(TrainReport {
        version,
        model: artifact.model.name().to_string(),
        source: args.from,
        bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        path,
        interactions: n_interactions,
        users: artifact.user_ids.len(),
        items: artifact.item_ids.len(),
        read_seconds,
        train_seconds,
    })
}

mod bench;
pub use bench::{bench, bench_report, synthetic_shop, BenchArgs, BenchReport, Latency};
