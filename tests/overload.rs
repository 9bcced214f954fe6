//! Overload and deadlines (issue #17, item 3), against the real broker and
//! Redis: past the in-flight bound a call is refused at once with
//! RESOURCE_EXHAUSTED naming the bound (not queued), the service serves
//! again as soon as the burst is over, and a call whose deadline has passed
//! makes no calls to other services.
//!
//! The guard is process-wide ([`mesh_runtime::auth::install`]), so this file
//! holds one test, with an in-flight bound of 2.
use std::time::{Duration, Instant};

use mesh_e2e::{config, start, Servers};
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::RecommendRequest;
use mesh_runtime::auth::{self, Guard};
use tonic::Code;

fn request(i: usize) -> RecommendRequest {
    RecommendRequest {
        tenant_id: "overload".into(),
        user_id: format!("u-{}", i % 50),
        n: 10,
        ..Default::default()
    }
}

/// `mesh_peer_deadline_skipped_total` for recommend's calls to profile.
async fn skipped(admin: std::net::SocketAddr) -> u64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("mesh_peer_deadline_skipped_total") && l.contains("peer=\"profile\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_in_flight_bound_calls_are_refused_at_once_and_deadlines_are_kept() {
    auth::install(Guard::open(2, None));
    let cfg = config(Servers::Real, "overload");
    let (mesh, shutdown) = start(&cfg).await;
    let addr = format!("http://{}", mesh.recommend.grpc_addr);
    let channels: Vec<_> = (0..8)
        .map(|_| {
            tonic::transport::Endpoint::from_shared(addr.clone())
                .unwrap()
                .connect_lazy()
        })
        .collect();
    // Warm up: the first calls connect and load the catalog.
    let mut c = RecommendServiceClient::new(channels[0].clone());
    for i in 0..3 {
        c.recommend(request(i)).await.expect("recommend answers");
    }

    // 400 calls at once over 8 connections, against a bound of 2.
    let started = Instant::now();
    let calls = (0..400).map(|i| {
        let mut c = RecommendServiceClient::new(channels[i % channels.len()].clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = c.recommend(request(i)).await;
            (r.map(|_| ()), t.elapsed())
        })
    });
    let results = futures::future::join_all(calls).await;
    let burst = started.elapsed();
    let (mut ok, mut refused, mut refused_slowest) = (0, 0, Duration::ZERO);
    let mut other = Vec::new();
    for r in results {
        let (r, took) = r.unwrap();
        match r {
            Ok(()) => ok += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(
                    s.message().contains("in flight")
                        && s.message().contains("MESH_GRPC_MAX_INFLIGHT"),
                    "the refusal names the bound: {}",
                    s.message()
                );
                refused += 1;
                refused_slowest = refused_slowest.max(took);
            }
            Err(s) => other.push(format!("{:?} {}", s.code(), s.message())),
        }
    }
    eprintln!(
        "400 calls against an in-flight bound of 2: {ok} served, {refused} refused (slowest refusal {refused_slowest:?}), burst {burst:?}"
    );
    assert!(other.is_empty(), "other answers: {other:?}");
    assert!(
        refused > 0,
        "400 concurrent calls never passed a bound of 2"
    );
    assert!(ok > 0, "some calls are served during the burst");
    // After the burst the service serves again.
    c.recommend(request(7))
        .await
        .expect("serves after the burst");

    // A call whose deadline has passed by the time recommend would ask
    // profile makes no call to profile.
    let before = skipped(mesh.admin_addr).await;
    for i in 0..20 {
        let mut r = tonic::Request::new(request(i));
        r.set_timeout(Duration::from_nanos(1));
        let _ = c.recommend(r).await;
    }
    let after = skipped(mesh.admin_addr).await;
    eprintln!("expired deadlines: {} peer calls skipped", after - before);
    assert!(after > before, "an expired call still asked profile");
    c.recommend(request(8))
        .await
        .expect("serves after expired calls");

    shutdown.cancel();
    mesh.stopped(Duration::from_secs(10)).await;
}
