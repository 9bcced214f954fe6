//! What the order stream does to the logistics state, in-process against
//! the real broker and Redis: empty waves leave the listing, and orders
//! move warehouse stock exactly once with alerts from the stream.
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{envelope, publish, start, watch_alerts, Svc, DAY, MIN, NOW, PARTITIONS};
use mesh_logistics_svc::{forecasting, stock};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, Location, OrderCancelled, OrderPlaced};
use mesh_proto::logistics::v1 as pb;
use mesh_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use tonic::transport::Channel;

fn order(
    id: &str,
    user: &str,
    at: i64,
    sku: &str,
    qty: u32,
    method: &str,
    region: &str,
) -> Envelope {
    envelope(
        &format!("placed-{id}-{at}"),
        user,
        at,
        Body::OrderPlaced(OrderPlaced {
            order_id: id.into(),
            items: vec![LineItem {
                sku: sku.into(),
                category: "socks".into(),
                quantity: qty,
                unit_price: 4.0,
                ..Default::default()
            }],
            payment_method: method.into(),
            ship_to: Some(Location {
                lat: 52.50 + 0.01 * (qty as f64),
                lon: 13.40 + 0.01 * (user.len() as f64),
                country: "DE".into(),
                region: region.into(),
            }),
            warehouse_id: "wh-1".into(),
            promised_from_ms: NOW + DAY + 8 * 60 * MIN,
            promised_to_ms: NOW + DAY + 18 * 60 * MIN,
            ..Default::default()
        }),
    )
}

fn cancel(id: &str, user: &str, at: i64, reason: &str) -> Envelope {
    envelope(
        &format!("cancel-{id}-{at}-{reason}"),
        user,
        at,
        Body::OrderCancelled(OrderCancelled {
            order_id: id.into(),
            reason: reason.into(),
        }),
    )
}

