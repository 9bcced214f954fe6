//! Bayesian Personalized Ranking (Rendle et al. 2009) trained by SGD with uniform negative
//! sampling, with item biases.
//!
//! For a sampled triple `(u, i, j)` (i seen, j unseen) and `x = b_i - b_j + p_u·(q_i - q_j)`,
//! SGD ascends `ln σ(x) - reg·‖θ‖²`. One epoch draws as many triples as there are training
//! interactions. Deterministic for a seed (single-threaded, ChaCha8 RNG).

use std::ops::ControlFlow;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::data::UserItems;
use crate::error::{Error, Result};

/// BPR hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BprParams {
    /// Latent dimensions.
    pub dims: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// SGD learning rate.
    pub learning_rate: f32,
    /// L2 regularisation of factors and biases.
    pub reg: f32,
    /// Standard deviation of the initial factors.
    pub init_std: f32,
}

impl Default for BprParams {
    fn default() -> Self {
        Self {
            dims: 64,
            epochs: 60,
            learning_rate: 0.02,
            reg: 0.02,
            init_std: 0.1,
        }
    }
}

/// A trained BPR model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bpr {
    /// Hyper-parameters used.
    pub params: BprParams,
    /// Epochs actually run (early stopping may end before `params.epochs`).
    pub epochs_run: usize,
    /// Row-major `n_users × dims`.
    pub user_factors: Vec<f32>,
    /// Row-major `n_items × dims`.
    pub item_factors: Vec<f32>,
    /// Item biases.
    pub item_bias: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Bpr {
    /// Trains for `params.epochs` epochs.
    pub fn fit(train: &UserItems, n_items: usize, params: BprParams, seed: u64) -> Result<Self> {
        Self::fit_with(train, n_items, params, seed, |_, _| {
            ControlFlow::Continue(())
        })
    }

    /// Trains, calling `on_epoch(epoch, model)` after every epoch (1-based); returning
    /// `Break` stops training (early stopping).
    pub fn fit_with(
        train: &UserItems,
        n_items: usize,
        params: BprParams,
        seed: u64,
        mut on_epoch: impl FnMut(usize, &Bpr) -> ControlFlow<()>,
    ) -> Result<Self> {
        let pairs: Vec<(u32, u32)> = train
            .iter()
            .enumerate()
            .flat_map(|(u, items)| items.iter().map(move |&i| (u as u32, i)))
            .collect();
        if pairs.is_empty() || n_items < 2 {
            return Err(Error::EmptyTraining {
                model: "bpr",
                reason: "no interactions or fewer than 2 items".into(),
            });
        }
        if params.dims == 0 {
            return Err(Error::InvalidConfig("bpr dims must be > 0".into()));
        }
        let d = params.dims;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0, params.init_std)
            .map_err(|e| Error::InvalidConfig(format!("bpr init_std: {e}")))?;
        let mut model = Bpr {
            params,
            epochs_run: 0,
            user_factors: (0..train.len() * d)
                .map(|_| normal.sample(&mut rng))
                .collect(),
            item_factors: (0..n_items * d).map(|_| normal.sample(&mut rng)).collect(),
            item_bias: vec![0.0; n_items],
        };
        // Membership test for negative sampling: one bitset row per user.
        let words = n_items.div_ceil(64);
        let mut seen = vec![0u64; train.len() * words];
        for (u, items) in train.iter().enumerate() {
            for &i in items {
                seen[u * words + i as usize / 64] |= 1 << (i % 64);
            }
        }
        let (lr, reg) = (params.learning_rate, params.reg);
        let mut grad_u = vec![0f32; d];
        for epoch in 1..=params.epochs {
            for _ in 0..pairs.len() {
                let (u, i) = pairs[rng.random_range(0..pairs.len())];
                let u = u as usize;
                if train[u].len() >= n_items {
                    continue;
                }
                let j = loop {
                    let j = rng.random_range(0..n_items);
                    if seen[u * words + j / 64] & (1 << (j % 64)) == 0 {
                        break j;
                    }
                };
                let i = i as usize;
                let (pu, rest) = (
                    &mut model.user_factors[u * d..(u + 1) * d],
                    &mut model.item_factors,
                );
                let mut x = model.item_bias[i] - model.item_bias[j];
                for f in 0..d {
                    x += pu[f] * (rest[i * d + f] - rest[j * d + f]);
                }
                let g = sigmoid(-x);
                for f in 0..d {
                    let (qi, qj) = (rest[i * d + f], rest[j * d + f]);
                    grad_u[f] = g * (qi - qj) - reg * pu[f];
                    rest[i * d + f] += lr * (g * pu[f] - reg * qi);
                    rest[j * d + f] += lr * (-g * pu[f] - reg * qj);
                }
                for f in 0..d {
                    pu[f] += lr * grad_u[f];
                }
                model.item_bias[i] += lr * (g - reg * model.item_bias[i]);
                model.item_bias[j] += lr * (-g - reg * model.item_bias[j]);
            }
            model.epochs_run = epoch;
            if on_epoch(epoch, &model).is_break() {
                break;
            }
        }
        Ok(model)
    }

    /// Writes scores `b_j + p_u·q_j` for a known user.
    pub fn score_user(&self, user: usize, out: &mut [f32]) {
        let d = self.params.dims;
        self.score_vector(&self.user_factors[user * d..(user + 1) * d], out);
    }

    /// Writes scores for an unknown user folded in as the mean factor of their history
    /// (a cheap approximation; retraining gives the exact factor).
    pub fn score_history(&self, history: &[u32], out: &mut [f32]) {
        let d = self.params.dims;
        let mut pu = vec![0f32; d];
        for &i in history {
            for (p, q) in pu
                .iter_mut()
                .zip(&self.item_factors[i as usize * d..(i as usize + 1) * d])
            {
                *p += q / history.len() as f32;
            }
        }
        self.score_vector(&pu, out);
    }

    fn score_vector(&self, pu: &[f32], out: &mut [f32]) {
        let d = self.params.dims;
        for (j, o) in out.iter_mut().enumerate() {
            let q = &self.item_factors[j * d..(j + 1) * d];
            *o = self.item_bias[j] + super::als::dot(pu, q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks() -> UserItems {
        (0..30u32)
            .map(|u| {
                let base = if u < 15 { 0 } else { 6 };
                (0..6)
                    .map(|i| base + i)
                    .filter(|i| (i + u) % 6 != 0)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn learns_block_structure_and_is_deterministic() {
        let p = BprParams {
            dims: 8,
            epochs: 200,
            learning_rate: 0.05,
            reg: 0.01,
            init_std: 0.1,
        };
        let m = Bpr::fit(&blocks(), 12, p, 7).unwrap();
        let mut out = vec![0f32; 12];
        m.score_user(0, &mut out);
        // User 0 never saw item 0 (its group) and must prefer it to every other-group item.
        assert!((6..12).all(|j| out[0] > out[j]), "{out:?}");
        let again = Bpr::fit(&blocks(), 12, p, 7).unwrap();
        assert_eq!(m, again);
        assert_ne!(m, Bpr::fit(&blocks(), 12, p, 8).unwrap());
        let mut folded = vec![0f32; 12];
        m.score_history(&[7, 8, 9], &mut folded);
        assert!((0..6).all(|j| folded[6] > folded[j]), "{folded:?}");
    }

    #[test]
    fn early_stop_callback_stops() {
        let p = BprParams {
            dims: 4,
            epochs: 50,
            ..BprParams::default()
        };
        let m = Bpr::fit_with(&blocks(), 12, p, 1, |e, _| {
            if e == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(m.epochs_run, 3);
    }

    #[test]
    fn empty_training_is_an_error() {
        assert!(matches!(
            Bpr::fit(&vec![vec![]], 3, BprParams::default(), 1),
            Err(Error::EmptyTraining { .. })
        ));
    }
}
