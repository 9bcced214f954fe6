//! Budget split across ad campaigns by Thompson sampling on return on ad spend.

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{finite, non_negative, positive, EngageError, Result};

/// Posterior state of one ad campaign's ROAS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoasStats {
    /// Total spend observed.
    pub spend: f64,
    /// Total revenue observed.
    pub revenue: f64,
    /// Sum of revenue^2 / spend, for the noise estimate.
    pub revenue_sq_over_spend: f64,
    /// Updates.
    pub updates: u64,
}

/// Splits a budget across campaigns by Thompson sampling (probability matching) on ROAS.
///
/// Model: revenue from spend `s` is `N(roas * s, sigma2 * s)`, i.e. each unit of spend
/// returns independently. With a normal prior the posterior of ROAS depends only on total
/// spend and revenue; `sigma2` is re-estimated from the residuals once there is data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetBandit {
    /// Prior mean ROAS.
    pub prior_mean: f64,
    /// Prior variance of ROAS.
    pub prior_var: f64,
    /// Noise variance per unit spend before data says otherwise.
    pub prior_sigma2: f64,
    /// Minimum share every campaign keeps (keeps learning alive), `< 1 / campaigns`.
    pub min_share: f64,
    /// Posterior draws per allocation.
    pub draws: usize,
    /// Per-campaign statistics.
    pub campaigns: Vec<RoasStats>,
}

impl BudgetBandit {
    /// A bandit over `campaigns` campaigns.
    pub fn new(campaigns: usize, prior_mean: f64, prior_var: f64, min_share: f64) -> Result<Self> {
        if campaigns < 2 {
            return Err(EngageError::NotEnoughData {
                what: "budget campaigns",
                needed: 2,
                got: campaigns,
            });
        }
        finite("prior roas", prior_mean)?;
        positive("prior roas variance", prior_var)?;
        non_negative("min share", min_share)?;
        if min_share * campaigns as f64 >= 1.0 {
            return Err(EngageError::OutOfRange {
                what: "min share",
                expected: "below 1 / number of campaigns",
                value: min_share,
            });
        }
        Ok(Self {
            prior_mean,
            prior_var,
            prior_sigma2: 10.0,
            min_share,
            draws: 200,
            campaigns: vec![RoasStats::default(); campaigns],
        })
    }

    fn sigma2(&self) -> f64 {
        let (mut rss, mut n) = (0.0, 0.0);
        for c in &self.campaigns {
            if c.spend > 0.0 && c.updates > 1 {
                let th = c.revenue / c.spend;
                rss +=
                    (c.revenue_sq_over_spend - 2.0 * th * c.revenue + th * th * c.spend).max(0.0);
                n += (c.updates - 1) as f64;
            }
        }
        if n >= 5.0 {
            (rss / n).max(1e-9)
        } else {
            self.prior_sigma2
        }
    }

    /// Posterior mean and variance of each campaign's ROAS.
    pub fn posterior(&self) -> Vec<(f64, f64)> {
        let s2 = self.sigma2();
        self.campaigns
            .iter()
            .map(|c| {
                let prec = 1.0 / self.prior_var + c.spend / s2;
                (
                    (self.prior_mean / self.prior_var + c.revenue / s2) / prec,
                    1.0 / prec,
                )
            })
            .collect()
    }

    /// Spend per campaign for `budget`: each gets the posterior probability that it has
    /// the highest ROAS, floored at `min_share`.
    pub fn allocate<R: Rng + ?Sized>(&self, budget: f64, rng: &mut R) -> Result<Vec<f64>> {
        non_negative("budget", budget)?;
        let post = self.posterior();
        let k = post.len();
        let mut wins = vec![0usize; k];
        let std = Normal::new(0.0, 1.0).expect("valid normal");
        for _ in 0..self.draws.max(1) {
            let best = post
                .iter()
                .enumerate()
                .map(|(i, (m, v))| (i, m + v.sqrt() * std.sample(rng)))
                .fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b });
            wins[best.0] += 1;
        }
        let free = 1.0 - self.min_share * k as f64;
        let total = wins.iter().sum::<usize>() as f64;
        Ok(wins
            .iter()
            .map(|w| budget * (self.min_share + free * *w as f64 / total))
            .collect())
    }

    /// Records `revenue` earned from `spend` on `campaign`.
    pub fn update(&mut self, campaign: usize, spend: f64, revenue: f64) -> Result<()> {
        non_negative("spend", spend)?;
        non_negative("revenue", revenue)?;
        let len = self.campaigns.len();
        let c = self
            .campaigns
            .get_mut(campaign)
            .ok_or(EngageError::UnknownIndex {
                what: "budget campaign",
                index: campaign,
                len,
            })?;
        if spend > 0.0 {
            c.spend += spend;
            c.revenue += revenue;
            c.revenue_sq_over_spend += revenue * revenue / spend;
            c.updates += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::RoasWorld;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn budget_bandit_moves_spend_to_the_best_campaign() {
        let world = RoasWorld::generate(5, 5);
        let best = (0..5)
            .max_by(|a, b| world.true_roas[*a].total_cmp(&world.true_roas[*b]))
            .unwrap();
        let mut b = BudgetBandit::new(5, 1.5, 1.0, 0.01).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut last = vec![];
        for _ in 0..100 {
            last = b.allocate(1000.0, &mut rng).unwrap();
            for (i, s) in last.iter().enumerate() {
                let r = world.revenue(i, *s, &mut rng);
                b.update(i, *s, r).unwrap();
            }
        }
        assert!((last.iter().sum::<f64>() - 1000.0).abs() < 1e-6);
        assert!(
            last[best] > 500.0,
            "best campaign got {} of 1000",
            last[best]
        );
        assert!(b.update(9, 1.0, 1.0).is_err());
        assert!(b.allocate(-1.0, &mut rng).is_err());
    }
}
