//! `mesh train churn` and `mesh report retention`.
//!
//! `train` reads every order event from the order topic (offset 0 to the end
//! offsets, read again until they agree), rebuilds per-user purchase histories the way the
//! churn service stores them, trains the calibrated classifier on a time
//! split ([`mesh_churn::training`]), and stores it where running churn
//! services pick it up without a restart ([`mesh_churn_svc::model`]).
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use mesh_churn::retention::IntervalMethod;
use mesh_churn::supervised::ModelKind;
use mesh_churn::training::{self, TrainConfig, TrainReport};
use mesh_proto::churn::v1::RetentionReportResponse;
use serde::Serialize;

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

/// What `mesh train churn` did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainChurnReport {
    /// Topic read.
    pub topic: String,
    /// Order events read (after dropping duplicate event ids).
    pub orders: usize,
    pub read_seconds: f64,
    pub train_seconds: f64,
    /// Where the model was stored.
    pub stored: String,
    /// Model artefact file, when `--out` was given.
    pub out: Option<PathBuf>,
    /// Version, split, rows and validation metrics.
    pub model: TrainReport,
}

impl fmt::Display for TrainChurnReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.model;
        writeln!(
            f,
            "churn model {} ({}{}) trained on {} orders of {} users from {} ({:.1} s read, {:.1} s train)",
            m.version,
            match m.kind {
                ModelKind::LogisticRegression => "logistic regression",
                ModelKind::RandomForest => "random forest",
            },
            if m.hybrid { " + BG/NBD features" } else { "" },
            self.orders,
            m.customers,
            self.topic,
            self.read_seconds,
            self.train_seconds
        )?;
        writeln!(
            f,
            "  label: no order in the next {} weeks; data end {}",
            m.horizon_weeks, m.data_end
        )?;
        writeln!(
            f,
            "  train      features at {}: {} rows, churn rate {:.3}",
            m.train_cutoff, m.train_rows, m.train_churn_rate
        )?;
        writeln!(
            f,
            "  validation features at {}: {} rows, churn rate {:.3}, AUC {:.3}, Brier {:.4} (Platt-calibrated on this fold)",
            m.validation_cutoff,
            m.validation_rows,
            m.validation_churn_rate,
            m.validation_auc,
            m.validation_brier
        )?;
        write!(f, "  stored in {}", self.stored)?;
        if let Some(p) = &self.out {
            write!(f, " and {}", p.display())?;
        }
        Ok(())
    }
}

