//! Maximum-likelihood fitting of one ETS model and AICc selection over the model space,
//! following `forecast::ets` (heuristic initial states, then Nelder–Mead over smoothing
//! parameters and initial states together, "usual" parameter region).

use serde::Serialize;

use super::model::{
    likelihood, point_forecast, variance_multipliers, ErrorType, EtsParams, EtsSpec, EtsState,
    SeasonType, TrendType,
};
use crate::decompose::{seasonal_figure, Kind};
use crate::error::{Error, Result};
use crate::forecast::Forecast;
use crate::optim::{minimize, PENALTY};

const LOWER: f64 = 1e-4;
const UPPER: f64 = 0.9999;
const PHI_LOWER: f64 = 0.8;
const PHI_UPPER: f64 = 0.98;
/// Nelder–Mead iteration budget per optimised coordinate. Measured on all of M3: 200
/// gives ETS sMAPE 13.12 / comb 12.52, 50 gives 13.14 / 12.53 in a quarter of the time
/// (the simplex rarely meets the tolerance before the budget either way).
const ITERS_PER_PARAM: u64 = 50;
/// Largest smoothing parameter of the slope that [`auto_ets`] allows on a series without a
/// seasonal period (`period <= 1`), in place of the usual `beta <= alpha`.
///
/// This is the region statsforecast's `AutoETS` searches: its `initparam` lowers the upper
/// bound of `beta` to the starting `alpha`, `LOWER + 0.2 (UPPER - LOWER) / m` (0.2 for
/// `m = 1`), and nothing else bounds `beta` during its optimisation. With the usual region a
/// short yearly series that ends in a level shift is fitted with a slope that follows the
/// last step (Tourism `Y13`: `beta` 0.78, forecasts falling to 4% of the last value).
/// Chosen on the last `h` values of each history (`forecast_eval --holdout`), against the
/// usual region and statsforecast's region for every period: see NOTES-issue16.md, round 5.
pub const NONSEASONAL_BETA_MAX: f64 = LOWER + 0.2 * (UPPER - LOWER);
/// Largest seasonal period for which seasonal ETS models are tried (as in `forecast`).
pub const MAX_SEASONAL_PERIOD: usize = 24;

/// A fitted ETS model, ready to forecast and to absorb new observations.
#[derive(Clone, Debug, Serialize)]
pub struct FittedEts {
    /// The model.
    pub spec: EtsSpec,
    /// Estimated smoothing parameters.
    pub params: EtsParams,
    /// State after the last observation, in scaled units.
    state: EtsState,
    /// The series was divided by this before fitting (ETS is scale-equivariant).
    scale: f64,
    /// Number of observations used in the fit.
    pub n: usize,
    /// −2 log-likelihood (up to a constant).
    pub neg2_loglik: f64,
    /// Bias-corrected Akaike information criterion.
    pub aicc: f64,
    /// Residual variance (of relative errors for multiplicative-error models), scaled units.
    sigma2: f64,
}

impl FittedEts {
    /// Point forecasts and standard deviations for `h` steps.
    pub fn forecast(&self, h: usize) -> Forecast {
        let mean: Vec<f64> = point_forecast(&self.spec, &self.params, &self.state, h)
            .into_iter()
            .map(|f| f * self.scale)
            .collect();
        let mult = variance_multipliers(&self.spec, &self.params, h);
        let sd = mean
            .iter()
            .zip(mult)
            .map(|(f, v)| match self.spec.error {
                ErrorType::Additive => (self.sigma2 * v).sqrt() * self.scale,
                ErrorType::Multiplicative => f.abs() * (self.sigma2 * v).sqrt(),
            })
            .collect();
        Forecast { mean, sd }
    }

    /// Absorb a new observation with the fitted parameters (no re-estimation).
    pub fn observe(&mut self, y: f64) {
        self.state.update(&self.spec, &self.params, y / self.scale);
        self.n += 1;
    }

    /// Smoothing parameter `alpha`.
    pub fn alpha(&self) -> f64 {
        self.params.alpha
    }

    /// Current level in data units.
    pub fn level(&self) -> f64 {
        self.state.level * self.scale
    }

    /// Current slope per period in data units.
    pub fn slope(&self) -> f64 {
        self.state.trend * self.scale
    }

    /// Seasonal indices in the order they will be applied to the next `m` periods
    /// (additive ones in data units, multiplicative ones as factors).
    pub fn seasonal_pattern(&self) -> Vec<f64> {
        let factor = match self.spec.season {
            SeasonType::Additive => self.scale,
            _ => 1.0,
        };
        self.state.season.iter().rev().map(|s| s * factor).collect()
    }
}

/// Layout of the optimisation vector for one spec.
struct Layout {
    spec: EtsSpec,
    n_season_free: usize,
    /// Fixed upper bound of `beta` replacing `beta <= alpha` ([`NONSEASONAL_BETA_MAX`]).
    beta_max: Option<f64>,
}

impl Layout {
    fn n_smoothing(&self) -> usize {
        1 + usize::from(self.spec.has_trend())
            + usize::from(self.spec.has_season())
            + usize::from(self.spec.trend == TrendType::Damped)
    }

