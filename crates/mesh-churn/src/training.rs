//! Training the supervised churn classifier from purchase histories with a time-based
//! split — what `mesh train churn` runs on the histories it reads from the order topic.
//!
//! With `now` the end of the data and `N` the label horizon in weeks:
//! - **train** rows are the customers seen by `now - 2N`, with features as of then and
//!   the label "no purchase in `(now - 2N, now - N]`";
//! - **validation** rows are the customers seen by `now - N`, with features as of then
//!   and the label "no purchase in `(now - N, now]`". The Platt calibration is fitted on
//!   this later fold and the reported AUC and Brier score are measured on it.
//!
//! The artefact ([`TrainedChurnModel`]) carries the horizon and the feature groups used
//! (BG/NBD, behavioural), so the service computes exactly the training features when it
//! scores: both sides call [`crate::features::features`].
//!
//! With behavioural features, [`train_with_activity`] also trains the purchase-only model
//! on the same folds and records its validation AUC, so the report shows what the
//! behaviour adds (or that it adds nothing).

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::behaviour::ActivityLog;
use crate::bgnbd::{self, BgNbdParams};
use crate::data::CustomerHistory;
use crate::error::{Error, Result};
use crate::features::{features, FeatureMatrix, FeatureSet};
use crate::supervised::{ChurnModel, ModelKind, TrainOptions};

/// What to train.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Learner.
    pub kind: ModelKind,
    /// Append BG/NBD P(alive), expected rate and P(purchase) to the features.
    pub hybrid: bool,
    /// Label horizon N in weeks: churn = no purchase in the next N weeks.
    pub horizon_weeks: u32,
    /// Version recorded in the artefact.
    pub version: String,
    /// Append the behavioural features (logins, sessions, dwell, last activity,
    /// support messages, complaints; see [`crate::behaviour`]).
    #[serde(default)]
    pub behaviour: bool,
}

impl TrainConfig {
    /// The feature groups of this configuration.
    pub fn feature_set(&self) -> FeatureSet {
        FeatureSet {
            hybrid: self.hybrid,
            behaviour: self.behaviour,
        }
    }
}

/// What training measured, printed by `mesh train churn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Model version.
    pub version: String,
    /// Learner.
    pub kind: ModelKind,
    /// BG/NBD features used.
    pub hybrid: bool,
    /// Behavioural features used.
    #[serde(default)]
    pub behaviour: bool,
    /// Validation AUC of the same learner without the behavioural features, on the
    /// same folds (only when `behaviour`): what the behaviour adds.
    #[serde(default)]
    pub purchase_only_validation_auc: Option<f64>,
    /// Customers (with a purchase) that have any behavioural activity in the data.
    #[serde(default)]
    pub customers_with_activity: usize,
    /// Label horizon in weeks.
    pub horizon_weeks: u32,
    /// Customers in the histories.
    pub customers: usize,
    /// End of the data (`now`).
    pub data_end: NaiveDate,
    /// Feature snapshot of the training fold (`now - 2N`).
    pub train_cutoff: NaiveDate,
    /// Feature snapshot of the validation fold (`now - N`).
    pub validation_cutoff: NaiveDate,
    /// Training rows.
    pub train_rows: usize,
    /// Validation rows.
    pub validation_rows: usize,
    /// Share of churners (positive label) in the training fold.
    pub train_churn_rate: f64,
    /// Share of churners in the validation fold.
    pub validation_churn_rate: f64,
    /// ROC-AUC on the validation fold (later in time than training).
    pub validation_auc: f64,
    /// Brier score of the calibrated probabilities on the validation fold.
    pub validation_brier: f64,
    /// Feature names in model order.
    pub features: Vec<String>,
}

/// A trained classifier with what is needed to score a customer the way it was trained.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrainedChurnModel {
    /// The calibrated classifier.
    pub model: ChurnModel,
    /// Training report (horizon, hybrid, metrics).
    pub report: TrainReport,
}

impl TrainedChurnModel {
    /// Calibrated probability that `c` makes no purchase in the next
    /// `report.horizon_weeks` weeks after `today`; `None` before the first purchase.
    /// `bg` is used only by hybrid models.
    pub fn churn_probability(
        &self,
        c: &CustomerHistory,
        today: NaiveDate,
        bg: &BgNbdParams,
    ) -> Result<Option<f64>> {
        self.churn_probability_with(c, None, today, bg)
    }

