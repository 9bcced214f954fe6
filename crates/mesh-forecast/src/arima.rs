//! Non-seasonal ARIMA(p, d, q) with automatic order selection, for use on seasonally
//! adjusted series (the seasonal part is handled by [`crate::theta::Deseasonalised`]).
//!
//! The differencing order comes from repeated KPSS tests at 5% (as `forecast::ndiffs`);
//! `p, q ∈ {0, 1, 2}` with and without a constant (mean for `d = 0`, drift for `d = 1`)
//! are fitted by conditional sum of squares and the lowest AICc wins. Every model
//! conditions on the same first [`MAX_ORDER`] differenced values so that their AICc are
//! computed on the same observations and can be compared.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::forecast::Forecast;
use crate::optim::{minimize, PENALTY};

/// Largest AR or MA order tried.
pub const MAX_ORDER: usize = 2;
/// Largest number of differences.
const MAX_D: usize = 2;
/// KPSS 5% critical value for level stationarity.
const KPSS_CRIT_5: f64 = 0.463;
const ITERS_PER_PARAM: u64 = 80;

/// An ARIMA order with or without a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ArimaOrder {
    /// AR order.
    pub p: usize,
    /// Differences.
    pub d: usize,
    /// MA order.
    pub q: usize,
    /// Whether a mean (d = 0) or drift (d = 1) is estimated.
    pub constant: bool,
}

impl ArimaOrder {
    /// e.g. `ARIMA(1,1,0) with drift`.
    pub fn describe(&self) -> String {
        let c = match (self.constant, self.d) {
            (false, _) => "",
            (true, 0) => " with mean",
            (true, _) => " with drift",
        };
        format!("ARIMA({},{},{}){c}", self.p, self.d, self.q)
    }
}

/// KPSS level-stationarity statistic with Newey–West variance and `trunc(4 (n/100)^¼)`
/// lags (`tseries::kpss.test(lshort = TRUE)`).
pub fn kpss_stat(x: &[f64]) -> f64 {
    let n = x.len();
    let nf = n as f64;
    let mean = x.iter().sum::<f64>() / nf;
    let e: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let lags = (4.0 * (nf / 100.0).powf(0.25)).trunc() as usize;
    let mut s2 = e.iter().map(|v| v * v).sum::<f64>() / nf;
    for k in 1..=lags.min(n.saturating_sub(1)) {
        let w = 1.0 - k as f64 / (lags as f64 + 1.0);
        let c: f64 = (k..n).map(|t| e[t] * e[t - k]).sum();
        s2 += 2.0 * w * c / nf;
    }
    let mut s = 0.0;
    let mut sum_sq = 0.0;
    for v in &e {
        s += v;
        sum_sq += s * s;
    }
    if s2 <= 0.0 {
        return 0.0;
    }
    sum_sq / (nf * nf * s2)
}

fn diff(x: &[f64]) -> Vec<f64> {
    x.windows(2).map(|w| w[1] - w[0]).collect()
}

fn is_constant(x: &[f64]) -> bool {
    x.windows(2)
        .all(|w| (w[1] - w[0]).abs() <= 1e-12 * (w[0].abs() + 1.0))
}

/// Number of differences needed for KPSS to stop rejecting stationarity at 5%.
pub fn ndiffs(x: &[f64]) -> usize {
    let mut w = x.to_vec();
    let mut d = 0;
    while d < MAX_D && w.len() > 3 && !is_constant(&w) && kpss_stat(&w) > KPSS_CRIT_5 {
        w = diff(&w);
        d += 1;
    }
    d
}

/// Coefficients of an AR(2)-or-less polynomial `1 - a1 z - a2 z²` have their roots outside
/// the unit circle (the stationarity triangle).
fn stable(a: &[f64]) -> bool {
    match a {
        [] => true,
        [a1] => a1.abs() < 1.0,
        [a1, a2] => a2.abs() < 1.0 && a1 + a2 < 1.0 && a2 - a1 < 1.0,
        _ => false,
    }
}

/// CSS residuals of the ARMA(p, q) part on the differenced series `w` from index
/// `MAX_ORDER` on; returns the sum of squares.
fn css(w: &[f64], mu: f64, ar: &[f64], ma: &[f64], e: &mut [f64]) -> f64 {
    let mut sse = 0.0;
    e.iter_mut().for_each(|v| *v = 0.0);
    for t in MAX_ORDER.min(w.len())..w.len() {
        let mut pred = mu;
        for (i, a) in ar.iter().enumerate() {
            pred += a * (w[t - 1 - i] - mu);
        }
        for (j, b) in ma.iter().enumerate() {
            pred += b * e[t - 1 - j];
        }
        e[t] = w[t] - pred;
        sse += e[t] * e[t];
    }
    sse
}

