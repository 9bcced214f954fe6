//! Seasonal ARIMA(p,d,q)(0,1,0)_m: when the 90% autocorrelation test finds seasonality at
//! period `m`, the series is seasonally differenced once (`z_t = y_t - y_{t-m}`) and
//! [`auto_arima`] (KPSS differencing, AICc orders) is fitted to `z`; forecasts are
//! integrated back. Without seasonality it is [`auto_arima`] on the series itself.
//!
//! Unlike [`crate::method::Method::Arima`] (ARIMA on the multiplicatively decomposed
//! series) the seasonal pattern may drift: it is carried by the last season of data.

use serde::Serialize;

use crate::arima::{auto_arima, FittedArima};
use crate::decompose::is_seasonal;
use crate::error::Result;
use crate::forecast::Forecast;

/// A fitted ARIMA with an optional seasonal difference of lag `m`.
#[derive(Clone, Debug, Serialize)]
pub struct FittedSarima {
    /// Seasonal lag of the difference; 0 when not seasonally differenced.
    pub m: usize,
    /// The last `m` observations (oldest first), needed to integrate forecasts.
    tail: Vec<f64>,
    /// The ARIMA of the (seasonally differenced) series.
    pub inner: FittedArima,
}

/// Seasonally difference `y` at lag `m` when [`is_seasonal`] fires, then [`auto_arima`].
pub fn auto_sarima(y: &[f64], m: usize) -> Result<FittedSarima> {
    if m > 1 && is_seasonal(y, m) {
        let z: Vec<f64> = (m..y.len()).map(|t| y[t] - y[t - m]).collect();
        return Ok(FittedSarima {
            m,
            tail: y[y.len() - m..].to_vec(),
            inner: auto_arima(&z)?,
        });
    }
    Ok(FittedSarima {
        m: 0,
        tail: Vec::new(),
        inner: auto_arima(y)?,
    })
}

impl FittedSarima {
    /// Whether the series was seasonally differenced.
    pub fn is_seasonal(&self) -> bool {
        self.m > 0
    }

    /// Point forecasts and normal-theory sds (ψ-weights of the seasonally integrated model).
    pub fn forecast(&self, h: usize) -> Forecast {
        let f = self.inner.forecast(h);
        let m = self.m;
        if m == 0 {
            return f;
        }
        let mut mean: Vec<f64> = Vec::with_capacity(h);
        for (i, z) in f.mean.iter().enumerate() {
            let base = if i < m { self.tail[i] } else { mean[i - m] };
            mean.push(z + base);
        }
        // ψ of y = ψ of z convolved with 1 / (1 - B^m).
        let psi = self.inner.psi(h);
        let sigma = self.inner.sigma();
        let mut acc = 0.0;
        let sd = (0..h)
            .map(|j| {
                let big: f64 = (0..=j / m).map(|k| psi[j - k * m]).sum();
                acc += big * big;
                sigma * acc.sqrt()
            })
            .collect();
        Forecast { mean, sd }
    }

    /// Absorb one observation with the fitted coefficients.
    pub fn observe(&mut self, y: f64) {
        if self.m == 0 {
            self.inner.observe(y);
            return;
        }
        self.inner.observe(y - self.tail[0]);
        self.tail.remove(0);
        self.tail.push(y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quarterly pattern on a slow trend with deterministic noise.
    fn seasonal_series(n: usize) -> Vec<f64> {
        let pattern = [10.0, -4.0, 6.0, -12.0];
        (0..n)
            .map(|t| 100.0 + 0.5 * t as f64 + pattern[t % 4] + ((t * 7919) % 13) as f64 * 0.1)
            .collect()
    }

    #[test]
    fn seasonal_difference_carries_the_last_season_forward() {
        let y = seasonal_series(48);
        let fit = auto_sarima(&y, 4).unwrap();
        assert!(fit.is_seasonal(), "the 4-periodic pattern must be detected");
        let f = fit.forecast(8);
        // The forecast keeps the quarterly shape: Q1 above Q4 by roughly 22.
        let gap = f.mean[0] - f.mean[3];
        assert!((gap - 22.0).abs() < 4.0, "Q1 - Q4 gap {gap}");
        // sds grow with the horizon and jump after one season.
        assert!(f.sd.windows(2).all(|w| w[1] >= w[0] - 1e-9), "{:?}", f.sd);
        assert!(f.sd[4] > f.sd[3]);
    }

    #[test]
    fn observing_matches_refitting_the_forecast_origin() {
        let y = seasonal_series(52);
        let mut fit = auto_sarima(&y[..48], 4).unwrap();
        for v in &y[48..] {
            fit.observe(*v);
        }
        let f = fit.forecast(4);
        // After absorbing a full season the forecast base is the observed last season.
        for (i, m) in f.mean.iter().enumerate() {
            assert!(
                (m - y[48 + i]).abs() < 6.0,
                "step {i}: {m} vs {}",
                y[48 + i]
            );
        }
    }

    #[test]
    fn non_seasonal_series_is_plain_auto_arima() {
        let mut state = 12345u64;
        let y: Vec<f64> = (0..40)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                5.0 + (state >> 33) as f64 / (1u64 << 31) as f64
            })
            .collect();
        assert!(!is_seasonal(&y, 4), "the noise must not test seasonal");
        let fit = auto_sarima(&y, 4).unwrap();
        assert!(!fit.is_seasonal());
        let plain = auto_arima(&y).unwrap().forecast(5);
        assert_eq!(fit.forecast(5), plain);
    }
}
