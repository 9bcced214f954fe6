//! `mesh train recommend` and `mesh bench recommend`: arguments, backends
//! and printing; the work is the recommend service's library
//! ([`mesh_recommend_svc::training`], [`mesh_recommend_svc::bench`]).
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use mesh_recommend_svc::live::LiveReader;
use mesh_recommend_svc::model;
use mesh_recommend_svc::training::{self, TrainReport};

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

pub async fn train(cfg: &MeshConfig, args: &TrainArgs) -> anyhow::Result<()> {
    let r = train_report(cfg, args).await?;
    crate::cmd_progress::print(&r, args.json)
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
    let (interactions, source) = match args.from {
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
            let interactions = tokio::task::spawn_blocking(move || {
                training::read_log_interactions(&brokers, &inputs, timeout, &|n| {
                    tick.set_position(n)
                })
            })
            .await??;
            reading.finish_and_clear();
            (interactions, "log")
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
            (
                model::interactions_from_store(&live, args.max_users).await?,
                "store",
            )
        }
    };
    let read_seconds = started.elapsed().as_secs_f64();
    let training_step = crate::cmd_progress::spinner("training the recommender");
    let r = training::train_and_write(
        interactions,
        spec,
        args.seed,
        version,
        &path,
        source,
        read_seconds,
    )
    .await;
    training_step.finish_and_clear();
    Ok(r?)
}

mod bench;
pub use bench::{bench, bench_report, BenchArgs};
