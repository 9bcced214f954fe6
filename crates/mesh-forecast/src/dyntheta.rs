//! Optimised and dynamic Theta models (Fiorucci, Pellegrini, Louzada & Petropoulos 2016,
//! "Models for optimising the theta method and their relationship to state space models").
//!
//! Four variants share one recursion: the standard (STM, θ = 2) and optimised (OTM) models
//! keep the trend line `A + B t` fitted once on the whole sample; the dynamic ones (DSTM,
//! DOTM) update `A` and `B` as each observation arrives, so the drift a forecast carries is
//! the one the data had *up to the forecast origin*. Parameters (initial level, α, and θ
//! for the optimised variants) minimise the one-step squared error. [`auto_dyn_theta`]
//! fits OTM and DOTM — each starts from θ = 2, so it is never worse in-sample than its
//! standard counterpart — and keeps the lower error, as `AutoTheta` does.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::forecast::Forecast;
use crate::optim::{minimize, PENALTY};

const ALPHA_MIN: f64 = 0.1;
const ALPHA_MAX: f64 = 0.99;
/// θ above this is indistinguishable from a pure trend-line weight of 1 (`1 - 1/θ ≈ 1`).
const THETA_MAX: f64 = 1e3;
/// The first few one-step errors depend mostly on the initialisation and are not scored.
const BURN_IN: usize = 3;
const ITERS: u64 = 200;

/// Which Theta variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ThetaModel {
    /// Standard: θ = 2, static trend line.
    Stm,
    /// Optimised θ, static trend line.
    Otm,
    /// θ = 2, trend line re-estimated at every step.
    Dstm,
    /// Optimised θ, trend line re-estimated at every step.
    Dotm,
}

impl ThetaModel {
    fn dynamic(self) -> bool {
        matches!(self, ThetaModel::Dstm | ThetaModel::Dotm)
    }
    fn optimised(self) -> bool {
        matches!(self, ThetaModel::Otm | ThetaModel::Dotm)
    }
}

/// Recursion state after `i` observations.
#[derive(Clone, Debug, Serialize)]
struct State {
    level: f64,
    mean: f64,
    a: f64,
    b: f64,
    /// Observations absorbed so far.
    i: usize,
}

impl State {
    fn start(y: &[f64], model: ThetaModel, l0: f64, alpha: f64) -> State {
        let (a, b) = if model.dynamic() {
            (y[0], 0.0)
        } else {
            static_line(y)
        };
        State {
            level: alpha * y[0] + (1.0 - alpha) * l0,
            mean: y[0],
            a,
            b,
            i: 1,
        }
    }

    /// One-step forecast: SES level plus the weighted trend-line correction.
    fn one_step(&self, alpha: f64, theta: f64) -> f64 {
        let q = 1.0 - alpha;
        let i = self.i as i32;
        self.level
            + (1.0 - 1.0 / theta) * (self.a * q.powi(i) + self.b * (1.0 - q.powi(i + 1)) / alpha)
    }

    fn update(&mut self, dynamic: bool, alpha: f64, y: f64) {
        let i = self.i as f64;
        self.level = alpha * y + (1.0 - alpha) * self.level;
        let old_mean = self.mean;
        self.mean = (i * old_mean + y) / (i + 1.0);
        if dynamic {
            self.b = ((i - 1.0) * self.b + 6.0 * (y - old_mean) / (i + 1.0)) / (i + 2.0);
            self.a = self.mean - self.b * (i + 2.0) / 2.0;
        }
        self.i += 1;
    }
}

/// Least-squares line `A + B t` over `t = 1..=n`, in the recursion's parametrisation.
fn static_line(y: &[f64]) -> (f64, f64) {
    let n = y.len() as f64;
    if y.len() < 2 {
        return (y[0], 0.0);
    }
    let mean = y.iter().sum::<f64>() / n;
    let weighted = y
        .iter()
        .enumerate()
        .map(|(t, v)| (t + 1) as f64 * v)
        .sum::<f64>()
        / n;
    let b = 6.0 * (2.0 * weighted - (n + 1.0) * mean) / (n * n - 1.0);
    (mean - (n + 1.0) * b / 2.0, b)
}

/// Run the recursion; returns the final state and the scored sum of squared errors.
fn run(y: &[f64], model: ThetaModel, l0: f64, alpha: f64, theta: f64) -> (State, f64) {
    let mut st = State::start(y, model, l0, alpha);
    let mut sse = 0.0;
    for (t, &v) in y.iter().enumerate().skip(1) {
        let e = v - st.one_step(alpha, theta);
        if t >= BURN_IN {
            sse += e * e;
        }
        st.update(model.dynamic(), alpha, v);
    }
    (st, sse)
}

/// A fitted Theta-family model.
#[derive(Clone, Debug, Serialize)]
pub struct FittedDynTheta {
    /// The variant.
    pub model: ThetaModel,
    /// Smoothing parameter.
    pub alpha: f64,
    /// Theta coefficient (2 for the standard variants).
    pub theta: f64,
    /// Mean squared one-step error in data units.
    pub mse: f64,
    state: State,
    scale: f64,
}

