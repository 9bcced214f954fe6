//! The churn training pipeline behind `mesh train churn`: read every event
//! from the order and user-event topics (offset 0 to the end offsets, read
//! again until they agree), rebuild per-user purchase histories and daily
//! behaviour the way the service stores them ([`crate::summary::histories`],
//! [`crate::summary::activities`]), train the calibrated classifier on a
//! time split ([`mesh_churn::training`]; with behavioural features the
//! purchase-only model is trained on the same folds for comparison), and
//! store it where running churn services pick it up without a restart
//! ([`crate::model`]).
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use mesh_churn::supervised::ModelKind;
use mesh_churn::training::{self, TrainConfig, TrainReport};
use mesh_proto::events::v1::Envelope;
use mesh_store::StateStore;
use prost::Message as _;
use serde::Serialize;

use crate::error::{Error, Result};

/// What to train and where else to write it.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub kind: ModelKind,
    /// Add BG/NBD P(alive), expected rate and P(purchase) as features.
    pub hybrid: bool,
    /// Add the behavioural features (logins, sessions, dwell, last
    /// activity, support messages, complaints).
    pub behaviour: bool,
    /// Label horizon N: churn = no order in the next N weeks.
    pub horizon_weeks: u32,
    /// End of the data; `None`: the day of the latest order.
    pub now: Option<NaiveDate>,
    /// Model version; `None`: `churn-<UTC timestamp>`.
    pub version: Option<String>,
    /// Also write the model artefact to this JSON file.
    pub out: Option<PathBuf>,
}

/// What `mesh train churn` did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainChurnReport {
    /// Topic read.
    pub topic: String,
    /// Purchase days (one per user and UTC day) in the histories.
    pub orders: usize,
    /// Behavioural events (logins, sessions, views, support messages,
    /// complaints) read, after dropping duplicate event ids.
    pub behaviour_events: usize,
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
            "churn model {} ({}{}{}) trained on {} purchase days of {} users and {} behavioural events from {} ({:.1} s read, {:.1} s train)",
            m.version,
            match m.kind {
                ModelKind::LogisticRegression => "logistic regression",
                ModelKind::RandomForest => "random forest",
            },
            if m.hybrid { " + BG/NBD features" } else { "" },
            if m.behaviour { " + behavioural features" } else { "" },
            self.orders,
            m.customers,
            self.behaviour_events,
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
        if m.behaviour {
            match m.purchase_only_validation_auc {
                Some(base) => writeln!(
                    f,
                    "  behaviour: validation AUC {:.3} with behavioural features vs {:.3} purchases only ({:+.3}); {} of {} users have behavioural events",
                    m.validation_auc,
                    base,
                    m.validation_auc - base,
                    m.customers_with_activity,
                    m.customers
                )?,
                None => writeln!(f, "  behaviour: purchase-only AUC not measured")?,
            }
        }
        write!(f, "  stored in {}", self.stored)?;
        if let Some(p) = &self.out {
            write!(f, " and {}", p.display())?;
        }
        Ok(())
    }
}

/// Every envelope of `topic`, from offset 0 to its end. Blocking (call it
/// on a blocking thread); `progress` gets the events read so far.
pub fn read_orders(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    progress: &dyn Fn(u64),
) -> Result<Vec<Envelope>> {
    read_events(brokers, &[topic.to_string()], timeout, progress)
}

/// Every envelope of `topics` (the order and user-event topics), from
/// offset 0 to their ends, keeping only the events training uses (orders
/// and behavioural signals). Blocking; `progress` gets the events read.
pub fn read_events(
    brokers: &str,
    topics: &[String],
    timeout: Duration,
    progress: &dyn Fn(u64),
) -> Result<Vec<Envelope>> {
    use mesh_proto::events::v1::envelope::Body;
    let keep = |e: &Envelope| match &e.body {
        Some(Body::OrderPlaced(_)) => true,
        Some(b) => crate::summary::signal(b).is_some(),
        None => false,
    };
    Ok(mesh_bus::log::read_log(
        brokers,
        topics,
        timeout,
        "train-churn",
        |b| Envelope::decode(b).ok().filter(keep),
        progress,
    )?)
}

/// Trains on `events` (read from `topic` in `read_seconds`) and stores the
/// model in `store` for the running services.
pub async fn train_and_store(
    store: &StateStore,
    topic: &str,
    events: &[Envelope],
    read_seconds: f64,
    opts: &TrainOptions,
) -> Result<TrainChurnReport> {
    let histories = crate::summary::histories(events);
    let activity = crate::summary::activities(events);
    let orders = histories.iter().map(|h| h.purchases.len()).sum::<usize>();
    let behaviour_events = {
        let mut ids = std::collections::HashSet::new();
        events
            .iter()
            .filter(|e| e.body.as_ref().and_then(crate::summary::signal).is_some())
            .filter(|e| e.event_id.is_empty() || ids.insert(e.event_id.as_str()))
            .count()
    };
    let now = match opts.now {
        Some(d) => d,
        None => histories
            .iter()
            .filter_map(|h| h.purchases.last().map(|p| p.day))
            .max()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no order_placed events on {topic}: nothing to train on"
                ))
            })?,
    };
    let config = TrainConfig {
        kind: opts.kind,
        hybrid: opts.hybrid,
        behaviour: opts.behaviour,
        horizon_weeks: opts.horizon_weeks,
        version: opts
            .version
            .clone()
            .unwrap_or_else(|| format!("churn-{}", Utc::now().format("%Y%m%dT%H%M%S"))),
    };
    let started = Instant::now();
    let trained = tokio::task::spawn_blocking(move || {
        training::train_with_activity(&histories, &activity, now, &config)
    })
    .await
    .map_err(|e| Error::Training(format!("training task: {e}")))??;
    let train_seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &opts.out {
        std::fs::write(path, trained.to_json()?)
            .map_err(|e| Error::Training(format!("--out {}: {e}", path.display())))?;
    }
    crate::model::store_supervised(store, &trained).await?;
    Ok(TrainChurnReport {
        topic: topic.to_string(),
        orders,
        behaviour_events,
        read_seconds,
        train_seconds,
        stored: match store {
            StateStore::Redis(_) => format!(
                "Redis, scope {:?} key {:?}",
                crate::model::MODEL_SCOPE,
                crate::model::SUPERVISED_KEY
            ),
            _ => "this process's in-memory store only (MESH_REDIS_URL is unset): \
                  no running service sees it; use --out"
                .into(),
        },
        out: opts.out.clone(),
        model: trained.report,
    })
}
