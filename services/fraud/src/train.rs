//! `mesh train fraud`: gradient-boosted trees (the policy's model), logistic
//! regression and random forest (plus the isolation forest) from labelled history, with a time split, written as
//! one versioned models file the service swaps in without a restart.
//!
//! Labelled history comes from two sources, kept apart for the split:
//! - **review labels**: every `ResolveReview` stored a [`pb::LabelRecord`]
//!   holding the features the order was decided on; they are read from the
//!   store (the same code as `ListLabels`) or over gRPC, and ordered by the
//!   order's event time;
//! - **simulator labels** (`--simulate N`): the labelled simulator streamed
//!   through the live feature code, in event-time order.
//!
//! Each source is split by time on its own (earliest share trains, latest
//! is held out), so simulated days and real days never decide each other's
//! split. The saved models are those trained on the training part and
//! measured on the holdout: the numbers printed are the numbers of the file.
use mesh_fraud::eval::{build_dataset, fit_policy};
use mesh_fraud::metrics::Metrics;
use mesh_fraud::{FeatureVector, PolicyConfig, PolicyModels, RuleSet, SimParams, TrainParams};
use mesh_proto::fraud::v1 as pb;
use mesh_store::StateStore;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::write_atomically;

/// One labelled order.
#[derive(Debug, Clone)]
pub struct LabelledRow {
    /// Event time of the order, Unix ms (simulator: seconds × 1000).
    pub at_ms: i64,
    /// Features in [`mesh_fraud::FEATURE_NAMES`] order.
    pub features: Vec<f64>,
    /// Fraud or not.
    pub fraud: bool,
}

/// Rows of a label listing; records whose features do not have the current
/// feature count (written by another feature version) are skipped and
/// counted.
pub fn rows_from_labels(records: &[pb::LabelRecord]) -> (Vec<LabelledRow>, usize) {
    let mut rows = Vec::with_capacity(records.len());
    let mut skipped = 0;
    for r in records {
        let Some(item) = &r.item else {
            skipped += 1;
            continue;
        };
        if item.features.len() != mesh_fraud::FEATURE_NAMES.len() {
            skipped += 1;
            continue;
        }
        rows.push(LabelledRow {
            at_ms: item.decision.as_ref().map_or(0, |d| d.occurred_at_ms),
            features: item.features.clone(),
            fraud: r.label() == pb::Label::Fraud,
        });
    }
    (rows, skipped)
}

/// Every review label in the store, all pages.
pub async fn labels_from_store(
    store: &StateStore,
    partitions: i32,
) -> Result<Vec<pb::LabelRecord>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = crate::review::list_labels(store, partitions, 1000, &token).await?;
        out.extend(page.labels);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// Every review label of a running fraud service, over gRPC `ListLabels`
/// (page by page). `addr` is `host:port` or a URL.
pub async fn labels_over_grpc(addr: &str) -> Result<Vec<pb::LabelRecord>> {
    use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let unavailable =
        |e: String| Error::Bus(mesh_bus::Error::Unavailable(format!("--addr {url}: {e}")));
    let ch = mesh_runtime::tls::endpoint(&url)
        .map_err(|e| unavailable(e.to_string()))?
        .connect()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut client = FraudServiceClient::new(mesh_runtime::auth::client(ch));
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_labels(pb::ListLabelsRequest {
                tenant_id: String::new(),
                page_size: 1000,
                page_token: token,
            })
            .await
            .map_err(|s| unavailable(s.message().to_string()))?
            .into_inner();
        out.extend(page.labels);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// Simulator rows of `users` accounts over `days` days (seeded).
pub fn rows_from_simulator(users: usize, days: u32, seed: u64) -> Result<Vec<LabelledRow>> {
    let ds = build_dataset(&SimParams {
        users,
        days,
        seed,
        ..SimParams::default()
    })?;
    // The dataset is in event-time order; the index stands in for the time.
    Ok(ds
        .features
        .into_iter()
        .zip(ds.labels)
        .enumerate()
        .map(|(i, (f, fraud))| LabelledRow {
            at_ms: i as i64,
            features: f.0,
            fraud,
        })
        .collect())
}

/// Options of one training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Share of each source (earliest by time) used for training.
    pub train_share: f64,
    /// Version tag written into the models.
    pub version: String,
    /// Hyper-parameters.
    pub params: TrainParams,
}

