//! A blend of EASE^R and implicit ALS: each model's scores for the user are standardised
//! (z-scores over all items) and mixed as `w·z_ease + (1 − w)·z_als`. The two make different
//! errors (item-item linear vs. low-rank), so the mix ranks better than either alone.

use serde::{Deserialize, Serialize};

use super::{Als, AlsParams, Ease, EaseParams};
use crate::data::UserItems;
use crate::error::Result;

/// Blend hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlendParams {
    /// EASE^R part.
    pub ease: EaseParams,
    /// ALS part.
    pub als: AlsParams,
    /// Weight of EASE^R, 0..=1.
    pub ease_weight: f32,
}

impl Default for BlendParams {
    fn default() -> Self {
        Self {
            ease: EaseParams::default(),
            als: AlsParams::default(),
            ease_weight: 0.2,
        }
    }
}

/// A trained blend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blend {
    /// Mixing weight of EASE^R.
    pub ease_weight: f32,
    /// The EASE^R model.
    pub ease: Ease,
    /// The ALS model.
    pub als: Als,
}

fn standardise(v: &mut [f32]) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    let sd = var.sqrt().max(1e-12);
    for x in v {
        *x = ((f64::from(*x) - mean) / sd) as f32;
    }
}

impl Blend {
    /// Trains both parts.
    pub fn fit(train: &UserItems, n_items: usize, params: BlendParams, seed: u64) -> Result<Self> {
        Ok(Self {
            ease_weight: params.ease_weight.clamp(0.0, 1.0),
            ease: Ease::fit(train, n_items, params.ease)?,
            als: Als::fit(train, n_items, params.als, seed)?,
        })
    }

    /// Writes blended scores; `user` is a known ALS user, otherwise ALS folds in `history`.
    pub fn score(&self, user: Option<usize>, history: &[u32], out: &mut [f32]) -> Result<()> {
        let mut als = vec![0f32; out.len()];
        match user {
            Some(u) if u < self.als.user_factors.len() / self.als.params.dims => {
                self.als.score_user(u, &mut als)
            }
            _ => self.als.score_history(history, &mut als)?,
        }
        self.ease.score(history, out);
        standardise(out);
        standardise(&mut als);
        let w = self.ease_weight;
        for (o, a) in out.iter_mut().zip(&als) {
            *o = w * *o + (1.0 - w) * a;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_one_and_zero_reproduce_the_parts() {
        let train = vec![
            vec![0, 1],
            vec![0, 1, 2],
            vec![2, 3],
            vec![2, 3, 4],
            vec![1, 4],
        ];
        let p = BlendParams {
            ease: EaseParams { lambda: 1.0 },
            als: AlsParams {
                dims: 2,
                iterations: 5,
                alpha: 5.0,
                reg: 0.1,
            },
            ease_weight: 1.0,
        };
        let mut m = Blend::fit(&train, 5, p, 3).unwrap();
        let (mut got, mut want) = (vec![0f32; 5], vec![0f32; 5]);
        m.score(Some(0), &train[0], &mut got).unwrap();
        m.ease.score(&train[0], &mut want);
        standardise(&mut want);
        assert_eq!(got, want);
        m.ease_weight = 0.0;
        m.score(Some(0), &train[0], &mut got).unwrap();
        m.als.score_user(0, &mut want);
        standardise(&mut want);
        assert_eq!(got, want);
        let mean: f32 = got.iter().sum::<f32>() / 5.0;
        assert!(mean.abs() < 1e-5);
    }
}
