//! Contextual bandit for choosing one offer per user.
//!
//! Each arm (offer) keeps a Bayesian linear regression of reward on the context:
//! `A = lambda I + sum x x^T`, `b = sum r x`. [`BanditPolicy::Thompson`] samples
//! `theta ~ N(A^-1 b, v^2 A^-1)` per arm and plays the best sample (linear Thompson sampling,
//! Agrawal & Goyal 2013); [`BanditPolicy::LinUcb`] plays the best
//! `x.theta + alpha sqrt(x^T A^-1 x)` (Li et al. 2010). The state is plain vectors, so the
//! service can store it as JSON and reload it; randomness is passed in, never global.

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::{finite, positive, EngageError, Result};
use crate::stats::{backward, cholesky, forward};

/// How to trade exploration against exploitation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum BanditPolicy {
    /// Linear Thompson sampling with posterior scale `v`.
    Thompson {
        /// Multiplies the posterior standard deviation; ~ reward noise s.d.
        scale: f64,
    },
    /// LinUCB with bonus weight `alpha`.
    LinUcb {
        /// Width of the confidence bonus.
        alpha: f64,
    },
}

/// Per-arm sufficient statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    /// Arm name (e.g. "coupon").
    pub name: String,
    /// `lambda I + sum x x^T`, row-major `d x d`.
    pub precision: Vec<f64>,
    /// `sum r x`.
    pub reward_sum: Vec<f64>,
    /// Number of updates.
    pub pulls: u64,
    /// Sum of rewards, for reporting.
    pub total_reward: f64,
}

/// A contextual bandit over named arms with `dim`-dimensional contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextualBandit {
    /// Context dimension.
    pub dim: usize,
    /// Policy.
    pub policy: BanditPolicy,
    /// Arms.
    pub arms: Vec<ArmState>,
}

impl ContextualBandit {
    /// A bandit with ridge prior `lambda` (> 0) on every arm.
    pub fn new(arm_names: &[&str], dim: usize, lambda: f64, policy: BanditPolicy) -> Result<Self> {
        if arm_names.len() < 2 {
            return Err(EngageError::NotEnoughData {
                what: "bandit arms",
                needed: 2,
                got: arm_names.len(),
            });
        }
        if dim == 0 {
            return Err(EngageError::NotEnoughData {
                what: "context dimension",
                needed: 1,
                got: 0,
            });
        }
        positive("bandit ridge lambda", lambda)?;
        match policy {
            BanditPolicy::Thompson { scale } => positive("thompson scale", scale)?,
            BanditPolicy::LinUcb { alpha } => positive("linucb alpha", alpha)?,
        };
        let mut eye = vec![0.0; dim * dim];
        for i in 0..dim {
            eye[i * dim + i] = lambda;
        }
        Ok(Self {
            dim,
            policy,
            arms: arm_names
                .iter()
                .map(|n| ArmState {
                    name: (*n).to_string(),
                    precision: eye.clone(),
                    reward_sum: vec![0.0; dim],
                    pulls: 0,
                    total_reward: 0.0,
                })
                .collect(),
        })
    }

    fn check_context(&self, context: &[f64]) -> Result<()> {
        if context.len() != self.dim {
            return Err(EngageError::DimensionMismatch {
                what: "bandit context",
                expected: self.dim,
                got: context.len(),
            });
        }
        for x in context {
            finite("bandit context feature", *x)?;
        }
        Ok(())
    }

    /// Posterior mean reward of each arm for `context`.
    pub fn expected_rewards(&self, context: &[f64]) -> Result<Vec<f64>> {
        self.check_context(context)?;
        self.arms
            .iter()
            .map(|a| {
                let l = cholesky(&a.precision, self.dim)?;
                let mean = backward(&l, self.dim, &forward(&l, self.dim, &a.reward_sum));
                Ok(dot(&mean, context))
            })
            .collect()
    }

    /// Index of the arm to play for `context`.
    pub fn choose<R: Rng + ?Sized>(&self, context: &[f64], rng: &mut R) -> Result<usize> {
        self.check_context(context)?;
        let d = self.dim;
        let mut best = (0, f64::NEG_INFINITY);
        for (i, a) in self.arms.iter().enumerate() {
            let l = cholesky(&a.precision, d)?;
            let mean = backward(&l, d, &forward(&l, d, &a.reward_sum));
            let score = match self.policy {
                BanditPolicy::Thompson { scale } => {
                    // theta = mean + scale * L^-T z has covariance scale^2 A^-1.
                    let z: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
                    let noise = backward(&l, d, &z);
                    context
                        .iter()
                        .zip(mean.iter().zip(&noise))
                        .map(|(x, (m, n))| x * (m + scale * n))
                        .sum()
                }
                BanditPolicy::LinUcb { alpha } => {
                    // x^T A^-1 x = |L^-1 x|^2.
                    let w = forward(&l, d, context);
                    dot(&mean, context) + alpha * dot(&w, &w).sqrt()
                }
            };
            if score > best.1 {
                best = (i, score);
            }
        }
        Ok(best.0)
    }

    /// Records the reward observed after playing `arm` for `context`.
    pub fn update(&mut self, context: &[f64], arm: usize, reward: f64) -> Result<()> {
        self.check_context(context)?;
        finite("bandit reward", reward)?;
        let len = self.arms.len();
        let a = self.arms.get_mut(arm).ok_or(EngageError::UnknownIndex {
            what: "bandit arm",
            index: arm,
            len,
        })?;
        let d = context.len();
        for i in 0..d {
            for j in 0..d {
                a.precision[i * d + j] += context[i] * context[j];
            }
            a.reward_sum[i] += reward * context[i];
        }
        a.pulls += 1;
        a.total_reward += reward;
        Ok(())
    }
}

