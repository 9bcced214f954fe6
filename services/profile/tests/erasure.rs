//! Erasure against real Redis (and the broker, for the lifecycle
//! transitions the handler announces): the erased user's keys and index
//! entries are gone and every read answers as for an unknown user, the
//! other user is untouched, a later event of the erased user changes
//! nothing, no evaluation or sweep writes the user back, and a replay that
//! keeps the `erased` hash rebuilds the other user alone.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::headers::HeaderList;
use mesh_bus::{Handler, Producer, ProducerConfig, Record, TopicNames, TopicSpec};
use mesh_profile::engine::{ManualClock, Profiles};
use mesh_profile::features::{self, FeatureConfig, DAY_MS};
use mesh_profile::grpc::ProfileApi;
use mesh_profile::handler::{ProfileHandler, SCOPE};
use mesh_profile::lifecycle::Thresholds;
use mesh_profile::{fold, offline, tags};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{self as ev, Context, Envelope};
use mesh_proto::profile::v1 as pb;
use mesh_proto::profile::v1::profile_service_server::ProfileService;
use mesh_store::{erasure, MemoryStore, Op, PartitionBatch, RedisStore, Slot, StateStore};
use prost::Message;
use tonic::Request;

const D: i64 = DAY_MS;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const SLOT: Slot<'static> = Slot {
    scope: SCOPE,
    partition: 0,
};

fn event(user: &str, n: usize, at: i64, body: Body) -> Envelope {
    Envelope {
        event_id: format!("{user}-{n}"),
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "test".into(),
        context: Some(Context {
            device_type: "web".into(),
            channel: "email".into(),
            session_id: format!("s-{user}"),
            ..Default::default()
        }),
        body: Some(body),
    }
}

fn view(category: &str) -> Body {
    Body::ProductView(ev::ProductView {
        sku: "k1".into(),
        category: category.into(),
        brand: "acme".into(),
        price: 20.0,
        ..Default::default()
    })
}

fn order(total: f64) -> Body {
    Body::OrderPlaced(ev::OrderPlaced {
        order_id: format!("o{total}"),
        total,
        items: vec![ev::LineItem {
            sku: "k1".into(),
            category: "shoes".into(),
            brand: "acme".into(),
            quantity: 1,
            unit_price: total,
            unit_discount: 0.0,
        }],
        ..Default::default()
    })
}

fn erase(user: &str, at: i64) -> Envelope {
    Envelope {
        event_id: format!("erase-{user}"),
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "ingest.forget_user".into(),
        context: None,
        body: Some(Body::UserErased(ev::UserErased {
            reason: "gdpr_request".into(),
        })),
    }
}

