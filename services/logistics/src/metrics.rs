//! Metric names of the logistics service, defined once.
use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter_vec, Histogram, HistogramVec,
    IntCounterVec,
};
use std::sync::LazyLock;

/// Order events applied, by event kind.
pub static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_logistics_events_total",
        "Order events folded into wave and demand state, by kind",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Plans stored, by method (`solve`, `replan`) and outcome (`ok`, `error`, `stale`).
pub static PLANS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_logistics_plans_total",
        "Wave plans computed, by method and outcome",
        &["method", "outcome"]
    )
    .expect("metric registers once")
});

/// Seconds to load, optimise and store one wave plan, by method.
pub static PLAN_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "mesh_logistics_plan_seconds",
        "Seconds to load, optimise and store one wave plan",
        &["method"],
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registers once")
});

/// Alerts published, by kind.
pub static ALERTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_logistics_alerts_total",
        "Exception and stock-out alerts published, by kind",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Relative excess of a replanned wave over a fresh solve of the same stops,
/// observed at each comparison.
pub static PLAN_DRIFT: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "mesh_logistics_plan_drift_ratio",
        "Replanned distance over a fresh solve's, minus 1, at each drift check",
        vec![-0.05, 0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    )
    .expect("metric registers once")
});

/// Drift checks, by outcome (`adopted`: the fresh plan replaced the replan,
/// `kept`, `failed`).
pub static REOPTIMIZATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_logistics_reoptimizations_total",
        "Comparisons of a replanned wave with a fresh solve, by outcome",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Stock changes applied from the order stream, by kind (`sold`, `restored`).
pub static STOCK_MOVES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_logistics_stock_moves_total",
        "Order lines applied to warehouse stock from the stream, by kind",
        &["kind"]
    )
    .expect("metric registers once")
});

/// What retention removed, by kind (`waves`, `orders`, `series_days`).
pub static EXPIRED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_logistics_expired_total",
        "Past waves, their orders and old demand days removed by retention, by kind",
        &["kind"]
    )
    .expect("metric registers once")
});
