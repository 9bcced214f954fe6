//! Pareto/NBD (Schmittlein, Morrison & Colombo 1987), in the form of Fader & Hardie's
//! "A Note on Deriving the Pareto/NBD Model and Related Expressions" (2005).
//!
//! Purchases are Poisson with `λ ~ Gamma(r, α)`; lifetimes are exponential with
//! `μ ~ Gamma(s, β)`. The likelihood needs `2F1` at `z = |α-β| / (max(α,β) + t)`, which
//! approaches 1 when one scale dwarfs the other; [`crate::special::hyp2f1`] handles that.
//! The difference of the two `2F1` terms is taken in log space to avoid cancellation.

use serde::{Deserialize, Serialize};

use crate::data::Rfm;
use crate::error::{Error, Result};
use crate::optimize::minimize;
use crate::special::{hyp2f1, ln_gamma, log_add_exp, log_sub_exp};

/// Pareto/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParetoNbdParams {
    /// Shape of the purchase-rate gamma.
    pub r: f64,
    /// Scale of the purchase-rate gamma.
    pub alpha: f64,
    /// Shape of the dropout-rate gamma.
    pub s: f64,
    /// Scale of the dropout-rate gamma.
    pub beta: f64,
}

/// A fitted Pareto/NBD model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoNbdFit {
    /// Maximum-likelihood parameters.
    pub params: ParetoNbdParams,
    /// Log-likelihood at the optimum.
    pub log_likelihood: f64,
    /// Optimizer iterations.
    pub iterations: u64,
}

impl ParetoNbdParams {
    /// `ln A0` of the note's eq. (19): `F1/(m+t_x)^{rsx} - F2/(m+T)^{rsx}`.
    fn log_a0(&self, c: &Rfm) -> Result<f64> {
        let Self { r, alpha, s, beta } = *self;
        let x = c.frequency;
        let (lo, hi, second) = if alpha < beta {
            (alpha, beta, r + x)
        } else {
            (beta, alpha, s + 1.0)
        };
        let rsx = r + s + x;
        let d = hi - lo;
        // ln 2F1(rsx, second; rsx+1; z) through Euler's transformation,
        // (1-z)^{1-second} 2F1(1, rsx+1-second; rsx+1; z): the new series has positive
        // terms with ratio below z, while the original grows like (1-z)^{1-r-x} and
        // overflows (or, through the 1-z connection formula, loses every digit) for
        // customers with hundreds of purchases when α < β.
        let ln_f = |z: f64| -> Result<f64> {
            let g = hyp2f1(1.0, rsx + 1.0 - second, rsx + 1.0, z)?;
            Ok((1.0 - second) * (-z).ln_1p() + g.ln())
        };
        let t1 = ln_f(d / (hi + c.recency))? - rsx * (hi + c.recency).ln();
        let t2 = ln_f(d / (hi + c.t))? - rsx * (hi + c.t).ln();
        if t2 > t1 {
            // Only rounding can cause this (A0 >= 0 analytically).
            return Ok(f64::NEG_INFINITY);
        }
        Ok(log_sub_exp(t1, t2))
    }

    /// The `(α+T)^{-(r+x)} (β+T)^{-s}` term and the `A0` term, both in logs, without the
    /// common factor.
    fn parts(&self, c: &Rfm) -> Result<(f64, f64, f64)> {
        let Self { r, alpha, s, beta } = *self;
        let x = c.frequency;
        let head = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + s * beta.ln();
        let alive = -(r + x) * (alpha + c.t).ln() - s * (beta + c.t).ln();
        let dead = s.ln() - (r + s + x).ln() + self.log_a0(c)?;
        Ok((head, alive, dead))
    }

    /// Log-likelihood of one customer's `(x, t_x, T)`.
    pub fn customer_log_likelihood(&self, c: &Rfm) -> Result<f64> {
        let (head, alive, dead) = self.parts(c)?;
        Ok(head + log_add_exp(alive, dead))
    }

    /// P(alive at `T` | x, t_x, T).
    pub fn p_alive(&self, c: &Rfm) -> Result<f64> {
        let (_, alive, dead) = self.parts(c)?;
        Ok((alive - log_add_exp(alive, dead)).exp())
    }

    /// Expected transactions in `(T, T + t]` given `(x, t_x, T)`.
    pub fn conditional_expected(&self, t: f64, c: &Rfm) -> Result<f64> {
        let Self { r, alpha, s, beta } = *self;
        let x = c.frequency;
        let e = (r + x) / (alpha + c.t) * dropout_weighted_time(s, beta + c.t, t);
        Ok(e * self.p_alive(c)?)
    }