impl ContextualBandit {
    /// Adds `reward` to an arm already pulled for `context` (its `x xᵀ` was
    /// counted by an earlier [`update`](Self::update) with reward 0): the
    /// state becomes exactly that of one pull with reward `reward`. A service
    /// that records each offer when made and its conversion when it comes
    /// uses this for the second half; `pulls` is unchanged.
    pub fn add_reward(&mut self, context: &[f64], arm: usize, reward: f64) -> Result<()> {
        self.check_context(context)?;
        finite("bandit reward", reward)?;
        let len = self.arms.len();
        let a = self.arms.get_mut(arm).ok_or(EngageError::UnknownIndex {
            what: "bandit arm",
            index: arm,
            len,
        })?;
        for (r, x) in a.reward_sum.iter_mut().zip(context) {
            *r += reward * x;
        }
        a.total_reward += reward;
        Ok(())
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// At most `max_sends` messages per user in any `window_secs` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyCap {
    /// Messages allowed per window.
    pub max_sends: usize,
    /// Window length in seconds.
    pub window_secs: i64,
}

impl FrequencyCap {
    /// Sends still allowed at `now` (unix seconds) given past send times. Sends at or before
    /// `now - window_secs` have expired; future-dated sends count (clock skew is not a
    /// reason to over-send).
    pub fn remaining(&self, sent_at: &[i64], now: i64) -> usize {
        let start = now.saturating_sub(self.window_secs);
        let recent = sent_at.iter().filter(|t| **t > start).count();
        self.max_sends.saturating_sub(recent)
    }

    /// Whether one more send is allowed at `now`.
    pub fn allows(&self, sent_at: &[i64], now: i64) -> bool {
        self.remaining(sent_at, now) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_pull_plus_a_reward_equals_one_rewarded_pull() {
        let mut split =
            ContextualBandit::new(&["a", "b"], 3, 1.0, BanditPolicy::LinUcb { alpha: 1.0 })
                .unwrap();
        let mut once = split.clone();
        let x = [1.0, 0.3, -2.0];
        split.update(&x, 1, 0.0).unwrap();
        split.add_reward(&x, 1, 1.0).unwrap();
        once.update(&x, 1, 1.0).unwrap();
        assert_eq!(split, once);
        assert!(split.add_reward(&x, 2, 1.0).is_err());
        assert!(split.add_reward(&[1.0], 0, 1.0).is_err());
    }
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn three_arm_run(policy: BanditPolicy) -> (ContextualBandit, usize) {
        // Arm 2 is best in every context.
        let means = [0.2, 0.35, 0.5];
        let mut b = ContextualBandit::new(&["a", "b", "c"], 2, 1.0, policy).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut best_late = 0;
        for t in 0..3000 {
            let ctx = [1.0, rng.random::<f64>()];
            let arm = b.choose(&ctx, &mut rng).unwrap();
            let r = f64::from(u8::from(rng.random::<f64>() < means[arm]));
            b.update(&ctx, arm, r).unwrap();
            if t >= 2700 && arm == 2 {
                best_late += 1;
            }
        }
        (b, best_late)
    }

    #[test]
    fn thompson_picks_the_best_of_three_arms() {
        let (b, late) = three_arm_run(BanditPolicy::Thompson { scale: 0.5 });
        assert!(late > 250, "best arm played {late}/300 late rounds");
        assert!(b.arms[2].pulls > b.arms[0].pulls + b.arms[1].pulls);
        let json = serde_json::to_string(&b).unwrap();
        let back: ContextualBandit = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn linucb_picks_the_best_of_three_arms() {
        let (_, late) = three_arm_run(BanditPolicy::LinUcb { alpha: 0.5 });
        assert!(late > 250, "best arm played {late}/300 late rounds");
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let mut b = ContextualBandit::new(&["a", "b"], 2, 1.0, BanditPolicy::LinUcb { alpha: 1.0 })
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(b.choose(&[1.0], &mut rng).is_err());
        let err = b.update(&[1.0, f64::NAN], 0, 1.0).unwrap_err();
        assert!(err.to_string().contains("context"), "{err}");
        assert!(b.update(&[1.0, 0.0], 5, 1.0).is_err());
        assert!(
            ContextualBandit::new(&["a"], 2, 1.0, BanditPolicy::LinUcb { alpha: 1.0 }).is_err()
        );
        // Large but finite contexts keep the state usable and the estimates finite.
        b.update(&[1e6, -1e6], 0, 1e10).unwrap();
        assert!(b.choose(&[1.0, 1.0], &mut rng).is_ok());
        assert!(b
            .expected_rewards(&[1.0, 1.0])
            .unwrap()
            .iter()
            .all(|r| r.is_finite()));
    }

    #[test]
    fn frequency_cap_counts_only_the_window() {
        let cap = FrequencyCap {
            max_sends: 2,
            window_secs: 100,
        };
        assert!(cap.allows(&[], 1000));
        assert!(cap.allows(&[950], 1000));
        assert!(!cap.allows(&[950, 990], 1000));
        assert!(cap.allows(&[900, 990], 1000), "900 is exactly a window ago");
        assert_eq!(cap.remaining(&[10, 20, 30], 1000), 2);
    }
}