/// A fitted ARIMA model.
#[derive(Clone, Debug, Serialize)]
pub struct FittedArima {
    /// The order.
    pub order: ArimaOrder,
    /// AR coefficients `φ_1..φ_p` (`w_t = μ + Σ φ_i (w_{t-i} - μ) + e_t + Σ θ_j e_{t-j}`).
    pub ar: Vec<f64>,
    /// MA coefficients `θ_1..θ_q`.
    pub ma: Vec<f64>,
    /// Mean of the differenced series (0 without a constant), scaled units.
    mu: f64,
    /// Innovation variance, scaled units.
    sigma2: f64,
    /// Bias-corrected AIC of the CSS likelihood.
    pub aicc: f64,
    /// The series in scaled units (needed to undifference and to absorb new values).
    y: Vec<f64>,
    /// Differenced series and its residuals.
    w: Vec<f64>,
    e: Vec<f64>,
    scale: f64,
}

/// Fit one order by conditional sum of squares.
pub fn fit_arima(y: &[f64], order: ArimaOrder) -> Result<FittedArima> {
    let fail = |reason: String| Error::Fit {
        model: order.describe(),
        reason,
    };
    let ArimaOrder { p, d, q, constant } = order;
    if p > MAX_ORDER || q > MAX_ORDER || d > MAX_D {
        return Err(fail(format!("orders above {MAX_ORDER} are not supported")));
    }
    let n = y.len();
    let scale = {
        let s = y.iter().map(|v| v.abs()).sum::<f64>() / n.max(1) as f64;
        if s > 0.0 && s.is_finite() {
            s
        } else {
            1.0
        }
    };
    let ys: Vec<f64> = y.iter().map(|v| v / scale).collect();
    let mut w = ys.clone();
    for _ in 0..d {
        w = diff(&w);
    }
    let n_eff = w.len().saturating_sub(MAX_ORDER);
    let k = p + q + usize::from(constant) + 1;
    if n_eff < k + 3 {
        return Err(fail(format!(
            "{n} observations are too few for {k} parameters"
        )));
    }
    let wmean = w.iter().sum::<f64>() / w.len() as f64;
    let decode = |x: &[f64]| -> Option<(f64, Vec<f64>, Vec<f64>)> {
        let ar = x[..p].to_vec();
        let ma = x[p..p + q].to_vec();
        let neg_ma: Vec<f64> = ma.iter().map(|b| -b).collect();
        if !stable(&ar) || !stable(&neg_ma) {
            return None;
        }
        let mu = if constant { x[p + q] } else { 0.0 };
        Some((mu, ar, ma))
    };
    let mut e = vec![0.0; w.len()];
    let objective = |x: &[f64]| match decode(x) {
        Some((mu, ar, ma)) => {
            let mut e = vec![0.0; w.len()];
            css(&w, mu, &ar, &ma, &mut e)
        }
        None => PENALTY,
    };
    let mut x0 = vec![0.0; p + q];
    let mut steps = vec![0.2; p + q];
    if constant {
        let sd = (w.iter().map(|v| (v - wmean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        x0.push(wmean);
        steps.push(0.2 * sd + 1e-3);
    }
    let x = if x0.is_empty() {
        x0
    } else {
        minimize(objective, &x0, &steps, ITERS_PER_PARAM * (p + q + 1) as u64).0
    };
    let (mu, ar, ma) = decode(&x).ok_or_else(|| fail("optimiser left the stable region".into()))?;
    let sse = css(&w, mu, &ar, &ma, &mut e);
    let sigma2 = (sse / n_eff as f64).max(1e-300);
    let nf = n_eff as f64;
    let kf = k as f64;
    let neg2ll = nf * ((2.0 * std::f64::consts::PI * sigma2).ln() + 1.0);
    let aicc = neg2ll + 2.0 * kf + 2.0 * kf * (kf + 1.0) / (nf - kf - 1.0);
    if !aicc.is_finite() {
        return Err(fail("non-finite likelihood".into()));
    }
    Ok(FittedArima {
        order,
        ar,
        ma,
        mu,
        sigma2,
        aicc,
        y: ys,
        w,
        e,
        scale,
    })
}

/// Choose `d` by KPSS, then the `(p, q, constant)` with the lowest AICc.
pub fn auto_arima(y: &[f64]) -> Result<FittedArima> {
    let d = ndiffs(y);
    let mut best: Option<FittedArima> = None;
    for p in 0..=MAX_ORDER {
        for q in 0..=MAX_ORDER {
            // With d < 2 the order without a mean or drift is considered only where the one
            // with it can be fitted too: on a series too short for the constant, the lone
            // zero-mean (d = 0) or no-drift (d = 1) order would win by default and forecast
            // zero or the last value for any level or trend.
            let with = (d < 2).then(|| {
                fit_arima(
                    y,
                    ArimaOrder {
                        p,
                        d,
                        q,
                        constant: true,
                    },
                )
            });
            if matches!(with, Some(Err(_))) {
                continue;
            }
            let without = fit_arima(
                y,
                ArimaOrder {
                    p,
                    d,
                    q,
                    constant: false,
                },
            );
            for f in with.into_iter().flatten().chain(without) {
                if best.as_ref().is_none_or(|b| f.aicc < b.aicc) {
                    best = Some(f);
                }
            }
        }
    }
    best.ok_or_else(|| Error::Fit {
        model: "ARIMA(auto)".into(),
        reason: format!("no order could be fitted to {} observations", y.len()),
    })
}

impl FittedArima {
    /// Constant in data units per differenced step (mean or drift).
    pub fn constant(&self) -> f64 {
        self.mu * self.scale
    }

    fn next_w(&self, w: &[f64], e: &[f64]) -> f64 {
        let t = w.len();
        let mut pred = self.mu;
        for (i, a) in self.ar.iter().enumerate() {
            if t > i {
                pred += a * (w[t - 1 - i] - self.mu);
            }
        }
        for (j, b) in self.ma.iter().enumerate() {
            if t > j {
                pred += b * e[t - 1 - j];
            }
        }
        pred
    }

    /// Innovation standard deviation in data units.
    pub(crate) fn sigma(&self) -> f64 {
        self.sigma2.sqrt() * self.scale
    }

    /// ψ-weights of the integrated model, for the forecast error variance.
    pub(crate) fn psi(&self, h: usize) -> Vec<f64> {
        // AR polynomial times (1 - B)^d, as coefficients of B^1.. in `y_t = Σ c_i y_{t-i}`.
        let mut poly = vec![1.0];
        for a in &self.ar {
            poly.push(-a);
        }
        for _ in 0..self.order.d {
            let mut next = vec![0.0; poly.len() + 1];
            for (i, c) in poly.iter().enumerate() {
                next[i] += c;
                next[i + 1] -= c;
            }
            poly = next;
        }
        let c: Vec<f64> = poly[1..].iter().map(|v| -v).collect();
        let mut psi = vec![1.0];
        for j in 1..h {
            let mut v = self.ma.get(j - 1).copied().unwrap_or(0.0);
            for (i, ci) in c.iter().enumerate() {
                if j > i {
                    v += ci * psi[j - 1 - i];
                }
            }
            psi.push(v);
        }
        psi
    }

    /// Point forecasts and normal-theory sds for `h` steps.
    pub fn forecast(&self, h: usize) -> Forecast {
        let mut w = self.w.clone();
        let mut e = self.e.clone();
        let mut wf = Vec::with_capacity(h);
        for _ in 0..h {
            let v = self.next_w(&w, &e);
            w.push(v);
            e.push(0.0);
            wf.push(v);
        }
        // Undifference: keep the last value of every differencing level of y.
        let mut levels: Vec<f64> = Vec::with_capacity(self.order.d);
        let mut x = self.y.clone();
        for _ in 0..self.order.d {
            levels.push(*x.last().unwrap_or(&0.0));
            x = diff(&x);
        }
        let mut mean = Vec::with_capacity(h);
        for v in wf {
            let mut val = v;
            for lvl in levels.iter_mut().rev() {
                val += *lvl;
                *lvl = val;
            }
            mean.push(val * self.scale);
        }
        let sigma = self.sigma2.sqrt() * self.scale;
        let mut acc = 0.0;
        let sd = self
            .psi(h)
            .iter()
            .map(|p| {
                acc += p * p;
                sigma * acc.sqrt()
            })
            .collect();
        Forecast { mean, sd }
    }

    /// Absorb one observation with the fitted coefficients.
    pub fn observe(&mut self, y: f64) {
        self.y.push(y / self.scale);
        let mut x: Vec<f64> = self.y[self.y.len().saturating_sub(self.order.d + 1)..].to_vec();
        for _ in 0..self.order.d {
            x = diff(&x);
        }
        let Some(&w_new) = x.last() else { return };
        let pred = self.next_w(&self.w, &self.e);
        self.w.push(w_new);
        self.e.push(w_new - pred);
    }
}

impl crate::theta::Component for FittedArima {
    fn forecast(&self, h: usize) -> Forecast {
        FittedArima::forecast(self, h)
    }
    fn observe(&mut self, y: f64) {
        FittedArima::observe(self, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpss_separates_white_noise_from_a_random_walk() {
        let mut s = 1u64;
        let mut unif = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let noise: Vec<f64> = (0..200).map(|_| unif()).collect();
        let walk: Vec<f64> = noise
            .iter()
            .scan(0.0, |a, v| {
                *a += v;
                Some(*a)
            })
            .collect();
        assert_eq!(ndiffs(&noise), 0);
        assert_eq!(ndiffs(&walk), 1);
    }

    #[test]
    fn drift_model_extends_a_line() {
        let y: Vec<f64> = (0..30).map(|t| 100.0 + 4.0 * t as f64).collect();
        let order = ArimaOrder {
            p: 0,
            d: 1,
            q: 0,
            constant: true,
        };
        let f = fit_arima(&y, order).unwrap().forecast(3);
        for (j, v) in f.mean.iter().enumerate() {
            assert!((v - (100.0 + 4.0 * (30 + j) as f64)).abs() < 1e-6, "{v}");
        }
    }
}
