//! `user_erased` against the real broker and Redis, through the consumer's
//! handler with records of one partition: the erased user's state, queue
//! entries, decisions and links leave the store (labels stay, anonymous),
//! other users are untouched, a later event of the user changes nothing,
//! and a replay that keeps the erasures rebuilds everyone but the user.
mod common;

use std::collections::HashMap;

use mesh_bus::{Handler, Record};
use mesh_fraud::state::{entity_key, users_key, EntityKind};
use mesh_fraud_svc::handler::FraudHandler;
use mesh_fraud_svc::review::{self, LABELS_KEY};
use mesh_fraud_svc::state::{home_partition, SCOPE};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Context, Envelope, UserErased};
use mesh_proto::fraud::v1 as pb;
use mesh_store::{erasure, Slot, StateStore};
use prost::Message;

use common::PARTITIONS;

/// Orders of 1000 or more go to review, so the queue and labels have
/// entries of both users.
const RULES: &str = r#"
[[rule]]
code = "TEST_BIG"
action = "review"
description = "Large order (test)"
when = { feature = "amount", op = ">=", value = 1000 }
"#;

struct Setup {
    handler: FraudHandler,
    store: StateStore,
    prefix: String,
    topic: String,
    partition: i32,
}

async fn setup() -> Setup {
    let d = common::direct("fraud-erasure", RULES).await;
    Setup {
        handler: d.handler,
        store: d.store,
        prefix: d.prefix,
        topic: d.topic,
        partition: 0,
    }
}

/// A user id of tenant `shop` whose partition is `partition`.
fn user_in(partition: i32, stem: &str) -> String {
    (0..)
        .map(|i| format!("{stem}-{i}"))
        .find(|u| mesh_bus::partition::partition_for(&format!("shop/{u}"), PARTITIONS) == partition)
        .unwrap()
}

/// An order of `user`; the device, IP, card and address depend on
/// `device` only (None: no device, IP or card, so the user's stand-ins),
/// never on the user's name.
fn order(user: &str, id: &str, amount: f64, at: i64, device: Option<&str>) -> Envelope {
    let mut e = common::order(user, id, amount, at);
    e.context = device.map(|d| Context {
        device_hash: d.into(),
        ip_hash: format!("ip-of-{d}"),
        ..Context::default()
    });
    let lat = match device {
        None => 47.0,
        Some("dev-shared") => 48.0,
        Some("dev-b") => 49.0,
        Some(_) => 50.0,
    };
    if let Some(Body::OrderPlaced(o)) = &mut e.body {
        o.payment_hash = device.map(|d| format!("card-of-{d}")).unwrap_or_default();
        o.ship_to.as_mut().unwrap().lat = lat;
    }
    e
}

fn erased(user: &str, at: i64) -> Envelope {
    Envelope {
        event_id: format!("erase-{user}-{at}"),
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "test".into(),
        context: None,
        body: Some(Body::UserErased(UserErased {
            reason: "asked".into(),
        })),
    }
}

fn records(s: &Setup, events: &[Envelope], first_offset: i64) -> Vec<Record> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            topic: s.topic.clone(),
            partition: s.partition,
            offset: first_offset + i as i64,
            key: Some(e.user_key().into_bytes()),
            payload: e.encode_to_vec(),
            headers: Default::default(),
            timestamp_ms: Some(e.occurred_at_ms),
        })
        .collect()
}

fn slot(partition: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition,
    }
}

async fn decision(store: &StateStore, user: &str, order: &str) -> pb::GetDecisionResponse {
    review::decision_of(
        store,
        PARTITIONS,
        &pb::GetDecisionRequest {
            tenant_id: "shop".into(),
            user_id: user.into(),
            order_id: order.into(),
        },
    )
    .await
    .unwrap()
}

async fn queued(store: &StateStore) -> Vec<(String, String)> {
    review::list_queue(store, PARTITIONS, 500, "")
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| {
            let d = i.decision.unwrap();
            (d.user_id, d.order_id)
        })
        .collect()
}

