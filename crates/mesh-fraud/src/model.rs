//! Supervised models: smartcore logistic regression and random forest, and our histogram
//! gradient-boosted trees ([`crate::gbdt`]), in one versioned, serializable [`FraudModel`].
//!
//! Inputs go through a signed `log1p` and a standardization fitted on the training rows (the
//! counts and amounts are heavy tailed; LR needs the scaling, the forest does not care). The
//! forest is a smartcore `RandomForestRegressor` fitted on 0/1 labels with class-balancing
//! sample weights: the mean of its trees is a fraud probability, which smartcore's
//! classifier (majority vote only, no `predict_proba`) cannot give. LR scoring is done from the
//! fitted coefficients (a dot product), which also yields per-feature contributions.
//!
//! The GBDT takes the raw features (trees do not care about monotone transforms). Rows are in
//! time order: it stops early on the log-loss of the latest tenth of the training rows, then is
//! refitted on every training row for the rounds that stop found best.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use crate::error::{Error, Result};
use crate::features::{FeatureVector, FEATURE_NAMES};
use crate::gbdt::{Column, Gbdt, GbdtParams};

/// Serialized format version this build reads and writes.
pub const MODEL_FORMAT_VERSION: u32 = 1;

type Forest = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// Which model [`FraudModel::score`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Logistic regression.
    Logistic,
    /// Random forest.
    Forest,
    /// Mean of logistic regression and forest.
    Blend,
    /// Gradient-boosted trees.
    Gbdt,
    /// Whichever of the four scores the best PR-AUC on the latest tenth of the training rows
    /// when fitted on the rest (a fitted model stores the kind chosen, never `auto`).
    Auto,
}

impl ModelKind {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Logistic => "logistic",
            ModelKind::Forest => "forest",
            ModelKind::Blend => "blend",
            ModelKind::Gbdt => "gbdt",
            ModelKind::Auto => "auto",
        }
    }
}

/// Training hyper-parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainParams {
    /// L2 penalty of the logistic regression.
    pub lr_alpha: f64,
    /// Trees in the forest.
    pub n_trees: usize,
    /// Maximum tree depth (keeps scoring fast).
    pub max_depth: u16,
    /// Minimum samples per leaf.
    pub min_samples_leaf: usize,
    /// Upper bound of the positive-class weight (negatives / positives otherwise).
    pub max_pos_weight: f64,
    /// Seed of the forest.
    pub seed: u64,
    /// Model used by [`FraudModel::score`].
    pub primary: ModelKind,
    /// Free-form version tag stored with the model.
    pub version: String,
    /// Hyper-parameters of the gradient-boosted trees.
    #[serde(default)]
    pub gbdt: GbdtParams,
    /// Whether [`train_matrix`] fits the gradient-boosted trees (the tabular evaluation fits
    /// its own on every row and turns this off for its sampled baselines).
    #[serde(default = "yes")]
    pub fit_gbdt: bool,
}

fn yes() -> bool {
    true
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            lr_alpha: 1.0,
            n_trees: 60,
            max_depth: 10,
            min_samples_leaf: 3,
            max_pos_weight: 10.0,
            seed: 7,
            primary: ModelKind::Auto,
            version: "fraud-v1".to_string(),
            gbdt: GbdtParams::default(),
            fit_gbdt: true,
        }
    }
}

/// A trained fraud model.
#[derive(Debug, Serialize, Deserialize)]
pub struct FraudModel {
    /// Serialized format version ([`MODEL_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Version tag given at training.
    pub version: String,
    /// Feature names the model expects, in order.
    pub feature_names: Vec<String>,
    /// Model used by [`FraudModel::score`].
    pub primary: ModelKind,
    /// With [`ModelKind::Auto`]: each candidate's PR-AUC on the latest tenth of the training
    /// rows, fitted on the rest, that chose `primary`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selection: Vec<(ModelKind, f64)>,
    /// Training rows.
    pub train_rows: usize,
    /// Positive training rows.
    pub train_positives: usize,
    mean: Vec<f64>,
    scale: Vec<f64>,
    lr_coef: Vec<f64>,
    lr_intercept: f64,
    forest: Forest,
    /// Gradient-boosted trees (absent in files written before they were part of the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gbdt: Option<Gbdt>,
}

