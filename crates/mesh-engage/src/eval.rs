//! End-to-end evaluation against the simulated ground truth in [`crate::simulate`].
//!
//! `run` is deterministic for a given [`EvalConfig`]; the figures it returns are the ones
//! quoted in NOTES.md.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ads::{ctr_features, BudgetBandit, CtrModel, FeatureHasher, Lookalike, Similarity};
use crate::bandit::{BanditPolicy, ContextualBandit};
use crate::campaign::{Campaign, CampaignConfig, SequentialConfig};
use crate::pricing::{
    estimate_elasticities, estimate_segment_elasticities, optimize_price, ElasticityConfig,
    PriceConstraints, PriceObjective,
};
use crate::simulate::{
    simulate_campaign_users, simulate_price_history, simulate_segment_history, AudienceWorld,
    CampaignWorld, CtrWorld, OfferWorld, PricingWorld, RoasWorld, SegmentWorld, OFFER_CONTEXT_DIM,
};
use crate::stats::{mean_var, roc_auc};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Master seed; every sub-simulation derives its seed from it.
    pub seed: u64,
    /// Smaller worlds and fewer replications, for a smoke run.
    pub quick: bool,
}

/// One point of the bandit regret curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegretPoint {
    /// Round (1-based).
    pub round: u64,
    /// Cumulative expected regret of the bandit.
    pub bandit: f64,
    /// Cumulative expected regret of uniform random choice.
    pub random: f64,
}

/// Measured figures; see NOTES.md for what each means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngageReport {
    /// Seed used.
    pub seed: u64,
    /// Quick mode.
    pub quick: bool,
    /// Mean |estimated - true| / |true| elasticity after shrinkage.
    pub elasticity_mape: f64,
    /// Same for the unshrunk per-item estimates (items with an identified slope).
    pub elasticity_mape_unshrunk: f64,
    /// Mean |estimated - true| / |true| of item × segment elasticities (three segments
    /// with different price sensitivity).
    pub segment_elasticity_mape: f64,
    /// Same error if every segment used its item's elasticity (what segments improve on).
    pub segment_elasticity_mape_item_only: f64,
    /// Items priced.
    pub pricing_items: usize,
    /// Relative revenue lift of optimized over fixed prices in the simulated A/B run.
    pub pricing_revenue_lift: f64,
    /// Same lift if the optimizer knew the true elasticities (upper reference).
    pub pricing_oracle_revenue_lift: f64,
    /// Decisions that broke a constraint (must be 0).
    pub pricing_constraint_violations: usize,
    /// Decisions taken.
    pub pricing_decisions: usize,
    /// Bandit rounds.
    pub bandit_rounds: u64,
    /// Cumulative expected regret of the bandit / of uniform random choice.
    pub bandit_regret_ratio: f64,
    /// Share of the last 10% of rounds in which the bandit chose the true best offer.
    pub bandit_best_offer_share: f64,
    /// ~50 samples of cumulative regret.
    pub bandit_regret_curve: Vec<RegretPoint>,
    /// Campaigns with a true lift simulated.
    pub campaigns: usize,
    /// Users per campaign.
    pub users_per_campaign: usize,
    /// Share of 95% revenue-per-user intervals covering the true lift.
    pub ci_coverage: f64,
    /// Same for conversion rate.
    pub ci_coverage_conversion: f64,
    /// Same for the CUPED revenue interval.
    pub ci_coverage_cuped: f64,
    /// 1 - var(CUPED estimate) / var(plain estimate) across campaigns.
    pub cuped_variance_reduction: f64,
    /// A/A campaigns monitored.
    pub aa_runs: usize,
    /// Looks per A/A campaign (one per batch of users).
    pub aa_looks: usize,
    /// Share of A/A campaigns the mSPRT ever declared significant (either metric).
    pub aa_false_positive_rate: f64,
    /// Share of true-lift campaigns the mSPRT declared significant on revenue.
    pub sequential_power: f64,
    /// Precision@k of centroid-cosine lookalikes, k = true segment size among candidates.
    pub lookalike_precision: f64,
    /// Same with 10-nearest-seed distance.
    pub lookalike_precision_knn: f64,
    /// Held-out AUC of the hashed-feature CTR model.
    pub ctr_auc: f64,
    /// Held-out AUC of the true CTR (the ceiling).
    pub ctr_auc_oracle: f64,
    /// Budget bandit regret / uniform split regret.
    pub budget_regret_ratio: f64,
    /// Share of the final round's budget on the truly best campaign.
    pub budget_final_best_share: f64,
}