    /// Free parameters including initial states and the error variance.
    fn n_params(&self) -> usize {
        self.n_smoothing() + 1 + usize::from(self.spec.has_trend()) + self.n_season_free + 1
    }

    /// Decode, returning `None` outside the usual region.
    fn decode(&self, x: &[f64]) -> Option<(EtsParams, EtsState)> {
        let mut it = x.iter().copied();
        let alpha = it.next()?;
        if !(LOWER..=UPPER).contains(&alpha) {
            return None;
        }
        let mut p = EtsParams {
            alpha,
            beta: 0.0,
            gamma: 0.0,
            phi: 1.0,
        };
        if self.spec.has_trend() {
            p.beta = it.next()?;
            if p.beta < LOWER || p.beta > self.beta_max.unwrap_or(alpha) {
                return None;
            }
        }
        if self.spec.has_season() {
            p.gamma = it.next()?;
            if p.gamma < LOWER || p.gamma > 1.0 - alpha {
                return None;
            }
        }
        if self.spec.trend == TrendType::Damped {
            p.phi = it.next()?;
            if !(PHI_LOWER..=PHI_UPPER).contains(&p.phi) {
                return None;
            }
        }
        let level = it.next()?;
        let trend = if self.spec.has_trend() {
            it.next()?
        } else {
            0.0
        };
        let season = if self.spec.has_season() {
            let m = self.spec.period;
            let mut s: Vec<f64> = it.by_ref().take(m - 1).collect();
            let last = match self.spec.season {
                SeasonType::Additive => -s.iter().sum::<f64>(),
                _ => m as f64 - s.iter().sum::<f64>(),
            };
            s.push(last);
            if self.spec.season == SeasonType::Multiplicative && s.iter().any(|v| *v <= 0.0) {
                return None;
            }
            s
        } else {
            Vec::new()
        };
        Some((
            p,
            EtsState {
                level,
                trend,
                season,
            },
        ))
    }
}

/// Heuristic starting point and simplex steps (`forecast`'s `initstate`/`initparam`).
fn start(layout: &Layout, y: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let spec = layout.spec;
    let m = spec.period;
    let n = y.len();
    let mut x = Vec::new();
    let mut steps = Vec::new();
    let alpha = LOWER + 0.2 * (UPPER - LOWER) / m as f64;
    x.push(alpha);
    steps.push(0.25 * (UPPER - alpha));
    if spec.has_trend() {
        let up = UPPER.min(alpha);
        let beta = LOWER + 0.1 * (up - LOWER);
        x.push(beta);
        steps.push(0.25 * (up - beta));
    }
    if spec.has_season() {
        let up = UPPER.min(1.0 - alpha);
        let gamma = LOWER + 0.05 * (up - LOWER);
        x.push(gamma);
        steps.push(0.25 * (up - gamma));
    }
    if spec.trend == TrendType::Damped {
        x.push(PHI_LOWER + 0.99 * (PHI_UPPER - PHI_LOWER));
        steps.push(-0.05);
    }
    // Seasonally adjust the start of the series with a classical decomposition.
    let (adjusted, init_season) = if spec.has_season() {
        let kind = match spec.season {
            SeasonType::Additive => Kind::Additive,
            _ => Kind::Multiplicative,
        };
        let fig = seasonal_figure(&y[..(3 * m).min(n)], m, kind)?;
        // State order is newest first: s[i] belongs to position (m - 1 - i).
        let mut init: Vec<f64> = (0..m - 1).map(|i| fig[m - 1 - i]).collect();
        let adjusted: Vec<f64> = match kind {
            Kind::Additive => y.iter().enumerate().map(|(t, v)| v - fig[t % m]).collect(),
            Kind::Multiplicative => {
                init.iter_mut().for_each(|v| *v = v.max(1e-2));
                let sum: f64 = init.iter().sum();
                if sum > m as f64 {
                    let d: f64 = init.iter().map(|v| v + 1e-2).sum();
                    init.iter_mut().for_each(|v| *v /= d);
                }
                y.iter()
                    .enumerate()
                    .map(|(t, v)| v / fig[t % m].max(1e-2))
                    .collect()
            }
        };
        (adjusted, init)
    } else {
        (y.to_vec(), Vec::new())
    };
    let maxn = (2 * m).max(10).min(n);
    let head = &adjusted[..maxn];
    if spec.has_trend() {
        let (a, b) = linear_fit(head);
        x.push(a);
        x.push(b);
        steps.push(0.05);
        steps.push(0.01);
    } else {
        x.push(head.iter().sum::<f64>() / maxn as f64);
        steps.push(0.05);
    }
    for s in init_season {
        x.push(s);
        steps.push(0.05);
    }
    Some((x, steps))
}

/// Least squares `y_t = a + b t` for `t = 1..=n` (R's `lsfit(1:n, y)`).
pub(crate) fn linear_fit(y: &[f64]) -> (f64, f64) {
    let n = y.len() as f64;
    if y.len() < 2 {
        return (y.first().copied().unwrap_or(0.0), 0.0);
    }
    let tm = (n + 1.0) / 2.0;
    let ym = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dt = (i + 1) as f64 - tm;
        sxy += dt * (v - ym);
        sxx += dt * dt;
    }
    let b = sxy / sxx;
    (ym - b * tm, b)
}

