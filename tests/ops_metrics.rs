//! Every metric a Grafana dashboard (`deploy/grafana/dashboards/*.json`) or
//! a Prometheus alert rule (`deploy/prometheus/alerts.yml`) references is
//! exported by a running mesh: start it on the real servers, drive valid
//! and invalid events plus a purchase history with lapsed buyers, let one
//! churn sweep and one wave plan run, scrape `/metrics`, compare.
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use mesh_e2e::{config, publish_grpc, start, Servers};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every `mesh_*` metric name in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bmesh_[a-z0-9_]+").expect("literal regex");
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

/// (file, expression) of every dashboard target and alert rule.
fn referenced_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = repo().join("deploy/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "overview, eight services and models: {files:?}"
    );
    for f in files {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).expect("dashboard JSON");
        assert!(d["uid"].is_string(), "{} has no uid", f.display());
        for p in d["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().expect("targets") {
                let e = t["expr"].as_str().expect("expr").to_string();
                out.push((f.display().to_string(), e));
            }
        }
    }
    let alerts = repo().join("deploy/prometheus/alerts.yml");
    let y: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&alerts).unwrap()).expect("alerts YAML");
    let mut names = BTreeSet::new();
    for g in y["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"].as_str().expect("alert name");
            names.insert(name.to_string());
            out.push((
                format!("alert {name}"),
                r["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    for needed in [
        "MeshConsumerLagGrowing",
        "MeshDeadLetterSpike",
        "MeshGrpcErrorRate",
        "MeshNoEvents",
        "MeshFraudRejectSpike",
        "MeshFraudModelDrift",
    ] {
        assert!(names.contains(needed), "alert {needed} missing");
    }
    out
}

#[test]
fn dashboards_and_alerts_parse_and_reference_metrics() {
    let _e2e = mesh_e2e::shared_blocking();
    let exprs = referenced_expressions();
    assert!(exprs.len() > 40, "{} expressions", exprs.len());
    for (file, e) in &exprs {
        assert!(
            !metric_names(e).is_empty(),
            "{file}: {e} names no mesh metric"
        );
    }
}

async fn scrape(admin: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .unwrap()
}

fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// What the engage and support dashboards count: an offer and its
/// conversion, a creative ranking, a delivery report (a CTR refit), a budget
/// split and a spend report; a text analysed and an assistant turn.
async fn engage_and_support_calls(mesh: &mesh_cli::node::Mesh) {
    use mesh_proto::engage::v1 as epb;
    use mesh_proto::engage::v1::engage_service_client::EngageServiceClient;
    use mesh_proto::support::v1 as spb;
    use mesh_proto::support::v1::support_service_client::SupportServiceClient;

    let mut e = EngageServiceClient::connect(format!("http://{}", mesh.engage.grpc_addr))
        .await
        .unwrap();
    e.create_campaign(epb::Campaign {
        tenant_id: "opsm".into(),
        campaign_id: "opsm-spring".into(),
        offers: vec!["coupon".into(), "bundle".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // One in ten users is held out: the first treated one gets an offer.
    let mut offer_id = String::new();
    for u in 0..50 {
        let d = e
            .choose_offer(epb::ChooseOfferRequest {
                tenant_id: "opsm".into(),
                campaign_id: "opsm-spring".into(),
                user_id: format!("opsm-offer-{u}"),
            })
            .await
            .unwrap()
            .into_inner();
        if !d.offer_id.is_empty() && d.arm == "treatment" {
            offer_id = d.offer_id;
            break;
        }
    }
    assert!(!offer_id.is_empty(), "no treated user among 50");
    e.record_response(epb::RecordResponseRequest {
        tenant_id: "opsm".into(),
        offer_id,
        kind: "conversion".into(),
        revenue: 12.0,
    })
    .await
    .unwrap();
    e.score_creatives(epb::ScoreCreativesRequest {
        tenant_id: "opsm".into(),
        user_id: "opsm-viewer".into(),
        creative_ids: vec!["a".into(), "b".into()],
        placement: String::new(),
    })
    .await
    .unwrap();
    let fitted = e
        .record_ad_deliveries(epb::RecordAdDeliveriesRequest {
            tenant_id: "opsm".into(),
            report_id: "r1".into(),
            deliveries: vec![epb::AdDelivery {
                creative_id: "a".into(),
                impressions: 100,
                clicks: 5,
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fitted.trained, "{fitted:?}");
    e.allocate_budget(epb::AllocateBudgetRequest {
        tenant_id: "opsm".into(),
        campaign_ids: vec!["x".into(), "y".into()],
        total_budget: 100.0,
        min_share: 0.0,
    })
    .await
    .unwrap();
    e.report_ad_spend(epb::ReportAdSpendRequest {
        tenant_id: "opsm".into(),
        report_id: "s1".into(),
        campaign_id: "x".into(),
        spend: 50.0,
        revenue: 80.0,
    })
    .await
    .unwrap();
    let mut s = SupportServiceClient::connect(format!("http://{}", mesh.support.grpc_addr))
        .await
        .unwrap();
    s.analyze_feedback(spb::AnalyzeFeedbackRequest {
        tenant_id: "opsm".into(),
        text: "The parcel arrived late and broken".into(),
    })
    .await
    .unwrap();
    s.converse(spb::ConverseRequest {
        tenant_id: "opsm".into(),
        user_id: "opsm-talker".into(),
        conversation_id: String::new(),
        text: "Where is my order?".into(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_and_alert_metric_is_exported() {
    let _e2e = mesh_e2e::shared().await;
    let mut cfg = config(Servers::Real, "opsmetrics");
    cfg.churn.sweep_interval = Duration::from_secs(1);
    let (mesh, shutdown) = start(&cfg).await;
    // Stop the mesh even when an assertion fails, so the runtime can end.
    let _stop_on_panic = shutdown.clone().drop_guard();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Lapsed buyers (churn alerts), then live traffic (waves, decisions).
    let (past, _) = mesh_proto::sim::history(3, "opsm", 150, 120, now);
    publish_grpc(&mesh, &past, 500).await;
    let live = mesh_e2e::events("opsm-live", 200, 2_000);
    publish_grpc(&mesh, &live, 500).await;
    // Invalid input: rejected and dead-lettered.
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/events", mesh.ingest.http_addr))
        .json(&serde_json::json!([{"event_id": "bad-1", "tenant_id": "demo"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    engage_and_support_calls(&mesh).await;

    let wanted: BTreeSet<String> = referenced_expressions()
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .collect();
    // The console asks churn, fraud and logistics over gRPC (gRPC metrics)
    // and the lag sampler runs every 5 s.
    let start_wait = Instant::now();
    let mut missing;
    loop {
        let _ = reqwest::get(format!("http://{}/api/console", mesh.admin_addr)).await;
        let have = exported(&scrape(mesh.admin_addr).await);
        missing = wanted
            .iter()
            .filter(|m| !have.contains(*m))
            .cloned()
            .collect::<Vec<_>>();
        if missing.is_empty() || start_wait.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert!(
        missing.is_empty(),
        "referenced by dashboards/alerts but not exported: {missing:?}"
    );
    shutdown.cancel();
}
