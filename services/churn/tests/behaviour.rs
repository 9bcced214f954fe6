//! Behavioural churn: logins, sessions, dwell, support messages and
//! complaints from the user-event topic folded once per event id, a trained
//! classifier that uses them (and what they add, measured), and — against
//! the real broker and Redis — ListAtRisk and the alerts following the
//! stored model's probability.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use mesh_bus::headers::HeaderList;
use mesh_bus::{Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_churn::supervised::ModelKind;
use mesh_churn::training::{self, TrainConfig, TrainedChurnModel};
use mesh_churn_svc::summary;
use mesh_churn_svc::{ChurnConfig, Deps};
use mesh_proto::churn::v1 as pb;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{
    Envelope, Login, OrderPlaced, PageView, ProductView, ReviewSubmitted, SessionStarted,
    SupportMessage,
};
use mesh_runtime::config::Env;
use mesh_store::{RedisStore, StateStore};
use prost::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message as _;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;

fn day0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn at(day: i64, hour: i64) -> i64 {
    day0().timestamp_millis() + day * DAY_MS + hour * 3_600_000
}

fn env(user: &str, id: String, ms: i64, body: Body) -> Envelope {
    Envelope {
        event_id: id,
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: ms,
        source: "test".into(),
        body: Some(body),
        ..Default::default()
    }
}

/// A deterministic cohort over `days` days: everyone buys every 7–14 days
/// and logs in, starts a session and views pages every 2–3 days. Churners
/// (even `u`) stop buying on a day `stop`, and their logins, sessions and
/// views stop three weeks earlier; some of them write to support or leave
/// a 1-star review before leaving. The behaviour leads the purchases, so a
/// model that sees it should rank churners better than purchases alone.
fn cohort(prefix: &str, users: std::ops::Range<u64>, days: i64) -> Vec<Envelope> {
    let mut out = Vec::new();
    for u in users {
        let user = format!("{prefix}{u}");
        let churner = u % 2 == 0;
        let stop = if churner && days > 130 {
            120 + (u * 37 % (days as u64 - 130)) as i64
        } else {
            days
        };
        let stop_browsing = if churner { stop - 21 } else { days };
        let gap = 7 + (u % 8) as i64;
        let mut d = (u % 20) as i64;
        let mut n = 0;
        while d <= stop.min(days - 1) {
            let body = Body::OrderPlaced(OrderPlaced {
                order_id: format!("{user}-o{n}"),
                total: 20.0 + (u % 5) as f64,
                ..Default::default()
            });
            out.push(env(&user, format!("{user}-o{n}"), at(d, 10), body));
            n += 1;
            d += gap;
        }
        let step = 2 + (u % 2) as i64;
        let mut d = (u % 3) as i64;
        while d <= stop_browsing.min(days - 1) {
            let id = |k: &str| format!("{user}-{k}{d}");
            let login = Body::Login(Login {
                success: true,
                method: "password".into(),
            });
            out.push(env(&user, id("l"), at(d, 8), login));
            let session = Body::SessionStarted(SessionStarted::default());
            out.push(env(&user, id("s"), at(d, 8), session));
            let page = Body::PageView(PageView {
                path: "/".into(),
                dwell_seconds: 40.0 + (u % 7) as f64 * 10.0,
            });
            out.push(env(&user, id("p"), at(d, 9), page));
            let product = Body::ProductView(ProductView {
                sku: "sku-1".into(),
                dwell_seconds: 30.0,
                ..Default::default()
            });
            out.push(env(&user, id("v"), at(d, 9), product));
            d += step;
        }
        if churner && stop < days && u % 3 == 0 {
            let msg = Body::SupportMessage(SupportMessage {
                ticket_id: format!("t-{user}"),
                text: "my order".into(),
                channel: "chat".into(),
            });
            out.push(env(&user, format!("{user}-m"), at(stop - 25, 12), msg));
        }
        if churner && stop < days && u % 4 == 0 {
            let review = Body::ReviewSubmitted(ReviewSubmitted {
                sku: "sku-1".into(),
                rating: 1,
                ..Default::default()
            });
            out.push(env(&user, format!("{user}-c"), at(stop - 22, 12), review));
        }
    }
    out.sort_by_key(|e| e.occurred_at_ms);
    out
}

const DAYS: i64 = 400;

fn data_end() -> NaiveDate {
    (day0() + chrono::Duration::days(DAYS - 1)).date_naive()
}

fn train_on(events: &[Envelope], behaviour: bool, version: &str) -> TrainedChurnModel {
    let histories = summary::histories(events);
    let activity = summary::activities(events);
    let cfg = TrainConfig {
        kind: ModelKind::LogisticRegression,
        hybrid: false,
        horizon_weeks: 8,
        version: version.into(),
        behaviour,
    };
    training::train_with_activity(&histories, &activity, data_end(), &cfg).unwrap()
}

/// What the behavioural features add, measured on the cohort above, and on
/// the mesh's own simulator stream (`mesh_proto::sim`): its labelled history
/// (loyal / lapsed / one-time) holds orders only, and its browsing traffic
/// (`sim::events`, other users, who also buy) is drawn independently of any
/// lapse, so there the behaviour cannot add anything.
#[test]
fn behavioural_features_are_measured_against_purchases_only() {
    let events = cohort("c", 0..400, DAYS);
    let t = train_on(&events, true, "beh");
    let r = &t.report;
    let base = r.purchase_only_validation_auc.unwrap();
    println!(
        "cohort with leading behaviour: validation AUC {:.3} with behavioural features, {:.3} purchases only ({} of {} users with activity)",
        r.validation_auc, base, r.customers_with_activity, r.customers
    );
    assert!(r.behaviour && r.features.iter().any(|f| f == "logins_4w"));
    assert!(r.validation_auc > base + 0.02, "{r:?}");

    // The simulator: `sim::history` (loyal / lapsed / one-time buyers,
    // orders only) plus `sim::events` browsing traffic, which goes to other
    // user ids and does not depend on any trajectory.
    let now = at(DAYS, 0);
    let (mut sim, _) = mesh_proto::sim::history(11, "s", 1500, DAYS as u32, now);
    sim.extend(mesh_proto::sim::events(
        11,
        "sim",
        1500,
        60_000,
        now - 200 * DAY_MS,
    ));
    let histories = summary::histories(&sim);
    let activity = summary::activities(&sim);
    let end = DateTime::from_timestamp_millis(now).unwrap().date_naive();
    let cfg = |behaviour| TrainConfig {
        kind: ModelKind::LogisticRegression,
        hybrid: false,
        horizon_weeks: 8,
        version: "sim".into(),
        behaviour,
    };
    let t = training::train_with_activity(&histories, &activity, end, &cfg(true)).unwrap();
    let r = &t.report;
    let base = r.purchase_only_validation_auc.unwrap();
    println!(
        "simulator stream: validation AUC {:.3} with behavioural features, {:.3} purchases only ({} of {} buyers with behavioural events)",
        r.validation_auc, base, r.customers_with_activity, r.customers
    );
    // Measured, not asserted as a gain: the simulator's browsing does not
    // depend on whether its buyers lapse, so the behaviour adds ~nothing.
    assert!((r.validation_auc - base).abs() < 0.05, "{r:?}");
}

struct Setup {
    cfg: ChurnConfig,
    deps: Deps,
}

async fn setup(name: &str, now: DateTime<Utc>) -> Setup {
    let prefix = mesh_testkit::unique(name);
    let brokers = mesh_testkit::kafka_brokers();
    let topics = TopicNames::with_prefix(&prefix);
    let spec = TopicSpec {
        partitions: 2,
        replication: 1,
    };
    mesh_bus::ensure_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .unwrap();
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                &topics.alerts,
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &prefix)).unwrap();
    let group = format!("{prefix}-churn");
    // Threshold 1: nothing fires while the events stream in.
    let cfg = ChurnConfig::from_env(&Env::from_pairs([
        ("MESH_CHURN_GRPC_ADDR", "127.0.0.1:0"),
        ("MESH_CHURN_GROUP", group.as_str()),
        ("MESH_CHURN_SWEEP_INTERVAL_MS", "3600000"),
        ("MESH_CHURN_THRESHOLD", "1"),
    ]))
    .unwrap();
    let deps = Deps {
        brokers,
        topics,
        partitions: 2,
        store,
        producer,
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        clock: Arc::new(mesh_runtime::ManualClock::at(now)),
        peers: Default::default(),
    };
    Setup { cfg, deps }
}

