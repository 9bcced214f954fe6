//! A click simulator with known preferences, to measure the feedback loop offline.
//!
//! Every round one request is answered: each learned source proposes `per_source` random
//! catalog items with random scores, [`rank`] blends them with the policy's
//! [`SourceWeights`] into `slots` items, and the simulated user clicks slot `k` holding an
//! item of source `s` with probability `examination[k] · quality[s]` (the position-based
//! model [`super::FeedbackCounts::estimate`] assumes). The bandit policy learns from its own
//! impressions and clicks exactly as the service does: counters per (source, slot), a
//! posterior refresh every `refresh_every` rounds (the service re-reads its counters about
//! once a second), one Thompson draw per request, equal weights until `min_clicks`.
//!
//! Regret is measured in expected clicks against the *oracle blend*: the same ranking with
//! weights `quality[s] / max quality` (what the bandit's weights converge to when its
//! estimates are right), on the same candidates.
use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Bandit, FeedbackCounts, SourceWeights, LEARNED};
use crate::rank::{rank, Candidate, RankConfig, Source, UserContext};
use crate::types::ItemMeta;

/// The simulated world.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// Requests answered.
    pub rounds: usize,
    /// Items per answer.
    pub slots: usize,
    /// Candidates each source proposes per request.
    pub per_source: usize,
    /// Catalog size.
    pub items: usize,
    /// Categories in the catalog.
    pub categories: usize,
    /// True click probability of an examined item, per source.
    pub quality: Vec<(Source, f64)>,
    /// Probability the user examines each slot (slot 0 first).
    pub examination: Vec<f64>,
    /// Rounds between posterior refreshes.
    pub refresh_every: usize,
    /// Clicks before the bandit acts (equal weights until then).
    pub min_clicks: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        let slots = 10;
        SimConfig {
            seed: 1,
            rounds: 20_000,
            slots,
            per_source: 30,
            items: 600,
            categories: 15,
            quality: vec![
                (Source::Model, 0.10),
                (Source::Cooccurrence, 0.18),
                (Source::Popularity, 0.05),
            ],
            examination: (0..slots)
                .map(|k| 1.0 / (1.0 + k as f64).powf(0.7))
                .collect(),
            refresh_every: 50,
            min_clicks: 20,
        }
    }
}

/// How the sources are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Every source weight 1 (the blend before the feedback loop).
    Equal,
    /// Thompson sampling over the position-debiased posteriors.
    Bandit,
    /// Weights from the true qualities (the regret baseline).
    Oracle,
}

/// What one simulated run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The policy.
    pub policy: Policy,
    /// The seed.
    pub seed: u64,
    /// Items shown.
    pub impressions: u64,
    /// Clicks drawn.
    pub clicks: u64,
    /// `clicks / impressions`.
    pub ctr: f64,
    /// Expected clicks per impression of the answers shown (no sampling noise).
    pub expected_ctr: f64,
    /// Expected clicks lost against the oracle blend, summed over the rounds.
    pub regret: f64,
    /// `regret` over the oracle's expected clicks.
    pub regret_share: f64,
    /// Share of the top 3 slots each source got, model / co-occurrence / popularity.
    pub top3_share: [f64; 3],
    /// Posterior-mean weights at the end (equal for the fixed policies).
    pub final_weights: SourceWeights,
    /// Debiased CTR the bandit estimated per learned source at the end.
    pub estimated_ctr: [f64; 3],
}

fn catalog(cfg: &SimConfig, rng: &mut ChaCha8Rng) -> HashMap<String, ItemMeta> {
    (0..cfg.items)
        .map(|i| {
            let id = format!("i{i}");
            let mut m = ItemMeta::new(
                id.clone(),
                format!("c{}", rng.random_range(0..cfg.categories.max(1))),
                rng.random_range(5.0..100.0),
            );
            m.sales = rng.random_range(0.0..1000.0);
            m.rating = rng.random_range(3.0..5.0);
            m.margin = rng.random_range(0.0..0.5);
            m.listed_at = -rng.random_range(0.0..90.0 * 86_400.0);
            (id, m)
        })
        .collect()
}

fn expected_clicks(cfg: &SimConfig, quality: &HashMap<Source, f64>, sources: &[Source]) -> f64 {
    sources
        .iter()
        .zip(&cfg.examination)
        .map(|(s, e)| e * quality.get(s).copied().unwrap_or(0.0))
        .sum()
}

