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
//! `T` up to two years, horizons to a year and beyond — far outside the 2,357-customer
//! CDNOW sample, where the old `2F1` evaluation broke (issue 16).

use mesh_churn::bgnbd::BgNbdParams;
use mesh_churn::data::Rfm;
use mesh_churn::pareto::ParetoNbdParams;
use proptest::prelude::*;

// ---------------------------------------------------------------- quadrature

/// Gauss–Kronrod 7/15 nodes and weights on [-1, 1] (positive half, centre first).
const XGK: [f64; 8] = [
    0.991_455_371_120_812_6,
    0.949_107_912_342_758_5,
    0.864_864_423_359_769_1,
    0.741_531_185_599_394_4,
    0.586_087_235_467_691_1,
    0.405_845_151_377_397_2,
    0.207_784_955_007_898_5,
    0.0,
];
const WGK: [f64; 8] = [
    0.022_935_322_010_529_22,
    0.063_092_092_629_978_55,
    0.104_790_010_322_250_2,
    0.140_653_259_715_525_9,
    0.169_004_726_639_267_9,
    0.190_350_578_064_785_4,
    0.204_432_940_075_298_9,
    0.209_482_141_084_727_8,
];
const WG: [f64; 4] = [
    0.129_484_966_168_869_7,
    0.279_705_391_489_276_7,
    0.381_830_050_505_118_9,
    0.417_959_183_673_469_4,
];

fn gk15(f: &dyn Fn(f64) -> f64, lo: f64, hi: f64) -> (f64, f64) {
    let (c, h) = (0.5 * (lo + hi), 0.5 * (hi - lo));
    let fc = f(c);
    let mut k = WGK[7] * fc;
    let mut g = WG[3] * fc;
    for j in 0..7 {
        let (f1, f2) = (f(c - h * XGK[j]), f(c + h * XGK[j]));
        k += WGK[j] * (f1 + f2);
        if j % 2 == 1 {
            g += WG[j / 2] * (f1 + f2);
        }
    }
    (k * h, ((k - g) * h).abs())
}

/// Globally adaptive Gauss–Kronrod: `∫_lo^hi f` to a relative tolerance (bisects the
/// interval with the largest error estimate; at most 4,000 intervals).
fn integrate(f: &dyn Fn(f64) -> f64, lo: f64, hi: f64, rel_tol: f64) -> f64 {
    let (v, e) = gk15(f, lo, hi);
    let mut parts = vec![(lo, hi, v, e)];
    for _ in 0..4000 {
        let total: f64 = parts.iter().map(|p| p.2).sum();
        let err: f64 = parts.iter().map(|p| p.3).sum();
        if err <= rel_tol * total.abs() {
            break;
        }
        let worst = (0..parts.len())
            .max_by(|&i, &j| parts[i].3.total_cmp(&parts[j].3))
            .expect("at least one interval");
        let (a, b, _, _) = parts.swap_remove(worst);
        let m = 0.5 * (a + b);
        let (v1, e1) = gk15(f, a, m);
        let (v2, e2) = gk15(f, m, b);
        parts.push((a, m, v1, e1));
        parts.push((m, b, v2, e2));
    }
    parts.iter().map(|p| p.2).sum()
}

/// `ln ∫_lo^hi exp(h(u)) du`: `h` is shifted by its maximum on a grid so nothing
/// under- or overflows, then integrated to a relative tolerance of 1e-13.
fn ln_integral(h: &dyn Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    let n = 400;
    let peak = (0..=n)
        .map(|i| h(lo + (hi - lo) * i as f64 / n as f64))
        .fold(f64::NEG_INFINITY, f64::max);
    let f = |u: f64| (h(u) - peak).exp();
    peak + integrate(&f, lo, hi, 1e-13).ln()
}

/// `ln ∫_0^1 p^{k-1} (1-p)^{m-1} g(p) dp` for `k, m > 0` and `g > 0` smooth: `p = e^s`
/// on `(0, 1/2]` and `1 - p = e^v` on `[1/2, 1)`, so both end-point singularities become
/// exponential tails.
fn ln_beta_integral(k: f64, m: f64, g: &dyn Fn(f64) -> f64) -> f64 {
    let half = 0.5f64.ln();
    // Tails: e^{k s} and e^{m v} below 1e-25 of their value at 1/2.
    let lower = |s: f64| {
        let p = s.exp();
        k * s + (m - 1.0) * (-p).ln_1p() + g(p).ln()
    };
    let upper = |v: f64| {
        let q = v.exp();
        m * v + (k - 1.0) * (-q).ln_1p() + g(1.0 - q).ln()
    };
    let s_lo = (k.ln() - (k + m).ln()).min(half) - 58.0 / k;
    let v_lo = (m.ln() - (k + m).ln()).min(half) - 58.0 / m;
    ln_add(
        ln_integral(&lower, s_lo, half),
        ln_integral(&upper, v_lo, half),
    )
}

/// `ln ∫_0^∞ λ^{k-1} e^{-λ c} g(λ) dλ` in `u = ln λ`.
fn ln_gamma_integral(k: f64, c: f64, g: &dyn Fn(f64) -> f64) -> f64 {
    let h = |u: f64| {
        let l = u.exp();
        k * u - l * c + g(l).ln()
    };
    let mode = (k / c).ln();
    ln_integral(&h, mode - 60.0 / k - 5.0, mode + 5.0 + (60.0 / k).sqrt())
}

fn ln_add(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

// ---------------------------------------------------------------- BG/NBD reference

fn bg_expected_if_alive_quad(p: &BgNbdParams, x: f64, big_t: f64, t: f64) -> f64 {
    let tau = t / (p.alpha + big_t);
    let shape = p.r + x;
    // (1 - (1 + p τ)^{-(r+x)}) / p, without cancellation for small p (and its limit
    // (r+x) τ where p underflows).
    let g = move |q: f64| {
        if q * tau < 1e-200 {
            shape * tau
        } else {
            -(-shape * (q * tau).ln_1p()).exp_m1() / q
        }
    };
    let one = |_: f64| 1.0;
    (ln_beta_integral(p.a, p.b + x, &g) - ln_beta_integral(p.a, p.b + x, &one)).exp()
}

fn bg_p_alive_quad(p: &BgNbdParams, c: &Rfm) -> f64 {
    let x = c.frequency;
    if x == 0.0 {
        return 1.0;
    }
    let one = |_: f64| 1.0;
    let alive =
        ln_gamma_integral(p.r + x, p.alpha + c.t, &one) + ln_beta_integral(p.a, p.b + x, &one);
    let dropped = ln_gamma_integral(p.r + x, p.alpha + c.recency, &one)
        + ln_beta_integral(p.a + 1.0, p.b + x - 1.0, &one);
    1.0 / (1.0 + (dropped - alive).exp())
}

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
        0.05f64.ln()..5f64.ln(),
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
