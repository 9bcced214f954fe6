//! End-to-end evaluation on simulated streams: live features in time order, a time split,
//! models trained on the past, scored on the future, per scorer and per injected pattern.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::features::{features, FeatureVector};
use crate::iforest::IsolationForest;
use crate::metrics::{pr_curve, Metrics};
use crate::model::{train, FraudModel, ModelKind, TrainParams};
use crate::policy::{Policy, PolicyConfig, PolicyModels};
use crate::risk::{detect_order, detect_payment, DetectorConfig, RiskKind};
use crate::rules::{Action, RuleSet};
use crate::sim::{simulate, SimParams, LEGIT, PATTERNS};
use crate::state::MemoryFeatures;
use crate::updates::updates;

/// Metrics of one scorer, overall and per pattern (pattern orders vs legitimate orders).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScorerReport {
    /// Scorer name: `rules`, `logistic`, `forest`, `gbdt`, `anomaly`, `policy`.
    pub scorer: String,
    /// All holdout orders.
    pub overall: Metrics,
    /// Each pattern's orders against the legitimate ones.
    pub per_pattern: BTreeMap<String, Metrics>,
}

/// Alert counts of a detector kind over the whole stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AlertStats {
    /// Alerts raised.
    pub alerts: usize,
    /// Alerts raised on an event that belongs to a fraud pattern.
    pub on_fraud: usize,
    /// Alerts raised on an event of the matching pattern.
    pub on_matching_pattern: usize,
}

/// Result of [`eval_simulated`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimEvalReport {
    /// Simulator parameters.
    pub params: SimParams,
    /// Events streamed.
    pub events: usize,
    /// Orders scored.
    pub orders: usize,
    /// Fraud orders per pattern (whole stream).
    pub fraud_orders: BTreeMap<String, usize>,
    /// Train orders (earliest 80%).
    pub train_orders: usize,
    /// Holdout orders (latest 20%).
    pub holdout_orders: usize,
    /// Fraud orders in the holdout.
    pub holdout_fraud: usize,
    /// The policy's model (`logistic`, `forest`, `blend` or `gbdt`).
    pub policy_model: String,
    /// With `--model auto`: each candidate's PR-AUC on the latest tenth of the training orders
    /// (fitted on the rest), which chose `policy_model`.
    pub model_selection: Vec<(String, f64)>,
    /// Scorers on the holdout.
    pub scorers: Vec<ScorerReport>,
    /// Policy actions on the holdout: `approve`/`review`/`reject` → (orders, of which fraud).
    pub policy_actions: BTreeMap<String, (usize, usize)>,
    /// Detector alerts over the whole stream.
    pub detectors: BTreeMap<String, AlertStats>,
    /// Seconds spent streaming events through updates and features.
    pub feature_secs: f64,
    /// Seconds spent training the models.
    pub train_secs: f64,
    /// Where the trained models were written (`--save-models`), if anywhere.
    pub saved_models: Option<String>,
    /// The policy held at a review budget on the holdout, decided in time
    /// order the way the service does.
    pub budget: BudgetReport,
}

/// The policy at a review budget: what a review team of that capacity gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BudgetReport {
    /// Largest share of orders sent to review.
    pub share: f64,
    /// Orders decided.
    pub orders: usize,
    /// Share of orders sent to review.
    pub review_rate: f64,
    /// Share of orders rejected outright.
    pub reject_rate: f64,
    /// Fraud among the reviewed orders.
    pub precision: f64,
    /// Fraud among the reviewed and rejected orders.
    pub precision_flagged: f64,
    /// Fraud orders reviewed or rejected / all fraud orders.
    pub recall: f64,
    /// Fraud orders reviewed / all fraud orders.
    pub recall_reviewed: f64,
    /// Review threshold at the end of the holdout.
    pub final_threshold: f64,
}

