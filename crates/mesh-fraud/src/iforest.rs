//! Isolation forest (Liu, Ting & Zhou 2008): an unsupervised anomaly score for cold start,
//! before any labelled history exists.
//!
//! Written here rather than taken from a crate: smartcore has none, and the one maintained
//! Rust port (`extended-isolation-forest` 0.2) fixes the dimension at compile time (`[f64; N]`)
//! and draws from `thread_rng` with no seed, so evaluations would not be reproducible and the
//! generic CSV trainer could not use it. The algorithm is ~100 lines.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Node {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    Leaf {
        size: usize,
    },
}

/// A trained isolation forest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolationForest {
    trees: Vec<Vec<Node>>,
    dims: usize,
    c_norm: f64,
}

/// Signed `log1p`: split points are drawn uniformly between min and max, which heavy-tailed
/// counts and amounts would otherwise waste on their tails.
fn slog(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

/// Average path length of an unsuccessful BST search over `n` points.
fn c_factor(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_9) - 2.0 * (n - 1.0) / n
        }
    }
}

fn build(
    rows: &[&[f64]],
    idx: &mut [usize],
    depth: usize,
    max_depth: usize,
    rng: &mut ChaCha8Rng,
    nodes: &mut Vec<Node>,
) -> usize {
    let me = nodes.len();
    nodes.push(Node::Leaf { size: idx.len() });
    if idx.len() <= 1 || depth >= max_depth {
        return me;
    }
    // pick a random feature among those that still vary in this node
    let ranges: Vec<(usize, f64, f64)> = (0..rows[0].len())
        .filter_map(|f| {
            let (lo, hi) = idx
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &i| {
                    (lo.min(rows[i][f]), hi.max(rows[i][f]))
                });
            (hi > lo).then_some((f, lo, hi))
        })
        .collect();
    if ranges.is_empty() {
        return me;
    }
    let (f, lo, hi) = ranges[rng.random_range(0..ranges.len())];
    let t = rng.random_range(lo..hi);
    let mut split = 0;
    for k in 0..idx.len() {
        if rows[idx[k]][f] < t {
            idx.swap(k, split);
            split += 1;
        }
    }
    let (l, r) = idx.split_at_mut(split);
    let left = build(rows, l, depth + 1, max_depth, rng, nodes);
    let right = build(rows, r, depth + 1, max_depth, rng, nodes);
    nodes[me] = Node::Split {
        feature: f,
        threshold: t,
        left,
        right,
    };
    me
}

impl IsolationForest {
    /// Fit `n_trees` trees, each on `sample_size` rows drawn without replacement.
    pub fn fit(rows: &[Vec<f64>], n_trees: usize, sample_size: usize, seed: u64) -> Result<Self> {
        let dims = rows.first().map_or(0, Vec::len);
        if rows.len() < 2 || dims == 0 || n_trees == 0 {
            return Err(Error::Model(format!(
                "isolation forest needs >= 2 rows with >= 1 feature and >= 1 tree, got {} rows, {dims} features, {n_trees} trees",
                rows.len()
            )));
        }
        let psi = sample_size.clamp(2, rows.len());
        let max_depth = (psi as f64).log2().ceil() as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let logged: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().map(|x| slog(*x)).collect())
            .collect();
        let view: Vec<&[f64]> = logged.iter().map(Vec::as_slice).collect();
        let trees = (0..n_trees)
            .map(|_| {
                let mut idx = rand::seq::index::sample(&mut rng, rows.len(), psi).into_vec();
                let mut nodes = Vec::with_capacity(2 * psi);
                build(&view, &mut idx, 0, max_depth, &mut rng, &mut nodes);
                nodes
            })
            .collect();
        Ok(Self {
            trees,
            dims,
            c_norm: c_factor(psi),
        })
    }

    /// Anomaly score in (0, 1): about 0.5 for ordinary points, towards 1 for isolated ones.
    pub fn score(&self, x: &[f64]) -> f64 {
        debug_assert_eq!(x.len(), self.dims);
        let x: Vec<f64> = x.iter().map(|v| slog(*v)).collect();
        let total: f64 = self
            .trees
            .iter()
            .map(|nodes| {
                let (mut i, mut depth) = (0, 0.0);
                loop {
                    match &nodes[i] {
                        Node::Split {
                            feature,
                            threshold,
                            left,
                            right,
                        } => {
                            i = if x[*feature] < *threshold {
                                *left
                            } else {
                                *right
                            };
                            depth += 1.0;
                        }
                        Node::Leaf { size } => break depth + c_factor(*size),
                    }
                }
            })
            .sum();
        let mean = total / self.trees.len() as f64;
        2f64.powf(-mean / self.c_norm)
    }
}
