//! Issue 17, item 1, the CI-sized run of `mesh chaos`: ingest and profile
//! as processes of their own on the test broker, a Redis with AOF that the
//! command starts, killed and restored under simulator traffic. Every
//! accepted event must be in the profiles exactly once at the end: none
//! lost when Redis comes back from an older snapshot or empty (the
//! consumer re-reads from the store's watermark), none applied twice after
//! a `kill -9` (the watermark skips what was applied). The long run
//! (10 minutes, 1M events) is the command itself; see README "Chaos".
use std::process::{Command, Stdio};

#[test]
fn chaos_loses_nothing_and_applies_nothing_twice() {
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
        "2",
        "--snapshot-age",
        "4",
        "--json",
    ]);
    for (k, _) in std::env::vars() {
        if k.starts_with("MESH_") || k.starts_with("OTEL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("MESH_KAFKA_BROKERS", mesh_testkit::kafka_brokers())
        .env("MESH_PARTITIONS", "4")
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
    // FLUSHALL and the snapshot restore each made profile re-read
    // partitions from its store's watermark.
    assert!(n("store_resumes") > 0, "{r}");
    let faults = r["faults"].as_array().expect("faults");
    let what: Vec<&str> = faults.iter().filter_map(|f| f["what"].as_str()).collect();
    assert_eq!(
        faults.len(),
        7,
        "2 kills of each service and 3 store faults: {what:?}"
    );
    for w in [
        "FLUSHALL",
        "snapshot",
        "AOF",
        "kill -9 profile",
        "kill -9 ingest",
    ] {
        assert!(what.iter().any(|x| x.contains(w)), "{w} not among {what:?}");
    }
    for f in faults {
        assert!(
            f["recovery_s"].as_f64().is_some(),
            "no recovery after {f}: {r}"
        );
    }
    assert!(out.status.success(), "exit {:?}: {r}", out.status);
}
