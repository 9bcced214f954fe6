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

/// A tansu 0.6 built with PostgreSQL storage: a broker that keeps its
/// topics, offsets and groups across a restart (the chaos test's).
pub fn tansu_postgres() -> String {
    require("MESH_TEST_TANSU_POSTGRES")
}

/// A PostgreSQL server for that broker's storage (`postgres://USER@HOST:PORT/`).
pub fn postgres_url() -> String {
    require("MESH_TEST_POSTGRES_URL")
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

/// Every key under `prefix` in the Redis at `url` whose name, hash fields
/// and values, set or sorted-set members, list items or string value
/// contain one of `needles`, except keys ending in `:<skip_suffix>` (the
/// erasure hashes, which name erased users by design). For erasure tests:
/// pass the user's name, and its hex form where values are hex-encoded
/// protobuf.
pub async fn store_traces(
    url: &str,
    prefix: &str,
    needles: &[&str],
    skip_suffix: &str,
) -> Vec<String> {
    let mut c = redis_connection(url).await;
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .expect("scan");
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let skip = format!(":{skip_suffix}");
    let mut found = Vec::new();
    for k in keys {
        if k.ends_with(&skip) {
            continue;
        }
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("type");
        let read = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(&k).clone(),
            "zset" => redis::cmd("ZRANGE").arg(&k).arg(0).arg(-1).clone(),
            "list" => redis::cmd("LRANGE").arg(&k).arg(0).arg(-1).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&k).clone(),
            _ => redis::cmd("GET").arg(&k).clone(),
        };
        // Bytes, not text: some values are binary (the id ledger's fields
        // are digests), and a name is searched in them as text.
        let items: Vec<Vec<u8>> = if kind == "string" {
            vec![read.query_async(&mut c).await.expect("get")]
        } else if matches!(kind.as_str(), "hash" | "zset" | "list" | "set") {
            read.query_async(&mut c).await.expect("read")
        } else {
            Vec::new()
        };
        let named = |s: &str| needles.iter().any(|n| s.contains(n));
        if named(&k) || items.iter().any(|i| named(&String::from_utf8_lossy(i))) {
            found.push(k);
        }
    }
    found
}

/// A test's own connection to the Redis at `url`, with a 30 s response
/// timeout: the tests share one Redis, and a SCAN or DUMP while other
/// tests write hard outlasts the client's 500 ms default.
pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)));
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis connects")
}