fn slog(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn to_matrix(rows: &[Vec<f64>]) -> Result<DenseMatrix<f64>> {
    DenseMatrix::from_2d_vec(&rows.to_vec()).map_err(|e| Error::Model(e.to_string()))
}

/// Train on order feature vectors (names = [`FEATURE_NAMES`]).
pub fn train(
    features: &[FeatureVector],
    labels: &[bool],
    params: &TrainParams,
) -> Result<FraudModel> {
    let rows: Vec<Vec<f64>> = features.iter().map(|f| f.0.clone()).collect();
    let names = FEATURE_NAMES.iter().map(|s| s.to_string()).collect();
    train_matrix(&rows, labels, names, params)
}

/// Train on any numeric matrix with named columns.
pub fn train_matrix(
    rows: &[Vec<f64>],
    labels: &[bool],
    feature_names: Vec<String>,
    params: &TrainParams,
) -> Result<FraudModel> {
    let n = rows.len();
    let d = feature_names.len();
    if n != labels.len() {
        return Err(Error::Model(format!(
            "{n} rows but {} labels",
            labels.len()
        )));
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != d) {
        return Err(Error::Model(format!(
            "row {i} has {} values, expected {d}",
            r.len()
        )));
    }
    let pos = labels.iter().filter(|l| **l).count();
    if pos == 0 || pos == n {
        return Err(Error::Model(format!(
            "training needs both classes, got {pos} positives in {n} rows"
        )));
    }
    let logged: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().map(|x| slog(*x)).collect())
        .collect();
    let mut mean = vec![0.0; d];
    let mut scale = vec![0.0; d];
    for r in &logged {
        for (m, x) in mean.iter_mut().zip(r) {
            *m += x / n as f64;
        }
    }
    for r in &logged {
        for j in 0..d {
            scale[j] += (r[j] - mean[j]).powi(2) / n as f64;
        }
    }
    for s in &mut scale {
        *s = if s.sqrt() > 1e-9 { s.sqrt() } else { 1.0 };
    }
    let z: Vec<Vec<f64>> = logged
        .iter()
        .map(|r| (0..d).map(|j| (r[j] - mean[j]) / scale[j]).collect())
        .collect();
    let xz = to_matrix(&z)?;

    let y_int: Vec<i32> = labels.iter().map(|l| i32::from(*l)).collect();
    let lr = LogisticRegression::fit(
        &xz,
        &y_int,
        LogisticRegressionParameters::default().with_alpha(params.lr_alpha),
    )
    .map_err(|e| Error::Model(format!("logistic regression: {e}")))?;
    let coef = lr.coefficients();
    let lr_coef: Vec<f64> = (0..d)
        .map(|j| *smartcore::linalg::basic::arrays::Array::get(coef, (0, j)))
        .collect();
    let lr_intercept = *smartcore::linalg::basic::arrays::Array::get(lr.intercept(), (0, 0));

    let pos_weight = ((n - pos) as f64 / pos as f64).clamp(1.0, params.max_pos_weight);
    let weights: Vec<f64> = labels
        .iter()
        .map(|l| if *l { pos_weight } else { 1.0 })
        .collect();
    let y_f: Vec<f64> = labels.iter().map(|l| f64::from(u8::from(*l))).collect();
    let forest = Forest::fit_with_weights(
        &xz,
        &y_f,
        &weights,
        RandomForestRegressorParameters::default()
            .with_n_trees(params.n_trees)
            .with_max_depth(params.max_depth)
            .with_min_samples_leaf(params.min_samples_leaf)
            .with_m(((d as f64).sqrt().ceil() as usize).max(1))
            .with_seed(params.seed),
    )
    .map_err(|e| Error::Model(format!("random forest: {e}")))?;

    let gbdt = if params.fit_gbdt {
        Some(fit_gbdt(rows, labels, &params.gbdt)?)
    } else {
        None
    };
    let (primary, selection) = match params.primary {
        ModelKind::Auto => choose_primary(rows, labels, &feature_names, params)?,
        kind => (kind, Vec::new()),
    };

    Ok(FraudModel {
        format_version: MODEL_FORMAT_VERSION,
        version: params.version.clone(),
        feature_names,
        primary,
        selection,
        train_rows: n,
        train_positives: pos,
        mean,
        scale,
        lr_coef,
        lr_intercept,
        forest,
        gbdt,
    })
}

