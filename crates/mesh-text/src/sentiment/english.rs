//! The English three-class model: hashed n-grams + VADER lexicon features, a softmax
//! classifier and a rating regressor, combined by a decision rule chosen on out-of-fold
//! predictions inside the training data.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::nblr::{binary_features, NbLogReg};
use super::{english_feature_config, lexicon_features, Polarity, N_LEXICON_FEATURES};
use crate::classify::{LinearClassifier, LinearRegressor, TrainConfig};
use crate::data::RatedText;
use crate::metrics::class_report;
use crate::tokenize::{SparseVec, Vectorizer};
use crate::{Error, Result};

/// How class scores become a label.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// argmax of log-probabilities plus per-class offsets (negative, neutral, positive=0).
    Offsets { negative: f32, neutral: f32 },
    /// `z = beta·(P+ − P−) + (1−beta)·rating/4`; z < lo negative, z > hi positive.
    Ordinal { beta: f32, lo: f32, hi: f32 },
}

/// What cross-validation chose.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnglishChoice {
    pub l2: f32,
    pub lexicon_weight: f32,
    pub balanced: bool,
    pub regression_l2: f32,
    /// NB-LR: L2, class balancing and whether Latin char 3–5-grams were added.
    pub nb_l2: f32,
    pub nb_balanced: bool,
    pub nb_char_ngrams: bool,
    /// Probability blend: `blend·softmax + (1−blend)·NB-LR`.
    pub blend: f32,
    pub decision: Decision,
    /// Out-of-fold macro F1 of the chosen setup (k-fold inside the training data).
    pub cv_macro_f1: f64,
}

/// What cross-validation chose for the sentence-encoder head (feature `embed`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmbedChoice {
    /// How many of the given encoders (first k) were concatenated.
    pub n_encoders: usize,
    /// Multipliers on the embedding, the lexicon features and the n-gram model's scores.
    pub embed_weight: f32,
    pub lexicon_weight: f32,
    pub ngram_weight: f32,
    pub l2: f32,
    pub balanced: bool,
    /// Late fusion: weight of the n-gram model's probabilities against the head's.
    pub ngram_blend: f32,
    /// Added to the negative / neutral log-probabilities before the argmax.
    pub negative_offset: f32,
    pub neutral_offset: f32,
    /// Out-of-fold macro F1 of the chosen head (5-fold inside the training data).
    pub cv_macro_f1: f64,
}

/// Features and grids searched by cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnglishConfig {
    pub features: crate::tokenize::FeatureConfig,
    pub lexicon_weights: Vec<f32>,
    pub l2s: Vec<f32>,
    pub epochs: usize,
}

impl Default for EnglishConfig {
    fn default() -> Self {
        EnglishConfig {
            features: english_feature_config(),
            lexicon_weights: vec![0.25, 0.5],
            l2s: vec![1e-6, 1e-5, 3e-5],
            epochs: 20,
        }
    }
}

/// The trained English model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnglishModel {
    vectorizer: Vectorizer,
    clf: LinearClassifier,
    reg: LinearRegressor,
    nb: NbLogReg,
    pub choice: EnglishChoice,
    /// The sentence-encoder head, when trained with one. Not serialized: a deserialized
    /// model is the n-gram model.
    #[serde(skip)]
    pub(crate) embed: Option<super::embedded::EmbedHead>,
}

fn decide(d: &Decision, p: &[f32], r: f32) -> usize {
    match *d {
        Decision::Offsets { negative, neutral } => {
            let s = [
                p[0].max(1e-9).ln() + negative,
                p[1].max(1e-9).ln() + neutral,
                p[2].max(1e-9).ln(),
            ];
            crate::classify::argmax(&s).0
        }
        Decision::Ordinal { beta, lo, hi } => {
            let z = beta * (p[2] - p[0]) + (1.0 - beta) * r;
            if z < lo {
                0
            } else if z > hi {
                2
            } else {
                1
            }
        }
    }
}

const FOLDS: usize = 5;

impl EnglishModel {
    /// Trains with all choices made by 5-fold CV inside `rows`.
    pub fn train(rows: &[RatedText], seed: u64) -> Result<Self> {
        Self::train_with(rows, &EnglishConfig::default(), seed)
    }

