//! Item-kNN: cosine similarity with shrinkage, top-k neighbours per item.
//!
//! `sim(i, j) = c_ij / (sqrt(c_i · c_j) + shrink)` where `c_ij` counts users who have both
//! items; each item keeps its `k` most similar items. A user's score for item `j` is the sum
//! of `sim(i, j)` over the history items `i` whose neighbour list contains `j`.

use serde::{Deserialize, Serialize};

use super::gram::gram;
use crate::data::UserItems;
use crate::topn::top_n;

/// Item-kNN hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnParams {
    /// Neighbours kept per item.
    pub k: usize,
    /// Shrinkage added to the cosine denominator (damps pairs with little support).
    pub shrink: f64,
}

impl Default for KnnParams {
    fn default() -> Self {
        Self {
            k: 800,
            shrink: 0.0,
        }
    }
}

/// Neighbour lists of every item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemKnn {
    /// Hyper-parameters used.
    pub params: KnnParams,
    /// `neighbours[i]` = `(j, sim)` sorted by decreasing similarity.
    pub neighbours: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    /// Builds the neighbour lists from training data.
    pub fn fit(train: &UserItems, n_items: usize, params: KnnParams) -> Self {
        let g = gram(train, n_items);
        Self::from_gram(&g, n_items, params)
    }

    /// Builds the neighbour lists from a precomputed Gram matrix.
    pub fn from_gram(g: &[f64], n: usize, params: KnnParams) -> Self {
        let norms: Vec<f64> = (0..n).map(|i| g[i * n + i].sqrt()).collect();
        let neighbours = (0..n)
            .map(|i| {
                let row = &g[i * n..(i + 1) * n];
                let sims = (0..n).filter(|&j| j != i && row[j] > 0.0).map(|j| {
                    let s = row[j] / (norms[i] * norms[j] + params.shrink);
                    (j as u32, s)
                });
                top_n(sims, params.k)
                    .into_iter()
                    .map(|(j, s)| (j, s as f32))
                    .collect()
            })
            .collect();
        Self { params, neighbours }
    }

    /// Writes scores for a user with the given history.
    pub fn score(&self, history: &[u32], out: &mut [f32]) {
        out.fill(0.0);
        for &i in history {
            for &(j, s) in &self.neighbours[i as usize] {
                out[j as usize] += s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinkage_and_cosine_by_hand() {
        // Items 0 and 1 always together (2 users); item 2 with 1 once.
        let train = vec![vec![0, 1], vec![0, 1, 2], vec![3]];
        let m = ItemKnn::fit(&train, 4, KnnParams { k: 5, shrink: 1.0 });
        let s01 = m.neighbours[0].iter().find(|p| p.0 == 1).unwrap().1;
        assert!((s01 - 2.0 / (2.0 + 1.0)).abs() < 1e-6);
        let s12 = m.neighbours[1].iter().find(|p| p.0 == 2).unwrap().1;
        assert!((s12 as f64 - 1.0 / (2f64.sqrt() + 1.0)).abs() < 1e-6);
        assert!(m.neighbours[3].is_empty());
        let mut out = vec![0f32; 4];
        m.score(&[0], &mut out);
        assert!(out[1] > out[2] && out[3] == 0.0);
    }
}
