//! A seeded sparse softmax (multinomial logistic) regression trained by SGD with L2.
//!
//! Why our own and not smartcore: smartcore's logistic regression takes dense matrices; with
//! 2^18 hashed buckets that is gigabytes per thousand rows. Sparse SGD touches only a row's
//! non-zeros, trains the 3k-sentence sentiment set in milliseconds and the 26k-line Chinese
//! set in about a second.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::tokenize::SparseVec;
use crate::{Error, Result};

/// Training knobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// L2 strength (per example, as in Bottou's SGD).
    pub l2: f32,
    /// Passes over the data.
    pub epochs: usize,
    /// Initial learning rate.
    pub lr: f32,
    /// Weight classes by inverse frequency.
    pub balanced: bool,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            l2: 1e-5,
            epochs: 12,
            lr: 0.5,
            balanced: false,
            seed: 7,
        }
    }
}

/// A trained linear multiclass model over sparse vectors of dimension `dim`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearClassifier {
    pub labels: Vec<String>,
    dim: usize,
    /// Row-major `dim × n_classes`, so one feature's class weights are adjacent.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl LinearClassifier {
    /// Trains on `(vector, class index)` pairs; class indices index `labels`.
    pub fn train(
        labels: Vec<String>,
        dim: usize,
        data: &[(SparseVec, usize)],
        cfg: &TrainConfig,
    ) -> Result<Self> {
        let k = labels.len();
        if k < 2 {
            return Err(Error::InvalidInput("need at least two classes".into()));
        }
        if data.is_empty() {
            return Err(Error::InvalidInput("no training examples".into()));
        }
        if let Some((v, y)) = data
            .iter()
            .find(|(v, y)| *y >= k || v.idx.iter().any(|&i| i as usize >= dim))
        {
            return Err(Error::InvalidInput(format!(
                "example with class {y} or index {:?} outside {k} classes / {dim} dims",
                v.idx.last()
            )));
        }
        let mut counts = vec![0usize; k];
        data.iter().for_each(|(_, y)| counts[*y] += 1);
        let class_w: Vec<f32> = counts
            .iter()
            .map(|&c| {
                if cfg.balanced && c > 0 {
                    data.len() as f32 / (k as f32 * c as f32)
                } else {
                    1.0
                }
            })
            .collect();
        let mut w = vec![0f32; dim * k];
        let mut b = vec![0f32; k];
        // w_true = scale * w, so the L2 shrink is O(1) per step instead of O(dim).
        let mut scale = 1f32;
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut t = 0f32;
        let mut p = vec![0f32; k];
        for _ in 0..cfg.epochs {
            order.shuffle(&mut rng);
            for &n in &order {
                let (x, y) = &data[n];
                let lr = cfg.lr / (1.0 + cfg.lr * cfg.l2 * t);
                t += 1.0;
                scores_into(&w, &b, scale, k, x, &mut p);
                softmax(&mut p);
                scale *= 1.0 - lr * cfg.l2;
                if scale < 1e-6 {
                    w.iter_mut().for_each(|v| *v *= scale);
                    scale = 1.0;
                }
                let cw = class_w[*y];
                for c in 0..k {
                    let g = (p[c] - if c == *y { 1.0 } else { 0.0 }) * cw;
                    if g == 0.0 {
                        continue;
                    }
                    b[c] -= lr * g;
                    let step = lr * g / scale;
                    for (&i, &v) in x.idx.iter().zip(&x.val) {
                        w[i as usize * k + c] -= step * v;
                    }
                }
            }
        }
        w.iter_mut().for_each(|v| *v *= scale);
        Ok(LinearClassifier {
            labels,
            dim,
            weights: w,
            bias: b,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Multiplies the weights of feature `i` by `scale[i]` (features past `scale` keep theirs).
    /// A model trained on `x ∘ scale` then scores plain `x` identically, so NB-weighted
    /// models need not store their ratios.
    pub fn fold_feature_scale(&mut self, scale: &[f32]) {
        let k = self.labels.len();
        for (i, &s) in scale.iter().enumerate().take(self.dim) {
            self.weights[i * k..i * k + k]
                .iter_mut()
                .for_each(|w| *w *= s);
        }
    }

    /// Class probabilities in `labels` order. Indices beyond `dim` are ignored.
    pub fn predict_proba(&self, x: &SparseVec) -> Vec<f32> {
        let k = self.labels.len();
        let mut p = vec![0f32; k];
        scores_into(&self.weights, &self.bias, 1.0, k, x, &mut p);
        softmax(&mut p);
        p
    }

    /// The most probable class index and its probability.
    pub fn predict(&self, x: &SparseVec) -> (usize, f32) {
        argmax(&self.predict_proba(x))
    }

    /// Serialises to JSON (for the services' model store).
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(s: &str) -> Result<Self> {
        Ok(serde_json::from_str(s)?)
    }
}

/// A sparse linear regressor (squared loss, L2) trained by seeded SGD.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearRegressor {
    dim: usize,
    weights: Vec<f32>,
    bias: f32,
}

impl LinearRegressor {
    /// Trains on `(vector, target)` pairs; `cfg.balanced` is ignored.
    pub fn train(dim: usize, data: &[(SparseVec, f32)], cfg: &TrainConfig) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::InvalidInput("no training examples".into()));
        }
        if data
            .iter()
            .any(|(v, y)| !y.is_finite() || v.idx.iter().any(|&i| i as usize >= dim))
        {
            return Err(Error::InvalidInput(format!(
                "example with non-finite target or index outside {dim} dims"
            )));
        }
        let mut w = vec![0f32; dim];
        let mut b = data.iter().map(|d| d.1).sum::<f32>() / data.len() as f32;
        let mut scale = 1f32;
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut t = 0f32;
        for _ in 0..cfg.epochs {
            order.shuffle(&mut rng);
            for &n in &order {
                let (x, y) = &data[n];
                let lr = cfg.lr / (1.0 + cfg.lr * cfg.l2 * t);
                t += 1.0;
                let pred = b + scale
                    * x.idx
                        .iter()
                        .zip(&x.val)
                        .map(|(&i, &v)| w[i as usize] * v)
                        .sum::<f32>();
                let g = pred - y;
                scale *= 1.0 - lr * cfg.l2;
                if scale < 1e-6 {
                    w.iter_mut().for_each(|v| *v *= scale);
                    scale = 1.0;
                }
                b -= lr * g * 0.1;
                let step = lr * g / scale;
                for (&i, &v) in x.idx.iter().zip(&x.val) {
                    w[i as usize] -= step * v;
                }
            }
        }
        w.iter_mut().for_each(|v| *v *= scale);
        Ok(LinearRegressor {
            dim,
            weights: w,
            bias: b,
        })
    }

    pub fn predict(&self, x: &SparseVec) -> f32 {
        self.bias
            + x.idx
                .iter()
                .zip(&x.val)
                .filter(|(&i, _)| (i as usize) < self.dim)
                .map(|(&i, &v)| self.weights[i as usize] * v)
                .sum::<f32>()
    }
}

