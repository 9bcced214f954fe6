//! Metric names of the churn service, defined once.
use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, Histogram, IntCounter,
    IntCounterVec,
};
use std::sync::LazyLock;

/// Order- and user-topic records applied (redeliveries excluded).
pub static APPLIED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "mesh_churn_records_applied_total",
        "Order- and user-topic records applied to the user summaries, redeliveries excluded"
    )
    .expect("metric registers once")
});
/// Events dropped because their event id was already folded.
pub static DUPLICATES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "mesh_churn_duplicate_events_total",
        "Events dropped because their event id was already folded"
    )
    .expect("metric registers once")
});
/// Hysteresis transitions: `fired`, `rearmed`, `republished`.
pub static ALERTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_churn_alerts_total",
        "Churn alert transitions by kind (fired, rearmed, republished)",
        &["kind"]
    )
    .expect("metric registers once")
});
/// Retention actions published, by action.
pub static ACTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_churn_retention_actions_total",
        "Retention actions published for treated users",
        &["action"]
    )
    .expect("metric registers once")
});
/// Users whose return after an alert was recorded.
pub static RETURNS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "mesh_churn_returns_total",
        "Alerted users who ordered again"
    )
    .expect("metric registers once")
});
/// Users scored by sweeps.
pub static SWEPT: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("mesh_churn_swept_users_total", "Users re-scored by sweeps")
        .expect("metric registers once")
});
/// Duration of one full sweep.
pub static SWEEP_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "mesh_churn_sweep_seconds",
        "Duration of one sweep over every partition"
    )
    .expect("metric registers once")
});
