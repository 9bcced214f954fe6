//! EASE^R (Steck 2019): a closed-form item-item linear model.
//!
//! `P = (XᵀX + λI)⁻¹`, `B_ij = -P_ij / P_jj` for `i ≠ j`, `B_jj = 0`; a user's scores are
//! `x_u·B`, the sum of the rows of `B` over the history. One `n_items³` inverse (Cholesky),
//! so it suits catalogs up to a few tens of thousands of items.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::gram::gram;
use crate::data::UserItems;
use crate::error::{Error, Result};

/// EASE^R hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EaseParams {
    /// L2 regularisation added to the Gram diagonal.
    pub lambda: f64,
}

impl Default for EaseParams {
    fn default() -> Self {
        Self { lambda: 500.0 }
    }
}

/// A trained EASE^R model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ease {
    /// Hyper-parameters used.
    pub params: EaseParams,
    /// Number of items.
    pub n_items: usize,
    /// Row-major `n_items × n_items` weights `B`.
    pub weights: Vec<f32>,
}

impl Ease {
    /// Fits the closed form.
    pub fn fit(train: &UserItems, n_items: usize, params: EaseParams) -> Result<Self> {
        if train.iter().all(Vec::is_empty) {
            return Err(Error::EmptyTraining {
                model: "ease",
                reason: "no interactions".into(),
            });
        }
        if params.lambda <= 0.0 {
            return Err(Error::InvalidConfig("ease lambda must be > 0".into()));
        }
        let n = n_items;
        let mut g = DMatrix::from_row_slice(n, n, &gram(train, n));
        for i in 0..n {
            g[(i, i)] += params.lambda;
        }
        let p = spd_inverse(g)?;
        let mut weights = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    weights[i * n + j] = (-p[(i, j)] / p[(j, j)]) as f32;
                }
            }
        }
        Ok(Self {
            params,
            n_items: n,
            weights,
        })
    }

    /// Writes scores for a user with the given history.
    pub fn score(&self, history: &[u32], out: &mut [f32]) {
        out.fill(0.0);
        let n = self.n_items;
        for &i in history {
            for (o, w) in out
                .iter_mut()
                .zip(&self.weights[i as usize * n..(i as usize + 1) * n])
            {
                *o += w;
            }
        }
    }
}

/// Below this size [`spd_inverse`] uses nalgebra's Cholesky inverse directly.
const DIRECT_INVERSE_MAX: usize = 192;

/// Inverse of a symmetric positive definite matrix by recursive 2×2 blocking on the Schur
/// complement, so almost all the work is matrix products (nalgebra's blocked GEMM) instead of
/// nalgebra's unblocked triangular solves: for `G = [[A, B], [Bᵀ, C]]`, with
/// `S = C - Bᵀ A⁻¹ B`, `G⁻¹ = [[A⁻¹ + A⁻¹B S⁻¹ BᵀA⁻¹, -A⁻¹B S⁻¹], [·ᵀ, S⁻¹]]`.
/// Measured at 1,682 items it is several times faster than `cholesky().inverse()`.
pub fn spd_inverse(g: DMatrix<f64>) -> Result<DMatrix<f64>> {
    let n = g.nrows();
    if n <= DIRECT_INVERSE_MAX {
        return g
            .cholesky()
            .map(|c| c.inverse())
            .ok_or_else(|| Error::Numerical("EASE Gram matrix not positive definite".into()));
    }
    let h = n / 2;
    let a_inv = spd_inverse(g.view((0, 0), (h, h)).into_owned())?;
    let b = g.view((0, h), (h, n - h));
    let a_inv_b = &a_inv * b;
    let s = g.view((h, h), (n - h, n - h)) - b.tr_mul(&a_inv_b);
    // Symmetrise against rounding before recursing.
    let s = (&s + s.transpose()) * 0.5;
    let s_inv = spd_inverse(s)?;
    let top_right = -(&a_inv_b * &s_inv);
    let top_left = a_inv - &top_right * a_inv_b.transpose();
    let mut out = DMatrix::zeros(n, n);
    out.view_mut((0, 0), (h, h)).copy_from(&top_left);
    out.view_mut((0, h), (h, n - h)).copy_from(&top_right);
    out.view_mut((h, 0), (n - h, h))
        .copy_from(&top_right.transpose());
    out.view_mut((h, h), (n - h, n - h)).copy_from(&s_inv);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_inverse_matches_cholesky_inverse() {
        let n = 500;
        // A well-conditioned SPD matrix: MᵀM + n·I with a deterministic M.
        let m = DMatrix::from_fn(n, n, |r, c| (((r * 31 + c * 17) % 23) as f64 - 11.0) / 11.0);
        let mut g = m.tr_mul(&m);
        for i in 0..n {
            g[(i, i)] += n as f64;
        }
        let want = g.clone().cholesky().unwrap().inverse();
        let got = spd_inverse(g.clone()).unwrap();
        assert!(
            (&got - &want).amax() < 1e-10,
            "max diff {}",
            (&got - &want).amax()
        );
        let id = &g * &got;
        assert!((id - DMatrix::<f64>::identity(n, n)).amax() < 1e-9);
    }

    #[test]
    fn zero_diagonal_and_cooccurring_items_score_high() {
        let train = vec![
            vec![0, 1],
            vec![0, 1],
            vec![0, 1, 2],
            vec![2, 3],
            vec![2, 3],
        ];
        let m = Ease::fit(&train, 4, EaseParams { lambda: 0.5 }).unwrap();
        assert!((0..4).all(|i| m.weights[i * 4 + i] == 0.0));
        let mut out = vec![0f32; 4];
        m.score(&[0], &mut out);
        assert!(out[1] > out[2] && out[1] > out[3], "{out:?}");
        m.score(&[3], &mut out);
        assert!(out[2] > out[0] && out[2] > out[1], "{out:?}");
    }
}
