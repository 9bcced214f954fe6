//! The backbone end to end: ingest over gRPC and HTTP, through the broker,
//! into profile state, exactly once — across crashes, duplicate publishes
//! and a replay into an empty store.
use std::time::Duration;

use mesh_e2e::{
    config, events, fold, publish_grpc, publish_http, start, wait_for_profiles, Servers,
};
use mesh_store::StateStore;

async fn ten_thousand_events_end_to_end(servers: Servers) {
    let cfg = config(servers, "e2e");
    let (mesh, shutdown) = start(&cfg).await;
    let evs = events("e2e", 400, 10_000);
    let (grpc_half, http_half) = evs.split_at(5_000);
    let (g, h) = tokio::join!(
        publish_grpc(&mesh, grpc_half, 250),
        publish_http(&mesh, http_half, 250)
    );
    assert_eq!((g.0 as u64 + h.0, g.1 as u64 + h.1), (10_000, 0));
    let expected = fold(&evs);
    let bad = wait_for_profiles(mesh.profile.grpc_addr, &expected, Duration::from_secs(90)).await;
    assert!(
        bad.is_empty(),
        "{} of {} users differ from the offline fold, e.g. {:?}",
        bad.len(),
        expected.len(),
        &bad[..bad.len().min(5)]
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_to_end_on_real_servers() {
    ten_thousand_events_end_to_end(Servers::Real).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_to_end_on_embedded_default() {
    ten_thousand_events_end_to_end(Servers::Embedded).await;
}

/// Kill the consumer mid-batch, restart it, publish everything again with
/// the same ids, then flush the store and replay: every time the state
/// equals the offline fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_duplicates_and_replay_keep_exactly_once() {
    let cfg = config(Servers::Real, "crash");
    let (mesh, shutdown) = start(&cfg).await;
    let evs = events("crash", 300, 6_000);
    let expected = fold(&evs);

    // A second consumer in the same group we can kill without warning.
    let deps = mesh.backends.profile_deps(&cfg);
    let victim_stop = tokio_util::sync::CancellationToken::new();
    let (victim_assigned, victim) =
        mesh_profile::start_consumer(&cfg.profile, &deps, victim_stop.clone());
    // Kill it once the group settled with both members, so it owns work.
    let settle = std::time::Instant::now();
    while (victim_assigned.partitions() == 0 || mesh.profile.assigned.partitions() == 0)
        && settle.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let publisher = tokio::spawn({
        let evs = evs.clone();
        let addr = mesh.ingest.grpc_addr;
        async move {
            let mut c =
                mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient::connect(
                    format!("http://{addr}"),
                )
                .await
                .unwrap();
            for chunk in evs.chunks(200) {
                c.publish(mesh_proto::ingest::v1::PublishRequest {
                    events: chunk.to_vec(),
                })
                .await
                .unwrap();
            }
        }
    });
    // Abort while records are flowing: no graceful flush, no commit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim.abort();
    let _ = victim.await;
    publisher.await.unwrap();
    let bad = wait_for_profiles(mesh.profile.grpc_addr, &expected, Duration::from_secs(90)).await;
    assert!(
        bad.is_empty(),
        "after the crash {} users differ, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );

    // The same events again, same ids: recognised, not published twice.
    let (accepted, dups) = publish_grpc(&mesh, &evs, 500).await;
    assert_eq!((accepted, dups), (0, 6_000));
    let bad = wait_for_profiles(mesh.profile.grpc_addr, &expected, Duration::from_secs(5)).await;
    assert!(
        bad.is_empty(),
        "after re-publishing {} users differ",
        bad.len()
    );

    // Stop the live consumer, flush the state, rebuild it from offset 0.
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), mesh.profile.consumer).await;
    let cleared = mesh
        .backends
        .store
        .clear_scope(mesh_profile::handler::SCOPE)
        .await
        .unwrap();
    assert!(cleared > 0);
    assert!(matches!(mesh.backends.store, StateStore::Redis(_)));
    let report = mesh_cli::replay::replay_profile(&cfg, &mesh.backends, false)
        .await
        .expect("replay");
    assert!(report.records >= 6_000, "{report:?}");
    // Serve reads from the rebuilt store.
    let reader = tokio_util::sync::CancellationToken::new();
    let svc = mesh_proto::profile::v1::profile_service_server::ProfileServiceServer::new(
        mesh_profile::grpc::ProfileGrpc {
            store: mesh.backends.store.clone(),
            partitions: cfg.partitions,
        },
    );
    let (router, _) = mesh_runtime::grpc::server();
    let (addr, _) = mesh_runtime::grpc::serve(
        "127.0.0.1:0".parse().unwrap(),
        router.add_service(svc),
        reader.clone(),
    )
    .await
    .unwrap();
    let bad = wait_for_profiles(addr, &expected, Duration::from_secs(10)).await;
    assert!(bad.is_empty(), "after replay {} users differ", bad.len());
    reader.cancel();
}