fn scores_into(w: &[f32], b: &[f32], scale: f32, k: usize, x: &SparseVec, out: &mut [f32]) {
    out.copy_from_slice(b);
    let dim = w.len() / k;
    for (&i, &v) in x.idx.iter().zip(&x.val) {
        let i = i as usize;
        if i >= dim {
            continue;
        }
        let row = &w[i * k..i * k + k];
        for c in 0..k {
            out[c] += scale * row[c] * v;
        }
    }
}

fn softmax(p: &mut [f32]) {
    let m = p.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in p.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    p.iter_mut().for_each(|v| *v /= s);
}

/// Index and value of the largest element (first on ties).
pub fn argmax(p: &[f32]) -> (usize, f32) {
    p.iter().enumerate().fold(
        (0, f32::NEG_INFINITY),
        |acc, (i, &v)| {
            if v > acc.1 {
                (i, v)
            } else {
                acc
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(u32, f32)]) -> SparseVec {
        SparseVec::from_pairs(pairs.to_vec())
    }

    #[test]
    fn learns_separable_classes_and_round_trips() {
        let data: Vec<(SparseVec, usize)> = (0..60)
            .map(|i| (v(&[(i % 3, 1.0), (10 + i % 5, 0.3)]), (i % 3) as usize))
            .collect();
        let labels = vec!["a".into(), "b".into(), "c".into()];
        let m = LinearClassifier::train(labels, 32, &data, &TrainConfig::default()).unwrap();
        for c in 0..3u32 {
            let (pred, p) = m.predict(&v(&[(c, 1.0)]));
            assert_eq!(pred, c as usize);
            assert!(p > 0.6, "{p}");
        }
        let back = LinearClassifier::from_json(&m.to_json().unwrap()).unwrap();
        assert_eq!(
            back.predict_proba(&v(&[(1, 1.0)])),
            m.predict_proba(&v(&[(1, 1.0)]))
        );
        let sum: f32 = m.predict_proba(&v(&[(4, 1.0)])).iter().sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }

    #[test]
    fn same_seed_same_model() {
        let data: Vec<(SparseVec, usize)> = (0..40)
            .map(|i| (v(&[(i % 7, 1.0)]), (i % 2) as usize))
            .collect();
        let l = || vec!["x".to_string(), "y".to_string()];
        let a = LinearClassifier::train(l(), 8, &data, &TrainConfig::default()).unwrap();
        let b = LinearClassifier::train(l(), 8, &data, &TrainConfig::default()).unwrap();
        assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
    }

    #[test]
    fn rejects_bad_input() {
        let l = vec!["x".to_string(), "y".to_string()];
        assert!(LinearClassifier::train(l.clone(), 8, &[], &TrainConfig::default()).is_err());
        let bad = vec![(v(&[(9, 1.0)]), 0)];
        assert!(LinearClassifier::train(l, 8, &bad, &TrainConfig::default()).is_err());
    }
}
