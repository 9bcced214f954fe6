//! Campaign evaluation against a randomized control group.
//!
//! * Assignment hashes `(campaign id, user id)` into [0, 1): stable across processes and
//!   replicas, so the same user always lands in the same group without storing it.
//! * Counters are streaming moments (Welford, with the co-moment of pre-period spend), so
//!   arms can be updated one user at a time and stored as JSON.
//! * Lift: difference in means with a Welch / normal-approximation interval; relative lift
//!   by the delta method.
//! * CUPED (Deng et al. 2013): `y - theta (x - mean x)` with `theta = cov(x, y) / var(x)`
//!   pooled over both arms, `x` = pre-period spend.
//! * Sequential test: mixture SPRT with a normal mixing distribution on the difference in
//!   means (Johari, Pekelis & Walsh 2017). Its p-value is always valid, so the campaign can
//!   be checked after every batch of users without inflating false positives.

use serde::{Deserialize, Serialize};

use crate::error::{finite, non_negative, positive, EngageError, Result};
use crate::stats::{stable_hash, unit_interval, Z95};

/// Group a user belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Group {
    /// Receives the campaign.
    Treatment,
    /// Held out.
    Control,
}

/// Deterministic group of `user_id` in `campaign_id`; `control_share` must be in (0, 1).
pub fn assign_group(campaign_id: &str, user_id: &str, control_share: f64) -> Result<Group> {
    check_control_share(control_share)?;
    let u = unit_interval(stable_hash(&[campaign_id.as_bytes(), user_id.as_bytes()]));
    Ok(if u < control_share {
        Group::Control
    } else {
        Group::Treatment
    })
}

fn check_control_share(share: f64) -> Result<()> {
    finite("control share", share)?;
    if share > 0.0 && share < 1.0 {
        Ok(())
    } else {
        Err(EngageError::OutOfRange {
            what: "control share",
            expected: "strictly between 0 and 1",
            value: share,
        })
    }
}

/// Settings of the always-valid sequential test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialConfig {
    /// Significance level.
    pub alpha: f64,
    /// Standard deviation of the normal mixing distribution over the true difference, in
    /// units of the metric's pooled standard deviation (an effect size). Johari et al.
    /// recommend matching the effects one expects; 0.1 suits marketing lifts.
    pub tau: f64,
    /// Looks before this many users per arm are skipped: the variance is plugged in, and it
    /// is too noisy on tiny samples.
    pub min_per_arm: u64,
}

impl Default for SequentialConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            tau: 0.1,
            min_per_arm: 100,
        }
    }
}

/// Campaign settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignConfig {
    /// Campaign id (part of the assignment hash).
    pub campaign_id: String,
    /// Share of users held out, in (0, 1).
    pub control_share: f64,
    /// Sequential test.
    pub sequential: SequentialConfig,
}

/// What one user did during (and before) the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UserOutcome {
    /// Converted (at least one order) in the campaign period.
    pub converted: bool,
    /// Orders in the campaign period.
    pub orders: u32,
    /// Revenue in the campaign period, >= 0.
    pub revenue: f64,
    /// Spend in the pre-period, >= 0 (CUPED covariate).
    pub pre_spend: f64,
}

/// Streaming counters of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupCounters {
    /// Users recorded.
    pub participants: u64,
    /// Users who converted.
    pub conversions: u64,
    /// Orders.
    pub orders: u64,
    /// Total revenue.
    pub revenue: f64,
    /// Total pre-period spend.
    pub pre_spend: f64,
    mean_revenue: f64,
    m2_revenue: f64,
    mean_pre: f64,
    m2_pre: f64,
    comoment: f64,
}