    /// [`TrainedChurnModel::churn_probability`] with the customer's behavioural
    /// activity (used only by models trained with behavioural features; `None` is an
    /// empty log).
    pub fn churn_probability_with(
        &self,
        c: &CustomerHistory,
        activity: Option<&ActivityLog>,
        today: NaiveDate,
        bg: &BgNbdParams,
    ) -> Result<Option<f64>> {
        let h = f64::from(self.report.horizon_weeks);
        let Some(row) = features(c, activity, today, self.feature_set(), bg, h)? else {
            return Ok(None);
        };
        let m = FeatureMatrix::new(self.feature_set().names(), vec![row])?;
        Ok(self.model.predict_proba(&m)?.first().copied())
    }

    /// The feature groups the model was trained on.
    pub fn feature_set(&self) -> FeatureSet {
        FeatureSet {
            hybrid: self.report.hybrid,
            behaviour: self.report.behaviour,
        }
    }

    /// JSON artefact.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parses an artefact written by [`TrainedChurnModel::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        let t: Self = serde_json::from_str(text)?;
        // Re-check the inner format version the way a bare model load does.
        ChurnModel::from_json(&serde_json::to_string(&t.model)?)?;
        Ok(t)
    }
}

/// One fold: features as of `cutoff` for every customer seen by then, label "no purchase
/// in `(cutoff, cutoff + horizon]`".
fn fold(
    histories: &[CustomerHistory],
    activity: &HashMap<String, ActivityLog>,
    cutoff: NaiveDate,
    horizon_days: i64,
    set: FeatureSet,
    what: &str,
) -> Result<(FeatureMatrix, Vec<bool>)> {
    let seen: Vec<&CustomerHistory> = histories
        .iter()
        .filter(|c| c.first_day().is_some_and(|d| d <= cutoff))
        .collect();
    if seen.len() < 20 {
        return Err(Error::InvalidInput(format!(
            "{what} fold: only {} customers bought on or before {cutoff}; need at least 20 \
             (more history, or a shorter --horizon-weeks)",
            seen.len()
        )));
    }
    let bg = if set.hybrid {
        let rfm: Vec<_> = seen.iter().filter_map(|c| c.rfm(cutoff)).collect();
        bgnbd::fit(&rfm)?.params
    } else {
        // Not used without BG/NBD features.
        crate::sim::CDNOW_FIT
    };
    let h = horizon_days as f64 / crate::data::DAYS_PER_WEEK;
    let mut rows = Vec::with_capacity(seen.len());
    let mut labels = Vec::with_capacity(seen.len());
    for c in seen {
        if let Some(row) = features(c, activity.get(&c.id), cutoff, set, &bg, h)? {
            rows.push(row);
            labels.push(c.count_between(cutoff, cutoff + Duration::days(horizon_days)) == 0);
        }
    }
    let churners = labels.iter().filter(|l| **l).count();
    if churners == 0 || churners == labels.len() {
        return Err(Error::InvalidInput(format!(
            "{what} fold at {cutoff}: all {} customers have the same label (churned: {}); \
             the data must hold both returning and lapsing customers",
            labels.len(),
            churners > 0
        )));
    }
    Ok((FeatureMatrix::new(set.names(), rows)?, labels))
}

fn share(labels: &[bool]) -> f64 {
    labels.iter().filter(|l| **l).count() as f64 / labels.len().max(1) as f64
}

/// Trains and calibrates the classifier on a time split ending at `now`, from purchase
/// histories only (no behavioural activity).
pub fn train(
    histories: &[CustomerHistory],
    now: NaiveDate,
    config: &TrainConfig,
) -> Result<TrainedChurnModel> {
    train_with_activity(histories, &HashMap::new(), now, config)
}

/// [`train`] with each customer's behavioural activity, by customer id. With
/// `config.behaviour` the purchase-only model is trained on the same folds too and its
/// validation AUC recorded in the report.
pub fn train_with_activity(
    histories: &[CustomerHistory],
    activity: &HashMap<String, ActivityLog>,
    now: NaiveDate,
    config: &TrainConfig,
) -> Result<TrainedChurnModel> {
    let mut trained = train_one(histories, activity, now, config)?;
    if config.behaviour {
        let purchase_only = TrainConfig {
            behaviour: false,
            ..config.clone()
        };
        let base = train_one(histories, activity, now, &purchase_only)?;
        trained.report.purchase_only_validation_auc = Some(base.report.validation_auc);
    }
    trained.report.customers_with_activity = histories
        .iter()
        .filter(|c| activity.get(&c.id).is_some_and(|a| !a.days.is_empty()))
        .count();
    Ok(trained)
}

