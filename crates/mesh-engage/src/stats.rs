//! Small numeric helpers shared by the modules: normal distribution, tiny dense linear
//! algebra for the bandit (dimension ~10, so hand-written Cholesky beats pulling a matrix
//! crate into the state), stable hashing and AUC.

use crate::error::{EngageError, Result};

/// Two-sided 95% normal quantile.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Two-sided normal quantile for a confidence `level` in (0, 1).
pub fn normal_quantile_two_sided(level: f64) -> Result<f64> {
    use statrs::distribution::{ContinuousCDF, Normal};
    if !(level > 0.0 && level < 1.0) {
        return Err(EngageError::OutOfRange {
            what: "confidence level",
            expected: "in (0, 1)",
            value: level,
        });
    }
    let n = Normal::new(0.0, 1.0).map_err(|e| EngageError::Numerical {
        what: "normal quantile",
        detail: e.to_string(),
    })?;
    Ok(n.inverse_cdf(0.5 + level / 2.0))
}

/// Logistic function, safe for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Stable 64-bit hash of byte strings (FNV-1a followed by the splitmix64 finaliser so that
/// nearby ids spread over the whole range). Stable across processes and releases, unlike
/// `std::hash`, which matters for assignment and feature hashing.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // Separator so ("ab","c") and ("a","bc") differ.
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a hash to [0, 1).
pub fn unit_interval(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Cholesky factor `L` (row-major, lower) of a symmetric positive-definite `n x n` matrix.
pub fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(EngageError::Numerical {
                        what: "cholesky",
                        detail: format!("matrix not positive definite at pivot {i} ({s})"),
                    });
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// Solves `L y = b` (forward substitution).
pub fn forward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    y
}

/// Solves `L^T x = y` (back substitution).
pub fn backward(l: &[f64], n: usize, y: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    x
}

/// Area under the ROC curve by the rank-sum formula (ties get half credit).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    if scores.len() != labels.len() {
        return Err(EngageError::DimensionMismatch {
            what: "auc labels",
            expected: scores.len(),
            got: labels.len(),
        });
    }
    let pos = labels.iter().filter(|l| **l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return Err(EngageError::NotEnoughData {
            what: "auc needs both classes; the smaller class",
            needed: 1,
            got: 0,
        });
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            if labels[*k] {
                rank_sum += avg_rank;
            }
        }
        i = j + 1;
    }
    let p = pos as f64;
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// Mean and unbiased variance.
pub fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / n;
    let v = if xs.len() > 1 {
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_spd_system() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        let x = backward(&l, 2, &forward(&l, 2, &[2.0, 1.0]));
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_err());
    }

    #[test]
    fn auc_of_perfect_and_reversed_scores() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels).unwrap(), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels).unwrap(), 0.0);
        assert_eq!(roc_auc(&[0.5; 4], &labels).unwrap(), 0.5);
    }

    #[test]
    fn normal_helpers() {
        assert!((normal_cdf(Z95) - 0.975).abs() < 1e-9);
        assert!((normal_quantile_two_sided(0.95).unwrap() - Z95).abs() < 1e-6);
        assert!(normal_quantile_two_sided(1.5).is_err());
        assert!(sigmoid(-1000.0).is_finite() && sigmoid(1000.0) == 1.0);
    }
}
