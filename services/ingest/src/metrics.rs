//! Metric names of the ingest service, defined once.
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};
use std::sync::LazyLock;

/// Events published, by front door.
pub static ACCEPTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_ingest_accepted_total",
        "Events validated and acknowledged by the broker",
        &["origin"]
    )
    .expect("metric registers once")
});
/// Events refused by validation, by front door.
pub static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_ingest_rejected_total",
        "Events refused by validation",
        &["origin"]
    )
    .expect("metric registers once")
});
/// Email addresses and phone numbers replaced in free text.
pub static REDACTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_ingest_redacted_total",
        "Email addresses and phone numbers replaced in free text (search, reviews, support messages) before publishing",
        &["origin"]
    )
    .expect("metric registers once")
});
/// Retried event ids not published again.
pub static DUPLICATES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_ingest_duplicates_total",
        "Retried event ids recognised and not published again",
        &["origin"]
    )
    .expect("metric registers once")
});
/// Id-ledger writes retried after a failure (a slow or restarting store).
pub static LEDGER_RETRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "mesh_ingest_ledger_retries_total",
        "Writes of published event ids to the id ledger retried after a failure"
    )
    .expect("metric registers once")
});
/// Records written to the dead-letter topic.
pub static DEAD_LETTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_ingest_dead_lettered_total",
        "Rejected inputs kept on the dead-letter topic",
        &["origin"]
    )
    .expect("metric registers once")
});
