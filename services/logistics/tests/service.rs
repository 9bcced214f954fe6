//! The logistics service in-process against the real broker and Redis:
//! stateless routing, waves planned from the order stream, re-planning on
//! cancellation, delivery exceptions, forecasts and stock-out alerts.
mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{envelope, next_alert, publish, start, watch_alerts, CAPACITY, DAY, MIN, NOW};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{
    Envelope, LineItem, Location, OrderCancelled, OrderDelivered, OrderPlaced, PaymentAuthorized,
};
use mesh_proto::logistics::v1 as pb;
use mesh_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use tonic::transport::Channel;

/// Order `i`: 3 units, around the depot, window 08:00-18:00 of tomorrow
/// (a tighter morning window for every third order).
fn placed(i: usize, method: &str) -> Envelope {
    let day = NOW + DAY;
    let (from, to) = if i.is_multiple_of(3) {
        (day + 8 * 60 * MIN, day + 11 * 60 * MIN)
    } else {
        (day + 8 * 60 * MIN, day + 18 * 60 * MIN)
    };
    let angle = i as f64 * 0.9;
    envelope(
        &format!("placed-{i}"),
        &format!("u{i}"),
        NOW + i as i64,
        Body::OrderPlaced(OrderPlaced {
            order_id: format!("o{i}"),
            items: vec![LineItem {
                sku: "sku-a".into(),
                category: "shoes".into(),
                quantity: 3,
                unit_price: 10.0,
                ..Default::default()
            }],
            payment_method: method.into(),
            ship_to: Some(Location {
                lat: 52.50 + 0.05 * angle.sin() * (1.0 + i as f64 / 10.0),
                lon: 13.40 + 0.08 * angle.cos() * (1.0 + i as f64 / 10.0),
                country: "DE".into(),
                region: "north".into(),
            }),
            warehouse_id: "wh-1".into(),
            promised_from_ms: from,
            promised_to_ms: to,
            ..Default::default()
        }),
    )
}

fn window_min(i: usize) -> (f64, f64) {
    if i.is_multiple_of(3) {
        (480.0, 660.0)
    } else {
        (480.0, 1080.0)
    }
}

