//! Seeded synthetic cohorts drawn from BG/NBD, for checks the 2,357-customer CDNOW
//! sample cannot make.
//!
//! The full CDNOW cohort (~23,000 customers, `CDNOW_master.txt`) is not in the
//! repository, and the sample has few customers with tens of repeat purchases and a
//! recent last purchase — the region where the old conditional expectation broke
//! (issue 16). [`cdnow_like`] describes a cohort of that size: CDNOW's published fit
//! for most customers plus segments of frequent buyers, first purchases spread over the
//! first 12 weeks, a 39-week calibration period and a 39-week holdout. [`simulate`]
//! draws it with a ChaCha generator, so a seed always gives the same customers.
//!
//! Time is continuous (weeks); the real log counts same-day purchases once, which
//! matters little at these rates.

use chrono::{Days, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};

use crate::bgnbd::BgNbdParams;
use crate::data::{CustomerHistory, Purchase, PurchaseLog, Rfm, DAYS_PER_WEEK};
use crate::error::{Error, Result};

/// CDNOW's published BG/NBD fit (Fader, Hardie & Lee 2005), in weeks.
pub const CDNOW_FIT: BgNbdParams = BgNbdParams {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

/// One segment of a synthetic cohort: a share of the customers and the BG/NBD they are
/// drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Fraction of the customers (the shares are normalised).
    pub share: f64,
    /// Parameters of the segment's purchase-rate gamma and dropout beta.
    pub params: BgNbdParams,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortSpec {
    /// Number of customers.
    pub customers: usize,
    /// Customer segments.
    pub segments: Vec<Segment>,
    /// First purchases are uniform on `[0, acquisition_weeks]`.
    pub acquisition_weeks: f64,
    /// The calibration period ends this many weeks after the cohort starts.
    pub calibration_weeks: f64,
    /// Length of the holdout period after the calibration period.
    pub holdout_weeks: f64,
    /// Seed of the ChaCha8 generator.
    pub seed: u64,
}

/// One simulated customer.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCustomer {
    /// Index of the segment the customer was drawn from.
    pub segment: usize,
    /// Calibration summary `(x, t_x, T)`.
    pub rfm: Rfm,
    /// Repeat transactions in the holdout period.
    pub holdout: f64,
    /// The latent purchase rate.
    pub lambda: f64,
    /// The latent dropout probability.
    pub p: f64,
    /// Whether the customer is still alive at the end of the calibration period.
    pub alive_at_t: bool,
    /// Times of the repeat purchases (calibration and holdout), in weeks after the
    /// first purchase, which was `calibration_weeks - T` weeks after the cohort start.
    pub repeat_times: Vec<f64>,
}

/// A cohort shaped like the full CDNOW one: 21,000 customers, 39 + 39 weeks, first
/// purchases in the first 12 weeks. 95% follow CDNOW's fit; 5% buy about twice a week
/// (`r = 3`, `α = 1.5`) with CDNOW's dropout beta, so that over a hundred customers
/// (those with a small dropout probability) have 30 to a few hundred repeat purchases
/// with recency close to `T`, while a BG/NBD fit keeps CDNOW's dropout shape
/// (`a ≈ 0.8`, `b ≈ 2.3` for seed 16) — the region where the old evaluation broke.
pub fn cdnow_like(seed: u64) -> CohortSpec {
    CohortSpec {
        customers: 21_000,
        segments: vec![
            Segment {
                share: 0.95,
                params: CDNOW_FIT,
            },
            Segment {
                share: 0.05,
                params: BgNbdParams {
                    r: 3.0,
                    alpha: 1.5,
                    ..CDNOW_FIT
                },
            },
        ],
        acquisition_weeks: 12.0,
        calibration_weeks: 39.0,
        holdout_weeks: 39.0,
        seed,
    }
}

