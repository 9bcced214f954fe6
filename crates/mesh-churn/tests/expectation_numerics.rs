//! BG/NBD and Pareto/NBD conditional expectations and P(alive) against an independent
//! evaluation: numerical integration of each model over its posterior (adaptive
//! Gauss–Kronrod in log space), never the closed forms or `2F1`.
//!
//! BG/NBD, given alive at `T` after `x` repeat purchases: `λ | data ~ Gamma(r+x, α+T)`,
//! `p | data ~ Beta(a, b+x)`, and `E[Y(t) | λ, p] = (1 - e^{-λpt}) / p`; integrating `λ`
//! out leaves `E = ∫ (1 - (1 + pt/(α+T))^{-(r+x)}) / p  Beta(p; a, b+x) dp`.
//! P(alive) is the ratio of the "alive" and "alive + dropped after the last purchase"
//! likelihoods, each a product of a `λ` and a `p` integral.
//!
//! Pareto/NBD: P(alive) = alive / (alive + dead) with
//! alive = `(α+T)^{-(r+x)} (β+T)^{-s}` and
//! dead = `s ∫_{t_x}^{T} (α+τ)^{-(r+x)} (β+τ)^{-(s+1)} dτ` (dropout at `τ`), and
//! `E = P(alive) (r+x)/(α+T) E[(1 - e^{-μt})/μ]`, `μ ~ Gamma(s, β+T)`.
//!
//! The grid is wide on purpose: `x` up to several hundred with `t_x` close to `T`,
//! `T` up to two years (also in days), `a` down to 0.01, horizons to a year and beyond — far outside the 2,357-customer
//! CDNOW sample, where the old `2F1` evaluation broke (issue 16).

use mesh_churn::bgnbd::BgNbdParams;
use mesh_churn::data::Rfm;
use mesh_churn::pareto::ParetoNbdParams;
use proptest::prelude::*;

mod common;
use common::{bg_expected_if_alive_quad, bg_p_alive_quad, ln_add, ln_gamma_integral, ln_integral};

// ---------------------------------------------------------------- Pareto/NBD reference

fn pareto_p_alive_quad(p: &ParetoNbdParams, c: &Rfm) -> f64 {
    let x = c.frequency;
    if c.recency >= c.t {
        return 1.0;
    }
    let alive = -(p.r + x) * (p.alpha + c.t).ln() - p.s * (p.beta + c.t).ln();
    let h = |tau: f64| -(p.r + x) * (p.alpha + tau).ln() - (p.s + 1.0) * (p.beta + tau).ln();
    // Split where the integrand has fallen by e^{-40} so the adaptive rule sees the peak.
    let knee = (p.alpha + c.recency) * (40.0 / (p.r + x + p.s + 1.0)).exp_m1() + c.recency;
    let dead = if knee < c.t {
        ln_add(ln_integral(&h, c.recency, knee), ln_integral(&h, knee, c.t))
    } else {
        ln_integral(&h, c.recency, c.t)
    } + p.s.ln();
    1.0 / (1.0 + (dead - alive).exp())
}

fn pareto_expected_quad(p: &ParetoNbdParams, t: f64, c: &Rfm) -> f64 {
    let rate = p.beta + c.t;
    let g = move |mu: f64| {
        if mu * t < 1e-200 {
            t
        } else {
            -(-mu * t).exp_m1() / mu
        }
    };
    let one = |_: f64| 1.0;
    let time_alive = (ln_gamma_integral(p.s, rate, &g) - ln_gamma_integral(p.s, rate, &one)).exp();
    pareto_p_alive_quad(p, c) * (p.r + c.frequency) / (p.alpha + c.t) * time_alive
}

// ---------------------------------------------------------------- helpers

fn rfm(x: f64, tx: f64, t: f64) -> Rfm {
    Rfm {
        frequency: x,
        recency: tx,
        t,
    }
}

fn rel_err(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-300)
}

/// Parameters in the ranges real fits land in, drawn log-uniformly.
fn bg_params() -> impl Strategy<Value = BgNbdParams> {
    (
        0.05f64.ln()..5f64.ln(),
        0.5f64.ln()..50f64.ln(),
        0.01f64.ln()..5f64.ln(),
        0.1f64.ln()..50f64.ln(),
    )
        .prop_map(|(r, alpha, a, b)| BgNbdParams {
            r: r.exp(),
            alpha: alpha.exp(),
            a: a.exp(),
            b: b.exp(),
        })
}

