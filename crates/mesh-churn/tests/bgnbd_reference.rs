//! BG/NBD conditional expectation and P(alive) against a table of 392 values of eq. (10)
//! computed once at 60 digits with mpmath (`tests/data/gen_bgnbd_reference.py`; the
//! Python `lifetimes` package agrees with the table to 9e-13 on every row).
//!
//! The grid is the one that broke the old `2F1` evaluation (issue 16): `x` from 0 to
//! 300 with `t_x` at or just before `T`, `T` up to 104 weeks (730 in days, with α
//! rescaled), horizons up to 52 weeks (364 days), and parameters at the corners of
//! real fits (r 0.05–5, α 0.5–350, a 0.01–5, b 0.1–20, a = 1 exactly). The code before
//! the fix returned errors on 54 of these rows and was off by up to a factor 1e5.

// The table keeps mpmath's 17 significant digits.
#[allow(clippy::excessive_precision)]
#[rustfmt::skip] // one row a line, as generated
#[path = "data/bgnbd_mpmath.rs"]
mod table;

use mesh_churn::bgnbd::BgNbdParams;
use mesh_churn::data::Rfm;

#[test]
fn conditional_expectation_matches_mpmath_table() {
    let (mut worst_e, mut worst_p) = (0.0f64, 0.0f64);
    for row in table::ROWS {
        let [r, alpha, a, b, x, t_x, big_t, t, want_e, want_p] = row;
        let p = BgNbdParams { r, alpha, a, b };
        let c = Rfm {
            frequency: x,
            recency: t_x,
            t: big_t,
        };
        let e = p.conditional_expected(t, &c).unwrap();
        let pa = p.p_alive(&c);
        assert!(e.is_finite() && e > 0.0, "{row:?}: {e}");
        let (err_e, err_p) = ((e - want_e).abs() / want_e, (pa - want_p).abs() / want_p);
        assert!(err_e <= 1e-10, "{row:?}: E {e} vs {want_e} ({err_e:.2e})");
        assert!(
            err_p <= 1e-13,
            "{row:?}: P(alive) {pa} vs {want_p} ({err_p:.2e})"
        );
        worst_e = worst_e.max(err_e);
        worst_p = worst_p.max(err_p);
    }
    println!(
        "{} rows: max relative error E {worst_e:.2e}, P(alive) {worst_p:.2e}",
        table::ROWS.len()
    );
}

/// Far outside the data: 300 repeat purchases in two years, the last one today.
#[test]
fn three_hundred_purchases_bought_today() {
    let p = BgNbdParams {
        r: 0.2426,
        alpha: 4.4136,
        a: 0.7929,
        b: 2.4259,
    };
    let c = Rfm {
        frequency: 300.0,
        recency: 104.0,
        t: 104.0,
    };
    let row = table::ROWS
        .iter()
        .find(|r| r[..8] == [p.r, p.alpha, p.a, p.b, 300.0, 104.0, 104.0, 52.0])
        .expect("row in table");
    let e = p.conditional_expected(52.0, &c).unwrap();
    assert!((e - row[8]).abs() <= 1e-10 * row[8], "{e} vs {}", row[8]);
}
