//! BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way").
//!
//! Purchases follow a Poisson process with rate `λ ~ Gamma(r, α)`; after each purchase
//! the customer drops out with probability `p ~ Beta(a, b)`.
//!
//! **Likelihood convention.** [`log_likelihood`] is the paper's equation (6): the
//! density of the observed purchase *times* given `(x, t_x, T)`, without terms that do
//! not depend on the parameters. With CDNOW in weeks it gives -9582.4 at the published
//! optimum. The density of the summary `(x, t_x)` alone adds the constant
//! `Σ_{x>0} [(x-1) ln t_x - ln Γ(x)]` ([`summary_constant`]); it shifts the value, not
//! the arg-max.

use serde::{Deserialize, Serialize};

use crate::data::Rfm;
use crate::error::{Error, Result};
use crate::optimize::minimize;
use crate::special::{ln_gamma, log_add_exp};

/// Cap on the terms of the expectation series (reached only for `t / (α+T)` in the
/// tens of thousands).
const K_MAX_TERMS: f64 = 2e6;

/// BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbdParams {
    /// Shape of the purchase-rate gamma.
    pub r: f64,
    /// Scale (in time units) of the purchase-rate gamma.
    pub alpha: f64,
    /// Dropout beta `a`.
    pub a: f64,
    /// Dropout beta `b`.
    pub b: f64,
}

/// A fitted BG/NBD model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgNbdFit {
    /// Maximum-likelihood parameters.
    pub params: BgNbdParams,
    /// Log-likelihood at the optimum (paper convention, see the module doc).
    pub log_likelihood: f64,
    /// Optimizer iterations.
    pub iterations: u64,
    /// Customers in the fit.
    pub customers: usize,
}

impl BgNbdParams {
    fn check(&self) -> Result<()> {
        if [self.r, self.alpha, self.a, self.b]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
        {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "BG/NBD parameters must be positive: {self:?}"
            )))
        }
    }

    /// Log-likelihood of one customer's `(x, t_x, T)` (paper eq. 6).
    pub fn customer_log_likelihood(&self, c: &Rfm) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let x = c.frequency;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + c.t).ln();
        let a4 = if x > 0.0 {
            a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + c.recency).ln()
        } else {
            f64::NEG_INFINITY
        };
        a1 + a2 + log_add_exp(a3, a4)
    }

    /// P(customer still alive at `T` | x, t_x, T). Equals 1 when `x == 0`.
    pub fn p_alive(&self, c: &Rfm) -> f64 {
        if c.frequency <= 0.0 {
            return 1.0;
        }
        let Self { r, alpha, a, b } = *self;
        let x = c.frequency;
        let log_ratio =
            (a / (b + x - 1.0)).ln() + (r + x) * ((alpha + c.t) / (alpha + c.recency)).ln();
        1.0 / (1.0 + log_ratio.exp())
    }

    /// Expected number of transactions in `(T, T + t]` given `(x, t_x, T)` (eq. 10):
    /// P(alive) times [`Self::expected_if_alive`].
    pub fn conditional_expected(&self, t: f64, c: &Rfm) -> Result<f64> {
        self.check()?;
        if t <= 0.0 {
            return Ok(0.0);
        }
        Ok(self.expected_if_alive(t, c.frequency, c.t)? * self.p_alive(c))
    }

    /// Expected transactions in `(T, T + t]` of a customer known to be alive at `T`
    /// after `x` repeat purchases: the bracket of eq. (10),
    /// `(a+b+x-1)/(a-1) [1 - ((α+T)/(α+T+t))^{r+x} 2F1(r+x, b+x; a+b+x-1; z)]` with
    /// `z = t/(α+T+t)`, evaluated without that `2F1`.
    ///
    /// Evaluated as written, `2F1(r+x, b+x; ...)` grows like `(1-z)^{-(r+x)}` and the
    /// bracket is `1` minus a product of a huge and a tiny number; with `c - a - b =
    /// a - 1 - r - x` far from zero the general `2F1` also fell into a badly conditioned
    /// branch (issue 16). Euler's transformation turns it into
    /// `(1-z)^{a-1} G`, `G = 2F1(a+b-1-r, a-1; a+b+x-1; z)`, and expanding `G - 1`
    /// gives, with `ε = a - 1`, `c = a+b+x-1`, `L = ln(1-z)`,
    ///
    /// `E = c (1 - e^{εL}) / ε - e^{εL} K`, `K = Σ_{n≥1} (a+b-1-r)_n (a)_{n-1} z^n / ((c+1)_{n-1} n!)`.
    ///
    /// Nothing overflows for any `x`, `(c+1)_{n-1} > 0` has no poles (also when
    /// `a + b < 1`), and `(1 - e^{εL})/ε = -L (e^{εL}-1)/(εL)` is exact at `a = 1`,
    /// where eq. (10) is `0/0`. `K`'s terms have one sign after the first few and
    /// shrink like `n^{a-r-x-2} z^n`.
    pub fn expected_if_alive(&self, t: f64, x: f64, big_t: f64) -> Result<f64> {
        self.check()?;
        if t <= 0.0 {
            return Ok(0.0);
        }
        let Self { r, alpha, a, b } = *self;
        let eps = a - 1.0;
        let c = a + b + x - 1.0;
        let p = a + b - 1.0 - r;
        let z = t / (alpha + big_t + t);
        let ln_1mz = -(t / (alpha + big_t)).ln_1p();
        let mut term = p * z;
        let mut k = term;
        let mut n = 1.0f64;
        let mut small = 0;
        let mut converged = term == 0.0;
        while !converged && n < K_MAX_TERMS {
            let ratio = (p + n) * (a + n - 1.0) * z / ((c + n) * (n + 1.0));
            term *= ratio;
            k += term;
            n += 1.0;
            // Past the sign change of a+b-1-r+n the ratio tends to z, so with
            // r = max(ratio, z) < 1 the tail is at most term * r / (1 - r).
            let r_tail = ratio.abs().max(z);
            if term == 0.0
                || (n > -p && r_tail < 1.0 && term.abs() <= 1e-17 * (1.0 - r_tail) * k.abs())
            {
                small += 1;
                converged = term == 0.0 || small >= 3;
            } else {
                small = 0;
            }
        }
        if !converged || !k.is_finite() {
            return Err(Error::Numerical(format!(
                "BG/NBD expectation series did not converge: {self:?}, x = {x}, T = {big_t}, t = {t}"
            )));
        }
        let u = eps * ln_1mz;
        let exp_m1_over = if u == 0.0 { 1.0 } else { u.exp_m1() / u };
        let first = -c * ln_1mz * exp_m1_over;
        let e = first - u.exp() * k;
        Ok(e.max(0.0))
    }

    /// Probability of no transaction in `(T, T + h]` given `(x, t_x, T)`:
    /// `1 - P(alive) (1 - ((α+T)/(α+T+h))^{r+x})` — the churn label "no purchase in the
    /// next `h` periods". (A customer alive at `T` only drops out right after a purchase,
    /// so given alive, no purchase in `h` has the gamma-posterior Poisson-zero mass.)
    pub fn p_no_purchase(&self, h: f64, c: &Rfm) -> f64 {
        let Self { r, alpha, .. } = *self;
        let x = c.frequency;
        let zero = ((alpha + c.t) / (alpha + c.t + h)).powf(r + x);
        1.0 - self.p_alive(c) * (1.0 - zero)
    }

    /// Unconditional expected number of repeat transactions in `(0, t]` for a newly
    /// acquired customer, E[X(t)] (eq. 9).
    pub fn expected_repeat(&self, t: f64) -> Result<f64> {
        // A new customer is alive with x = 0 at T = 0.
        self.expected_if_alive(t, 0.0, 0.0)
    }
}

