//! Gradient-boosted trees for binary labels on wide tables with missing values and
//! categorical columns: histogram binning (`u8`, at most 255 value bins per column, quantile
//! edges), a learned default direction for missing values at every split, category-set splits
//! (categories ordered by gradient ratio; rare ones pooled), log-loss, shrinkage, leaf-wise
//! growth bounded by leaves / depth / samples per leaf, L2 on leaf weights, early stopping on a
//! validation slice, and the histogram subtraction trick. Histograms and split search run one
//! rayon task per feature; memory is the `u8` matrix (column-major) plus one histogram
//! (features × 256 bins) per open leaf.
//!
//! The caller chooses the fit and validation rows: the tabular evaluation passes the latest
//! part of the training period as validation, so early stopping never sees the test split.

mod bins;
mod tree;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use bins::{BinMapper, Binned, MAX_VALUE_BINS, MISSING_BIN};
pub use tree::{BinSet, Node, Tree};

use crate::error::{Error, Result};

/// Category code of a missing categorical value.
pub const MISSING_CODE: u32 = u32::MAX;

/// One input column: numbers (`NaN` = missing) or category codes ([`MISSING_CODE`] = missing).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numeric values.
    Numeric(Vec<f64>),
    /// Category codes (any `u32` but [`MISSING_CODE`]; the order means nothing).
    Categorical(Vec<u32>),
}