/// Fewest positives in the validation tenth for [`ModelKind::Auto`] to choose by it: with fewer,
/// PR-AUC differences between the candidates are noise.
const MIN_VALIDATION_POSITIVES: usize = 20;

/// [`ModelKind::Auto`]: fits every model on the earliest nine tenths of the (time-ordered) rows
/// and picks the best PR-AUC on the latest tenth; the forest when that tenth cannot measure
/// (too few rows or positives, or one class only in the earlier part).
fn choose_primary(
    rows: &[Vec<f64>],
    labels: &[bool],
    feature_names: &[String],
    params: &TrainParams,
) -> Result<(ModelKind, Vec<(ModelKind, f64)>)> {
    let n = rows.len();
    let cut = n - n / 10;
    let both = |y: &[bool]| y.iter().any(|l| *l) && !y.iter().all(|l| *l);
    let val_pos = labels[cut..].iter().filter(|l| **l).count();
    if n < MIN_VALIDATED_ROWS
        || !both(&labels[..cut])
        || !both(&labels[cut..])
        || val_pos < MIN_VALIDATION_POSITIVES
    {
        return Ok((ModelKind::Forest, Vec::new()));
    }
    let inner = TrainParams {
        primary: ModelKind::Forest,
        ..params.clone()
    };
    let model = train_matrix(&rows[..cut], &labels[..cut], feature_names.to_vec(), &inner)?;
    let (val, yv) = (&rows[cut..], &labels[cut..]);
    let lr: Vec<f64> = val
        .iter()
        .map(|r| model.score_lr(r))
        .collect::<Result<_>>()?;
    let rf = model.score_rf_batch(val)?;
    let blend: Vec<f64> = lr.iter().zip(&rf).map(|(a, b)| (a + b) / 2.0).collect();
    let mut scored = vec![
        (ModelKind::Logistic, crate::metrics::pr_auc(&lr, yv)),
        (ModelKind::Forest, crate::metrics::pr_auc(&rf, yv)),
        (ModelKind::Blend, crate::metrics::pr_auc(&blend, yv)),
    ];
    if params.fit_gbdt {
        let gb: Vec<f64> = val
            .iter()
            .map(|r| model.score_gbdt(r))
            .collect::<Result<_>>()?;
        scored.push((ModelKind::Gbdt, crate::metrics::pr_auc(&gb, yv)));
    }
    // first best in the order above on ties: the simpler model
    let best = scored
        .iter()
        .fold(scored[0], |b, c| if c.1 > b.1 { *c } else { b })
        .0;
    Ok((best, scored))
}

/// Fewest training rows for the validation tenth that stops the boosting; below it the GBDT
/// fits [`SMALL_DATA_ROUNDS`] rounds.
const MIN_VALIDATED_ROWS: usize = 500;
/// Boosting rounds on training sets too small to hold out a validation tenth.
const SMALL_DATA_ROUNDS: usize = 50;

/// Boosting on time-ordered rows: stop on the latest tenth, refit on all rows for the rounds
/// found best.
fn fit_gbdt(rows: &[Vec<f64>], labels: &[bool], params: &GbdtParams) -> Result<Gbdt> {
    let n = rows.len();
    let d = rows.first().map_or(0, Vec::len);
    let columns: Vec<Column> = (0..d)
        .map(|j| Column::Numeric(rows.iter().map(|r| r[j]).collect()))
        .collect();
    let all: Vec<usize> = (0..n).collect();
    let rounds = if n >= MIN_VALIDATED_ROWS {
        let cut = n - n / 10;
        let (fit, val) = all.split_at(cut);
        let fit_has_both = {
            let pos = fit.iter().filter(|r| labels[**r]).count();
            pos > 0 && pos < fit.len()
        };
        if fit_has_both {
            Gbdt::fit(&columns, labels, fit, val, params)?.trees.len()
        } else {
            SMALL_DATA_ROUNDS
        }
    } else {
        SMALL_DATA_ROUNDS
    };
    let refit = GbdtParams {
        max_iter: rounds.clamp(1, params.max_iter.max(1)),
        ..params.clone()
    };
    Gbdt::fit(&columns, labels, &all, &[], &refit)
}