/// Fit one variant on an (already seasonally adjusted) series.
pub fn fit_dyn_theta(y: &[f64], model: ThetaModel) -> Result<FittedDynTheta> {
    let n = y.len();
    if n <= BURN_IN + 1 {
        return Err(Error::Fit {
            model: format!("{model:?}"),
            reason: format!("needs more than {} observations, got {n}", BURN_IN + 1),
        });
    }
    let scale = {
        let s = y.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
        if s > 0.0 && s.is_finite() {
            s
        } else {
            1.0
        }
    };
    let ys: Vec<f64> = y.iter().map(|v| v / scale).collect();
    let decode = |x: &[f64]| -> Option<(f64, f64, f64)> {
        let theta = if model.optimised() { x[2] } else { 2.0 };
        ((ALPHA_MIN..=ALPHA_MAX).contains(&x[1]) && (1.0..=THETA_MAX).contains(&theta))
            .then_some((x[0], x[1], theta))
    };
    let objective = |x: &[f64]| match decode(x) {
        Some((l0, a, th)) => run(&ys, model, l0, a, th).1,
        None => PENALTY,
    };
    let (x0, steps): (Vec<f64>, Vec<f64>) = if model.optimised() {
        (vec![ys[0] / 2.0, 0.5, 2.0], vec![0.1, 0.1, 0.5])
    } else {
        (vec![ys[0] / 2.0, 0.5], vec![0.1, 0.1])
    };
    let (x, _) = minimize(objective, &x0, &steps, ITERS);
    let mut full = x;
    if !model.optimised() {
        full.push(2.0);
    }
    let (l0, alpha, theta) = decode(&full).ok_or_else(|| Error::Fit {
        model: format!("{model:?}"),
        reason: "optimiser left the feasible region".into(),
    })?;
    let (state, sse) = run(&ys, model, l0, alpha, theta);
    let mse = sse / (n - BURN_IN) as f64 * scale * scale;
    if !mse.is_finite() {
        return Err(Error::Fit {
            model: format!("{model:?}"),
            reason: "non-finite error".into(),
        });
    }
    Ok(FittedDynTheta {
        model,
        alpha,
        theta,
        mse,
        state,
        scale,
    })
}

/// Fit OTM and DOTM and keep the one with the lower one-step error.
pub fn auto_dyn_theta(y: &[f64]) -> Result<FittedDynTheta> {
    let a = fit_dyn_theta(y, ThetaModel::Otm);
    let b = fit_dyn_theta(y, ThetaModel::Dotm);
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(if b.mse <= a.mse { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), b) => b,
    }
}

impl FittedDynTheta {
    /// Point forecasts (the recursion fed its own forecasts) and sds from the one-step
    /// error grown like a random walk with smoothing α (an approximation).
    pub fn forecast(&self, h: usize) -> Forecast {
        let mut st = self.state.clone();
        let sigma = self.mse.sqrt();
        let mut mean = Vec::with_capacity(h);
        let mut sd = Vec::with_capacity(h);
        for j in 0..h {
            let f = st.one_step(self.alpha, self.theta);
            st.update(self.model.dynamic(), self.alpha, f);
            mean.push(f * self.scale);
            sd.push(sigma * (1.0 + j as f64 * self.alpha * self.alpha).sqrt());
        }
        Forecast { mean, sd }
    }

    /// Absorb one observation with the fitted parameters.
    pub fn observe(&mut self, y: f64) {
        self.state
            .update(self.model.dynamic(), self.alpha, y / self.scale);
    }
}

impl crate::theta::Component for FittedDynTheta {
    fn forecast(&self, h: usize) -> Forecast {
        FittedDynTheta::forecast(self, h)
    }
    fn observe(&mut self, y: f64) {
        FittedDynTheta::observe(self, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_series_is_extrapolated_by_the_dynamic_model() {
        let y: Vec<f64> = (0..40).map(|t| 10.0 + 3.0 * t as f64).collect();
        let m = fit_dyn_theta(&y, ThetaModel::Dotm).unwrap();
        let f = m.forecast(5);
        for (j, v) in f.mean.iter().enumerate() {
            let expect = 10.0 + 3.0 * (40 + j) as f64;
            assert!((v - expect).abs() < 1.0, "step {j}: {v} vs {expect}");
        }
    }

    #[test]
    fn standard_model_matches_ses_with_half_slope_drift() {
        // A noiseless line: STM forecasts follow the theta = 2 line, i.e. slope B / 2.
        let y: Vec<f64> = (0..30).map(|t| 5.0 + 2.0 * t as f64).collect();
        let m = fit_dyn_theta(&y, ThetaModel::Stm).unwrap();
        let f = m.forecast(4);
        let slope = (f.mean[3] - f.mean[0]) / 3.0;
        assert!((slope - 1.0).abs() < 0.05, "slope {slope}");
    }
}