/// Runs every evaluation.
pub fn run(cfg: &EvalConfig) -> EngageReport {
    let q = cfg.quick;
    let s = cfg.seed;
    let pricing = eval_pricing(s, q);
    let bandit = eval_bandit(s.wrapping_add(100), q);
    let campaign = eval_campaigns(s.wrapping_add(200), q);
    let ads = eval_ads(s.wrapping_add(300), q);
    let segments = eval_segments(s.wrapping_add(400), q);
    EngageReport {
        seed: s,
        quick: q,
        elasticity_mape: pricing.0,
        elasticity_mape_unshrunk: pricing.1,
        segment_elasticity_mape: segments.0,
        segment_elasticity_mape_item_only: segments.1,
        pricing_items: pricing.2,
        pricing_revenue_lift: pricing.3,
        pricing_oracle_revenue_lift: pricing.4,
        pricing_constraint_violations: pricing.5,
        pricing_decisions: pricing.6,
        bandit_rounds: bandit.0,
        bandit_regret_ratio: bandit.1,
        bandit_best_offer_share: bandit.2,
        bandit_regret_curve: bandit.3,
        campaigns: campaign.campaigns,
        users_per_campaign: campaign.users,
        ci_coverage: campaign.coverage_revenue,
        ci_coverage_conversion: campaign.coverage_conversion,
        ci_coverage_cuped: campaign.coverage_cuped,
        cuped_variance_reduction: campaign.cuped_reduction,
        aa_runs: campaign.aa_runs,
        aa_looks: campaign.aa_looks,
        aa_false_positive_rate: campaign.aa_fpr,
        sequential_power: campaign.power,
        lookalike_precision: ads.1,
        lookalike_precision_knn: ads.0,
        ctr_auc: ads.2,
        ctr_auc_oracle: ads.3,
        budget_regret_ratio: ads.4,
        budget_final_best_share: ads.5,
    }
}

type PricingFigures = (f64, f64, usize, f64, f64, usize, usize);

fn eval_pricing(seed: u64, quick: bool) -> PricingFigures {
    let per_cat = if quick { 5 } else { 12 };
    let days = if quick { 30 } else { 60 };
    let world = PricingWorld::generate(seed, 6, per_cat, 0.3);
    let history = simulate_price_history(&world, days, 300.0, 0.15, seed + 1);
    let model = estimate_elasticities(&history, &ElasticityConfig::default())
        .expect("simulated history is valid");
    let (mut ape, mut ape_raw, mut n_raw) = (0.0, 0.0, 0usize);
    for item in &world.items {
        let fit = model.item(item.id).expect("every item has history");
        let t = item.true_elasticity;
        ape += ((fit.elasticity - t) / t).abs();
        if let Some(r) = fit.raw_elasticity {
            ape_raw += ((r - t) / t).abs();
            n_raw += 1;
        }
    }
    let n = world.items.len();

    // A/B: each item's traffic split evenly; control keeps the base price, treatment
    // re-prices daily with the estimated (or, for the oracle, true) elasticity.
    let ab_days = if quick { 14 } else { 28 };
    let exposures = 300.0;
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let (mut rev_c, mut rev_t, mut rev_o) = (0.0, 0.0, 0.0);
    let (mut violations, mut decisions) = (0, 0);
    for item in &world.items {
        let fit = model.item(item.id).expect("every item has history");
        let c = PriceConstraints {
            floor: 0.7 * item.base_price,
            ceiling: 1.3 * item.base_price,
            max_change: 0.05,
            min_margin: 0.15,
            market_ceiling: None,
        };
        let mut truth = fit.demand_curve(exposures);
        truth.elasticity = item.true_elasticity;
        truth.base_demand = exposures * item.base_rate;
        truth.ref_price = item.base_price;
        let (mut p_t, mut p_o) = (item.base_price, item.base_price);
        for _ in 0..ab_days {
            for (price, sink, curve) in [
                (&mut p_t, &mut rev_t, fit.demand_curve(exposures)),
                (&mut p_o, &mut rev_o, truth),
            ] {
                match optimize_price(&curve, item.unit_cost, *price, &c, PriceObjective::Revenue) {
                    Ok(d) => {
                        decisions += 1;
                        violations += usize::from(!c.allows(d.price, *price, item.unit_cost));
                        *price = d.price;
                    }
                    Err(_) => violations += 1,
                }
                *sink += *price * poisson(exposures * item.rate(*price), &mut rng);
            }
            rev_c += item.base_price * poisson(exposures * item.rate(item.base_price), &mut rng);
        }
    }
    (
        ape / n as f64,
        ape_raw / n_raw.max(1) as f64,
        n,
        rev_t / rev_c - 1.0,
        rev_o / rev_c - 1.0,
        violations,
        decisions,
    )
}