/// Draws the cohort described by `spec`.
pub fn simulate(spec: &CohortSpec) -> Result<Vec<SimCustomer>> {
    let total_share: f64 = spec.segments.iter().map(|s| s.share).sum();
    let valid = !spec.segments.is_empty()
        && total_share > 0.0
        && spec.segments.iter().all(|s| s.share >= 0.0)
        && spec.acquisition_weeks >= 0.0
        && spec.calibration_weeks > spec.acquisition_weeks
        && spec.holdout_weeks >= 0.0;
    if !valid {
        return Err(Error::InvalidInput(format!(
            "cohort spec needs segments with positive total share and \
             calibration_weeks > acquisition_weeks >= 0, holdout_weeks >= 0: {spec:?}"
        )));
    }
    let mut draws = Vec::with_capacity(spec.segments.len());
    for s in &spec.segments {
        let p = s.params;
        let bad = |e: &dyn std::fmt::Display| {
            Error::InvalidInput(format!("segment parameters {p:?}: {e}"))
        };
        let rate = Gamma::new(p.r, 1.0 / p.alpha).map_err(|e| bad(&e))?;
        let drop = Beta::new(p.a, p.b).map_err(|e| bad(&e))?;
        draws.push((rate, drop));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
    let mut out = Vec::with_capacity(spec.customers);
    for _ in 0..spec.customers {
        let mut u = rng.random::<f64>() * total_share;
        let segment = spec
            .segments
            .iter()
            .position(|s| {
                u -= s.share;
                u < 0.0
            })
            .unwrap_or(spec.segments.len() - 1);
        let (rate, drop) = &draws[segment];
        let lambda = rate.sample(&mut rng).max(1e-12);
        let p = drop.sample(&mut rng);
        let big_t = spec.calibration_weeks - spec.acquisition_weeks * rng.random::<f64>();
        out.push(customer(
            segment,
            lambda,
            p,
            big_t,
            spec.holdout_weeks,
            &mut rng,
        ));
    }
    Ok(out)
}

/// Purchases after the first at rate `lambda` until a dropout (probability `p` right
/// after each purchase) or the end of the holdout.
fn customer(
    segment: usize,
    lambda: f64,
    p: f64,
    big_t: f64,
    holdout_weeks: f64,
    rng: &mut impl Rng,
) -> SimCustomer {
    let gaps = Exp::new(lambda).expect("lambda is positive");
    let end = big_t + holdout_weeks;
    let (mut now, mut x, mut tx, mut holdout, mut alive_at_t) = (0.0, 0.0, 0.0, 0.0, true);
    let mut repeat_times = Vec::new();
    loop {
        now += gaps.sample(rng);
        if now > end {
            break;
        }
        repeat_times.push(now);
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
    SimCustomer {
        segment,
        rfm: Rfm {
            frequency: x,
            recency: tx,
            t: big_t,
        },
        holdout,
        lambda,
        p,
        alive_at_t,
        repeat_times,
    }
}

/// The cohort as a purchase log in days, the input of `mesh eval churn`: customer
/// `i` is id `S00001`..., the cohort starts on `start`, purchases fall on day
/// `floor(7 × weeks since start)`, and same-day purchases merge into one transaction
/// (as CDNOW counts them, so heavy buyers lose a few). Each transaction buys one item;
/// spend is Gamma-Gamma-like (a per-customer mean around 35, gamma spread around it),
/// drawn from a second generator seeded from `spec.seed` so the purchase times are
/// those of [`simulate`].
pub fn purchase_log(spec: &CohortSpec, cohort: &[SimCustomer], start: NaiveDate) -> PurchaseLog {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5eed_5e11);
    let mean_spend = Gamma::new(3.0, 12.0).expect("valid gamma");
    let mut lines = 0;
    let customers = cohort
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let first = spec.calibration_weeks - c.rfm.t;
            let nu: f64 = mean_spend.sample(&mut rng);
            let spend = Gamma::new(4.0, nu / 4.0).expect("valid gamma");
            let mut purchases: Vec<Purchase> = Vec::new();
            for w in std::iter::once(0.0).chain(c.repeat_times.iter().copied()) {
                // Whole days since the start; weeks are exact multiples of 7 days.
                let day = ((first + w) * DAYS_PER_WEEK).floor() as u64;
                let day = start + Days::new(day);
                let amount = spend.sample(&mut rng);
                lines += 1;
                match purchases.last_mut() {
                    Some(last) if last.day == day => {
                        last.quantity += 1.0;
                        last.amount += amount;
                    }
                    _ => purchases.push(Purchase {
                        day,
                        quantity: 1.0,
                        amount,
                    }),
                }
            }
            CustomerHistory {
                id: format!("S{:05}", i + 1),
                purchases,
            }
        })
        .collect();
    PurchaseLog { customers, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_shaped_like_cdnow() {
        let mut spec = cdnow_like(7);
        spec.customers = 3000;
        let a = simulate(&spec).unwrap();
        assert_eq!(a, simulate(&spec).unwrap());
        for c in &a {
            c.rfm.validate().unwrap();
            assert!((27.0..=39.0).contains(&c.rfm.t), "{c:?}");
        }
        // Mostly CDNOW customers, most of whom never buy again in the calibration period.
        let cdnow = a.iter().filter(|c| c.segment == 0).count() as f64 / 3000.0;
        assert!((cdnow - 0.95).abs() < 0.02, "{cdnow}");
        let zeros = a.iter().filter(|c| c.rfm.frequency == 0.0).count() as f64 / 3000.0;
        assert!(zeros > 0.4, "{zeros}");
        assert!(a.iter().any(|c| c.rfm.frequency >= 30.0));
        // As a purchase log: one history per customer, repeat counts never above the
        // continuous ones (same-day purchases merge), calibration ends on day 273.
        let start = NaiveDate::from_ymd_opt(1997, 1, 1).unwrap();
        let log = purchase_log(&spec, &a, start);
        assert_eq!(log.customers.len(), a.len());
        let end = NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
        for (h, c) in log.customers.iter().zip(&a) {
            let r = h
                .rfm(end)
                .expect("first purchase in the calibration period");
            assert!(r.frequency <= c.rfm.frequency, "{r:?} {:?}", c.rfm);
            assert!(
                (r.t - c.rfm.t).abs() <= 1.0 / 7.0 + 1e-9,
                "{r:?} {:?}",
                c.rfm
            );
        }
        assert!(simulate(&CohortSpec {
            segments: vec![],
            ..spec
        })
        .is_err());
    }
}
