//! The forecast value type: point forecasts with per-step standard deviations, and
//! normal prediction intervals derived from them.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{invalid, Result};

/// Point forecasts and the standard deviation of the forecast error, per step ahead.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Forecast {
    /// Point forecast for steps 1..=h.
    pub mean: Vec<f64>,
    /// Standard deviation of the h-step forecast error.
    pub sd: Vec<f64>,
}

/// A two-sided prediction interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// Nominal coverage in (0, 1), e.g. 0.95.
    pub level: f64,
    /// Lower bounds, per step.
    pub lower: Vec<f64>,
    /// Upper bounds, per step.
    pub upper: Vec<f64>,
}

/// Standard normal quantile, validated.
pub(crate) fn z_quantile(p: f64, name: &'static str) -> Result<f64> {
    if !(p > 0.0 && p < 1.0) {
        return Err(invalid(
            name,
            format!("{p} must be strictly between 0 and 1"),
        ));
    }
    Ok(Normal::standard().inverse_cdf(p))
}

/// Standard normal CDF.
pub(crate) fn normal_cdf(x: f64) -> f64 {
    Normal::standard().cdf(x)
}

impl Forecast {
    /// Number of steps forecast.
    pub fn horizon(&self) -> usize {
        self.mean.len()
    }

    /// Normal prediction interval at `level` (e.g. 0.8 or 0.95).
    pub fn interval(&self, level: f64) -> Result<Interval> {
        if !(level > 0.0 && level < 1.0) {
            return Err(invalid("level", format!("{level} must be in (0, 1)")));
        }
        let z = z_quantile(0.5 + level / 2.0, "level")?;
        Ok(Interval {
            level,
            lower: self
                .mean
                .iter()
                .zip(&self.sd)
                .map(|(m, s)| m - z * s)
                .collect(),
            upper: self
                .mean
                .iter()
                .zip(&self.sd)
                .map(|(m, s)| m + z * s)
                .collect(),
        })
    }

    /// Element-wise combination of several forecasts of equal horizon: `median` of the
    /// point forecasts if `median`, else their mean; the sd is the mean of the sds (a
    /// conservative choice: it ignores the diversification between models).
    pub fn combine(parts: &[Forecast], median: bool) -> Forecast {
        let h = parts.iter().map(Forecast::horizon).min().unwrap_or(0);
        let k = parts.len() as f64;
        let mut mean = Vec::with_capacity(h);
        let mut sd = Vec::with_capacity(h);
        for i in 0..h {
            let mut vals: Vec<f64> = parts.iter().map(|f| f.mean[i]).collect();
            mean.push(if median {
                vals.sort_by(f64::total_cmp);
                let mid = vals.len() / 2;
                if vals.len() % 2 == 1 {
                    vals[mid]
                } else {
                    0.5 * (vals[mid - 1] + vals[mid])
                }
            } else {
                vals.iter().sum::<f64>() / k
            });
            sd.push(parts.iter().map(|f| f.sd[i]).sum::<f64>() / k);
        }
        Forecast { mean, sd }
    }
}

impl Forecast {
    /// Weighted mean of several forecasts of equal horizon (`weights` sum to 1); the sd is
    /// the same weighted mean of the sds.
    pub fn combine_weighted(parts: &[Forecast], weights: &[f64]) -> Forecast {
        let h = parts.iter().map(Forecast::horizon).min().unwrap_or(0);
        let total: f64 = weights.iter().sum();
        let norm = if total > 0.0 { total } else { 1.0 };
        let at = |i: usize, get: fn(&Forecast) -> &Vec<f64>| {
            parts
                .iter()
                .zip(weights)
                .map(|(f, w)| w * get(f)[i])
                .sum::<f64>()
                / norm
        };
        Forecast {
            mean: (0..h).map(|i| at(i, |f| &f.mean)).collect(),
            sd: (0..h).map(|i| at(i, |f| &f.sd)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_uses_normal_quantile() {
        let f = Forecast {
            mean: vec![10.0],
            sd: vec![2.0],
        };
        let i = f.interval(0.95).unwrap();
        assert!((i.lower[0] - (10.0 - 1.959964 * 2.0)).abs() < 1e-5);
        assert!((i.upper[0] - (10.0 + 1.959964 * 2.0)).abs() < 1e-5);
        assert!(f.interval(1.2).is_err());
    }

    #[test]
    fn combine_mean_and_median() {
        let a = Forecast {
            mean: vec![1.0],
            sd: vec![1.0],
        };
        let b = Forecast {
            mean: vec![2.0],
            sd: vec![2.0],
        };
        let c = Forecast {
            mean: vec![6.0],
            sd: vec![3.0],
        };
        let parts = [a, b, c];
        assert_eq!(Forecast::combine(&parts, false).mean, vec![3.0]);
        assert_eq!(Forecast::combine(&parts, true).mean, vec![2.0]);
        assert_eq!(Forecast::combine(&parts, true).sd, vec![2.0]);
    }
}