fn pareto_params() -> impl Strategy<Value = ParetoNbdParams> {
    (
        0.05f64.ln()..5f64.ln(),
        0.5f64.ln()..50f64.ln(),
        0.05f64.ln()..5f64.ln(),
        0.5f64.ln()..50f64.ln(),
    )
        .prop_map(|(r, alpha, s, beta)| ParetoNbdParams {
            r: r.exp(),
            alpha: alpha.exp(),
            s: s.exp(),
            beta: beta.exp(),
        })
}

/// `(x, t_x, T)`: `x` from 0 to several hundred (weighted to the large values the
/// shared sample never has), `T` up to two years, `t_x` mostly close to `T`.
fn customer() -> impl Strategy<Value = Rfm> {
    (
        prop_oneof![0u32..10, 10u32..60, 60u32..600],
        0.0f64..104.0,
        prop_oneof![Just(1.0), 0.9f64..1.0, 0.0f64..1.0],
    )
        .prop_map(|(x, big_t, frac)| {
            let x = f64::from(x);
            let tx = if x == 0.0 { 0.0 } else { big_t * frac };
            rfm(x, tx, big_t)
        })
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn bgnbd_expectation_matches_posterior_integral(
        p in bg_params(), c in customer(), t in 0.5f64..80.0,
    ) {
        let got = p.expected_if_alive(t, c.frequency, c.t).unwrap();
        let want = bg_expected_if_alive_quad(&p, c.frequency, c.t, t);
        prop_assert!(got.is_finite() && got >= 0.0, "{got}");
        prop_assert!(rel_err(got, want) < 1e-8, "{p:?} {c:?} t {t}: {got} vs {want}");
        // The full conditional expectation is that times P(alive).
        let full = p.conditional_expected(t, &c).unwrap();
        let want_full = want * bg_p_alive_quad(&p, &c);
        prop_assert!(
            (full - want_full).abs() <= 1e-8 * want_full + 1e-280,
            "{p:?} {c:?} t {t}: {full} vs {want_full}"
        );
    }

    /// The same in days: T up to two years (730 days), t_x within a few weeks of T,
    /// horizons up to a year, α seven times the weekly range.
    #[test]
    fn bgnbd_expectation_in_days_matches_posterior_integral(
        p in bg_params(),
        x in prop_oneof![0u32..10, 10u32..400],
        big_t in 0.0f64..730.0,
        gap in prop_oneof![Just(0.0), 0.0f64..28.0],
        t in 1.0f64..364.0,
    ) {
        let p = BgNbdParams { alpha: 7.0 * p.alpha, ..p };
        let x = f64::from(x);
        let c = rfm(x, if x > 0.0 { (big_t - gap).max(0.0) } else { 0.0 }, big_t);
        let got = p.conditional_expected(t, &c).unwrap();
        let want = bg_expected_if_alive_quad(&p, x, big_t, t) * bg_p_alive_quad(&p, &c);
        prop_assert!(got.is_finite() && got >= 0.0, "{got}");
        prop_assert!(
            (got - want).abs() <= 1e-8 * want + 1e-280,
            "{p:?} {c:?} t {t}: {got} vs {want}"
        );
    }

    #[test]
    fn bgnbd_p_alive_matches_likelihood_integrals(p in bg_params(), c in customer()) {
        let got = p.p_alive(&c);
        let want = bg_p_alive_quad(&p, &c);
        prop_assert!((got - want).abs() <= 1e-9 * want.max(1e-250), "{p:?} {c:?}: {got} vs {want}");
    }

    #[test]
    fn pareto_p_alive_and_expectation_match_integrals(
        p in pareto_params(), c in customer(), t in 0.5f64..80.0,
    ) {
        let got = p.p_alive(&c).unwrap();
        let want = pareto_p_alive_quad(&p, &c);
        prop_assert!((got - want).abs() <= 1e-8 * want.max(1e-250), "{p:?} {c:?}: {got} vs {want}");
        let e = p.conditional_expected(t, &c).unwrap();
        let want_e = pareto_expected_quad(&p, t, &c);
        prop_assert!((e - want_e).abs() <= 1e-8 * want_e + 1e-280, "{p:?} {c:?} t {t}: {e} vs {want_e}");
    }

    /// Theory: E rises with the horizon and with t_x (only P(alive) depends on it),
    /// and never exceeds the no-dropout expectation (r+x) t / (α+T).
    #[test]
    fn bgnbd_monotone_and_bounded(p in bg_params(), c in customer(), t in 0.5f64..80.0) {
        let e = p.conditional_expected(t, &c).unwrap();
        let longer = p.conditional_expected(1.5 * t, &c).unwrap();
        prop_assert!(longer >= e, "{p:?} {c:?}: E({t}) {e} > E({}) {longer}", 1.5 * t);
        let bound = (p.r + c.frequency) * t / (p.alpha + c.t);
        let alive = p.expected_if_alive(t, c.frequency, c.t).unwrap();
        prop_assert!(alive <= bound * (1.0 + 1e-12), "{alive} > {bound}");
        if c.frequency > 0.0 && c.recency < c.t {
            let later = rfm(c.frequency, 0.5 * (c.recency + c.t), c.t);
            prop_assert!(p.conditional_expected(t, &later).unwrap() >= e);
        }
    }
}