impl GroupCounters {
    /// Counters from plain sums, for a service that keeps them in a store
    /// and adds to them as orders arrive (a user's revenue can grow after
    /// the user was first counted): `n` users, `conversions` of them, their
    /// orders, and Σy, Σy², Σx, Σx², Σxy over users of revenue `y` and
    /// pre-period spend `x`. Equal to pushing the same users one by one, up
    /// to rounding.
    #[allow(clippy::too_many_arguments)]
    pub fn from_sums(
        n: u64,
        conversions: u64,
        orders: u64,
        sum_revenue: f64,
        sum_revenue_sq: f64,
        sum_pre: f64,
        sum_pre_sq: f64,
        sum_pre_revenue: f64,
    ) -> Self {
        let nf = n as f64;
        let (mean_revenue, mean_pre) = if n > 0 {
            (sum_revenue / nf, sum_pre / nf)
        } else {
            (0.0, 0.0)
        };
        GroupCounters {
            participants: n,
            conversions: conversions.min(n),
            orders,
            revenue: sum_revenue,
            pre_spend: sum_pre,
            mean_revenue,
            m2_revenue: (sum_revenue_sq - nf * mean_revenue * mean_revenue).max(0.0),
            mean_pre,
            m2_pre: (sum_pre_sq - nf * mean_pre * mean_pre).max(0.0),
            comoment: sum_pre_revenue - nf * mean_pre * mean_revenue,
        }
    }

    fn push(&mut self, o: &UserOutcome) {
        self.participants += 1;
        self.conversions += u64::from(o.converted);
        self.orders += u64::from(o.orders);
        self.revenue += o.revenue;
        self.pre_spend += o.pre_spend;
        let n = self.participants as f64;
        let dy = o.revenue - self.mean_revenue;
        let dx = o.pre_spend - self.mean_pre;
        self.mean_revenue += dy / n;
        self.mean_pre += dx / n;
        self.m2_revenue += dy * (o.revenue - self.mean_revenue);
        self.m2_pre += dx * (o.pre_spend - self.mean_pre);
        self.comoment += dx * (o.revenue - self.mean_revenue);
    }

    fn n(&self) -> f64 {
        self.participants as f64
    }
    fn dof(&self) -> f64 {
        (self.n() - 1.0).max(1.0)
    }
    fn conversion_rate(&self) -> f64 {
        self.conversions as f64 / self.n()
    }
    fn conversion_var(&self) -> f64 {
        let p = self.conversion_rate();
        p * (1.0 - p) * self.n() / self.dof()
    }
    /// Mean revenue per user.
    pub fn revenue_per_user(&self) -> f64 {
        self.mean_revenue
    }
    fn revenue_var(&self) -> f64 {
        self.m2_revenue / self.dof()
    }
}

/// A difference in means with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiftEstimate {
    /// Treatment mean.
    pub treatment_mean: f64,
    /// Control mean.
    pub control_mean: f64,
    /// Treatment minus control.
    pub difference: f64,
    /// Standard error of the difference (Welch).
    pub std_error: f64,
    /// Lower end of the 95% interval of the difference.
    pub ci_low: f64,
    /// Upper end.
    pub ci_high: f64,
    /// Difference over control mean (0 when the control mean is 0).
    pub relative_lift: f64,
    /// Delta-method 95% interval of the relative lift.
    pub relative_ci: (f64, f64),
}

fn lift(mt: f64, vt: f64, nt: f64, mc: f64, vc: f64, nc: f64) -> LiftEstimate {
    let diff = mt - mc;
    let se = (vt / nt + vc / nc).max(0.0).sqrt();
    let (rel, rel_ci) = if mc.abs() > 0.0 {
        let r = diff / mc;
        let rse = (vt / nt / (mc * mc) + mt * mt * vc / nc / mc.powi(4)).sqrt();
        (r, (r - Z95 * rse, r + Z95 * rse))
    } else {
        (0.0, (-f64::MAX, f64::MAX))
    };
    LiftEstimate {
        treatment_mean: mt,
        control_mean: mc,
        difference: diff,
        std_error: se,
        ci_low: diff - Z95 * se,
        ci_high: diff + Z95 * se,
        relative_lift: rel,
        relative_ci: rel_ci,
    }
}

