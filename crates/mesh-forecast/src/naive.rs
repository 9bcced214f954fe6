//! Naive and seasonal naive forecasts (the benchmarks and the short-series fallback).

use serde::Serialize;

use crate::forecast::Forecast;

/// Seasonal naive model (naive when `period == 1`): repeat the last `period` values.
#[derive(Clone, Debug, Serialize)]
pub struct FittedNaive {
    /// Last `period` observations, oldest first.
    last: Vec<f64>,
    /// Residual standard deviation of the in-sample seasonal differences.
    sigma: f64,
}

impl FittedNaive {
    /// Fit on `y` (non-empty). Falls back to period 1 when `y` is shorter than a period.
    pub fn fit(y: &[f64], period: usize) -> Self {
        let m = if period >= 1 && y.len() >= period {
            period
        } else {
            1
        };
        let n = y.len();
        let diffs: Vec<f64> = (m..n).map(|t| y[t] - y[t - m]).collect();
        let sigma = if diffs.is_empty() {
            0.0
        } else {
            (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt()
        };
        FittedNaive {
            last: y[n - m..].to_vec(),
            sigma,
        }
    }

    /// The period actually used.
    pub fn period(&self) -> usize {
        self.last.len()
    }

    /// Forecast `h` steps: step `i` repeats the value one or more periods back.
    pub fn forecast(&self, h: usize) -> Forecast {
        let m = self.last.len();
        let mean = (0..h).map(|i| self.last[i % m]).collect();
        let sd = (0..h)
            .map(|i| self.sigma * ((i / m + 1) as f64).sqrt())
            .collect();
        Forecast { mean, sd }
    }

    /// Absorb a new observation.
    pub fn observe(&mut self, y: f64) {
        self.last.rotate_left(1);
        if let Some(v) = self.last.last_mut() {
            *v = y;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_naive_repeats_last_cycle() {
        let y = [1.0, 2.0, 3.0, 4.0, 2.0, 3.0, 4.0, 5.0];
        let f = FittedNaive::fit(&y, 4).forecast(6);
        assert_eq!(f.mean, vec![2.0, 3.0, 4.0, 5.0, 2.0, 3.0]);
        // All seasonal differences are 1, so sigma = 1 and the 5th step is two cycles out.
        assert!((f.sd[0] - 1.0).abs() < 1e-12 && (f.sd[4] - 2f64.sqrt()).abs() < 1e-12);
        let mut m = FittedNaive::fit(&y, 1);
        m.observe(9.0);
        assert_eq!(m.forecast(2).mean, vec![9.0, 9.0]);
    }
}
