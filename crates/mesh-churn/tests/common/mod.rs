//! Independent evaluation of the BG/NBD expectations for the integration tests:
//! numerical integration of the model over its posterior (adaptive Gauss–Kronrod in
//! log space), never the closed forms or `2F1`.
//!
//! BG/NBD, given alive at `T` after `x` repeat purchases: `λ | data ~ Gamma(r+x, α+T)`,
//! `p | data ~ Beta(a, b+x)`, and `E[Y(t) | λ, p] = (1 - e^{-λpt}) / p`; integrating `λ`
//! out leaves `E = ∫ (1 - (1 + pt/(α+T))^{-(r+x)}) / p  Beta(p; a, b+x) dp`.
//! P(alive) is the ratio of the "alive" and "alive + dropped after the last purchase"
//! likelihoods, each a product of a `λ` and a `p` integral.
#![allow(dead_code)] // each test crate uses its own subset

use mesh_churn::bgnbd::BgNbdParams;
use mesh_churn::data::Rfm;

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

pub fn gk15(f: &dyn Fn(f64) -> f64, lo: f64, hi: f64) -> (f64, f64) {
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
pub fn integrate(f: &dyn Fn(f64) -> f64, lo: f64, hi: f64, rel_tol: f64) -> f64 {
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
pub fn ln_integral(h: &dyn Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
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
pub fn ln_beta_integral(k: f64, m: f64, g: &dyn Fn(f64) -> f64) -> f64 {
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
pub fn ln_gamma_integral(k: f64, c: f64, g: &dyn Fn(f64) -> f64) -> f64 {
    let h = |u: f64| {
        let l = u.exp();
        k * u - l * c + g(l).ln()
    };
    let mode = (k / c).ln();
    ln_integral(&h, mode - 60.0 / k - 5.0, mode + 5.0 + (60.0 / k).sqrt())
}

pub fn ln_add(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

// ---------------------------------------------------------------- BG/NBD reference

pub fn bg_expected_if_alive_quad(p: &BgNbdParams, x: f64, big_t: f64, t: f64) -> f64 {
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

pub fn bg_p_alive_quad(p: &BgNbdParams, c: &Rfm) -> f64 {
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

/// BG/NBD conditional expectation `E[Y(t) | x, t_x, T]` by quadrature.
pub fn bg_conditional_expected_quad(p: &BgNbdParams, t: f64, c: &Rfm) -> f64 {
    bg_expected_if_alive_quad(p, c.frequency, c.t, t) * bg_p_alive_quad(p, c)
}