// ---------------------------------------------------------------- fixed points

/// The fitted CDNOW parameters and the customers that broke: ~30+ repeat purchases,
/// `T` of 27-33 weeks so that `z = t/(α+T+t) > 0.5` at the 39-week holdout.
#[test]
fn cdnow_fit_heavy_buyers() {
    let p = BgNbdParams {
        r: 0.2426,
        alpha: 4.4136,
        a: 0.7929,
        b: 2.4259,
    };
    for x in [
        0.0, 1.0, 7.0, 29.0, 30.0, 31.0, 33.0, 45.0, 80.0, 150.0, 300.0,
    ] {
        for big_t in [27.0, 30.0, 33.0, 36.0, 39.0] {
            for frac in [0.5, 0.9, 0.99, 1.0] {
                let c = rfm(x, if x > 0.0 { big_t * frac } else { 0.0 }, big_t);
                for t in [39.0, 52.0] {
                    let got = p.conditional_expected(t, &c).unwrap();
                    let want = bg_expected_if_alive_quad(&p, x, big_t, t) * bg_p_alive_quad(&p, &c);
                    assert!(rel_err(got, want) < 1e-9, "{c:?} t {t}: {got} vs {want}");
                }
            }
        }
    }
    // Two values from an independent 50-digit evaluation of eq. (10) (mpmath), where
    // the old code returned -15.6 and 699.5.
    let got = p
        .conditional_expected(39.0, &rfm(31.0, 30.0, 30.0))
        .unwrap();
    assert!(rel_err(got, 25.378_426_697_023_865) < 1e-10, "{got}");
    let got = p
        .conditional_expected(39.0, &rfm(32.0, 33.0, 33.0))
        .unwrap();
    assert!(rel_err(got, 24.563_308_841_080_648) < 1e-10, "{got}");
}

