//! Metric names of the recommend service, defined once.
use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, HistogramVec,
    IntCounter, IntCounterVec,
};
use std::sync::LazyLock;

/// Interactions applied from events, by kind (`view`, `cart`, `order`).
pub static INTERACTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_recommend_interactions_total",
        "User-item interactions applied to the live signals, by kind",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Co-occurrence rows cut back to `MESH_RECOMMEND_COOC_KEEP` neighbours.
pub static COOC_ROWS_CUT: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "mesh_recommend_cooc_rows_cut_total",
        "Co-occurrence rows cut back to their MESH_RECOMMEND_COOC_KEEP strongest neighbours"
    )
    .expect("metric registers once")
});

/// gRPC requests, by method and outcome (`ok` or the status code).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_recommend_requests_total",
        "gRPC requests, by method and outcome",
        &["method", "outcome"]
    )
    .expect("metric registers once")
});

/// Seconds to answer one gRPC request, by method.
pub static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "mesh_recommend_request_seconds",
        "Seconds to answer a gRPC request, by method",
        &["method"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]
    )
    .expect("metric registers once")
});

/// Model file (re)loads, by outcome (`loaded`, `failed`).
pub static MODEL_LOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_recommend_model_loads_total",
        "Model artifact loads from MESH_RECOMMEND_MODEL, by outcome",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Items returned by `Recommend`, by source and slot (0 = top).
pub static IMPRESSIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_recommend_impressions_total",
        "Recommended items returned by Recommend, by source and slot",
        &["source", "slot"]
    )
    .expect("metric registers once")
});

/// Clicks on recommended items counted from the events, by source.
pub static CLICKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_recommend_clicks_total",
        "Clicks on recommended items (product views carrying an attribution), by source",
        &["source"]
    )
    .expect("metric registers once")
});
