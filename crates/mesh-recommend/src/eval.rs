//! Offline evaluation: full-ranking top-K metrics of a model on a split, validation-based
//! tuning and BPR early stopping.

use std::ops::ControlFlow;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::UserItems;
use crate::error::Result;
use crate::metrics::TopKMetrics;
use crate::models::{Bpr, BprParams, Model, ModelSpec};
use crate::topn::top_n_dense;

/// Cut-off of every reported metric.
pub const K: usize = 10;

/// Mean top-`K` metrics of `model` over users with at least one `target` item. Each user's
/// ranking covers all items except their `train` items and `also_excluded` items (RecBole
/// masks train + valid when scoring test). `train` is also the history the model scores from.
pub fn evaluate(
    model: &Model,
    train: &UserItems,
    also_excluded: &UserItems,
    target: &UserItems,
) -> Result<TopKMetrics> {
    let n_items = match model {
        Model::Popularity(m) => m.counts.len(),
        Model::ItemKnn(m) => m.neighbours.len(),
        Model::Bpr(m) => m.item_bias.len(),
        Model::Als(m) => m.item_factors.len() / m.params.dims,
        Model::Ease(m) => m.n_items,
        Model::Blend(m) => m.ease.n_items,
    };
    let per_user: Vec<Result<Option<TopKMetrics>>> = (0..target.len())
        .into_par_iter()
        .map_init(
            || (vec![0f32; n_items], vec![false; n_items]),
            |(scores, banned), u| {
                if target[u].is_empty() {
                    return Ok(None);
                }
                model.score(Some(u), &train[u], scores)?;
                banned.fill(false);
                for &i in train[u]
                    .iter()
                    .chain(also_excluded.get(u).into_iter().flatten())
                {
                    banned[i as usize] = true;
                }
                let top: Vec<u32> = top_n_dense(scores, K, |i| banned[i])
                    .into_iter()
                    .map(|(i, _)| i as u32)
                    .collect();
                Ok(TopKMetrics::of_list(&top, &target[u], K))
            },
        )
        .collect();
    let mut all = Vec::with_capacity(per_user.len());
    for m in per_user {
        if let Some(m) = m? {
            all.push(m);
        }
    }
    Ok(TopKMetrics::mean(&all))
}

/// Result of choosing hyper-parameters on a validation split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tuned {
    /// The chosen spec.
    pub spec: ModelSpec,
    /// Its validation NDCG@10.
    pub valid_ndcg: f64,
}

/// Trains every spec on `train`, scores `valid`, returns the best by NDCG@10 (ties: first).
pub fn tune(
    grid: &[ModelSpec],
    train: &UserItems,
    valid: &UserItems,
    n_items: usize,
    seed: u64,
) -> Result<Tuned> {
    let mut best: Option<Tuned> = None;
    for spec in grid {
        let (spec, ndcg) = match spec {
            ModelSpec::Bpr(p) => {
                let (_, epochs, ndcg) =
                    bpr_early_stopped(train, valid, &Vec::new(), n_items, *p, seed)?;
                (ModelSpec::Bpr(BprParams { epochs, ..*p }), ndcg)
            }
            _ => {
                let m = spec.train(train, n_items, seed)?;
                (*spec, evaluate(&m, train, &Vec::new(), valid)?.ndcg)
            }
        };
        if best.as_ref().is_none_or(|b| ndcg > b.valid_ndcg) {
            best = Some(Tuned {
                spec,
                valid_ndcg: ndcg,
            });
        }
    }
    Ok(best.unwrap_or(Tuned {
        spec: ModelSpec::Popularity,
        valid_ndcg: 0.0,
    }))
}

/// Epochs between two validation checks of BPR early stopping.
pub const BPR_CHECK_EVERY: usize = 10;
/// Validation checks without improvement before BPR stops.
pub const BPR_PATIENCE: usize = 3;

/// Trains BPR for up to `params.epochs`, checking validation NDCG@10 every
/// [`BPR_CHECK_EVERY`] epochs and stopping after [`BPR_PATIENCE`] checks without improvement.
/// Returns the best snapshot (as a [`Model::Bpr`]), its epoch count and validation NDCG.
pub fn bpr_early_stopped(
    train: &UserItems,
    valid: &UserItems,
    also_excluded: &UserItems,
    n_items: usize,
    params: BprParams,
    seed: u64,
) -> Result<(Model, usize, f64)> {
    let mut best: Option<(Model, usize, f64)> = None;
    let mut since_best = 0;
    let mut failure = None;
    let last = Bpr::fit_with(train, n_items, params, seed, |epoch, m| {
        if epoch % BPR_CHECK_EVERY != 0 && epoch != params.epochs {
            return ControlFlow::Continue(());
        }
        let wrapped = Model::Bpr(m.clone());
        match evaluate(&wrapped, train, also_excluded, valid) {
            Ok(v) if best.as_ref().is_none_or(|b| v.ndcg > b.2) => {
                best = Some((wrapped, epoch, v.ndcg));
                since_best = 0;
            }
            Ok(_) => since_best += 1,
            Err(e) => {
                failure = Some(e);
                return ControlFlow::Break(());
            }
        }
        if since_best >= BPR_PATIENCE {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let epochs = last.epochs_run;
    Ok(best.unwrap_or((Model::Bpr(last), epochs, 0.0)))
}