/// Fit one ETS model by maximum likelihood.
pub fn fit_ets(y: &[f64], spec: EtsSpec) -> Result<FittedEts> {
    fit_ets_bounded(y, spec, None)
}

/// [`fit_ets`] with `beta` bounded by `beta_max` instead of by `alpha` (when given).
pub fn fit_ets_bounded(y: &[f64], spec: EtsSpec, beta_max: Option<f64>) -> Result<FittedEts> {
    let fail = |reason: &str| Error::Fit {
        model: spec.code(),
        reason: reason.to_string(),
    };
    let n = y.len();
    if spec.has_season() && (spec.period < 2 || n < 3 * spec.period) {
        return Err(fail(
            "seasonal models need period >= 2 and three full cycles",
        ));
    }
    let needs_positive =
        spec.error == ErrorType::Multiplicative || spec.season == SeasonType::Multiplicative;
    if needs_positive && y.iter().any(|v| *v <= 0.0) {
        return Err(fail(
            "multiplicative components need strictly positive data",
        ));
    }
    if let Some(b) = beta_max {
        if !(LOWER..=UPPER).contains(&b) {
            return Err(fail("beta_max must lie in the usual region [1e-4, 0.9999]"));
        }
    }
    let layout = Layout {
        spec,
        n_season_free: if spec.has_season() {
            spec.period - 1
        } else {
            0
        },
        beta_max,
    };
    let np = layout.n_params();
    if n < np + 2 {
        return Err(fail("series too short for the number of parameters"));
    }
    let scale = {
        let s = y.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
        if s > 0.0 {
            s
        } else {
            1.0
        }
    };
    let ys: Vec<f64> = y.iter().map(|v| v / scale).collect();
    let (x0, steps) = start(&layout, &ys).ok_or_else(|| fail("no initial seasonal state"))?;
    let objective = |x: &[f64]| match layout.decode(x) {
        Some((p, mut st)) => likelihood(&spec, &p, &mut st, &ys).0,
        None => PENALTY,
    };
    let iters = ITERS_PER_PARAM * x0.len() as u64;
    let (x, _) = minimize(objective, &x0, &steps, iters);
    let (params, mut state) = layout
        .decode(&x)
        .ok_or_else(|| fail("optimiser left the feasible region"))?;
    let (lik, sse) = likelihood(&spec, &params, &mut state, &ys);
    if !lik.is_finite() {
        return Err(fail("non-finite likelihood"));
    }
    let k = np as f64;
    let nf = n as f64;
    let aic = lik + 2.0 * k;
    let aicc = if nf - k - 1.0 > 0.0 {
        aic + 2.0 * k * (k + 1.0) / (nf - k - 1.0)
    } else {
        f64::INFINITY
    };
    let dof = if n > np { nf - k } else { nf };
    Ok(FittedEts {
        spec,
        params,
        state,
        scale,
        n,
        neg2_loglik: lik,
        aicc,
        sigma2: sse / dof,
    })
}

/// All candidate specs `forecast::ets` tries by default (restricted, no multiplicative trend).
pub fn candidate_specs(period: usize, allow_season: bool) -> Vec<EtsSpec> {
    let mut out = Vec::new();
    let seasons: &[SeasonType] = if allow_season {
        &[
            SeasonType::None,
            SeasonType::Additive,
            SeasonType::Multiplicative,
        ]
    } else {
        &[SeasonType::None]
    };
    for error in [ErrorType::Additive, ErrorType::Multiplicative] {
        for trend in [TrendType::None, TrendType::Additive, TrendType::Damped] {
            for &season in seasons {
                // Restricted space: additive errors with multiplicative seasonality are unstable.
                if error == ErrorType::Additive && season == SeasonType::Multiplicative {
                    continue;
                }
                let period = if season == SeasonType::None {
                    1
                } else {
                    period
                };
                out.push(EtsSpec {
                    error,
                    trend,
                    season,
                    period,
                });
            }
        }
    }
    out
}

/// Fit every candidate and keep the one with the lowest AICc. On a series without a seasonal
/// period (`period <= 1`) the slope's smoothing parameter is bounded by
/// [`NONSEASONAL_BETA_MAX`].
pub fn auto_ets(y: &[f64], period: usize) -> Result<FittedEts> {
    let allow_season = period > 1 && period <= MAX_SEASONAL_PERIOD && y.len() >= 3 * period;
    let beta_max = (period <= 1).then_some(NONSEASONAL_BETA_MAX);
    let best = candidate_specs(period, allow_season)
        .into_iter()
        .filter_map(|spec| fit_ets_bounded(y, spec, beta_max).ok())
        .filter(|f| f.aicc.is_finite())
        .min_by(|a, b| a.aicc.total_cmp(&b.aicc));
    best.ok_or_else(|| Error::Fit {
        model: "ETS(auto)".into(),
        reason: format!(
            "no candidate model could be fitted to {} observations",
            y.len()
        ),
    })
}
