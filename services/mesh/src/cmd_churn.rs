//! `mesh train churn` and `mesh report retention`: arguments, then the
//! churn service's library ([`mesh_churn_svc::training`],
//! [`mesh_churn_svc::report`]).
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use mesh_churn::retention::IntervalMethod;
use mesh_churn::supervised::ModelKind;
use mesh_churn_svc::report::RetentionReport;
use mesh_churn_svc::training::{self, TrainChurnReport, TrainOptions};

use crate::node::{Backends, MeshConfig};

/// Arguments of `mesh train churn`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Learner.
    #[arg(long, value_enum, default_value = "logistic-regression")]
    pub kind: ModelKind,
    /// Add BG/NBD P(alive), expected rate and P(purchase) as features.
    #[arg(long)]
    pub hybrid: bool,
    /// Leave out the behavioural features (logins, sessions, dwell, last
    /// activity, support messages, complaints from the user-event topic).
    #[arg(long)]
    pub purchases_only: bool,
    /// Label horizon N: churn = no order in the next N weeks. Training
    /// features are taken 2N weeks before the end of the log, validation
    /// (calibration) features N weeks before.
    #[arg(long, default_value_t = 13)]
    pub horizon_weeks: u32,
    /// End of the data (yyyy-mm-dd); default: the day of the latest order.
    #[arg(long)]
    pub now: Option<NaiveDate>,
    /// Model version; default `churn-<UTC timestamp>`.
    #[arg(long)]
    pub version: Option<String>,
    /// Also write the model artefact to this JSON file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Give up reading the event log after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub read_timeout_secs: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mesh train churn`.
pub async fn train(cfg: &MeshConfig, args: &TrainArgs) -> anyhow::Result<()> {
    let report = train_report(cfg, args).await?;
    crate::cmd_progress::print(&report, args.json)
}

/// Reads the log, trains, stores; the printed report.
pub async fn train_report(cfg: &MeshConfig, args: &TrainArgs) -> anyhow::Result<TrainChurnReport> {
    let backends = Backends::connect(cfg).await?;
    train_with(cfg, &backends, args).await
}

/// [`train_report`] on already connected backends (tests).
pub async fn train_with(
    cfg: &MeshConfig,
    backends: &Backends,
    args: &TrainArgs,
) -> anyhow::Result<TrainChurnReport> {
    let topics = cfg.topics();
    let read = vec![topics.order_events.clone(), topics.user_events.clone()];
    let topic = read.join(", ");
    let started = Instant::now();
    let (brokers, t) = (backends.brokers.clone(), read);
    let timeout = Duration::from_secs(args.read_timeout_secs);
    let reading = crate::cmd_progress::spinner("reading the order and user-event logs: events");
    let tick = reading.clone();
    let events = tokio::task::spawn_blocking(move || {
        training::read_events(&brokers, &t, timeout, &|n| tick.set_position(n))
    })
    .await??;
    reading.finish_and_clear();
    let opts = TrainOptions {
        kind: args.kind,
        hybrid: args.hybrid,
        behaviour: !args.purchases_only,
        horizon_weeks: args.horizon_weeks,
        now: args.now,
        version: args.version.clone(),
        out: args.out.clone(),
    };
    let read_seconds = started.elapsed().as_secs_f64();
    let training_step = crate::cmd_progress::spinner("training the churn model");
    let report =
        training::train_and_store(&backends.store, &topic, &events, read_seconds, &opts).await;
    training_step.finish_and_clear();
    Ok(report?)
}

/// Arguments of `mesh report retention`.
#[derive(clap::Args, Debug)]
pub struct RetentionArgs {
    /// Confidence level of the interval of the lift, in (0, 1).
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Interval method for the difference of return rates.
    #[arg(long, value_enum, default_value = "newcombe")]
    pub method: IntervalMethod,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mesh report retention`.
pub async fn report_retention(cfg: &MeshConfig, args: &RetentionArgs) -> anyhow::Result<()> {
    let backends = Backends::connect(cfg).await?;
    let report = retention_with(cfg, &backends, args).await?;
    crate::cmd_progress::print(&report, args.json)
}

/// The retention report on already connected backends (tests).
pub async fn retention_with(
    cfg: &MeshConfig,
    backends: &Backends,
    args: &RetentionArgs,
) -> anyhow::Result<RetentionReport> {
    if !(args.confidence > 0.0 && args.confidence < 1.0) {
        anyhow::bail!("--confidence must be in (0, 1), got {}", args.confidence);
    }
    let deps = backends.deps(cfg);
    let r =
        mesh_churn_svc::report_retention(&cfg.churn, &deps, args.confidence, args.method).await?;
    Ok(r.into())
}
