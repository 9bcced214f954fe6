//! `mesh bench recommend`: arguments, its own topics, keys and group, then
//! [`mesh_recommend_svc::bench::run`].
use std::path::PathBuf;

use mesh_recommend_svc::bench::{BenchOptions, BenchReport};

use crate::node::{Backends, MeshConfig};

/// Arguments of `mesh bench recommend`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Users of the seeded synthetic shop.
    #[arg(long, default_value_t = 2_000)]
    pub users: usize,
    /// Items of the synthetic shop (20 categories).
    #[arg(long, default_value_t = 1_000)]
    pub items: usize,
    /// Use MovieLens 100k (`ml-100k.inter` in this directory) instead.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model trained before the load: als, bpr, ease, item_knn, popularity or blend.
    #[arg(long, default_value = "als")]
    pub model: String,
    /// Recent views applied per user as live signals (through Kafka).
    #[arg(long, default_value_t = 10)]
    pub live_per_user: usize,
    /// Offered rate, Recommend calls per second.
    #[arg(long, default_value_t = 300)]
    pub rate: u32,
    /// Recommend calls to offer.
    #[arg(long, default_value_t = 6_000)]
    pub requests: usize,
    /// Most calls in flight (beyond it, calls wait and the wait counts in
    /// their latency).
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Co-occurrence freshness samples (publish → visible in SimilarItems).
    #[arg(long, default_value_t = 30)]
    pub freshness_samples: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn bench(cfg: &MeshConfig, args: &BenchArgs) -> anyhow::Result<()> {
    let r = bench_report(cfg, args).await?;
    crate::cmd_progress::print(&r, args.json)
}

/// [`bench`] without printing.
pub async fn bench_report(cfg: &MeshConfig, args: &BenchArgs) -> anyhow::Result<BenchReport> {
    // Own topics, keys and group: the bench never touches a live mesh's state.
    let mut cfg = cfg.clone();
    let run = format!("benchrec{}", std::process::id());
    cfg.topic_prefix = format!("{}.{run}", cfg.topic_prefix);
    cfg.key_prefix = format!("{}:{run}", cfg.key_prefix);
    cfg.recommend.group = format!("{run}-recommend");
    cfg.recommend.grpc_addr = "127.0.0.1:0".parse()?;
    if cfg.consumer_extra.is_empty() {
        cfg.consumer_extra = vec![("session.timeout.ms".into(), "6000".into())];
    }
    let backends = Backends::connect(&cfg).await?;
    let opts = BenchOptions {
        users: args.users,
        items: args.items,
        data: args.data.clone(),
        model: args.model.clone(),
        live_per_user: args.live_per_user,
        rate: args.rate,
        requests: args.requests,
        max_in_flight: args.max_in_flight,
        freshness_samples: args.freshness_samples,
        seed: args.seed,
    };
    let store = if cfg.redis_url.is_some() {
        "redis"
    } else {
        "memory"
    };
    mesh_recommend_svc::bench::run(
        &cfg.recommend,
        &backends.deps(&cfg),
        &backends.broker_name(),
        store,
        &opts,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
