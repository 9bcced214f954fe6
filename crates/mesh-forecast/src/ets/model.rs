//! The ETS state-space recursion: one-step forecasts, state updates, likelihood and
//! h-step forecasts with their variances (Hyndman et al. 2008, the `forecast` package's
//! `etscalc`).

use serde::Serialize;

/// Error component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ErrorType {
    /// Additive errors.
    Additive,
    /// Multiplicative (relative) errors.
    Multiplicative,
}

/// Trend component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TrendType {
    /// No trend.
    None,
    /// Additive (linear) trend.
    Additive,
    /// Additive damped trend.
    Damped,
}

/// Seasonal component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SeasonType {
    /// No seasonality.
    None,
    /// Additive seasonality.
    Additive,
    /// Multiplicative seasonality.
    Multiplicative,
}

/// Which ETS model: error, trend, season and the seasonal period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EtsSpec {
    /// Error type.
    pub error: ErrorType,
    /// Trend type.
    pub trend: TrendType,
    /// Season type.
    pub season: SeasonType,
    /// Seasonal period (1 when there is no season).
    pub period: usize,
}

impl EtsSpec {
    /// Hyndman's three/four-letter code, e.g. `MAdM`.
    pub fn code(&self) -> String {
        let e = match self.error {
            ErrorType::Additive => "A",
            ErrorType::Multiplicative => "M",
        };
        let t = match self.trend {
            TrendType::None => "N",
            TrendType::Additive => "A",
            TrendType::Damped => "Ad",
        };
        let s = match self.season {
            SeasonType::None => "N",
            SeasonType::Additive => "A",
            SeasonType::Multiplicative => "M",
        };
        format!("ETS({e},{t},{s})")
    }

    pub(crate) fn has_trend(&self) -> bool {
        self.trend != TrendType::None
    }

    pub(crate) fn has_season(&self) -> bool {
        self.season != SeasonType::None
    }
}

/// Smoothing parameters. `beta`, `gamma`, `phi` are ignored by models without that part.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EtsParams {
    /// Level smoothing.
    pub alpha: f64,
    /// Trend smoothing (error-correction form: `b' = phi b + beta e`).
    pub beta: f64,
    /// Seasonal smoothing.
    pub gamma: f64,
    /// Damping (1 for an undamped trend).
    pub phi: f64,
}

/// Model state: level, trend and the last `m` seasonal indices (`season[0]` newest,
/// `season[m-1]` the one applied to the next observation).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EtsState {
    /// Level.
    pub level: f64,
    /// Trend (slope); 0 without a trend.
    pub trend: f64,
    /// Seasonal indices, newest first.
    pub season: Vec<f64>,
}

const TOL: f64 = 1e-10;

impl EtsState {
    /// One-step-ahead point forecast.
    #[inline]
    pub fn one_step(&self, spec: &EtsSpec, p: &EtsParams) -> f64 {
        let q = self.level + p.phi * self.trend;
        match spec.season {
            SeasonType::None => q,
            SeasonType::Additive => q + self.season[spec.period - 1],
            SeasonType::Multiplicative => q * self.season[spec.period - 1],
        }
    }

    /// Absorb observation `y` (the `forecast` package's update; the error type does not
    /// change the update, only the likelihood).
    #[inline]
    pub fn update(&mut self, spec: &EtsSpec, p: &EtsParams, y: f64) {
        let m = spec.period;
        let old_level = self.level;
        let phib = p.phi * self.trend;
        let q = old_level + phib;
        let (p_level, old_s) = match spec.season {
            SeasonType::None => (y, 0.0),
            SeasonType::Additive => {
                let s = self.season[m - 1];
                (y - s, s)
            }
            SeasonType::Multiplicative => {
                let s = self.season[m - 1];
                (y / if s.abs() < TOL { TOL } else { s }, s)
            }
        };
        self.level = q + p.alpha * (p_level - q);
        if spec.has_trend() {
            let r = self.level - old_level;
            self.trend = phib + (p.beta / p.alpha) * (r - phib);
        }
        if spec.has_season() {
            let t = match spec.season {
                SeasonType::Additive => y - q,
                _ => y / if q.abs() < TOL { TOL } else { q },
            };
            let new_s = old_s + p.gamma * (t - old_s);
            self.season.rotate_right(1);
            self.season[0] = new_s;
        }
    }
}

