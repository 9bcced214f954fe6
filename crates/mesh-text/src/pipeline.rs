//! Text → hashed TF-IDF (+ optional lexicon features) → [`LinearClassifier`], with
//! hyper-parameters chosen by k-fold cross-validation on the training data only.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::classify::{LinearClassifier, TrainConfig};
use crate::metrics::class_report;
use crate::sentiment::{lexicon_features, N_LEXICON_FEATURES};
use crate::tokenize::{FeatureConfig, SparseVec, Vectorizer};
use crate::{Error, Result};

/// Hashed TF-IDF text features plus (optionally) weighted lexicon features, then a classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextClassifier {
    pub vectorizer: Vectorizer,
    /// Multiplier on the dense lexicon features; 0 disables them.
    pub lexicon_weight: f32,
    pub model: LinearClassifier,
}

impl TextClassifier {
    /// The full feature vector of `text`.
    pub fn features(&self, text: &str) -> SparseVec {
        featurize(&self.vectorizer, self.lexicon_weight, text)
    }

    /// Class probabilities in `model.labels` order.
    pub fn predict_proba(&self, text: &str) -> Vec<f32> {
        self.model.predict_proba(&self.features(text))
    }
}

fn featurize(v: &Vectorizer, lex_w: f32, text: &str) -> SparseVec {
    let mut x = v.transform(text);
    if lex_w != 0.0 {
        let lex = lexicon_features(text).map(|f| f * lex_w);
        x.push_dense(v.dim() as u32, &lex);
    }
    x
}

/// One point in the hyper-parameter grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HyperParams {
    pub l2: f32,
    pub lexicon_weight: f32,
    pub balanced: bool,
}

/// Chooses hyper-parameters by `folds`-fold CV (macro F1) on `texts`/`y` only, then trains
/// on all of them. Returns the model and the chosen point with its CV score.
pub fn train_with_cv(
    feature_cfg: FeatureConfig,
    labels: &[&str],
    texts: &[&str],
    y: &[usize],
    grid: &[HyperParams],
    folds: usize,
    seed: u64,
) -> Result<(TextClassifier, HyperParams, f64)> {
    if texts.len() < folds.max(2) * 2 {
        return Err(Error::InvalidInput(format!(
            "{} examples are too few to train",
            texts.len()
        )));
    }
    let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    let vectorizer = Vectorizer::fit(feature_cfg, texts);
    let dim = vectorizer.dim() + N_LEXICON_FEATURES;
    let base: Vec<SparseVec> = texts.iter().map(|t| vectorizer.transform(t)).collect();
    let uses_lex = grid.iter().any(|h| h.lexicon_weight != 0.0);
    let lex: Vec<[f32; N_LEXICON_FEATURES]> = if uses_lex {
        texts.iter().map(|t| lexicon_features(t)).collect()
    } else {
        vec![[0.0; N_LEXICON_FEATURES]; texts.len()]
    };
    let build = |w: f32| -> Vec<(SparseVec, usize)> {
        base.iter()
            .zip(&lex)
            .zip(y)
            .map(|((b, l), &c)| {
                let mut x = b.clone();
                if w != 0.0 {
                    x.push_dense(vectorizer.dim() as u32, &l.map(|f| f * w));
                }
                (x, c)
            })
            .collect()
    };
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xc5));
    let mut best: Option<(HyperParams, f64)> = None;
    if grid.len() > 1 {
        for hp in grid {
            let data = build(hp.lexicon_weight);
            let (mut truth, mut pred) = (Vec::new(), Vec::new());
            for f in 0..folds {
                let train: Vec<(SparseVec, usize)> = order
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % folds != f)
                    .map(|(_, &n)| data[n].clone())
                    .collect();
                let cfg = TrainConfig {
                    l2: hp.l2,
                    balanced: hp.balanced,
                    seed,
                    ..Default::default()
                };
                let m = LinearClassifier::train(labels.clone(), dim, &train, &cfg)?;
                for (_, &n) in order.iter().enumerate().filter(|(i, _)| i % folds == f) {
                    truth.push(data[n].1);
                    pred.push(m.predict(&data[n].0).0);
                }
            }
            let f1 = class_report(&labels, &truth, &pred).macro_f1;
            if best.is_none_or(|(_, b)| f1 > b) {
                best = Some((*hp, f1));
            }
        }
    }
    let (hp, cv) = best.unwrap_or((grid[0], f64::NAN));
    let cfg = TrainConfig {
        l2: hp.l2,
        balanced: hp.balanced,
        seed,
        ..Default::default()
    };
    let model = LinearClassifier::train(labels, dim, &build(hp.lexicon_weight), &cfg)?;
    Ok((
        TextClassifier {
            vectorizer,
            lexicon_weight: hp.lexicon_weight,
            model,
        },
        hp,
        cv,
    ))
}
