//! The Chinese two-class model: a TF-IDF softmax and an NB-weighted logistic regression on
//! jieba words + Han char 1–3-grams, averaged in probability space with the weight chosen by
//! k-fold CV inside the training rows.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::chinese_feature_config;
use super::nblr::{binary_features, NbLogReg};
use crate::classify::{LinearClassifier, TrainConfig};
use crate::tokenize::{SparseVec, Vectorizer};
use crate::{Error, Result};

const FOLDS: usize = 3;
const BLENDS: [f32; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// The trained Chinese model; classes are 0 negative, 1 positive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChineseModel {
    vectorizer: Vectorizer,
    softmax: LinearClassifier,
    nb: NbLogReg,
    /// `blend·softmax + (1−blend)·NB-LR`.
    pub blend: f32,
    /// Out-of-fold accuracy of the chosen blend inside the training rows.
    pub cv_accuracy: f64,
}

fn softmax_cfg(seed: u64) -> TrainConfig {
    TrainConfig {
        l2: 3e-6,
        seed,
        ..Default::default()
    }
}

fn nb_cfg(seed: u64) -> TrainConfig {
    TrainConfig {
        l2: 1e-5,
        seed,
        ..Default::default()
    }
}

impl ChineseModel {
    /// Trains on `texts` with labels `y` (0/1); the blend is chosen by 3-fold CV on them.
    pub fn train(texts: &[&str], y: &[usize], seed: u64) -> Result<Self> {
        if texts.len() < 4 * FOLDS || texts.len() != y.len() {
            return Err(Error::InvalidInput(format!(
                "{} labelled lines are too few to train",
                texts.len()
            )));
        }
        let cfg = chinese_feature_config();
        let labels = vec!["negative".to_string(), "positive".to_string()];
        let vectorizer = Vectorizer::fit(cfg, texts);
        let dim = vectorizer.dim();
        let xt: Vec<SparseVec> = texts.iter().map(|t| vectorizer.transform(t)).collect();
        let xb: Vec<SparseVec> = texts.iter().map(|t| binary_features(t, &cfg)).collect();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x2f));
        let mut fold_of = vec![0usize; texts.len()];
        for (i, &n) in order.iter().enumerate() {
            fold_of[n] = i % FOLDS;
        }
        let mut oof = vec![(0f32, 0f32); texts.len()];
        for f in 0..FOLDS {
            let tr: Vec<usize> = (0..texts.len()).filter(|&n| fold_of[n] != f).collect();
            let data: Vec<(SparseVec, usize)> = tr.iter().map(|&n| (xt[n].clone(), y[n])).collect();
            let sm = LinearClassifier::train(labels.clone(), dim, &data, &softmax_cfg(seed))?;
            let xr: Vec<&SparseVec> = tr.iter().map(|&n| &xb[n]).collect();
            let yr: Vec<usize> = tr.iter().map(|&n| y[n]).collect();
            let nb = NbLogReg::train(cfg, &xr, &yr, 2, dim, &nb_cfg(seed), 1.0)?;
            for n in (0..texts.len()).filter(|&n| fold_of[n] == f) {
                oof[n] = (sm.predict_proba(&xt[n])[1], nb.predict_proba(&xb[n])[1]);
            }
        }
        let accuracy = |a: f32| {
            let right = oof
                .iter()
                .zip(y)
                .filter(|((s, n), &t)| usize::from(a * s + (1.0 - a) * n > 0.5) == t)
                .count();
            right as f64 / y.len() as f64
        };
        let (blend, cv_accuracy) = BLENDS
            .iter()
            .map(|&a| (a, accuracy(a)))
            .fold((1.0, f64::MIN), |b, c| if c.1 > b.1 { c } else { b });
        let data: Vec<(SparseVec, usize)> = xt.into_iter().zip(y.iter().copied()).collect();
        let softmax = LinearClassifier::train(labels, dim, &data, &softmax_cfg(seed))?;
        let nb = NbLogReg::train(
            cfg,
            &xb.iter().collect::<Vec<_>>(),
            y,
            2,
            dim,
            &nb_cfg(seed),
            1.0,
        )?;
        Ok(ChineseModel {
            vectorizer,
            softmax,
            nb,
            blend,
            cv_accuracy,
        })
    }

    /// P(negative), P(positive).
    pub fn predict_proba(&self, text: &str) -> [f32; 2] {
        let s = self.softmax.predict_proba(&self.vectorizer.transform(text))[1];
        let n = self
            .nb
            .predict_proba(&binary_features(text, &self.nb.config))[1];
        let p = self.blend * s + (1.0 - self.blend) * n;
        [1.0 - p, p]
    }
}
