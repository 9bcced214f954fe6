//! One decision for one order, the same on both paths: rules (reloaded
//! without restart), the supervised model and the anomaly model, over
//! features read as of the order's event time.
//!
//! Features use the order's event time as "now": the gRPC path and the
//! consumer then read the same windows for the same order, and a replay
//! decides as the live run did.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_fraud::eval::{build_dataset, fit_policy};
use mesh_fraud::risk::{detect_order, detect_payment, DetectorConfig, RiskKind};
use mesh_fraud::state::{entity_key, EntityKind};
use mesh_fraud::{
    reads_for, FeatureSource, FeatureVector, Order, PaymentEvent, Policy, PolicyConfig,
    ReadRequest, ReadResults, RiskAlert, RuleSet, RulesHandle, SimParams, StateOp, TrainParams,
};
use mesh_proto::fraud::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::metrics::{REVIEW_THRESHOLD, RULE_RELOADS, SCORE_SECONDS};
use crate::model::{model_version, ModelHandle};
use crate::state::{FeatureReader, Fetched, ReadSet};

/// An order scored: its features, the decision and the order's alerts.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Features before the order's own update.
    pub features: FeatureVector,
    /// The core's decision.
    pub decision: mesh_fraud::Decision,
    /// Alerts of the order detectors.
    pub alerts: Vec<RiskAlert>,
    /// The policy (models, thresholds) that decided.
    pub policy: Arc<Policy>,
}

/// Rules, models and the feature reader, shared by both paths.
pub struct Scorer {
    /// Models and thresholds, swapped when the model file changes.
    pub policy: Arc<ModelHandle>,
    /// Current rules, swapped on reload.
    pub rules: Arc<RulesHandle>,
    /// Detector thresholds.
    pub detectors: DetectorConfig,
    /// Reads feature state.
    pub reader: FeatureReader,
    /// Holds the share of orders sent to review (`MESH_FRAUD_REVIEW_BUDGET`);
    /// `None` = the configured threshold alone.
    pub budget: Option<std::sync::Mutex<mesh_fraud::ReviewBudget>>,
}

impl Scorer {
    /// Scores `order` on the stored state plus `overlay` (ops not applied
    /// yet; empty on the gRPC path). `path` labels the latency metric.
    pub async fn score(&self, order: &Order, overlay: &[StateOp], path: &str) -> Result<Scored> {
        let started = Instant::now();
        let fetched = self.fetch(&[order]).await?.pop();
        let fetched = fetched.ok_or(crate::error::Error::Corrupt {
            key: order.user_id.clone(),
            reason: "no reply to the order's reads".into(),
        })?;
        self.score_fetched(order, fetched, overlay, path, started)
    }

    /// Reads the stored features of `orders` in one round trip (a
    /// consumer batch's orders); each is then scored with
    /// [`score_fetched`](Self::score_fetched) and the ops before it.
    pub async fn fetch(&self, orders: &[&Order]) -> Result<Vec<Fetched>> {
        let sets = orders
            .iter()
            .map(|o| ReadSet {
                reqs: reads_for(o, o.ts),
                owner_key: entity_key(EntityKind::User, &o.user_id),
                owner_partition: mesh_bus::partition::partition_for(
                    &o.user_id,
                    self.reader.partitions,
                ),
            })
            .collect();
        self.reader.fetch(sets).await
    }

