//! `mesh train churn` and `mesh report retention` against the real broker
//! and Redis: the CDNOW sample is published as order events, the command
//! reads the topic from offset 0, trains on a time split and stores the
//! model where the churn service loads it; then an A/A retention experiment
//! (calibration orders alert, holdout orders return) gives a measured lift.
use mesh_bus::headers::HeaderList;
use mesh_churn::data::PurchaseLog;
use mesh_churn::supervised::ModelKind;
use mesh_churn::training::{self, TrainConfig};
use mesh_cli::cmd_churn::{self, RetentionArgs, TrainArgs};
use mesh_cli::node::{Backends, MeshConfig};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced};
use mesh_runtime::ManualClock;
use mesh_store::Slot;
use prost::Message;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_churn_reads_the_log_and_stores_a_calibrated_model() {
    let _e2e = mesh_e2e::shared().await;
    let name = mesh_testkit::unique("churn-train");
    let cfg = MeshConfig::ephemeral(
        Some(mesh_testkit::kafka_brokers()),
        Some(mesh_testkit::redis_url()),
        &name,
    );
    let backends = Backends::connect(&cfg).await.unwrap();
    let path = mesh_testkit::shared_data().join("churn/CDNOW_sample.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let topic = cfg.topics().order_events;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let c: Vec<&str> = line.split_whitespace().collect();
        let day = chrono::NaiveDate::parse_from_str(c[2], "%Y%m%d").unwrap();
        events.push(Envelope {
            event_id: format!("cdnow-{i}"),
            tenant_id: "cdnow".into(),
            user_id: c[0].into(),
            occurred_at_ms: day
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis(),
            source: "test".into(),
            body: Some(Body::OrderPlaced(OrderPlaced {
                order_id: format!("o-{i}"),
                items: vec![LineItem {
                    sku: "cd".into(),
                    quantity: c[3].parse().unwrap(),
                    ..Default::default()
                }],
                total: c[4].parse().unwrap(),
                ..Default::default()
            })),
            ..Default::default()
        });
    }
    let cal_end = chrono::NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
    let cal_end_ms = (cal_end + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let (calibration, holdout): (Vec<Envelope>, Vec<Envelope>) = events
        .into_iter()
        .partition(|e| e.occurred_at_ms < cal_end_ms);
    publish(&backends, &topic, &calibration).await;

    let args = TrainArgs {
        kind: ModelKind::LogisticRegression,
        hybrid: false,
        purchases_only: true,
        horizon_weeks: 13,
        now: Some("1997-09-30".parse().unwrap()),
        version: Some("cdnow-t1".into()),
        out: None,
        read_timeout_secs: 120,
        json: true,
    };
    let r = cmd_churn::train_with(&cfg, &backends, &args).await.unwrap();
    // Every order was read: the same histories as the file gives.
    let log = PurchaseLog::read(&path).unwrap();
    assert_eq!(r.model.customers, log.customers.len());
    assert_eq!(
        r.orders,
        log.customers
            .iter()
            .map(|c| c.until(cal_end).len())
            .sum::<usize>()
    );
    // And the same model as training on the file directly.
    let direct = training::train(
        &log.customers,
        "1997-09-30".parse().unwrap(),
        &TrainConfig {
            kind: ModelKind::LogisticRegression,
            hybrid: false,
            horizon_weeks: 13,
            version: "direct".into(),
            behaviour: false,
        },
    )
    .unwrap();
    assert_eq!(r.model.train_rows, direct.report.train_rows);
    assert!((r.model.validation_auc - direct.report.validation_auc).abs() < 1e-9);
    assert!(r.model.validation_auc > 0.7, "{:?}", r.model);
    let stored = backends
        .store
        .hgetall(
            Slot {
                scope: "churn-model",
                partition: 0,
            },
            "supervised",
        )
        .await
        .unwrap();
    assert_eq!(stored.get("version").map(String::as_str), Some("cdnow-t1"));
    assert!(r.to_string().contains("AUC"));

    let retention_args = RetentionArgs {
        confidence: 0.95,
        method: mesh_churn::retention::IntervalMethod::Newcombe,
        json: false,
    };
    // No alerts yet: the retention report says so instead of a lift.
    let rep = cmd_churn::retention_with(&cfg, &backends, &retention_args)
        .await
        .unwrap();
    assert!(!rep.ready && rep.difference.is_none());
    assert!(rep.to_string().contains("no lift yet"), "{rep}");

    // An A/A retention experiment on CDNOW: the churn service scores the
    // calibration orders at the calibration end and alerts; the holdout
    // orders then show who came back. Actions reach nobody, so the lift
    // is measured around zero with its interval.
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
    let clock = Arc::new(ManualClock::at(at(cal_end_ms)));
    let deps = mesh_churn_svc::Deps {
        brokers: backends.brokers.clone(),
        topics: cfg.topics(),
        partitions: cfg.partitions,
        store: backends.store.clone(),
        producer: backends.producer.clone(),
        consumer_extra: cfg.consumer_extra.clone(),
        clock: clock.clone(),
        peers: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let running = mesh_churn_svc::start(&cfg.churn, &deps, shutdown.clone())
        .await
        .unwrap();
    let churn = running.churn.clone();
    let orders_applied = |n: usize| {
        let churn = churn.clone();
        async move {
            for _ in 0..1200 {
                let all = churn.all_summaries().await.unwrap();
                if all.iter().map(|(_, s)| s.orders as usize).sum::<usize>() == n {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("orders not applied");
        }
    };
    orders_applied(calibration.len()).await;
    churn.sweep_once().await.unwrap();
    publish(&backends, &topic, &holdout).await;
    orders_applied(calibration.len() + holdout.len()).await;
    clock.set_at(at(chrono::NaiveDate::from_ymd_opt(1998, 7, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()));
    churn.sweep_once().await.unwrap();
    shutdown.cancel();
    let _ = running.consumer.await;
    let rep = cmd_churn::retention_with(&cfg, &backends, &retention_args)
        .await
        .unwrap();
    println!("{rep}");
    assert!(rep.ready, "{rep}");
    let alerted = rep.treated.users + rep.holdout.users;
    assert!(alerted > 1000, "{rep}");
    let share = rep.holdout.users as f64 / alerted as f64;
    assert!((0.15..0.25).contains(&share), "holdout share {share}");
    assert!(
        rep.treated.returned > 0 && rep.holdout.returned > 0,
        "{rep}"
    );
    let (d, lo, hi) = (
        rep.difference.unwrap(),
        rep.ci_low.unwrap(),
        rep.ci_high.unwrap(),
    );
    assert!(lo < d && d < hi, "{rep}");
}

async fn publish(backends: &Backends, topic: &str, events: &[Envelope]) {
    let records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.user_key(), e.encode_to_vec()))
        .collect();
    let no_headers = HeaderList::new();
    for chunk in records.chunks(500) {
        let sends = chunk
            .iter()
            .map(|(key, payload)| backends.producer.send(topic, key, payload, &no_headers));
        for r in futures::future::join_all(sends).await {
            r.unwrap();
        }
    }
}
