//! Erasure (issue #17, item 6) against the real broker and Redis: after
//! `ForgetUser`, no key, field, member or value of any service's state
//! names the user; a late event of the user changes nothing; and a rebuild
//! of every service from offset 0 (`mesh replay`) does not bring the user
//! back, while every other user is rebuilt as before.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh_cli::serve::Role;
use mesh_e2e::{caught_up, config, events, fold, publish_grpc, start, wait_for_profiles, Servers};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{self as ev, Envelope};
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::ForgetUserRequest;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use mesh_proto::support::v1::support_service_client::SupportServiceClient;
use mesh_proto::support::v1::ConverseRequest;

/// The user to forget. Its order ids carry the name too, so one string
/// finds every trace of it in the store.
const GONE: &str = "forget-me-7f3a";

/// Every key under the mesh's prefix that names the user (plain, or
/// hex-encoded as protobuf values are stored), the erasure records
/// themselves excepted.
async fn traces(url: &str, prefix: &str, needle: &str) -> Vec<String> {
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    mesh_testkit::store_traces(url, prefix, &[needle, &hex], mesh_store::erasure::KEY).await
}

/// How many of `keys` each scope (the `{scope.partition}` part) holds.
fn scopes(keys: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for k in keys {
        let scope = k
            .split_once(":{")
            .and_then(|(_, rest)| rest.split_once(['.', '}']))
            .map(|(s, _)| s.to_string())
            .unwrap_or_else(|| "(unscoped)".into());
        *out.entry(scope).or_insert(0) += 1;
    }
    out
}