/// Runs one policy. The world (catalog, candidates, click draws) depends on the seed only,
/// so policies compare on the same requests.
pub fn simulate(cfg: &SimConfig, policy: Policy) -> SimReport {
    let mut world = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut clicks_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_c11c);
    let mut policy_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x7b0b_7b0b);
    let cat = catalog(cfg, &mut world);
    let ids: Vec<String> = {
        let mut v: Vec<String> = cat.keys().cloned().collect();
        v.sort();
        v
    };
    let quality: HashMap<Source, f64> = cfg.quality.iter().copied().collect();
    let qmax = quality.values().copied().fold(0.0, f64::max);
    let mut oracle = SourceWeights::default();
    for s in LEARNED {
        let q = quality.get(&s).copied().unwrap_or(0.0);
        oracle.set(s, if qmax > 0.0 { q / qmax } else { 1.0 });
    }
    let ctx = UserContext::default();
    let base = RankConfig {
        n: cfg.slots,
        ..RankConfig::default()
    };
    let mut counts = FeedbackCounts::default();
    let mut bandit = Bandit::from_counts(&counts);
    let (mut impressions, mut clicks) = (0u64, 0u64);
    let (mut expected, mut oracle_expected) = (0.0, 0.0);
    let mut top3 = [0u64; 3];
    for round in 0..cfg.rounds {
        let mut cands = Vec::new();
        for s in LEARNED {
            for _ in 0..cfg.per_source {
                cands.push(Candidate {
                    item: ids[world.random_range(0..ids.len())].clone(),
                    score: world.random_range(0.0..1.0),
                    source: s,
                });
            }
        }
        if policy == Policy::Bandit && round % cfg.refresh_every.max(1) == 0 {
            bandit = Bandit::from_counts(&counts);
        }
        let weights = match policy {
            Policy::Equal => SourceWeights::default(),
            Policy::Oracle => oracle,
            Policy::Bandit if counts.total().clicks < cfg.min_clicks => SourceWeights::default(),
            Policy::Bandit => bandit.sample(&mut policy_rng),
        };
        let shown = rank(
            &ctx,
            &cands,
            &cat,
            &RankConfig {
                source_weights: weights,
                ..base.clone()
            },
        );
        let sources: Vec<Source> = shown.iter().map(|r| r.source).collect();
        expected += expected_clicks(cfg, &quality, &sources);
        let best = rank(
            &ctx,
            &cands,
            &cat,
            &RankConfig {
                source_weights: oracle,
                ..base.clone()
            },
        );
        let best: Vec<Source> = best.iter().map(|r| r.source).collect();
        oracle_expected += expected_clicks(cfg, &quality, &best);
        for (k, s) in sources.iter().enumerate() {
            let k32 = k as u32;
            counts.impress(*s, k32, 1);
            impressions += 1;
            if k < 3 {
                if let Some(i) = LEARNED.iter().position(|x| x == s) {
                    top3[i] += 1;
                }
            }
            let p = cfg.examination.get(k).copied().unwrap_or(0.0)
                * quality.get(s).copied().unwrap_or(0.0);
            if clicks_rng.random_bool(p.clamp(0.0, 1.0)) {
                counts.click(*s, k32, 1);
                clicks += 1;
            }
        }
    }
    let est = counts.estimate();
    let estimated = LEARNED.map(|s| {
        est.sources
            .iter()
            .find(|e| e.source == s)
            .map_or(0.0, |e| e.debiased_ctr)
    });
    let top_total = top3.iter().sum::<u64>().max(1) as f64;
    let regret = oracle_expected - expected;
    SimReport {
        policy,
        seed: cfg.seed,
        impressions,
        clicks,
        ctr: clicks as f64 / impressions.max(1) as f64,
        expected_ctr: expected / impressions.max(1) as f64,
        regret,
        regret_share: if oracle_expected > 0.0 {
            regret / oracle_expected
        } else {
            0.0
        },
        top3_share: top3.map(|n| n as f64 / top_total),
        final_weights: match policy {
            Policy::Equal => SourceWeights::default(),
            Policy::Oracle => oracle,
            Policy::Bandit => Bandit::from_estimate(&est).mean_weights(),
        },
        estimated_ctr: estimated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bandit_moves_weight_to_the_best_source_and_beats_the_equal_blend() {
        let cfg = SimConfig {
            rounds: 2_000,
            ..SimConfig::default()
        };
        let equal = simulate(&cfg, Policy::Equal);
        let bandit = simulate(&cfg, Policy::Bandit);
        let w = bandit.final_weights;
        assert_eq!(w.cooccurrence, 1.0, "{w:?}");
        assert!(w.popularity < w.model && w.model < 0.9, "{w:?}");
        assert!(
            bandit.expected_ctr > equal.expected_ctr * 1.05,
            "bandit {} vs equal {}",
            bandit.expected_ctr,
            equal.expected_ctr
        );
        assert!(bandit.regret < equal.regret / 2.0);
        assert!(bandit.top3_share[1] > equal.top3_share[1]);
        // Debiased estimates land near the truth (0.10, 0.18, 0.05).
        let [m, c, p] = bandit.estimated_ctr;
        assert!(
            (c - 0.18).abs() < 0.03 && (m - 0.10).abs() < 0.03,
            "{m} {c} {p}"
        );
    }
}
