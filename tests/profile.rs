//! `mesh report cdnow` on the real CDNOW sample: every customer is
//! replayed, segmented, staged at the end of the calibration period and
//! counted in a first-purchase cohort.
use mesh_runtime::config::Env;

#[tokio::test]
async fn cdnow_report_has_segments_stages_and_cohorts() {
    let _e2e = mesh_e2e::shared().await;
    let path = mesh_testkit::shared_data().join("churn/CDNOW_sample.txt");
    let log = mesh_churn::data::PurchaseLog::read(&path).unwrap();
    let cfg = mesh_cli::node::MeshConfig::from_env(&Env::default()).unwrap();
    let r = mesh_profile::training::cdnow(&cfg.profile, cfg.partitions, &log, "1997-09-30", 4)
        .await
        .unwrap();
    // The sample: 2,357 customers, all first buying in 1997-Q1.
    assert_eq!(r.customers, 2357);
    assert_eq!(r.purchase_lines, 6919);
    assert_eq!(r.segments.len(), 4);
    assert_eq!(r.segments.iter().map(|s| s.size).sum::<usize>(), 2357);
    for s in &r.segments {
        assert!(s.size > 0 && !s.description.is_empty(), "{s:?}");
        assert!(s.centroid[1] >= 1.0, "every customer has an order: {s:?}");
    }
    // Stages at the cut-off: everyone has ordered, so nobody is new, and
    // the stages add up to the customers.
    assert_eq!(r.stages.values().sum::<usize>(), 2357);
    assert!(!r.stages.contains_key("new"), "{:?}", r.stages);
    assert!(
        r.stages["churned"] > 0 && r.stages["active"] > 0,
        "{:?}",
        r.stages
    );
    // Cohorts: January, February, March 1997; month 0 is everyone.
    let months: Vec<&str> = r.cohorts.iter().map(|c| c.month.as_str()).collect();
    assert_eq!(months, vec!["1997-01", "1997-02", "1997-03"]);
    assert_eq!(r.cohorts.iter().map(|c| c.users).sum::<u64>(), 2357);
    for c in &r.cohorts {
        assert_eq!(c.retention[0], 1.0);
        assert!(
            c.retention[1..].iter().all(|x| *x > 0.0 && *x < 0.5),
            "{c:?}"
        );
    }
}

/// `mesh train segments` on real servers: k-means over the live profile
/// state, stored as the next version, then assigned online — every user's
/// profile names a trained segment with its description, and the served
/// sizes match the trained ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trained_segments_are_stored_versioned_and_served() {
    let _e2e = mesh_e2e::shared().await;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mesh_e2e::{config, events, fold, publish_grpc, start, wait_for_profiles, Servers};
    use mesh_profile::engine::{ManualClock, Profiles};
    use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
    use mesh_proto::profile::v1::{BatchGetProfilesRequest, GetProfileRequest};

    let mut cfg = config(Servers::Real, "segments");
    cfg.profile.sweep_interval = Duration::from_millis(200);
    let (mesh, shutdown) = start(&cfg).await;
    let _stop = shutdown.clone().drop_guard();
    let evs = events("seg", 300, 6_000);
    assert_eq!(publish_grpc(&mesh, &evs, 500).await, (6_000, 0));
    let expected = fold(&evs);
    let bad = wait_for_profiles(mesh.profile.grpc_addr, &expected, Duration::from_secs(60)).await;
    assert!(bad.is_empty(), "{} users not applied", bad.len());

    // What `mesh train segments` does: train at "now" on the stored
    // features, store as the next version.
    let store = mesh.backends.store.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let reader = Profiles {
        clock: Arc::new(ManualClock::new(now)),
        ..Profiles::read_only(store.clone(), cfg.partitions)
    };
    let model = mesh_profile::training::train_on(&reader, 3, now)
        .await
        .unwrap();
    let first = mesh_profile::segments::store(&store, model.clone())
        .await
        .unwrap();
    let second = mesh_profile::segments::store(&store, model).await.unwrap();
    assert!(second.version > first.version, "versions advance");
    assert_eq!(
        second.segments.iter().map(|s| s.size).sum::<usize>(),
        expected.len(),
        "trained on every user"
    );
    let trained: HashMap<i32, &mesh_profile::segments::Segment> =
        second.segments.iter().map(|s| (s.id, s)).collect();

    // The service picks the model up at its next sweep tick.
    let mut c = ProfileServiceClient::connect(format!("http://{}", mesh.profile.grpc_addr))
        .await
        .unwrap();
    let req = BatchGetProfilesRequest {
        tenant_id: String::new(),
        users: expected
            .keys()
            .map(|(t, u)| GetProfileRequest {
                tenant_id: t.clone(),
                user_id: u.clone(),
            })
            .collect(),
    };
    let started = Instant::now();
    let profiles = loop {
        let got = c
            .batch_get_profiles(req.clone())
            .await
            .unwrap()
            .into_inner();
        if got.profiles.iter().all(|p| p.segment >= 0)
            || started.elapsed() > Duration::from_secs(20)
        {
            break got.profiles;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(profiles.len(), expected.len());
    let mut served: HashMap<i32, usize> = HashMap::new();
    for p in &profiles {
        let seg = trained.get(&p.segment).unwrap_or_else(|| {
            panic!(
                "user {} has segment {} of no trained model",
                p.user_id, p.segment
            )
        });
        assert_eq!(p.segment_description, seg.description);
        *served.entry(p.segment).or_default() += 1;
    }
    // Served a moment after training: recency moves by seconds, so only a
    // user on a boundary may change segment.
    for (id, s) in &trained {
        let n = served.get(id).copied().unwrap_or(0);
        assert!(
            n.abs_diff(s.size) <= 3,
            "segment {id}: trained {} users, served {n}",
            s.size
        );
    }
    shutdown.cancel();
}