/// `user`'s events renamed to [`GONE`], order ids included, plus a cash
/// order (it joins a delivery wave at once) and a review and a support
/// message (feedback state).
fn with_gone_user(mut evs: Vec<Envelope>, user: &str) -> Vec<Envelope> {
    for e in evs.iter_mut().filter(|e| e.user_id == user) {
        e.user_id = GONE.into();
        let rename = |id: &mut String| *id = format!("{GONE}-{id}");
        match e.body.as_mut() {
            Some(Body::OrderPlaced(o)) => rename(&mut o.order_id),
            Some(Body::PaymentAuthorized(p)) => rename(&mut p.order_id),
            Some(Body::PaymentFailed(p)) => rename(&mut p.order_id),
            Some(Body::OrderCancelled(o)) => rename(&mut o.order_id),
            Some(Body::OrderShipped(o)) => rename(&mut o.order_id),
            Some(Body::OrderDelivered(o)) => rename(&mut o.order_id),
            Some(Body::RefundIssued(r)) => rename(&mut r.order_id),
            Some(Body::ReviewSubmitted(r)) if !r.order_id.is_empty() => rename(&mut r.order_id),
            _ => {}
        }
    }
    let last = evs.last().cloned().expect("events");
    let more = |i: usize, body: Body| Envelope {
        event_id: format!("gone-extra-{i}"),
        user_id: GONE.into(),
        occurred_at_ms: last.occurred_at_ms - 1_000 + i as i64,
        body: Some(body),
        ..last.clone()
    };
    let extra = vec![
        more(
            0,
            Body::OrderPlaced(ev::OrderPlaced {
                order_id: format!("{GONE}-cod"),
                items: vec![ev::LineItem {
                    sku: "sku-7".into(),
                    category: "books".into(),
                    quantity: 1,
                    unit_price: 20.0,
                    ..Default::default()
                }],
                subtotal: 20.0,
                total: 20.0,
                currency: "USD".into(),
                payment_method: "cod".into(),
                ship_to: Some(ev::Location {
                    lat: 48.85,
                    lon: 2.35,
                    country: "FR".into(),
                    region: "IDF".into(),
                }),
                warehouse_id: "wh-1".into(),
                ..Default::default()
            }),
        ),
        more(
            1,
            Body::ReviewSubmitted(ev::ReviewSubmitted {
                sku: "sku-7".into(),
                rating: 1,
                text: "arrived broken, terrible quality".into(),
                order_id: format!("{GONE}-cod"),
            }),
        ),
        more(
            2,
            Body::SupportMessage(ev::SupportMessage {
                ticket_id: format!("{GONE}-t1"),
                text: "where is my order? it is late".into(),
                channel: "chat".into(),
            }),
        ),
    ];
    evs.extend(extra);
    evs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forget_user_erases_every_service_and_survives_a_replay() {
    let _e2e = mesh_e2e::exclusive().await;
    let mut cfg = config(Servers::Real, "erase");
    // Replays compare with the policy's fixed threshold (see backbone's
    // replay test).
    cfg.fraud.review_budget = 0.0;
    let (mesh, shutdown) = start(&cfg).await;
    let evs = with_gone_user(events("er", 40, 2_000), "u3");
    let gone_events = evs.iter().filter(|e| e.user_id == GONE).count();
    assert!(gone_events > 20, "{gone_events}");
    let (accepted, _) = publish_grpc(&mesh, &evs, 250).await;
    assert_eq!(accepted as usize, evs.len());
    caught_up(&mesh, &cfg).await;
    // A conversation with the assistant that goes to a person.
    let mut support = SupportServiceClient::connect(format!("http://{}", mesh.support.grpc_addr))
        .await
        .unwrap();
    let talk = |text: &str| ConverseRequest {
        tenant_id: "demo".into(),
        user_id: GONE.into(),
        conversation_id: String::new(),
        text: text.into(),
    };
    let handed = support
        .converse(talk("I want to talk to a human agent please"))
        .await
        .expect("converse")
        .into_inner();
    assert!(handed.handed_off, "{handed:?}");

    let url = mesh_testkit::redis_url();
    let before = scopes(&traces(&url, &cfg.key_prefix, GONE).await);
    eprintln!("before the erasure, keys naming the user per scope: {before:?}");
    for s in [
        "profile",
        "churn",
        "fraud",
        "recommend",
        "logistics",
        "engage",
        "support",
    ] {
        assert!(
            before.contains_key(s),
            "{s} holds nothing of the user: {before:?}"
        );
    }

    let mut ingest = IngestServiceClient::connect(format!("http://{}", mesh.ingest.grpc_addr))
        .await
        .unwrap();
    let bad = ingest
        .forget_user(ForgetUserRequest {
            tenant_id: "demo".into(),
            user_id: String::new(),
            reason: String::new(),
        })
        .await
        .expect_err("no user");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("user_id"), "{}", bad.message());
    let erased = ingest
        .forget_user(ForgetUserRequest {
            tenant_id: "demo".into(),
            user_id: GONE.into(),
            reason: "gdpr_request".into(),
        })
        .await
        .expect("forget")
        .into_inner();
    assert!(erased.event_id.starts_with("erase-") && !erased.event_id.contains(GONE));
    let asked = Instant::now();
    let left = loop {
        let left = traces(&url, &cfg.key_prefix, GONE).await;
        if left.is_empty() || asked.elapsed() > Duration::from_secs(60) {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(left.is_empty(), "still named after 60 s: {left:?}");
    eprintln!(
        "every service forgot the user in {:.1} s",
        asked.elapsed().as_secs_f64()
    );
    // Asking again is harmless: the same event id, recognised by ingest.
    let again = ingest
        .forget_user(ForgetUserRequest {
            tenant_id: "demo".into(),
            user_id: GONE.into(),
            reason: "gdpr_request".into(),
        })
        .await
        .expect("forget again")
        .into_inner();
    assert_eq!(again.event_id, erased.event_id);

    let mut profile = ProfileServiceClient::connect(format!("http://{}", mesh.profile.grpc_addr))
        .await
        .unwrap();
    let read = |user: &str| GetProfileRequest {
        tenant_id: "demo".into(),
        user_id: user.into(),
    };
    let unknown = profile.get_profile(read(GONE)).await;
    assert_eq!(
        unknown.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::NotFound)
    );

    let refused = support.converse(talk("hello again")).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::NotFound)
    );

    // A late event of the user (a retry from a queue, say) changes nothing.
    let mut late = evs
        .iter()
        .find(|e| e.user_id == GONE && matches!(e.body, Some(Body::OrderPlaced(_))))
        .cloned()
        .unwrap();
    late.event_id = "gone-late".into();
    if let Some(Body::OrderPlaced(o)) = late.body.as_mut() {
        o.order_id = format!("{GONE}-late");
    }
    publish_grpc(&mesh, &[late], 1).await;
    caught_up(&mesh, &cfg).await;
    let after_late = traces(&url, &cfg.key_prefix, GONE).await;
    assert!(
        after_late.is_empty(),
        "a late event came back: {after_late:?}"
    );

    // Everybody else is as the events say.
    let mut expected = fold(&evs);
    expected.retain(|(_, u), _| u != GONE);
    let bad = wait_for_profiles(mesh.profile.grpc_addr, &expected, Duration::from_secs(30)).await;
    assert!(bad.is_empty(), "{bad:?}");

    // Rebuild every service from offset 0 with the services stopped.
    shutdown.cancel();
    mesh.stopped(Duration::from_secs(15)).await;
    let backends = mesh_cli::node::Backends::connect(&cfg).await.unwrap();
    for role in [
        Role::Profile,
        Role::Churn,
        Role::Fraud,
        Role::Recommend,
        Role::Logistics,
        Role::Engage,
        Role::Support,
    ] {
        let r = mesh_cli::replay::replay_service(role, &cfg, &backends, false)
            .await
            .unwrap_or_else(|e| panic!("replay {}: {e:#}", role.name()));
        assert!(r.keys_cleared > 0, "{r:?}");
    }
    let rebuilt = traces(&url, &cfg.key_prefix, GONE).await;
    assert!(
        rebuilt.is_empty(),
        "the replay brought the user back: {rebuilt:?}"
    );

    // The rebuilt profiles of everyone else match the events.
    let (again, stop) = start(&cfg).await;
    let bad = wait_for_profiles(again.profile.grpc_addr, &expected, Duration::from_secs(30)).await;
    assert!(bad.is_empty(), "after the replay: {bad:?}");
    let unknown = ProfileServiceClient::connect(format!("http://{}", again.profile.grpc_addr))
        .await
        .unwrap()
        .get_profile(read(GONE))
        .await;
    assert_eq!(
        unknown.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::NotFound)
    );
    stop.cancel();
    again.stopped(Duration::from_secs(15)).await;
}
