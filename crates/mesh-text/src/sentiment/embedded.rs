//! The English model's sentence-encoder head (feature `embed`): a softmax regression over
//! [MiniLM sentence embedding · w_e ++ VADER lexicon features · w_l ++ the n-gram model's
//! out-of-fold scores · w_n], with weights, L2, class balancing and per-class log-prob
//! offsets chosen by 5-fold CV inside the training rows.

use std::path::Path;
use std::sync::Arc;

use mesh_embed::SentenceEncoder;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::english::{EmbedChoice, EnglishModel};
use super::{lexicon_features, Polarity, N_LEXICON_FEATURES};
use crate::classify::{argmax, LinearClassifier, TrainConfig};
use crate::data::RatedText;
use crate::metrics::class_report;
use crate::tokenize::SparseVec;
use crate::{Error, Result};

const FOLDS: usize = 5;

/// The trained head: the encoder it needs at prediction time and its classifier.
#[derive(Debug, Clone)]
pub struct EmbedHead {
    pub(crate) encoder: Arc<SentenceEncoder>,
    clf: LinearClassifier,
    pub(crate) choice: EmbedChoice,
}

/// Loads the encoder in `dir`; the error names the directory and the missing file.
pub fn load_encoder(dir: &Path) -> Result<Arc<SentenceEncoder>> {
    SentenceEncoder::load(dir)
        .map(Arc::new)
        .map_err(|e| Error::InvalidInput(e.to_string()))
}

fn embed_err(e: mesh_embed::Error) -> Error {
    Error::InvalidInput(format!("sentence encoder: {e}"))
}

fn features(emb: &[f32], lex: &[f32], ng: &[f32; 4], c: &EmbedChoice) -> SparseVec {
    let mut x = SparseVec {
        idx: Vec::new(),
        val: Vec::new(),
    };
    let d = emb.len() as u32;
    x.push_dense(
        0,
        &emb.iter().map(|v| v * c.embed_weight).collect::<Vec<_>>(),
    );
    x.push_dense(
        d,
        &lex.iter().map(|v| v * c.lexicon_weight).collect::<Vec<_>>(),
    );
    x.push_dense(
        d + N_LEXICON_FEATURES as u32,
        &ng.map(|v| v * c.ngram_weight),
    );
    x
}

fn decide(p: &[f32], c: &EmbedChoice) -> usize {
    argmax(&[
        p[0].max(1e-9).ln() + c.negative_offset,
        p[1].max(1e-9).ln() + c.neutral_offset,
        p[2].max(1e-9).ln(),
    ])
    .0
}

fn ngram_scores(m: &EnglishModel, text: &str) -> [f32; 4] {
    let (p, r) = m.scores(text);
    [p[0], p[1], p[2], r]
}

fn train_cfg(c: &EmbedChoice, seed: u64) -> TrainConfig {
    TrainConfig {
        l2: c.l2,
        balanced: c.balanced,
        epochs: 30,
        lr: 0.1,
        seed,
    }
}