/// Running always-valid p-values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialState {
    /// Always-valid p-value for conversion rate.
    pub conversion_p_value: f64,
    /// Always-valid p-value for revenue per user.
    pub revenue_p_value: f64,
    /// Looks taken (after the burn-in).
    pub looks: u64,
}

impl Default for SequentialState {
    fn default() -> Self {
        Self {
            conversion_p_value: 1.0,
            revenue_p_value: 1.0,
            looks: 0,
        }
    }
}

/// Result of one look of the sequential test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialDecision {
    /// Current state.
    pub state: SequentialState,
    /// Conversion difference is significant at `alpha`; safe to stop.
    pub conversion_significant: bool,
    /// Revenue difference is significant at `alpha`; safe to stop.
    pub revenue_significant: bool,
}

/// Everything the service reports for a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    /// Campaign id.
    pub campaign_id: String,
    /// Treatment counters.
    pub treatment: GroupCounters,
    /// Control counters.
    pub control: GroupCounters,
    /// Conversion-rate lift.
    pub conversion: LiftEstimate,
    /// Revenue-per-user lift.
    pub revenue_per_user: LiftEstimate,
    /// Revenue-per-user lift after CUPED.
    pub revenue_per_user_cuped: LiftEstimate,
    /// CUPED coefficient.
    pub cuped_theta: f64,
    /// 1 - var(CUPED diff) / var(plain diff), estimated from this campaign's data.
    pub cuped_variance_reduction: f64,
    /// Latest sequential state.
    pub sequential: SequentialDecision,
}

/// One campaign's assignment, counters and tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// Settings.
    pub config: CampaignConfig,
    /// Treatment counters.
    pub treatment: GroupCounters,
    /// Control counters.
    pub control: GroupCounters,
    /// Sequential-test state.
    pub sequential: SequentialState,
}

impl Campaign {
    /// A campaign with empty counters.
    pub fn new(config: CampaignConfig) -> Result<Self> {
        check_control_share(config.control_share)?;
        let s = config.sequential;
        finite("sequential alpha", s.alpha)?;
        if !(s.alpha > 0.0 && s.alpha < 1.0) {
            return Err(EngageError::OutOfRange {
                what: "sequential alpha",
                expected: "strictly between 0 and 1",
                value: s.alpha,
            });
        }
        positive("sequential tau", s.tau)?;
        Ok(Self {
            config,
            treatment: GroupCounters::default(),
            control: GroupCounters::default(),
            sequential: SequentialState::default(),
        })
    }

    /// Group of `user_id`.
    pub fn assign(&self, user_id: &str) -> Group {
        assign_group(&self.config.campaign_id, user_id, self.config.control_share)
            .expect("control share validated in new")
    }

    /// Adds one user's outcome to `group`.
    pub fn record(&mut self, group: Group, outcome: &UserOutcome) -> Result<()> {
        non_negative("revenue", outcome.revenue)?;
        non_negative("pre-period spend", outcome.pre_spend)?;
        match group {
            Group::Treatment => self.treatment.push(outcome),
            Group::Control => self.control.push(outcome),
        }
        Ok(())
    }

    fn require_data(&self) -> Result<()> {
        let got = self.treatment.participants.min(self.control.participants);
        if got < 2 {
            return Err(EngageError::NotEnoughData {
                what: "users per group",
                needed: 2,
                got: got as usize,
            });
        }
        Ok(())
    }

    /// Conversion-rate lift.
    pub fn conversion_lift(&self) -> Result<LiftEstimate> {
        self.require_data()?;
        let (t, c) = (&self.treatment, &self.control);
        Ok(lift(
            t.conversion_rate(),
            t.conversion_var(),
            t.n(),
            c.conversion_rate(),
            c.conversion_var(),
            c.n(),
        ))
    }