impl Column {
    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Categorical(c) => c.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hyper-parameters of [`Gbdt::fit`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GbdtParams {
    /// Shrinkage applied to every leaf.
    pub learning_rate: f64,
    /// Most boosting rounds.
    pub max_iter: usize,
    /// Most leaves per tree.
    pub max_leaves: usize,
    /// Most depth per tree, 0 = only bounded by `max_leaves`.
    pub max_depth: usize,
    /// Fewest fit rows in a leaf.
    pub min_samples_leaf: usize,
    /// L2 penalty on leaf weights (added to the hessian sum).
    pub l2: f64,
    /// Smallest gain worth a split.
    pub min_gain: f64,
    /// Most categories on the left of a categorical split.
    pub max_cat_set: usize,
    /// Fewest rows a category needs in a node to be placed by a split (others go right).
    pub min_category_rows: usize,
    /// Extra L2 on the children of categorical splits.
    pub cat_l2: f64,
    /// Categories seen fewer times in the fit rows are pooled into the `other` bin.
    pub min_category_count: usize,
    /// Stop after this many rounds without a better validation log-loss.
    pub early_stopping_rounds: usize,
    /// Improvement of the validation log-loss that counts as better.
    pub tol: f64,
    /// Share of fit rows drawn (without replacement) for each tree; 1 = all.
    pub subsample: f64,
    /// Seed of the row sampling and of the sample the bin edges are taken from.
    pub seed: u64,
}

impl Default for GbdtParams {
    fn default() -> Self {
        Self {
            learning_rate: 0.1,
            max_iter: 500,
            max_leaves: 31,
            max_depth: 0,
            min_samples_leaf: 20,
            l2: 1.0,
            min_gain: 1e-7,
            max_cat_set: 32,
            min_category_rows: 100,
            cat_l2: 10.0,
            min_category_count: 5,
            early_stopping_rounds: 20,
            tol: 1e-7,
            subsample: 1.0,
            seed: 7,
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gbdt {
    /// Bin mapping of every input column.
    pub mappers: Vec<BinMapper>,
    /// Raw score before any tree: the log-odds of the fit rows' positive rate.
    pub init: f64,
    /// Trees kept (up to the best validation round).
    pub trees: Vec<Tree>,
    /// Validation log-loss after each round fitted (empty without validation rows).
    pub validation_loss: Vec<f64>,
    /// Rounds fitted before stopping (more than `trees.len()` when it stopped early).
    pub rounds_fitted: usize,
}

/// `1 / (1 + e^-z)` without overflow.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Mean log-loss. The terms are computed in parallel but summed in row
/// order: rayon's parallel float `sum` splits by work stealing, so its
/// rounding (and so early stopping) would differ from run to run.
fn log_loss(raw: &[f64], y: &[bool]) -> f64 {
    let terms: Vec<f64> = raw
        .par_iter()
        .zip(y)
        .map(|(z, y)| if *y { softplus(-z) } else { softplus(*z) })
        .collect();
    terms.iter().sum::<f64>() / raw.len().max(1) as f64
}

impl Gbdt {
    /// Fit on `fit_rows` of `columns`, stopping early on the log-loss of `val_rows` (no early
    /// stopping when `val_rows` is empty).
    pub fn fit(
        columns: &[Column],
        labels: &[bool],
        fit_rows: &[usize],
        val_rows: &[usize],
        params: &GbdtParams,
    ) -> Result<Self> {
        let n = labels.len();
        if let Some((f, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != n) {
            return Err(Error::Model(format!(
                "column {f} has {} rows, labels {n}",
                c.len()
            )));
        }
        if let Some(r) = fit_rows.iter().chain(val_rows).find(|r| **r >= n) {
            return Err(Error::Model(format!("row {r} out of {n}")));
        }
        if params.learning_rate <= 0.0 || params.max_leaves < 2 || params.min_samples_leaf == 0 {
            return Err(Error::Model(
                "need learning_rate > 0, max_leaves >= 2 and min_samples_leaf >= 1".into(),
            ));
        }
        let y: Vec<bool> = fit_rows.iter().map(|r| labels[*r]).collect();
        let yv: Vec<bool> = val_rows.iter().map(|r| labels[*r]).collect();
        let pos = y.iter().filter(|l| **l).count();
        if pos == 0 || pos == y.len() {
            return Err(Error::Model(format!(
                "training needs both classes, got {pos} positives in {} rows",
                y.len()
            )));
        }
        let mappers: Vec<BinMapper> = columns
            .par_iter()
            .enumerate()
            .map(|(f, c)| {
                BinMapper::fit(
                    c,
                    fit_rows,
                    params.min_category_count,
                    params.seed.wrapping_add(f as u64),
                )
            })
            .collect();
        let x = Binned::new(columns, &mappers, fit_rows);
        let xv = Binned::new(columns, &mappers, val_rows);
        let active: Vec<bool> = (0..columns.len())
            .into_par_iter()
            .map(|f| {
                let c = x.col(f);
                c.iter().any(|b| *b != c[0])
            })
            .collect();
        let grower = tree::Grower {
            x: &x,
            mappers: &mappers,
            active,
            params,
        };
        let rate = pos as f64 / y.len() as f64;
        let init = (rate / (1.0 - rate)).ln();
        let nf = fit_rows.len();
        let mut raw = vec![init; nf];
        let mut rawv = vec![init; val_rows.len()];
        let (mut g, mut h) = (vec![0f32; nf], vec![0f32; nf]);
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let mut model = Gbdt {
            mappers: Vec::new(),
            init,
            trees: Vec::new(),
            validation_loss: Vec::new(),
            rounds_fitted: 0,
        };
        let (mut best_loss, mut best_round) = (f64::INFINITY, 0);
        let mut rows: Vec<u32> = Vec::with_capacity(nf);
        let mut in_sample = vec![true; nf];
        for round in 0..params.max_iter {
            g.par_iter_mut()
                .zip(h.par_iter_mut())
                .zip(raw.par_iter().zip(&y))
                .for_each(|((g, h), (z, y))| {
                    let p = sigmoid(*z);
                    *g = (p - f64::from(u8::from(*y))) as f32;
                    *h = (p * (1.0 - p)).max(1e-16) as f32;
                });
            rows.clear();
            if params.subsample < 1.0 {
                let k = ((nf as f64 * params.subsample).ceil() as usize).clamp(1, nf);
                let mut pick: Vec<usize> = sample(&mut rng, nf, k).into_vec();
                pick.sort_unstable();
                in_sample.iter_mut().for_each(|s| *s = false);
                for r in pick {
                    in_sample[r] = true;
                    rows.push(r as u32);
                }
            } else {
                rows.extend(0..nf as u32);
            }
            let tree = grower.grow(&mut rows, &g, &h, &mut raw);
            if params.subsample < 1.0 {
                raw.par_iter_mut()
                    .enumerate()
                    .filter(|(i, _)| !in_sample[*i])
                    .for_each(|(i, z)| *z += tree.predict(&x, i));
            }
            rawv.par_iter_mut()
                .enumerate()
                .for_each(|(i, z)| *z += tree.predict(&xv, i));
            let single_leaf = tree.nodes.len() == 1;
            model.trees.push(tree);
            model.rounds_fitted = round + 1;
            if single_leaf {
                break;
            }
            if !val_rows.is_empty() {
                let loss = log_loss(&rawv, &yv);
                model.validation_loss.push(loss);
                if loss < best_loss - params.tol {
                    (best_loss, best_round) = (loss, round);
                } else if round - best_round >= params.early_stopping_rounds {
                    break;
                }
            }
        }
        if !val_rows.is_empty() {
            model.trees.truncate(best_round + 1);
        }
        model.mappers = mappers;
        Ok(model)
    }

    /// Raw scores (log-odds) of `rows` of `columns` (the same columns, in the same order, as
    /// at fit).
    pub fn raw_scores(&self, columns: &[Column], rows: &[usize]) -> Result<Vec<f64>> {
        if columns.len() != self.mappers.len() {
            return Err(Error::Model(format!(
                "got {} columns, model expects {}",
                columns.len(),
                self.mappers.len()
            )));
        }
        for (f, (c, m)) in columns.iter().zip(&self.mappers).enumerate() {
            if matches!(c, Column::Categorical(_)) != m.is_categorical() {
                return Err(Error::Model(format!(
                    "column {f} is not of the kind (numeric / categorical) it was fitted on"
                )));
            }
        }
        let x = Binned::new(columns, &self.mappers, rows);
        Ok((0..rows.len())
            .into_par_iter()
            .map(|i| self.init + self.trees.iter().map(|t| t.predict(&x, i)).sum::<f64>())
            .collect())
    }

    /// Raw score (log-odds) of one row of numbers (`NaN` = missing), one per input column; the
    /// row-at-a-time path a service scores an order on. Every column must be numeric.
    pub fn raw_score_row(&self, x: &[f64]) -> Result<f64> {
        if x.len() != self.mappers.len() {
            return Err(Error::Model(format!(
                "got {} values, model expects {}",
                x.len(),
                self.mappers.len()
            )));
        }
        if let Some(f) = self.mappers.iter().position(BinMapper::is_categorical) {
            return Err(Error::Model(format!(
                "column {f} is categorical: a row of numbers cannot be scored"
            )));
        }
        let bins: Vec<u8> = x
            .iter()
            .zip(&self.mappers)
            .map(|(v, m)| m.bin_value(*v))
            .collect();
        Ok(self.init
            + self
                .trees
                .iter()
                .map(|t| t.predict_bins(&bins))
                .sum::<f64>())
    }

    /// Probability of one row of numbers (see [`Gbdt::raw_score_row`]).
    pub fn predict_row(&self, x: &[f64]) -> Result<f64> {
        Ok(sigmoid(self.raw_score_row(x)?))
    }

    /// Probabilities of `rows`.
    pub fn predict(&self, columns: &[Column], rows: &[usize]) -> Result<Vec<f64>> {
        Ok(self
            .raw_scores(columns, rows)?
            .into_iter()
            .map(sigmoid)
            .collect())
    }

    /// Total split gain per input column.
    pub fn importance(&self) -> Vec<f64> {
        let mut imp = vec![0.0; self.mappers.len()];
        for t in &self.trees {
            for n in t.nodes.iter().filter(|n| n.left != 0) {
                imp[n.feature as usize] += n.gain;
            }
        }
        imp
    }
}
