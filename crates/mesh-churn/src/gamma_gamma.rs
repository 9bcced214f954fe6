//! Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value
//! Curves"; Fader & Hardie, "The Gamma-Gamma Model of Monetary Value", 2013) and
//! customer lifetime value with a discount rate on top of BG/NBD.
//!
//! A customer's transaction values are `Gamma(p, ν)` with `ν ~ Gamma(q, γ)`. The input
//! is, per customer with `x >= 1` repeat transactions, the mean repeat value `m_x`.

use serde::{Deserialize, Serialize};

use crate::bgnbd::BgNbdParams;
use crate::data::Rfm;
use crate::error::{Error, Result};
use crate::optimize::minimize;
use crate::special::ln_gamma;

/// Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaParams {
    /// Shape of the per-transaction value gamma.
    pub p: f64,
    /// Shape of the gamma over customers' scale.
    pub q: f64,
    /// Scale of the gamma over customers' scale.
    pub gamma: f64,
}

/// One customer's spend summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Number of transactions averaged (`x >= 1`).
    pub frequency: f64,
    /// Mean transaction value `m_x > 0`.
    pub mean_value: f64,
}

/// A fitted Gamma-Gamma model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaFit {
    /// Maximum-likelihood parameters.
    pub params: GammaGammaParams,
    /// Log-likelihood of the mean values at the optimum.
    pub log_likelihood: f64,
}

impl GammaGammaParams {
    /// Log density of one customer's mean value `m_x` given `x` transactions.
    pub fn customer_log_likelihood(&self, s: &Spend) -> f64 {
        let Self { p, q, gamma } = *self;
        let (x, m) = (s.frequency, s.mean_value);
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * gamma.ln()
            + (p * x - 1.0) * m.ln()
            + p * x * x.ln()
            - (p * x + q) * (gamma + m * x).ln()
    }

    /// Population mean transaction value `p γ / (q - 1)` (needs `q > 1`).
    pub fn population_mean(&self) -> Result<f64> {
        if self.q <= 1.0 {
            return Err(Error::Numerical(format!(
                "population mean spend is infinite for q = {} <= 1",
                self.q
            )));
        }
        Ok(self.p * self.gamma / (self.q - 1.0))
    }

    /// E[mean transaction value | x, m_x]: a weighted mix of the population mean and the
    /// customer's own mean. `x == 0` gives the population mean.
    pub fn conditional_mean_value(&self, s: &Spend) -> Result<f64> {
        let Self { p, q, .. } = *self;
        let pop = self.population_mean()?;
        let x = s.frequency;
        if x <= 0.0 {
            return Ok(pop);
        }
        let w = p * x / (p * x + q - 1.0);
        Ok((1.0 - w) * pop + w * s.mean_value)
    }
}

/// Maximum-likelihood fit from the default start `p = q = γ = 1`.
pub fn fit(data: &[Spend]) -> Result<GammaGammaFit> {
    if data.is_empty() {
        return Err(Error::InvalidInput(
            "Gamma-Gamma fit needs customers".into(),
        ));
    }
    if let Some(bad) = data
        .iter()
        .find(|s| !(s.frequency >= 1.0 && s.mean_value > 0.0))
    {
        return Err(Error::InvalidInput(format!(
            "Gamma-Gamma needs frequency >= 1 and mean value > 0, got {bad:?}"
        )));
    }
    let n = data.len() as f64;
    let ll = |p: &GammaGammaParams| {
        data.iter()
            .map(|s| p.customer_log_likelihood(s))
            .sum::<f64>()
    };
    let objective = |v: &[f64]| -ll(&from_log(v)) / n;
    let m = minimize(&objective, &[0.0; 3])?;
    let params = from_log(&m.x);
    Ok(GammaGammaFit {
        params,
        log_likelihood: ll(&params),
    })
}

fn from_log(v: &[f64]) -> GammaGammaParams {
    GammaGammaParams {
        p: v[0].exp(),
        q: v[1].exp(),
        gamma: v[2].exp(),
    }
}

/// Customer lifetime value: expected margin-free revenue over `steps` future periods of
/// `step_weeks` each, discounted at `discount_rate` per period:
/// `Σ_i E[value] (E[N(t_i)] - E[N(t_{i-1})]) / (1 + d)^i`, with `E[N]` the BG/NBD
/// conditional expectation.
pub fn customer_lifetime_value(
    transactions: &BgNbdParams,
    spend: &GammaGammaParams,
    customer: &Rfm,
    mean_value: Option<f64>,
    steps: usize,
    step_weeks: f64,
    discount_rate: f64,
) -> Result<f64> {
    if !(discount_rate > -1.0 && step_weeks > 0.0) {
        return Err(Error::InvalidInput(format!(
            "CLV needs discount rate > -1 and step > 0, got {discount_rate}, {step_weeks}"
        )));
    }
    let value = spend.conditional_mean_value(&Spend {
        frequency: if mean_value.is_some() {
            customer.frequency
        } else {
            0.0
        },
        mean_value: mean_value.unwrap_or(0.0),
    })?;
    let mut clv = 0.0;
    let mut previous = 0.0;
    for i in 1..=steps {
        let e = transactions.conditional_expected(step_weeks * i as f64, customer)?;
        clv += value * (e - previous) / (1.0 + discount_rate).powi(i as i32);
        previous = e;
    }
    Ok(clv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likelihood_matches_hand_computation() {
        // x = 1: m ~ Gamma(p, ν), ν ~ Gamma(q, γ) => m is beta-prime-like:
        // f(m) = Γ(p+q)/(Γ(p)Γ(q)) γ^q m^{p-1} / (γ+m)^{p+q}. p = q = γ = 1, m = 1: 1/4.
        let g = GammaGammaParams {
            p: 1.0,
            q: 1.0,
            gamma: 1.0,
        };
        let ll = g.customer_log_likelihood(&Spend {
            frequency: 1.0,
            mean_value: 1.0,
        });
        assert!((ll - 0.25f64.ln()).abs() < 1e-12, "{ll}");
    }

    #[test]
    fn conditional_mean_shrinks_toward_population() {
        let g = GammaGammaParams {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let pop = g.population_mean().unwrap();
        let few = g
            .conditional_mean_value(&Spend {
                frequency: 1.0,
                mean_value: 100.0,
            })
            .unwrap();
        let many = g
            .conditional_mean_value(&Spend {
                frequency: 50.0,
                mean_value: 100.0,
            })
            .unwrap();
        assert!(pop < few && few < many && many < 100.0);
        assert!(
            (g.conditional_mean_value(&Spend {
                frequency: 0.0,
                mean_value: 1.0
            })
            .unwrap()
                - pop)
                .abs()
                < 1e-12
        );
    }

    #[test]
    fn clv_discounting_lowers_value() {
        let bg = BgNbdParams {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        };
        let g = GammaGammaParams {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let c = Rfm {
            frequency: 3.0,
            recency: 30.0,
            t: 38.0,
        };
        let flat = customer_lifetime_value(&bg, &g, &c, Some(40.0), 12, 4.35, 0.0).unwrap();
        let disc = customer_lifetime_value(&bg, &g, &c, Some(40.0), 12, 4.35, 0.01).unwrap();
        assert!(flat > disc && disc > 0.0);
        // Undiscounted CLV = E[value] * E[N(52.2 weeks)].
        let want = g
            .conditional_mean_value(&Spend {
                frequency: 3.0,
                mean_value: 40.0,
            })
            .unwrap()
            * bg.conditional_expected(12.0 * 4.35, &c).unwrap();
        assert!((flat - want).abs() < 1e-9);
    }
}