    /// Revenue-per-user lift.
    pub fn revenue_lift(&self) -> Result<LiftEstimate> {
        self.require_data()?;
        let (t, c) = (&self.treatment, &self.control);
        Ok(lift(
            t.mean_revenue,
            t.revenue_var(),
            t.n(),
            c.mean_revenue,
            c.revenue_var(),
            c.n(),
        ))
    }

    /// CUPED revenue-per-user lift and its theta.
    pub fn revenue_lift_cuped(&self) -> Result<(LiftEstimate, f64)> {
        self.require_data()?;
        let (t, c) = (&self.treatment, &self.control);
        let n = t.n() + c.n();
        // Pooled moments about the overall means (parallel-axis merge of the two groups).
        let mx = (t.n() * t.mean_pre + c.n() * c.mean_pre) / n;
        let my = (t.n() * t.mean_revenue + c.n() * c.mean_revenue) / n;
        let sxx = t.m2_pre
            + c.m2_pre
            + t.n() * (t.mean_pre - mx).powi(2)
            + c.n() * (c.mean_pre - mx).powi(2);
        let sxy = t.comoment
            + c.comoment
            + t.n() * (t.mean_pre - mx) * (t.mean_revenue - my)
            + c.n() * (c.mean_pre - mx) * (c.mean_revenue - my);
        let theta = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let adj_var = |g: &GroupCounters| {
            ((g.m2_revenue - 2.0 * theta * g.comoment + theta * theta * g.m2_pre) / g.dof())
                .max(0.0)
        };
        let est = lift(
            t.mean_revenue - theta * (t.mean_pre - mx),
            adj_var(t),
            t.n(),
            c.mean_revenue - theta * (c.mean_pre - mx),
            adj_var(c),
            c.n(),
        );
        Ok((est, theta))
    }

    /// Takes one look of the sequential test and updates the running p-values. Call after
    /// every batch; looking more often never inflates the false-positive rate.
    pub fn monitor(&mut self) -> SequentialDecision {
        let cfg = self.config.sequential;
        let ready = self.treatment.participants.min(self.control.participants) >= cfg.min_per_arm
            && self.require_data().is_ok();
        if ready {
            let (t, c) = (&self.treatment, &self.control);
            let pooled = |vt: f64, vc: f64| {
                (((t.n() - 1.0) * vt + (c.n() - 1.0) * vc) / (t.n() + c.n() - 2.0)).max(0.0)
            };
            if let Ok(conv) = self.conversion_lift() {
                let tau2 = cfg.tau.powi(2) * pooled(t.conversion_var(), c.conversion_var());
                let p = msprt_p_value(conv.difference, conv.std_error.powi(2), tau2);
                self.sequential.conversion_p_value = self.sequential.conversion_p_value.min(p);
            }
            if let Ok(rev) = self.revenue_lift() {
                let tau2 = cfg.tau.powi(2) * pooled(t.revenue_var(), c.revenue_var());
                let p = msprt_p_value(rev.difference, rev.std_error.powi(2), tau2);
                self.sequential.revenue_p_value = self.sequential.revenue_p_value.min(p);
            }
            self.sequential.looks += 1;
        }
        self.decision()
    }

    fn decision(&self) -> SequentialDecision {
        SequentialDecision {
            state: self.sequential,
            conversion_significant: self.sequential.conversion_p_value
                <= self.config.sequential.alpha,
            revenue_significant: self.sequential.revenue_p_value <= self.config.sequential.alpha,
        }
    }

    /// Full report (does not take a sequential look).
    pub fn report(&self) -> Result<CampaignReport> {
        let revenue = self.revenue_lift()?;
        let (cuped, theta) = self.revenue_lift_cuped()?;
        let reduction = if revenue.std_error > 0.0 {
            1.0 - (cuped.std_error / revenue.std_error).powi(2)
        } else {
            0.0
        };
        Ok(CampaignReport {
            campaign_id: self.config.campaign_id.clone(),
            treatment: self.treatment.clone(),
            control: self.control.clone(),
            conversion: self.conversion_lift()?,
            revenue_per_user: revenue,
            revenue_per_user_cuped: cuped,
            cuped_theta: theta,
            cuped_variance_reduction: reduction,
            sequential: self.decision(),
        })
    }
}

