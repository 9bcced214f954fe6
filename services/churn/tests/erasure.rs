//! Erasure against real Redis and the broker: the erased user's summary
//! and index entry are gone, `GetChurnRisk` and `ListAtRisk` answer as for
//! an unknown user, the other user is untouched, a later event of the
//! erased user changes nothing, no alert is fired for them (not even by an
//! evaluation that read them just before the erasure), and a replay that
//! keeps the `erased` hash rebuilds the other user alone.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mesh_bus::headers::HeaderList;
use mesh_bus::{Producer, ProducerConfig, Record, TopicNames, TopicSpec};
use mesh_churn_svc::grpc::ChurnGrpc;
use mesh_churn_svc::handler::ChurnHandler;
use mesh_churn_svc::summary::{self, INDEX_KEY};
use mesh_churn_svc::{Churn, ChurnConfig, Effects, Model, SCOPE};
use mesh_proto::churn::v1 as pb;
use mesh_proto::churn::v1::churn_service_server::ChurnService;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, Login, OrderPlaced, UserErased};
use mesh_runtime::config::Env;
use mesh_runtime::Clock as _;
use mesh_store::{erasure, RedisStore, Slot, StateStore};
use prost::Message;
use tonic::Request;

const SLOT: Slot<'static> = Slot {
    scope: SCOPE,
    partition: 0,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 12, 0, 0).unwrap()
}

fn envelope(user: &str, id: String, at: DateTime<Utc>, body: Body) -> Envelope {
    Envelope {
        event_id: id,
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at.timestamp_millis(),
        source: "test".into(),
        body: Some(body),
        ..Default::default()
    }
}

/// A weekly buyer for ten weeks up to `t0()`: not at risk at `t0()`.
fn orders(user: &str) -> Vec<Envelope> {
    (0..10)
        .map(|i| {
            let at = t0() - chrono::Duration::weeks(10 - i) + chrono::Duration::hours(1);
            let body = Body::OrderPlaced(OrderPlaced {
                order_id: format!("o-{user}-{i}"),
                total: 20.0 + i as f64,
                ..Default::default()
            });
            envelope(user, format!("{user}-o{i}"), at, body)
        })
        .collect()
}

fn login(user: &str, at: DateTime<Utc>) -> Envelope {
    let body = Body::Login(Login {
        success: true,
        ..Default::default()
    });
    envelope(user, format!("{user}-login"), at, body)
}

fn erase(user: &str, at: DateTime<Utc>) -> Envelope {
    let body = Body::UserErased(UserErased {
        reason: "gdpr_request".into(),
    });
    envelope(user, format!("erase-{user}"), at, body)
}

fn records(topic: &str, first_offset: i64, events: &[Envelope]) -> Vec<Record> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            topic: topic.into(),
            partition: 0,
            offset: first_offset + i as i64,
            key: Some(e.user_key().into_bytes()),
            payload: e.encode_to_vec(),
            headers: HeaderList::new(),
            timestamp_ms: None,
        })
        .collect()
}

async fn hash(store: &StateStore, member: &str) -> HashMap<String, String> {
    store
        .hgetall(SLOT, &summary::user_key(member))
        .await
        .unwrap()
}

