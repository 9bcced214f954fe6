//! NB-weighted logistic regression (Wang & Manning 2012, "NBSVM" with a logistic loss).
//!
//! Binary presence features (L2-normalised) are scaled by the naive-Bayes log-count ratio
//! `r = ln((p/|p|₁) / (q/|q|₁))` of each bucket (p: smoothed presence counts in the class,
//! q: in the rest), then a one-vs-rest logistic regression is trained on the scaled rows.
//! After training the ratios are folded into the weights, so prediction is a plain sparse dot
//! product on the unscaled features and no ratio table is stored. Dense features appended
//! past the hashed buckets (lexicon scores) keep a ratio of 1.

use serde::{Deserialize, Serialize};

use crate::classify::{LinearClassifier, TrainConfig};
use crate::tokenize::{hashed_counts, FeatureConfig, SparseVec};
use crate::{Error, Result};

/// Presence (0/1) hashed features of `text`, L2-normalised.
pub fn binary_features(text: &str, cfg: &FeatureConfig) -> SparseVec {
    let mut v = SparseVec::from_pairs(
        hashed_counts(text, cfg)
            .into_keys()
            .map(|k| (k, 1.0))
            .collect(),
    );
    v.normalize();
    v
}

/// A trained NB-weighted one-vs-rest logistic regression.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NbLogReg {
    pub config: FeatureConfig,
    /// One binary model per class; with two classes a single model for class 1.
    models: Vec<LinearClassifier>,
    n_classes: usize,
}

impl NbLogReg {
    /// Trains on rows from [`binary_features`] (optionally with dense features appended at
    /// `1 << config.bits`); `dim` covers both parts. `alpha` smooths the presence counts.
    pub fn train(
        config: FeatureConfig,
        xs: &[&SparseVec],
        y: &[usize],
        n_classes: usize,
        dim: usize,
        tc: &TrainConfig,
        alpha: f32,
    ) -> Result<Self> {
        if xs.len() != y.len() || xs.is_empty() || n_classes < 2 {
            return Err(Error::InvalidInput(
                "NB-LR needs as many labels as rows, at least one row and two classes".into(),
            ));
        }
        let hashed = 1usize << config.bits;
        let mut counts = vec![vec![0f32; hashed]; n_classes];
        for (x, &c) in xs.iter().zip(y) {
            for &i in x.idx.iter().filter(|&&i| (i as usize) < hashed) {
                counts[c][i as usize] += 1.0;
            }
        }
        let targets: Vec<usize> = if n_classes == 2 {
            vec![1]
        } else {
            (0..n_classes).collect()
        };
        let labels = vec!["rest".to_string(), "class".to_string()];
        let mut models = Vec::with_capacity(targets.len());
        for &k in &targets {
            let mut p = vec![alpha; hashed];
            let mut q = vec![alpha; hashed];
            for (c, cnt) in counts.iter().enumerate() {
                let dst = if c == k { &mut p } else { &mut q };
                dst.iter_mut().zip(cnt).for_each(|(d, v)| *d += v);
            }
            let (sp, sq): (f32, f32) = (p.iter().sum(), q.iter().sum());
            let r: Vec<f32> = p
                .iter()
                .zip(&q)
                .map(|(a, b)| ((a / sp) / (b / sq)).ln())
                .collect();
            let data: Vec<(SparseVec, usize)> = xs
                .iter()
                .zip(y)
                .map(|(x, &c)| {
                    let val = x
                        .idx
                        .iter()
                        .zip(&x.val)
                        .map(|(&i, &v)| r.get(i as usize).map_or(v, |s| s * v))
                        .collect();
                    let row = SparseVec {
                        idx: x.idx.clone(),
                        val,
                    };
                    (row, usize::from(c == k))
                })
                .collect();
            let mut m = LinearClassifier::train(labels.clone(), dim, &data, tc)?;
            m.fold_feature_scale(&r);
            models.push(m);
        }
        Ok(NbLogReg {
            config,
            models,
            n_classes,
        })
    }

    /// Class probabilities (one-vs-rest scores normalised to sum to 1).
    pub fn predict_proba(&self, x: &SparseVec) -> Vec<f32> {
        if self.n_classes == 2 {
            let p = self.models[0].predict_proba(x)[1];
            return vec![1.0 - p, p];
        }
        let mut p: Vec<f32> = self.models.iter().map(|m| m.predict_proba(x)[1]).collect();
        let s: f32 = p.iter().sum::<f32>().max(1e-9);
        p.iter_mut().for_each(|v| *v /= s);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_words_and_needs_no_ratio_table() {
        let cfg = FeatureConfig {
            bits: 12,
            ..Default::default()
        };
        let texts = [
            ("great phone, love it", 2),
            ("awful screen, hate it", 0),
            ("it arrived on tuesday", 1),
            ("love the great camera", 2),
            ("hate the awful battery", 0),
            ("the box arrived tuesday", 1),
        ];
        let xs: Vec<SparseVec> = texts
            .iter()
            .map(|(t, _)| binary_features(t, &cfg))
            .collect();
        let refs: Vec<&SparseVec> = xs.iter().collect();
        let y: Vec<usize> = texts.iter().map(|p| p.1).collect();
        let tc = TrainConfig {
            epochs: 30,
            l2: 1e-4,
            ..Default::default()
        };
        let m = NbLogReg::train(cfg, &refs, &y, 3, 1 << 12, &tc, 1.0).unwrap();
        for (t, c) in [("love it", 2), ("awful", 0), ("arrived", 1)] {
            let p = m.predict_proba(&binary_features(t, &cfg));
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            assert_eq!(crate::classify::argmax(&p).0, c, "{t}: {p:?}");
        }
        // Presence, not counts: "good good" is the unigram and the bigram, once each.
        let v = binary_features("good good good", &cfg);
        assert_eq!(v.len(), 2);
        assert!(v.val.iter().all(|x| (x - 0.5f32.sqrt()).abs() < 1e-6));
    }
}