fn train_one(
    histories: &[CustomerHistory],
    activity: &HashMap<String, ActivityLog>,
    now: NaiveDate,
    config: &TrainConfig,
) -> Result<TrainedChurnModel> {
    let set = config.feature_set();
    if config.horizon_weeks == 0 {
        return Err(Error::InvalidInput(
            "horizon_weeks must be at least 1".into(),
        ));
    }
    let days = i64::from(config.horizon_weeks) * 7;
    let validation_cutoff = now - Duration::days(days);
    let train_cutoff = validation_cutoff - Duration::days(days);
    let (train_x, train_y) = fold(histories, activity, train_cutoff, days, set, "training")?;
    let (valid_x, valid_y) = fold(
        histories,
        activity,
        validation_cutoff,
        days,
        set,
        "validation",
    )?;
    let options = TrainOptions {
        kind: config.kind,
        version: config.version.clone(),
        label: format!("no purchase in the next {} weeks", config.horizon_weeks),
        ..TrainOptions::default()
    };
    let model = ChurnModel::train(&train_x, &train_y, &valid_x, &valid_y, &options)?;
    let report = TrainReport {
        version: config.version.clone(),
        kind: config.kind,
        hybrid: config.hybrid,
        behaviour: config.behaviour,
        purchase_only_validation_auc: None,
        customers_with_activity: 0,
        horizon_weeks: config.horizon_weeks,
        customers: histories.len(),
        data_end: now,
        train_cutoff,
        validation_cutoff,
        train_rows: model.metrics.train_rows,
        validation_rows: model.metrics.validation_rows,
        train_churn_rate: share(&train_y),
        validation_churn_rate: share(&valid_y),
        validation_auc: model.metrics.validation_auc,
        validation_brier: model.metrics.validation_brier,
        features: model.feature_names.clone(),
    };
    Ok(TrainedChurnModel { model, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::PurchaseLog;

    /// Customers who buy every `gap` days from day `start` until day `stop`.
    fn log() -> PurchaseLog {
        let day0 = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let mut text = String::new();
        for i in 0..120u32 {
            let gap = 5 + (i % 7) * 4;
            let stop = if i % 3 == 0 { 60 + i } else { 400 };
            let mut d = i % 30;
            while d <= stop.min(300) {
                let day = day0 + Duration::days(i64::from(d));
                text.push_str(&format!("c{i} {} 1 {}\n", day.format("%Y%m%d"), 10 + i % 5));
                d += gap;
            }
        }
        PurchaseLog::parse(&text).unwrap()
    }

    #[test]
    fn time_split_training_ranks_lapsed_customers_and_round_trips() {
        let log = log();
        let now = NaiveDate::from_ymd_opt(2024, 10, 27).unwrap();
        for hybrid in [false, true] {
            let cfg = TrainConfig {
                kind: ModelKind::LogisticRegression,
                hybrid,
                horizon_weeks: 8,
                version: "t1".into(),
                behaviour: false,
            };
            let t = train(&log.customers, now, &cfg).unwrap();
            let r = &t.report;
            assert_eq!(r.validation_cutoff, now - Duration::weeks(8));
            assert_eq!(r.train_cutoff, now - Duration::weeks(16));
            assert!(r.validation_auc > 0.8, "{r:?}");
            assert!(r.train_churn_rate > 0.0 && r.train_churn_rate < 1.0);
            let back = TrainedChurnModel::from_json(&t.to_json().unwrap()).unwrap();
            assert_eq!(back.report, t.report);
            let bg = BgNbdParams {
                r: 0.243,
                alpha: 4.414,
                a: 0.793,
                b: 2.426,
            };
            // A customer who stopped long ago is riskier than a regular buyer.
            let lapsed = &log.customers.iter().find(|c| c.id == "c3").unwrap();
            let regular = &log.customers.iter().find(|c| c.id == "c1").unwrap();
            let p_lapsed = back.churn_probability(lapsed, now, &bg).unwrap().unwrap();
            let p_regular = back.churn_probability(regular, now, &bg).unwrap().unwrap();
            assert!(p_lapsed > p_regular, "{p_lapsed} vs {p_regular}");
        }
    }

    #[test]
    fn too_little_history_names_the_fold() {
        let log = log();
        let cfg = TrainConfig {
            kind: ModelKind::LogisticRegression,
            hybrid: false,
            horizon_weeks: 40,
            version: "t".into(),
            behaviour: false,
        };
        let now = NaiveDate::from_ymd_opt(2024, 10, 27).unwrap();
        let e = train(&log.customers, now, &cfg).unwrap_err().to_string();
        assert!(e.contains("training fold"), "{e}");
        let cfg = TrainConfig {
            horizon_weeks: 0,
            ..cfg
        };
        assert!(train(&log.customers, now, &cfg)
            .unwrap_err()
            .to_string()
            .contains("horizon_weeks"));
    }
}
