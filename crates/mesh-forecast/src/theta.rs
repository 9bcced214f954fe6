//! The Theta method (Assimakopoulos & Nikolopoulos 2000) in Hyndman's SES-with-drift form
//! (`forecast::thetaf`), plus the seasonal adjustment wrapper shared with the damped
//! trend benchmark.

use serde::Serialize;

use crate::decompose::{is_seasonal, seasonal_figure, Kind};
use crate::error::Result;
use crate::ets::{fit::linear_fit, fit_ets, ErrorType, EtsSpec, FittedEts, SeasonType, TrendType};
use crate::forecast::Forecast;

/// SES fitted by maximum likelihood plus half the slope of the linear trend as drift.
#[derive(Clone, Debug, Serialize)]
pub struct FittedTheta {
    ses: FittedEts,
    /// Half the OLS slope of the (seasonally adjusted) series: the theta = 2 line's drift.
    drift: f64,
    n: usize,
}

impl FittedTheta {
    /// Fit on an already seasonally adjusted series.
    pub fn fit(y: &[f64]) -> Result<Self> {
        let spec = EtsSpec {
            error: ErrorType::Additive,
            trend: TrendType::None,
            season: SeasonType::None,
            period: 1,
        };
        let ses = fit_ets(y, spec)?;
        Ok(FittedTheta {
            ses,
            drift: linear_fit(y).1 / 2.0,
            n: y.len(),
        })
    }

    /// `ses + drift * (i + (1 - (1 - α)^n) / α)` for `i = 0..h`.
    pub fn forecast(&self, h: usize) -> Forecast {
        let mut f = self.ses.forecast(h);
        let a = self.ses.alpha().max(1e-10);
        let offset = (1.0 - (1.0 - a).powi(self.n as i32)) / a;
        for (i, m) in f.mean.iter_mut().enumerate() {
            *m += self.drift * (i as f64 + offset);
        }
        f
    }

    /// Absorb one observation (SES state only; the drift is refreshed on refit).
    pub fn observe(&mut self, y: f64) {
        self.ses.observe(y);
        self.n += 1;
    }
}

/// Anything that forecasts a (seasonally adjusted) series and absorbs new values.
pub trait Component {
    /// Point forecasts and sds for `h` steps.
    fn forecast(&self, h: usize) -> Forecast;
    /// Absorb one observation.
    fn observe(&mut self, y: f64);
}

impl Component for FittedTheta {
    fn forecast(&self, h: usize) -> Forecast {
        FittedTheta::forecast(self, h)
    }
    fn observe(&mut self, y: f64) {
        FittedTheta::observe(self, y)
    }
}

impl Component for FittedEts {
    fn forecast(&self, h: usize) -> Forecast {
        FittedEts::forecast(self, h)
    }
    fn observe(&mut self, y: f64) {
        FittedEts::observe(self, y)
    }
}

/// A model fitted to a multiplicatively seasonally adjusted series when the 90%
/// autocorrelation test finds seasonality; forecasts are reseasonalised.
#[derive(Clone, Debug, Serialize)]
pub struct Deseasonalised<T> {
    /// Seasonal indices by position `t % m`, if the series was found seasonal.
    figure: Option<Vec<f64>>,
    /// Index of the next observation (its seasonal position is `next % m`).
    next: usize,
    /// The model of the adjusted series.
    pub inner: T,
}

impl<T: Component> Deseasonalised<T> {
    /// Test `y` for seasonality at `period`, adjust if seasonal, fit `fit` on the result.
    pub fn fit(y: &[f64], period: usize, fit: impl FnOnce(&[f64]) -> Result<T>) -> Result<Self> {
        let figure = if is_seasonal(y, period) {
            seasonal_figure(y, period, Kind::Multiplicative)
                .filter(|f| f.iter().all(|v| v.abs() >= 1e-4))
        } else {
            None
        };
        let adjusted: Vec<f64> = match &figure {
            Some(fig) => y
                .iter()
                .enumerate()
                .map(|(t, v)| v / fig[t % fig.len()])
                .collect(),
            None => y.to_vec(),
        };
        Ok(Deseasonalised {
            inner: fit(&adjusted)?,
            figure,
            next: y.len(),
        })
    }

    /// Whether the seasonality test fired.
    pub fn is_seasonal(&self) -> bool {
        self.figure.is_some()
    }

    /// Forecast the adjusted series and multiply back the seasonal indices.
    pub fn forecast(&self, h: usize) -> Forecast {
        let mut f = self.inner.forecast(h);
        if let Some(fig) = &self.figure {
            for i in 0..f.mean.len() {
                let s = fig[(self.next + i) % fig.len()];
                f.mean[i] *= s;
                f.sd[i] *= s;
            }
        }
        f
    }

    /// Absorb one observation (seasonally adjusted with the fitted indices).
    pub fn observe(&mut self, y: f64) {
        let adj = match &self.figure {
            Some(fig) => y / fig[self.next % fig.len()],
            None => y,
        };
        self.inner.observe(adj);
        self.next += 1;
    }
}