    /// Scores `order` on its fetched state plus `overlay`; `started` is when
    /// its read began (for the latency metric).
    pub fn score_fetched(
        &self,
        order: &Order,
        fetched: Fetched,
        overlay: &[StateOp],
        path: &str,
        started: Instant,
    ) -> Result<Scored> {
        let now = order.ts;
        let results = fetched.with_overlay(overlay);
        let features = mesh_fraud::features_from(order, &results, now)?;
        let mut policy = self.policy.current();
        if let Some(b) = &self.budget {
            let applied = b.lock().unwrap_or_else(|e| e.into_inner()).apply(&policy);
            REVIEW_THRESHOLD.set(applied.config.review_at);
            policy = Arc::new(applied);
        }
        let rules = self.rules.current();
        let decision = policy.decide(&features, &rules)?;
        // The consumer decides every order once; the gRPC path may score
        // the same order again, so only the consumer feeds the budget.
        if let (Some(b), "consumer") = (&self.budget, path) {
            let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
            if decision.action == mesh_fraud::Action::Reject {
                b.observe_rejected();
            } else {
                b.observe(mesh_fraud::ReviewBudget::compared_score(
                    &policy, &decision, &rules,
                ));
            }
        }
        let alerts = detect_order(order, &features, &self.detectors);
        SCORE_SECONDS
            .with_label_values(&[path])
            .observe(started.elapsed().as_secs_f64());
        Ok(Scored {
            features,
            decision,
            alerts,
            policy,
        })
    }

    /// Card-testing alerts of a declined payment, over the state including
    /// the payment's own update (in `overlay`).
    pub async fn payment_alerts(
        &self,
        p: &PaymentEvent,
        overlay: &[StateOp],
    ) -> Result<Vec<RiskAlert>> {
        let reqs = mesh_fraud::risk::payment_reads(p, p.ts);
        // No user hash among these reads: every key spans partitions.
        let results = self.reader.read(reqs, "", 0, overlay).await?;
        Ok(detect_payment(
            p,
            &Prefetched(results),
            p.ts,
            &self.detectors,
        )?)
    }

    /// The protobuf decision of a scored order.
    pub fn decision_proto(
        &self,
        env: &mesh_proto::events::v1::Envelope,
        order: &Order,
        scored: &Scored,
    ) -> pb::Decision {
        let d = &scored.decision;
        let rules = self.rules.current();
        let reasons = d
            .reasons
            .iter()
            .map(|code| pb::Reason {
                code: code.clone(),
                text: reason_text(&rules, &scored.policy.config, code, d),
            })
            .collect();
        let top_features = d
            .top_features
            .iter()
            .map(|(name, contribution)| pb::FeatureContribution {
                name: name.clone(),
                value: mesh_fraud::features::feature_index(name)
                    .map(|i| scored.features.0[i])
                    .unwrap_or_default(),
                contribution: *contribution,
            })
            .collect();
        pb::Decision {
            order_id: order.order_id.clone(),
            tenant_id: env.tenant_id.clone(),
            user_id: env.user_id.clone(),
            event_id: env.event_id.clone(),
            action: action_proto(d.action) as i32,
            score: d.score,
            model_score: d.model_score,
            anomaly_score: d.anomaly_score,
            reasons,
            top_features,
            occurred_at_ms: env.occurred_at_ms,
            model_version: model_version(&scored.policy).to_string(),
            // Filled by the caller once profile answered (`buyer`).
            buyer: None,
            degraded: Vec::new(),
        }
    }
}

/// Replies fetched ahead, served to the core's synchronous detectors.
struct Prefetched(ReadResults);

impl FeatureSource for Prefetched {
    fn read(&self, _requests: &[ReadRequest]) -> mesh_fraud::Result<ReadResults> {
        Ok(self.0.clone())
    }
}

fn reason_text(
    rules: &RuleSet,
    cfg: &PolicyConfig,
    code: &str,
    d: &mesh_fraud::Decision,
) -> String {
    match code {
        "MODEL_SCORE" => format!(
            "model probability {:.3} is at or above the review threshold {}",
            d.model_score.unwrap_or_default(),
            cfg.review_at
        ),
        "ANOMALY" => format!(
            "anomaly score {:.3} is unusual for this shop",
            d.anomaly_score.unwrap_or_default()
        ),
        _ => rules
            .rules
            .iter()
            .find(|r| r.code == code)
            .map(|r| r.description.clone())
            .unwrap_or_else(|| format!("rule {code}")),
    }
}

