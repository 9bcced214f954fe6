//! Smoke of `mesh bench processes --json`: the real binary starts one
//! process per service on the test broker and Redis, loads them briefly and
//! reports every process's memory and CPU, then stops them. A benchmark,
//! not a timed test: nothing here asserts how fast or small anything is.
use std::process::Command;

#[test]
fn bench_processes_reports_every_service_process() {
    let name = mesh_testkit::unique("benchproc");
    let out = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args([
            "bench",
            "processes",
            "--seconds",
            "2",
            "--rate",
            "200",
            "--json",
        ])
        .env("MESH_KAFKA_BROKERS", mesh_testkit::kafka_brokers())
        .env("MESH_REDIS_URL", mesh_testkit::redis_url())
        .env("MESH_TOPIC_PREFIX", &name)
        .env("MESH_REDIS_PREFIX", &name)
        .env("MESH_PARTITIONS", "2")
        .env("MESH_LOG", "error")
        .env_remove("MESH_FRAUD_MODEL")
        .env_remove("MESH_RECOMMEND_MODEL")
        .output()
        .expect("run the mesh binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mesh bench processes failed: {}\nstderr:\n{stderr}",
        out.status
    );
    // The children write to standard error: standard output is the report.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    let procs = report["processes"].as_array().expect("processes");
    let roles: Vec<&str> = procs.iter().map(|p| p["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "ingest",
            "profile",
            "fraud",
            "recommend",
            "churn",
            "logistics",
            "engage",
            "support"
        ]
    );
    for p in procs {
        for key in ["rss_ready_bytes", "rss_loaded_bytes", "peak_rss_bytes"] {
            let v = p[key].as_u64().unwrap_or(0);
            assert!(v > 1 << 20, "{key} of {}: {v}", p["role"]);
        }
        assert!(p["peak_rss_bytes"].as_u64() >= p["rss_loaded_bytes"].as_u64());
        assert!(p["load_cpu_secs"].as_f64().is_some_and(|c| c >= 0.0), "{p}");
    }
    assert!(report["accepted"].as_u64().unwrap_or(0) > 0, "{report}");
    // Every child was stopped: no process carries this run's topic prefix.
    let marker = format!("MESH_TOPIC_PREFIX={name}.");
    let left: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            pid.parse::<u32>().ok()?;
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            env.split(|b| *b == 0)
                .any(|kv| kv.starts_with(marker.as_bytes()))
                .then_some(pid)
        })
        .collect();
    assert!(left.is_empty(), "service processes left running: {left:?}");
}