/// mSPRT p-value `min(1, 1 / Lambda)` for an estimate `diff` with variance `var` and a
/// `N(0, tau2)` mixture over the true difference:
/// `Lambda = sqrt(var / (var + tau2)) exp(diff^2 tau2 / (2 var (var + tau2)))`.
/// Computed in log space so large samples cannot overflow.
pub fn msprt_p_value(diff: f64, var: f64, tau2: f64) -> f64 {
    if !(var > 0.0 && tau2 > 0.0 && diff.is_finite()) {
        return 1.0;
    }
    let log_lambda =
        0.5 * (var / (var + tau2)).ln() + diff * diff * tau2 / (2.0 * var * (var + tau2));
    (-log_lambda).exp().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_sums_equal_counters_pushed_one_by_one() {
        let users = [
            (3.0, 10.0, true, 2),
            (0.0, 4.0, false, 0),
            (7.5, 0.0, true, 1),
            (1.0, 2.0, true, 1),
        ];
        let mut pushed = GroupCounters::default();
        let (mut sy, mut syy, mut sx, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (y, x, c, o) in users {
            pushed.push(&UserOutcome {
                converted: c,
                orders: o,
                revenue: y,
                pre_spend: x,
            });
            sy += y;
            syy += y * y;
            sx += x;
            sxx += x * x;
            sxy += x * y;
        }
        let sums = GroupCounters::from_sums(4, 3, 4, sy, syy, sx, sxx, sxy);
        for (a, b) in [
            (sums.mean_revenue, pushed.mean_revenue),
            (sums.m2_revenue, pushed.m2_revenue),
            (sums.m2_pre, pushed.m2_pre),
            (sums.comoment, pushed.comoment),
        ] {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        assert_eq!(
            (sums.participants, sums.conversions, sums.orders),
            (4, 3, 4)
        );
        assert_eq!(
            GroupCounters::from_sums(0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0),
            GroupCounters::default()
        );
    }
    use crate::simulate::{simulate_campaign_users, CampaignWorld};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn config(id: &str) -> CampaignConfig {
        CampaignConfig {
            campaign_id: id.into(),
            control_share: 0.5,
            sequential: SequentialConfig::default(),
        }
    }

    #[test]
    fn assignment_is_deterministic_and_matches_the_share() {
        let a = assign_group("c1", "u42", 0.2).unwrap();
        assert_eq!(a, assign_group("c1", "u42", 0.2).unwrap());
        let control = (0..20_000)
            .filter(|u| assign_group("c1", &format!("u{u}"), 0.2).unwrap() == Group::Control)
            .count();
        assert!((control as f64 / 20_000.0 - 0.2).abs() < 0.01, "{control}");
        for bad in [0.0, 1.0, -0.1, f64::NAN] {
            let err = assign_group("c", "u", bad).unwrap_err();
            assert!(err.to_string().contains("control share"), "{err}");
        }
    }

    #[test]
    fn record_rejects_bad_outcomes_and_report_needs_data() {
        let mut c = Campaign::new(config("x")).unwrap();
        let bad = UserOutcome {
            converted: true,
            orders: 1,
            revenue: f64::NAN,
            pre_spend: 0.0,
        };
        assert!(c
            .record(Group::Control, &bad)
            .unwrap_err()
            .to_string()
            .contains("revenue"));
        assert!(matches!(c.report(), Err(EngageError::NotEnoughData { .. })));
    }

    /// Runs seeded campaigns; returns (revenue CI coverage, conversion CI coverage,
    /// plain diffs, CUPED diffs).
    fn replicate(runs: u64, users: usize, aa: bool) -> (f64, f64, Vec<f64>, Vec<f64>) {
        let world = if aa {
            CampaignWorld::aa()
        } else {
            CampaignWorld::default()
        };
        let (mut cov_r, mut cov_c) = (0, 0);
        let (mut plain, mut cuped) = (vec![], vec![]);
        for seed in 0..runs {
            let mut c = Campaign::new(config(&format!("camp{seed}"))).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for u in simulate_campaign_users(&world, users, &mut rng) {
                let g = c.assign(&u.id);
                c.record(g, &world.outcome_for(g, &u)).unwrap();
            }
            let r = c.report().unwrap();
            let tr = world.true_revenue_lift();
            cov_r +=
                usize::from(r.revenue_per_user.ci_low <= tr && tr <= r.revenue_per_user.ci_high);
            let tc = world.true_conversion_lift();
            cov_c += usize::from(r.conversion.ci_low <= tc && tc <= r.conversion.ci_high);
            plain.push(r.revenue_per_user.difference);
            cuped.push(r.revenue_per_user_cuped.difference);
        }
        (
            cov_r as f64 / runs as f64,
            cov_c as f64 / runs as f64,
            plain,
            cuped,
        )
    }

    #[test]
    fn ci_coverage_is_near_nominal_and_cuped_reduces_variance() {
        let (rev, conv, plain, cuped) = replicate(300, 2000, false);
        assert!((0.92..=0.98).contains(&rev), "revenue coverage {rev}");
        assert!((0.92..=0.98).contains(&conv), "conversion coverage {conv}");
        let vp = crate::stats::mean_var(&plain).1;
        let vc = crate::stats::mean_var(&cuped).1;
        assert!(vc < 0.9 * vp, "cuped var {vc} plain var {vp}");
    }

    #[test]
    fn sequential_aa_false_positive_rate_is_controlled() {
        let world = CampaignWorld::aa();
        let runs = 200;
        let mut rejected = 0;
        for seed in 0..runs {
            let mut c = Campaign::new(config(&format!("aa{seed}"))).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(10_000 + seed);
            let users = simulate_campaign_users(&world, 3000, &mut rng);
            let mut hit = false;
            for batch in users.chunks(100) {
                for u in batch {
                    let g = c.assign(&u.id);
                    c.record(g, &world.outcome_for(g, u)).unwrap();
                }
                let d = c.monitor();
                hit |= d.revenue_significant || d.conversion_significant;
            }
            rejected += usize::from(hit);
        }
        let fpr = rejected as f64 / runs as f64;
        assert!(fpr <= 0.07, "A/A false positive rate {fpr}");
    }

    #[test]
    fn extreme_values_stay_finite() {
        let mut c = Campaign::new(config("big")).unwrap();
        for i in 0..400u32 {
            let o = UserOutcome {
                converted: i % 3 == 0,
                orders: i % 3,
                revenue: if i % 7 == 0 { 1e12 } else { 1e-9 },
                pre_spend: f64::from(i) * 1e9,
            };
            let g = if i % 2 == 0 {
                Group::Treatment
            } else {
                Group::Control
            };
            c.record(g, &o).unwrap();
        }
        let d = c.monitor();
        let r = c.report().unwrap();
        for v in [
            r.revenue_per_user.ci_low,
            r.revenue_per_user.ci_high,
            r.revenue_per_user_cuped.std_error,
            r.cuped_theta,
            r.conversion.relative_lift,
            d.state.revenue_p_value,
        ] {
            assert!(v.is_finite(), "{r:?}");
        }
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Campaign>(&json).unwrap(), c);
    }

    #[test]
    fn msprt_detects_a_real_effect_and_stays_finite() {
        assert!(msprt_p_value(1.0, 0.01, 0.01) < 1e-10);
        assert_eq!(msprt_p_value(0.0, 0.01, 0.01), 1.0);
        assert!(msprt_p_value(1e6, 1e-12, 1.0).is_finite());
        assert_eq!(msprt_p_value(1.0, 0.0, 1.0), 1.0);
    }
}
