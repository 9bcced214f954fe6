//! The decision policy: rules, model score and anomaly score combined into one action with
//! reasons.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::features::FeatureVector;
use crate::iforest::IsolationForest;
use crate::model::FraudModel;
use crate::rules::{Action, RuleSet};

/// Thresholds and weights of the policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Combined score from which an order is reviewed.
    pub review_at: f64,
    /// Combined score from which an order is rejected.
    pub reject_at: f64,
    /// Weight of the anomaly score when a model exists (0..1); without a model the anomaly
    /// score is used alone (cold start).
    pub anomaly_weight: f64,
    /// Added to the score when a `review` rule matched.
    pub review_rule_boost: f64,
    /// Added to the score when a `reject` rule matched (the action is reject regardless).
    pub reject_rule_boost: f64,
    /// Number of top contributing features reported.
    pub top_features: usize,
    /// When true, a `review` rule does not force a review: it adds
    /// `review_rule_boost` and the combined score is compared with
    /// `review_at`, so one threshold (held at a review budget) decides every
    /// review. `reject` rules still reject.
    #[serde(default)]
    pub review_by_score: bool,
    /// With `review_by_score`: a review-rule hit lifts the combined score to
    /// at least this (the configured review threshold plus the rule boost),
    /// so a rule's order is reviewed while the queue has room and competes
    /// with the riskiest model scores when it does not.
    #[serde(default)]
    pub review_rule_score: Option<f64>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            review_at: 0.5,
            reject_at: 0.85,
            anomaly_weight: 0.05,
            review_rule_boost: 0.05,
            reject_rule_boost: 0.25,
            top_features: 3,
            review_by_score: false,
            review_rule_score: None,
        }
    }
}

/// The outcome for one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Combined risk score (higher is riskier; can exceed 1 when rules add to it).
    pub score: f64,
    /// The model/anomaly part of `score`, before rule boosts: what the
    /// reject threshold (and, unless `review_by_score`, the review
    /// threshold) compares with.
    #[serde(default)]
    pub base_score: f64,
    /// Supervised model probability, when a model is loaded.
    pub model_score: Option<f64>,
    /// Isolation-forest anomaly score, when an anomaly model is loaded.
    pub anomaly_score: Option<f64>,
    /// Reason codes: matched rules, then `MODEL_SCORE` / `ANOMALY` when those drove the action.
    pub reasons: Vec<String>,
    /// Features that pushed the model score up most, with their logit contributions.
    pub top_features: Vec<(String, f64)>,
}

/// Rules + models + thresholds. Cheap to clone (models are shared).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Thresholds and weights.
    pub config: PolicyConfig,
    /// Supervised model, if trained.
    pub model: Option<Arc<FraudModel>>,
    /// Anomaly model, if fitted.
    pub anomaly: Option<Arc<IsolationForest>>,
}

impl Policy {
    /// Decide on one order.
    pub fn decide(&self, features: &FeatureVector, rules: &RuleSet) -> Result<Decision> {
        let hits = rules.evaluate(features);
        let model_score = match &self.model {
            Some(m) => Some(m.score(&features.0)?),
            None => None,
        };
        let anomaly_score = self.anomaly.as_ref().map(|a| a.score(&features.0));
        // the anomaly score sits around 0.5 for ordinary points: rescale its upper half to 0..1
        let anomaly01 = anomaly_score.map(|a| ((a - 0.5) * 2.0).clamp(0.0, 1.0));
        let base = match (model_score, anomaly01) {
            (Some(m), Some(a)) => {
                (1.0 - self.config.anomaly_weight) * m + self.config.anomaly_weight * a
            }
            (Some(m), None) => m,
            (None, Some(a)) => a,
            (None, None) => 0.0,
        };
        let strongest = hits
            .iter()
            .map(|h| h.action)
            .max()
            .unwrap_or(Action::Approve);
        let boost = match strongest {
            Action::Reject => self.config.reject_rule_boost,
            Action::Review => self.config.review_rule_boost,
            Action::Approve => 0.0,
        };
        let score = base + boost;
        let reviewed = match (self.config.review_by_score, strongest) {
            (true, Action::Review) => score.max(self.config.review_rule_score.unwrap_or(score)),
            (true, _) => score,
            (false, _) => base,
        };
        let by_score = if base >= self.config.reject_at {
            Action::Reject
        } else if reviewed >= self.config.review_at {
            Action::Review
        } else {
            Action::Approve
        };
        let forced = match strongest {
            Action::Review if self.config.review_by_score => Action::Approve,
            a => a,
        };
        let action = forced.max(by_score);
        let mut reasons: Vec<String> = hits.iter().map(|h| h.code.clone()).collect();
        if by_score > Action::Approve {
            if model_score.is_some_and(|m| m >= self.config.review_at) {
                reasons.push("MODEL_SCORE".to_string());
            }
            if anomaly01.is_some_and(|a| a >= self.config.review_at) {
                reasons.push("ANOMALY".to_string());
            }
        }
        let top_features = match &self.model {
            Some(m) if action > Action::Approve => {
                m.top_contributions(&features.0, self.config.top_features)?
            }
            _ => Vec::new(),
        };
        Ok(Decision {
            action,
            score,
            base_score: base,
            model_score,
            anomaly_score,
            reasons,
            top_features,
        })
    }
}

