//! The profile service against the real broker and Redis: users driven
//! through every lifecycle transition — on orders, on the passage of time
//! (sweeps at an injected clock), reactivation — and the transitions read
//! back from the lifecycle topic, each once after dropping repeats by
//! `transition_id` (the documented contract).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::headers::HeaderList;
use mesh_bus::{Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_profile::engine::ManualClock;
use mesh_profile::features::DAY_MS;
use mesh_profile::{Deps, ProfileConfig};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, OrderPlaced};
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::{self as pb, Stage};
use mesh_runtime::config::Env;
use mesh_store::{RedisStore, StateStore};
use prost::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message as _;
use tokio_util::sync::CancellationToken;

const D: i64 = DAY_MS;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

fn order(user: &str, at: i64) -> Envelope {
    Envelope {
        event_id: format!("{user}-{at}"),
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "checkout".into(),
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: format!("o-{user}-{at}"),
            total: 10.0,
            ..Default::default()
        })),
        ..Default::default()
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_go_through_every_transition_once() {
    let prefix = mesh_testkit::unique("profile-life");
    let brokers = mesh_testkit::kafka_brokers();
    let topics = TopicNames::with_prefix(&prefix);
    let spec = TopicSpec {
        partitions: 2,
        replication: 1,
    };
    mesh_bus::ensure_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .unwrap();
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &prefix)).unwrap();
    let group = format!("{prefix}-profile");
    let cfg = ProfileConfig::from_env(&Env::from_pairs([
        ("MESH_PROFILE_GRPC_ADDR", "127.0.0.1:0"),
        ("MESH_PROFILE_GROUP", group.as_str()),
        ("MESH_PROFILE_SWEEP_INTERVAL_MS", "3600000"),
    ]))
    .unwrap();
    let clock = Arc::new(ManualClock::new(T0 + 10 * D));
    let deps = Deps {
        brokers: brokers.clone(),
        topics: topics.clone(),
        partitions: 2,
        store,
        producer: producer.clone(),
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        peers: Default::default(),
        clock: clock.clone(),
    };
    let shutdown = CancellationToken::new();
    let running = mesh_profile::start(&cfg, &deps, shutdown.clone())
        .await
        .unwrap();
    let p = running.profiles.clone();
    let publish = |e: Envelope| {
        let (producer, topic) = (producer.clone(), topics.order_events.clone());
        async move {
            producer
                .send(
                    &topic,
                    &e.user_key(),
                    &e.encode_to_vec(),
                    &HeaderList::new(),
                )
                .await
                .unwrap();
        }
    };
    let stage_n = |member: &'static str| {
        let p = p.clone();
        async move {
            let slot = p.slot_of(member);
            p.states(slot, &[member.to_string()]).await.unwrap()[0]
                .as_ref()
                .map_or(0, |s| s.stage_n)
        }
    };

    // a orders twice, b once.
    publish(order("a", T0)).await;
    publish(order("a", T0 + 5 * D)).await;
    publish(order("b", T0)).await;
    wait_for("orders announced", || async {
        stage_n("shop/a").await == 3 && stage_n("shop/b").await == 2
    })
    .await;

    // Time only: a lapses 30 days after its last order, b after its first.
    clock.set(T0 + 36 * D);
    let fx = p.sweep_once().await.unwrap();
    assert_eq!(fx.published, 2, "{fx:?}");
    clock.set(T0 + 200 * D);
    let fx = p.sweep_once().await.unwrap();
    assert_eq!(fx.published, 4, "{fx:?}");
    // Nothing left to announce: a second sweep changes nothing, and
    // churned users have left the due index.
    let fx = p.sweep_once().await.unwrap();
    assert_eq!((fx.evaluated, fx.published), (0, 0), "{fx:?}");

    // a comes back, then orders again.
    publish(order("a", T0 + 200 * D)).await;
    wait_for("reactivation", || async { stage_n("shop/a").await == 7 }).await;
    clock.set(T0 + 201 * D);
    publish(order("a", T0 + 201 * D)).await;
    wait_for("active again", || async { stage_n("shop/a").await == 8 }).await;

    // gRPC reads the stage the sweep would announce.
    let mut client = ProfileServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    let get = |u: &str| pb::GetProfileRequest {
        tenant_id: "shop".into(),
        user_id: u.into(),
    };
    let a = client.get_profile(get("a")).await.unwrap().into_inner();
    assert_eq!((a.stage(), a.orders), (Stage::Active, 4));
    let b = client.get_profile(get("b")).await.unwrap().into_inner();
    assert_eq!(b.stage(), Stage::Churned);
    let churned = client
        .list_users(pb::ListUsersRequest {
            tenant_id: "shop".into(),
            filter: Some(pb::list_users_request::Filter::Stage(Stage::Churned as i32)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(churned.user_ids, vec!["b"]);
    // Analytics over the tenant: a ordered in January and July, b in January.
    let cohorts = client
        .get_cohorts(pb::GetCohortsRequest {
            tenant_id: "shop".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .cohorts;
    assert_eq!(cohorts.len(), 1);
    assert_eq!(
        (cohorts[0].month.as_str(), cohorts[0].users),
        ("2026-01", 2)
    );
    assert_eq!(
        cohorts[0].retention,
        vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5]
    );
    let act = client
        .get_activity(pb::GetActivityRequest {
            tenant_id: "shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((act.dau, act.wau, act.mau), (1, 1, 1));
    let funnel = client
        .get_funnel(pb::GetFunnelRequest {
            tenant_id: "shop".into(),
            from_date: "2026-01-01".into(),
            to_date: "2026-01-31".into(),
            group_by: "stage".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .days;
    let rows: Vec<_> = funnel
        .iter()
        .map(|d| (d.date.as_str(), d.group.as_str(), d.ordered))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2026-01-01", "active", 1),
            ("2026-01-01", "churned", 1),
            ("2026-01-06", "active", 1)
        ]
    );
    let e = client
        .get_funnel(pb::GetFunnelRequest {
            tenant_id: "shop".into(),
            group_by: "colour".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("group_by"), "{}", e.message());
    let e = client.get_profile(get("")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("user_id"), "{}", e.message());

    // Every transition on the topic, once, in order.
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", mesh_testkit::unique("life-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&[&topics.lifecycle]).unwrap();
    let mut got: HashMap<String, Vec<pb::StageTransition>> = HashMap::new();
    let mut idle = Duration::from_secs(15);
    while let Ok(Ok(m)) = tokio::time::timeout(idle, c.recv()).await {
        idle = Duration::from_secs(3);
        let t = pb::StageTransition::decode(m.payload().unwrap_or_default()).unwrap();
        got.entry(t.user_id.clone()).or_default().push(t);
        if got.values().map(Vec::len).sum::<usize>() == 13 {
            idle = Duration::from_secs(2);
        }
    }
    let steps = |u: &str| -> Vec<(u32, Stage, Stage, i64)> {
        let mut v: Vec<_> = got[u]
            .iter()
            .map(|t| (t.seq, t.old_stage(), t.new_stage(), t.at_ms))
            .collect();
        v.sort();
        // At-least-once publish with a stable id: drop repeats by id (seq).
        v.dedup_by_key(|t| t.0);
        v
    };
    use Stage::*;
    assert_eq!(
        steps("a"),
        vec![
            (1, Unspecified, New, T0),
            (2, New, Activated, T0),
            (3, Activated, Active, T0 + 5 * D),
            (4, Active, AtRisk, T0 + 35 * D),
            (5, AtRisk, Dormant, T0 + 95 * D),
            (6, Dormant, Churned, T0 + 185 * D),
            (7, Churned, Reactivated, T0 + 200 * D),
            (8, Reactivated, Active, T0 + 201 * D),
        ]
    );
    assert_eq!(
        steps("b"),
        vec![
            (1, Unspecified, New, T0),
            (2, New, Activated, T0),
            (3, Activated, AtRisk, T0 + 30 * D),
            (4, AtRisk, Dormant, T0 + 90 * D),
            (5, Dormant, Churned, T0 + 180 * D),
        ]
    );
    let reasons: Vec<&str> = got["a"].iter().map(|t| t.reason.as_str()).collect();
    assert!(
        reasons.contains(&"order after 195 days without one"),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"no order for 90 days"), "{reasons:?}");
    assert!(got["a"]
        .iter()
        .all(|t| t.transition_id == format!("shop/a/{}", t.seq)));
    shutdown.cancel();
}
