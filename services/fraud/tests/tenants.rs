//! `tenant_id` of `GetReviewQueue`, `ResolveReview` and `ListLabels`, on
//! the gRPC implementation over the real broker and Redis: two tenants with
//! orders in the same partition slot, one order id used by both. A tenant
//! sees and changes only its own orders; another tenant's order answers as
//! one that does not exist; an empty tenant sees both; an anonymised label
//! stays its tenant's.
mod common;

use mesh_bus::{Handler, Record};
use mesh_fraud_svc::grpc::FraudGrpc;
use mesh_fraud_svc::handler::FraudHandler;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, UserErased};
use mesh_proto::fraud::v1 as pb;
use mesh_proto::fraud::v1::fraud_service_server::FraudService;
use prost::Message;
use tonic::{Code, Request};

use common::PARTITIONS;

/// Orders of 1000 or more go to review.
const RULES: &str = r#"
[[rule]]
code = "TEST_BIG"
action = "review"
description = "Large order (test)"
when = { feature = "amount", op = ">=", value = 1000 }
"#;

const A: &str = "shop-a";
const B: &str = "shop-b";
/// The slot every test user lives in.
const PARTITION: i32 = 1;

struct Setup {
    handler: FraudHandler,
    grpc: FraudGrpc,
    topic: String,
}

async fn setup() -> Setup {
    let d = common::direct("fraud-tenants", RULES).await;
    Setup {
        handler: d.handler,
        grpc: d.grpc,
        topic: d.topic,
    }
}

/// A user id of `tenant` in [`PARTITION`].
fn user_in(tenant: &str, stem: &str) -> String {
    (0..)
        .map(|i| format!("{stem}-{i}"))
        .find(|u| {
            mesh_bus::partition::partition_for(&format!("{tenant}/{u}"), PARTITIONS) == PARTITION
        })
        .unwrap()
}

/// A big (review) order of `user` of `tenant`.
fn order(tenant: &str, user: &str, id: &str, at: i64) -> Envelope {
    let mut e = common::order(user, id, 2000.0, at);
    e.tenant_id = tenant.into();
    e.event_id = format!("ev-{tenant}-{id}");
    e
}

fn erased(tenant: &str, user: &str, at: i64) -> Envelope {
    Envelope {
        event_id: format!("erase-{tenant}-{user}"),
        tenant_id: tenant.into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "test".into(),
        context: None,
        body: Some(Body::UserErased(UserErased {
            reason: "asked".into(),
        })),
    }
}

fn records(topic: &str, events: &[Envelope], first_offset: i64) -> Vec<Record> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            topic: topic.to_string(),
            partition: PARTITION,
            offset: first_offset + i as i64,
            key: Some(e.user_key().into_bytes()),
            payload: e.encode_to_vec(),
            headers: Default::default(),
            timestamp_ms: Some(e.occurred_at_ms),
        })
        .collect()
}

/// `(tenant, order id)` of a decision.
fn owner(d: Option<&pb::Decision>) -> (String, String) {
    let d = d.expect("decision");
    (d.tenant_id.clone(), d.order_id.clone())
}

fn pair(t: &str, o: &str) -> (String, String) {
    (t.to_string(), o.to_string())
}

/// Every queued order of `tenant`, page by page (`page_size` each); every
/// page but the last is full.
async fn queue(s: &Setup, tenant: &str, page_size: u32) -> Vec<(String, String)> {
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let page = s
            .grpc
            .get_review_queue(Request::new(pb::GetReviewQueueRequest {
                page_size,
                page_token: token,
                tenant_id: tenant.into(),
            }))
            .await
            .expect("queue")
            .into_inner();
        out.extend(page.items.iter().map(|i| owner(i.decision.as_ref())));
        if page.next_page_token.is_empty() {
            return out;
        }
        assert_eq!(
            page.items.len(),
            page_size as usize,
            "a short page of {tenant:?}"
        );
        token = page.next_page_token;
    }
}