fn hex(s: &str) -> String {
    review::hex(s.as_bytes())
}

/// Every key of the test's prefix whose name, fields, members or values
/// mention `needle` (plain or hex-encoded, as protobuf values are
/// stored), except the erasure hash, which names erased users by design.
async fn traces(prefix: &str, needle: &str) -> Vec<String> {
    let url = mesh_testkit::redis_url();
    mesh_testkit::store_traces(&url, prefix, &[needle, &hex(needle)], erasure::KEY).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_leaves_no_trace_and_stays_erased_through_a_replay() {
    let mut s = setup().await;
    s.partition = 1;
    let a = user_in(s.partition, "erase-me");
    let b = user_in(s.partition, "keep-me");
    let c = user_in(s.partition, "share-device");
    let t0 = common::now_ms() - 3_600_000;
    let (ma, mb, mc) = (
        erasure::member("shop", &a),
        erasure::member("shop", &b),
        erasure::member("shop", &c),
    );
    let (a1, a2, a3) = (format!("{a}-o1"), format!("{a}-o2"), format!("{a}-o3"));
    let (b1, b2, b3) = (format!("{b}-o1"), format!("{b}-o2"), format!("{b}-o3"));
    let c1 = format!("{c}-o1");
    let before = vec![
        order(&a, &a1, 2000.0, t0, Some("dev-shared")),
        order(&b, &b1, 2000.0, t0 + 1000, Some("dev-b")),
        order(&a, &a2, 20.0, t0 + 2000, None),
        order(&c, &c1, 30.0, t0 + 3000, Some("dev-shared")),
        order(&b, &b2, 30.0, t0 + 4000, Some("dev-b")),
    ];
    let batch1 = records(&s, &before, 0);
    s.handler.handle(&batch1).await.expect("first batch");

    // The two big orders are queued; the reviewer labels A's.
    let q = queued(&s.store).await;
    assert!(q.contains(&(a.clone(), a1.clone())), "{q:?}");
    assert!(q.contains(&(b.clone(), b1.clone())), "{q:?}");
    let (label, _) = review::resolve(
        &s.store,
        PARTITIONS,
        &pb::ResolveReviewRequest {
            tenant_id: String::new(),
            order_id: a1.clone(),
            label: pb::Label::Fraud as i32,
            reviewer: "rev-1".into(),
        },
        t0 + 10_000,
    )
    .await
    .unwrap();
    let a_features = label.item.unwrap().features;
    assert!(decision(&s.store, &a, &a2).await.found);
    assert!(
        !traces(&s.prefix, &a).await.is_empty(),
        "A is stored before"
    );

    let user_hash = |m: &str| entity_key(EntityKind::User, m);
    let b_before = s
        .store
        .hgetall(slot(s.partition), &user_hash(&mb))
        .await
        .unwrap();
    assert!(!b_before.is_empty());
    let b_decisions = (
        decision(&s.store, &b, &b1).await,
        decision(&s.store, &b, &b2).await,
    );

    // The erasure, with another order of B behind it in the same batch.
    let batch2 = records(
        &s,
        &[
            erased(&a, t0 + 20_000),
            order(&b, &b3, 40.0, t0 + 21_000, Some("dev-b")),
        ],
        5,
    );
    s.handler.handle(&batch2).await.expect("erasure batch");
    let check_a_gone = |when: &'static str| {
        let (store, prefix, a, ma) = (s.store.clone(), s.prefix.clone(), a.clone(), ma.clone());
        let (a1, a2, a3) = (a1.clone(), a2.clone(), a3.clone());
        let partition = s.partition;
        async move {
            let left = traces(&prefix, &a).await;
            assert!(left.is_empty(), "{when}: A still in {left:?}");
            for o in [&a1, &a2, &a3] {
                assert!(!decision(&store, &a, o).await.found, "{when}: decision {o}");
            }
            assert!(
                queued(&store).await.iter().all(|(u, _)| u != &a),
                "{when}: A queued"
            );
            let erased = store.hgetall(slot(partition), erasure::KEY).await.unwrap();
            assert!(erased.contains_key(&ma), "{when}: erasure recorded");
            let r = review::resolve(
                &store,
                PARTITIONS,
                &pb::ResolveReviewRequest {
                    tenant_id: String::new(),
                    order_id: a1.clone(),
                    label: pb::Label::Legit as i32,
                    reviewer: "rev-2".into(),
                },
                0,
            )
            .await;
            assert!(r.is_err(), "{when}: A's order is no review any more");
        }
    };
    check_a_gone("after the erasure").await;
    // The label stays for training, with A's features and nothing of A.
    let labels = review::list_labels(&s.store, PARTITIONS, 100, "")
        .await
        .unwrap();
    assert_eq!(labels.labels.len(), 1);
    let kept = &labels.labels[0];
    assert_eq!(kept.label(), pb::Label::Fraud);
    let item = kept.item.as_ref().unwrap();
    assert_eq!(item.features, a_features);
    let d = item.decision.as_ref().unwrap();
    assert_eq!((d.user_id.as_str(), d.order_id.as_str()), ("", ""));
    assert!(d.occurred_at_ms > 0, "training keeps the time split");
    // The shared device still counts C, no longer A.
    let dev_users = users_key(EntityKind::Device, "shop/dev-shared");
    let members = s
        .store
        .hgetall(slot(home_partition(&dev_users, PARTITIONS)), &dev_users)
        .await
        .unwrap();
    assert_eq!(members.keys().collect::<Vec<_>>(), vec![&mc]);
    // B is untouched, and B's order behind the erasure was applied.
    assert!(decision(&s.store, &b, &b3).await.found);
    assert_eq!(decision(&s.store, &b, &b1).await, b_decisions.0);
    assert!(queued(&s.store).await.contains(&(b.clone(), b1.clone())));

    // A late order of A changes nothing and decides nothing.
    let late = records(
        &s,
        &[order(&a, &a3, 5000.0, t0 + 30_000, Some("dev-late"))],
        7,
    );
    s.handler.handle(&late).await.expect("late batch");
    check_a_gone("after a late event").await;
    let late_dev = users_key(EntityKind::Device, "shop/dev-late");
    assert!(s
        .store
        .hgetall(slot(home_partition(&late_dev, PARTITIONS)), &late_dev)
        .await
        .unwrap()
        .is_empty());
    let b_after = s
        .store
        .hgetall(slot(s.partition), &user_hash(&mb))
        .await
        .unwrap();

    // Replay: clear the scope but the erasures and labels, apply every
    // record again from offset 0.
    s.store
        .clear_scope_keeping(SCOPE, &[erasure::KEY, LABELS_KEY])
        .await
        .unwrap();
    for batch in [&batch1, &batch2, &late] {
        s.handler.handle(batch).await.expect("replayed batch");
    }
    check_a_gone("after the replay").await;
    let b_replayed = s
        .store
        .hgetall(slot(s.partition), &user_hash(&mb))
        .await
        .unwrap();
    assert_eq!(b_replayed, b_after, "B rebuilt equal");
    assert_ne!(b_replayed, b_before, "B's later order is in it");
    assert_eq!(decision(&s.store, &b, &b1).await, b_decisions.0);
    assert_eq!(decision(&s.store, &b, &b2).await, b_decisions.1);
    assert!(decision(&s.store, &b, &b3).await.found);
    let c_hash: HashMap<String, String> = s
        .store
        .hgetall(slot(s.partition), &user_hash(&mc))
        .await
        .unwrap();
    assert!(!c_hash.is_empty(), "C rebuilt");
    let members = s
        .store
        .hgetall(slot(home_partition(&dev_users, PARTITIONS)), &dev_users)
        .await
        .unwrap();
    assert_eq!(members.keys().collect::<Vec<_>>(), vec![&mc]);
}