/// The fitted models of a policy as one versioned artifact the service loads at start.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyModels {
    /// Supervised model (carries its own format version).
    pub model: FraudModel,
    /// Anomaly model.
    pub anomaly: IsolationForest,
}

impl PolicyModels {
    /// Serialize to JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Deserialize from JSON, checking the model format version.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let model_json = value
            .get("model")
            .map(ToString::to_string)
            .ok_or_else(|| crate::error::Error::Model("artifact has no `model`".into()))?;
        // checks the format version before the full decode
        FraudModel::from_json(&model_json)?;
        Ok(serde_json::from_value(value)?)
    }

    /// JSON of a policy's fitted models, in the [`PolicyModels`] layout.
    pub fn json_of(policy: &Policy) -> Result<String> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            model: &'a FraudModel,
            anomaly: &'a IsolationForest,
        }
        match (&policy.model, &policy.anomaly) {
            (Some(model), Some(anomaly)) => {
                Ok(serde_json::to_string(&Borrowed { model, anomaly })?)
            }
            _ => Err(crate::error::Error::Model(
                "policy has no fitted model and anomaly model to save".into(),
            )),
        }
    }

    /// A policy over these models.
    pub fn into_policy(self, config: PolicyConfig) -> Policy {
        Policy {
            config,
            model: Some(Arc::new(self.model)),
            anomaly: Some(Arc::new(self.anomaly)),
        }
    }
}

/// Holds the share of orders sent to manual review at a budget: the review
/// threshold is the `1 - share` quantile of the recent base scores, never
/// below the configured `review_at` (the budget is a ceiling, not a quota).
/// A review team has a capacity; a model whose scores bunch above
/// `review_at` (a start-up model trained on traffic unlike the live one)
/// would otherwise send a sixth of all orders to it.
#[derive(Debug, Clone)]
pub struct ReviewBudget {
    /// Largest share of orders reviewed on the model score, in (0, 1).
    pub share: f64,
    /// Compared scores of the recent orders; `None` for a rejected one.
    window: std::collections::VecDeque<Option<f64>>,
    capacity: usize,
    /// Scores needed before the budget takes over from `review_at`.
    min_scores: usize,
    since_update: usize,
    threshold: Option<f64>,
}

impl ReviewBudget {
    /// A budget of `share` over the last `capacity` scores.
    pub fn new(share: f64, capacity: usize) -> Result<Self> {
        if !(share > 0.0 && share < 1.0) {
            return Err(crate::Error::Invalid(format!(
                "review budget {share} is not a share in (0, 1)"
            )));
        }
        let capacity = capacity.max(100);
        Ok(ReviewBudget {
            share,
            window: std::collections::VecDeque::with_capacity(capacity),
            capacity,
            min_scores: (capacity / 10).clamp(50, 500),
            since_update: 0,
            threshold: None,
        })
    }

    /// Records one decided, not rejected order's compared score (non-finite
    /// scores are ignored); the threshold is recomputed after every score
    /// while the window fills, then every 50 scores.
    pub fn observe(&mut self, score: f64) {
        if score.is_finite() {
            self.push(Some(score));
        }
    }

    /// Records a rejected order: it counts toward the orders the budget is a
    /// share of, but never competes for review (the queue is for orders a
    /// human can still stop; a model whose top scores are all rejected must
    /// still fill its review budget from the orders below them).
    pub fn observe_rejected(&mut self) {
        self.push(None);
    }

    fn push(&mut self, score: Option<f64>) {
        if self.window.len() == self.capacity {
            self.window.pop_front();
        }
        self.window.push_back(score);
        self.since_update += 1;
        // While the window fills, every score moves the threshold: the
        // budget holds from the first orders (a start-up model whose scores
        // all sit above `review_at` must not flood the queue meanwhile);
        // with fewer than 1/share orders only a new highest score is
        // reviewed.
        if self.window.len() < self.min_scores
            || self.since_update >= 50
            || self.threshold.is_none()
        {
            self.since_update = 0;
            let mut v: Vec<f64> = self.window.iter().flatten().copied().collect();
            if v.is_empty() {
                return;
            }
            v.sort_by(f64::total_cmp);
            // Reviews allowed in a window like this one.
            let allowed = (self.share * self.window.len() as f64).floor() as usize;
            self.threshold = Some(if allowed >= v.len() {
                f64::NEG_INFINITY
            } else {
                // Strictly above the score `allowed` places from the top:
                // ties at the threshold are not all sent to review.
                v[v.len() - 1 - allowed].next_up()
            });
        }
    }

