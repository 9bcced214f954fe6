//! Issue 17, item 1, the CI-sized run of `mesh chaos`: every service as a
//! process of its own on a broker with PostgreSQL storage and a Redis with
//! AOF that the command starts, each service killed and restarted under
//! simulator traffic, Redis killed, restored from an older snapshot and
//! flushed, and the broker killed and restarted on its storage. Every
//! accepted event must be in the profiles exactly once at the end, and
//! every service must have applied every record of its input topics
//! exactly once: none lost when Redis comes back from an older snapshot or
//! empty (consumers re-read from the store's watermark), none applied twice
//! after a `kill -9` (the watermark skips what was applied). The long run
//! (10 minutes, 1M events) is the command itself; see README "Chaos".
use std::process::{Command, Stdio};

#[test]
fn chaos_loses_nothing_and_applies_nothing_twice() {
    let _e2e = mesh_e2e::exclusive_blocking();
    let bin = mesh_e2e::mesh_binary();
    let mut cmd = Command::new(&bin);
    cmd.args([
        "chaos",
        "--seconds",
        "60",
        "--rate",
        "200",
        "--users",
        "150",
        "--kills",
        "1",
        "--snapshot-age",
        "4",
        "--json",
    ]);
    // tansu 0.6 with PostgreSQL storage, built once by the test command
    // (scripts/lib.sh, ensure_tansu_postgres), and the server it stores on.
    let tansu = mesh_testkit::tansu_postgres();
    let postgres = mesh_testkit::postgres_url();
    cmd.args(["--tansu", &tansu, "--tansu-storage", &postgres]);
    for (k, _) in std::env::vars() {
        if k.starts_with("MESH_") || k.starts_with("OTEL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("MESH_PARTITIONS", "4")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let out = cmd.output().expect("mesh chaos runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("mesh chaos printed no report ({e}): {stdout}"));
    eprintln!("{r:#}");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert_eq!(n("sent"), 12_000, "{r}");
    assert_eq!(n("dead_lettered"), 120, "every 100th event is invalid: {r}");
    assert_eq!(n("accepted"), 11_880, "{r}");
    assert_eq!(n("lost"), 0, "{r}");
    assert_eq!(n("double_applied"), 0, "{r}");
    assert_eq!(n("users_mismatched"), 0, "{r}");
    // Every consumer applied every record of its topics exactly once.
    assert_eq!(n("records_lost"), 0, "{r}");
    assert_eq!(n("records_double_applied"), 0, "{r}");
    assert_eq!(n("records_behind"), 0, "every record was applied: {r}");
    let services = r["services"].as_array().expect("services");
    assert_eq!(services.len(), 7, "every consumer is tallied: {r}");
    for s in services {
        // Logistics reads orders and decisions only (~4,300 records here);
        // the others read every event.
        assert!(
            s["records"].as_u64().unwrap_or(0) >= 2_000,
            "{} tallied against its topics: {s}",
            s["service"]
        );
        assert_eq!(s["records"], s["applied"], "{s}");
        assert_eq!(s["behind"], 0, "{s}");
    }
    // FLUSHALL and the snapshot restore made the consumers re-read
    // partitions from their store's watermark.
    assert!(n("store_resumes") > 0, "{r}");
    let faults = r["faults"].as_array().expect("faults");
    let what: Vec<&str> = faults.iter().filter_map(|f| f["what"].as_str()).collect();
    assert_eq!(
        faults.len(),
        12,
        "one kill of each of 8 services, 3 store faults and the broker's restart: {what:?}"
    );
    for w in [
        "kill -9 the broker",
        "FLUSHALL",
        "snapshot",
        "AOF",
        "kill -9 ingest",
        "kill -9 profile",
        "kill -9 churn",
        "kill -9 recommend",
        "kill -9 fraud",
        "kill -9 logistics",
        "kill -9 engage",
        "kill -9 support",
    ] {
        assert!(what.iter().any(|x| x.contains(w)), "{w} not among {what:?}");
    }
    for f in faults {
        assert!(
            f["recovery_s"].as_f64().is_some(),
            "no recovery after {f}: {r}"
        );
    }
    // The command exits non-zero on any loss.
    assert!(out.status.success(), "exit {:?}: {r}", out.status);
}
