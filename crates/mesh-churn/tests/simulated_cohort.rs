//! A 20,000-customer CDNOW-style cohort simulated from BG/NBD with known parameters,
//! including a segment of heavy buyers with hundreds of repeat purchases (issue 16):
//! with the true parameters the conditional expectation is the exact posterior mean of
//! the holdout count, so it must match the simulated holdout on average in every
//! purchase-frequency group and correlate with it about as well as an oracle that
//! knows each customer's rate, dropout probability and status only through the same
//! kind of expectation allows.

use mesh_churn::bgnbd::BgNbdParams;
use mesh_churn::data::Rfm;
use mesh_churn::metrics::pearson;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};

/// The published CDNOW fit.
const CDNOW: BgNbdParams = BgNbdParams {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

/// Heavy buyers: ~4 purchases a week, rarely dropping out.
const HEAVY: BgNbdParams = BgNbdParams {
    r: 2.0,
    alpha: 0.5,
    a: 0.3,
    b: 20.0,
};

/// Calibration ends at week 39; first purchases are spread over the first 12 weeks.
const CALIBRATION_WEEKS: f64 = 39.0;
const HOLDOUT_WEEKS: f64 = 52.0;

struct Customer {
    params: BgNbdParams,
    rfm: Rfm,
    holdout: f64,
    /// E[holdout | λ, p, alive at T]: what an oracle knowing the latent values expects.
    oracle: f64,
}

fn simulate(params: BgNbdParams, rng: &mut impl Rng) -> Customer {
    let lambda = Gamma::new(params.r, 1.0 / params.alpha)
        .unwrap()
        .sample(rng)
        .max(1e-12);
    let p = Beta::new(params.a, params.b).unwrap().sample(rng);
    let gaps = Exp::new(lambda).unwrap();
    let big_t = CALIBRATION_WEEKS - 12.0 * rng.random::<f64>();
    let end = big_t + HOLDOUT_WEEKS;
    let (mut now, mut x, mut tx, mut holdout, mut alive_at_t) = (0.0, 0.0, 0.0, 0.0, true);
    loop {
        now += gaps.sample(rng);
        if now > end {
            break;
        }
        let dropped = rng.random::<f64>() < p;
        if now <= big_t {
            x += 1.0;
            tx = now;
            alive_at_t = !dropped;
        } else {
            holdout += 1.0;
        }
        if dropped {
            break;
        }
    }
    let oracle = if alive_at_t {
        -(-lambda * p * HOLDOUT_WEEKS).exp_m1() / p
    } else {
        0.0
    };
    Customer {
        params,
        rfm: Rfm {
            frequency: x,
            recency: tx,
            t: big_t,
        },
        holdout,
        oracle,
    }
}

#[test]
fn conditional_expectation_tracks_simulated_holdout() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let customers: Vec<Customer> = (0..20_000)
        .map(|i| simulate(if i % 40 == 0 { HEAVY } else { CDNOW }, &mut rng))
        .collect();
    let expected: Vec<f64> = customers
        .iter()
        .map(|c| {
            c.params
                .conditional_expected(HOLDOUT_WEEKS, &c.rfm)
                .unwrap()
        })
        .collect();
    let actual: Vec<f64> = customers.iter().map(|c| c.holdout).collect();
    let oracle: Vec<f64> = customers.iter().map(|c| c.oracle).collect();
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
