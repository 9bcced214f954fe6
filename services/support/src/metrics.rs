//! Metric names of the support service, defined once.
use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};
use std::sync::LazyLock;

/// Texts analysed, by source (`review`, `support_message`, `rpc`) and sentiment.
pub static FEEDBACK: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_support_feedback_total",
        "Texts analysed by source (review, support_message, rpc) and sentiment",
        &["source", "sentiment"]
    )
    .expect("metric registers once")
});

/// Assistant turns by outcome (`answer`, `ask`, `handoff`).
pub static TURNS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_support_assistant_turns_total",
        "Assistant turns by outcome (answer, ask, handoff)",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Searches by outcome (`hits`, `zero_result`).
pub static SEARCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_support_searches_total",
        "Catalog searches by outcome (hits, zero_result) and personalization (yes, no, degraded)",
        &["outcome", "personalized"]
    )
    .expect("metric registers once")
});

/// Negative-feedback spikes alerted.
pub static SPIKES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_support_negative_spikes_total",
        "Negative-feedback spike alerts published, by subject kind (sku, category)",
        &["kind"]
    )
    .expect("metric registers once")
});

/// 1 for the sentiment model serving, e.g. `en=ngram zh=ngram` or
/// `en=e5-small-q4:query+e5-small-enpt-q4:query+ngram zh=ngram`.
pub static SENTIMENT_MODEL: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "mesh_support_sentiment_model_info",
        "The sentiment model serving (label model); value 1",
        &["model"]
    )
    .expect("metric registers once")
});
