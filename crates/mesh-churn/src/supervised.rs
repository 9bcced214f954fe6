//! Supervised churn classifier over named features: smartcore logistic regression or a
//! random forest, with Platt calibration fitted on a separate (later-in-time) fold.
//! The model is versioned and serialises to JSON.
//!
//! smartcore 0.7's random forest *classifier* has no `predict_proba`, so the forest is
//! a `RandomForestRegressor` on 0/1 labels: the mean of leaf frequencies, i.e. a
//! probability forest. Logistic regression coefficients are copied out of smartcore so
//! the scoring path is a dot product.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use crate::error::{Error, Result};
use crate::features::FeatureMatrix;
use crate::metrics::roc_auc;

/// Serialisation format version of [`ChurnModel`].
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// Which learner to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// L2-regularised logistic regression on standardised features.
    LogisticRegression,
    /// Probability forest (random forest regression on 0/1 labels).
    RandomForest,
}

/// Training options.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Learner.
    pub kind: ModelKind,
    /// Free-form model version recorded in the artefact (e.g. a date or git sha).
    pub version: String,
    /// What the positive label means, recorded in the artefact.
    pub label: String,
    /// Trees in the forest.
    pub n_trees: usize,
    /// Minimum samples per forest leaf (smooths probabilities).
    pub min_samples_leaf: usize,
    /// Maximum tree depth.
    pub max_depth: Option<u16>,
    /// Seed for the forest.
    pub seed: u64,
    /// L2 penalty for logistic regression.
    pub l2: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            kind: ModelKind::LogisticRegression,
            version: "0".into(),
            label: "churn: no purchase in the next N periods".into(),
            n_trees: 100,
            min_samples_leaf: 10,
            max_depth: Some(8),
            seed: 7,
            l2: 1e-3,
        }
    }
}

/// `p = sigmoid(a * score + b)` where `score` is the raw model's log-odds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    /// Slope.
    pub a: f64,
    /// Intercept.
    pub b: f64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Estimator {
    Logistic {
        coefficients: Vec<f64>,
        intercept: f64,
    },
    Forest(RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>),
}

/// Quality measured while training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainMetrics {
    /// Training rows.
    pub train_rows: usize,
    /// Validation (calibration) rows.
    pub validation_rows: usize,
    /// ROC-AUC on the validation fold.
    pub validation_auc: f64,
    /// Brier score of the calibrated probabilities on the validation fold.
    pub validation_brier: f64,
}

/// A trained, calibrated, versioned churn classifier.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChurnModel {
    /// [`MODEL_FORMAT_VERSION`] at training time.
    pub format_version: u32,
    /// Caller-supplied version.
    pub version: String,
    /// Learner.
    pub kind: ModelKind,
    /// Meaning of the positive label.
    pub label: String,
    /// Feature names, in the column order the model expects.
    pub feature_names: Vec<String>,
    means: Vec<f64>,
    scales: Vec<f64>,
    estimator: Estimator,
    /// Platt calibration fitted on the validation fold.
    pub calibration: Platt,
    /// Validation metrics.
    pub metrics: TrainMetrics,
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn dense(rows: &[Vec<f64>]) -> Result<DenseMatrix<f64>> {
    Ok(DenseMatrix::from_2d_vec(&rows.to_vec())?)
}