/// Far outside the data: finite everywhere, and monotone where theory says so.
#[test]
fn extreme_customers_stay_finite_and_monotone() {
    let params = [
        BgNbdParams {
            r: 0.2426,
            alpha: 4.4136,
            a: 0.7929,
            b: 2.4259,
        },
        BgNbdParams {
            r: 5.0,
            alpha: 0.5,
            a: 0.05,
            b: 0.1,
        },
        BgNbdParams {
            r: 0.05,
            alpha: 50.0,
            a: 5.0,
            b: 50.0,
        },
        // a = 1 exactly: eq. (10) is 0/0 there; the limit is finite.
        BgNbdParams {
            r: 0.5,
            alpha: 5.0,
            a: 1.0,
            b: 3.0,
        },
    ];
    for p in params {
        for big_t in [0.0, 1.0, 104.0, 1000.0] {
            let mut last_at_t = 0.0;
            // From x = 1: a customer without repeat purchases cannot have dropped out
            // (dropout follows a purchase), so x = 0 may expect more than x = 1.
            for x in [0.0, 1.0, 10.0, 100.0, 500.0, 2000.0] {
                let c = rfm(x, big_t, big_t);
                let mut last = 0.0;
                for t in [0.01, 1.0, 52.0, 104.0, 1000.0] {
                    let e = p.conditional_expected(t, &c).unwrap();
                    assert!(
                        e.is_finite() && e >= last,
                        "{p:?} {c:?} t {t}: {e} after {last}"
                    );
                    last = e;
                }
                // Bought at T: more purchases, more expected (rate up, dropout risk down).
                let e52 = p.conditional_expected(52.0, &c).unwrap();
                if x > 0.0 {
                    assert!(e52 >= last_at_t, "{p:?} {c:?}: {e52} < {last_at_t}");
                    last_at_t = e52;
                }
                let pa = p.p_alive(&rfm(x, 0.5 * big_t, big_t));
                assert!((0.0..=1.0).contains(&pa), "{pa}");
            }
        }
        // Unconditional expectation: finite and increasing up to 20 years.
        let mut last = 0.0;
        for t in [1.0, 10.0, 100.0, 1000.0] {
            let e = p.expected_repeat(t).unwrap();
            assert!(e.is_finite() && e > last, "{p:?} t {t}: {e}");
            last = e;
        }
    }
    // a = 1 agrees with its neighbours.
    let near = |a: f64| {
        let p = BgNbdParams {
            r: 0.5,
            alpha: 5.0,
            a,
            b: 3.0,
        };
        p.conditional_expected(39.0, &rfm(4.0, 20.0, 30.0)).unwrap()
    };
    assert!(rel_err(near(1.0), near(1.0 + 1e-7)) < 1e-6);
    assert!(rel_err(near(1.0), near(1.0 - 1e-7)) < 1e-6);

    let pareto = ParetoNbdParams {
        r: 0.553,
        alpha: 10.578,
        s: 0.606,
        beta: 11.669,
    };
    let lopsided = ParetoNbdParams {
        r: 0.5,
        alpha: 0.5,
        s: 0.6,
        beta: 50.0,
    };
    let unit_s = ParetoNbdParams {
        r: 0.5,
        alpha: 5.0,
        s: 1.0,
        beta: 10.0,
    };
    for p in [pareto, lopsided, unit_s] {
        for big_t in [1.0, 104.0, 1000.0] {
            for x in [0.0, 1.0, 100.0, 500.0] {
                let mut last_pa = 0.0;
                for frac in [0.0, 0.5, 0.99, 1.0] {
                    let c = rfm(x, if x > 0.0 { frac * big_t } else { 0.0 }, big_t);
                    let pa = p.p_alive(&c).unwrap();
                    let e = p.conditional_expected(52.0, &c).unwrap();
                    assert!(
                        pa.is_finite() && (0.0..=1.0).contains(&pa),
                        "{p:?} {c:?}: {pa}"
                    );
                    assert!(e.is_finite() && e >= 0.0, "{p:?} {c:?}: {e}");
                    if x > 0.0 {
                        assert!(
                            pa >= last_pa * (1.0 - 1e-12),
                            "{p:?} {c:?}: {pa} < {last_pa}"
                        );
                        last_pa = pa;
                    }
                }
            }
        }
    }
}

/// A fixed grid over the corners of real fits (3 values of each parameter, a down to
/// 0.01), x up to 300 with t_x at T or two weeks before, T of 30 and 104 weeks, and
/// horizons of 1 and 52 weeks: 3,888 conditional expectations against the posterior
/// integral, all to 1e-9 (prints the largest relative error).
#[test]
fn corner_grid_matches_posterior_integral() {
    let mut worst = (0.0f64, String::new());
    let mut n = 0;
    for r in [0.05, 0.5, 5.0] {
        for alpha in [0.5, 5.0, 50.0] {
            for a in [0.01, 0.3, 5.0] {
                for b in [0.1, 2.0, 20.0] {
                    let p = BgNbdParams { r, alpha, a, b };
                    for x in [0.0, 1.0, 10.0, 30.0, 100.0, 300.0] {
                        for big_t in [30.0, 104.0] {
                            for gap in [0.0, 2.0] {
                                let c = rfm(x, if x > 0.0 { big_t - gap } else { 0.0 }, big_t);
                                for t in [1.0, 52.0] {
                                    let got = p.conditional_expected(t, &c).unwrap();
                                    let want = bg_expected_if_alive_quad(&p, x, big_t, t)
                                        * bg_p_alive_quad(&p, &c);
                                    assert!(got.is_finite() && got >= 0.0, "{p:?} {c:?}: {got}");
                                    let err = (got - want).abs() / want.max(1e-300);
                                    if err > worst.0 {
                                        worst =
                                            (err, format!("{p:?} {c:?} t {t}: {got} vs {want}"));
                                    }
                                    n += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(worst.0 <= 1e-9, "{}", worst.1);
    println!(
        "corner grid: {n} expectations, max relative error {:.2e} ({})",
        worst.0, worst.1
    );
}