/// Publishes each event to its topic (orders to the order topic, the rest
/// to the user-event topic), as ingest routes them.
async fn publish(s: &Setup, events: &[Envelope]) {
    for e in events {
        let topic = match e.body {
            Some(Body::OrderPlaced(_)) => &s.deps.topics.order_events,
            _ => &s.deps.topics.user_events,
        };
        s.deps
            .producer
            .send(topic, &e.user_key(), &e.encode_to_vec(), &HeaderList::new())
            .await
            .unwrap();
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..900 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behavioural_events_fold_once_and_duplicate_ids_are_dropped() {
    let s = setup("churn-beh-once", day0() + chrono::Duration::days(DAYS)).await;
    let churn = mesh_churn_svc::engine(&s.cfg, &s.deps).await.unwrap();
    let shutdown = CancellationToken::new();
    let (_, consumer) =
        mesh_churn_svc::start_consumer(&s.cfg, &s.deps, churn.clone(), shutdown.clone());
    let events = cohort("once", 0..3, 60);
    let want = summary::activities(&events);
    // Every event twice (same id, later offsets), in another order.
    let mut dup = events.clone();
    dup.reverse();
    publish(&s, &events).await;
    publish(&s, &dup).await;
    // Sentinels last on both topics of every user's partition.
    let mut sentinels = Vec::new();
    for u in 0..3 {
        let user = format!("once{u}");
        let body = Body::Login(Login {
            success: true,
            ..Default::default()
        });
        sentinels.push(env(&user, format!("{user}-end"), at(59, 23), body));
        let order = Body::OrderPlaced(OrderPlaced {
            total: 1.0,
            ..Default::default()
        });
        sentinels.push(env(&user, format!("{user}-end-o"), at(59, 23), order));
    }
    publish(&s, &sentinels).await;
    let histories = summary::histories(&events);
    for u in 0..3 {
        let member = format!("shop/once{u}");
        let orders = histories.iter().find(|h| h.id == member).unwrap();
        let n_orders = orders.purchases.len() as u64 + 1;
        wait_for("the sentinels", || async {
            churn
                .summary("shop", &format!("once{u}"))
                .await
                .unwrap()
                .is_some_and(|x| {
                    x.orders == n_orders
                        && x.activity().days.values().any(|d| d.logins >= 1.0)
                        && x.last_active_ms == at(59, 23)
                })
        })
        .await;
        let got = churn
            .summary("shop", &format!("once{u}"))
            .await
            .unwrap()
            .unwrap();
        let mut want = want[&member].clone();
        want.add(
            DateTime::from_timestamp_millis(at(59, 23))
                .unwrap()
                .date_naive(),
            mesh_churn::behaviour::Signal::Login,
            1.0,
        );
        assert_eq!(got.activity(), want, "{member}");
        // Orders (one per distinct id) too: duplicates counted once.
        assert_eq!(got.orders, n_orders, "{member}");
    }
    shutdown.cancel();
    consumer.await.unwrap();
}

/// Every record on the alerts topic, read until 3 s pass without one.
async fn read_alerts(s: &Setup) -> Vec<pb::ChurnAlert> {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.deps.brokers)
        .set("group.id", mesh_testkit::unique("alerts-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&[&s.deps.topics.alerts]).unwrap();
    let mut alerts = Vec::new();
    let mut idle = Duration::from_secs(15);
    while let Ok(Ok(m)) = tokio::time::timeout(idle, c.recv()).await {
        idle = Duration::from_secs(3);
        let kind =
            mesh_bus::headers::HeaderList::from_kafka(rdkafka::message::Message::headers(&m))
                .get("ce_type")
                .unwrap_or_default()
                .to_string();
        if kind == "mesh.churn.v1.ChurnAlert" {
            alerts.push(pb::ChurnAlert::decode(m.payload().unwrap_or_default()).unwrap());
        }
    }
    alerts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_model_ranks_the_at_risk_list_and_fires_the_alerts() {
    let now = day0() + chrono::Duration::days(DAYS - 1) + chrono::Duration::hours(20);
    let s = setup("churn-beh-rank", now).await;
    let churn = mesh_churn_svc::engine(&s.cfg, &s.deps).await.unwrap();
    let shutdown = CancellationToken::new();
    let (_, consumer) =
        mesh_churn_svc::start_consumer(&s.cfg, &s.deps, churn.clone(), shutdown.clone());
    // Live users: the same kind of cohort as training, other ids.
    let live = cohort("live", 1000..1010, DAYS);
    publish(&s, &live).await;
    let histories = summary::histories(&live);
    let activity = summary::activities(&live);
    wait_for("every live event", || async {
        let all = churn.all_summaries().await.unwrap();
        all.len() == histories.len()
            && all.iter().all(|(m, x)| {
                let h = histories.iter().find(|h| &h.id == m).unwrap();
                x.orders as usize == h.purchases.len() && Some(&x.activity()) == activity.get(m)
            })
    })
    .await;

    // No model stored: BG/NBD ranks, and its rows are consistent.
    let (rows, _) = churn.at_risk(0.0, None, 100, "").await.unwrap();
    assert_eq!(rows.len(), 10);
    // A tenant's list holds its users only.
    let tenant = rows[0].tenant_id.clone();
    let (own, _) = churn.at_risk(0.0, None, 100, &tenant).await.unwrap();
    assert_eq!(own.len(), 10);
    let (other, _) = churn.at_risk(0.0, None, 100, "another").await.unwrap();
    assert!(other.is_empty(), "{other:?}");
    let report = churn
        .retention_report(
            0.95,
            mesh_churn::retention::IntervalMethod::Newcombe,
            "another",
        )
        .await
        .unwrap();
    assert_eq!(report.treated.map(|t| t.users), Some(0));
    for r in &rows {
        assert_eq!(r.model, "bgnbd");
        assert!(
            r.churn_probability >= 1.0 - r.p_alive - 1e-12,
            "P(no order) {} < 1 - P(alive) {}",
            r.churn_probability,
            r.p_alive
        );
    }

    // A model trained with behavioural features, stored as `mesh train
    // churn` stores it.
    let trained = train_on(&cohort("c", 0..400, DAYS), true, "beh-1");
    mesh_churn_svc::model::store_supervised(&s.deps.store, &trained)
        .await
        .unwrap();
    assert!(churn.refresh_supervised().await.unwrap());
    // The model as the service loaded it (JSON floats may differ from the
    // in-memory fit in the last bit).
    let loaded = churn.supervised().unwrap();
    assert_eq!(loaded.report.version, trained.report.version);
    let p = |member: &str| {
        let h = histories.iter().find(|h| h.id == member).unwrap();
        loaded
            .churn_probability_with(
                h,
                activity.get(member),
                now.date_naive(),
                &churn.model.bgnbd,
            )
            .unwrap()
            .unwrap()
    };
    let (rows, _) = churn.at_risk(0.0, None, 100, "").await.unwrap();
    assert_eq!(rows.len(), 10);
    let mut want: Vec<(f64, String)> = rows
        .iter()
        .map(|r| {
            let m = format!("{}/{}", r.tenant_id, r.user_id);
            (p(&m), m)
        })
        .collect();
    want.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let got: Vec<(f64, String)> = rows
        .iter()
        .map(|r| {
            (
                r.churn_probability,
                format!("{}/{}", r.tenant_id, r.user_id),
            )
        })
        .collect();
    assert_eq!(got, want, "ListAtRisk follows the model");
    for r in &rows {
        assert_eq!(r.model, "supervised:beh-1");
        assert_eq!((r.p_alive, r.horizon_weeks), (0.0, 8.0));
    }
    println!("at risk by the model: {got:?}");

    // Alerts from the model: a threshold between the second and third
    // highest model probabilities fires exactly the top two.
    let threshold = (want[1].0 + want[2].0) / 2.0;
    let mut cfg = s.cfg.clone();
    cfg.scoring.alert.threshold = threshold;
    cfg.scoring.alert.rearm_below = threshold / 2.0;
    let sweeper = mesh_churn_svc::engine(&cfg, &s.deps).await.unwrap();
    let fx = sweeper.sweep_once().await.unwrap();
    assert_eq!(fx.fired, 2, "{fx:?}");
    let alerts = read_alerts(&s).await;
    let fired: HashSet<String> = alerts
        .iter()
        .map(|a| format!("{}/{}", a.tenant_id, a.user_id))
        .collect();
    let top: HashSet<String> = want[..2].iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(fired, top);
    for a in &alerts {
        let m = format!("{}/{}", a.tenant_id, a.user_id);
        assert_eq!(a.model, "supervised:beh-1");
        assert_eq!(a.risk, p(&m));
        assert_eq!(a.p_alive, 0.0);
        assert!(
            a.reasons[0].starts_with("supervised:beh-1"),
            "{:?}",
            a.reasons
        );
    }
    shutdown.cancel();
    consumer.await.unwrap();
}