/// Sum of per-customer log-likelihoods (paper convention).
pub fn log_likelihood(params: &BgNbdParams, data: &[Rfm]) -> f64 {
    data.iter().map(|c| params.customer_log_likelihood(c)).sum()
}

/// The parameter-free term that turns the paper's log-likelihood into the log density
/// of the summary statistics `(x, t_x)`: `Σ_{x>0} [(x-1) ln t_x - ln Γ(x)]`.
pub fn summary_constant(data: &[Rfm]) -> f64 {
    data.iter()
        .filter(|c| c.frequency > 0.0 && c.recency > 0.0)
        .map(|c| (c.frequency - 1.0) * c.recency.ln() - ln_gamma(c.frequency))
        .sum()
}

/// Maximum-likelihood fit on log-parameters from the default start `r = α = a = b = 1`.
pub fn fit(data: &[Rfm]) -> Result<BgNbdFit> {
    fit_from(data, [1.0; 4])
}

/// Maximum-likelihood fit from a given start `[r, α, a, b]`.
pub fn fit_from(data: &[Rfm], start: [f64; 4]) -> Result<BgNbdFit> {
    if data.is_empty() {
        return Err(Error::InvalidInput("BG/NBD fit needs customers".into()));
    }
    for c in data {
        c.validate()?;
    }
    let n = data.len() as f64;
    let objective = |p: &[f64]| {
        let params = from_log(p);
        -log_likelihood(&params, data) / n
    };
    let x0: Vec<f64> = start.iter().map(|v| v.ln()).collect();
    let m = minimize(&objective, &x0)?;
    let params = from_log(&m.x);
    params.check()?;
    Ok(BgNbdFit {
        params,
        log_likelihood: log_likelihood(&params, data),
        iterations: m.iterations,
        customers: data.len(),
    })
}