/// Item × segment elasticity error, and the error of using the item's for every segment.
fn eval_segments(seed: u64, quick: bool) -> (f64, f64) {
    let per_cat = if quick { 5 } else { 12 };
    let days = if quick { 30 } else { 60 };
    let world = SegmentWorld::standard(PricingWorld::generate(seed, 6, per_cat, 0.3));
    let (items, segments) = simulate_segment_history(&world, days, 300.0, 0.15, seed + 1);
    let cfg = ElasticityConfig::default();
    let item_model = estimate_elasticities(&items, &cfg).expect("simulated history is valid");
    let model = estimate_segment_elasticities(&segments, &item_model, &cfg)
        .expect("simulated history is valid");
    let (mut own, mut item_only, mut n) = (0.0, 0.0, 0usize);
    for item in &world.world.items {
        let item_e = item_model.item(item.id).expect("every item has history");
        for s in 0..world.offsets.len() as u32 {
            let t = world.true_elasticity(item, s);
            let fit = model.get(item.id, s).expect("every pair has history");
            own += ((fit.elasticity - t) / t).abs();
            item_only += ((item_e.elasticity - t) / t).abs();
            n += 1;
        }
    }
    (own / n as f64, item_only / n as f64)
}

fn poisson(mean: f64, rng: &mut ChaCha8Rng) -> f64 {
    use rand_distr::{Distribution, Poisson};
    if mean <= 0.0 {
        return 0.0;
    }
    Poisson::new(mean).map(|p| p.sample(rng)).unwrap_or(0.0)
}

fn eval_bandit(seed: u64, quick: bool) -> (u64, f64, f64, Vec<RegretPoint>) {
    let rounds: u64 = if quick { 3000 } else { 20_000 };
    let world = OfferWorld::standard();
    let names: Vec<&str> = world.arms.iter().map(String::as_str).collect();
    let mut bandit = ContextualBandit::new(
        &names,
        OFFER_CONTEXT_DIM,
        1.0,
        BanditPolicy::Thompson { scale: 0.3 },
    )
    .expect("valid bandit");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut reg_b, mut reg_r) = (0.0, 0.0);
    let mut late_best = 0u64;
    let late_from = rounds - rounds / 10;
    let every = (rounds / 50).max(1);
    let mut curve = Vec::new();
    for t in 1..=rounds {
        let ctx = world.sample_context(&mut rng);
        let (best, p_best) = world.best(&ctx);
        let arm = bandit.choose(&ctx, &mut rng).expect("valid context");
        let p = world.response(&ctx, arm);
        let reward = f64::from(u8::from(rng.random::<f64>() < p));
        bandit.update(&ctx, arm, reward).expect("valid update");
        reg_b += p_best - p;
        let random_arm = rng.random_range(0..world.arms.len());
        reg_r += p_best - world.response(&ctx, random_arm);
        if t > late_from && arm == best {
            late_best += 1;
        }
        if t % every == 0 {
            curve.push(RegretPoint {
                round: t,
                bandit: reg_b,
                random: reg_r,
            });
        }
    }
    (
        rounds,
        reg_b / reg_r,
        late_best as f64 / (rounds - late_from) as f64,
        curve,
    )
}