/// Run the recursion over `y` from `state`; returns the `forecast`-package objective
/// `n ln(SSE) + 2 Σ ln|ŷ|` (the last term for multiplicative errors only), i.e. −2 log
/// likelihood up to a constant, and the sum of squared (relative) errors.
pub fn likelihood(spec: &EtsSpec, p: &EtsParams, state: &mut EtsState, y: &[f64]) -> (f64, f64) {
    let mut sse = 0.0;
    let mut sum_log = 0.0;
    for &obs in y {
        let f = state.one_step(spec, p);
        let e = match spec.error {
            ErrorType::Additive => obs - f,
            ErrorType::Multiplicative => {
                if f.abs() < TOL {
                    return (f64::INFINITY, f64::INFINITY);
                }
                sum_log += f.abs().ln();
                (obs - f) / f
            }
        };
        sse += e * e;
        state.update(spec, p, obs);
    }
    let n = y.len() as f64;
    let lik = n * sse.max(1e-300).ln() + 2.0 * sum_log;
    (lik, sse)
}

/// Point forecasts for `h` steps from `state`.
pub fn point_forecast(spec: &EtsSpec, p: &EtsParams, state: &EtsState, h: usize) -> Vec<f64> {
    let mut st = state.clone();
    (0..h)
        .map(|_| {
            let f = st.one_step(spec, p);
            st.update(spec, p, f);
            f
        })
        .collect()
}

/// Variance multipliers `1 + Σ_{j<h} c_j²` with `c_j = α + β φ_j + γ [j ≡ 0 mod m]`
/// (exact for the linear additive-error models, used as an approximation otherwise).
pub fn variance_multipliers(spec: &EtsSpec, p: &EtsParams, h: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(h);
    let mut acc = 1.0;
    let mut phi_j = 0.0;
    let mut phi_pow = 1.0;
    for j in 0..h {
        out.push(acc);
        let j1 = j + 1;
        phi_pow *= p.phi;
        phi_j += phi_pow;
        let mut c = p.alpha;
        if spec.has_trend() {
            c += p.beta * phi_j;
        }
        if spec.has_season() && j1 % spec.period == 0 {
            c += p.gamma;
        }
        acc += c * c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holt_forecast_extends_line() {
        let spec = EtsSpec {
            error: ErrorType::Additive,
            trend: TrendType::Additive,
            season: SeasonType::None,
            period: 1,
        };
        let p = EtsParams {
            alpha: 0.5,
            beta: 0.1,
            gamma: 0.0,
            phi: 1.0,
        };
        let st = EtsState {
            level: 10.0,
            trend: 2.0,
            season: vec![],
        };
        assert_eq!(point_forecast(&spec, &p, &st, 3), vec![12.0, 14.0, 16.0]);
        // Hand computed: c_1 = 0.5 + 0.1 * 1, c_2 = 0.5 + 0.1 * 2.
        let v = variance_multipliers(&spec, &p, 3);
        assert!(
            (v[1] - 1.36).abs() < 1e-12 && (v[2] - 1.85).abs() < 1e-12,
            "{v:?}"
        );
    }

    #[test]
    fn additive_season_update_matches_hand_computation() {
        let spec = EtsSpec {
            error: ErrorType::Additive,
            trend: TrendType::None,
            season: SeasonType::Additive,
            period: 2,
        };
        let p = EtsParams {
            alpha: 0.5,
            beta: 0.0,
            gamma: 0.2,
            phi: 1.0,
        };
        let mut st = EtsState {
            level: 10.0,
            trend: 0.0,
            season: vec![1.0, -1.0],
        };
        assert_eq!(st.one_step(&spec, &p), 9.0);
        st.update(&spec, &p, 11.0);
        // level = 10 + 0.5 * ((11 + 1) - 10) = 11; season = -1 + 0.2 * ((11 - 10) + 1) = -0.6
        assert!((st.level - 11.0).abs() < 1e-12);
        assert!((st.season[0] + 0.6).abs() < 1e-12 && (st.season[1] - 1.0).abs() < 1e-12);
    }
}