    /// Unconditional expected repeat transactions in `(0, t]`.
    pub fn expected_repeat(&self, t: f64) -> Result<f64> {
        let Self { r, alpha, s, beta } = *self;
        Ok(r / alpha * dropout_weighted_time(s, beta, t))
    }
}

/// `E[(1 - e^{-μt}) / μ]` for `μ ~ Gamma(s, rate β)`: the expected time alive within
/// `t`, `β/(s-1) (1 - (β/(β+t))^{s-1})`. Written as `-β L (e^{(s-1)L}-1)/((s-1)L)`
/// with `L = ln(β/(β+t))` it has no cancellation near `s = 1` and equals the limit
/// `β ln(1 + t/β)` at `s = 1` (the old form divided by `s - 1` and refused `s = 1`).
fn dropout_weighted_time(s: f64, beta: f64, t: f64) -> f64 {
    if t <= 0.0 {
        return 0.0;
    }
    let l = -(t / beta).ln_1p();
    let u = (s - 1.0) * l;
    let ratio = if u == 0.0 { 1.0 } else { u.exp_m1() / u };
    -beta * l * ratio
}

/// Sum of per-customer log-likelihoods.
pub fn log_likelihood(params: &ParetoNbdParams, data: &[Rfm]) -> Result<f64> {
    data.iter().map(|c| params.customer_log_likelihood(c)).sum()
}

/// Maximum-likelihood fit on log-parameters from the default start `r = α = s = β = 1`.
pub fn fit(data: &[Rfm]) -> Result<ParetoNbdFit> {
    if data.is_empty() {
        return Err(Error::InvalidInput("Pareto/NBD fit needs customers".into()));
    }
    for c in data {
        c.validate()?;
    }
    let n = data.len() as f64;
    let objective = |p: &[f64]| match log_likelihood(&from_log(p), data) {
        Ok(ll) => -ll / n,
        Err(_) => f64::INFINITY,
    };
    let m = minimize(&objective, &[0.0; 4])?;
    let params = from_log(&m.x);
    Ok(ParetoNbdFit {
        params,
        log_likelihood: log_likelihood(&params, data)?,
        iterations: m.iterations,
    })
}

fn from_log(p: &[f64]) -> ParetoNbdParams {
    ParetoNbdParams {
        r: p[0].exp(),
        alpha: p[1].exp(),
        s: p[2].exp(),
        beta: p[3].exp(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfm(x: f64, tx: f64, t: f64) -> Rfm {
        Rfm {
            frequency: x,
            recency: tx,
            t,
        }
    }

    #[test]
    fn likelihood_matches_closed_form_when_scales_equal() {
        // α = β makes z = 0 so 2F1 = 1 and
        // A0 = (α+t_x)^{-(r+s+x)} - (α+T)^{-(r+s+x)}.
        let p = ParetoNbdParams {
            r: 1.0,
            alpha: 1.0,
            s: 1.0,
            beta: 1.0,
        };
        let c = rfm(1.0, 1.0, 2.0);
        // Γ(2)/Γ(1) * 1 * [3^-2 * 3^-1 + (1/3) (2^-3 - 3^-3)]
        let want = (1.0f64 / 27.0 + (1.0 / 3.0) * (1.0 / 8.0 - 1.0 / 27.0)).ln();
        let got = p.customer_log_likelihood(&c).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn branches_agree_near_equal_scales() {
        // α slightly above and below β must give nearly the same likelihood.
        let c = rfm(3.0, 20.0, 35.0);
        let lo = ParetoNbdParams {
            r: 0.55,
            alpha: 10.0 - 1e-7,
            s: 0.6,
            beta: 10.0,
        };
        let hi = ParetoNbdParams {
            alpha: 10.0 + 1e-7,
            ..lo
        };
        let (a, b) = (
            lo.customer_log_likelihood(&c).unwrap(),
            hi.customer_log_likelihood(&c).unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn p_alive_limits() {
        let p = ParetoNbdParams {
            r: 0.553,
            alpha: 10.578,
            s: 0.606,
            beta: 11.669,
        };
        // Bought just now: alive for sure.
        let now = p.p_alive(&rfm(4.0, 30.0, 30.0)).unwrap();
        assert!((now - 1.0).abs() < 1e-9, "{now}");
        let silent = p.p_alive(&rfm(10.0, 2.0, 200.0)).unwrap();
        assert!(silent < 0.01, "{silent}");
        let e = p.conditional_expected(39.0, &rfm(2.0, 30.0, 38.0)).unwrap();
        assert!(e > 0.0 && e.is_finite());
    }
}
