//! `mesh train segments`, `mesh report cdnow` and `mesh bench profile`:
//! arguments and printing; the work is the profile service's library
//! ([`mesh_profile::training`], [`mesh_profile::bench`]).
use std::path::PathBuf;

use anyhow::Context as _;
use mesh_profile::features::DAY_MS;
use mesh_profile::segments::Segment;
use mesh_profile::{analytics, lifecycle, training};
use mesh_store::{RedisStore, StateStore};

use crate::node::MeshConfig;

/// Arguments of `mesh train segments`.
#[derive(clap::Args, Debug)]
pub struct TrainSegmentsArgs {
    /// Number of segments.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mesh report cdnow`.
#[derive(clap::Args, Debug)]
pub struct CdnowArgs {
    /// CDNOW purchase log (`customer [sample_id] yyyymmdd quantity amount`).
    #[arg(long, default_value = "../shared/data/churn/CDNOW_sample.txt")]
    pub transactions: PathBuf,
    /// End of the calibration period (stages and segments are taken here).
    #[arg(long, default_value = "1997-09-30", value_parser = parse_day)]
    pub cutoff: String,
    /// Number of k-means segments.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_day(s: &str) -> Result<String, String> {
    analytics::parse_date_ms(s)
        .map(|_| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// `mesh train segments`: trains from the current state in Redis and stores
/// the model as the next version (the service picks it up at its next
/// sweep tick).
pub async fn train_segments(cfg: &MeshConfig, args: &TrainSegmentsArgs) -> anyhow::Result<()> {
    let url = cfg.redis_url.as_deref().context(
        "MESH_REDIS_URL is unset: mesh train segments trains from the profile state in Redis",
    )?;
    let store = StateStore::Redis(
        RedisStore::connect(url, &cfg.key_prefix)
            .await
            .with_context(|| format!("redis at {url}"))?,
    );
    let now = chrono::Utc::now().timestamp_millis();
    let training_step = crate::cmd_progress::spinner("reading profiles and training segments");
    let r = training::train_and_store(&cfg.profile, &store, cfg.partitions, args.k, now).await;
    training_step.finish_and_clear();
    let r = r?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "segment model v{} trained on {} users (stored)",
            r.version, r.users
        );
        print_segments(&r.segments);
    }
    Ok(())
}

fn print_segments(s: &[Segment]) {
    println!(
        "  {:>3} {:>6}  {:>9} {:>7} {:>9} {:>8}  description",
        "id", "users", "recency_d", "orders", "spend", "activity"
    );
    for x in s {
        println!(
            "  {:>3} {:>6}  {:>9.1} {:>7.2} {:>9.2} {:>8.3}  {}",
            x.id, x.size, x.centroid[0], x.centroid[1], x.centroid[2], x.centroid[3], x.description
        );
    }
}

/// `mesh report cdnow`: the CDNOW log through the profile fold, printed.
pub async fn report_cdnow(cfg: &MeshConfig, args: &CdnowArgs) -> anyhow::Result<()> {
    let log = mesh_churn::data::PurchaseLog::read(&args.transactions)
        .with_context(|| format!("--transactions {}", args.transactions.display()))?;
    let r = training::cdnow(&cfg.profile, cfg.partitions, &log, &args.cutoff, args.k).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "CDNOW: {} customers, {} purchase lines, {} order events through profile ({:.0} events/s, in-memory store)",
        r.customers, r.purchase_lines, r.order_events, r.events_per_sec
    );
    println!(
        "\nRFM segments at {} (k-means on standardized recency, ln orders, ln spend, ln activity):",
        r.cutoff
    );
    print_segments(&r.segments);
    println!(
        "\nLifecycle stages at {} (at-risk {} d, dormant {} d, churned {} d without an order):",
        r.cutoff,
        cfg.profile.thresholds.at_risk_ms / DAY_MS,
        cfg.profile.thresholds.dormant_ms / DAY_MS,
        cfg.profile.thresholds.churned_ms / DAY_MS
    );
    let total: usize = r.stages.values().sum();
    for s in lifecycle::STAGES {
        let n = r.stages.get(lifecycle::stage_name(s)).copied().unwrap_or(0);
        println!(
            "  {:<12} {:>6}  {:>5.1}%",
            lifecycle::stage_name(s),
            n,
            100.0 * n as f64 / total.max(1) as f64
        );
    }
    println!("\nRule tags at {}:", r.cutoff);
    for (t, n) in &r.tags {
        println!("  {t:<18} {n:>6}");
    }
    println!(
        "\nCohort retention by first-purchase month (share with an order in month +0, +1, ...; as of {}):",
        r.cohorts_as_of
    );
    for c in &r.cohorts {
        let cells: Vec<String> = c
            .retention
            .iter()
            .map(|x| format!("{:>4.0}", 100.0 * x))
            .collect();
        println!("  {} {:>5}  {}", c.month, c.users, cells.join(" "));
    }
    Ok(())
}

/// Arguments of `mesh bench profile`.
#[derive(clap::Args, Debug)]
pub struct BenchProfileArgs {
    /// Events to push through profile (and through the bare loop).
    #[arg(long, default_value_t = 50_000)]
    pub events: usize,
    /// Distinct users in the simulated traffic.
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Concurrent GetProfile callers while profile consumes.
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mesh bench profile` on its own topics, keys and group (the bench never
/// touches a live mesh's state).
pub async fn bench(cfg: &MeshConfig, args: &BenchProfileArgs) -> anyhow::Result<()> {
    let url = cfg.redis_url.clone().context(
        "MESH_REDIS_URL is unset: mesh bench profile measures profile on Redis (e.g. redis://127.0.0.1:6379)",
    )?;
    let mut cfg = cfg.clone();
    let run = format!("pbench{}", std::process::id());
    cfg.topic_prefix = format!("{}.{run}", cfg.topic_prefix);
    cfg.key_prefix = format!("{}:{run}", cfg.key_prefix);
    cfg.profile.group = format!("{run}-profile");
    cfg.profile.grpc_addr = "127.0.0.1:0".parse()?;
    let backends = crate::node::Backends::connect(&cfg).await?;
    let opts = mesh_profile::bench::BenchOptions {
        events: args.events,
        users: args.users,
        readers: args.readers,
    };
    let r = mesh_profile::bench::run(
        &cfg.profile,
        &backends.deps(&cfg),
        &url,
        &cfg.key_prefix,
        &run,
        &backends.broker_name(),
        &opts,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    crate::cmd_progress::print(&r, args.json)
}