impl FraudModel {
    fn standardize(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(v, (m, s))| (slog(*v) - m) / s)
            .collect()
    }

    fn check(&self, x: &[f64]) -> Result<()> {
        if x.len() == self.feature_names.len() {
            Ok(())
        } else {
            Err(Error::Model(format!(
                "got {} features, model expects {}",
                x.len(),
                self.feature_names.len()
            )))
        }
    }

    /// Logistic regression probability.
    pub fn score_lr(&self, x: &[f64]) -> Result<f64> {
        self.check(x)?;
        let z = self.standardize(x);
        let logit: f64 =
            self.lr_intercept + z.iter().zip(&self.lr_coef).map(|(a, b)| a * b).sum::<f64>();
        Ok(sigmoid(logit))
    }

    /// Random forest probability (share of positive mass in the leaves).
    pub fn score_rf(&self, x: &[f64]) -> Result<f64> {
        Ok(self.score_rf_batch(std::slice::from_ref(&x.to_vec()))?[0])
    }

    /// Random forest probabilities of many rows at once.
    pub fn score_rf_batch(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>> {
        for r in rows {
            self.check(r)?;
        }
        let z: Vec<Vec<f64>> = rows.iter().map(|r| self.standardize(r)).collect();
        let m = to_matrix(&z)?;
        let p = self
            .forest
            .predict(&m)
            .map_err(|e| Error::Model(format!("random forest predict: {e}")))?;
        Ok(p.into_iter().map(|v| v.clamp(0.0, 1.0)).collect())
    }

    /// Gradient-boosted trees probability; an error for a model file written before the
    /// trees were part of it.
    pub fn score_gbdt(&self, x: &[f64]) -> Result<f64> {
        self.check(x)?;
        match &self.gbdt {
            Some(g) => g.predict_row(x),
            None => Err(Error::Model(format!(
                "model {} has no gradient-boosted trees (trained before they were part of the \
                 model, or with `fit_gbdt` off): retrain it, or score with the forest or \
                 logistic model",
                self.version
            ))),
        }
    }

    /// Whether the model carries gradient-boosted trees.
    pub fn has_gbdt(&self) -> bool {
        self.gbdt.is_some()
    }

    /// Score of the primary model.
    pub fn score(&self, x: &[f64]) -> Result<f64> {
        match self.primary {
            ModelKind::Logistic => self.score_lr(x),
            ModelKind::Forest => self.score_rf(x),
            ModelKind::Blend => Ok(0.5 * (self.score_lr(x)? + self.score_rf(x)?)),
            ModelKind::Gbdt => self.score_gbdt(x),
            // a fitted model never stores `auto`; a hand-edited file scores with what it has
            ModelKind::Auto if self.gbdt.is_some() => self.score_gbdt(x),
            ModelKind::Auto => self.score_rf(x),
        }
    }

    /// The `k` features pushing the LR logit up the most, with their contributions.
    pub fn top_contributions(&self, x: &[f64], k: usize) -> Result<Vec<(String, f64)>> {
        self.check(x)?;
        let z = self.standardize(x);
        let mut c: Vec<(usize, f64)> = z
            .iter()
            .zip(&self.lr_coef)
            .map(|(a, b)| a * b)
            .enumerate()
            .filter(|(_, v)| *v > 0.0)
            .collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(c.into_iter()
            .take(k)
            .map(|(i, v)| (self.feature_names[i].clone(), v))
            .collect())
    }

    /// Serialize to JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Deserialize from JSON, checking the format version.
    pub fn from_json(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Probe {
            format_version: u32,
        }
        let probe: Probe = serde_json::from_str(text)?;
        if probe.format_version != MODEL_FORMAT_VERSION {
            return Err(Error::ModelVersion {
                found: probe.format_version,
                expected: MODEL_FORMAT_VERSION,
            });
        }
        Ok(serde_json::from_str(text)?)
    }
}