/// The protobuf action.
pub fn action_proto(a: mesh_fraud::Action) -> pb::Action {
    match a {
        mesh_fraud::Action::Approve => pb::Action::Approve,
        mesh_fraud::Action::Review => pb::Action::Review,
        mesh_fraud::Action::Reject => pb::Action::Reject,
    }
}

/// The name of an alert kind on the wire and in metrics.
pub fn alert_kind_name(k: RiskKind) -> &'static str {
    match k {
        RiskKind::AccountTakeover => "account_takeover",
        RiskKind::PromotionAbuse => "promotion_abuse",
        RiskKind::CardTesting => "card_testing",
    }
}

/// The simulator run used when no model file is given: small enough to
/// train in a few seconds, large enough to contain every fraud pattern.
pub fn quick_sim_params() -> SimParams {
    SimParams {
        users: 800,
        days: 10,
        ..SimParams::default()
    }
}

/// Loads the models from `path` (JSON written by `mesh train fraud` or the
/// core's `--save-models`), or trains them once on the seeded simulator.
pub fn load_policy(path: Option<&Path>) -> Result<Policy> {
    match path {
        Some(p) => {
            let policy = crate::model::load_file(p)?;
            tracing::info!(path = %p.display(), version = %model_version(&policy), "fraud models loaded");
            Ok(policy)
        }
        None => train_policy(&quick_sim_params()),
    }
}

/// The model handle of the service: the file at `path` when it exists,
/// watched for new versions; otherwise models trained once on the seeded
/// simulator (and, with a `path`, replaced as soon as the file appears).
pub fn open_models(path: Option<PathBuf>) -> Result<ModelHandle> {
    let handle = ModelHandle::new(Policy::default(), path.clone());
    if handle.reload_if_changed()? {
        return Ok(handle);
    }
    if let Some(p) = &path {
        tracing::warn!(path = %p.display(), "MESH_FRAUD_MODEL does not exist yet; serving simulator-trained models until it does");
    }
    handle.swap(train_policy(&quick_sim_params())?);
    Ok(handle)
}

/// Trains the models on the seeded simulator.
pub fn train_policy(params: &SimParams) -> Result<Policy> {
    let started = Instant::now();
    let ds = build_dataset(params)?;
    let policy = fit_policy(
        &ds.features,
        &ds.labels,
        &TrainParams::default(),
        PolicyConfig::default(),
    )?;
    tracing::info!(
        orders = ds.features.len(),
        fraud = ds.labels.iter().filter(|l| **l).count(),
        secs = started.elapsed().as_secs_f64(),
        "MESH_FRAUD_MODEL unset: trained the fraud models on the seeded simulator"
    );
    Ok(policy)
}

/// The rules of `path`, or the core's default rules when unset.
pub fn load_rules(path: Option<&Path>) -> Result<Arc<RulesHandle>> {
    Ok(Arc::new(match path {
        Some(p) => RulesHandle::load(p)?,
        None => RulesHandle::new(RuleSet::default_rules()),
    }))
}

/// Checks the rules file every `every` and swaps in changed, valid rules;
/// an invalid file is logged and the old rules stay.
pub fn spawn_rules_reloader(
    rules: Arc<RulesHandle>,
    path: PathBuf,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    mesh_runtime::service::spawn_periodic(
        "fraud rules reload",
        every,
        mesh_runtime::service::FirstRun::AtStart,
        shutdown,
        (rules, path),
        |(rules, path)| async move {
            let p = path.clone();
            match tokio::task::spawn_blocking(move || rules.reload_if_changed(&p)).await {
                Ok(Ok(true)) => {
                    RULE_RELOADS.with_label_values(&["reloaded"]).inc();
                    tracing::info!(path = %path.display(), "fraud rules reloaded");
                    Ok(())
                }
                Ok(Ok(false)) => Ok(()),
                Ok(Err(error)) => {
                    RULE_RELOADS.with_label_values(&["invalid"]).inc();
                    Err(format!(
                        "{}: {error}; keeping the old rules",
                        path.display()
                    ))
                }
                Err(error) => Err(format!("rules reload task failed: {error}")),
            }
        },
    )
}
