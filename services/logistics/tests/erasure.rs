//! Data leaving the store, against the real broker and Redis, through the
//! consumer's handler with records of one partition.
//!
//! `user_erased`: the erased user's orders (with their location) leave the
//! store and their stops leave the wave and its plan, other users are
//! untouched, a later event of the user changes nothing (stock included),
//! and a replay that keeps the erasures rebuilds everyone but the user.
//!
//! Retention: waves past `keep_days` leave with their orders, plans and
//! index entries, demand days past `history_days` with them; everything
//! newer is untouched and a second run removes nothing.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{create_topics, envelope, DAY, MIN, NOW, PARTITIONS};
use mesh_bus::{Handler, Producer, ProducerConfig, Record, TopicNames};
use mesh_logistics_svc::handler::LogisticsHandler;
use mesh_logistics_svc::retention::{self, Expired, Retention};
use mesh_logistics_svc::{fold, forecasting, planner, wave, LogisticsConfig, SCOPE};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{
    Envelope, LineItem, Location, OrderPlaced, PaymentAuthorized, UserErased,
};
use mesh_runtime::config::Env;
use mesh_store::{erasure, RedisStore, Slot, StateStore};
use prost::Message;
use tokio_util::sync::CancellationToken;

const WAVE: &str = "shop|wh-1|east|2026-11-21";

struct Setup {
    handler: LogisticsHandler,
    store: StateStore,
    topic: String,
    partition: i32,
    shutdown: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn setup(partition: i32) -> Setup {
    let prefix = mesh_testkit::unique("lg-erasure");
    let topics = TopicNames::with_prefix(&prefix);
    create_topics(&topics).await;
    let brokers = mesh_testkit::kafka_brokers();
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &prefix)).unwrap();
    let cfg = LogisticsConfig::from_env(&Env::from_pairs([
        ("MESH_LOGISTICS_PLAN_DEBOUNCE_MS", "50"),
        ("MESH_LOGISTICS_SOLVE_MS", "200"),
        ("MESH_LOGISTICS_SOLVE_ITERATIONS", "100"),
        ("MESH_LOGISTICS_REPLAN_MS", "50"),
        ("MESH_LOGISTICS_DEPOTS", "wh-1=52.50,13.40"),
    ]))
    .unwrap();
    let shutdown = CancellationToken::new();
    let clock: mesh_logistics_svc::Clock = Arc::new(|| NOW);
    let (planner, _) = planner::spawn(
        planner::PlannerCtx {
            store: store.clone(),
            partitions: PARTITIONS,
            routing: cfg.routing.clone(),
            debounce: cfg.debounce,
            log_summary: cfg.log_summary,
            clock: clock.clone(),
            fraud: None,
        },
        shutdown.clone(),
    );
    let handler = LogisticsHandler {
        store: store.clone(),
        producer,
        partitions: PARTITIONS,
        dead_letter_topic: topics.dead_letter.clone(),
        alerts_topic: topics.alerts.clone(),
        group: format!("{prefix}-lg"),
        default_warehouse: cfg.default_warehouse.clone(),
        planner,
        decisions_topic: topics.decisions.clone(),
        inventory: cfg.inventory.clone(),
        clock,
        stock_alerts: Default::default(),
        stock_marks: Default::default(),
    };
    Setup {
        handler,
        store,
        topic: topics.order_events.clone(),
        partition,
        shutdown,
    }
}

/// A user id whose partition is `partition`.
fn user_in(partition: i32, stem: &str) -> String {
    (0..)
        .map(|i| format!("{stem}-{i}"))
        .find(|u| mesh_bus::partition::partition_for(&format!("shop/{u}"), PARTITIONS) == partition)
        .unwrap()
}

