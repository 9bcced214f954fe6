//! A 20,000-customer CDNOW-style cohort simulated from BG/NBD with known parameters,
//! including a segment of heavy buyers with hundreds of repeat purchases (issue 16):
//! with the true parameters the conditional expectation is the exact posterior mean of
//! the holdout count, so it must match the simulated holdout on average in every
//! purchase-frequency group and correlate with it about as well as an oracle that
//! knows each customer's rate, dropout probability and status only through the same
//! kind of expectation allows.

use mesh_churn::bgnbd::{self, BgNbdParams};
use mesh_churn::metrics::pearson;
use mesh_churn::sim::{cdnow_like, simulate, CohortSpec, Segment, SimCustomer, CDNOW_FIT};

mod common;

/// Heavy buyers: ~4 purchases a week, rarely dropping out.
const HEAVY: BgNbdParams = BgNbdParams {
    r: 2.0,
    alpha: 0.5,
    a: 0.3,
    b: 20.0,
};

const HOLDOUT_WEEKS: f64 = 52.0;

/// E[holdout | λ, p, alive at T]: what an oracle knowing the latent values expects.
fn oracle(c: &SimCustomer) -> f64 {
    if c.alive_at_t {
        -(-c.lambda * c.p * HOLDOUT_WEEKS).exp_m1() / c.p
    } else {
        0.0
    }
}

#[test]
fn conditional_expectation_tracks_simulated_holdout() {
    let segments = [CDNOW_FIT, HEAVY];
    let spec = CohortSpec {
        customers: 20_000,
        segments: vec![
            Segment {
                share: 0.975,
                params: CDNOW_FIT,
            },
            Segment {
                share: 0.025,
                params: HEAVY,
            },
        ],
        acquisition_weeks: 12.0,
        calibration_weeks: 39.0,
        holdout_weeks: HOLDOUT_WEEKS,
        seed: 16,
    };
    let customers = simulate(&spec).unwrap();
    let expected: Vec<f64> = customers
        .iter()
        .map(|c| {
            segments[c.segment]
                .conditional_expected(HOLDOUT_WEEKS, &c.rfm)
                .unwrap()
        })
        .collect();
    let actual: Vec<f64> = customers.iter().map(|c| c.holdout).collect();
    let oracle: Vec<f64> = customers.iter().map(oracle).collect();
    let max_x = customers
        .iter()
        .map(|c| c.rfm.frequency)
        .fold(0.0, f64::max);
    let many = customers
        .iter()
        .filter(|c| c.rfm.frequency >= 100.0)
        .count();
    assert!(
        max_x >= 300.0 && many >= 100,
        "max x {max_x}, {many} with x >= 100"
    );
    assert!(expected.iter().all(|e| e.is_finite() && *e >= 0.0));

    // Per frequency group, the mean expectation is the mean holdout count up to
    // sampling noise (a few standard errors of the group mean).
    for (lo, hi) in [
        (0.0, 1.0),
        (1.0, 3.0),
        (3.0, 10.0),
        (10.0, 30.0),
        (30.0, 100.0),
        (100.0, 200.0),
        (200.0, f64::INFINITY),
    ] {
        let idx: Vec<usize> = (0..customers.len())
            .filter(|&i| (lo..hi).contains(&customers[i].rfm.frequency))
            .collect();
        let n = idx.len() as f64;
        assert!(n >= 30.0, "x in [{lo}, {hi}): only {n} customers");
        let mean = |v: &[f64]| idx.iter().map(|&i| v[i]).sum::<f64>() / n;
        let (m_e, m_a) = (mean(&expected), mean(&actual));
        let var = idx
            .iter()
            .map(|&i| (actual[i] - expected[i]).powi(2))
            .sum::<f64>()
            / n;
        let se = (var / n).sqrt();
        assert!(
            (m_e - m_a).abs() <= 4.0 * se + 0.02 * m_a,
            "x in [{lo}, {hi}) ({n} customers): expected {m_e:.3}, actual {m_a:.3}, se {se:.3}"
        );
    }
    let (sum_e, sum_a): (f64, f64) = (expected.iter().sum(), actual.iter().sum());
    assert!(
        (sum_e / sum_a - 1.0).abs() < 0.03,
        "total expected {sum_e:.0} vs actual {sum_a:.0}"
    );

    // The posterior mean correlates with the outcome nearly as well as the oracle's
    // latent-value expectation (it can only be less informative).
    let corr = pearson(&expected, &actual).unwrap();
    let corr_oracle = pearson(&oracle, &actual).unwrap();
    assert!(
        corr > 0.9 * corr_oracle && corr > 0.8,
        "corr {corr:.3}, oracle {corr_oracle:.3}"
    );
    println!(
        "simulated cohort: max x {max_x}, {many} with x >= 100, total expected {sum_e:.0} vs actual {sum_a:.0}, corr {corr:.4} (oracle {corr_oracle:.4})"
    );
}

/// The issue-16 setting: BG/NBD *fitted* to a 21,000-customer CDNOW-like cohort with a
/// heavy-buyer mix (a misspecified fit, as on real data), 39-week holdout. The fitted
/// model's conditional expectations must match the independent posterior integration
/// for the heavy buyers that broke the old code and for a spread of the others, and
/// must track the holdout (0.877 here, as with Python `lifetimes`; the code before the
/// fix gave -0.10, with 20 negative expectations).
#[test]
fn fitted_cohort_expectations_match_integration() {
    let spec = cdnow_like(16);
    let cohort = simulate(&spec).unwrap();
    let rfm: Vec<_> = cohort.iter().map(|c| c.rfm).collect();
    let fit = bgnbd::fit(&rfm).unwrap();
    let p = fit.params;
    let expected: Vec<f64> = rfm
        .iter()
        .map(|c| p.conditional_expected(spec.holdout_weeks, c).unwrap())
        .collect();
    assert!(expected.iter().all(|e| e.is_finite() && *e >= 0.0));

    let heavy: Vec<usize> = (0..rfm.len())
        .filter(|&i| rfm[i].frequency >= 20.0)
        .collect();
    assert!(heavy.len() >= 150, "only {} with x >= 20", heavy.len());
    let mut worst = 0.0f64;
    for i in heavy.iter().copied().chain((0..rfm.len()).step_by(97)) {
        let want = common::bg_conditional_expected_quad(&p, spec.holdout_weeks, &rfm[i]);
        let err = (expected[i] - want).abs() / want.max(1e-300);
        assert!(err <= 1e-8, "{p:?} {:?}: {} vs {want}", rfm[i], expected[i]);
        worst = worst.max(err);
    }

    let actual: Vec<f64> = cohort.iter().map(|c| c.holdout).collect();
    let corr = pearson(&expected, &actual).unwrap();
    let (sum_e, sum_a): (f64, f64) = (expected.iter().sum(), actual.iter().sum());
    assert!(corr > 0.8, "corr {corr}");
    assert!((sum_e / sum_a - 1.0).abs() < 0.2, "{sum_e} vs {sum_a}");
    println!(
        "fitted cohort: {p:?}, {} with x >= 20, max rel err vs integration {worst:.2e}, \
         total expected {sum_e:.0} vs actual {sum_a:.0}, corr {corr:.4}",
        heavy.len()
    );
}
