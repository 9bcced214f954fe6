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

/// One probability decile of a calibration curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CalibrationBin {
    /// Customers in the bin.
    pub customers: usize,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Observed rate of the positive label.
    pub observed: f64,
}

/// Calibration curve by deciles of the predicted probability: customers are
/// sorted by `p` and cut into `bins` groups of (almost) equal size.
pub fn calibration_bins(p: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut idx: Vec<usize> = (0..p.len().min(labels.len())).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let n = idx.len();
    (0..bins)
        .filter_map(|b| {
            let part = &idx[b * n / bins..(b + 1) * n / bins];
            let k = part.len() as f64;
            (!part.is_empty()).then(|| CalibrationBin {
                customers: part.len(),
                predicted: part.iter().map(|&i| p[i]).sum::<f64>() / k,
                observed: part.iter().filter(|&&i| labels[i]).count() as f64 / k,
            })
        })
        .collect()
}

/// Cumulative gains: for the top 0, 1/`steps`, ..., 100% of customers by
/// score, the share of all positives they hold, as `(fraction targeted,
/// fraction of positives)`; `steps + 1` points from (0, 0) to (1, 1). Customers
/// with tied scores count as one group taken together (the curve is linear
/// across a group), so the input order never matters.
pub fn cumulative_gains(scores: &[f64], labels: &[bool], steps: usize) -> Vec<(f64, f64)> {
    let steps = steps.max(1);
    let mut idx: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let n = idx.len().max(1) as f64;
    let pos = idx.iter().filter(|&&i| labels[i]).count().max(1) as f64;
    // (customers taken, positives among them) at the end of each tied group
    let mut ends = vec![(0.0, 0.0)];
    let (mut taken, mut hits) = (0.0, 0.0);
    for (k, &i) in idx.iter().enumerate() {
        taken += 1.0;
        hits += f64::from(u8::from(labels[i]));
        if idx.get(k + 1).is_none_or(|&j| scores[j] != scores[i]) {
            ends.push((taken / n, hits / pos));
        }
    }
    (0..=steps)
        .map(|s| {
            let f = s as f64 / steps as f64;
            let k = ends
                .iter()
                .position(|e| e.0 >= f - 1e-12)
                .unwrap_or(ends.len() - 1);
            let y = if k == 0 {
                0.0
            } else {
                let ((x0, y0), (x1, y1)) = (ends[k - 1], ends[k]);
                y0 + (y1 - y0) * (f - x0) / (x1 - x0).max(1e-12)
            };
            (f, y.min(1.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn gains_treat_ties_as_one_group() {
        // Four tied customers, two buyers: any share of the group reaches that
        // share of the buyers whatever the input order.
        let a = super::cumulative_gains(&[1.0; 4], &[true, true, false, false], 4);
        let b = super::cumulative_gains(&[1.0; 4], &[false, false, true, true], 4);
        assert_eq!(a, b);
        assert!((a[1].1 - 0.25).abs() < 1e-12, "{a:?}");
        let perfect =
            super::cumulative_gains(&[0.9, 0.8, 0.1, 0.0], &[true, true, false, false], 2);
        assert_eq!(perfect, vec![(0.0, 0.0), (0.5, 1.0), (1.0, 1.0)]);
    }

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
