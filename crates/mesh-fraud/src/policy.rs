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
        let by_score = if base >= self.config.reject_at {
            Action::Reject
        } else if base >= self.config.review_at {
            Action::Review
        } else {
            Action::Approve
        };
        let action = strongest.max(by_score);
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
