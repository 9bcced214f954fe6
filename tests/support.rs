//! The support service in the running mesh, on the real broker and Redis:
//! reviews from the stream become sentiment trends and a spike alert,
//! the catalog is searched in both languages (misspelled, filtered,
//! personalized by recommend over gRPC), and the assistant answers an
//! order-status question from fraud's decision, runs a refund flow over
//! several turns and hands an unknown question to a person.
use std::time::Duration;

use mesh_e2e::{config, publish_grpc, start, Servers};
use mesh_proto::catalog::v1 as cpb;
use mesh_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced, ReviewSubmitted, Search};
use mesh_proto::support::v1 as pb;
use mesh_proto::support::v1::support_service_client::SupportServiceClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

const DAY: i64 = 86_400_000;

fn event(id: &str, user: &str, at_ms: i64, body: Body) -> Envelope {
    Envelope {
        event_id: id.into(),
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at_ms,
        source: "web".into(),
        body: Some(body),
        ..Default::default()
    }
}

fn review(i: usize, at_ms: i64, text: &str, rating: u32) -> Envelope {
    event(
        &format!("rv-{i}"),
        &format!("r{i}"),
        at_ms,
        Body::ReviewSubmitted(ReviewSubmitted {
            sku: "kettle-1".into(),
            rating,
            text: text.into(),
            order_id: String::new(),
        }),
    )
}

