//! Helpers shared by the mesh's tests.
//!
//! Tests talk to the real servers the test command (`scripts/test.sh`)
//! starts: a Kafka-protocol broker (`MESH_TEST_KAFKA_BROKERS`) and a Redis
//! server (`MESH_TEST_REDIS_URL`). A test run without them fails with a
//! message saying how to start them; it never skips silently.
//!
//! Every test takes names of its own from [`unique`], so tests run in
//! parallel against the same servers.
#![forbid(unsafe_code)]

/// Bootstrap servers of the test broker.
pub fn kafka_brokers() -> String {
    require("MESH_TEST_KAFKA_BROKERS")
}

/// URL of the test Redis server.
pub fn redis_url() -> String {
    require("MESH_TEST_REDIS_URL")
}

fn require(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: run the tests with `scripts/test.sh`, which starts a broker and a \
             Redis on free loopback ports and sets MESH_TEST_KAFKA_BROKERS and MESH_TEST_REDIS_URL"
        ),
    }
}

/// A name no other test uses: `<base>-<random>`; valid as a Kafka topic,
/// group id and Redis key prefix.
pub fn unique(base: &str) -> String {
    format!(
        "{base}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The repository's shared data folder (`../shared/data` beside the
/// checkout, or `MESH_SHARED_DATA`); panics with a clear message if missing.
pub fn shared_data() -> std::path::PathBuf {
    let dir = std::env::var_os("MESH_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
        });
    assert!(
        dir.is_dir(),
        "shared data folder {} not found (set MESH_SHARED_DATA)",
        dir.display()
    );
    dir
}
