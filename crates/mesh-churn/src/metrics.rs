//! Evaluation metrics: ROC-AUC (rank based, ties averaged) and Pearson correlation.

use crate::error::{Error, Result};

/// Area under the ROC curve of `scores` for binary `labels` (true = positive), by the
/// Mann–Whitney statistic with tied scores given the average rank.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    if scores.len() != labels.len() {
        return Err(Error::InvalidInput(format!(
            "AUC: {} scores vs {} labels",
            scores.len(),
            labels.len()
        )));
    }
    if scores.iter().any(|s| s.is_nan()) {
        return Err(Error::InvalidInput("AUC: NaN score".into()));
    }
    let pos = labels.iter().filter(|l| **l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return Err(Error::InvalidInput(
            "AUC needs both positive and negative labels".into(),
        ));
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // ranks i+1 ..= j+1 share their average
        let avg = (i + j + 2) as f64 / 2.0;
        rank_sum_pos += avg * idx[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Ok((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// Pearson correlation of two equally long series.
pub fn pearson(a: &[f64], b: &[f64]) -> Result<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return Err(Error::InvalidInput(format!(
            "correlation needs two series of equal length >= 2, got {} and {}",
            a.len(),
            b.len()
        )));
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return Err(Error::InvalidInput(
            "correlation undefined for a constant series".into(),
        ));
    }
    Ok(sab / (saa * sbb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_known_values() {
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]).unwrap(),
            1.0
        );
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]).unwrap(),
            0.0
        );
        // all tied -> 0.5
        assert_eq!(
            roc_auc(&[1.0; 4], &[false, true, false, true]).unwrap(),
            0.5
        );
        // one inversion out of four pairs
        assert_eq!(
            roc_auc(&[0.1, 0.6, 0.5, 0.9], &[false, false, true, true]).unwrap(),
            0.75
        );
        assert!(roc_auc(&[0.1], &[true]).is_err());
    }

    #[test]
    fn pearson_known_values() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_err());
    }
}