fn placed(id: &str, user: &str, at: i64, method: &str, lat: f64) -> Envelope {
    envelope(
        &format!("placed-{id}"),
        user,
        at,
        Body::OrderPlaced(OrderPlaced {
            order_id: id.into(),
            items: vec![LineItem {
                sku: "s1".into(),
                category: "socks".into(),
                quantity: 2,
                unit_price: 4.0,
                ..Default::default()
            }],
            payment_method: method.into(),
            ship_to: Some(Location {
                lat,
                lon: 13.45,
                country: "DE".into(),
                region: "east".into(),
            }),
            warehouse_id: "wh-1".into(),
            promised_from_ms: NOW + DAY + 8 * 60 * MIN,
            promised_to_ms: NOW + DAY + 18 * 60 * MIN,
            ..Default::default()
        }),
    )
}

fn paid(id: &str, user: &str, at: i64) -> Envelope {
    envelope(
        &format!("paid-{id}-{at}"),
        user,
        at,
        Body::PaymentAuthorized(PaymentAuthorized {
            order_id: id.into(),
            amount: 8.0,
            ..Default::default()
        }),
    )
}

fn erased(user: &str, at: i64) -> Envelope {
    envelope(
        &format!("erase-{user}"),
        user,
        at,
        Body::UserErased(UserErased {
            reason: "asked".into(),
        }),
    )
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

/// Polls until `ok` holds, or fails with `what` after 60 s.
async fn until<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let start = Instant::now();
    loop {
        let v = probe().await;
        if ok(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: last {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stop ids of the wave's stored plan (routes and unassigned).
async fn planned(store: &StateStore) -> Vec<String> {
    planned_in(store, WAVE).await
}

/// Stop ids of `wave`'s stored plan (routes, unassigned and held).
async fn planned_in(store: &StateStore, wave: &str) -> Vec<String> {
    let Some(p) = wave::load_plan(store, PARTITIONS, wave).await.unwrap() else {
        return Vec::new();
    };
    let mut ids: Vec<String> = p
        .routes
        .into_iter()
        .flat_map(|r| r.stops)
        .chain(p.unassigned)
        .chain(p.held)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_users_stops_and_location_leave_and_stay_gone_through_a_replay() {
    let s = setup(2).await;
    let a = user_in(s.partition, "erase-me");
    let b = user_in(s.partition, "keep-me");
    let (a1, a2, a3) = (format!("{a}-o1"), format!("{a}-o2"), format!("{a}-o3"));
    let (b1, b2) = (format!("{b}-o1"), format!("{b}-o2"));
    let stop = |o: &str| fold::stop_id("shop", o);
    let order_key = |o: &str| fold::order_key("shop", o);
    let batch1 = records(
        &s,
        &[
            placed(&a1, &a, NOW, "cod", 52.51),
            placed(&b1, &b, NOW + 1, "cod", 52.52),
            placed(&a2, &a, NOW + 2, "card", 52.53),
            paid(&a2, &a, NOW + 3),
            // A wave with A's stop only.
            {
                let mut e = placed(&format!("{a}-west"), &a, NOW + 4, "cod", 52.56);
                if let Some(Body::OrderPlaced(o)) = &mut e.body {
                    o.ship_to.as_mut().unwrap().region = "west".into();
                }
                e
            },
        ],
        0,
    );
    s.handler.handle(&batch1).await.expect("first batch");
    let mut all = vec![stop(&a1), stop(&a2), stop(&b1)];
    all.sort();
    until("three stops planned", || planned(&s.store), |p| *p == all).await;
    let west = "shop|wh-1|west|2026-11-21";
    let a_west = vec![stop(&format!("{a}-west"))];
    until(
        "A's west stop planned",
        || planned_in(&s.store, west),
        |p| *p == a_west,
    )
    .await;
    let b1_before = s
        .store
        .hgetall(slot(s.partition), &order_key(&b1))
        .await
        .unwrap();
    assert_eq!(b1_before["user"], b);
    let a1_hash = s
        .store
        .hgetall(slot(s.partition), &order_key(&a1))
        .await
        .unwrap();
    assert_eq!(a1_hash["lat"], "52.51", "A's location is stored before");

    // The erasure, with an order of B behind it in the same batch.
    let batch2 = records(
        &s,
        &[
            erased(&a, NOW + 10),
            placed(&b2, &b, NOW + 11, "cod", 52.54),
        ],
        5,
    );
    s.handler.handle(&batch2).await.expect("erasure batch");
    let check_a_gone = |when: &'static str| {
        let (store, a) = (s.store.clone(), a.clone());
        let (a1, a2, a3) = (a1.clone(), a2.clone(), a3.clone());
        let partition = s.partition;
        async move {
            for o in [&a1, &a2, &a3] {
                let h = store
                    .hgetall(slot(partition), &fold::order_key("shop", o))
                    .await
                    .unwrap();
                assert!(h.is_empty(), "{when}: order {o} still stored: {h:?}");
            }
            let stops = wave::load_wave(&store, PARTITIONS, WAVE).await.unwrap();
            assert!(
                stops.values().all(|s| s.user != a && !s.id.contains(&a)),
                "{when}: {stops:?}"
            );
            let erased = store.hgetall(slot(partition), erasure::KEY).await.unwrap();
            assert!(erased.contains_key(&format!("shop/{a}")), "{when}");
            // The user's index, and the wave's members in every slot.
            let index = store
                .hgetall(slot(partition), &fold::buyer_key(&format!("shop/{a}")))
                .await
                .unwrap();
            assert!(index.is_empty(), "{when}: {index:?}");
            for p in 0..PARTITIONS {
                let members = store.hgetall(slot(p), &fold::wave_key(WAVE)).await.unwrap();
                assert!(
                    members.keys().all(|m| !m.contains(&a)),
                    "{when}: {members:?}"
                );
            }
            // The plan drops the stops once the wave is planned again.
            until(
                &format!("{when}: A's stops planned"),
                || planned(&store),
                |p| p.iter().all(|id| !id.contains(&a)),
            )
            .await;
        }
    };
    check_a_gone("after the erasure").await;
    // A wave left with no stop is planned again, empty.
    until(
        "west emptied",
        || planned_in(&s.store, west),
        |p| p.is_empty(),
    )
    .await;
    assert!(wave::load_plan(&s.store, PARTITIONS, west)
        .await
        .unwrap()
        .is_some());
    let mut kept = vec![stop(&b1), stop(&b2)];
    kept.sort();
    until("B's stops planned", || planned(&s.store), |p| *p == kept).await;
    let stops = wave::load_wave(&s.store, PARTITIONS, WAVE).await.unwrap();
    assert_eq!(stops.keys().cloned().collect::<Vec<_>>(), kept);
    assert_eq!(
        s.store
            .hgetall(slot(s.partition), &order_key(&b1))
            .await
            .unwrap(),
        b1_before,
        "B untouched"
    );
    // Demand stays: anonymous, and the erased user's orders were sold.
    let series = s
        .store
        .hgetall(slot(s.partition), &fold::series_hash("shop/sku:s1"))
        .await
        .unwrap();
    let day = fold::day_of(NOW).to_string();
    assert_eq!(
        series[&day], "10",
        "three orders of A and two of B, 2 units each"
    );

    // A late payment and a late order of A change nothing, stock included.
    let sold_slot = forecasting::stock_slot("wh-1", PARTITIONS);
    let sold = forecasting::sold_key("shop", "wh-1");
    let sold_before = s.store.hgetall(sold_slot, &sold).await.unwrap();
    let late = records(
        &s,
        &[
            paid(&a1, &a, NOW + 20),
            placed(&a3, &a, NOW + 21, "cod", 52.55),
        ],
        7,
    );
    s.handler.handle(&late).await.expect("late batch");
    // So does fraud's late decision on A's order (decisions topic).
    let decision = mesh_proto::fraud::v1::Decision {
        order_id: a1.clone(),
        tenant_id: "shop".into(),
        user_id: a.clone(),
        action: mesh_proto::fraud::v1::Action::Review as i32,
        ..Default::default()
    };
    let decided = Record {
        topic: s.handler.decisions_topic.clone(),
        partition: s.partition,
        offset: 0,
        key: Some(format!("shop/{a}").into_bytes()),
        payload: decision.encode_to_vec(),
        headers: Default::default(),
        timestamp_ms: None,
    };
    s.handler.handle(&[decided]).await.expect("late decision");
    assert_eq!(
        s.store.hgetall(sold_slot, &sold).await.unwrap(),
        sold_before
    );
    check_a_gone("after a late event").await;
    let series_after = s
        .store
        .hgetall(slot(s.partition), &fold::series_hash("shop/sku:s1"))
        .await
        .unwrap();
    assert_eq!(series_after, series);

    // Replay: clear the scope but the erasures and the stock set over
    // gRPC, apply every record again from offset 0.
    let mut keep = vec![erasure::KEY];
    keep.extend(mesh_logistics_svc::REPLAY_KEEPS);
    s.store.clear_scope_keeping(SCOPE, &keep).await.unwrap();
    for batch in [&batch1, &batch2, &late] {
        s.handler.handle(batch).await.expect("replayed batch");
    }
    check_a_gone("after the replay").await;
    assert_eq!(
        s.store
            .hgetall(slot(s.partition), &order_key(&b1))
            .await
            .unwrap(),
        b1_before,
        "B rebuilt equal"
    );
    let stops = wave::load_wave(&s.store, PARTITIONS, WAVE).await.unwrap();
    assert_eq!(stops.keys().cloned().collect::<Vec<_>>(), kept);
    until(
        "B's stops planned again",
        || planned(&s.store),
        |p| *p == kept,
    )
    .await;
}

/// An order of `user` placed at `at` for delivery on the day of `at`, of
/// `sku` (2 units, category socks), cash on delivery.
fn placed_on(id: &str, user: &str, at: i64, sku: &str) -> Envelope {
    let mut e = placed(id, user, at, "cod", 52.51);
    if let Some(Body::OrderPlaced(o)) = &mut e.body {
        o.items[0].sku = sku.into();
        o.promised_from_ms = at + 8 * 60 * MIN;
        o.promised_to_ms = at + 18 * 60 * MIN;
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_waves_and_old_demand_days_leave_the_store_and_nothing_newer() {
    let s = setup(1).await;
    let a = user_in(s.partition, "ret-a");
    let b = user_in(s.partition, "ret-b");
    let old_at = NOW - 40 * DAY;
    let ancient_at = NOW - 400 * DAY;
    let stop = |o: &str| fold::stop_id("shop", o);
    let (a_old, b_old, a_ancient, a_new) = (
        format!("{a}-old"),
        format!("{b}-old"),
        format!("{a}-ancient"),
        format!("{a}-new"),
    );
    let events = [
        placed_on(&a_ancient, &a, ancient_at, "s-gone"),
        placed_on(&a_old, &a, old_at, "s1"),
        placed_on(&b_old, &b, old_at + 1, "s1"),
        placed(&a_new, &a, NOW, "cod", 52.52),
    ];
    let wave_of = |e: &Envelope| fold::placement(e, "default").unwrap().1;
    let (ancient_wave, old_wave, new_wave) = (
        wave_of(&events[0]),
        wave_of(&events[1]),
        wave_of(&events[3]),
    );
    assert_eq!(new_wave, WAVE);
    s.handler
        .handle(&records(&s, &events, 0))
        .await
        .expect("batch");
    let mut old_stops = vec![stop(&a_old), stop(&b_old)];
    old_stops.sort();
    until(
        "old wave planned",
        || planned_in(&s.store, &old_wave),
        |p| *p == old_stops,
    )
    .await;
    until(
        "new wave planned",
        || planned_in(&s.store, WAVE),
        |p| *p == vec![stop(&a_new)],
    )
    .await;
    until(
        "ancient wave planned",
        || planned_in(&s.store, &ancient_wave),
        |p| *p == vec![stop(&a_ancient)],
    )
    .await;
    let new_before = s
        .store
        .hgetall(slot(s.partition), &fold::order_key("shop", &a_new))
        .await
        .unwrap();
    let new_plan = wave::load_plan(&s.store, PARTITIONS, WAVE).await.unwrap();

    let keep = Retention {
        keep_days: 30,
        history_days: 365,
    };
    let gone = retention::expire(&s.store, PARTITIONS, NOW, keep)
        .await
        .unwrap();
    assert_eq!(
        gone,
        Expired {
            waves: 2,
            orders: 3,
            // The ancient order's four series, one day each.
            series_days: 4,
            skipped: 0,
        }
    );
    for o in [&a_old, &b_old, &a_ancient] {
        let h = s
            .store
            .hgetall(slot(s.partition), &fold::order_key("shop", o))
            .await
            .unwrap();
        assert!(h.is_empty(), "order {o} still stored: {h:?}");
    }
    for w in [&old_wave, &ancient_wave] {
        assert!(wave::load_plan(&s.store, PARTITIONS, w)
            .await
            .unwrap()
            .is_none());
        assert!(wave::load_wave(&s.store, PARTITIONS, w)
            .await
            .unwrap()
            .is_empty());
    }
    assert_eq!(
        wave::list_waves(&s.store, PARTITIONS).await.unwrap(),
        vec![WAVE.to_string()]
    );
    assert_eq!(
        mesh_logistics_svc::plan_store::live_waves(&s.store, PARTITIONS)
            .await
            .unwrap(),
        vec![WAVE.to_string()]
    );
    // The buyers' indexes keep only the new order; B's is gone.
    let index = |u: &str| {
        let (store, key) = (s.store.clone(), fold::buyer_key(&format!("shop/{u}")));
        let partition = s.partition;
        async move { store.hgetall(slot(partition), &key).await.unwrap() }
    };
    assert_eq!(
        index(&a).await.into_keys().collect::<Vec<_>>(),
        vec![stop(&a_new)]
    );
    assert!(index(&b).await.is_empty());
    // The new wave is untouched.
    assert_eq!(
        s.store
            .hgetall(slot(s.partition), &fold::order_key("shop", &a_new))
            .await
            .unwrap(),
        new_before
    );
    assert_eq!(
        wave::load_plan(&s.store, PARTITIONS, WAVE).await.unwrap(),
        new_plan
    );
    // Demand: days within the history stay; a series left with no day
    // leaves the index.
    let series = |name: &str| {
        let (store, key) = (s.store.clone(), fold::series_hash(&format!("shop/{name}")));
        let partition = s.partition;
        async move { store.hgetall(slot(partition), &key).await.unwrap() }
    };
    let socks = series("cat:socks").await;
    let mut days: Vec<i64> = socks.keys().map(|d| d.parse().unwrap()).collect();
    days.sort();
    assert_eq!(days, vec![fold::day_of(old_at), fold::day_of(NOW)]);
    assert_eq!(socks[&fold::day_of(old_at).to_string()], "4");
    assert!(series("sku:s-gone").await.is_empty());
    let index = s
        .store
        .hgetall(slot(s.partition), fold::SERIES)
        .await
        .unwrap();
    assert!(!index.contains_key("shop/sku:s-gone"), "{index:?}");
    assert!(index.contains_key("shop/sku:s1"), "{index:?}");

    // Nothing left to remove.
    let later = retention::expire(&s.store, PARTITIONS, NOW + MIN, keep)
        .await
        .unwrap();
    assert_eq!(later, Expired::default());
    // A late replan of an expired wave is refused: its plan stays gone.
    s.handler.planner.touch(&old_wave);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(wave::load_plan(&s.store, PARTITIONS, &old_wave)
        .await
        .unwrap()
        .is_none());
    // keep_days 0 keeps every wave.
    let none = retention::expire(
        &s.store,
        PARTITIONS,
        NOW + 400 * DAY,
        Retention {
            keep_days: 0,
            history_days: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(none, Expired::default());
    assert_eq!(
        wave::list_waves(&s.store, PARTITIONS).await.unwrap(),
        vec![WAVE.to_string()]
    );
}
