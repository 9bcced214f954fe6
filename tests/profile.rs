//! `mesh report cdnow` on the real CDNOW sample: every customer is
//! replayed, segmented, staged at the end of the calibration period and
//! counted in a first-purchase cohort.
use mesh_runtime::config::Env;

#[tokio::test]
async fn cdnow_report_has_segments_stages_and_cohorts() {
    let path = mesh_testkit::shared_data().join("churn/CDNOW_sample.txt");
    let log = mesh_churn::data::PurchaseLog::read(&path).unwrap();
    let cfg = mesh_cli::node::MeshConfig::from_env(&Env::default()).unwrap();
    let r = mesh_cli::cmd_profile::cdnow(&cfg, &log, "1997-09-30", 4)
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
