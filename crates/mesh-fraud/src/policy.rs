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
    window: std::collections::VecDeque<f64>,
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

    /// Records one decided order's base score (non-finite scores are
    /// ignored); the threshold is recomputed every 50 scores.
    pub fn observe(&mut self, base_score: f64) {
        if !base_score.is_finite() {
            return;
        }
        if self.window.len() == self.capacity {
            self.window.pop_front();
        }
        self.window.push_back(base_score);
        self.since_update += 1;
        if self.window.len() >= self.min_scores
            && (self.since_update >= 50 || self.threshold.is_none())
        {
            self.since_update = 0;
            let mut v: Vec<f64> = self.window.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            // The smallest score with at most `share` of the window above it.
            let k = ((1.0 - self.share) * v.len() as f64).ceil() as usize;
            let t = v[k.min(v.len() - 1)];
            // Strictly above the k-th score: ties at the threshold are not
            // all sent to review.
            self.threshold = Some(t.next_up());
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
    fn ties_at_the_threshold_are_not_all_reviewed() {
        let mut b = ReviewBudget::new(0.05, 1_000).unwrap();
        for _ in 0..1_000 {
            b.observe(0.7);
        }
        assert!(b.review_at(&PolicyConfig::default()) > 0.7);
        assert!(b.threshold().is_some());
    }
}