/// A view and two orders for `user`, over two days from `T0`.
fn activity(user: &str) -> Vec<Envelope> {
    vec![
        event(user, 0, T0, Body::SessionStarted(Default::default())),
        event(user, 1, T0 + 60_000, view("shoes")),
        event(user, 2, T0 + 120_000, order(30.0)),
        event(user, 3, T0 + D, order(50.0)),
    ]
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

fn engine(store: StateStore, producer: Option<Producer>, topic: &str, now: i64) -> Profiles {
    Profiles {
        store,
        producer,
        lifecycle_topic: topic.into(),
        partitions: 1,
        features: FeatureConfig::default(),
        thresholds: Thresholds::default(),
        clock: Arc::new(ManualClock::new(now)),
        tags: tags::TagRules::parse(tags::DEFAULT_TAGS).unwrap(),
        segments: Default::default(),
    }
}

/// Every key the profile may hold of `user`, with what it holds (empty when
/// gone), and the user's entries in the partition's indexes.
async fn traces(store: &StateStore, user: &str) -> (Vec<String>, Vec<&'static str>) {
    let member = format!("shop/{user}");
    let tau = FeatureConfig::default().affinity_tau_ms;
    let (era, _) = features::era_of(T0, tau);
    let mut keys = Vec::new();
    for key in [format!("u:{member}"), features::sessions_key(&member)] {
        if !store.hgetall(SLOT, &key).await.unwrap().is_empty() {
            keys.push(key);
        }
    }
    for what in ["ca", "br"] {
        let key = features::affinity_key(what, era, &member);
        if !store.ztop(SLOT, &key, 10).await.unwrap().is_empty() {
            keys.push(key);
        }
    }
    let mut indexes = Vec::new();
    for index in [features::USERS_KEY, features::DUE_KEY] {
        let all = store.ztop(SLOT, index, 1000).await.unwrap();
        if all.iter().any(|(m, _)| *m == member) {
            indexes.push(index);
        }
    }
    (keys, indexes)
}

async fn get(api: &ProfileApi, user: &str) -> Result<pb::Profile, tonic::Status> {
    api.get_profile(Request::new(pb::GetProfileRequest {
        tenant_id: "shop".into(),
        user_id: user.into(),
    }))
    .await
    .map(|r| r.into_inner())
}

async fn listed(api: &ProfileApi, stage: pb::Stage) -> Vec<String> {
    api.list_users(Request::new(pb::ListUsersRequest {
        tenant_id: "shop".into(),
        filter: Some(pb::list_users_request::Filter::Stage(stage as i32)),
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner()
    .user_ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_stays_gone_and_replay_rebuilds_only_the_others() {
    let prefix = mesh_testkit::unique("profile-erasure");
    let brokers = mesh_testkit::kafka_brokers();
    let topics = TopicNames::with_prefix(&prefix);
    let spec = TopicSpec {
        partitions: 1,
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
    let now = T0 + 10 * D;
    let profiles = Arc::new(engine(
        store.clone(),
        Some(producer.clone()),
        &topics.lifecycle,
        now,
    ));
    let handler = ProfileHandler {
        store: store.clone(),
        producer,
        dead_letter_topic: topics.dead_letter.clone(),
        group: format!("{prefix}-profile"),
        profiles: profiles.clone(),
    };
    let api = ProfileApi {
        profiles: profiles.clone(),
    };
    let topic = topics.order_events.as_str();

    // a and b buy; a is erased; a's late order arrives after the erasure.
    let mut all = activity("a");
    all.extend(activity("b"));
    let erased_at = T0 + 5 * D;
    let stream = [
        records(topic, 0, &all),
        records(topic, all.len() as i64, &[erase("a", erased_at)]),
        records(
            topic,
            all.len() as i64 + 1,
            &[event("a", 9, T0 + 6 * D, order(70.0))],
        ),
    ];
    handler.handle(&stream[0]).await.unwrap();
    let (keys, indexes) = traces(&store, "a").await;
    assert_eq!(keys.len(), 4, "a has state before the erasure: {keys:?}");
    assert_eq!(indexes, ["users", "due"]);
    let b_before = get(&api, "b").await.unwrap();
    assert_eq!((b_before.orders, b_before.events), (2, 4));
    assert_eq!(get(&api, "a").await.unwrap().orders, 2);
    // What an evaluation that read a just before the erasure holds: a
    // state with no announced step yet.
    let mut stale = profiles.states(SLOT, &["shop/a".into()]).await.unwrap()[0]
        .clone()
        .unwrap();
    stale.stage_n = 0;
    stale.sent_n = 0;

    handler.handle(&stream[1]).await.unwrap();
    assert_eq!(traces(&store, "a").await, (vec![], vec![]));
    let at = store.hgetall(SLOT, erasure::KEY).await.unwrap();
    assert_eq!(at.get("shop/a"), Some(&erased_at.to_string()));
    let e = get(&api, "a").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert_eq!(get(&api, "b").await.unwrap(), b_before);
    assert_eq!(listed(&api, pb::Stage::Active).await, ["b"]);
    let batch = api
        .batch_get_profiles(Request::new(pb::BatchGetProfilesRequest {
            tenant_id: String::new(),
            users: ["a", "b"]
                .iter()
                .map(|u| pb::GetProfileRequest {
                    tenant_id: "shop".into(),
                    user_id: u.to_string(),
                })
                .collect(),
        }))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = batch.profiles.iter().map(|p| p.user_id.as_str()).collect();
    assert_eq!(ids, ["b"]);

    // The late order changes nothing, not even the day's id ledger; the
    // watermark still moves past it.
    handler.handle(&stream[2]).await.unwrap();
    assert_eq!(traces(&store, "a").await, (vec![], vec![]));
    for key in mesh_profile::handler::seen_keys((T0 + 6 * D) / D) {
        let ledger = store.hgetall(SLOT, &key).await.unwrap();
        assert!(ledger.is_empty(), "{key}: {ledger:?}");
    }
    let through = store.watermark(SLOT, topic).await.unwrap();
    assert_eq!(through, Some(all.len() as i64 + 1));
    assert_eq!(get(&api, "b").await.unwrap(), b_before);

    // An evaluation that read a before the erasure writes nothing back.
    profiles
        .evaluate(SLOT, "shop/a", &stale, now)
        .await
        .unwrap();
    assert_eq!(traces(&store, "a").await, (vec![], vec![]));
    // Nor does a sweep that rescheduled a from state read before the
    // erasure (simulated: a back in the due index, deadline passed).
    let mut put_back = PartitionBatch::new("test.race", 0);
    put_back.push(
        0,
        vec![Op::ZSet {
            key: features::DUE_KEY.into(),
            member: "shop/a".into(),
            score: -((T0 + 40 * D) as f64),
        }],
    );
    store.apply(SCOPE, &put_back).await.unwrap();
    let members = ["shop/a".to_string(), "shop/b".to_string()];
    assert_eq!(
        profiles
            .unschedule_erased(SLOT, &members, now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(traces(&store, "a").await, (vec![], vec![]));
    assert_eq!(traces(&store, "b").await.1, ["users", "due"]);
    // And a sweep past a's deadline drops a user without state from the
    // index instead of keeping them.
    let mut put_back = PartitionBatch::new("test.race", 0);
    put_back.push(
        1,
        vec![Op::ZSet {
            key: features::DUE_KEY.into(),
            member: "shop/a".into(),
            score: -((T0 + 30 * D) as f64),
        }],
    );
    store.apply(SCOPE, &put_back).await.unwrap();
    let sweeper = engine(store.clone(), None, "", T0 + 30 * D);
    // b's deadline (30 days after its last order, T0 + 31 days) has not
    // passed yet: only a is due.
    assert_eq!(sweeper.sweep_once().await.unwrap().evaluated, 0);
    assert_eq!(traces(&store, "a").await, (vec![], vec![]));

    // Replay: clear the scope keeping `erased`, apply everything again
    // from offset 0.
    store
        .clear_scope_keeping(SCOPE, &[erasure::KEY])
        .await
        .unwrap();
    assert_eq!(
        get(&api, "b").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let replayed: Vec<Record> = stream.concat();
    handler.handle(&replayed).await.unwrap();
    assert_eq!(traces(&store, "a").await, (vec![], vec![]));
    assert_eq!(
        get(&api, "a").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(get(&api, "b").await.unwrap(), b_before);
    assert_eq!(traces(&store, "b").await.1, ["users", "due"]);
}

#[tokio::test]
async fn the_offline_apply_and_the_reference_fold_forget_alike() {
    let store = StateStore::Memory(MemoryStore::new("t"));
    let p = engine(store.clone(), None, "", T0 + 10 * D);
    let mut events = activity("a");
    events.extend(activity("b"));
    events.push(erase("a", T0 + 5 * D));
    events.push(event("a", 9, T0 + 6 * D, order(70.0)));
    events.push(event("b", 9, T0 + 6 * D, view("hats")));
    let mut offsets = BTreeMap::new();
    offline::apply_events(&p, "offline", &events, &mut offsets)
        .await
        .unwrap();
    assert_eq!(traces(&store, "a").await, (vec![], vec![]));
    let stored: Vec<(String, fold::Counters)> = offline::snapshots(&p, T0 + 10 * D)
        .await
        .unwrap()
        .into_iter()
        .map(|(m, s)| (m, s.state.counters))
        .collect();
    let mut folded: Vec<_> = fold::fold_users(&events).into_iter().collect();
    folded.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(stored, folded);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.events, 5);
}