impl ChurnModel {
    /// Trains on `train`, fits the Platt calibration on `validation` (which should be a
    /// later time window than `train`), and records validation metrics.
    pub fn train(
        train: &FeatureMatrix,
        train_labels: &[bool],
        validation: &FeatureMatrix,
        validation_labels: &[bool],
        options: &TrainOptions,
    ) -> Result<Self> {
        if train.names != validation.names {
            return Err(Error::InvalidInput(
                "train and validation feature names differ".into(),
            ));
        }
        check_labels(train, train_labels, "train")?;
        check_labels(validation, validation_labels, "validation")?;
        let k = train.names.len();
        let n = train.len() as f64;
        let means: Vec<f64> = (0..k)
            .map(|j| train.rows.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let scales: Vec<f64> = (0..k)
            .map(|j| {
                let v = train
                    .rows
                    .iter()
                    .map(|r| (r[j] - means[j]).powi(2))
                    .sum::<f64>()
                    / n;
                if v > 0.0 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let mut model = Self {
            format_version: MODEL_FORMAT_VERSION,
            version: options.version.clone(),
            kind: options.kind,
            label: options.label.clone(),
            feature_names: train.names.clone(),
            means,
            scales,
            estimator: Estimator::Logistic {
                coefficients: vec![],
                intercept: 0.0,
            },
            calibration: Platt { a: 1.0, b: 0.0 },
            metrics: TrainMetrics {
                train_rows: train.len(),
                validation_rows: validation.len(),
                validation_auc: f64::NAN,
                validation_brier: f64::NAN,
            },
        };
        let x = dense(&model.standardise(&train.rows))?;
        model.estimator = match options.kind {
            ModelKind::LogisticRegression => {
                let y: Vec<u32> = train_labels.iter().map(|l| u32::from(*l)).collect();
                let lr = LogisticRegression::fit(
                    &x,
                    &y,
                    LogisticRegressionParameters::default().with_alpha(options.l2),
                )?;
                Estimator::Logistic {
                    coefficients: lr.coefficients().iterator(0).copied().collect(),
                    intercept: *lr.intercept().get((0, 0)),
                }
            }
            ModelKind::RandomForest => {
                let y: Vec<f64> = train_labels
                    .iter()
                    .map(|l| f64::from(u8::from(*l)))
                    .collect();
                let mut params = RandomForestRegressorParameters::default()
                    .with_n_trees(options.n_trees)
                    .with_min_samples_leaf(options.min_samples_leaf)
                    .with_seed(options.seed);
                if let Some(d) = options.max_depth {
                    params = params.with_max_depth(d);
                }
                Estimator::Forest(RandomForestRegressor::fit(&x, &y, params)?)
            }
        };
        let raw = model.raw_scores(&validation.rows)?;
        model.calibration = fit_platt(&raw, validation_labels)?;
        let calibrated: Vec<f64> = raw.iter().map(|s| model.calibrate(*s)).collect();
        model.metrics.validation_auc = roc_auc(&calibrated, validation_labels)?;
        model.metrics.validation_brier = calibrated
            .iter()
            .zip(validation_labels)
            .map(|(p, l)| (p - f64::from(u8::from(*l))).powi(2))
            .sum::<f64>()
            / validation.len() as f64;
        Ok(model)
    }

    fn standardise(&self, rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .zip(self.means.iter().zip(&self.scales))
                    .map(|(v, (m, s))| (v - m) / s)
                    .collect()
            })
            .collect()
    }

    /// Raw log-odds before calibration.
    fn raw_scores(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>> {
        let z = self.standardise(rows);
        match &self.estimator {
            Estimator::Logistic {
                coefficients,
                intercept,
            } => Ok(z
                .iter()
                .map(|r| intercept + r.iter().zip(coefficients).map(|(a, b)| a * b).sum::<f64>())
                .collect()),
            Estimator::Forest(forest) => {
                if z.is_empty() {
                    return Ok(vec![]);
                }
                Ok(forest
                    .predict(&dense(&z)?)?
                    .into_iter()
                    .map(logit)
                    .collect())
            }
        }
    }

    fn calibrate(&self, raw: f64) -> f64 {
        sigmoid(self.calibration.a * raw + self.calibration.b)
    }

    /// Calibrated probabilities of the positive label, one per row. The matrix must have
    /// exactly the training feature names in the same order.
    pub fn predict_proba(&self, features: &FeatureMatrix) -> Result<Vec<f64>> {
        if features.names != self.feature_names {
            return Err(Error::InvalidInput(format!(
                "model {} expects features {:?}, got {:?}",
                self.version, self.feature_names, features.names
            )));
        }
        Ok(self
            .raw_scores(&features.rows)?
            .into_iter()
            .map(|s| self.calibrate(s))
            .collect())
    }

    /// Serialises the model to JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Loads a model from JSON, rejecting other format versions.
    pub fn from_json(text: &str) -> Result<Self> {
        let m: Self = serde_json::from_str(text)?;
        if m.format_version != MODEL_FORMAT_VERSION {
            return Err(Error::InvalidInput(format!(
                "model format {} is not supported (expected {MODEL_FORMAT_VERSION})",
                m.format_version
            )));
        }
        Ok(m)
    }
}

fn check_labels(m: &FeatureMatrix, labels: &[bool], what: &str) -> Result<()> {
    if m.len() != labels.len() {
        return Err(Error::InvalidInput(format!(
            "{what}: {} rows but {} labels",
            m.len(),
            labels.len()
        )));
    }
    let pos = labels.iter().filter(|l| **l).count();
    if pos == 0 || pos == labels.len() {
        return Err(Error::InvalidInput(format!(
            "{what}: labels must contain both classes"
        )));
    }
    Ok(())
}

/// Platt scaling: a one-feature logistic regression of the labels on the raw score,
/// fitted with smartcore.
fn fit_platt(raw: &[f64], labels: &[bool]) -> Result<Platt> {
    let rows: Vec<Vec<f64>> = raw.iter().map(|s| vec![*s]).collect();
    let y: Vec<u32> = labels.iter().map(|l| u32::from(*l)).collect();
    let lr = LogisticRegression::fit(&dense(&rows)?, &y, LogisticRegressionParameters::default())?;
    Ok(Platt {
        a: *lr.coefficients().get((0, 0)),
        b: *lr.intercept().get((0, 0)),
    })
}

/// A feature matrix with one label per row.
pub type LabeledRows = (FeatureMatrix, Vec<bool>);

/// Splits rows by time: rows with `times[i] < split` train, the rest validate.
pub fn split_by_time(
    features: &FeatureMatrix,
    labels: &[bool],
    times: &[f64],
    split: f64,
) -> Result<(LabeledRows, LabeledRows)> {
    if times.len() != features.len() || labels.len() != features.len() {
        return Err(Error::InvalidInput(
            "features, labels and times must have equal length".into(),
        ));
    }
    let mut early = (vec![], vec![]);
    let mut late = (vec![], vec![]);
    for ((row, l), t) in features.rows.iter().zip(labels).zip(times) {
        let side = if *t < split { &mut early } else { &mut late };
        side.0.push(row.clone());
        side.1.push(*l);
    }
    Ok((
        (
            FeatureMatrix::new(features.names.clone(), early.0)?,
            early.1,
        ),
        (FeatureMatrix::new(features.names.clone(), late.0)?, late.1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A separable-ish synthetic problem: label = x0 + noise-free wobble > 0.
    fn synthetic(n: usize, offset: usize) -> (FeatureMatrix, Vec<bool>) {
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                let u = ((i + offset) as f64 * 0.618_033_988_7).fract() * 2.0 - 1.0;
                let v = ((i + offset) as f64 * 0.414_213_562).fract();
                vec![u, v]
            })
            .collect();
        let labels = rows
            .iter()
            .map(|r| r[0] + 0.3 * (r[1] - 0.5) > 0.0)
            .collect();
        (
            FeatureMatrix::new(vec!["u".into(), "v".into()], rows).unwrap(),
            labels,
        )
    }

    #[test]
    fn both_learners_rank_well_and_round_trip() {
        let (train, yt) = synthetic(400, 0);
        let (valid, yv) = synthetic(200, 1000);
        for kind in [ModelKind::LogisticRegression, ModelKind::RandomForest] {
            let opts = TrainOptions {
                kind,
                n_trees: 20,
                version: "test-1".into(),
                ..TrainOptions::default()
            };
            let m = ChurnModel::train(&train, &yt, &valid, &yv, &opts).unwrap();
            assert!(m.metrics.validation_auc > 0.9, "{kind:?} {:?}", m.metrics);
            let p = m.predict_proba(&valid).unwrap();
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
            let back = ChurnModel::from_json(&m.to_json().unwrap()).unwrap();
            // serde_json float parsing may differ in the last bit.
            let again = back.predict_proba(&valid).unwrap();
            assert!(again.iter().zip(&p).all(|(a, b)| (a - b).abs() < 1e-9));
            assert_eq!(back.version, "test-1");
            let wrong =
                FeatureMatrix::new(vec!["v".into(), "u".into()], valid.rows.clone()).unwrap();
            assert!(m.predict_proba(&wrong).is_err());
        }
    }

    #[test]
    fn time_split_and_label_checks() {
        let (m, y) = synthetic(10, 0);
        let times: Vec<f64> = (0..10).map(f64::from).collect();
        let ((a, ya), (b, yb)) = split_by_time(&m, &y, &times, 6.0).unwrap();
        assert_eq!((a.len(), ya.len(), b.len(), yb.len()), (6, 6, 4, 4));
        let opts = TrainOptions::default();
        assert!(ChurnModel::train(&a, &[true; 6], &b, &yb, &opts).is_err());
    }
}
