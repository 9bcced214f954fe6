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
    let _e2e = mesh_e2e::shared().await;
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

fn view(user: usize, sku: &str, price: f64, at_ms: i64, k: usize) -> Envelope {
    Envelope {
        event_id: format!("view-{user}-{sku}-{k}"),
        tenant_id: "shop".into(),
        user_id: format!("p{user}"),
        occurred_at_ms: at_ms,
        source: "web".into(),
        body: Some(Body::ProductView(mesh_proto::events::v1::ProductView {
            sku: sku.into(),
            category: "lamps".into(),
            price,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn buy(user: usize, sku: &str, price: f64, units: u32, at_ms: i64, k: usize) -> Envelope {
    Envelope {
        event_id: format!("buy-{user}-{sku}-{k}"),
        tenant_id: "shop".into(),
        user_id: format!("p{user}"),
        occurred_at_ms: at_ms,
        source: "checkout".into(),
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: format!("po-{user}-{sku}-{k}"),
            items: vec![LineItem {
                sku: sku.into(),
                category: "lamps".into(),
                quantity: units,
                unit_price: price,
                ..Default::default()
            }],
            total: price * f64::from(units),
            currency: "USD".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Dynamic pricing in the running mesh: views and sales at varied prices
/// (buyers' lifecycle stages known from profile's transitions) give the
/// item an elasticity per item and per stage; a competitor's price from the
/// market-prices topic caps a rise; a bad market price is dead-lettered
/// with its reason; the change is explained and published.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prices_follow_demand_stages_and_the_market() {
    let _e2e = mesh_e2e::shared().await;
    use mesh_bus::headers::{self, HeaderList};
    use prost::Message as _;

    let cfg = config(Servers::Real, "engage-pricing");
    let (mesh, shutdown) = start(&cfg).await;
    let now = chrono::Utc::now().timestamp_millis();
    let users = 24;
    // A first order each: profile moves every buyer out of "new" and
    // publishes the transition, which engage keeps.
    let first: Vec<Envelope> = (0..users)
        .map(|u| buy(u, "mug", 5.0, 1, now - 20 * DAY, 0))
        .collect();
    assert_eq!(publish_grpc(&mesh, &first, 50).await, (users as u32, 0));
    let store = &mesh.backends.store;
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "engage never saw profile's stage transitions"
        );
        let reads: Vec<_> = (0..users)
            .map(|u| {
                let member = format!("shop/p{u}");
                (
                    mesh_engage_svc::keys::slot(&member, cfg.partitions),
                    mesh_engage_svc::keys::stage("shop", &format!("p{u}")),
                )
            })
            .collect();
        let known = store
            .hgetall_many(&reads)
            .await
            .unwrap()
            .iter()
            .filter(|h| h.get("s").is_some_and(|s| s.starts_with("STAGE_")))
            .count();
        if known == users {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Ten days of a lamp at prices 8..12 with inelastic demand (-0.5).
    let mut events = Vec::new();
    for day in 0..10i64 {
        let price = 8.0 + (day % 5) as f64;
        let at = now - (10 - day) * DAY;
        let units = (40.0 * 0.25 * (price / 10.0f64).powf(-0.5)).round() as usize;
        for u in 0..40 {
            events.push(view(u % users, "lamp", price, at, day as usize * 100 + u));
        }
        for u in 0..units {
            events.push(buy(u % users, "lamp", price, 1, at, day as usize * 100 + u));
        }
    }
    // The lamp is shown at 10 today.
    events.push(view(0, "lamp", 10.0, now, 9999));
    assert_eq!(publish_grpc(&mesh, &events, 200).await.1, 0);

    // A competitor sells it at 9; a feed sends a price that cannot be one.
    let market = |source: &str, price: f64| mesh_proto::engage::v1::MarketPrice {
        tenant_id: "shop".into(),
        sku: "lamp".into(),
        source: source.into(),
        price,
        observed_at_ms: now,
    };
    let topic = cfg.topics().market_prices;
    let p = &mesh.backends.producer;
    let none = HeaderList::new();
    p.send(
        &topic,
        "shop/lamp",
        &market("rival", 9.0).encode_to_vec(),
        &none,
    )
    .await
    .unwrap();
    p.send(
        &topic,
        "shop/lamp",
        &market("broken-feed", -3.0).encode_to_vec(),
        &none,
    )
    .await
    .unwrap();

    // Once engage has seen today's view and the market, a pricing round
    // raises the price as far as the market allows (9 × 1.05), and says so.
    let engage = mesh.engage.engage.clone();
    let mut client = EngageServiceClient::connect(format!("http://{}", mesh.engage.grpc_addr))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let x = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the lamp was never priced against the market"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        mesh_engage_svc::pricing::price_once(&engage).await.unwrap();
        let x = client
            .explain_price(pb::GetPriceRequest {
                tenant_id: "shop".into(),
                sku: "lamp".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if x.market_price > 0.0 && x.observations >= 10 {
            break x;
        }
    };
    let quote = x.quote.clone().unwrap();
    assert_eq!(x.market_source, "rival", "{x:?}");
    assert!((x.market_price - 9.0).abs() < 1e-9, "{x:?}");
    assert!(
        x.elasticity > -1.0,
        "inelastic demand was estimated as {x:?}"
    );
    assert_eq!(x.bound_by, "market", "{x:?}");
    assert!((quote.price - 9.45).abs() < 0.01, "{quote:?}");
    // Stage elasticities: every stage seen, each a finite negative slope.
    assert!(!x.segments.is_empty(), "{x:?}");
    for s in &x.segments {
        assert!(s.segment.starts_with("STAGE_"), "{s:?}");
        assert!(s.elasticity.is_finite() && s.observations > 0, "{s:?}");
    }
    // The bad market price is on the dead-letter topic with its reason.
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &mesh.backends.brokers)
        .set("group.id", mesh_testkit::unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for part in 0..cfg.partitions {
        tpl.add_partition_offset(&cfg.topics().dead_letter, part, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let started = std::time::Instant::now();
    let reason = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the bad market price never reached the dead-letter topic"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let reason = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == headers::DLQ_REASON))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default();
            if reason.contains("MarketPrice") {
                break reason;
            }
        }
    };
    assert!(reason.contains("MarketPrice.price -3"), "{reason}");
    // The change went out as an event.
    let events = engagement_events(&mesh.backends.brokers, &cfg.topics().engagement, 1);
    assert!(
        events
            .get("mesh.engage.v1.PriceChanged")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{events:?}"
    );
    shutdown.cancel();
}

/// Ads on the running service: before any report the creatives tie; the ad
/// platform reports deliveries at true click rates of 6% and 2%, and the CTR
/// model then ranks the truly better creative first. The budget bandit
/// starts even and, fed the returns of a 2.5 and a 0.6 ROAS campaign, moves
/// the budget to the better one. Bad input is refused naming the field;
/// every ranking and split goes out as an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ads_rank_the_better_creative_and_budget_follows_returns() {
    let _e2e = mesh_e2e::shared().await;
    let cfg = config(Servers::Real, "engage-ads");
    let (mesh, shutdown) = start(&cfg).await;
    let mut client = EngageServiceClient::connect(format!("http://{}", mesh.engage.grpc_addr))
        .await
        .unwrap();
    // "brand-intro" sorts first, so a tie ranks the worse creative first.
    let (worse, better) = ("brand-intro", "spring-sale");
    let true_ctr = |c: &str| if c == better { 0.06 } else { 0.02 };
    let score = |c: &mut EngageServiceClient<tonic::transport::Channel>| {
        let mut c = c.clone();
        async move {
            c.score_creatives(pb::ScoreCreativesRequest {
                tenant_id: "shop".into(),
                user_id: "ad-viewer".into(),
                creative_ids: vec![worse.into(), better.into()],
                placement: "feed".into(),
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let first = score(&mut client).await;
    assert_eq!(first.model, "observed_rate", "{first:?}");
    assert_eq!(first.scores[0].creative_id, worse, "a tie: {first:?}");
    assert_eq!(
        first.scores[0].predicted_ctr, first.scores[1].predicted_ctr,
        "{first:?}"
    );

    // Bad input names the field.
    let invalid = |s: tonic::Status, field: &str| {
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert!(s.message().starts_with(field), "{field}: {s:?}");
    };
    invalid(
        client
            .score_creatives(pb::ScoreCreativesRequest {
                tenant_id: "shop".into(),
                user_id: "ad-viewer".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        "creative_ids",
    );
    let delivery = |creative: &str, impressions: u64, clicks: u64| pb::AdDelivery {
        creative_id: creative.into(),
        segment: first.segment.clone(),
        placement: "feed".into(),
        impressions,
        clicks,
    };
    invalid(
        client
            .record_ad_deliveries(pb::RecordAdDeliveriesRequest {
                tenant_id: "shop".into(),
                report_id: "bad".into(),
                deliveries: vec![delivery(better, 10, 11)],
            })
            .await
            .unwrap_err(),
        "deliveries.clicks",
    );
    let allocate = |budget: f64, ids: &[&str]| pb::AllocateBudgetRequest {
        tenant_id: "shop".into(),
        campaign_ids: ids.iter().map(|s| s.to_string()).collect(),
        total_budget: budget,
        min_share: 0.0,
    };
    let (search, social) = ("search-ads", "social-ads");
    for (req, field) in [
        (allocate(f64::NAN, &[search, social]), "total_budget"),
        (allocate(-5.0, &[search, social]), "total_budget"),
        (allocate(100.0, &[search]), "campaign_ids"),
        (allocate(100.0, &[]), "campaign_ids"),
    ] {
        invalid(client.allocate_budget(req).await.unwrap_err(), field);
    }
    invalid(
        client
            .report_ad_spend(pb::ReportAdSpendRequest {
                tenant_id: "shop".into(),
                report_id: "bad".into(),
                campaign_id: search.into(),
                spend: -1.0,
                revenue: 0.0,
            })
            .await
            .unwrap_err(),
        "spend",
    );

    // Five daily reports of 2,000 impressions per creative at the true rates.
    for day in 0..5 {
        let deliveries = [worse, better]
            .iter()
            .map(|c| delivery(c, 2000, (2000.0 * true_ctr(c)) as u64 + day))
            .collect();
        let r = client
            .record_ad_deliveries(pb::RecordAdDeliveriesRequest {
                tenant_id: "shop".into(),
                report_id: format!("day-{day}"),
                deliveries,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.recorded && r.trained, "{r:?}");
        assert_eq!(r.trained_impressions, 4000 * (day + 1), "{r:?}");
    }
    // A report sent twice counts once.
    let again = client
        .record_ad_deliveries(pb::RecordAdDeliveriesRequest {
            tenant_id: "shop".into(),
            report_id: "day-4".into(),
            deliveries: vec![delivery(worse, 2000, 44)],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !again.recorded && again.trained_impressions == 20_000,
        "{again:?}"
    );
    let ranked = score(&mut client).await;
    assert_eq!(ranked.model, "ctr_model", "{ranked:?}");
    assert_eq!(ranked.scores[0].creative_id, better, "{ranked:?}");
    let (p_better, p_worse) = (
        ranked.scores[0].predicted_ctr,
        ranked.scores[1].predicted_ctr,
    );
    assert!(
        (p_better - 0.06).abs() < 0.02 && (p_worse - 0.02).abs() < 0.01,
        "predicted {p_better} and {p_worse} against true 0.06 and 0.02"
    );
    assert_eq!(ranked.scores[0].impressions, 10_000, "{ranked:?}");

    // The budget: even at first, then toward the campaign that returns more.
    let true_roas = |c: &str| if c == social { 2.5 } else { 0.6 };
    let opening = client
        .allocate_budget(allocate(1000.0, &[search, social]))
        .await
        .unwrap()
        .into_inner();
    let share = |a: &pb::BudgetAllocation, c: &str| {
        a.campaigns
            .iter()
            .find(|b| b.campaign_id == c)
            .map(|b| b.share)
            .unwrap()
    };
    assert!(
        (share(&opening, social) - 0.5).abs() < 0.15,
        "no data, no preference: {opening:?}"
    );
    let total: f64 = opening.campaigns.iter().map(|b| b.budget).sum();
    assert!((total - 1000.0).abs() < 1e-6, "{opening:?}");
    let mut last = opening.clone();
    for day in 0..8 {
        for b in &last.campaigns {
            // ±10% day-to-day noise, the same for every run.
            let noise = 1.0
                + 0.1
                    * if (day + b.campaign_id.len()) % 2 == 0 {
                        1.0
                    } else {
                        -1.0
                    };
            let recorded = client
                .report_ad_spend(pb::ReportAdSpendRequest {
                    tenant_id: "shop".into(),
                    report_id: format!("{}-day-{day}", b.campaign_id),
                    campaign_id: b.campaign_id.clone(),
                    spend: b.budget,
                    revenue: b.budget * true_roas(&b.campaign_id) * noise,
                })
                .await
                .unwrap()
                .into_inner()
                .recorded;
            assert!(recorded);
        }
        last = client
            .allocate_budget(allocate(1000.0, &[search, social]))
            .await
            .unwrap()
            .into_inner();
    }
    assert!(
        share(&last, social) > 0.8 && share(&last, social) > share(&opening, social),
        "the budget stayed put: {opening:?} -> {last:?}"
    );
    let social_roas = last
        .campaigns
        .iter()
        .find(|b| b.campaign_id == social)
        .unwrap()
        .roas_mean;
    assert!((social_roas - 2.5).abs() < 0.3, "{last:?}");

    // Two rankings and nine splits went out as events (refused requests
    // publish nothing).
    let events = engagement_events(&mesh.backends.brokers, &cfg.topics().engagement, 11);
    assert_eq!(
        events.get("mesh.engage.v1.CreativesScored"),
        Some(&2),
        "{events:?}"
    );
    assert_eq!(
        events.get("mesh.engage.v1.BudgetAllocated"),
        Some(&9),
        "{events:?}"
    );
    shutdown.cancel();
}
