//! `mesh train fraud` and `mesh bench fraud`.
//!
//! - `train`: logistic regression, random forest and isolation forest from
//!   labelled history — review labels (from the store, or `ListLabels` over
//!   gRPC with `--addr`) and, with `--simulate N`, simulator labels — time
//!   split per source, AUCs on the holdout, written atomically to the models
//!   file the fraud service watches (`MESH_FRAUD_MODEL`), so it is swapped
//!   in without a restart. The work is in `mesh_fraud_svc::train`.
//! - `bench`: `ScoreOrder` over gRPC at a fixed offered rate (open loop),
//!   with the feature store on `MESH_REDIS_URL` seeded first; the load is
//!   `mesh_fraud_svc::bench`.
use std::path::PathBuf;

use anyhow::Context as _;
use mesh_fraud_svc::bench::BenchOptions;
use mesh_fraud_svc::scoring::{load_rules, open_models};
use mesh_fraud_svc::train::{self, LabelledRow, TrainOptions};
use mesh_store::{MemoryStore, RedisStore, StateStore};

use crate::node::MeshConfig;

/// Fraud's reports end with a newline of their own.
fn print_report<R: serde::Serialize + std::fmt::Display>(r: &R, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print!("{r}");
    }
    Ok(())
}

/// Arguments of `mesh train fraud`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Where to write the models; default `MESH_FRAUD_MODEL`. Written
    /// atomically, so a running service swaps it in without a restart.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Add labelled simulator orders of this many accounts (0: none).
    #[arg(long, default_value_t = 0)]
    pub simulate: usize,
    /// Days the simulator runs for.
    #[arg(long, default_value_t = 30)]
    pub sim_days: u32,
    /// Simulator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Read review labels over gRPC `ListLabels` from this fraud service
    /// (e.g. 127.0.0.1:50055) instead of the store at `MESH_REDIS_URL`.
    #[arg(long)]
    pub addr: Option<String>,
    /// Share of each source, earliest by event time, used for training;
    /// the rest is the holdout the AUCs are measured on.
    #[arg(long, default_value_t = 0.8)]
    pub train_share: f64,
    /// Trees of the random forest.
    #[arg(long, default_value_t = 60)]
    pub trees: usize,
    /// Version tag of the models (default `fraud-<unix seconds>`).
    #[arg(long)]
    pub version: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mesh bench fraud`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Offered rate, requests per second.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// HTTP/2 connections the requests are spread over.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Orders seeded into the feature store first (2,000 users, last 24 h).
    #[arg(long, default_value_t = 20_000)]
    pub seed_orders: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mesh train fraud`.
pub async fn train(cfg: &MeshConfig, args: &TrainArgs) -> anyhow::Result<()> {
    let mut sources: Vec<(String, Vec<LabelledRow>)> = Vec::new();
    let (records, from) = match (&args.addr, &cfg.redis_url) {
        (Some(addr), _) => (
            train::labels_over_grpc(addr).await?,
            format!("ListLabels at {addr}"),
        ),
        (None, Some(url)) => {
            let store = StateStore::Redis(
                RedisStore::connect(url, &cfg.key_prefix)
                    .await
                    .with_context(|| format!("MESH_REDIS_URL {url}"))?,
            );
            let labels = train::labels_from_store(&store, cfg.partitions).await?;
            (labels, format!("the store at {url}"))
        }
        (None, None) => (Vec::new(), "nowhere (no MESH_REDIS_URL, no --addr)".into()),
    };
    let (rows, skipped) = train::rows_from_labels(&records);
    eprintln!(
        "review labels: {} from {from}{}",
        rows.len(),
        if skipped > 0 {
            format!(" ({skipped} skipped: other feature count)")
        } else {
            String::new()
        }
    );
    if !rows.is_empty() {
        sources.push(("review".into(), rows));
    }
    if args.simulate > 0 {
        let (users, days, seed) = (args.simulate, args.sim_days, args.seed);
        let simulating = crate::cmd_progress::spinner("simulating labelled orders");
        let rows =
            tokio::task::spawn_blocking(move || train::rows_from_simulator(users, days, seed))
                .await?;
        simulating.finish_and_clear();
        let rows = rows?;
        sources.push(("simulator".into(), rows));
    }
    if sources.is_empty() {
        anyhow::bail!(
            "no labelled history: resolve reviews (ResolveReview) first, or add simulator labels with --simulate N"
        );
    }
    let version = args.version.clone().unwrap_or_else(|| {
        format!(
            "fraud-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
        )
    });
    let opts = TrainOptions {
        train_share: args.train_share,
        version,
        params: mesh_fraud::TrainParams {
            n_trees: args.trees,
            ..mesh_fraud::TrainParams::default()
        },
    };
    let out = args.out.clone().or_else(|| cfg.fraud.model_path.clone());
    let training = crate::cmd_progress::spinner("training the fraud models");
    let report =
        tokio::task::spawn_blocking(move || train::train_and_save(sources, &opts, out.as_deref()))
            .await?;
    training.finish_and_clear();
    let report = report?;
    print_report(&report, args.json)
}

/// `mesh bench fraud`: the load of `mesh_fraud_svc::bench` with the store
/// at `MESH_REDIS_URL` (under a key prefix of its own, cleared afterwards)
/// and the configured models and rules.
pub async fn bench(cfg: &MeshConfig, args: &BenchArgs) -> anyhow::Result<()> {
    let prefix = format!("{}-bench-fraud-{}", cfg.key_prefix, std::process::id());
    let (store, store_name) = match &cfg.redis_url {
        Some(url) => (
            StateStore::Redis(
                RedisStore::connect(url, &prefix)
                    .await
                    .with_context(|| format!("MESH_REDIS_URL {url}"))?,
            ),
            format!("redis {url}"),
        ),
        None => (
            StateStore::Memory(MemoryStore::new(&prefix)),
            "in memory (set MESH_REDIS_URL for Redis)".to_string(),
        ),
    };
    eprintln!("loading the models (training on the simulator when MESH_FRAUD_MODEL is unset) ...");
    let model_path = cfg.fraud.model_path.clone();
    let models = tokio::task::spawn_blocking(move || open_models(model_path)).await??;
    let rules = load_rules(cfg.fraud.rules_path.as_deref())?;
    eprintln!(
        "seeding {} orders, then {}/s for {} s ...",
        args.seed_orders, args.rate, args.seconds
    );
    let report = mesh_fraud_svc::bench::run(
        store,
        models,
        rules,
        &BenchOptions {
            rate: args.rate,
            seconds: args.seconds,
            connections: args.connections,
            seed_orders: args.seed_orders,
            partitions: cfg.partitions,
            store_name,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("mesh bench fraud: {e}"))?;
    print_report(&report, args.json)
}