/// Rows per source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceCounts {
    pub source: String,
    pub rows: usize,
    pub fraud: usize,
    pub train: usize,
    pub holdout: usize,
}

/// What a training run did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub version: String,
    pub sources: Vec<SourceCounts>,
    pub train_rows: usize,
    pub train_fraud: usize,
    pub holdout_rows: usize,
    pub holdout_fraud: usize,
    /// Holdout metrics of the logistic regression, the forest, the
    /// gradient-boosted trees and the policy score (the primary model,
    /// trees by default, blended with the anomaly score, plus rule boosts of
    /// the default rules); `None` when the holdout lacks a class.
    pub logistic: Option<Metrics>,
    pub forest: Option<Metrics>,
    pub gbdt: Option<Metrics>,
    pub policy: Option<Metrics>,
    /// The policy's model (`logistic`, `forest`, `blend` or `gbdt`).
    pub policy_model: String,
    /// Each candidate's PR-AUC on the latest tenth of the training part,
    /// fitted on the rest, that chose `policy_model` (empty when that tenth
    /// has too few fraud orders to choose by, and the forest is kept).
    pub model_selection: Vec<(String, f64)>,
    pub train_secs: f64,
    /// Where the models were written.
    pub saved: Option<String>,
}

/// Splits each source by time, trains on the earlier parts, measures on the
/// later ones and, with `out`, writes the models atomically.
pub fn train_and_save(
    sources: Vec<(String, Vec<LabelledRow>)>,
    opts: &TrainOptions,
    out: Option<&std::path::Path>,
) -> Result<TrainReport> {
    if !(0.0 < opts.train_share && opts.train_share < 1.0) {
        return Err(Error::invalid(
            "train_share",
            format!("must be within (0, 1), got {}", opts.train_share),
        ));
    }
    let (mut train_x, mut train_y, mut test_x, mut test_y) = (vec![], vec![], vec![], vec![]);
    let mut counts = Vec::new();
    for (name, mut rows) in sources {
        rows.sort_by_key(|r| r.at_ms);
        let split = ((rows.len() as f64) * opts.train_share).round() as usize;
        counts.push(SourceCounts {
            source: name,
            rows: rows.len(),
            fraud: rows.iter().filter(|r| r.fraud).count(),
            train: split,
            holdout: rows.len() - split,
        });
        for (i, r) in rows.into_iter().enumerate() {
            let (x, y) = if i < split {
                (&mut train_x, &mut train_y)
            } else {
                (&mut test_x, &mut test_y)
            };
            x.push(FeatureVector(r.features));
            y.push(r.fraud);
        }
    }
    let train_fraud = train_y.iter().filter(|y| **y).count();
    if train_fraud == 0 || train_fraud == train_y.len() {
        return Err(Error::invalid(
            "labels",
            format!(
                "training needs fraud and legitimate orders; the training part has {} rows, {train_fraud} fraud \
                 (resolve more reviews, or add simulator labels with --simulate N)",
                train_y.len()
            ),
        ));
    }
    let started = std::time::Instant::now();
    let params = TrainParams {
        version: opts.version.clone(),
        ..opts.params.clone()
    };
    let policy = fit_policy(&train_x, &train_y, &params, PolicyConfig::default())?;
    let train_secs = started.elapsed().as_secs_f64();
    let holdout_fraud = test_y.iter().filter(|y| **y).count();
    let measurable = holdout_fraud > 0 && holdout_fraud < test_y.len();
    let model = policy.model.as_ref().expect("fitted above");
    let policy_model = model.primary.name().to_string();
    let model_selection = model
        .selection
        .iter()
        .map(|(k, v)| (k.name().to_string(), *v))
        .collect();
    let (mut logistic, mut forest, mut gbdt, mut pol) = (None, None, None, None);
    if measurable {
        let lr: Vec<f64> = test_x
            .iter()
            .map(|f| model.score_lr(&f.0))
            .collect::<mesh_fraud::Result<_>>()?;
        let rows: Vec<Vec<f64>> = test_x.iter().map(|f| f.0.clone()).collect();
        let rf = model.score_rf_batch(&rows)?;
        let gb: Vec<f64> = test_x
            .iter()
            .map(|f| model.score_gbdt(&f.0))
            .collect::<mesh_fraud::Result<_>>()?;
        let rules = RuleSet::default_rules();
        let ps: Vec<f64> = test_x
            .iter()
            .map(|f| policy.decide(f, &rules).map(|d| d.score))
            .collect::<mesh_fraud::Result<_>>()?;
        logistic = Some(Metrics::compute(&lr, &test_y));
        forest = Some(Metrics::compute(&rf, &test_y));
        gbdt = Some(Metrics::compute(&gb, &test_y));
        pol = Some(Metrics::compute(&ps, &test_y));
    }
    let saved = match out {
        Some(path) => {
            write_atomically(path, &PolicyModels::json_of(&policy)?)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    Ok(TrainReport {
        version: opts.version.clone(),
        sources: counts,
        train_rows: train_y.len(),
        train_fraud,
        holdout_rows: test_y.len(),
        holdout_fraud,
        logistic,
        forest,
        gbdt,
        policy: pol,
        policy_model,
        model_selection,
        train_secs,
        saved,
    })
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "fraud models {}", self.version)?;
        for s in &self.sources {
            writeln!(
                f,
                "  {:<10} {:>7} orders, {:>6} fraud; train {:>7}, holdout {:>7} (latest by time)",
                s.source, s.rows, s.fraud, s.train, s.holdout
            )?;
        }
        writeln!(
            f,
            "  train {} ({} fraud) in {:.1} s; holdout {} ({} fraud)",
            self.train_rows,
            self.train_fraud,
            self.train_secs,
            self.holdout_rows,
            self.holdout_fraud
        )?;
        write!(f, "  policy model: {}", self.policy_model)?;
        if self.model_selection.is_empty() {
            writeln!(
                f,
                " (too few fraud orders in the latest tenth of the training part to choose by)"
            )?;
        } else {
            let picks: Vec<String> = self
                .model_selection
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
            writeln!(
                f,
                " (PR-AUC on the latest tenth of the training part: {})",
                picks.join(", ")
            )?;
        }
        for (name, m) in [
            ("logistic", &self.logistic),
            ("forest", &self.forest),
            ("gbdt", &self.gbdt),
            ("policy", &self.policy),
        ] {
            match m {
                Some(m) => writeln!(
                    f,
                    "  {name:<9} ROC-AUC {:.3}  PR-AUC {:.3}  precision@1% {:.3}  recall@1%FPR {:.3}",
                    m.roc_auc, m.pr_auc, m.precision_at_1pct, m.recall_at_1pct_fpr
                )?,
                None => writeln!(f, "  {name:<9} not measured: the holdout lacks a class")?,
            }
        }
        match &self.saved {
            Some(p) => writeln!(
                f,
                "  written to {p} (the service swaps it in without a restart)"
            ),
            None => writeln!(f, "  not written (no --out and no MESH_FRAUD_MODEL)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> TrainOptions {
        TrainOptions {
            train_share: 0.8,
            version: "t".into(),
            params: TrainParams {
                n_trees: 10,
                ..TrainParams::default()
            },
        }
    }

    #[test]
    fn one_class_is_refused_naming_the_labels() {
        let rows = (0..20)
            .map(|i| LabelledRow {
                at_ms: i,
                features: vec![0.0; mesh_fraud::FEATURE_NAMES.len()],
                fraud: false,
            })
            .collect();
        let e = train_and_save(vec![("review".into(), rows)], &opts(), None).unwrap_err();
        assert!(e.to_string().starts_with("labels:"), "{e}");
    }

    #[test]
    fn label_records_become_rows_and_foreign_feature_counts_are_skipped() {
        let rec = |n: usize, label: pb::Label, at: i64| pb::LabelRecord {
            item: Some(pb::ReviewItem {
                decision: Some(pb::Decision {
                    occurred_at_ms: at,
                    ..Default::default()
                }),
                features: vec![1.0; n],
            }),
            label: label as i32,
            ..Default::default()
        };
        let n = mesh_fraud::FEATURE_NAMES.len();
        let (rows, skipped) = rows_from_labels(&[
            rec(n, pb::Label::Fraud, 5),
            rec(n - 1, pb::Label::Legit, 6),
            rec(n, pb::Label::Legit, 7),
        ]);
        assert_eq!(skipped, 1);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].fraud && !rows[1].fraud);
        assert_eq!((rows[0].at_ms, rows[1].at_ms), (5, 7));
    }
}