/// `ce_type` counts of a topic, read from the start.
fn ce_types(brokers: &str, topic: &str, want: &str) -> usize {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", mesh_testkit::unique("support-reader"))
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
    let started = std::time::Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let kind = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_type"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default();
            if kind == want {
                n += 1;
            }
        } else if n > 0 {
            break;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feedback_search_and_the_assistant_in_the_running_mesh() {
    let _e2e = mesh_e2e::shared().await;
    let cfg = config(Servers::Real, "support");
    let (mesh, shutdown) = start(&cfg).await;
    let addr = format!("http://{}", mesh.support.grpc_addr);
    let mut support = SupportServiceClient::connect(addr.clone()).await.unwrap();
    let mut catalog = CatalogServiceClient::connect(addr).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();

    // Feedback: a calm week, then a bad day, in both languages.
    let mut evs = Vec::new();
    for i in 0..12 {
        let text = if i % 2 == 0 {
            "Great kettle, boils fast and looks lovely."
        } else {
            "非常好用，质量很好，推荐购买！"
        };
        evs.push(review(i, now - (3 + i as i64 % 4) * DAY, text, 5));
    }
    for i in 12..20 {
        let text = if i % 2 == 0 {
            "Terrible. It broke after two days and leaks everywhere."
        } else {
            "质量太差了，用了两天就坏了，很失望。"
        };
        evs.push(review(i, now - 1000, text, 1));
    }
    evs.push(event(
        "search-0",
        "r1",
        now - 500,
        Body::Search(Search {
            query: "purple unicorn kettle".into(),
            results: 0,
        }),
    ));
    // An order fraud decides on, for the assistant to look up.
    evs.push(event(
        "order-0",
        "u1",
        now - 2000,
        Body::OrderPlaced(OrderPlaced {
            order_id: "88812345".into(),
            items: vec![LineItem {
                sku: "kettle-1".into(),
                quantity: 1,
                unit_price: 30.0,
                ..Default::default()
            }],
            total: 30.0,
            currency: "USD".into(),
            payment_method: "card".into(),
            ship_to: Some(mesh_proto::events::v1::Location {
                lat: 22.28,
                lon: 114.16,
                country: "HK".into(),
                region: "HK".into(),
            }),
            ..Default::default()
        }),
    ));
    assert_eq!(publish_grpc(&mesh, &evs, 50).await, (evs.len() as u32, 0));
    let started = std::time::Instant::now();
    let trends = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "reviews never showed in the trends"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = support
            .feedback_trends(pb::FeedbackTrendsRequest {
                tenant_id: "shop".into(),
                subject: "kettle-1".into(),
                days: 7,
            })
            .await
            .unwrap()
            .into_inner();
        let total: u64 = t
            .days
            .iter()
            .map(|d| d.positive + d.neutral + d.negative)
            .sum();
        if total == 20 {
            break t;
        }
    };
    let today = trends.days.last().unwrap();
    assert!(today.negative >= 6, "{today:?}");
    assert!(today.mean_score < 0.0, "{today:?}");
    let before: u64 = trends.days[..trends.days.len() - 1]
        .iter()
        .map(|d| d.positive)
        .sum();
    assert!(before >= 10, "{trends:?}");
    assert!(trends.negative_spike, "{trends:?}");
    let brokers = mesh.backends.brokers.clone();
    let t = cfg.topics();
    let (b1, b2, alerts, engagement) = (
        brokers.clone(),
        brokers,
        t.alerts.clone(),
        t.engagement.clone(),
    );
    let spikes = tokio::task::spawn_blocking(move || {
        ce_types(&b1, &alerts, "mesh.support.v1.NegativeFeedbackSpike")
    })
    .await
    .unwrap();
    assert_eq!(spikes, 1, "one alert per subject and day");
    let analysed = tokio::task::spawn_blocking(move || {
        ce_types(&b2, &engagement, "mesh.support.v1.FeedbackAnalysed")
    })
    .await
    .unwrap();
    assert_eq!(analysed, 20);
    let a = support
        .analyze_feedback(pb::AnalyzeFeedbackRequest {
            tenant_id: "shop".into(),
            text: "快递太慢了，等了两个星期才到".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (a.language.as_str(), a.category.as_str()),
        ("zh", "delivery"),
        "{a:?}"
    );
    let bad = support
        .analyze_feedback(pb::AnalyzeFeedbackRequest {
            tenant_id: "shop".into(),
            text: "x".repeat(20_000),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("text"), "{bad:?}");

    // Catalog: bilingual, classified when no category is given.
    let products: Vec<cpb::Product> = mesh_text::catalog::generate_catalog(80, 7)
        .into_iter()
        .map(|p| cpb::Product {
            tenant_id: "shop".into(),
            sku: p.sku,
            title: p.title,
            description: p.description,
            tags: p.tags,
            category: String::new(),
            price: p.price,
            in_stock: p.in_stock,
        })
        .collect();
    let up = catalog
        .upsert_products(cpb::UpsertProductsRequest {
            tenant_id: String::new(),
            products: products.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(up.upserted, 80);
    assert_eq!(
        up.classes.len(),
        80,
        "every product without a category is classified"
    );
    let first = &products[0];
    let word = first
        .title
        .split_whitespace()
        .max_by_key(|w| w.chars().count())
        .unwrap()
        .to_string();
    let hits = catalog
        .search(cpb::SearchRequest {
            tenant_id: "shop".into(),
            query: first.title.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hits.hits.first().map(|h| h.sku.as_str()),
        Some(first.sku.as_str()),
        "{hits:?}"
    );
    // One letter dropped from a long word still finds it.
    if word.is_ascii() && word.len() > 5 {
        let typo: String = word
            .chars()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, c)| c)
            .collect();
        let r = catalog
            .search(cpb::SearchRequest {
                tenant_id: "shop".into(),
                query: typo.clone(),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.corrections.is_empty(), "{typo}: {r:?}");
        assert!(r.hits.iter().any(|h| h.sku == first.sku), "{typo}: {r:?}");
    }
    let personal = catalog
        .search(cpb::SearchRequest {
            tenant_id: "shop".into(),
            query: word.clone(),
            user_id: "u1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(personal.degraded.is_empty(), "{personal:?}");
    let none = catalog
        .search(cpb::SearchRequest {
            tenant_id: "shop".into(),
            query: "zzqx vvkj".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.hits.is_empty());
    let zero = catalog
        .zero_result_queries(cpb::ZeroResultQueriesRequest {
            tenant_id: "shop".into(),
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let queries: Vec<&str> = zero.queries.iter().map(|q| q.query.as_str()).collect();
    assert!(
        queries.contains(&"zzqx vvkj") && queries.contains(&"purple unicorn kettle"),
        "{queries:?}"
    );

    // The assistant: order status from fraud's decision (once fraud has it).
    let started = std::time::Instant::now();
    let mut last = None;
    let status = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no order status: {last:?}"
        );
        let r = support
            .converse(pb::ConverseRequest {
                tenant_id: "shop".into(),
                user_id: "u1".into(),
                conversation_id: String::new(),
                text: "where is my order 88812345?".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if r.done && !r.handed_off {
            break r;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(status.intent, "order_status");
    assert!(status.reply.contains("88812345"), "{status:?}");
    // A refund over three turns.
    let say = |c: &mut SupportServiceClient<tonic::transport::Channel>, id: String, text: &str| {
        let mut c = c.clone();
        let text = text.to_string();
        async move {
            c.converse(pb::ConverseRequest {
                tenant_id: "shop".into(),
                user_id: "u1".into(),
                conversation_id: id,
                text,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let r1 = say(&mut support, String::new(), "我要退款").await;
    assert_eq!(r1.missing, vec!["order_id"], "{r1:?}");
    let r2 = say(&mut support, r1.conversation_id.clone(), "88812345").await;
    assert_eq!(r2.missing, vec!["refund_reason"], "{r2:?}");
    let r3 = say(&mut support, r1.conversation_id.clone(), "质量有问题，漏水").await;
    assert_eq!(r3.missing, vec!["confirm"], "{r3:?}");
    let r4 = say(&mut support, r1.conversation_id.clone(), "是的").await;
    assert!(r4.done && r4.reply.contains("RF-"), "{r4:?}");
    // Something it cannot answer goes to a person, with the conversation.
    let h = say(&mut support, String::new(), "明天天气怎么样").await;
    assert!(h.handed_off, "{h:?}");
    let queue = support
        .list_handoffs(pb::ListHandoffsRequest {
            tenant_id: "shop".into(),
            page_size: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let handed = queue
        .handoffs
        .iter()
        .find(|x| x.conversation_id == h.conversation_id)
        .expect("the conversation is in the human queue");
    assert!(
        handed.turns.iter().any(|t| t.text.contains("天气")),
        "{handed:?}"
    );
    shutdown.cancel();
}