/// Trains the n-gram model on `rows` and the encoder head on top of it.
pub(crate) fn train(
    rows: &[RatedText],
    seed: u64,
    encoder: Arc<SentenceEncoder>,
) -> Result<EnglishModel> {
    let mut ngram = EnglishModel::train(rows, seed)?;
    let n = rows.len();
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let y: Vec<usize> = rows
        .iter()
        .map(|r| Polarity::from_rating(r.rating).index())
        .collect();
    let labels: Vec<String> = super::LABELS3.iter().map(|s| s.to_string()).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xe3));
    let mut fold_of = vec![0usize; n];
    for (i, &k) in order.iter().enumerate() {
        fold_of[k] = i % FOLDS;
    }
    // Out-of-fold n-gram scores: each fold's rows scored by an n-gram model (with its own
    // inner CV) trained on the other folds, so the head learns how far to trust them.
    let mut ng = vec![[0f32; 4]; n];
    for f in 0..FOLDS {
        let tr: Vec<RatedText> = (0..n)
            .filter(|&k| fold_of[k] != f)
            .map(|k| rows[k].clone())
            .collect();
        let m = EnglishModel::train(&tr, seed)?;
        for k in (0..n).filter(|&k| fold_of[k] == f) {
            ng[k] = ngram_scores(&m, texts[k]);
        }
    }
    let emb = encoder.embed_batch(&texts).map_err(embed_err)?;
    let lex: Vec<[f32; N_LEXICON_FEATURES]> = texts.iter().map(|t| lexicon_features(t)).collect();
    let dim = encoder.dim() + N_LEXICON_FEATURES + 4;

    let oof = |c: &EmbedChoice| -> Result<Vec<Vec<f32>>> {
        let xs: Vec<SparseVec> = (0..n)
            .map(|k| features(&emb[k], &lex[k], &ng[k], c))
            .collect();
        let mut out = vec![Vec::new(); n];
        for f in 0..FOLDS {
            let d: Vec<(SparseVec, usize)> = (0..n)
                .filter(|&k| fold_of[k] != f)
                .map(|k| (xs[k].clone(), y[k]))
                .collect();
            let m = LinearClassifier::train(labels.clone(), dim, &d, &train_cfg(c, seed))?;
            for k in (0..n).filter(|&k| fold_of[k] == f) {
                out[k] = m.predict_proba(&xs[k]);
            }
        }
        Ok(out)
    };
    let mut best: Option<(f64, EmbedChoice, Vec<Vec<f32>>)> = None;
    for embed_weight in [1.0f32] {
        for lexicon_weight in [0.0f32, 0.25] {
            for ngram_weight in [0.0f32, 1.0] {
                for l2 in [3e-4f32, 1e-3, 3e-3] {
                    for balanced in [false, true] {
                        let c = EmbedChoice {
                            embed_weight,
                            lexicon_weight,
                            ngram_weight,
                            l2,
                            balanced,
                            negative_offset: 0.0,
                            neutral_offset: 0.0,
                            cv_macro_f1: 0.0,
                        };
                        let p = oof(&c)?;
                        let pred: Vec<usize> = p.iter().map(|q| argmax(q).0).collect();
                        let f1 = class_report(&labels, &y, &pred).macro_f1;
                        if best.as_ref().is_none_or(|b| f1 > b.0) {
                            best = Some((f1, c, p));
                        }
                    }
                }
            }
        }
    }
    let (mut cv, mut choice, probs) = best.expect("grid is non-empty");
    for a in -10..=10 {
        for b in -10..=10 {
            let c = EmbedChoice {
                negative_offset: a as f32 * 0.1,
                neutral_offset: b as f32 * 0.1,
                ..choice
            };
            let pred: Vec<usize> = probs.iter().map(|q| decide(q, &c)).collect();
            let f1 = class_report(&labels, &y, &pred).macro_f1;
            if f1 > cv {
                cv = f1;
                choice = c;
            }
        }
    }
    choice.cv_macro_f1 = cv;
    let all: Vec<(SparseVec, usize)> = (0..n)
        .map(|k| (features(&emb[k], &lex[k], &ng[k], &choice), y[k]))
        .collect();
    let clf = LinearClassifier::train(labels, dim, &all, &train_cfg(&choice, seed))?;
    ngram.embed = Some(EmbedHead {
        encoder,
        clf,
        choice,
    });
    Ok(ngram)
}

impl EmbedHead {
    /// Class probabilities and label index for texts whose embeddings and n-gram scores
    /// are given.
    pub(crate) fn predict(&self, emb: &[f32], text: &str, ng: [f32; 4]) -> (usize, [f32; 3]) {
        let lex = lexicon_features(text);
        let p = self
            .clf
            .predict_proba(&features(emb, &lex, &ng, &self.choice));
        (decide(&p, &self.choice), [p[0], p[1], p[2]])
    }

    /// Embeds `texts` in batches.
    pub(crate) fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.encoder.embed_batch(texts).map_err(embed_err)
    }

    /// The n-gram scores of `text` under `m` (the head's inputs besides the embedding).
    pub(crate) fn ngram_inputs(m: &EnglishModel, text: &str) -> [f32; 4] {
        ngram_scores(m, text)
    }
}
