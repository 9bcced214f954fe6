//! Metric names of the profile service, defined once.
use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, IntCounterVec};

/// Lifecycle transitions published, by new stage.
pub static TRANSITIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_profile_transitions_total",
        "Lifecycle transitions published, by new stage",
        &["stage"]
    )
    .expect("metric registers once")
});