/// Decides `xs` in order with `policy` held at a `share` review budget
/// ([`crate::ReviewBudget`], the service's window of 1,000 scores) and
/// counts what the review team sees against the labels `ys`. The budget's
/// window first sees the decisions of `before` (the orders that preceded,
/// as a running service has), which are not counted.
pub fn budget_report(
    policy: &Policy,
    rules: &RuleSet,
    before: &[FeatureVector],
    xs: &[FeatureVector],
    ys: &[bool],
    share: f64,
) -> Result<BudgetReport> {
    let mut budget = crate::ReviewBudget::new(share, 1_000)?;
    for x in &before[before.len().saturating_sub(1_000)..] {
        let applied = budget.apply(policy);
        let d = applied.decide(x, rules)?;
        if d.action == Action::Reject {
            budget.observe_rejected();
        } else {
            budget.observe(crate::ReviewBudget::compared_score(&applied, &d, rules));
        }
    }
    let (mut reviewed, mut rejected, mut tp_review, mut tp_reject) =
        (0usize, 0usize, 0usize, 0usize);
    let mut threshold = policy.config.review_at;
    for (x, y) in xs.iter().zip(ys) {
        let applied = budget.apply(policy);
        threshold = applied.config.review_at;
        let d = applied.decide(x, rules)?;
        if d.action == Action::Reject {
            budget.observe_rejected();
        } else {
            budget.observe(crate::ReviewBudget::compared_score(&applied, &d, rules));
        }
        match d.action {
            Action::Review => {
                reviewed += 1;
                tp_review += usize::from(*y);
            }
            Action::Reject => {
                rejected += 1;
                tp_reject += usize::from(*y);
            }
            Action::Approve => {}
        }
    }
    let n = xs.len().max(1) as f64;
    let pos = ys.iter().filter(|y| **y).count().max(1) as f64;
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(BudgetReport {
        share,
        orders: xs.len(),
        review_rate: reviewed as f64 / n,
        reject_rate: rejected as f64 / n,
        precision: ratio(tp_review, reviewed),
        precision_flagged: ratio(tp_review + tp_reject, reviewed + rejected),
        recall: (tp_review + tp_reject) as f64 / pos,
        recall_reviewed: tp_review as f64 / pos,
        final_threshold: threshold,
    })
}

/// Precision–recall curve of one scorer on the holdout (kept beside the
/// report: up to [`PR_CURVE_POINTS`] points per scorer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrCurve {
    /// `rules`, the policy's model (`logistic`, `forest`, `blend` or `gbdt`), `policy`.
    pub scorer: String,
    /// `(recall, precision)` by descending score threshold.
    pub points: Vec<(f64, f64)>,
}

/// Most points kept per precision–recall curve.
pub const PR_CURVE_POINTS: usize = 200;

/// Steps reported by [`eval_simulated_with`]: features, training, scoring.
pub const EVAL_STEPS: u64 = 3;

/// Orders with their features, computed live from the event stream.
pub struct Dataset {
    /// Feature vectors, in time order.
    pub features: Vec<FeatureVector>,
    /// Ground truth.
    pub labels: Vec<bool>,
    /// Pattern names.
    pub patterns: Vec<String>,
    /// Events streamed.
    pub events: usize,
    /// Detector statistics.
    pub detectors: BTreeMap<String, AlertStats>,
}

fn kind_name(k: RiskKind) -> &'static str {
    match k {
        RiskKind::AccountTakeover => "account_takeover",
        RiskKind::PromotionAbuse => "promo_abuse",
        RiskKind::CardTesting => "card_testing",
    }
}

