//! The whole mesh on a Redis Cluster (issue 13, item 5): `MESH_REDIS_URL`
//! set to several seed URLs selects the cluster client; events published
//! through ingest are folded into profiles exactly as on one server, and
//! the state is spread over every master.
use std::time::Duration;

use mesh_cli::node::MeshConfig;
use mesh_e2e::{events, fold, publish_grpc, start, wait_for_profiles};
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;

/// Seed URLs of the test Redis Cluster started by `scripts/test.sh`; a
/// missing one fails the test with how to get it, never skips it.
fn redis_cluster_url() -> String {
    match std::env::var("MESH_TEST_REDIS_CLUSTER_URL") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "MESH_TEST_REDIS_CLUSTER_URL is not set: run the tests with `scripts/test.sh`, which \
             starts a three-master Redis Cluster on free loopback ports and sets it to the seed \
             URLs (redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3)"
        ),
    }
}

/// Keys under `prefix` on the node at `url` (`redis://host:port`).
fn keys_on(url: &str, prefix: &str) -> usize {
    let port = url.rsplit(':').next().unwrap_or_default().trim_matches('/');
    let out = std::process::Command::new("redis-cli")
        .args(["-p", port, "--scan", "--pattern", &format!("{prefix}:*")])
        .output()
        .expect("redis-cli is installed with redis-server");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn profiles_fold_exactly_once_on_a_redis_cluster() {
    let _e2e = mesh_e2e::shared().await;
    let urls = redis_cluster_url();
    let name = mesh_testkit::unique("cluster");
    let cfg = MeshConfig::ephemeral(
        Some(mesh_testkit::kafka_brokers()),
        Some(urls.clone()),
        &name,
    );
    let (mesh, shutdown) = start(&cfg).await;
    let _stop = shutdown.clone().drop_guard();
    assert!(
        matches!(&mesh.backends.store, mesh_store::StateStore::Redis(s) if s.is_cluster()),
        "several seed URLs select the cluster client"
    );

    let evs = events("cluster", 200, 3_000);
    // Twice, with the same ids: the ledger (on the cluster too) drops the
    // second publish.
    assert_eq!(publish_grpc(&mesh, &evs, 250).await, (3_000, 0));
    assert_eq!(publish_grpc(&mesh, &evs, 250).await, (0, 3_000));
    let expected = fold(&evs);
    let bad = wait_for_profiles(mesh.profile.grpc_addr, &expected, Duration::from_secs(90)).await;
    assert!(
        bad.is_empty(),
        "{} of {} users differ from the offline fold, e.g. {:?}",
        bad.len(),
        expected.len(),
        &bad[..bad.len().min(5)]
    );

    // One user's answer in full, against the fold.
    let ((tenant, user), want) = expected.iter().max_by_key(|(_, c)| c.events).unwrap();
    let mut c = ProfileServiceClient::connect(format!("http://{}", mesh.profile.grpc_addr))
        .await
        .unwrap();
    let p = c
        .get_profile(GetProfileRequest {
            tenant_id: tenant.clone(),
            user_id: user.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (p.events, p.orders, &p.events_by_type),
        (want.events, want.orders, &want.by_type)
    );

    // The partitions' hash tags spread the state over every master.
    for url in urls.split(',') {
        assert!(
            keys_on(url, &cfg.key_prefix) > 0,
            "no key of this mesh on {url}"
        );
    }
    shutdown.cancel();
}