/// Every label of `tenant`, page by page; every page but the last is full.
async fn labels(s: &Setup, tenant: &str, page_size: u32) -> Vec<pb::LabelRecord> {
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let page = s
            .grpc
            .list_labels(Request::new(pb::ListLabelsRequest {
                page_size,
                page_token: token,
                tenant_id: tenant.into(),
            }))
            .await
            .expect("labels")
            .into_inner();
        let n = page.labels.len();
        out.extend(page.labels);
        if page.next_page_token.is_empty() {
            return out;
        }
        assert_eq!(n, page_size as usize, "a short page of {tenant:?}");
        token = page.next_page_token;
    }
}

fn label_owner(l: &pb::LabelRecord) -> (String, String) {
    owner(l.item.as_ref().and_then(|i| i.decision.as_ref()))
}

async fn resolve(
    s: &Setup,
    tenant: &str,
    order_id: &str,
    label: pb::Label,
) -> Result<pb::ResolveReviewResponse, tonic::Status> {
    s.grpc
        .resolve_review(Request::new(pb::ResolveReviewRequest {
            order_id: order_id.into(),
            label: label as i32,
            reviewer: "rev".into(),
            tenant_id: tenant.into(),
        }))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_rpcs_see_and_change_only_their_tenants_orders() {
    let s = setup().await;
    let (ua, ua2, ub) = (user_in(A, "a"), user_in(A, "a-two"), user_in(B, "b"));
    let t0 = common::now_ms() - 3_600_000;
    // "same" is an order id of both tenants, in the same slot.
    let events = vec![
        order(A, &ua, "a1", t0),
        order(B, &ub, "b1", t0 + 1000),
        order(A, &ua2, "a2", t0 + 2000),
        order(B, &ub, "same", t0 + 3000),
        order(A, &ua, "same", t0 + 4000),
        order(A, &ua2, "a3", t0 + 5000),
    ];
    s.handler
        .handle(&records(&s.topic, &events, 0))
        .await
        .expect("batch");

    // GetReviewQueue: each tenant its own orders, oldest first, in full
    // pages; empty = both.
    let a_queue = vec![pair(A, "a1"), pair(A, "a2"), pair(A, "same"), pair(A, "a3")];
    let b_queue = vec![pair(B, "b1"), pair(B, "same")];
    assert_eq!(queue(&s, A, 1).await, a_queue);
    assert_eq!(queue(&s, A, 3).await, a_queue);
    assert_eq!(queue(&s, B, 50).await, b_queue);
    let all = queue(&s, "", 2).await;
    assert_eq!(all.len(), 6, "{all:?}");
    assert!(a_queue.iter().chain(&b_queue).all(|o| all.contains(o)));

    // ResolveReview: B's order named by A is not found and stays B's.
    let e = resolve(&s, A, "b1", pb::Label::Fraud).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let never = resolve(&s, A, "no-such-order", pb::Label::Fraud)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message().replace("b1", "X")),
        (never.code(), never.message().replace("no-such-order", "X")),
        "another tenant's order answers as one that never existed"
    );
    assert_eq!(queue(&s, B, 50).await, b_queue);
    assert!(labels(&s, "", 100).await.is_empty());

    // Without a tenant an order id of two tenants is ambiguous.
    let e = resolve(&s, "", "same", pb::Label::Fraud).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("tenant_id"), "{e:?}");

    // A resolves its "same": B's "same" stays queued and unlabelled.
    let r = resolve(&s, A, "same", pb::Label::Fraud).await.unwrap();
    assert!(!r.already_resolved);
    assert_eq!(label_owner(r.label.as_ref().unwrap()), pair(A, "same"));
    assert_eq!(queue(&s, B, 50).await, b_queue);
    assert!(labels(&s, B, 100).await.is_empty());
    assert!(!queue(&s, A, 50).await.contains(&pair(A, "same")));
    // B's "same" is its own review, not A's resolved one.
    let r = resolve(&s, B, "same", pb::Label::Legit).await.unwrap();
    assert!(!r.already_resolved);
    let rec = r.label.unwrap();
    assert_eq!(
        (label_owner(&rec), rec.label()),
        (pair(B, "same"), pb::Label::Legit)
    );
    // A retry by A still answers A's label.
    let r = resolve(&s, A, "same", pb::Label::Legit).await.unwrap();
    assert!(r.already_resolved);
    assert_eq!(r.label.unwrap().label(), pb::Label::Fraud);
    // Without a tenant, a unique order id is found in its tenant.
    let r = resolve(&s, "", "a1", pb::Label::Legit).await.unwrap();
    assert_eq!(label_owner(r.label.as_ref().unwrap()), pair(A, "a1"));
    let r = resolve(&s, "", "a1", pb::Label::Fraud).await.unwrap();
    assert!(r.already_resolved);
    let e = resolve(&s, B, "a1", pb::Label::Fraud).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(queue(&s, A, 1).await, vec![pair(A, "a2"), pair(A, "a3")]);
    assert_eq!(queue(&s, B, 1).await, vec![pair(B, "b1")]);

    // ListLabels: each tenant its own, in full pages; empty = both.
    // Sorted: two resolutions in the same millisecond tie on time.
    let owners = |ls: Vec<pb::LabelRecord>| {
        let mut o = ls.iter().map(label_owner).collect::<Vec<_>>();
        o.sort();
        o
    };
    assert_eq!(
        owners(labels(&s, A, 1).await),
        vec![pair(A, "a1"), pair(A, "same")]
    );
    assert_eq!(owners(labels(&s, B, 1).await), vec![pair(B, "same")]);
    assert_eq!(labels(&s, "", 1).await.len(), 3);

    // A's buyer of "same" and "a1" is erased: the labels, anonymised, stay
    // A's training data and do not become B's.
    let erase = records(
        &s.topic,
        &[erased(A, &ua, t0 + 10_000)],
        events.len() as i64,
    );
    s.handler.handle(&erase).await.expect("erasure");
    let a_labels = labels(&s, A, 1).await;
    assert_eq!(a_labels.len(), 2, "{a_labels:?}");
    for l in &a_labels {
        assert_eq!(label_owner(l), pair(A, ""), "anonymised, still A's");
        assert_eq!(
            l.item.as_ref().unwrap().decision.as_ref().unwrap().user_id,
            ""
        );
    }
    assert_eq!(owners(labels(&s, B, 100).await), vec![pair(B, "same")]);
    assert_eq!(labels(&s, "", 100).await.len(), 3);
    // The erased buyer's orders are gone for A; B's "same" is untouched.
    let e = resolve(&s, A, "same", pb::Label::Fraud).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let r = resolve(&s, B, "same", pb::Label::Fraud).await.unwrap();
    assert!(r.already_resolved);
    assert_eq!(r.label.unwrap().label(), pb::Label::Legit);
    assert_eq!(queue(&s, A, 50).await, vec![pair(A, "a2"), pair(A, "a3")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_id_no_event_can_carry_is_invalid_and_named() {
    let s = setup().await;
    for bad in ["a/b".to_string(), "shop a".into(), "t".repeat(65)] {
        let q = s
            .grpc
            .get_review_queue(Request::new(pb::GetReviewQueueRequest {
                page_size: 10,
                page_token: String::new(),
                tenant_id: bad.clone(),
            }))
            .await
            .unwrap_err();
        let r = resolve(&s, &bad, "o1", pb::Label::Fraud).await.unwrap_err();
        let l = s
            .grpc
            .list_labels(Request::new(pb::ListLabelsRequest {
                page_size: 10,
                page_token: String::new(),
                tenant_id: bad.clone(),
            }))
            .await
            .unwrap_err();
        for e in [q, r, l] {
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
            assert!(e.message().starts_with("tenant_id"), "{bad:?}: {e:?}");
        }
    }
    // The longest valid tenant is just a tenant with nothing queued.
    let ok = "t".repeat(64);
    assert!(queue(&s, &ok, 10).await.is_empty());
    assert!(labels(&s, &ok, 10).await.is_empty());
}