    /// `policy` held at this budget: every review goes through one
    /// threshold (the budget's, never below the configured one), and a
    /// review rule lifts the score to the configured review level plus its
    /// boost instead of forcing a review. The fraud service and
    /// `mesh eval fraud` both decide with it.
    pub fn apply(&self, policy: &Policy) -> Policy {
        let mut p = policy.clone();
        p.config.review_rule_score =
            Some(policy.config.review_at + policy.config.review_rule_boost);
        p.config.review_at = self.review_at(&policy.config);
        p.config.review_by_score = true;
        p
    }

    /// The score the review threshold of `applied` (a policy from
    /// [`ReviewBudget::apply`]) compared for `decision`: what the budget
    /// observes.
    pub fn compared_score(applied: &Policy, decision: &Decision, rules: &RuleSet) -> f64 {
        let reviews = |code: &String| {
            rules
                .rules
                .iter()
                .any(|r| &r.code == code && r.action == Action::Review)
        };
        match applied.config.review_rule_score {
            Some(r) if decision.reasons.iter().any(reviews) => decision.score.max(r),
            _ => decision.score,
        }
    }

    /// The threshold the budget asks for, once enough scores were seen.
    pub fn threshold(&self) -> Option<f64> {
        self.threshold
    }

    /// The review threshold to use with `config`: the budget's, but never
    /// below `config.review_at`.
    pub fn review_at(&self, config: &PolicyConfig) -> f64 {
        self.threshold
            .map_or(config.review_at, |t| t.max(config.review_at))
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn a_narrow_band_of_scores_still_reviews_at_most_the_budget() {
        // The live symptom: every score in 0.54..0.58, review_at 0.5.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut b = ReviewBudget::new(0.02, 5_000).unwrap();
        let cfg = PolicyConfig::default();
        let mut reviewed = 0;
        let n = 20_000;
        for i in 0..n {
            let s = rng.random_range(0.54..0.58);
            if i >= 1_000 && s >= b.review_at(&cfg) {
                reviewed += 1;
            }
            b.observe(s);
        }
        let share = reviewed as f64 / (n - 1_000) as f64;
        assert!(share <= 0.025 && share > 0.01, "{share}");
    }

    #[test]
    fn quiet_traffic_is_not_reviewed_to_fill_the_budget() {
        let mut b = ReviewBudget::new(0.02, 1_000).unwrap();
        for i in 0..2_000 {
            b.observe(0.1 + (i % 10) as f64 * 0.01);
        }
        assert_eq!(b.review_at(&PolicyConfig::default()), 0.5);
        assert!(ReviewBudget::new(0.0, 10).is_err());
        assert!(ReviewBudget::new(f64::NAN, 10).is_err());
        // Before enough scores, the configured threshold holds.
        let fresh = ReviewBudget::new(0.02, 1_000).unwrap();
        assert_eq!(fresh.review_at(&PolicyConfig::default()), 0.5);
    }

    #[test]
    fn the_budget_holds_from_the_first_order() {
        // A start-up model: every score above review_at.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let cfg = PolicyConfig::default();
        for seed_round in 0..20 {
            let mut b = ReviewBudget::new(0.02, 1_000).unwrap();
            let mut reviewed = 0;
            for _ in 0..1_000 {
                let s = rng.random_range(0.54..0.58);
                if s >= b.review_at(&cfg) {
                    reviewed += 1;
                }
                b.observe(s);
            }
            // 2% of 1,000 plus the new highest scores of the warm-up
            // (about ln 100 ≈ 5).
            assert!(
                reviewed <= 40,
                "round {seed_round}: {reviewed} of 1000 reviewed"
            );
        }
    }

    #[test]
    fn rejected_orders_leave_the_review_budget_to_the_orders_below() {
        // 10% of orders rejected outright: the 2% review budget still goes
        // to the riskiest of the rest.
        let mut b = ReviewBudget::new(0.02, 1_000).unwrap();
        let cfg = PolicyConfig {
            review_at: 0.0,
            ..PolicyConfig::default()
        };
        let mut reviewed = 0;
        for i in 0..5_000 {
            if i % 10 == 0 {
                b.observe_rejected();
                continue;
            }
            let s = (i % 997) as f64 / 997.0;
            if i >= 1_000 && s >= b.review_at(&cfg) {
                reviewed += 1;
            }
            b.observe(s);
        }
        let share = reviewed as f64 / 4_000.0;
        assert!(share > 0.012 && share <= 0.025, "{share}");
    }

    #[test]
    fn ties_at_the_threshold_are_not_all_reviewed() {
        let mut b = ReviewBudget::new(0.05, 1_000).unwrap();
        for _ in 0..1_000 {
            b.observe(0.7);
        }
        assert!(b.review_at(&PolicyConfig::default()) > 0.7);
        assert!(b.threshold().is_some());
    }
}