async fn listed(mut client: LogisticsServiceClient<Channel>) -> Vec<String> {
    client
        .list_waves(pb::ListWavesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .waves
        .into_iter()
        .map(|w| w.wave_id)
        .collect()
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_waves_are_neither_listed_nor_kept_in_the_index() {
    let svc = start("lg-empty").await;
    let east = "shop|wh-1|east|2026-11-21";
    let west = "shop|wh-1|west|2026-11-21";
    publish(
        &svc,
        &[
            order("e1", "ua", NOW, "s1", 1, "cod", "east"),
            order("e2", "ub", NOW + 1, "s1", 2, "cod", "east"),
            // Unpaid card order: its wave has nothing to deliver.
            order("w1", "uc", NOW + 2, "s1", 1, "card", "west"),
        ],
    )
    .await;
    let waves = until(
        "east listed",
        || listed(svc.client.clone()),
        |w| w.contains(&east.to_string()),
    )
    .await;
    assert!(!waves.contains(&west.to_string()), "{waves:?}");

    publish(
        &svc,
        &[
            cancel("e1", "ua", NOW + 10, "customer"),
            cancel("e2", "ub", NOW + 11, "fraud_hold"),
        ],
    )
    .await;
    until(
        "east gone",
        || listed(svc.client.clone()),
        |w| !w.contains(&east.to_string()),
    )
    .await;
    // The planner stores the empty plan, which takes the wave out of the
    // live index.
    let plan = until(
        "empty plan",
        async || {
            svc.client
                .clone()
                .get_plan(pb::GetPlanRequest {
                    tenant_id: String::new(),
                    wave_id: east.into(),
                    compare_fresh: false,
                })
                .await
                .map(|p| p.into_inner())
                .ok()
        },
        |p| p.as_ref().is_some_and(|p| p.version > 1),
    )
    .await
    .unwrap();
    assert!(plan.routes.is_empty(), "{plan:?}");
    let live = mesh_logistics_svc::plan_store::live_waves(&svc.deps.store, PARTITIONS)
        .await
        .unwrap();
    assert!(!live.contains(&east.to_string()), "{live:?}");
    svc.shutdown.cancel();
    let _ = svc.running.consumer.await;
}

async fn on_hand(svc: &Svc, sku: &str) -> Option<f64> {
    forecasting::stock(&svc.deps.store, PARTITIONS, "shop", "wh-1")
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.0 == sku)
        .map(|s| s.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_move_stock_exactly_once_and_alert_from_the_stream() {
    let svc = start("lg-stock").await;
    let mut alerts = watch_alerts(&svc);
    // 20 complete days of 2 units a day: a lead-time demand of about 6.
    let history: Vec<Envelope> = (1..=20)
        .map(|d| {
            order(
                &format!("h{d}"),
                "uh",
                NOW - d * DAY + 3_600_000,
                "sk",
                2,
                "card",
                "hist",
            )
        })
        .collect();
    publish(&svc, &history).await;
    until(
        "history seen",
        async || {
            svc.client
                .clone()
                .forecast(pb::ForecastRequest {
                    series_key: "sku:sk@wh-1".into(),
                    horizon: 3,
                    level: 0.9,
                    ..Default::default()
                })
                .await
                .map(|f| f.into_inner().history_days)
                .ok()
        },
        |d| *d == Some(20),
    )
    .await;
    svc.client
        .clone()
        .set_stock(pb::SetStockRequest {
            tenant_id: "shop".into(),
            warehouse: "wh-1".into(),
            sku: "sk".into(),
            on_hand: 12.0,
            on_order: 0.0,
        })
        .await
        .unwrap();
    assert_eq!(on_hand(&svc, "sk").await, Some(12.0));
    let r = svc
        .client
        .clone()
        .reorder_suggestions(pb::ReorderSuggestionsRequest {
            tenant_id: "shop".into(),
            warehouse: "wh-1".into(),
            read_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let rp = r.suggestions[0].reorder_point;
    eprintln!("reorder point {rp}: {:?}", r.suggestions[0]);

    // 3 units, then the same order again (a second placement counts nothing).
    publish(&svc, &[order("a1", "u1", NOW + 1, "sk", 3, "card", "n")]).await;
    publish(&svc, &[order("a1", "u1", NOW + 2, "sk", 3, "card", "n")]).await;
    until("sold 3", || on_hand(&svc, "sk"), |v| *v == Some(9.0)).await;
    // Down by 2 until below zero: 7, 5 (under the reorder point), 3, 1, -1
    // (out). One at a time: partitions run concurrently, and two batches
    // read together would both see the last level.
    for i in 0..5 {
        publish(
            &svc,
            &[order(
                &format!("b{i}"),
                &format!("ub{i}"),
                NOW + 10 + i,
                "sk",
                2,
                "cod",
                "n",
            )],
        )
        .await;
        let want = 7.0 - 2.0 * i as f64;
        until("sold 2 more", || on_hand(&svc, "sk"), |v| *v == Some(want)).await;
    }
    until("sold 13", || on_hand(&svc, "sk"), |v| *v == Some(-1.0)).await;
    let mut seen: HashMap<String, pb::LogisticsAlert> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.keys().any(|k| k.contains(":out:")) || !seen.keys().any(|k| k.contains(":reorder:"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let a = tokio::time::timeout(left, alerts.recv())
            .await
            .unwrap_or_else(|_| panic!("stock alerts missing; seen {seen:?}"))
            .unwrap();
        seen.insert(a.alert_id.clone(), a);
    }
    let out = seen
        .values()
        .find(|a| a.alert_id.contains(":out:"))
        .unwrap();
    assert_eq!(
        (
            out.tenant_id.as_str(),
            out.warehouse.as_str(),
            out.sku.as_str()
        ),
        ("shop", "wh-1", "sk")
    );
    assert_eq!(out.kind(), pb::AlertKind::StockoutRisk);
    assert_eq!(out.probability, 1.0);
    assert!(
        out.alert_id
            .starts_with("logistics:stock:shop/wh-1:sk:out:"),
        "{}",
        out.alert_id
    );
    let reorder = seen
        .values()
        .find(|a| a.alert_id.contains(":reorder:"))
        .unwrap();
    assert!(
        reorder.detail.contains("reorder point"),
        "{}",
        reorder.detail
    );
    assert!(rp > 5.0 && rp < 12.0, "reorder point {rp}");

    // A customer cancellation puts 3 back, once; a fraud hold does not.
    publish(
        &svc,
        &[
            cancel("a1", "u1", NOW + 100, "customer"),
            cancel("a1", "u1", NOW + 101, "customer"),
            cancel("b0", "ub0", NOW + 102, "fraud_hold"),
        ],
    )
    .await;
    until("restored 3", || on_hand(&svc, "sk"), |v| *v == Some(2.0)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(on_hand(&svc, "sk").await, Some(2.0));
    svc.shutdown.cancel();
    let _ = svc.running.consumer.await;
}

/// The stock batches of one input batch applied twice (a redelivery after
/// a crash): the watermark of the pseudo source drops the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_moves_stock_once() {
    let svc = start("lg-redeliver").await;
    let events: Vec<(i64, Envelope)> = (0..3)
        .map(|i| {
            (
                i,
                order(&format!("r{i}"), "ur", NOW + i, "rk", 4, "card", "n"),
            )
        })
        .collect();
    let plan = stock::plan("orders", 1, PARTITIONS, &events, &HashMap::new(), "default");
    assert_eq!(
        plan.sold[&("shop".to_string(), "wh-1".to_string(), "rk".to_string())],
        12.0
    );
    let mut applied = Vec::new();
    for _ in 0..2 {
        for b in &plan.batches {
            applied.push(
                svc.deps
                    .store
                    .apply(mesh_logistics_svc::SCOPE, b)
                    .await
                    .unwrap()
                    .applied,
            );
        }
    }
    assert_eq!(applied, vec![3, 0]);
    let slot = forecasting::stock_slot("wh-1", PARTITIONS);
    let sold = svc
        .deps
        .store
        .hgetall(slot, &forecasting::sold_key("shop", "wh-1"))
        .await
        .unwrap();
    assert_eq!(sold["rk"].parse::<f64>().unwrap(), 12.0);
    svc.shutdown.cancel();
    let _ = svc.running.consumer.await;
}
