//! Top-K ranking metrics with binary relevance, as RecBole and Microsoft Recommenders define
//! them: precision = hits/K, recall = hits/|relevant|, NDCG with ideal DCG over
//! `min(|relevant|, K)` positions, hit = any hit, MRR = 1/rank of the first hit.

use serde::{Deserialize, Serialize};

/// Metrics of one user or a mean over users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TopKMetrics {
    /// Precision@K.
    #[serde(rename = "precision@10")]
    pub precision: f64,
    /// Recall@K.
    #[serde(rename = "recall@10")]
    pub recall: f64,
    /// NDCG@K.
    #[serde(rename = "ndcg@10")]
    pub ndcg: f64,
    /// Hit@K.
    #[serde(rename = "hit@10")]
    pub hit: f64,
    /// MRR@K.
    #[serde(rename = "mrr@10")]
    pub mrr: f64,
}

impl TopKMetrics {
    /// Metrics of one ranked list (`ranked[0]` is the top) against the relevant set, at `k`.
    /// Returns `None` when `relevant` is empty (such users are not averaged).
    pub fn of_list(ranked: &[u32], relevant: &[u32], k: usize) -> Option<Self> {
        if relevant.is_empty() || k == 0 {
            return None;
        }
        let mut hits = 0usize;
        let (mut dcg, mut mrr) = (0.0, 0.0);
        for (pos, item) in ranked.iter().take(k).enumerate() {
            if relevant.contains(item) {
                hits += 1;
                dcg += 1.0 / ((pos + 2) as f64).log2();
                if mrr == 0.0 {
                    mrr = 1.0 / (pos + 1) as f64;
                }
            }
        }
        let idcg: f64 = (0..relevant.len().min(k))
            .map(|p| 1.0 / ((p + 2) as f64).log2())
            .sum();
        Some(Self {
            precision: hits as f64 / k as f64,
            recall: hits as f64 / relevant.len() as f64,
            ndcg: dcg / idcg,
            hit: if hits > 0 { 1.0 } else { 0.0 },
            mrr,
        })
    }

    /// Mean of several metric sets (zero when empty).
    pub fn mean(all: &[Self]) -> Self {
        let n = all.len().max(1) as f64;
        let mut m = Self::default();
        for x in all {
            m.precision += x.precision / n;
            m.recall += x.recall / n;
            m.ndcg += x.ndcg / n;
            m.hit += x.hit / n;
            m.mrr += x.mrr / n;
        }
        m
    }

    /// Population standard deviation of each metric.
    pub fn std(all: &[Self]) -> Self {
        let mu = Self::mean(all);
        let n = all.len().max(1) as f64;
        let sq = |f: fn(&Self) -> f64| {
            (all.iter().map(|x| (f(x) - f(&mu)).powi(2)).sum::<f64>() / n).sqrt()
        };
        Self {
            precision: sq(|x| x.precision),
            recall: sq(|x| x.recall),
            ndcg: sq(|x| x.ndcg),
            hit: sq(|x| x.hit),
            mrr: sq(|x| x.mrr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn hand_computed_list() {
        // Relevant {2, 5, 9}; ranked list hits at positions 2 and 4 (1-based), K = 5.
        let m = TopKMetrics::of_list(&[7, 2, 8, 5, 1], &[2, 5, 9], 5).unwrap();
        close(m.precision, 2.0 / 5.0);
        close(m.recall, 2.0 / 3.0);
        close(m.hit, 1.0);
        close(m.mrr, 0.5);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        close(m.ndcg, dcg / idcg);
    }

    #[test]
    fn ideal_dcg_is_capped_at_k_and_perfect_list_scores_one() {
        let relevant: Vec<u32> = (0..20).collect();
        let m = TopKMetrics::of_list(&[0, 1, 2], &relevant, 3).unwrap();
        close(m.ndcg, 1.0);
        close(m.precision, 1.0);
        close(m.recall, 3.0 / 20.0);
    }

    #[test]
    fn miss_and_empty() {
        let m = TopKMetrics::of_list(&[1, 2], &[3], 2).unwrap();
        assert_eq!(m, TopKMetrics::default());
        assert!(TopKMetrics::of_list(&[1], &[], 10).is_none());
    }

    #[test]
    fn mean_and_std() {
        let a = TopKMetrics {
            precision: 0.2,
            recall: 0.4,
            ndcg: 0.1,
            hit: 1.0,
            mrr: 1.0,
        };
        let b = TopKMetrics {
            precision: 0.4,
            recall: 0.0,
            ndcg: 0.3,
            hit: 0.0,
            mrr: 0.0,
        };
        let m = TopKMetrics::mean(&[a, b]);
        close(m.precision, 0.3);
        close(m.hit, 0.5);
        close(TopKMetrics::std(&[a, b]).ndcg, 0.1);
    }
}
