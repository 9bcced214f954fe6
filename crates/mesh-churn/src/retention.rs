//! Retention experiments: deterministic randomized holdout assignment and the lift
//! report (return rate of treated vs holdout with a confidence interval). Pure
//! functions; the caller counts users and returns.
//!
//! Assignment hashes `salt` and the user id with 64-bit FNV-1a followed by the
//! SplitMix64 finaliser: stable across processes, platforms and Rust releases (std's
//! `DefaultHasher` promises none of that), and well mixed in the high bits used for the
//! uniform draw.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{Error, Result};

/// Experiment arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// Receives the retention action.
    Treatment,
    /// Held out from the action (control).
    Holdout,
}

fn fnv1a(bytes: impl IntoIterator<Item = u8>, mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform draw in `[0, 1)` determined by `(salt, user_id)`.
pub fn unit_hash(user_id: &str, salt: &str) -> f64 {
    let h = fnv1a(salt.bytes(), 0xcbf2_9ce4_8422_2325);
    let h = fnv1a(std::iter::once(0u8).chain(user_id.bytes()), h);
    (splitmix64(h) >> 11) as f64 / (1u64 << 53) as f64
}

/// Assigns `user_id` to the holdout with probability `holdout_share`, deterministically.
pub fn assign(user_id: &str, salt: &str, holdout_share: f64) -> Result<Arm> {
    if !(0.0..=1.0).contains(&holdout_share) {
        return Err(Error::InvalidInput(format!(
            "holdout share must be in [0, 1], got {holdout_share}"
        )));
    }
    Ok(if unit_hash(user_id, salt) < holdout_share {
        Arm::Holdout
    } else {
        Arm::Treatment
    })
}

/// Users and returns in one arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmOutcome {
    /// Users assigned.
    pub users: u64,
    /// Users who returned (purchased again) in the measurement window.
    pub returned: u64,
}

impl ArmOutcome {
    fn rate(&self) -> f64 {
        self.returned as f64 / self.users as f64
    }
}

/// Confidence-interval method for the difference of proportions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IntervalMethod {
    /// Wald: `d ± z sqrt(p1 q1/n1 + p2 q2/n2)`.
    Wald,
    /// Newcombe's hybrid score interval (method 10) from Wilson intervals; better
    /// coverage for small arms and rates near 0 or 1.
    Newcombe,
}

/// Lift of treatment over holdout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiftReport {
    /// Treated arm.
    pub treated: ArmOutcome,
    /// Holdout arm.
    pub holdout: ArmOutcome,
    /// Treated return rate.
    pub treated_rate: f64,
    /// Holdout return rate.
    pub holdout_rate: f64,
    /// Absolute lift `treated_rate - holdout_rate`.
    pub difference: f64,
    /// Relative lift `difference / holdout_rate` (NaN when the holdout rate is 0).
    pub relative_lift: f64,
    /// Lower confidence bound of the difference.
    pub ci_low: f64,
    /// Upper confidence bound of the difference.
    pub ci_high: f64,
    /// Confidence level, e.g. 0.95.
    pub confidence: f64,
    /// Interval method.
    pub method: IntervalMethod,
}

fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Lift report with a two-sided confidence interval for the difference in return rates.
pub fn lift(
    treated: ArmOutcome,
    holdout: ArmOutcome,
    confidence: f64,
    method: IntervalMethod,
) -> Result<LiftReport> {
    for (name, arm) in [("treated", treated), ("holdout", holdout)] {
        if arm.users == 0 || arm.returned > arm.users {
            return Err(Error::InvalidInput(format!(
                "{name} arm needs users > 0 and returned <= users, got {arm:?}"
            )));
        }
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::InvalidInput(format!(
            "confidence must be in (0, 1), got {confidence}"
        )));
    }
    let z = Normal::new(0.0, 1.0)
        .map_err(|e| Error::Numerical(e.to_string()))?
        .inverse_cdf(0.5 + confidence / 2.0);
    let (p1, p2) = (treated.rate(), holdout.rate());
    let d = p1 - p2;
    let (low, high) = match method {
        IntervalMethod::Wald => {
            let se = (p1 * (1.0 - p1) / treated.users as f64
                + p2 * (1.0 - p2) / holdout.users as f64)
                .sqrt();
            (d - z * se, d + z * se)
        }
        IntervalMethod::Newcombe => {
            let (l1, u1) = wilson(treated.returned, treated.users, z);
            let (l2, u2) = wilson(holdout.returned, holdout.users, z);
            (
                d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
                d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
            )
        }
    };
    Ok(LiftReport {
        treated,
        holdout,
        treated_rate: p1,
        holdout_rate: p2,
        difference: d,
        relative_lift: if p2 > 0.0 { d / p2 } else { f64::NAN },
        ci_low: low,
        ci_high: high,
        confidence,
        method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_deterministic_and_matches_share() {
        let a = assign("user-42", "spring-2026", 0.1).unwrap();
        assert_eq!(a, assign("user-42", "spring-2026", 0.1).unwrap());
        let n = 20_000;
        let held = (0..n)
            .filter(|i| assign(&format!("u{i}"), "salt", 0.1).unwrap() == Arm::Holdout)
            .count() as f64;
        // 0.1 ± 4.5 standard errors
        assert!((held / n as f64 - 0.1).abs() < 0.0095, "{held}");
        // A different salt reshuffles users.
        let moved = (0..2000)
            .filter(|i| {
                let id = format!("u{i}");
                assign(&id, "a", 0.5).unwrap() != assign(&id, "b", 0.5).unwrap()
            })
            .count();
        assert!((800..1200).contains(&moved), "{moved}");
        assert_eq!(assign("x", "s", 0.0).unwrap(), Arm::Treatment);
        assert_eq!(assign("x", "s", 1.0).unwrap(), Arm::Holdout);
        assert!(assign("x", "s", 1.5).is_err());
    }

    #[test]
    fn newcombe_matches_published_example() {
        // Newcombe (1998), Table II example (h): 56/70 vs 48/80, 95%:
        // difference 0.2, method 10 interval 0.0524 to 0.3339.
        let r = lift(
            ArmOutcome {
                users: 70,
                returned: 56,
            },
            ArmOutcome {
                users: 80,
                returned: 48,
            },
            0.95,
            IntervalMethod::Newcombe,
        )
        .unwrap();
        assert!((r.difference - 0.2).abs() < 1e-12);
        assert!((r.ci_low - 0.0524).abs() < 5e-4, "{r:?}");
        assert!((r.ci_high - 0.3339).abs() < 5e-4, "{r:?}");
        let w = lift(r.treated, r.holdout, 0.95, IntervalMethod::Wald).unwrap();
        // Wald for the same data: 0.2 ± 1.96 * sqrt(.8*.2/70 + .6*.4/80) = (0.0575, 0.3425)
        assert!(
            (w.ci_low - 0.0575).abs() < 5e-4 && (w.ci_high - 0.3425).abs() < 5e-4,
            "{w:?}"
        );
        assert!(lift(
            ArmOutcome {
                users: 0,
                returned: 0
            },
            r.holdout,
            0.95,
            IntervalMethod::Wald
        )
        .is_err());
    }
}
