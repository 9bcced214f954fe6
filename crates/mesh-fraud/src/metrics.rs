//! Ranking metrics for binary scores: ROC-AUC, PR-AUC (average precision), precision in the
//! top 1% and recall at a 1% false-positive rate. Ties are handled as groups, so a constant
//! score gets ROC-AUC 0.5 and PR-AUC equal to the base rate.

use serde::{Deserialize, Serialize};

/// The four numbers reported for a scorer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Area under the ROC curve.
    pub roc_auc: f64,
    /// Area under the precision-recall curve (average precision).
    pub pr_auc: f64,
    /// Precision among the top 1% of scores.
    pub precision_at_1pct: f64,
    /// Recall at the highest threshold set with false-positive rate <= 1%.
    pub recall_at_1pct_fpr: f64,
    /// Rows scored.
    pub n: usize,
    /// Positive rows.
    pub positives: usize,
}

/// Indices sorted by descending score, grouped by equal scores.
fn groups(scores: &[f64]) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in idx {
        match out.last_mut() {
            Some(g) if scores[g[0]] == scores[i] => g.push(i),
            _ => out.push(vec![i]),
        }
    }
    out
}

/// ROC-AUC by the rank-sum (Mann-Whitney) formula with average ranks for ties.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    // ascending ranks
    let mut rank_sum = 0.0;
    let mut next_rank = labels.len() as f64; // highest rank first, as groups are descending
    for g in groups(scores) {
        let k = g.len() as f64;
        let avg = next_rank - (k - 1.0) / 2.0;
        rank_sum += avg * g.iter().filter(|i| labels[**i]).count() as f64;
        next_rank -= k;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Average precision: sum over thresholds of (recall step) x precision.
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let pos = labels.iter().filter(|l| **l).count() as f64;
    if pos == 0.0 {
        return f64::NAN;
    }
    let (mut tp, mut fp, mut ap) = (0.0, 0.0, 0.0);
    for g in groups(scores) {
        let gtp = g.iter().filter(|i| labels[**i]).count() as f64;
        tp += gtp;
        fp += g.len() as f64 - gtp;
        ap += gtp / pos * tp / (tp + fp);
    }
    ap
}

/// Precision among the `ceil(1%)` highest scores (ties broken by input order).
pub fn precision_at_top(scores: &[f64], labels: &[bool], fraction: f64) -> f64 {
    if scores.is_empty() {
        return f64::NAN;
    }
    let k = ((scores.len() as f64 * fraction).ceil() as usize).clamp(1, scores.len());
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
    idx[..k].iter().filter(|i| labels[**i]).count() as f64 / k as f64
}

/// Best recall over thresholds whose false-positive rate is at most `max_fpr`.
pub fn recall_at_fpr(scores: &[f64], labels: &[bool], max_fpr: f64) -> f64 {
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let (mut tp, mut fp, mut best) = (0.0, 0.0, 0.0);
    for g in groups(scores) {
        let gtp = g.iter().filter(|i| labels[**i]).count() as f64;
        tp += gtp;
        fp += g.len() as f64 - gtp;
        if fp / neg <= max_fpr {
            best = tp / pos;
        } else {
            break;
        }
    }
    best
}

impl Metrics {
    /// All four metrics.
    pub fn compute(scores: &[f64], labels: &[bool]) -> Self {
        Self {
            roc_auc: roc_auc(scores, labels),
            pr_auc: pr_auc(scores, labels),
            precision_at_1pct: precision_at_top(scores, labels, 0.01),
            recall_at_1pct_fpr: recall_at_fpr(scores, labels, 0.01),
            n: scores.len(),
            positives: labels.iter().filter(|l| **l).count(),
        }
    }
}

/// Precision–recall curve: `(recall, precision)` after each group of tied
/// scores, taken by descending score. Long curves are thinned to at most
/// `max_points` (evenly by threshold, always keeping the last point).
pub fn pr_curve(scores: &[f64], labels: &[bool], max_points: usize) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|l| **l).count() as f64;
    if pos == 0.0 {
        return Vec::new();
    }
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = Vec::new();
    for g in groups(scores) {
        let gtp = g.iter().filter(|i| labels[**i]).count() as f64;
        tp += gtp;
        fp += g.len() as f64 - gtp;
        out.push((tp / pos, tp / (tp + fp)));
    }
    let n = out.len();
    if max_points >= 2 && n > max_points {
        let keep: Vec<(f64, f64)> = (0..max_points)
            .map(|k| out[k * (n - 1) / (max_points - 1)])
            .collect();
        return keep;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_random_and_tied_rankings() {
        let labels = [true, true, false, false, false];
        let perfect = [0.9, 0.8, 0.3, 0.2, 0.1];
        assert_eq!(roc_auc(&perfect, &labels), 1.0);
        assert_eq!(pr_auc(&perfect, &labels), 1.0);
        let inverted = [0.1, 0.2, 0.3, 0.8, 0.9];
        assert_eq!(roc_auc(&inverted, &labels), 0.0);
        let constant = [0.5; 5];
        assert_eq!(roc_auc(&constant, &labels), 0.5);
        assert!((pr_auc(&constant, &labels) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_values() {
        // ranking: P N P N N -> AP = (1/2)(1/1) + (1/2)(2/3) = 0.8333
        let labels = [true, false, true, false, false];
        let scores = [0.9, 0.8, 0.7, 0.2, 0.1];
        assert!((pr_auc(&scores, &labels) - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        // pairs won: P1 beats 3 N, P2 beats 2 N -> 5/6
        assert!((roc_auc(&scores, &labels) - 5.0 / 6.0).abs() < 1e-12);
        // at FPR 0 only the first positive is found
        assert_eq!(recall_at_fpr(&scores, &labels, 0.01), 0.5);
        assert_eq!(precision_at_top(&scores, &labels, 0.01), 1.0);
    }
}
