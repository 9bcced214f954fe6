//! The fraud service against the real broker and Redis.
mod common;

use std::time::{Duration, Instant};

use common::{decision_for, now_ms, order, start};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::fraud::v1 as pb;

fn score_req(env: mesh_proto::events::v1::Envelope) -> pb::ScoreOrderRequest {
    pb::ScoreOrderRequest {
        envelope: Some(env),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_async_paths_agree_on_the_same_order() {
    let mut h = start(None).await;
    let reader = h.decisions_reader();
    let t0 = now_ms() - 60_000;
    // A first order changes the state the second one is scored on.
    let first = order("u-agree", "o-agree-1", 80.0, t0);
    let at = h.publish(&first).await;
    let d1 = decision_for(&reader, "o-agree-1").await;
    assert_eq!(d1.event_id, "ev-o-agree-1");
    // Decisions are published before the state step; wait for the step.
    h.wait_applied(&first, &at).await;
    // An account of the other partition on the same device and card: its
    // counters reach the shared entities' home slots from another consumer.
    let other_user = (0..)
        .map(|i| format!("u-agree-{i}"))
        .find(|u| {
            mesh_bus::partition::partition_for(&format!("shop/{u}"), common::PARTITIONS)
                != mesh_bus::partition::partition_for("shop/u-agree", common::PARTITIONS)
        })
        .unwrap();
    let mut shared = order(&other_user, "o-agree-other", 400.0, t0 + 500);
    if let Some(c) = &mut shared.context {
        c.device_hash = "dev-u-agree".into();
    }
    if let Some(Body::OrderPlaced(o)) = &mut shared.body {
        o.payment_hash = "card-u-agree".into();
    }
    let at = h.publish(&shared).await;
    decision_for(&reader, "o-agree-other").await;
    h.wait_applied(&shared, &at).await;

    let second = order("u-agree", "o-agree-2", 95.0, t0 + 1_000);
    let sync = h
        .client
        .score_order(score_req(second.clone()))
        .await
        .expect("score")
        .into_inner();
    h.publish(&second).await;
    let asynch = decision_for(&reader, "o-agree-2").await;
    assert_eq!(sync.action, asynch.action);
    assert_eq!(sync.score, asynch.score);
    assert_eq!(sync.model_score, asynch.model_score);
    assert_eq!(sync.anomaly_score, asynch.anomaly_score);
    assert_eq!(sync.reasons, asynch.reasons);
    assert_eq!(sync.top_features, asynch.top_features);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_change_takes_effect_without_restart() {
    let dir = std::env::temp_dir().join(mesh_testkit::unique("fraud-rules"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.toml");
    std::fs::write(&path, mesh_fraud::rules::DEFAULT_RULES).unwrap();
    let mut h = start(Some(path.clone())).await;
    let env = order("u-rules", "o-rules", 42.0, now_ms() - 60_000);
    let before = h
        .client
        .score_order(score_req(env.clone()))
        .await
        .expect("score")
        .into_inner();
    assert!(!before.reasons.iter().any(|r| r.code == "BLOCK_ALL"));
    assert_ne!(before.action(), pb::Action::Reject, "{before:?}");

    let rules = format!(
        "{}\n[[rule]]\ncode = \"BLOCK_ALL\"\naction = \"reject\"\ndescription = \"maintenance\"\nwhen = {{ feature = \"amount\", op = \">=\", value = 0 }}\n",
        mesh_fraud::rules::DEFAULT_RULES
    );
    std::fs::write(&path, rules).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = h
            .client
            .score_order(score_req(env.clone()))
            .await
            .expect("score")
            .into_inner();
        if d.action() == pb::Action::Reject {
            let r = d
                .reasons
                .iter()
                .find(|r| r.code == "BLOCK_ALL")
                .expect("reason");
            assert_eq!(r.text, "maintenance");
            break;
        }
        assert!(Instant::now() < deadline, "rule change not picked up");
        tokio::task::yield_now().await;
    }
    // An invalid file keeps the rules in place.
    std::fs::write(&path, "[[rule]]\ncode = \"X\"\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = h
        .client
        .score_order(score_req(env))
        .await
        .expect("score")
        .into_inner();
    assert_eq!(d.action(), pb::Action::Reject);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_order_is_refused_naming_the_field() {
    let mut h = start(None).await;
    let mut env = order("u-bad", "o-bad", 10.0, now_ms());
    if let Some(Body::OrderPlaced(o)) = &mut env.body {
        o.items.clear();
    }
    let e = h.client.score_order(score_req(env)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("envelope.order_placed.items"),
        "{}",
        e.message()
    );

    let mut env = order("u-bad", "o-bad", 10.0, now_ms());
    if let Some(Body::OrderPlaced(o)) = &mut env.body {
        o.items[0].quantity = 0;
    }
    let e = h.client.score_order(score_req(env)).await.unwrap_err();
    assert!(
        e.message()
            .contains("envelope.order_placed.items[0].quantity"),
        "{}",
        e.message()
    );

    let e = h
        .client
        .score_order(pb::ScoreOrderRequest { envelope: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("envelope"), "{}", e.message());

    let mut env = order("u-bad", "o-bad", 10.0, now_ms());
    env.body = Some(Body::PageView(Default::default()));
    let e = h.client.score_order(score_req(env)).await.unwrap_err();
    assert!(
        e.message().contains("envelope.order_placed"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_then_resolve_round_trip() {
    let dir = std::env::temp_dir().join(mesh_testkit::unique("fraud-rules"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.toml");
    std::fs::write(
        &path,
        "[[rule]]\ncode = \"ODD_AMOUNT\"\naction = \"review\"\ndescription = \"amount to look at\"\nwhen = { feature = \"amount\", op = \"==\", value = 777 }\n",
    )
    .unwrap();
    let mut h = start(Some(path)).await;
    let env = order("u-review", "o-review", 777.0, now_ms() - 60_000);
    let sync = h
        .client
        .score_order(score_req(env.clone()))
        .await
        .expect("score")
        .into_inner();
    assert_eq!(sync.action(), pb::Action::Review, "{sync:?}");
    h.publish(&env).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let item = loop {
        let q = h
            .client
            .get_review_queue(pb::GetReviewQueueRequest {
                tenant_id: String::new(),
                page_size: 10,
                page_token: String::new(),
            })
            .await
            .expect("queue")
            .into_inner();
        if let Some(i) = q.items.into_iter().find(|i| {
            i.decision
                .as_ref()
                .is_some_and(|d| d.order_id == "o-review")
        }) {
            break i;
        }
        assert!(Instant::now() < deadline, "order never queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let d = item.decision.clone().unwrap();
    assert_eq!(d.action(), pb::Action::Review);
    assert_eq!(d.score, sync.score);
    assert!(d
        .reasons
        .iter()
        .any(|r| r.code == "ODD_AMOUNT" && r.text == "amount to look at"));
    assert_eq!(item.features.len(), mesh_fraud::FEATURE_NAMES.len());

    let req = pb::ResolveReviewRequest {
        tenant_id: String::new(),
        order_id: "o-review".into(),
        label: pb::Label::Fraud as i32,
        reviewer: "alice".into(),
    };
    let r = h
        .client
        .resolve_review(req.clone())
        .await
        .expect("resolve")
        .into_inner();
    assert!(!r.already_resolved);
    assert_eq!(r.label.as_ref().unwrap().label(), pb::Label::Fraud);
    // A retry (even with another label) returns the first label.
    let mut retry = req.clone();
    retry.label = pb::Label::Legit as i32;
    let r2 = h
        .client
        .resolve_review(retry)
        .await
        .expect("resolve")
        .into_inner();
    assert!(r2.already_resolved);
    assert_eq!(r2.label.unwrap().label(), pb::Label::Fraud);

    let q = h
        .client
        .get_review_queue(pb::GetReviewQueueRequest::default())
        .await
        .expect("queue")
        .into_inner();
    assert!(q.items.is_empty(), "{q:?}");
    let labels = h
        .client
        .list_labels(pb::ListLabelsRequest::default())
        .await
        .expect("labels")
        .into_inner();
    assert_eq!(labels.labels.len(), 1);
    assert_eq!(labels.labels[0].reviewer, "alice");
    assert_eq!(labels.feature_names.len(), item.features.len());
    assert_eq!(
        labels.labels[0].item.as_ref().unwrap().features,
        item.features
    );

    let missing = h
        .client
        .resolve_review(pb::ResolveReviewRequest {
            order_id: "never-queued".into(),
            ..req.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad = h
        .client
        .resolve_review(pb::ResolveReviewRequest { label: 0, ..req })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("label"), "{}", bad.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trained_models_are_swapped_in_without_restart() {
    use mesh_fraud_svc::train::{rows_from_simulator, train_and_save, TrainOptions};
    let dir = std::env::temp_dir().join(mesh_testkit::unique("fraud-models"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("models.json");
    std::fs::copy(common::model_file(), &path).unwrap();
    let mut h = common::start_with(None, path.clone()).await;
    let env = order("u-swap", "o-swap", 120.0, now_ms() - 60_000);
    let before = h
        .client
        .score_order(score_req(env.clone()))
        .await
        .expect("score")
        .into_inner();
    assert_eq!(before.model_version, "fraud-v1");

    // What `mesh train fraud --simulate N` does, smaller.
    let report = tokio::task::spawn_blocking(move || {
        let rows = rows_from_simulator(400, 7, 9).expect("simulate");
        let opts = TrainOptions {
            train_share: 0.8,
            version: "fraud-test-2".into(),
            params: mesh_fraud::TrainParams {
                n_trees: 10,
                ..mesh_fraud::TrainParams::default()
            },
        };
        train_and_save(vec![("simulator".into(), rows)], &opts, Some(&path)).expect("train")
    })
    .await
    .unwrap();
    assert!(
        report.train_fraud > 0 && report.saved.is_some(),
        "{report:?}"
    );
    let forest = report.forest.expect("holdout has both classes");
    assert!(forest.roc_auc > 0.5, "{forest:?}");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = h
            .client
            .score_order(score_req(env.clone()))
            .await
            .expect("score")
            .into_inner();
        if d.model_version == "fraud-test-2" {
            break;
        }
        assert_eq!(d.model_version, "fraud-v1", "{d:?}");
        assert!(Instant::now() < deadline, "new models not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A broken file keeps the current models serving.
    std::fs::write(dir.join("models.json"), "{not json").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = h
        .client
        .score_order(score_req(env))
        .await
        .expect("score")
        .into_inner();
    assert_eq!(d.model_version, "fraud-test-2");
}