struct CampaignFigures {
    campaigns: usize,
    users: usize,
    coverage_revenue: f64,
    coverage_conversion: f64,
    coverage_cuped: f64,
    cuped_reduction: f64,
    aa_runs: usize,
    aa_looks: usize,
    aa_fpr: f64,
    power: f64,
}

fn campaign_config(id: String) -> CampaignConfig {
    CampaignConfig {
        campaign_id: id,
        control_share: 0.5,
        sequential: SequentialConfig::default(),
    }
}

fn eval_campaigns(seed: u64, quick: bool) -> CampaignFigures {
    let (runs, users, batch) = if quick {
        (60, 2000, 100)
    } else {
        (400, 4000, 100)
    };
    let world = CampaignWorld::default();
    let (true_rev, true_conv) = (world.true_revenue_lift(), world.true_conversion_lift());
    let (mut cov_r, mut cov_c, mut cov_cu, mut detected) = (0, 0, 0, 0);
    let (mut plain, mut cuped) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(r));
        let mut c = Campaign::new(campaign_config(format!("lift-{seed}-{r}"))).expect("valid");
        let mut hit = false;
        for chunk in simulate_campaign_users(&world, users, &mut rng).chunks(batch) {
            for u in chunk {
                let g = c.assign(&u.id);
                c.record(g, &world.outcome_for(g, u))
                    .expect("valid outcome");
            }
            hit |= c.monitor().revenue_significant;
        }
        let rep = c.report().expect("both groups populated");
        let covers = |l: &crate::campaign::LiftEstimate, t: f64| l.ci_low <= t && t <= l.ci_high;
        cov_r += usize::from(covers(&rep.revenue_per_user, true_rev));
        cov_c += usize::from(covers(&rep.conversion, true_conv));
        cov_cu += usize::from(covers(&rep.revenue_per_user_cuped, true_rev));
        detected += usize::from(hit);
        plain.push(rep.revenue_per_user.difference);
        cuped.push(rep.revenue_per_user_cuped.difference);
    }
    let aa = CampaignWorld::aa();
    let aa_runs = runs as usize;
    let mut false_pos = 0;
    for r in 0..runs {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed.wrapping_mul(7_000_003).wrapping_add(r) ^ 0xaa);
        let mut c = Campaign::new(campaign_config(format!("aa-{seed}-{r}"))).expect("valid");
        let mut hit = false;
        for chunk in simulate_campaign_users(&aa, users, &mut rng).chunks(batch) {
            for u in chunk {
                let g = c.assign(&u.id);
                c.record(g, &aa.outcome_for(g, u)).expect("valid outcome");
            }
            let d = c.monitor();
            hit |= d.revenue_significant || d.conversion_significant;
        }
        false_pos += usize::from(hit);
    }
    let n = runs as f64;
    CampaignFigures {
        campaigns: runs as usize,
        users,
        coverage_revenue: cov_r as f64 / n,
        coverage_conversion: cov_c as f64 / n,
        coverage_cuped: cov_cu as f64 / n,
        cuped_reduction: 1.0 - mean_var(&cuped).1 / mean_var(&plain).1,
        aa_runs,
        aa_looks: users.div_ceil(batch),
        aa_fpr: false_pos as f64 / n,
        power: detected as f64 / n,
    }
}

