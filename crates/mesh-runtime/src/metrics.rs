//! Metrics the runtime records for every service: gRPC calls by method,
//! state-store round trips and consumer lag. The lag gauge is filled by the
//! process that can see the groups (`mesh up`'s lag sampler).
use std::sync::LazyLock;

use prometheus::{
    register_counter_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
    CounterVec, HistogramVec, IntCounterVec, IntGaugeVec,
};

/// gRPC calls, by full method path and `grpc-status` code.
pub static GRPC_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_grpc_requests_total",
        "gRPC calls served, by method (/package.Service/Method) and grpc-status code",
        &["method", "code"]
    )
    .expect("metric registers once")
});

/// gRPC latency, by method.
pub static GRPC_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "mesh_grpc_request_seconds",
        "Seconds from a gRPC request to its response headers, by method",
        &["method"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .expect("metric registers once")
});

/// CPU time the handlers of a method spent, by method: the thread CPU time
/// of every poll of the call's future (decoding the request, the handler,
/// queuing its store and peer requests), not the connection's I/O tasks.
pub static GRPC_CPU_SECONDS: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "mesh_grpc_cpu_seconds_total",
        "Thread CPU seconds spent polling gRPC calls until their response headers, by method",
        &["method"]
    )
    .expect("metric registers once")
});

/// State-store round trip (a PING), by backend (`redis`, `memory`).
pub static STORE_PING_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "mesh_store_ping_seconds",
        "Seconds for one state-store round trip (PING), by backend",
        &["backend"],
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0]
    )
    .expect("metric registers once")
});

/// Records a consumer group has not yet processed, per partition.
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "mesh_consumer_lag",
        "Records behind the log end: high watermark minus committed offset, per group, topic and partition",
        &["group", "topic", "partition"]
    )
    .expect("metric registers once")
});

/// Log end offset per topic partition (records ever written).
pub static HIGH_WATERMARK: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "mesh_topic_high_watermark",
        "High watermark (log end offset) per topic and partition",
        &["topic", "partition"]
    )
    .expect("metric registers once")
});
