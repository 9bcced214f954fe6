//! Smoke of `mesh bench all --quick --json`: the real binary against the
//! test broker and Redis prints every headline key with a finite value.
//! A benchmark, not a timed test: nothing here asserts how fast anything is.
use std::process::Command;
use std::time::Instant;

#[test]
fn bench_all_quick_prints_every_key() {
    let brokers = mesh_testkit::kafka_brokers();
    let redis = mesh_testkit::redis_url();
    let name = mesh_testkit::unique("benchall");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["bench", "all", "--quick", "--json"])
        .env("MESH_KAFKA_BROKERS", &brokers)
        .env("MESH_REDIS_URL", &redis)
        .env("MESH_TOPIC_PREFIX", &name)
        .env("MESH_REDIS_PREFIX", &name)
        .env("MESH_PARTITIONS", "4")
        .env("MESH_ADMIN_ADDR", "127.0.0.1:0")
        // Logs go to stdout; the report is the last JSON document there.
        .env("MESH_LOG", "error")
        .env_remove("MESH_FRAUD_MODEL")
        .env_remove("MESH_RECOMMEND_MODEL")
        .output()
        .expect("run the mesh binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mesh bench all --quick --json failed: {}\nstderr:\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .rfind("\n{\n")
        .map_or(stdout.as_ref(), |i| &stdout[i + 1..]);
    let report: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("stdout does not end with one JSON document ({e}):\n{stdout}"));
    for key in mesh_cli::bench_all::KEYS {
        let v = report.get(key).and_then(serde_json::Value::as_f64);
        assert!(
            v.is_some_and(f64::is_finite),
            "{key} is missing or not a finite number: {:?}",
            report.get(key)
        );
    }
    // Ingest's capacity is the best of its closed-loop levels, each run.
    let levels = report["ingest"]["throughput_levels"]
        .as_array()
        .expect("ingest.throughput_levels");
    let publishers: Vec<u64> = levels
        .iter()
        .map(|l| l["publishers"].as_u64().expect("publishers"))
        .collect();
    assert_eq!(publishers, [16, 64, 128], "{levels:?}");
    let best = levels
        .iter()
        .map(|l| l["events_per_sec"].as_f64().expect("events_per_sec"))
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(levels.iter().all(|l| l["events"].as_u64() == Some(2_000)));
    assert_eq!(
        report["ingest"]["ingest_events_per_sec"].as_f64(),
        Some(best)
    );
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 8, "one row per benchmark: {rows:?}");
    // Cost as work grows: one level per quick user count, each with state
    // for most of its users and the memory read; the largest replayed.
    let levels = report["scale"]["levels"].as_array().expect("scale.levels");
    let users: Vec<u64> = levels
        .iter()
        .map(|l| l["users"].as_u64().expect("users"))
        .collect();
    assert_eq!(users, [1_000, 4_000], "{levels:?}");
    for l in levels {
        let with_state = l["users_with_state"].as_u64().expect("users_with_state");
        let n = l["users"].as_u64().unwrap();
        // One event per user on average, users drawn at random: ~63% of
        // them have state.
        assert!(with_state > n / 2 && with_state <= n, "{l}");
        assert!(l["redis_bytes_per_user"].as_f64().unwrap() > 100.0, "{l}");
        assert!(l["redis_used_memory_bytes"].as_u64().unwrap() > 0, "{l}");
        assert!(l["process_rss_after_bytes"].as_u64().unwrap() > 0, "{l}");
    }
    assert_eq!(
        report["scale"]["replay_records"].as_u64(),
        Some(4_000),
        "{}",
        report["scale"]
    );
    // Every service's keys after the reads stage, by scope.
    let scopes: Vec<&str> = report["services_redis"]["scopes"]
        .as_array()
        .expect("services_redis.scopes")
        .iter()
        .map(|s| s["scope"].as_str().expect("scope"))
        .collect();
    for want in ["profile", "recommend", "fraud"] {
        assert!(scopes.contains(&want), "{want} not in {scopes:?}");
    }
    assert!(report["services_redis"]["items"].as_u64().unwrap() > 0);
    eprintln!(
        "mesh bench all --quick took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
