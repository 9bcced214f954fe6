//! Implicit-feedback ALS (Hu, Koren & Volinsky 2008).
//!
//! Every observed pair has preference 1 and confidence `c = 1 + alpha`; all others have
//! preference 0 and confidence 1. Alternating exact solves of
//! `x_u = (YᵀY + λI + alpha·Σ_{i∈u} y_i y_iᵀ)⁻¹ · (1 + alpha)·Σ_{i∈u} y_i`
//! (and the same for items) by Cholesky, using the `YᵀY` trick so each solve costs
//! `O(n_u·k² + k³)`. Users (items) are solved in parallel; each solve is independent, so the
//! result is deterministic for a seed.

use std::sync::OnceLock;

use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::UserItems;
use crate::error::{Error, Result};

/// ALS hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlsParams {
    /// Latent dimensions.
    pub dims: usize,
    /// Alternating sweeps (users then items).
    pub iterations: usize,
    /// Confidence slope: observed pairs weigh `1 + alpha`.
    pub alpha: f64,
    /// L2 regularisation.
    pub reg: f64,
}

impl Default for AlsParams {
    fn default() -> Self {
        Self {
            dims: 64,
            iterations: 10,
            alpha: 10.0,
            reg: 60.0,
        }
    }
}

/// A trained implicit ALS model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Als {
    /// Hyper-parameters used.
    pub params: AlsParams,
    /// Row-major `n_users × dims`.
    pub user_factors: Vec<f32>,
    /// Row-major `n_items × dims`.
    pub item_factors: Vec<f32>,
    /// Item factors as a matrix and `YᵀY + λI`, built on the first fold-in.
    #[serde(skip)]
    fold_in: OnceLock<(DMatrix<f64>, DMatrix<f64>)>,
}

impl PartialEq for Als {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params
            && self.user_factors == other.user_factors
            && self.item_factors == other.item_factors
    }
}

/// Solves every row of one side given the other side's factors `y` (`n_other × k`).
fn solve_side(lists: &[Vec<u32>], y: &DMatrix<f64>, p: &AlsParams) -> Result<DMatrix<f64>> {
    let k = y.ncols();
    let mut base = y.tr_mul(y);
    for d in 0..k {
        base[(d, d)] += p.reg;
    }
    let rows: Vec<Result<DVector<f64>>> = lists
        .par_iter()
        .map(|items| solve_one(items, y, &base, p))
        .collect();
    let mut out = DMatrix::zeros(lists.len(), k);
    for (r, row) in rows.into_iter().enumerate() {
        out.set_row(r, &row?.transpose());
    }
    Ok(out)
}

fn solve_one(
    items: &[u32],
    y: &DMatrix<f64>,
    base: &DMatrix<f64>,
    p: &AlsParams,
) -> Result<DVector<f64>> {
    let k = y.ncols();
    if items.is_empty() {
        return Ok(DVector::zeros(k));
    }
    let mut a = base.clone();
    let mut b = DVector::zeros(k);
    let mut yi = DVector::zeros(k);
    for &i in items {
        yi.copy_from(&y.row(i as usize).transpose());
        a.ger(p.alpha, &yi, &yi, 1.0);
        b.axpy(1.0 + p.alpha, &yi, 1.0);
    }
    let chol = a
        .cholesky()
        .ok_or_else(|| Error::Numerical("ALS normal equations not positive definite".into()))?;
    Ok(chol.solve(&b))
}

fn to_lists_by_item(train: &UserItems, n_items: usize) -> Vec<Vec<u32>> {
    let mut by_item = vec![Vec::new(); n_items];
    for (u, items) in train.iter().enumerate() {
        for &i in items {
            by_item[i as usize].push(u as u32);
        }
    }
    by_item
}

fn flatten(m: &DMatrix<f64>) -> Vec<f32> {
    let mut v = Vec::with_capacity(m.len());
    for r in 0..m.nrows() {
        v.extend(m.row(r).iter().map(|&x| x as f32));
    }
    v
}

