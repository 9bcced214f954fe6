//! Classical decomposition, autocorrelation and the 90% seasonality test used by Theta.
//!
//! These follow R's `decompose()` and the test inside `forecast::thetaf` so that seasonal
//! adjustment matches the published M3 Theta benchmark.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// Additive or multiplicative seasonal decomposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `y = trend + season + remainder`.
    Additive,
    /// `y = trend * season * remainder`.
    Multiplicative,
}

/// Sample autocorrelations `r_1 .. r_max_lag` (R's `acf`, biased denominator).
pub fn acf(x: &[f64], max_lag: usize) -> Vec<f64> {
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n as f64;
    let denom: f64 = x.iter().map(|v| (v - mean).powi(2)).sum();
    (1..=max_lag)
        .map(|k| {
            if k >= n || denom == 0.0 {
                return 0.0;
            }
            let num: f64 = (0..n - k).map(|t| (x[t] - mean) * (x[t + k] - mean)).sum();
            num / denom
        })
        .collect()
}

/// `thetaf`'s test: is the lag-`m` autocorrelation significant at the one-sided 90% level?
///
/// Uses Bartlett's standard error built from the lower-order autocorrelations. Needs
/// `m > 1`, a non-constant series and more than `2m` observations; otherwise `false`.
pub fn is_seasonal(x: &[f64], m: usize) -> bool {
    let n = x.len();
    if m <= 1 || n <= 2 * m || is_constant(x) {
        return false;
    }
    let r = acf(x, m);
    let sum_sq: f64 = r[..m - 1].iter().map(|v| v * v).sum();
    let stat = ((1.0 + 2.0 * sum_sq) / n as f64).sqrt();
    let z90 = Normal::standard().inverse_cdf(0.95);
    r[m - 1].abs() / stat > z90
}

fn is_constant(x: &[f64]) -> bool {
    x.windows(2).all(|w| w[0] == w[1])
}

/// Centred moving average of order `m` (2×m for even `m`); `None` at the ends.
fn centred_ma(x: &[f64], m: usize) -> Vec<Option<f64>> {
    let n = x.len();
    let mut out = vec![None; n];
    if m % 2 == 1 {
        let half = m / 2;
        for t in half..n.saturating_sub(half) {
            out[t] = Some(x[t - half..=t + half].iter().sum::<f64>() / m as f64);
        }
    } else {
        let half = m / 2;
        for t in half..n.saturating_sub(half) {
            let inner: f64 = x[t + 1 - half..t + half].iter().sum();
            out[t] = Some((inner + 0.5 * (x[t - half] + x[t + half])) / m as f64);
        }
    }
    out
}

/// Seasonal figure of R's `decompose`: `figure[k]` is the index for positions `t % m == k`.
///
/// Normalised to mean 0 (additive) or mean 1 (multiplicative). `None` if the series is
/// shorter than two full cycles.
pub fn seasonal_figure(x: &[f64], m: usize, kind: Kind) -> Option<Vec<f64>> {
    if m <= 1 || x.len() < 2 * m {
        return None;
    }
    let trend = centred_ma(x, m);
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    for (t, tr) in trend.iter().enumerate() {
        if let Some(tr) = tr {
            let d = match kind {
                Kind::Additive => x[t] - tr,
                Kind::Multiplicative => x[t] / tr,
            };
            if d.is_finite() {
                sums[t % m] += d;
                counts[t % m] += 1;
            }
        }
    }
    if counts.contains(&0) {
        return None;
    }
    let mut fig: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| s / *c as f64)
        .collect();
    let mean = fig.iter().sum::<f64>() / m as f64;
    match kind {
        Kind::Additive => fig.iter_mut().for_each(|v| *v -= mean),
        Kind::Multiplicative => {
            if mean == 0.0 {
                return None;
            }
            fig.iter_mut().for_each(|v| *v /= mean)
        }
    }
    Some(fig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acf_of_alternating_series_is_minus_one_ish() {
        let x: Vec<f64> = (0..20)
            .map(|t| if t % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let r = acf(&x, 2);
        // Biased estimator: r_k = (n-k)/n for a perfect pattern.
        assert!((r[0] + 19.0 / 20.0).abs() < 1e-12);
        assert!((r[1] - 18.0 / 20.0).abs() < 1e-12);
    }

    #[test]
    fn multiplicative_figure_recovers_pattern() {
        let pattern = [0.8, 1.0, 1.2, 1.0];
        let x: Vec<f64> = (0..40)
            .map(|t| (100.0 + t as f64) * pattern[t % 4])
            .collect();
        let fig = seasonal_figure(&x, 4, Kind::Multiplicative).unwrap();
        for (f, p) in fig.iter().zip(pattern) {
            assert!((f - p).abs() < 0.01, "{fig:?}");
        }
        assert!(is_seasonal(&x, 4));
        // White noise around a constant level carries no lag-4 pattern.
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let normal = rand_distr::Normal::new(100.0, 5.0).unwrap();
        let noise: Vec<f64> = (0..40).map(|_| normal.sample(&mut rng)).collect();
        assert!(!is_seasonal(&noise, 4), "acf {:?}", acf(&noise, 4));
    }
}
