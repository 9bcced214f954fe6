//! Combination weights chosen per series by rolling-origin validation on the series' own
//! history.
//!
//! For a forecast of `h` steps from `y[..n]`, each candidate is refitted on `y[..o]` for a
//! few origins `o < n` and scored on `y[o..o + hv]` (`hv ≤ h`), all inside the history:
//! the future being forecast is never looked at. The score is the mean absolute error
//! scaled by the training part's mean absolute seasonal difference (a MASE), averaged
//! with the sMAPE normalised the same way, so neither measure dominates. Weights are the
//! inverse scores, shrunk towards equal weights because a handful of validation windows
//! is a noisy guide.

use serde::Serialize;

use crate::forecast::Forecast;

/// How validation turns into weights.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CvConfig {
    /// Number of forecast origins.
    pub origins: usize,
    /// Weight on equal weights in `[0, 1]` (1 = plain mean).
    pub shrink: f64,
    /// Weights ∝ score^-power before shrinking.
    pub power: f64,
    /// Training parts shorter than this are not used as an origin.
    pub min_train: usize,
}

impl Default for CvConfig {
    fn default() -> Self {
        CvConfig {
            origins: 2,
            shrink: 0.5,
            power: 1.0,
            min_train: 10,
        }
    }
}

/// Mean absolute lag-`m` difference of `y` (lag 1 if `y` is too short for `m`).
pub fn naive_scale(y: &[f64], m: usize) -> f64 {
    let m = if m >= 1 && y.len() > m { m } else { 1 };
    if y.len() <= m {
        return 0.0;
    }
    (m..y.len()).map(|t| (y[t] - y[t - m]).abs()).sum::<f64>() / (y.len() - m) as f64
}

fn smape_of(actual: &[f64], f: &[f64]) -> f64 {
    let s: f64 = actual
        .iter()
        .zip(f)
        .map(|(y, f)| {
            let d = y.abs() + f.abs();
            if d > 0.0 {
                200.0 * (y - f).abs() / d
            } else {
                0.0
            }
        })
        .sum();
    s / actual.len() as f64
}

/// Validation origins for a history of `n` values and horizon `h`: `(origin, steps)` pairs,
/// every window ending at or before `n`.
pub fn origins(n: usize, h: usize, cfg: &CvConfig) -> Vec<(usize, usize)> {
    let hv = h.min(n.saturating_sub(cfg.min_train));
    if hv == 0 {
        return Vec::new();
    }
    let step = (hv / 2).max(1);
    (0..cfg.origins)
        .filter_map(|j| {
            let o = n.checked_sub(hv + j * step)?;
            (o >= cfg.min_train).then_some((o, hv))
        })
        .collect()
}

/// Weights for `k` candidates from rolling-origin validation on `y`.
///
/// `forecast_part(c, train, steps)` fits candidate `c` on `train` and forecasts `steps`
/// values (`None` if it cannot be fitted). Falls back to equal weights when no origin fits
/// in the history.
pub fn cv_weights(
    y: &[f64],
    period: usize,
    h: usize,
    k: usize,
    cfg: &CvConfig,
    forecast_part: impl Fn(usize, &[f64], usize) -> Option<Forecast>,
) -> Vec<f64> {
    let equal = vec![1.0 / k as f64; k];
    let windows = origins(y.len(), h, cfg);
    if windows.is_empty() || k < 2 {
        return equal;
    }
    let mut mase_sum = vec![0.0; k];
    let mut smape_sum = vec![0.0; k];
    let mut failed = vec![false; k];
    for &(o, hv) in &windows {
        let (train, test) = (&y[..o], &y[o..o + hv]);
        let scale = naive_scale(train, period);
        let scale = if scale > 0.0 {
            scale
        } else {
            // A flat training part: scale by the level so errors stay comparable.
            train.iter().map(|v| v.abs()).sum::<f64>() / train.len() as f64 + 1e-12
        };
        for c in 0..k {
            match forecast_part(c, train, hv) {
                Some(f) if f.mean.iter().all(|v| v.is_finite()) => {
                    let mae = test
                        .iter()
                        .zip(&f.mean)
                        .map(|(a, b)| (a - b).abs())
                        .sum::<f64>()
                        / hv as f64;
                    mase_sum[c] += mae / scale;
                    smape_sum[c] += smape_of(test, &f.mean);
                }
                _ => failed[c] = true,
            }
        }
    }
    let norm = |v: &[f64]| {
        let ok: Vec<f64> = (0..k).filter(|c| !failed[*c]).map(|c| v[c]).collect();
        let mean = ok.iter().sum::<f64>() / ok.len().max(1) as f64;
        if mean > 0.0 {
            mean
        } else {
            1.0
        }
    };
    let (mn, sn) = (norm(&mase_sum), norm(&smape_sum));
    if failed.iter().all(|f| *f) {
        return equal;
    }
    let score: Vec<f64> = (0..k)
        .map(|c| 0.5 * (mase_sum[c] / mn + smape_sum[c] / sn))
        .collect();
    let raw: Vec<f64> = (0..k)
        .map(|c| {
            if failed[c] {
                0.0
            } else {
                (score[c] + 1e-3).powf(-cfg.power)
            }
        })
        .collect();
    let total: f64 = raw.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return equal;
    }
    let ok = failed.iter().filter(|f| !**f).count() as f64;
    (0..k)
        .map(|c| {
            let eq = if failed[c] { 0.0 } else { 1.0 / ok };
            cfg.shrink * eq + (1.0 - cfg.shrink) * raw[c] / total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_stay_inside_the_history() {
        let cfg = CvConfig::default();
        for (n, h) in [(14, 6), (40, 18), (200, 8), (12, 6), (5, 3)] {
            for (o, hv) in origins(n, h, &cfg) {
                assert!(o + hv <= n && o >= cfg.min_train && hv <= h);
            }
        }
        assert!(origins(10, 6, &cfg).is_empty());
    }

    #[test]
    fn better_candidate_gets_more_weight() {
        // y is a line; candidate 0 forecasts the line, candidate 1 the last value.
        let y: Vec<f64> = (0..40).map(|t| t as f64).collect();
        let w = cv_weights(&y, 1, 6, 2, &CvConfig::default(), |c, train, hv| {
            let last = *train.last()?;
            let mean = (1..=hv)
                .map(|j| if c == 0 { last + j as f64 } else { last })
                .collect();
            Some(Forecast {
                mean,
                sd: vec![1.0; hv],
            })
        });
        assert!(w[0] > w[1] && (w[0] + w[1] - 1.0).abs() < 1e-12, "{w:?}");
    }
}