/// Polls `GetPlan` until `ok` accepts a plan.
async fn wait_plan(
    c: &mut LogisticsServiceClient<Channel>,
    wave: &str,
    ok: impl Fn(&pb::WavePlan) -> bool,
) -> pb::WavePlan {
    let start = Instant::now();
    loop {
        let last = c
            .get_plan(pb::GetPlanRequest {
                tenant_id: String::new(),
                wave_id: wave.into(),
                compare_fresh: false,
            })
            .await
            .map(tonic::Response::into_inner);
        if let Ok(p) = &last {
            if ok(p) {
                return p.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no matching plan for {wave} within 60 s; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stops_of(p: &pb::WavePlan) -> HashSet<String> {
    p.routes.iter().flat_map(|r| r.stop_ids.clone()).collect()
}

/// Every route within capacity and every stop served inside its window.
fn assert_feasible(p: &pb::WavePlan) {
    for r in &p.routes {
        assert!(r.load <= CAPACITY, "route over capacity: {r:?}");
        for (id, at) in r.stop_ids.iter().zip(&r.arrivals) {
            let i: usize = id.trim_start_matches("shop/o").parse().unwrap();
            let (from, to) = window_min(i);
            assert!(
                *at >= from - 1e-6 && *at <= to + 1e-6,
                "{id} served at {at} outside {from}..{to}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_routes_is_feasible_and_names_bad_stops() {
    let mut svc = start("lg-routes").await;
    let stop = |i: usize, x: f64, y: f64| pb::RouteStop {
        id: format!("s{i}"),
        x,
        y,
        demand: 4,
        ready: 0.0,
        due: if i.is_multiple_of(2) { 120.0 } else { 0.0 },
        service: 2.0,
    };
    let stops: Vec<pb::RouteStop> = (0..15)
        .map(|i| {
            let a = i as f64 * 0.7;
            stop(i, 30.0 * a.cos(), 30.0 * a.sin())
        })
        .collect();
    let req = pb::PlanRoutesRequest {
        depot: Some(pb::RouteStop::default()),
        stops: stops.clone(),
        vehicles: 0,
        capacity: 12,
        time_budget_ms: 300,
    };
    let r = svc
        .client
        .plan_routes(req.clone())
        .await
        .unwrap()
        .into_inner();
    // Rebuild the instance and check the answer independently.
    let mut nodes = vec![mesh_vrp::Stop {
        x: 0.0,
        y: 0.0,
        demand: 0,
        ready: 0.0,
        due: 1e9,
        service: 0.0,
    }];
    nodes.extend(stops.iter().map(|s| mesh_vrp::Stop {
        x: s.x,
        y: s.y,
        demand: s.demand,
        ready: s.ready,
        due: if s.due == 0.0 { 1e9 } else { s.due },
        service: s.service,
    }));
    let inst = mesh_vrp::Instance::from_stops("t", &nodes, 12, None, None).unwrap();
    let sol = mesh_vrp::Solution::new(
        r.routes
            .iter()
            .map(|r| r.stop_indexes.iter().map(|&i| i as usize + 1).collect())
            .collect(),
    );
    let checked = mesh_vrp::check(&inst, &sol).expect("feasible plan");
    assert!((checked.distance - r.distance).abs() < 1e-6);
    assert_eq!(checked.vehicles as u32, r.vehicles);
    assert!(
        r.vehicles >= 5,
        "15 x 4 units need at least 5 vehicles of 12"
    );

    let mut bad = req.clone();
    bad.stops[3].demand = 13;
    let e = svc.client.plan_routes(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("stops[3].demand"), "{}", e.message());
    let mut bad = req;
    bad.capacity = 0;
    let e = svc.client.plan_routes(bad).await.unwrap_err();
    assert!(e.message().contains("capacity"), "{}", e.message());
    svc.shutdown.cancel();
    let _ = svc.running.consumer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_form_a_wave_cancellations_replan_and_failures_alert() {
    let mut svc = start("lg-wave").await;
    let mut alerts = watch_alerts(&svc);
    let wave = "shop|wh-1|north|2026-11-21";
    // o0..o11: cards paid by payment_authorized, every fourth cash on
    // delivery; o12 is placed but never paid and must not be planned.
    let mut events = Vec::new();
    for i in 0..13usize {
        let cod = i.is_multiple_of(4) && i < 12;
        events.push(placed(i, if cod { "cod" } else { "card" }));
        if !cod && i < 12 {
            events.push(envelope(
                &format!("paid-{i}"),
                &format!("u{i}"),
                NOW + 100 + i as i64,
                Body::PaymentAuthorized(PaymentAuthorized {
                    order_id: format!("o{i}"),
                    amount: 30.0,
                    currency: "EUR".into(),
                    payment_hash: String::new(),
                }),
            ));
        }
    }
    publish(&svc, &events).await;
    let active: HashSet<String> = (0..12).map(|i| format!("shop/o{i}")).collect();
    let first = wait_plan(&mut svc.client, wave, |p| stops_of(p) == active).await;
    // The first plan is a `solve`; orders that arrive after it are
    // `replan`ned in, so the complete plan may have either method.
    assert!(
        first.version >= 1 && ["solve", "replan", "reoptimize"].contains(&first.method.as_str())
    );
    assert_feasible(&first);
    assert!(first.routes.len() >= 4, "36 units need 4 vehicles of 10");

    let waves = svc
        .client
        .list_waves(pb::ListWavesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .waves;
    let w = waves
        .iter()
        .find(|w| w.wave_id == wave)
        .expect("wave listed");
    assert_eq!((w.orders, w.active_stops), (13, 12));
    assert_eq!((w.warehouse.as_str(), w.region.as_str()), ("wh-1", "north"));

    // A customer cancellation and a fraud hold: both leave the plan, nobody
    // else changes vehicle.
    publish(
        &svc,
        &[
            envelope(
                "cancel-5",
                "u5",
                NOW + 1000,
                Body::OrderCancelled(OrderCancelled {
                    order_id: "o5".into(),
                    reason: "customer".into(),
                }),
            ),
            envelope(
                "hold-7",
                "u7",
                NOW + 1001,
                Body::OrderCancelled(OrderCancelled {
                    order_id: "o7".into(),
                    reason: "fraud_hold".into(),
                }),
            ),
        ],
    )
    .await;
    let mut remaining = active.clone();
    remaining.remove("shop/o5");
    remaining.remove("shop/o7");
    let second = wait_plan(&mut svc.client, wave, |p| stops_of(p) == remaining).await;
    assert_eq!(second.method, "replan");
    assert!(second.version > first.version);
    assert_feasible(&second);
    let mates = |p: &pb::WavePlan| -> HashMap<String, HashSet<String>> {
        p.routes
            .iter()
            .flat_map(|r| {
                let set: HashSet<String> = r.stop_ids.iter().cloned().collect();
                r.stop_ids.iter().map(move |s| (s.clone(), set.clone()))
            })
            .collect()
    };
    let (before, after) = (mates(&first), mates(&second));
    for s in &remaining {
        assert!(
            after[s].is_subset(&before[s]),
            "{s} changed vehicle: before {:?}, after {:?}",
            before[s],
            after[s]
        );
    }

    // A failed delivery becomes an exception alert with its vehicle.
    publish(
        &svc,
        &[envelope(
            "delivered-2",
            "u2",
            NOW + DAY + 12 * 60 * MIN,
            Body::OrderDelivered(OrderDelivered {
                order_id: "o2".into(),
                success: false,
                failure_reason: "not_home".into(),
            }),
        )],
    )
    .await;
    let a = next_alert(&mut alerts, pb::AlertKind::DeliveryFailed).await;
    assert_eq!((a.order_id.as_str(), a.wave_id.as_str()), ("o2", wave));
    assert_eq!(a.alert_id, "logistics:delivered-2");
    assert!(a.detail.contains("not_home"));
    let vehicle = second
        .routes
        .iter()
        .position(|r| r.stop_ids.contains(&"shop/o2".to_string()))
        .unwrap();
    assert_eq!(a.vehicle, vehicle as i32);

    // Delivered after the promised window (o0 closes at 11:00).
    publish(
        &svc,
        &[envelope(
            "delivered-0",
            "u0",
            NOW + DAY + 12 * 60 * MIN,
            Body::OrderDelivered(OrderDelivered {
                order_id: "o0".into(),
                success: true,
                failure_reason: String::new(),
            }),
        )],
    )
    .await;
    let a = next_alert(&mut alerts, pb::AlertKind::LateDelivery).await;
    assert_eq!(a.order_id, "o0");
    assert!(a.detail.contains("60 min"), "{}", a.detail);
    svc.shutdown.cancel();
    let _ = svc.running.consumer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecast_and_reorder_from_seeded_demand() {
    let mut svc = start("lg-fc").await;
    let mut alerts = watch_alerts(&svc);
    // 35 days of demand with a weekly pattern, one order a day.
    let events: Vec<Envelope> = (1..=35)
        .map(|d| {
            let qty = 5 + (d % 7) as u32 * 2;
            envelope(
                &format!("fc-{d}"),
                &format!("fu{}", d % 5),
                NOW - d * DAY + 3_600_000,
                Body::OrderPlaced(OrderPlaced {
                    order_id: format!("fo{d}"),
                    items: vec![LineItem {
                        sku: "sku-f".into(),
                        category: "hats".into(),
                        quantity: qty,
                        unit_price: 5.0,
                        ..Default::default()
                    }],
                    payment_method: "card".into(),
                    ship_to: Some(Location {
                        lat: 52.5,
                        lon: 13.4,
                        country: "DE".into(),
                        region: "south".into(),
                    }),
                    warehouse_id: "wh-9".into(),
                    ..Default::default()
                }),
            )
        })
        .collect();
    // Another tenant orders the same category: a lab's 3 days of 100 units.
    let lab: Vec<Envelope> = (1..=3)
        .map(|d| Envelope {
            tenant_id: "lab".into(),
            ..envelope(
                &format!("lab-{d}"),
                "lab-user",
                NOW - d * DAY + 7_200_000,
                Body::OrderPlaced(OrderPlaced {
                    order_id: format!("lo{d}"),
                    items: vec![LineItem {
                        sku: "sku-lab".into(),
                        category: "hats".into(),
                        quantity: 100,
                        unit_price: 5.0,
                        ..Default::default()
                    }],
                    payment_method: "card".into(),
                    ship_to: Some(Location {
                        region: "south".into(),
                        ..Default::default()
                    }),
                    warehouse_id: "wh-9".into(),
                    ..Default::default()
                }),
            )
        })
        .collect();
    publish(&svc, &events).await;
    publish(&svc, &lab).await;

    let start = Instant::now();
    let f = loop {
        let r = svc
            .client
            .forecast(pb::ForecastRequest {
                series_key: "sku:sku-f@wh-9".into(),
                horizon: 10,
                level: 0.9,
                ..Default::default()
            })
            .await;
        if let Ok(f) = r {
            let f = f.into_inner();
            if f.history_days == 35 {
                break f;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "demand not seen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(f.point.len(), 10);
    assert_eq!(f.first_day, "2026-11-20");
    for i in 0..10 {
        assert!(
            f.lower[i] <= f.point[i] && f.point[i] <= f.upper[i],
            "{f:?}"
        );
        assert!(f.point[i] > 0.0);
    }
    let cat = svc
        .client
        .forecast(pb::ForecastRequest {
            series_key: "cat:hats@south".into(),
            horizon: 3,
            level: 0.0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((cat.point.len(), cat.level), (3, 0.95));

    // Demand series are per tenant; an empty tenant sums them.
    let hats = |tenant: &'static str| {
        let mut c = svc.client.clone();
        async move {
            c.forecast(pb::ForecastRequest {
                series_key: "cat:hats".into(),
                horizon: 3,
                level: 0.9,
                tenant_id: tenant.into(),
            })
            .await
            .map(|f| f.into_inner())
        }
    };
    let start = Instant::now();
    let lab_hats = loop {
        if let Ok(f) = hats("lab").await {
            if f.history_days == 3 && f.history.iter().sum::<f64>() == 300.0 {
                break f;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "lab demand not seen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(lab_hats.history.iter().all(|v| *v == 100.0), "{lab_hats:?}");
    let shop_hats = hats("shop").await.unwrap();
    assert_eq!(shop_hats.history_days, 35);
    // The fitted days, zero-filled: one value per day up to yesterday.
    assert_eq!(shop_hats.history.len(), 35);
    assert_eq!(shop_hats.today, 0.0);
    assert!(
        shop_hats.history.iter().all(|v| *v <= 17.0),
        "{shop_hats:?}"
    );
    let all_hats = hats("").await.unwrap();
    assert_eq!(
        all_hats.history.iter().sum::<f64>(),
        shop_hats.history.iter().sum::<f64>() + 300.0
    );
    let e = hats("nobody").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("tenant nobody"), "{}", e.message());
    let listed = svc
        .client
        .list_series(pb::ListSeriesRequest {
            prefix: String::new(),
            tenant_id: "lab".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .series_keys;
    assert_eq!(
        listed,
        [
            "cat:hats",
            "cat:hats@south",
            "sku:sku-lab",
            "sku:sku-lab@wh-9"
        ]
    );
    let e = svc
        .client
        .forecast(pb::ForecastRequest {
            series_key: "sku:none".into(),
            horizon: 3,
            level: 0.0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = svc
        .client
        .forecast(pb::ForecastRequest {
            series_key: "sku:sku-f".into(),
            horizon: 0,
            level: 0.0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("horizon"), "{}", e.message());

    // Two units on hand against ~30 units of lead-time demand: reorder and alert.
    svc.client
        .set_stock(pb::SetStockRequest {
            tenant_id: "shop".into(),
            warehouse: "wh-9".into(),
            sku: "sku-f".into(),
            on_hand: 2.0,
            on_order: 0.0,
        })
        .await
        .unwrap();
    let r = svc
        .client
        .reorder_suggestions(pb::ReorderSuggestionsRequest {
            tenant_id: String::new(),
            warehouse: "wh-9".into(),
            read_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let s = &r.suggestions[0];
    assert_eq!(s.sku, "sku-f");
    assert!(s.order_quantity > 0.0 && s.reorder_point > s.safety_stock);
    assert!(s.stockout_probability > 0.9 && s.alert, "{s:?}");
    let a = next_alert(&mut alerts, pb::AlertKind::StockoutRisk).await;
    assert_eq!((a.warehouse.as_str(), a.sku.as_str()), ("wh-9", "sku-f"));
    let e = svc
        .client
        .reorder_suggestions(pb::ReorderSuggestionsRequest {
            tenant_id: String::new(),
            warehouse: "wh-none".into(),
            read_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    svc.shutdown.cancel();
    let _ = svc.running.consumer.await;
}
