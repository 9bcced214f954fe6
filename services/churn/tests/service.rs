//! The churn service against the real broker and Redis: alerts once per
//! crossing (also across a restart and a replay), risk equal to the core's
//! scorer, stable paging.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mesh_bus::headers::HeaderList;
use mesh_bus::{Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_churn::gamma_gamma::customer_lifetime_value;
use mesh_churn::scoring::{AlertConfig, ChurnScorer, CustomerState, ManualClock};
use mesh_churn_svc::model::{CDNOW_BGNBD, CDNOW_GAMMA_GAMMA};
use mesh_churn_svc::{ChurnConfig, Deps};
use mesh_proto::churn::v1 as pb;
use mesh_proto::churn::v1::churn_service_client::ChurnServiceClient;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, OrderPlaced};
use mesh_runtime::config::Env;
use mesh_runtime::Clock as _;
use mesh_store::{RedisStore, StateStore};
use prost::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message as _;
use tokio_util::sync::CancellationToken;

struct Setup {
    cfg: ChurnConfig,
    deps: Deps,
    clock: Arc<mesh_runtime::ManualClock>,
}

async fn setup(name: &str, partitions: i32, start: DateTime<Utc>) -> Setup {
    let prefix = mesh_testkit::unique(name);
    let brokers = mesh_testkit::kafka_brokers();
    let topics = TopicNames::with_prefix(&prefix);
    let spec = TopicSpec {
        partitions,
        replication: 1,
    };
    mesh_bus::ensure_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .unwrap();
    // The alerts topic is not among the ones `ensure_topics` creates.
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
    let clock = Arc::new(mesh_runtime::ManualClock::at(start));
    let group = format!("{prefix}-churn");
    let cfg = ChurnConfig::from_env(&Env::from_pairs([
        ("MESH_CHURN_GRPC_ADDR", "127.0.0.1:0"),
        ("MESH_CHURN_GROUP", group.as_str()),
        ("MESH_CHURN_SWEEP_INTERVAL_MS", "3600000"),
        ("MESH_CHURN_HOLDOUT_SHARE", "0.5"),
    ]))
    .unwrap();
    let deps = Deps {
        brokers,
        topics,
        partitions,
        store,
        producer,
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        clock: clock.clone(),
        peers: Default::default(),
    };
    Setup { cfg, deps, clock }
}

fn order(user: &str, n: usize, at: DateTime<Utc>, total: f64) -> Envelope {
    Envelope {
        event_id: format!("{user}-{n}"),
        tenant_id: "shop".into(),
        user_id: user.into(),
        occurred_at_ms: at.timestamp_millis(),
        source: "checkout".into(),
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: format!("o-{user}-{n}"),
            total,
            ..Default::default()
        })),
        ..Default::default()
    }
}

async fn publish(s: &Setup, events: &[Envelope]) {
    for e in events {
        s.deps
            .producer
            .send(
                &s.deps.topics.order_events,
                &e.user_key(),
                &e.encode_to_vec(),
                &HeaderList::new(),
            )
            .await
            .unwrap();
    }
}

/// Polls until `check` holds (or panics after 60 s).
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