/// Stream the simulator through `updates` + `features` (features before the order's own
/// update) and run the detectors.
pub fn build_dataset(params: &SimParams) -> Result<Dataset> {
    let mut mem = MemoryFeatures::new();
    let det = DetectorConfig::default();
    let mut ds = Dataset {
        features: Vec::new(),
        labels: Vec::new(),
        patterns: Vec::new(),
        events: 0,
        detectors: BTreeMap::new(),
    };
    for ev in simulate(params)? {
        ds.events += 1;
        let ts = ev.event.ts();
        mem.expire(ts);
        let mut alerts = Vec::new();
        if let Event::Order(o) = &ev.event {
            let f = features(o, &mem, ts)?;
            alerts = detect_order(o, &f, &det);
            ds.features.push(f);
            ds.labels.push(ev.fraud);
            ds.patterns.push(ev.pattern.clone());
        }
        mem.apply(&updates(&ev.event));
        if let Event::Payment(p) = &ev.event {
            if !p.success {
                alerts = detect_payment(p, &mem, ts, &det)?;
            }
        }
        // one count per kind per event
        let mut kinds: Vec<RiskKind> = alerts.iter().map(|a| a.kind).collect();
        kinds.dedup();
        for k in kinds {
            let s = ds.detectors.entry(kind_name(k).to_string()).or_default();
            s.alerts += 1;
            s.on_fraud += usize::from(ev.fraud);
            s.on_matching_pattern += usize::from(ev.pattern == kind_name(k));
        }
    }
    Ok(ds)
}

fn report(name: &str, scores: &[f64], labels: &[bool], patterns: &[String]) -> ScorerReport {
    let mut per_pattern = BTreeMap::new();
    for p in PATTERNS {
        let idx: Vec<usize> = (0..scores.len())
            .filter(|i| patterns[*i] == p || patterns[*i] == LEGIT)
            .collect();
        if idx.iter().any(|i| patterns[*i] == p) {
            let s: Vec<f64> = idx.iter().map(|i| scores[*i]).collect();
            let l: Vec<bool> = idx.iter().map(|i| labels[*i]).collect();
            per_pattern.insert(p.to_string(), Metrics::compute(&s, &l));
        }
    }
    ScorerReport {
        scorer: name.to_string(),
        overall: Metrics::compute(scores, labels),
        per_pattern,
    }
}

/// Fit the models of a policy on training rows.
pub fn fit_policy(
    train_x: &[FeatureVector],
    train_y: &[bool],
    params: &TrainParams,
    config: PolicyConfig,
) -> Result<Policy> {
    let model: FraudModel = train(train_x, train_y, params)?;
    let rows: Vec<Vec<f64>> = train_x.iter().map(|f| f.0.clone()).collect();
    let iso = IsolationForest::fit(&rows, 100, 256, params.seed)?;
    Ok(Policy {
        config,
        model: Some(Arc::new(model)),
        anomaly: Some(Arc::new(iso)),
    })
}

/// The `--simulate` evaluation.
pub fn eval_simulated(
    params: &SimParams,
    rules: &RuleSet,
    train_params: &TrainParams,
    save_models: Option<&std::path::Path>,
) -> Result<SimEvalReport> {
    Ok(eval_simulated_with(
        params,
        rules,
        train_params,
        save_models,
        crate::DEFAULT_REVIEW_BUDGET,
        &|_, _| {},
    )?
    .0)
}