    /// Trains with explicit feature settings and grids.
    pub fn train_with(rows: &[RatedText], ec: &EnglishConfig, seed: u64) -> Result<Self> {
        if rows.len() < 4 * FOLDS {
            return Err(Error::InvalidInput(format!(
                "{} rated rows are too few to train",
                rows.len()
            )));
        }
        let labels: Vec<String> = super::LABELS3.iter().map(|s| s.to_string()).collect();
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        let y: Vec<usize> = rows
            .iter()
            .map(|r| Polarity::from_rating(r.rating).index())
            .collect();
        let target: Vec<f32> = rows.iter().map(|r| (r.rating / 4.0) as f32).collect();
        let vectorizer = Vectorizer::fit(ec.features, &texts);
        let hashed = vectorizer.dim() as u32;
        let dim = vectorizer.dim() + N_LEXICON_FEATURES;
        let base: Vec<SparseVec> = texts.iter().map(|t| vectorizer.transform(t)).collect();
        let lex: Vec<[f32; N_LEXICON_FEATURES]> =
            texts.iter().map(|t| lexicon_features(t)).collect();
        let build = |w: f32| -> Vec<SparseVec> {
            base.iter()
                .zip(&lex)
                .map(|(b, l)| {
                    let mut x = b.clone();
                    x.push_dense(hashed, &l.map(|f| f * w));
                    x
                })
                .collect()
        };
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xc5));
        let mut fold_of = vec![0usize; rows.len()];
        for (i, &n) in order.iter().enumerate() {
            fold_of[n] = i % FOLDS;
        }
        let cfg = |l2: f32, balanced: bool| TrainConfig {
            l2,
            balanced,
            seed,
            epochs: ec.epochs,
            ..Default::default()
        };

        // 1. Softmax: out-of-fold probabilities for each grid point, keep the best.
        // (cv macro F1, lexicon weight, l2, balanced, out-of-fold probabilities)
        type Best = (f64, f32, f32, bool, Vec<Vec<f32>>);
        let mut best: Option<Best> = None;
        for &lw in &ec.lexicon_weights {
            let xs = build(lw);
            for &l2 in &ec.l2s {
                for balanced in [false, true] {
                    let mut oof = vec![Vec::new(); rows.len()];
                    for f in 0..FOLDS {
                        let train: Vec<(SparseVec, usize)> = (0..rows.len())
                            .filter(|&n| fold_of[n] != f)
                            .map(|n| (xs[n].clone(), y[n]))
                            .collect();
                        let m = LinearClassifier::train(
                            labels.clone(),
                            dim,
                            &train,
                            &cfg(l2, balanced),
                        )?;
                        for n in (0..rows.len()).filter(|&n| fold_of[n] == f) {
                            oof[n] = m.predict_proba(&xs[n]);
                        }
                    }
                    let pred: Vec<usize> =
                        oof.iter().map(|p| crate::classify::argmax(p).0).collect();
                    let f1 = class_report(&labels, &y, &pred).macro_f1;
                    if best.as_ref().is_none_or(|b| f1 > b.0) {
                        best = Some((f1, lw, l2, balanced, oof));
                    }
                }
            }
        }
        let (_, lw, l2, balanced, oof_p) = best.expect("grid is non-empty");
        let xs = build(lw);

        // 2. Rating regression: out-of-fold predictions, keep the lowest squared error.
        let mut best_r: Option<(f64, f32, Vec<f32>)> = None;
        for rl2 in [1e-5f32, 1e-4, 1e-3] {
            let mut oof = vec![0f32; rows.len()];
            for f in 0..FOLDS {
                let train: Vec<(SparseVec, f32)> = (0..rows.len())
                    .filter(|&n| fold_of[n] != f)
                    .map(|n| (xs[n].clone(), target[n]))
                    .collect();
                let c = TrainConfig {
                    lr: 0.05,
                    ..cfg(rl2, false)
                };
                let m = LinearRegressor::train(dim, &train, &c)?;
                for n in (0..rows.len()).filter(|&n| fold_of[n] == f) {
                    oof[n] = m.predict(&xs[n]);
                }
            }
            let mse: f64 = oof
                .iter()
                .zip(&target)
                .map(|(p, t)| ((p - t) as f64).powi(2))
                .sum();
            if best_r.as_ref().is_none_or(|b| mse < b.0) {
                best_r = Some((mse, rl2, oof));
            }
        }
        let (_, rl2, oof_r) = best_r.expect("grid is non-empty");

        // 3. NB-weighted logistic regression on presence features (+ the same lexicon block).
        let lex_w: Vec<[f32; N_LEXICON_FEATURES]> = lex.iter().map(|l| l.map(|f| f * lw)).collect();
        let nb_cfg = |chars: bool| crate::tokenize::FeatureConfig {
            latin_char_ngrams: if chars { 5 } else { 0 },
            ..ec.features
        };
        let nb_rows = |chars: bool| -> Vec<SparseVec> {
            texts
                .iter()
                .zip(&lex_w)
                .map(|(t, l)| {
                    let mut x = binary_features(t, &nb_cfg(chars));
                    x.push_dense(hashed, l);
                    x
                })
                .collect()
        };
        type BestNb = (f64, f32, bool, bool, Vec<Vec<f32>>);
        let mut best_nb: Option<BestNb> = None;
        for chars in [false, true] {
            let xb = nb_rows(chars);
            for &nl2 in &[1e-5f32, 1e-4] {
                for nbal in [false, true] {
                    let mut oof = vec![Vec::new(); rows.len()];
                    for f in 0..FOLDS {
                        let tr: Vec<usize> = (0..rows.len()).filter(|&n| fold_of[n] != f).collect();
                        let xr: Vec<&SparseVec> = tr.iter().map(|&n| &xb[n]).collect();
                        let yr: Vec<usize> = tr.iter().map(|&n| y[n]).collect();
                        let m =
                            NbLogReg::train(nb_cfg(chars), &xr, &yr, 3, dim, &cfg(nl2, nbal), 1.0)?;
                        for n in (0..rows.len()).filter(|&n| fold_of[n] == f) {
                            oof[n] = m.predict_proba(&xb[n]);
                        }
                    }
                    let pred: Vec<usize> =
                        oof.iter().map(|p| crate::classify::argmax(p).0).collect();
                    let f1 = class_report(&labels, &y, &pred).macro_f1;
                    if best_nb.as_ref().is_none_or(|b| f1 > b.0) {
                        best_nb = Some((f1, nl2, nbal, chars, oof));
                    }
                }
            }
        }
        let (_, nb_l2, nb_balanced, nb_chars, oof_nb) = best_nb.expect("grid is non-empty");

        // 4. Blend weight and decision rule on the out-of-fold scores.
        let mix = |a: f32| -> Vec<Vec<f32>> {
            oof_p
                .iter()
                .zip(&oof_nb)
                .map(|(p, q)| {
                    p.iter()
                        .zip(q)
                        .map(|(x, z)| a * x + (1.0 - a) * z)
                        .collect()
                })
                .collect()
        };
        let score = |probs: &[Vec<f32>], d: &Decision| {
            let pred: Vec<usize> = probs
                .iter()
                .zip(&oof_r)
                .map(|(p, &r)| decide(d, p, r))
                .collect();
            class_report(&labels, &y, &pred).macro_f1
        };
        let mut cands = Vec::new();
        for a in -10..=10 {
            for b in -10..=10 {
                cands.push(Decision::Offsets {
                    negative: a as f32 * 0.1,
                    neutral: b as f32 * 0.1,
                });
            }
        }
        for beta in [0.0f32, 0.25, 0.5, 0.75, 1.0] {
            for lo in -32..=8 {
                for hi in -8..=32 {
                    if hi > lo {
                        cands.push(Decision::Ordinal {
                            beta,
                            lo: lo as f32 * 0.025,
                            hi: hi as f32 * 0.025,
                        });
                    }
                }
            }
        }
        let mut best_d: Option<(f64, f32, Decision)> = None;
        for a in [0.0f32, 0.25, 0.5, 0.75, 1.0] {
            let probs = mix(a);
            for d in &cands {
                let s = score(&probs, d);
                if best_d.as_ref().is_none_or(|b| s > b.0) {
                    best_d = Some((s, a, *d));
                }
            }
        }
        let (cv, blend, decision) = best_d.expect("candidates");

        let all_c: Vec<(SparseVec, usize)> = xs.iter().cloned().zip(y.iter().copied()).collect();
        let clf = LinearClassifier::train(labels, dim, &all_c, &cfg(l2, balanced))?;
        let xb = nb_rows(nb_chars);
        let nb = NbLogReg::train(
            nb_cfg(nb_chars),
            &xb.iter().collect::<Vec<_>>(),
            &y,
            3,
            dim,
            &cfg(nb_l2, nb_balanced),
            1.0,
        )?;
        let all_r: Vec<(SparseVec, f32)> = xs.into_iter().zip(target).collect();
        let reg = LinearRegressor::train(
            dim,
            &all_r,
            &TrainConfig {
                lr: 0.05,
                ..cfg(rl2, false)
            },
        )?;
        Ok(EnglishModel {
            vectorizer,
            clf,
            reg,
            nb,
            choice: EnglishChoice {
                l2,
                lexicon_weight: lw,
                balanced,
                regression_l2: rl2,
                nb_l2,
                nb_balanced,
                nb_char_ngrams: nb_chars,
                blend,
                decision,
                cv_macro_f1: cv,
            },
            embed: None,
        })
    }

    /// Trains the n-gram model and, on top of it, a head over the sentence embeddings of
    /// `encoder` (all choices by 5-fold CV inside `rows`).
    pub fn train_embedded(
        rows: &[RatedText],
        seed: u64,
        encoder: std::sync::Arc<dyn mesh_embed::Encoder>,
    ) -> Result<Self> {
        super::embedded::train(rows, seed, vec![encoder])
    }

    /// [`Self::train_embedded`] with several encoders: CV also chooses how many of them (the
    /// first k) to concatenate.
    pub fn train_embedded_multi(
        rows: &[RatedText],
        seed: u64,
        encoders: Vec<std::sync::Arc<dyn mesh_embed::Encoder>>,
    ) -> Result<Self> {
        super::embedded::train(rows, seed, encoders)
    }

    /// Which model predicts: `"ngram"`, or `"ENCODER+ngram"` with a sentence encoder (e.g.
    /// `e5-small-q4:query+ngram`, `minilm (DIR)+ngram`).
    pub fn kind(&self) -> String {
        if let Some(h) = &self.embed {
            return format!("{}+ngram", h.encoder.name());
        }
        "ngram".to_string()
    }

    /// The encoder head's CV choices, when there is one.
    pub fn embed_choice(&self) -> Option<EmbedChoice> {
        if let Some(h) = &self.embed {
            return Some(h.choice);
        }
        None
    }

    /// Labels and scores of many texts (embeds them in batches when there is an encoder).
    pub fn predict_many(&self, texts: &[&str]) -> Vec<(Polarity, f32)> {
        if let Some(h) = &self.embed {
            if let Ok(embs) = h.embed(texts) {
                return texts
                    .iter()
                    .zip(embs)
                    .map(|(t, e)| self.predict_embedded(h, t, &e))
                    .collect();
            }
        }
        texts.iter().map(|t| self.predict(t)).collect()
    }

    fn predict_embedded(
        &self,
        h: &super::embedded::EmbedHead,
        text: &str,
        emb: &[f32],
    ) -> (Polarity, f32) {
        let ng = super::embedded::EmbedHead::ngram_inputs(self, text);
        let (k, p) = h.predict(emb, text, ng);
        let label = [Polarity::Negative, Polarity::Neutral, Polarity::Positive][k];
        (label, (p[2] - p[0]).clamp(-1.0, 1.0))
    }

    /// Blended class probabilities (negative, neutral, positive) and the rating regressor's
    /// output (rating / 4) for `text`.
    pub fn scores(&self, text: &str) -> ([f32; 3], f32) {
        let mut x = self.vectorizer.transform(text);
        let lw = self.choice.lexicon_weight;
        let lex = lexicon_features(text).map(|f| f * lw);
        x.push_dense(self.vectorizer.dim() as u32, &lex);
        let mut xb = binary_features(text, &self.nb.config);
        xb.push_dense(self.vectorizer.dim() as u32, &lex);
        let (a, ps, pn) = (
            self.choice.blend,
            self.clf.predict_proba(&x),
            self.nb.predict_proba(&xb),
        );
        let mut p = [0f32; 3];
        for (k, slot) in p.iter_mut().enumerate() {
            *slot = a * ps[k] + (1.0 - a) * pn[k];
        }
        (p, self.reg.predict(&x))
    }

    /// Label and score in [-1, 1] for `text`.
    pub fn predict(&self, text: &str) -> (Polarity, f32) {
        if let Some(h) = &self.embed {
            if let Ok(e) = h.encoder.embed(text) {
                return self.predict_embedded(h, text, &e);
            }
        }
        let (p, r) = self.scores(text);
        let label = [Polarity::Negative, Polarity::Neutral, Polarity::Positive]
            [decide(&self.choice.decision, &p, r)];
        let score = (0.5 * (p[2] - p[0]) + 0.5 * r).clamp(-1.0, 1.0);
        (label, score)
    }
}
