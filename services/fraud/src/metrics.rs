//! Metric names of the fraud service, defined once.
use std::sync::LazyLock;

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};

/// Decisions made, by path (`grpc`, `consumer`) and action.
pub static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_fraud_decisions_total",
        "Orders decided, by path (grpc, consumer) and action",
        &["path", "action"]
    )
    .expect("metric registers once")
});

/// Time to read features and decide one order, by path.
pub static SCORE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "mesh_fraud_score_seconds",
        "Feature read plus decision time of one order, by path",
        &["path"],
        vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5]
    )
    .expect("metric registers once")
});

/// Risk alerts published, by kind.
pub static ALERTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_fraud_alerts_total",
        "Risk alerts published, by kind",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Rules file checks, by outcome (`reloaded`, `invalid`).
pub static RULE_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_fraud_rule_reloads_total",
        "Rules file reloads, by outcome (reloaded, invalid)",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Reviews resolved, by label.
pub static RESOLUTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_fraud_review_resolutions_total",
        "Reviews resolved, by label",
        &["label"]
    )
    .expect("metric registers once")
});

/// Chargebacks (refunds with reason `chargeback`), by the decision their
/// order had (`APPROVE` = fraud that got through, `UNKNOWN` = no decision
/// stored): the missed fraud behind live recall at the review budget.
pub static CHARGEBACKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_fraud_chargebacks_total",
        "Chargebacks received, by the decision their order had",
        &["decision"]
    )
    .expect("metric registers once")
});

/// Model file loads, by outcome (`loaded`, `failed`).
pub static MODEL_LOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_fraud_model_loads_total",
        "Fraud model file loads, by outcome (loaded, failed)",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// The configured review budget (share of orders), 0 when none.
pub static REVIEW_BUDGET: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::register_gauge!(
        "mesh_fraud_review_budget",
        "Largest share of orders sent to manual review (MESH_FRAUD_REVIEW_BUDGET; 0 = none)"
    )
    .expect("metric registers once")
});

/// The review threshold in use (the budget's, or the configured one).
pub static REVIEW_THRESHOLD: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::register_gauge!(
        "mesh_fraud_review_threshold",
        "Base score from which an order goes to manual review (held at MESH_FRAUD_REVIEW_BUDGET of orders)"
    )
    .expect("metric registers once")
});
