//! Forecasting methods by name, the fitted-model enum and the dispatch between them,
//! including the combination and the short-series fallback.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ets::{auto_ets, fit_ets, ErrorType, EtsSpec, FittedEts, SeasonType, TrendType};
use crate::forecast::Forecast;
use crate::naive::FittedNaive;
use crate::theta::{Deseasonalised, FittedTheta};

/// Below this many observations every model method falls back to seasonal naive.
pub const MIN_MODEL_LEN: usize = 10;

/// A forecasting method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The recommended default (currently [`Method::Comb`]).
    Auto,
    /// ETS with AICc model selection.
    Ets,
    /// Theta (SES with drift, seasonally adjusted when the 90% test fires).
    Theta,
    /// Damped trend ETS(A,Ad,N) on the seasonally adjusted series.
    Damped,
    /// Seasonal naive.
    Snaive,
    /// Naive (last value).
    Naive,
    /// Mean of ETS, Theta and damped trend.
    Comb,
    /// Median of ETS, Theta and damped trend.
    CombMedian,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 8] = [
        Method::Auto,
        Method::Ets,
        Method::Theta,
        Method::Damped,
        Method::Comb,
        Method::CombMedian,
        Method::Snaive,
        Method::Naive,
    ];

    /// The concrete method `Auto` stands for.
    pub fn resolve(self) -> Method {
        match self {
            Method::Auto => Method::Comb,
            m => m,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Ets => "ets",
            Method::Theta => "theta",
            Method::Damped => "damped",
            Method::Snaive => "snaive",
            Method::Naive => "naive",
            Method::Comb => "comb",
            Method::CombMedian => "comb-median",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A fitted model of any method.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FittedModel {
    /// Naive or seasonal naive.
    Naive(FittedNaive),
    /// An ETS model.
    Ets(FittedEts),
    /// Theta, possibly on seasonally adjusted data.
    Theta(Deseasonalised<FittedTheta>),
    /// Damped trend, possibly on seasonally adjusted data.
    Damped(Deseasonalised<FittedEts>),
    /// A combination of the listed models.
    Combination {
        /// Median (true) or mean (false) of the point forecasts.
        median: bool,
        /// The combined models.
        parts: Vec<FittedModel>,
    },
}

impl FittedModel {
    /// Forecast `h` steps ahead.
    pub fn forecast(&self, h: usize) -> Forecast {
        match self {
            FittedModel::Naive(m) => m.forecast(h),
            FittedModel::Ets(m) => m.forecast(h),
            FittedModel::Theta(m) => m.forecast(h),
            FittedModel::Damped(m) => m.forecast(h),
            FittedModel::Combination { median, parts } => {
                let fs: Vec<Forecast> = parts.iter().map(|p| p.forecast(h)).collect();
                Forecast::combine(&fs, *median)
            }
        }
    }

    /// Absorb one new observation without re-estimating parameters.
    pub fn observe(&mut self, y: f64) {
        match self {
            FittedModel::Naive(m) => m.observe(y),
            FittedModel::Ets(m) => m.observe(y),
            FittedModel::Theta(m) => m.observe(y),
            FittedModel::Damped(m) => m.observe(y),
            FittedModel::Combination { parts, .. } => parts.iter_mut().for_each(|p| p.observe(y)),
        }
    }

    /// Short human-readable description, e.g. `ETS(M,Ad,M)` or `theta+season`.
    pub fn describe(&self) -> String {
        match self {
            FittedModel::Naive(m) if m.period() > 1 => format!("snaive(m={})", m.period()),
            FittedModel::Naive(_) => "naive".into(),
            FittedModel::Ets(m) => m.spec.code(),
            FittedModel::Theta(m) if m.is_seasonal() => "theta+season".into(),
            FittedModel::Theta(_) => "theta".into(),
            FittedModel::Damped(m) if m.is_seasonal() => "damped+season".into(),
            FittedModel::Damped(_) => "damped".into(),
            FittedModel::Combination { median, parts } => {
                let names: Vec<String> = parts.iter().map(FittedModel::describe).collect();
                let rule = if *median { "median" } else { "mean" };
                format!("{rule}[{}]", names.join(", "))
            }
        }
    }
}

fn validate(y: &[f64]) -> Result<()> {
    if y.is_empty() {
        return Err(Error::EmptySeries);
    }
    match y.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            index,
            value: y[index],
        }),
        None => Ok(()),
    }
}

fn fit_theta(y: &[f64], period: usize) -> Result<FittedModel> {
    Ok(FittedModel::Theta(Deseasonalised::fit(
        y,
        period,
        FittedTheta::fit,
    )?))
}

fn fit_damped(y: &[f64], period: usize) -> Result<FittedModel> {
    let spec = EtsSpec {
        error: ErrorType::Additive,
        trend: TrendType::Damped,
        season: SeasonType::None,
        period: 1,
    };
    Ok(FittedModel::Damped(Deseasonalised::fit(
        y,
        period,
        |adj| fit_ets(adj, spec),
    )?))
}

fn fit_comb(y: &[f64], period: usize, median: bool) -> Result<FittedModel> {
    let parts = vec![
        FittedModel::Ets(auto_ets(y, period)?),
        fit_theta(y, period)?,
        fit_damped(y, period)?,
    ];
    Ok(FittedModel::Combination { median, parts })
}

/// Fit `method` to `y` with seasonal period `period` (1 for none).
///
/// Model methods fall back to seasonal naive (naive when shorter than a period) for series
/// shorter than [`MIN_MODEL_LEN`] or when the model cannot be fitted.
pub fn fit(method: Method, y: &[f64], period: usize) -> Result<FittedModel> {
    validate(y)?;
    let period = period.max(1);
    let fallback = || FittedModel::Naive(FittedNaive::fit(y, period));
    let method = method.resolve();
    let fitted = match method {
        Method::Naive => return Ok(FittedModel::Naive(FittedNaive::fit(y, 1))),
        Method::Snaive => return Ok(fallback()),
        _ if y.len() < MIN_MODEL_LEN => return Ok(fallback()),
        Method::Ets => auto_ets(y, period).map(FittedModel::Ets),
        Method::Theta => fit_theta(y, period),
        Method::Damped => fit_damped(y, period),
        Method::Comb | Method::Auto => fit_comb(y, period, false),
        Method::CombMedian => fit_comb(y, period, true),
    };
    Ok(fitted.unwrap_or_else(|_| fallback()))
}

/// Fit `method` to `y` and forecast `h` steps.
pub fn forecast(method: Method, y: &[f64], period: usize, h: usize) -> Result<Forecast> {
    Ok(fit(method, y, period)?.forecast(h))
}