fn from_log(p: &[f64]) -> BgNbdParams {
    BgNbdParams {
        r: p[0].exp(),
        alpha: p[1].exp(),
        a: p[2].exp(),
        b: p[3].exp(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    fn rfm(x: f64, tx: f64, t: f64) -> Rfm {
        Rfm {
            frequency: x,
            recency: tx,
            t,
        }
    }

    #[test]
    fn likelihood_matches_hand_computation() {
        // r = alpha = a = b = 1 with x = 0, T = 1:
        // L = Γ(1)/Γ(1) * 1 * B(1, 1)/B(1, 1) * (1/2)^1 = 1/2.
        let one = BgNbdParams {
            r: 1.0,
            alpha: 1.0,
            a: 1.0,
            b: 1.0,
        };
        let ll = one.customer_log_likelihood(&rfm(0.0, 0.0, 1.0));
        assert!((ll - 0.5f64.ln()).abs() < 1e-12, "{ll}");
        // x = 1, t_x = 1, T = 2, r = alpha = 1, a = b = 1:
        // A1 = Γ(2)/Γ(1) * 1 = 1; A2 = B(1, 2)/B(1, 1) = 1/2;
        // (alpha+T)^-(r+x) = 1/9; a/(b+x-1) (alpha+t_x)^-(r+x) = 1/4.
        let ll = one.customer_log_likelihood(&rfm(1.0, 1.0, 2.0));
        let want = (0.5f64 * (1.0 / 9.0 + 0.25)).ln();
        assert!((ll - want).abs() < 1e-12, "{ll} vs {want}");
    }

    #[test]
    fn p_alive_limits() {
        assert_eq!(P.p_alive(&rfm(0.0, 0.0, 30.0)), 1.0);
        // Bought at T: the only way to be dead is to have dropped after this purchase.
        let at_end = P.p_alive(&rfm(5.0, 30.0, 30.0));
        assert!((at_end - 1.0 / (1.0 + P.a / (P.b + 4.0))).abs() < 1e-12);
        // Long silence after frequent buying -> nearly surely dead.
        assert!(P.p_alive(&rfm(20.0, 5.0, 300.0)) < 1e-6);
        // Monotone: longer silence lowers P(alive).
        let a = P.p_alive(&rfm(3.0, 20.0, 30.0));
        let b = P.p_alive(&rfm(3.0, 10.0, 30.0));
        assert!(a > b);
    }

    #[test]
    fn expectations_are_consistent() {
        // E[X(t)] grows with t and is 0 at t = 0.
        assert_eq!(P.expected_repeat(0.0).unwrap(), 0.0);
        let e39 = P.expected_repeat(39.0).unwrap();
        let e78 = P.expected_repeat(78.0).unwrap();
        assert!(e39 > 0.0 && e78 > e39);
        // A brand-new customer (x = 0, T = 0) has conditional = unconditional expectation.
        let c = P.conditional_expected(10.0, &rfm(0.0, 0.0, 0.0)).unwrap();
        assert!((c - P.expected_repeat(10.0).unwrap()).abs() < 1e-10);
        // P(no purchase) is a probability and falls with the horizon.
        let c = rfm(2.0, 10.0, 20.0);
        let (p1, p2) = (P.p_no_purchase(4.0, &c), P.p_no_purchase(40.0, &c));
        assert!(p1 <= 1.0 && p2 >= 1.0 - P.p_alive(&c) && p2 < p1);
    }

    /// Simulates BG/NBD customers observed for `t` weeks after their first purchase.
    fn simulate(p: &BgNbdParams, n: usize, t: f64, seed: u64) -> Vec<Rfm> {
        use rand::{Rng, SeedableRng};
        use rand_distr::{Beta, Distribution, Exp, Gamma};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let rates = Gamma::new(p.r, 1.0 / p.alpha).unwrap();
        let drops = Beta::new(p.a, p.b).unwrap();
        (0..n)
            .map(|_| {
                let (lambda, pd) = (rates.sample(&mut rng), drops.sample(&mut rng));
                let (mut now, mut x, mut tx) = (0.0, 0.0, 0.0);
                loop {
                    now += Exp::new(lambda.max(1e-12)).unwrap().sample(&mut rng);
                    if now > t {
                        break;
                    }
                    x += 1.0;
                    tx = now;
                    if rng.random::<f64>() < pd {
                        break;
                    }
                }
                rfm(x, tx, t)
            })
            .collect()
    }

    #[test]
    fn fit_recovers_simulated_parameters() {
        let truth = P;
        let data = simulate(&truth, 3000, 39.0, 42);
        let fit = fit(&data).unwrap();
        // The optimum beats the true parameters on the sample it was fitted to...
        assert!(fit.log_likelihood >= log_likelihood(&truth, &data) - 1e-6);
        // ...and the purchase-rate parameters land near the truth.
        let mean_rate = fit.params.r / fit.params.alpha;
        let true_rate = truth.r / truth.alpha;
        assert!(
            (mean_rate / true_rate - 1.0).abs() < 0.2,
            "{:?}",
            fit.params
        );
        assert!(
            (fit.params.r / truth.r - 1.0).abs() < 0.3,
            "{:?}",
            fit.params
        );
        // Perturbing the optimum never improves the likelihood.
        for i in 0..4 {
            let mut v = [fit.params.r, fit.params.alpha, fit.params.a, fit.params.b];
            v[i] *= 1.01;
            let q = BgNbdParams {
                r: v[0],
                alpha: v[1],
                a: v[2],
                b: v[3],
            };
            assert!(log_likelihood(&q, &data) <= fit.log_likelihood + 1e-9);
        }
    }
}