/// Every record on the alerts topic, read until 3 s pass without one.
async fn read_alerts(s: &Setup) -> (Vec<pb::ChurnAlert>, Vec<pb::RetentionAction>) {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.deps.brokers)
        .set("group.id", mesh_testkit::unique("alerts-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&[&s.deps.topics.alerts]).unwrap();
    let (mut alerts, mut actions) = (Vec::new(), Vec::new());
    let mut idle = Duration::from_secs(15);
    while let Ok(Ok(m)) = tokio::time::timeout(idle, c.recv()).await {
        idle = Duration::from_secs(3);
        let payload = m.payload().unwrap_or_default();
        let kind =
            mesh_bus::headers::HeaderList::from_kafka(rdkafka::message::Message::headers(&m))
                .get("ce_type")
                .unwrap_or_default()
                .to_string();
        match kind.as_str() {
            "mesh.churn.v1.ChurnAlert" => alerts.push(pb::ChurnAlert::decode(payload).unwrap()),
            "mesh.churn.v1.RetentionAction" => {
                actions.push(pb::RetentionAction::decode(payload).unwrap())
            }
            other => panic!("unexpected record type {other:?}"),
        }
    }
    (alerts, actions)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 12, 0, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_fires_once_per_crossing_across_restart_and_replay() {
    let weeks = |w: i64| chrono::Duration::weeks(w);
    let s = setup(
        "churn-alerts",
        1,
        t0() + weeks(15) + chrono::Duration::hours(1),
    )
    .await;
    let shutdown = CancellationToken::new();
    let consumer_stop = shutdown.child_token();
    let churn = mesh_churn_svc::engine(&s.cfg, &s.deps).await.unwrap();
    assert_eq!(churn.model.source.name(), "prior");
    let (_, consumer) =
        mesh_churn_svc::start_consumer(&s.cfg, &s.deps, churn.clone(), consumer_stop.clone());
    // A regular buyer, live: an order every 3 weeks (one day with two),
    // each scored at its own time.
    let mut times: Vec<_> = (0..6).map(|i| t0() + weeks(3 * i)).collect();
    times.insert(2, times[1] + chrono::Duration::hours(2));
    for (i, at) in times.iter().enumerate() {
        s.clock.set_at(*at + chrono::Duration::minutes(1));
        publish(&s, &[order("anna", i, *at, 40.0)]).await;
        wait_for("the order applied", || async {
            churn
                .summary("shop", "anna")
                .await
                .unwrap()
                .is_some_and(|x| x.orders == i as u64 + 1)
        })
        .await;
    }
    let sum = churn.summary("shop", "anna").await.unwrap().unwrap();
    assert_eq!((sum.frequency(), sum.alerted), (5, false));

    // Silence: weekly sweeps for 40 weeks cross the threshold once.
    let mut fired = 0;
    for _ in 0..40 {
        s.clock.advance(weeks(1));
        fired += churn.sweep_once().await.unwrap().fired;
    }
    assert_eq!(fired, 1);
    // A restarted instance sees the outstanding alert and stays quiet.
    let restarted = mesh_churn_svc::engine(&s.cfg, &s.deps).await.unwrap();
    assert_eq!(restarted.sweep_once().await.unwrap().fired, 0);

    // She comes back: the order re-arms the alert and counts as a return.
    publish(&s, &[order("anna", 7, s.clock.now(), 55.0)]).await;
    wait_for("re-armed after the return", || async {
        churn
            .summary("shop", "anna")
            .await
            .unwrap()
            .is_some_and(|x| x.orders == 8 && !x.alerted && x.returned)
    })
    .await;
    // A second silence: one more alert.
    let mut second = 0;
    for _ in 0..60 {
        s.clock.advance(weeks(1));
        second += restarted.sweep_once().await.unwrap().fired;
        second += churn.sweep_once().await.unwrap().fired;
    }
    assert_eq!(second, 1);

    // Replay: a new consumer group reads every order again into the same
    // store; nothing changes, nothing is published.
    consumer_stop.cancel();
    consumer.await.unwrap();
    let before = churn.summary("shop", "anna").await.unwrap().unwrap();
    let mut replay_cfg = s.cfg.clone();
    replay_cfg.group = mesh_testkit::unique("churn-replay");
    let (_, replay) =
        mesh_churn_svc::start_consumer(&replay_cfg, &s.deps, churn.clone(), shutdown.clone());
    publish(&s, &[order("sentinel", 0, s.clock.now(), 1.0)]).await;
    wait_for("the replay to reach the sentinel", || async {
        churn.summary("shop", "sentinel").await.unwrap().is_some()
    })
    .await;
    let after = churn.summary("shop", "anna").await.unwrap().unwrap();
    assert_eq!(before, after);

    let (alerts, actions) = read_alerts(&s).await;
    let ids: Vec<_> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
    assert_eq!(ids, ["shop/anna/1", "shop/anna/2"]);
    assert!(alerts
        .iter()
        .all(|a| a.risk >= 0.8 && !a.reasons.is_empty()));
    let treated = alerts[0].arm == "treatment";
    assert_eq!(actions.len(), if treated { 2 } else { 0 }, "{actions:?}");
    assert!(actions.iter().all(|a| a.action == "coupon"));

    let report = churn
        .retention_report(0.95, mesh_churn::retention::IntervalMethod::Newcombe, "")
        .await
        .unwrap();
    let arm = if treated {
        report.treated
    } else {
        report.holdout
    }
    .unwrap();
    assert_eq!((arm.users, arm.returned), (1, 1));
    assert!(!report.ready);
    shutdown.cancel();
    replay.await.unwrap();
}

/// The core's streaming scorer fed the same orders one by one.
fn core_score(times: &[DateTime<Utc>], now: DateTime<Utc>) -> mesh_churn::scoring::Score {
    let clock = ManualClock::new(times[0]);
    let scorer = ChurnScorer::new(CDNOW_BGNBD, AlertConfig::default(), clock).unwrap();
    let mut st = CustomerState::default();
    for t in times {
        scorer.clock().set(*t);
        scorer.on_order(&mut st).unwrap();
    }
    scorer.clock().set(now);
    scorer.on_tick(&mut st).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_equals_core_and_list_at_risk_pages_stably() {
    let now = t0() + chrono::Duration::weeks(40);
    let s = setup("churn-risk", 3, now).await;
    let shutdown = CancellationToken::new();
    let running = mesh_churn_svc::start(&s.cfg, &s.deps, shutdown.clone())
        .await
        .unwrap();
    let history = |i: usize| -> Vec<(DateTime<Utc>, f64)> {
        let first = t0() + chrono::Duration::days((i % 7) as i64);
        (0..=(i % 5))
            .map(|k| {
                let at = first + chrono::Duration::weeks((k * (i % 4 + 1)) as i64);
                (at, 20.0 + (i * 7 + k * 3) as f64)
            })
            .collect()
    };
    let users = 30;
    let mut events = Vec::new();
    for i in 0..users {
        for (k, (at, total)) in history(i).into_iter().enumerate() {
            events.push(order(&format!("u{i:02}"), k, at, total));
        }
    }
    publish(&s, &events).await;
    let churn = running.churn.clone();
    wait_for("every user's orders", || async {
        let all = churn.all_summaries().await.unwrap();
        all.len() == users
            && all.iter().map(|(_, x)| x.orders as usize).sum::<usize>() == events.len()
    })
    .await;

    let mut client = ChurnServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    for i in [0, 3, 9, 14, 27] {
        let h = history(i);
        let got = client
            .get_churn_risk(pb::GetChurnRiskRequest {
                tenant_id: "shop".into(),
                user_id: format!("u{i:02}"),
                weeks: 0.0,
            })
            .await
            .unwrap()
            .into_inner();
        let times: Vec<_> = h.iter().map(|(t, _)| *t).collect();
        let want = core_score(&times, now);
        assert_eq!(got.churn_probability, want.risk, "user {i}");
        assert_eq!(got.p_alive, want.p_alive, "user {i}");
        assert_eq!(got.expected_purchases, want.expected_purchases, "user {i}");
        // CLV from the same summary by hand.
        let x = (h.len() - 1) as f64;
        let wk = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_seconds() as f64 / 604_800.0;
        let rfm = mesh_churn::data::Rfm {
            frequency: x,
            recency: if x > 0.0 {
                wk(times[0], *times.last().unwrap())
            } else {
                0.0
            },
            t: wk(times[0], now),
        };
        let mean = (x > 0.0).then(|| h[1..].iter().map(|(_, v)| v).sum::<f64>() / x);
        let clv = customer_lifetime_value(
            &CDNOW_BGNBD,
            &CDNOW_GAMMA_GAMMA,
            &rfm,
            mean,
            12,
            52.0 / 12.0,
            0.01,
        )
        .unwrap();
        assert!(
            (got.clv - clv).abs() < 1e-9,
            "user {i}: {} vs {clv}",
            got.clv
        );
        assert_eq!(got.frequency as usize, h.len() - 1);
        assert!(!got.reasons.is_empty());
    }
    let missing = client
        .get_churn_risk(pb::GetChurnRiskRequest {
            tenant_id: "shop".into(),
            user_id: "nobody".into(),
            weeks: 0.0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad = client
        .get_churn_risk(pb::GetChurnRiskRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("tenant_id"));

    // Paging: pages of 7 concatenate to the single full listing.
    let list = |size: u32, token: String| pb::ListAtRiskRequest {
        tenant_id: String::new(),
        threshold: 0.05,
        page_size: size,
        page_token: token,
    };
    let full = client
        .list_at_risk(list(1000, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(full.next_page_token.is_empty());
    assert!(full.users.len() > 7, "{}", full.users.len());
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_at_risk(list(7, token))
            .await
            .unwrap()
            .into_inner();
        assert!(page.users.len() <= 7);
        paged.extend(page.users);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Compare ranking identity only: `alerted` may flip between calls when
    // the consumer or sweeper records a crossing meanwhile.
    let key = |u: &pb::AtRiskUser| {
        (
            u.tenant_id.clone(),
            u.user_id.clone(),
            u.churn_probability.to_bits(),
        )
    };
    assert_eq!(
        paged.iter().map(key).collect::<Vec<_>>(),
        full.users.iter().map(key).collect::<Vec<_>>()
    );
    assert!(full
        .users
        .windows(2)
        .all(|w| w[0].churn_probability > w[1].churn_probability
            || (w[0].churn_probability == w[1].churn_probability && w[0].user_id < w[1].user_id)));
    let bad = client
        .list_at_risk(list(7, "junk".into()))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let info = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.source.as_str(), info.r), ("prior", CDNOW_BGNBD.r));
    shutdown.cancel();
    let _ = running.consumer.await;
}

/// `mesh train churn` stores a model; the running service uses it without a
/// restart (GetModelInfo reloads, GetChurnRisk scores with it), and a newer
/// version replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_supervised_model_is_picked_up_without_restart() {
    use mesh_churn::data::PurchaseLog;
    use mesh_churn::supervised::ModelKind;
    use mesh_churn::training::{self, TrainConfig};

    let now = t0() + chrono::Duration::weeks(30);
    let s = setup("churn-supervised", 1, now).await;
    let shutdown = CancellationToken::new();
    let running = mesh_churn_svc::start(&s.cfg, &s.deps, shutdown.clone())
        .await
        .unwrap();
    let mut client = ChurnServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    let info = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.supervised_version, "");

    let times = [t0(), t0() + chrono::Duration::weeks(3)];
    let events: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(k, at)| order("sup", k, *at, 25.0))
        .collect();
    publish(&s, &events).await;
    let churn = running.churn.clone();
    wait_for("the user's orders", || async {
        churn
            .summary("shop", "sup")
            .await
            .unwrap()
            .is_some_and(|x| x.orders == 2)
    })
    .await;
    let ask = || pb::GetChurnRiskRequest {
        tenant_id: "shop".into(),
        user_id: "sup".into(),
        weeks: 0.0,
    };
    let before = client.get_churn_risk(ask()).await.unwrap().into_inner();
    assert_eq!(before.supervised_churn_probability, None);

    let log = PurchaseLog::read(&mesh_churn::cli::default_transactions()).unwrap();
    let cdnow_end = chrono::NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
    let mut versions = Vec::new();
    for (version, kind) in [
        ("v1", ModelKind::LogisticRegression),
        ("v2", ModelKind::RandomForest),
    ] {
        let cfg = TrainConfig {
            kind,
            hybrid: false,
            horizon_weeks: 13,
            version: version.into(),
            behaviour: false,
        };
        let trained = training::train(&log.customers, cdnow_end, &cfg).unwrap();
        mesh_churn_svc::model::store_supervised(&s.deps.store, &trained)
            .await
            .unwrap();
        let info = client
            .get_model_info(pb::GetModelInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.supervised_version, version);
        assert_eq!(info.supervised_horizon_weeks, 13.0);
        assert_eq!(
            info.supervised_validation_auc,
            trained.report.validation_auc
        );
        let got = client.get_churn_risk(ask()).await.unwrap().into_inner();
        let history = churn
            .summary("shop", "sup")
            .await
            .unwrap()
            .unwrap()
            .history("");
        let want = trained
            .churn_probability(&history, now.date_naive(), &CDNOW_BGNBD)
            .unwrap();
        assert_eq!(got.supervised_churn_probability, want);
        assert_eq!(got.supervised_model_version, version);
        versions.push(got.supervised_churn_probability.unwrap());
    }
    assert_ne!(versions[0], versions[1]);
    shutdown.cancel();
    let _ = running.consumer.await;
}