async fn indexed(store: &StateStore) -> Vec<String> {
    let mut m: Vec<String> = store
        .ztop(SLOT, INDEX_KEY, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    m.sort();
    m
}

async fn risk(api: &ChurnGrpc, user: &str) -> Result<pb::ChurnRisk, tonic::Status> {
    api.get_churn_risk(Request::new(pb::GetChurnRiskRequest {
        tenant_id: "shop".into(),
        user_id: user.into(),
        ..Default::default()
    }))
    .await
    .map(|r| r.into_inner())
}

async fn at_risk(api: &ChurnGrpc) -> Vec<String> {
    api.list_at_risk(Request::new(pb::ListAtRiskRequest {
        threshold: 1e-9,
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner()
    .users
    .into_iter()
    .map(|u| u.user_id)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_is_never_alerted_and_replay_rebuilds_only_the_others() {
    let prefix = mesh_testkit::unique("churn-erasure");
    let brokers = mesh_testkit::kafka_brokers();
    let topics = TopicNames::with_prefix(&prefix);
    let spec = TopicSpec {
        partitions: 1,
        replication: 1,
    };
    mesh_bus::ensure_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .unwrap();
    mesh_bus::ensure_output_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .unwrap();
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let cfg = ChurnConfig::from_env(&Env::from_pairs([("MESH_CHURN_HOLDOUT_SHARE", "0")])).unwrap();
    let clock = Arc::new(mesh_runtime::ManualClock::at(t0()));
    let churn = Arc::new(Churn {
        store: store.clone(),
        producer: Producer::new(ProducerConfig::new(&brokers, &prefix)).unwrap(),
        alerts_topic: topics.alerts.clone(),
        partitions: 1,
        model: Model::prior(t0()),
        scoring: cfg.scoring.clone(),
        clock: clock.clone(),
        supervised: Default::default(),
        recommend: None,
    });
    let handler = ChurnHandler {
        churn: churn.clone(),
        dead_letter_topic: topics.dead_letter.clone(),
        group: format!("{prefix}-churn"),
    };
    let api = ChurnGrpc {
        churn: churn.clone(),
    };
    let (orders_topic, users_topic) = (topics.order_events.as_str(), topics.user_events.as_str());

    // a and b buy (order topic) and log in (user topic); a is erased (on
    // both topics, as ingest publishes it); a's late order comes after.
    let mut bought = orders("a");
    bought.extend(orders("b"));
    let n = bought.len() as i64;
    let erased_at = t0() + chrono::Duration::days(1);
    let stream = [
        records(orders_topic, 0, &bought),
        records(users_topic, 0, &[login("a", t0()), login("b", t0())]),
        records(orders_topic, n, &[erase("a", erased_at)]),
        records(users_topic, 2, &[erase("a", erased_at)]),
        records(
            orders_topic,
            n + 1,
            &[envelope(
                "a",
                "a-late".into(),
                erased_at + chrono::Duration::days(1),
                Body::OrderPlaced(OrderPlaced {
                    total: 99.0,
                    ..Default::default()
                }),
            )],
        ),
    ];
    for batch in &stream[..2] {
        handler.apply(batch).await.unwrap();
    }
    let b_before = hash(&store, "shop/b").await;
    assert!(b_before.contains_key("l:2025-01-06"), "{b_before:?}");
    assert_eq!(b_before.get("orders").map(String::as_str), Some("10"));
    assert!(!b_before.contains_key("alerted"), "b is not at risk yet");
    assert_eq!(indexed(&store).await, ["shop/a", "shop/b"]);
    assert_eq!(risk(&api, "a").await.unwrap().orders, 10);
    // What an evaluation that read a just before the erasure holds, as if
    // a had been alerted before and ordered since.
    let mut stale = churn.summary("shop", "a").await.unwrap().unwrap();
    stale.first_alert_at_ms = Some(stale.first_ms);

    handler.apply(&stream[2]).await.unwrap();
    assert!(hash(&store, "shop/a").await.is_empty());
    assert_eq!(indexed(&store).await, ["shop/b"]);
    let at = store.hgetall(SLOT, erasure::KEY).await.unwrap();
    assert_eq!(
        at.get("shop/a"),
        Some(&erased_at.timestamp_millis().to_string())
    );
    assert_eq!(
        risk(&api, "a").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(risk(&api, "b").await.unwrap().orders, 10);
    assert_eq!(at_risk(&api).await, ["b"]);
    assert_eq!(hash(&store, "shop/b").await, b_before);

    // The erasure's copy from the other topic and the late order change
    // nothing; both watermarks still move.
    handler.apply(&stream[3]).await.unwrap();
    handler.apply(&stream[4]).await.unwrap();
    assert!(hash(&store, "shop/a").await.is_empty());
    assert_eq!(indexed(&store).await, ["shop/b"]);
    let at = store.hgetall(SLOT, erasure::KEY).await.unwrap();
    assert_eq!(
        at.get("shop/a"),
        Some(&erased_at.timestamp_millis().to_string())
    );
    assert_eq!(
        store.watermark(SLOT, orders_topic).await.unwrap(),
        Some(n + 1)
    );
    assert_eq!(store.watermark(SLOT, users_topic).await.unwrap(), Some(2));
    assert_eq!(hash(&store, "shop/b").await, b_before);

    // Years later both would be at risk: an evaluation that read a before
    // the erasure fires nothing and writes nothing back, and the sweep
    // alerts b alone.
    clock.set_at(t0() + chrono::Duration::weeks(150));
    let fx = churn
        .evaluate(SLOT, "shop/a", &stale, clock.now())
        .await
        .unwrap();
    assert_eq!(fx, Effects::default());
    assert!(hash(&store, "shop/a").await.is_empty());
    let fx = churn.sweep_once().await.unwrap();
    assert_eq!(fx.fired, 1, "{fx:?}");
    assert_eq!(
        hash(&store, "shop/b")
            .await
            .get("alerted")
            .map(String::as_str),
        Some("1")
    );
    assert!(hash(&store, "shop/a").await.is_empty());
    assert_eq!(at_risk(&api).await, ["b"]);

    // Replay at the first instant: clear the scope keeping `erased`, apply
    // every record again from offset 0.
    clock.set_at(t0());
    store
        .clear_scope_keeping(SCOPE, &[erasure::KEY])
        .await
        .unwrap();
    assert!(indexed(&store).await.is_empty());
    for batch in &stream {
        handler.apply(batch).await.unwrap();
    }
    assert!(hash(&store, "shop/a").await.is_empty());
    assert_eq!(indexed(&store).await, ["shop/b"]);
    assert_eq!(
        risk(&api, "a").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(hash(&store, "shop/b").await, b_before);
}