/// [`eval_simulated`], calling `progress(done, EVAL_STEPS)` after each step and
/// also returning the holdout precision–recall curves of the rules, the
/// policy's model and the policy.
pub fn eval_simulated_with(
    params: &SimParams,
    rules: &RuleSet,
    train_params: &TrainParams,
    save_models: Option<&std::path::Path>,
    review_budget: f64,
    progress: &dyn Fn(u64, u64),
) -> Result<(SimEvalReport, Vec<PrCurve>)> {
    let t0 = Instant::now();
    let ds = build_dataset(params)?;
    progress(1, EVAL_STEPS);
    let feature_secs = t0.elapsed().as_secs_f64();
    let n = ds.features.len();
    let split = n * 4 / 5;
    let (train_x, test_x) = ds.features.split_at(split);
    let (train_y, test_y) = ds.labels.split_at(split);
    let test_p = &ds.patterns[split..];
    if !train_y.iter().any(|l| *l) || !test_y.iter().any(|l| *l) {
        return Err(Error::Invalid(format!(
            "the simulation produced too little fraud to train and test ({} orders); raise --users, --days or the rates",
            n
        )));
    }
    let t1 = Instant::now();
    let policy = fit_policy(train_x, train_y, train_params, PolicyConfig::default())?;
    let saved_models = match save_models {
        Some(path) => {
            let json = PolicyModels::json_of(&policy)?;
            std::fs::write(path, json).map_err(|e| Error::io(path, e))?;
            Some(path.display().to_string())
        }
        None => None,
    };
    let train_secs = t1.elapsed().as_secs_f64();
    progress(2, EVAL_STEPS);
    let model = policy.model.as_ref().expect("fitted above");
    let iso = policy.anomaly.as_ref().expect("fitted above");

    let rule_scores: Vec<f64> = test_x
        .iter()
        .map(|f| RuleSet::score(&rules.evaluate(f)))
        .collect();
    let lr: Vec<f64> = test_x
        .iter()
        .map(|f| model.score_lr(&f.0))
        .collect::<Result<_>>()?;
    let rows: Vec<Vec<f64>> = test_x.iter().map(|f| f.0.clone()).collect();
    let rf = model.score_rf_batch(&rows)?;
    let gb: Vec<f64> = test_x
        .iter()
        .map(|f| model.score_gbdt(&f.0))
        .collect::<Result<_>>()?;
    let an: Vec<f64> = test_x.iter().map(|f| iso.score(&f.0)).collect();
    let mut pol = Vec::with_capacity(test_x.len());
    let mut policy_actions: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (f, y) in test_x.iter().zip(test_y) {
        let d = policy.decide(f, rules)?;
        pol.push(d.score);
        let e = policy_actions.entry(d.action.to_string()).or_default();
        e.0 += 1;
        e.1 += usize::from(*y);
    }
    for a in [Action::Approve, Action::Review, Action::Reject] {
        policy_actions.entry(a.to_string()).or_default();
    }
    let (model_name, model_scores): (&str, Vec<f64>) = match model.primary {
        ModelKind::Logistic => ("logistic", lr.clone()),
        ModelKind::Forest => ("forest", rf.clone()),
        ModelKind::Blend => (
            "blend",
            lr.iter().zip(&rf).map(|(a, b)| (a + b) / 2.0).collect(),
        ),
        ModelKind::Gbdt => ("gbdt", gb.clone()),
        ModelKind::Auto => (
            "auto",
            test_x
                .iter()
                .map(|f| model.score(&f.0))
                .collect::<Result<_>>()?,
        ),
    };
    let curves = [
        ("rules", &rule_scores),
        (model_name, &model_scores),
        ("policy", &pol),
    ]
    .into_iter()
    .map(|(scorer, s)| PrCurve {
        scorer: scorer.to_string(),
        points: pr_curve(s, test_y, PR_CURVE_POINTS),
    })
    .collect();
    progress(3, EVAL_STEPS);
    let scorers = vec![
        report("rules", &rule_scores, test_y, test_p),
        report("logistic", &lr, test_y, test_p),
        report("forest", &rf, test_y, test_p),
        report("gbdt", &gb, test_y, test_p),
        report("anomaly", &an, test_y, test_p),
        report("policy", &pol, test_y, test_p),
    ];
    let budget = budget_report(&policy, rules, train_x, test_x, test_y, review_budget)?;
    let mut fraud_orders = BTreeMap::new();
    for (p, l) in ds.patterns.iter().zip(&ds.labels) {
        if *l {
            *fraud_orders.entry(p.clone()).or_insert(0) += 1;
        }
    }
    let report = SimEvalReport {
        params: params.clone(),
        events: ds.events,
        orders: n,
        fraud_orders,
        train_orders: split,
        holdout_orders: n - split,
        holdout_fraud: test_y.iter().filter(|l| **l).count(),
        policy_model: model.primary.name().to_string(),
        model_selection: model
            .selection
            .iter()
            .map(|(k, v)| (k.name().to_string(), *v))
            .collect(),
        scorers,
        policy_actions,
        detectors: ds.detectors,
        feature_secs,
        train_secs,
        saved_models,
        budget,
    };
    Ok((report, curves))
}