fn eval_ads(seed: u64, quick: bool) -> (f64, f64, f64, f64, f64, f64) {
    // Lookalikes: seeds are segment-0 users; candidates a fresh mixed sample.
    let world = AudienceWorld::generate(seed, 5, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let seeds: Vec<Vec<f64>> = world
        .sample(2000, &mut rng)
        .into_iter()
        .filter(|(s, _)| *s == 0)
        .map(|(_, x)| x)
        .take(200)
        .collect();
    let cands = world.sample(if quick { 1000 } else { 5000 }, &mut rng);
    let rows: Vec<Vec<f64>> = cands.iter().map(|c| c.1.clone()).collect();
    let k = cands.iter().filter(|c| c.0 == 0).count();
    let precision = |sim: Similarity| {
        let la = Lookalike::fit(&seeds, &rows, sim).expect("valid lookalike input");
        let top = la.rank(&rows, k).expect("valid candidates");
        top.iter().filter(|(i, _)| cands[*i].0 == 0).count() as f64 / k as f64
    };
    let p_knn = precision(Similarity::Knn { k: 10 });
    let p_centroid = precision(Similarity::Centroid);

    // CTR on hashed features, evaluated on held-out impressions.
    let ctr_world = CtrWorld::generate(seed + 2, 20, 8, 4);
    let train = ctr_world.sample(if quick { 4000 } else { 20_000 }, &mut rng);
    let test = ctr_world.sample(if quick { 2000 } else { 10_000 }, &mut rng);
    let feats = |imps: &[crate::simulate::Impression]| -> Vec<Vec<String>> {
        imps.iter()
            .map(|i| ctr_features(i.creative, i.segment, i.context))
            .collect()
    };
    let clicks: Vec<bool> = train.iter().map(|i| i.clicked).collect();
    let model = CtrModel::fit(FeatureHasher { buckets: 256 }, &feats(&train), &clicks, 1.0)
        .expect("training data has both classes");
    let labels: Vec<bool> = test.iter().map(|i| i.clicked).collect();
    let scores: Vec<f64> = feats(&test).iter().map(|f| model.predict(f)).collect();
    let auc = roc_auc(&scores, &labels).expect("test data has both classes");
    let oracle: Vec<f64> = test.iter().map(|i| i.true_ctr).collect();
    let auc_oracle = roc_auc(&oracle, &labels).expect("test data has both classes");

    // Budget split.
    let roas = RoasWorld::generate(seed + 3, 8);
    let best = roas.true_roas.iter().copied().fold(f64::MIN, f64::max);
    let best_idx = roas.true_roas.iter().position(|r| *r == best).unwrap_or(0);
    let mut bb = BudgetBandit::new(8, 1.5, 1.0, 0.01).expect("valid budget bandit");
    let budget = 1000.0;
    let rounds = if quick { 60 } else { 365 };
    let (mut reg_b, mut reg_u) = (0.0, 0.0);
    let mut last_share = 0.0;
    for _ in 0..rounds {
        let alloc = bb.allocate(budget, &mut rng).expect("valid budget");
        for (i, spend) in alloc.iter().enumerate() {
            reg_b += spend * (best - roas.true_roas[i]);
            reg_u += budget / 8.0 * (best - roas.true_roas[i]);
            let r = roas.revenue(i, *spend, &mut rng);
            bb.update(i, *spend, r).expect("valid update");
        }
        last_share = alloc[best_idx] / budget;
    }
    (
        p_knn,
        p_centroid,
        auc,
        auc_oracle,
        reg_b / reg_u,
        last_share,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_run_meets_the_acceptance_bars() {
        let r = run(&EvalConfig {
            seed: 1,
            quick: true,
        });
        assert_eq!(r.pricing_constraint_violations, 0);
        assert!(r.elasticity_mape < 0.5, "{}", r.elasticity_mape);
        assert!(
            r.segment_elasticity_mape < r.segment_elasticity_mape_item_only,
            "{} vs {}",
            r.segment_elasticity_mape,
            r.segment_elasticity_mape_item_only
        );
        assert!(r.pricing_revenue_lift > 0.0, "{}", r.pricing_revenue_lift);
        assert!(r.bandit_regret_ratio < 1.0, "{}", r.bandit_regret_ratio);
        assert!(r.budget_regret_ratio < 1.0, "{}", r.budget_regret_ratio);
        assert!(r.ctr_auc > 0.6 && r.lookalike_precision > 0.5);
        assert!(!r.bandit_regret_curve.is_empty());
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"aa_false_positive_rate\""));
    }
}
