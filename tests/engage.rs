//! The engagement loop in the running mesh, on the real broker and Redis:
//! churn alerts on users who stopped buying, engage answers each retention
//! action with an offer the bandit picks (asking churn and profile over
//! gRPC), the users' next orders are attributed to their offers from the
//! stream, the bandit learns from them, and the campaign report shows it.
use std::time::Duration;

use mesh_e2e::{config, publish_grpc, start, Servers};
use mesh_engage::bandit::ContextualBandit;
use mesh_proto::engage::v1 as pb;
use mesh_proto::engage::v1::engage_service_client::EngageServiceClient;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

const DAY: i64 = 86_400_000;

fn order(user: usize, k: usize, at_ms: i64, total: f64) -> Envelope {
    Envelope {
        event_id: format!("eng-{user}-{k}"),
        tenant_id: "shop".into(),
        user_id: format!("u{user}"),
        occurred_at_ms: at_ms,
        source: "checkout".into(),
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: format!("o-{user}-{k}"),
            items: vec![LineItem {
                sku: format!("sku-{}", user % 7),
                category: "books".into(),
                quantity: 1,
                unit_price: total,
                ..Default::default()
            }],
            total,
            currency: "USD".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// `ce_type` counts of the engagement topic.
fn engagement_events(
    brokers: &str,
    topic: &str,
    want: usize,
) -> std::collections::BTreeMap<String, usize> {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", mesh_testkit::unique("engage-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    // Assigned, not subscribed: no group join to wait for.
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let mut counts = std::collections::BTreeMap::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(40) && counts.values().sum::<usize>() < want {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let kind = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_type"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default();
            *counts.entry(kind).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_at_risk_user_gets_an_offer_and_the_order_that_follows_shows_in_the_report() {
    let cfg = config(Servers::Real, "engage-loop");
    let (mesh, shutdown) = start(&cfg).await;
    let now = chrono::Utc::now().timestamp_millis();
    // Three orders each, the last about ten months ago: churn finds every
    // one of these users at risk.
    let users = 60;
    let mut history = Vec::new();
    for u in 0..users {
        for k in 0..3 {
            history.push(order(u, k, now - (380 - 30 * k as i64) * DAY, 40.0));
        }
    }
    assert_eq!(
        publish_grpc(&mesh, &history, 100).await,
        (history.len() as u32, 0)
    );
    let mut client = EngageServiceClient::connect(format!("http://{}", mesh.engage.grpc_addr))
        .await
        .unwrap();
    let report = |c: &mut EngageServiceClient<tonic::transport::Channel>| {
        let mut c = c.clone();
        async move {
            c.campaign_report(pb::CampaignReportRequest {
                tenant_id: "shop".into(),
                campaign_id: "retention".into(),
            })
            .await
            .ok()
            .map(|r| r.into_inner())
        }
    };
    // Every treated user of churn's experiment gets into the campaign.
    let started = std::time::Instant::now();
    let mut offered = 0;
    let mut stable = 0;
    while stable < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no retention offers after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = report(&mut client).await.map_or(0, |r| {
            r.treatment.unwrap_or_default().participants
                + r.control.unwrap_or_default().participants
        });
        stable = if n > 0 && n == offered { stable + 1 } else { 0 };
        offered = n;
    }
    let before = report(&mut client).await.unwrap();
    let t = before.treatment.unwrap();
    assert!(t.participants > 0 && t.converted == 0, "{before:?}");
    let sent: u64 = before.offers_sent.values().sum();
    assert_eq!(sent, t.participants, "one offer per treated user");
    // The bandit was asked, with a context from churn and profile.
    let campaign = before.campaign.clone().unwrap();
    assert_eq!(
        campaign.offers,
        vec!["coupon", "bundle", "recommendation_push"]
    );

    // Everyone orders again today: each offered user converts.
    let today = chrono::Utc::now().timestamp_millis();
    let back: Vec<Envelope> = (0..users).map(|u| order(u, 9, today, 55.0)).collect();
    publish_grpc(&mesh, &back, 100).await;
    let started = std::time::Instant::now();
    let after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "conversions never showed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = report(&mut client).await.unwrap();
        let (t, c) = (r.treatment.unwrap(), r.control.unwrap());
        if t.converted == t.participants && c.converted == c.participants {
            break r;
        }
    };
    let t = after.treatment.unwrap();
    assert_eq!(t.orders, t.participants);
    assert!(
        (t.revenue - 55.0 * t.participants as f64).abs() < 1e-6,
        "{t:?}"
    );
    assert_eq!(after.offers_converted.values().sum::<u64>(), t.participants);
    // The bandit learned every conversion.
    let slot = mesh_engage_svc::keys::slot("shop/retention", cfg.partitions);
    let h = mesh
        .backends
        .store
        .hgetall(slot, &mesh_engage_svc::keys::campaign("shop", "retention"))
        .await
        .unwrap();
    let bandit: ContextualBandit = serde_json::from_str(&h["bandit"]).unwrap();
    let pulls: u64 = bandit.arms.iter().map(|a| a.pulls).sum();
    let rewards: f64 = bandit.arms.iter().map(|a| a.total_reward).sum();
    assert_eq!(pulls, t.participants);
    assert_eq!(rewards, t.participants as f64);
    // Every decision is an event.
    let want = (t.participants + after.control.unwrap().participants) as usize * 2;
    let events = engagement_events(&mesh.backends.brokers, &cfg.topics().engagement, want);
    assert_eq!(
        events.get("mesh.engage.v1.OfferSent").copied().unwrap_or(0) as u64,
        t.participants + after.control.unwrap().participants,
        "{events:?}"
    );
    assert!(
        events
            .get("mesh.engage.v1.OfferResponse")
            .copied()
            .unwrap_or(0) as u64
            >= t.participants
    );
    shutdown.cancel();
}
