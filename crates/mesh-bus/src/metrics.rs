//! Metric names of the bus, defined once.
use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, HistogramVec,
    IntCounter, IntCounterVec,
};
use std::sync::LazyLock;

/// Records produced, by topic and outcome (`ok`, `error`).
pub static PRODUCED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_bus_produced_total",
        "Records produced, by topic and outcome",
        &["topic", "outcome"]
    )
    .expect("metric registers once")
});

/// Consumers that left their group and joined it again after holding no
/// partition for `ConsumerConfig::rejoin_when_empty`.
pub static GROUP_REJOINS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "mesh_bus_group_rejoins_total",
        "Consumers that rejoined their group after holding no partition for too long"
    )
    .expect("metric registers once")
});

/// Producers replaced after a fatal error (a fenced producer id after a
/// broker restart, say).
pub static PRODUCER_RENEWED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "mesh_bus_producer_renewed_total",
        "Producers replaced with a new one after a fatal error"
    )
    .expect("metric registers once")
});

/// Records consumed and handled, by consumer group and topic.
pub static CONSUMED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_bus_consumed_total",
        "Records handled by a consumer, by group and topic",
        &["group", "topic"]
    )
    .expect("metric registers once")
});

/// Handler failures (the batch is retried), by group.
pub static HANDLER_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_bus_handler_errors_total",
        "Batches a handler failed (retried), by group",
        &["group"]
    )
    .expect("metric registers once")
});

/// Times a consumer found its store behind what it had applied (a flush,
/// a restore from an older snapshot, a failover to a lagging replica) or
/// behind the committed offset at assignment, and resumed from the store's
/// watermark, by group.
pub static STORE_RESUMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_bus_store_resumes_total",
        "Partitions re-read from the store's watermark because the store was behind, by group",
        &["group"]
    )
    .expect("metric registers once")
});

/// Records a consumer gave up on and dead-lettered (they failed on their
/// own while the handler's dependencies answered), by group and topic.
pub static POISON_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_bus_poison_records_total",
        "Records dead-lettered after failing on their own, by group and source topic",
        &["group", "topic"]
    )
    .expect("metric registers once")
});

/// Seconds from a record's broker timestamp to the end of its handling.
pub static PROCESS_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "mesh_bus_end_to_end_seconds",
        "Seconds from a record's timestamp to its effect being applied, by group",
        &["group"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registers once")
});

/// Seconds a handler spent on one batch.
pub static BATCH_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "mesh_bus_batch_seconds",
        "Seconds a handler took for one partition batch, by group",
        &["group"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]
    )
    .expect("metric registers once")
});
