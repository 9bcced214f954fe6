//! Metric names of the engage service, defined once.
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::LazyLock;

/// Offer decisions by campaign kind and outcome (`offer`, `control`,
/// `frequency_cap`, `not_in_audience`).
pub static OFFERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_offer_decisions_total",
        "Offer decisions by outcome (offer, control, frequency_cap, not_in_audience) and offer",
        &["outcome", "offer"]
    )
    .expect("metric registers once")
});

/// Responses recorded, by kind (`click`, `conversion`) and source (`rpc`,
/// `stream`).
pub static RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_responses_total",
        "Offer responses recorded by kind (click, conversion) and source (rpc, stream)",
        &["kind", "source"]
    )
    .expect("metric registers once")
});

/// Price changes published, by the constraint that bound them ("" = none).
pub static PRICE_CHANGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_price_changes_total",
        "Quoted price changes published, by binding constraint (none, floor, ceiling, max_change, min_margin)",
        &["bound_by"]
    )
    .expect("metric registers once")
});