impl Als {
    /// Trains from per-user item lists.
    pub fn fit(train: &UserItems, n_items: usize, params: AlsParams, seed: u64) -> Result<Self> {
        if train.iter().all(Vec::is_empty) {
            return Err(Error::EmptyTraining {
                model: "als",
                reason: "no interactions".into(),
            });
        }
        if params.dims == 0 || params.reg <= 0.0 || params.alpha < 0.0 {
            return Err(Error::InvalidConfig(
                "als needs dims > 0, reg > 0, alpha >= 0".into(),
            ));
        }
        let k = params.dims;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0, 0.01).map_err(|e| Error::Numerical(e.to_string()))?;
        let mut items = DMatrix::from_fn(n_items, k, |_, _| normal.sample(&mut rng));
        let by_item = to_lists_by_item(train, n_items);
        let mut users = DMatrix::zeros(train.len(), k);
        for _ in 0..params.iterations.max(1) {
            users = solve_side(train, &items, &params)?;
            items = solve_side(&by_item, &users, &params)?;
        }
        Ok(Self {
            params,
            user_factors: flatten(&users),
            item_factors: flatten(&items),
            fold_in: OnceLock::new(),
        })
    }

    /// Writes scores `x_u·y_j` for a known user.
    pub fn score_user(&self, user: usize, out: &mut [f32]) {
        let d = self.params.dims;
        let xu = &self.user_factors[user * d..(user + 1) * d];
        score_vector(xu, &self.item_factors, d, out);
    }

    /// Folds in an unknown user by one exact least-squares solve against the item factors,
    /// then scores.
    pub fn score_history(&self, history: &[u32], out: &mut [f32]) -> Result<()> {
        let d = self.params.dims;
        let (y, base) = self.fold_in.get_or_init(|| {
            let n_items = self.item_factors.len() / d;
            let y = DMatrix::from_fn(n_items, d, |r, c| f64::from(self.item_factors[r * d + c]));
            let mut base = y.tr_mul(&y);
            for k in 0..d {
                base[(k, k)] += self.params.reg;
            }
            (y, base)
        });
        let xu = solve_one(history, y, base, &self.params)?;
        let xu: Vec<f32> = xu.iter().map(|&x| x as f32).collect();
        score_vector(&xu, &self.item_factors, d, out);
        Ok(())
    }
}

/// `out[j] = x · item_factors[j]`.
pub(crate) fn score_vector(x: &[f32], item_factors: &[f32], d: usize, out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot(x, &item_factors[j * d..(j + 1) * d]);
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it
/// (a plain `sum()` must keep the sequential floating-point order).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_block_structure() {
        // Two user groups with disjoint item sets; a held-out item of the group should
        // outscore every item of the other group.
        let mut train = Vec::new();
        for u in 0..20u32 {
            let base = if u < 10 { 0 } else { 5 };
            train.push(
                (0..5)
                    .map(|i| base + i)
                    .filter(|i| (i + u) % 5 != 0)
                    .collect::<Vec<u32>>(),
            );
        }
        let m = Als::fit(
            &train,
            10,
            AlsParams {
                dims: 4,
                iterations: 10,
                alpha: 10.0,
                reg: 0.1,
            },
            1,
        )
        .unwrap();
        let mut out = vec![0f32; 10];
        m.score_user(0, &mut out);
        // User 0 drops item i when (i + 0) % 5 == 0, i.e. item 0.
        let held_out = 0;
        assert!((5..10).all(|j| out[held_out] > out[j]), "{out:?}");
        assert!((dot(&[1.0; 11], &[2.0; 11]) - 22.0).abs() < 1e-6);
        let mut folded = vec![0f32; 10];
        m.score_history(&[6, 7, 8], &mut folded).unwrap();
        assert!((0..5).all(|j| folded[9] > folded[j]), "{folded:?}");
    }
}