/// Runs `mesh train churn`.
pub async fn train(cfg: &MeshConfig, args: &TrainArgs) -> anyhow::Result<()> {
    let report = train_report(cfg, args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
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
    let topic = cfg.topics().order_events.clone();
    let started = Instant::now();
    let (brokers, topics) = (backends.brokers.clone(), vec![topic.clone()]);
    let timeout = Duration::from_secs(args.read_timeout_secs);
    let reading = crate::cmd_progress::spinner("reading the order log: events");
    let tick = reading.clone();
    let events = tokio::task::spawn_blocking(move || {
        crate::log::read_log(&brokers, &topics, timeout, "train-churn", &|n| {
            tick.set_position(n)
        })
    })
    .await??;
    reading.finish_and_clear();
    let histories = mesh_churn_svc::summary::histories(&events);
    let read_seconds = started.elapsed().as_secs_f64();
    let orders = histories.iter().map(|h| h.purchases.len()).sum::<usize>();
    let now = match args.now {
        Some(d) => d,
        None => histories
            .iter()
            .filter_map(|h| h.purchases.last().map(|p| p.day))
            .max()
            .ok_or_else(|| {
                anyhow::anyhow!("no order_placed events on {topic}: nothing to train on")
            })?,
    };
    let config = TrainConfig {
        kind: args.kind,
        hybrid: args.hybrid,
        horizon_weeks: args.horizon_weeks,
        version: args
            .version
            .clone()
            .unwrap_or_else(|| format!("churn-{}", Utc::now().format("%Y%m%dT%H%M%S"))),
    };
    let started = Instant::now();
    let training_step = crate::cmd_progress::spinner("training the churn model");
    let trained =
        tokio::task::spawn_blocking(move || training::train(&histories, now, &config)).await?;
    training_step.finish_and_clear();
    let trained = trained?;
    let train_seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.out {
        std::fs::write(path, trained.to_json()?)
            .map_err(|e| anyhow::anyhow!("--out {}: {e}", path.display()))?;
    }
    mesh_churn_svc::model::store_supervised(&backends.store, &trained).await?;
    Ok(TrainChurnReport {
        topic,
        orders,
        read_seconds,
        train_seconds,
        stored: if cfg.redis_url.is_some() {
            format!(
                "Redis, scope {:?} key {:?}",
                mesh_churn_svc::model::MODEL_SCOPE,
                mesh_churn_svc::model::SUPERVISED_KEY
            )
        } else {
            "this process's in-memory store only (MESH_REDIS_URL is unset): \
             no running service sees it; use --out"
                .into()
        },
        out: args.out.clone(),
        model: trained.report,
    })
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

/// One arm of the retention experiment.
#[derive(Debug, Clone, Serialize)]
pub struct ArmReport {
    /// Alerted users in the arm.
    pub users: u64,
    /// Of them, users who ordered again after their first alert.
    pub returned: u64,
    pub rate: f64,
}

/// `mesh report retention`: return rates of alerted users, treated vs
/// holdout, and the lift with its confidence interval.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub action: String,
    pub holdout_share: f64,
    pub treated: ArmReport,
    pub holdout: ArmReport,
    /// False until both arms have users; the lift fields are then absent.
    pub ready: bool,
    /// treated rate - holdout rate.
    pub difference: Option<f64>,
    /// difference / holdout rate (absent when the holdout rate is 0).
    pub relative_lift: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub confidence: f64,
    pub method: String,
}

impl From<RetentionReportResponse> for RetentionReport {
    fn from(r: RetentionReportResponse) -> Self {
        let arm = |a: Option<mesh_proto::churn::v1::ArmOutcome>| {
            let a = a.unwrap_or_default();
            ArmReport {
                users: a.users,
                returned: a.returned,
                rate: a.rate,
            }
        };
        let ready = r.ready;
        let when = |v: f64| (ready && v.is_finite()).then_some(v);
        RetentionReport {
            action: r.action,
            holdout_share: r.holdout_share,
            treated: arm(r.treated),
            holdout: arm(r.holdout),
            ready,
            difference: when(r.difference),
            relative_lift: when(r.relative_lift),
            ci_low: when(r.ci_low),
            ci_high: when(r.ci_high),
            confidence: r.confidence,
            method: r.method,
        }
    }
}

impl fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "retention experiment: action {:?}, holdout share {:.2}",
            self.action, self.holdout_share
        )?;
        for (name, a) in [("treated", &self.treated), ("holdout", &self.holdout)] {
            writeln!(
                f,
                "  {name:<8} {:>7} alerted users, {:>7} returned, return rate {:.4}",
                a.users, a.returned, a.rate
            )?;
        }
        match (self.difference, self.ci_low, self.ci_high) {
            (Some(d), Some(lo), Some(hi)) => {
                write!(
                    f,
                    "  lift {:+.4} ({:.0}% CI {:+.4} .. {:+.4}, {})",
                    d,
                    100.0 * self.confidence,
                    lo,
                    hi,
                    self.method
                )?;
                if let Some(rel) = self.relative_lift {
                    write!(f, ", relative {:+.1}%", 100.0 * rel)?;
                }
                Ok(())
            }
            _ => write!(
                f,
                "  no lift yet: both arms need alerted users (treated {}, holdout {})",
                self.treated.users, self.holdout.users
            ),
        }
    }
}

/// Runs `mesh report retention`.
pub async fn report_retention(cfg: &MeshConfig, args: &RetentionArgs) -> anyhow::Result<()> {
    let backends = Backends::connect(cfg).await?;
    let report = retention_with(cfg, &backends, args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
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
    let deps = mesh_churn_svc::Deps {
        brokers: backends.brokers.clone(),
        topics: cfg.topics(),
        partitions: cfg.partitions,
        store: backends.store.clone(),
        producer: backends.producer.clone(),
        consumer_extra: cfg.consumer_extra.clone(),
        clock: Arc::new(mesh_churn::scoring::SystemClock),
        peers: Default::default(),
    };
    let r =
        mesh_churn_svc::report_retention(&cfg.churn, &deps, args.confidence, args.method).await?;
    Ok(r.into())
}
