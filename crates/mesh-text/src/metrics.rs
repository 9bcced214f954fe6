//! Classification and ranking metrics shared by the evals.

use serde::{Deserialize, Serialize};

/// Precision, recall and F1 for one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// Accuracy, macro F1 and per-class scores of predictions against truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub n_test: usize,
    pub per_class: Vec<ClassScores>,
}

/// Scores class-index predictions; `labels[i]` names class `i`.
pub fn class_report(labels: &[String], truth: &[usize], pred: &[usize]) -> ClassReport {
    let k = labels.len();
    let mut tp = vec![0usize; k];
    let mut fp = vec![0usize; k];
    let mut fneg = vec![0usize; k];
    for (&t, &p) in truth.iter().zip(pred) {
        if t == p {
            tp[t] += 1;
        } else {
            fp[p] += 1;
            fneg[t] += 1;
        }
    }
    let div = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let precision = div(tp[c], tp[c] + fp[c]);
            let recall = div(tp[c], tp[c] + fneg[c]);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassScores {
                label: labels[c].clone(),
                precision,
                recall,
                f1,
                support: tp[c] + fneg[c],
            }
        })
        .collect();
    ClassReport {
        accuracy: div(tp.iter().sum(), truth.len()),
        macro_f1: per_class.iter().map(|c| c.f1).sum::<f64>() / k.max(1) as f64,
        n_test: truth.len(),
        per_class,
    }
}

/// NDCG@k of a ranked list of graded gains against the ideal ordering of `all_gains`.
pub fn ndcg_at(ranked_gains: &[f64], all_gains: &[f64], k: usize) -> f64 {
    let dcg = |g: &[f64]| -> f64 {
        g.iter()
            .take(k)
            .enumerate()
            .map(|(i, &r)| (2f64.powf(r) - 1.0) / ((i + 2) as f64).log2())
            .sum()
    };
    let mut ideal = all_gains.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let i = dcg(&ideal);
    if i == 0.0 {
        0.0
    } else {
        dcg(ranked_gains) / i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts() {
        let l = vec!["a".to_string(), "b".to_string()];
        let r = class_report(&l, &[0, 0, 1, 1], &[0, 1, 1, 1]);
        assert_eq!(r.accuracy, 0.75);
        assert!((r.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-9);
        assert!((r.per_class[1].precision - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn ndcg_perfect_and_reversed() {
        assert!((ndcg_at(&[2.0, 1.0, 0.0], &[0.0, 1.0, 2.0], 10) - 1.0).abs() < 1e-12);
        assert!(ndcg_at(&[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0], 10) < 0.8);
    }
}
