//! Tenant scoping of `GetPlan`, `ListWaves`, `SetStock` and
//! `ReorderSuggestions`, in-process against the real broker and Redis: two
//! tenants order from the same warehouse, region and day and stock the same
//! SKU there; each sees and changes only its own waves and stock, the
//! other's answer as unknown ones, and an empty tenant sees both.
mod common;

use std::time::{Duration, Instant};

use common::{envelope, publish, start, Svc, DAY, MIN, NOW};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, Location, OrderPlaced};
use mesh_proto::logistics::v1 as pb;
use tonic::Code;

const A: &str = "ta";
const B: &str = "tb";
const WAVE_A: &str = "ta|wh-1|north|2026-11-21";
const WAVE_B: &str = "tb|wh-1|north|2026-11-21";

/// A cash-on-delivery order of `tenant` (an active stop at once) of `qty`
/// units of `sku-1` from `wh-1`, region north, delivered tomorrow.
fn order(tenant: &str, id: &str, qty: u32, i: u32) -> Envelope {
    let day = NOW + DAY;
    Envelope {
        tenant_id: tenant.into(),
        ..envelope(
            &format!("placed-{tenant}-{id}"),
            &format!("u-{id}"),
            NOW + i64::from(i),
            Body::OrderPlaced(OrderPlaced {
                order_id: id.into(),
                items: vec![LineItem {
                    sku: "sku-1".into(),
                    category: "socks".into(),
                    quantity: qty,
                    unit_price: 4.0,
                    ..Default::default()
                }],
                payment_method: "cod".into(),
                ship_to: Some(Location {
                    lat: 52.50 + 0.01 * f64::from(i),
                    lon: 13.40 + 0.01 * f64::from(i),
                    country: "DE".into(),
                    region: "north".into(),
                }),
                warehouse_id: "wh-1".into(),
                promised_from_ms: day + 8 * 60 * MIN,
                promised_to_ms: day + 18 * 60 * MIN,
                ..Default::default()
            }),
        )
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get_plan(svc: &Svc, tenant: &str, wave: &str) -> Result<pb::WavePlan, tonic::Status> {
    svc.client
        .clone()
        .get_plan(pb::GetPlanRequest {
            tenant_id: tenant.into(),
            wave_id: wave.into(),
            compare_fresh: false,
        })
        .await
        .map(|r| r.into_inner())
}

async fn waves(svc: &Svc, tenant: &str) -> Result<Vec<String>, tonic::Status> {
    svc.client
        .clone()
        .list_waves(pb::ListWavesRequest {
            tenant_id: tenant.into(),
        })
        .await
        .map(|r| {
            r.into_inner()
                .waves
                .into_iter()
                .map(|w| w.wave_id)
                .collect()
        })
}

async fn set_stock(
    svc: &Svc,
    tenant: &str,
    warehouse: &str,
    sku: &str,
    on_hand: f64,
) -> Result<(), tonic::Status> {
    svc.client
        .clone()
        .set_stock(pb::SetStockRequest {
            tenant_id: tenant.into(),
            warehouse: warehouse.into(),
            sku: sku.into(),
            on_hand,
            on_order: 1.0,
        })
        .await
        .map(|_| ())
}

/// `(sku, on_hand, on_order)` of the suggestions, read only.
async fn stock(
    svc: &Svc,
    tenant: &str,
    warehouse: &str,
) -> Result<Vec<(String, f64, f64)>, tonic::Status> {
    svc.client
        .clone()
        .reorder_suggestions(pb::ReorderSuggestionsRequest {
            tenant_id: tenant.into(),
            warehouse: warehouse.into(),
            read_only: true,
        })
        .await
        .map(|r| {
            r.into_inner()
                .suggestions
                .into_iter()
                .map(|s| (s.sku, s.on_hand, s.on_order))
                .collect()
        })
}

fn row(sku: &str, on_hand: f64, on_order: f64) -> (String, f64, f64) {
    (sku.to_string(), on_hand, on_order)
}

/// Every stop id of a plan (routes and unassigned).
fn stops_of(p: &pb::WavePlan) -> Vec<String> {
    let mut ids: Vec<String> = p
        .routes
        .iter()
        .flat_map(|r| r.stop_ids.clone())
        .chain(p.unassigned.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_and_stock_are_each_tenants_own() {
    let svc = start("lg-tenants").await;

    // Stock first, so the orders below move it. Both tenants stock sku-1 in
    // wh-1; B also stocks wh-8, where A has nothing.
    set_stock(&svc, A, "wh-1", "sku-1", 10.0).await.unwrap();
    set_stock(&svc, A, "wh-1", "sku-2", 4.0).await.unwrap();
    set_stock(&svc, B, "wh-1", "sku-1", 100.0).await.unwrap();
    set_stock(&svc, B, "wh-8", "sku-9", 5.0).await.unwrap();

    // Stock without a tenant is refused (it is always someone's), after the
    // other fields are checked, and writes nothing.
    let e = set_stock(&svc, "", "wh-1", "sku-1", 999.0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("tenant_id") && e.message().contains("required"),
        "{}",
        e.message()
    );
    let e = set_stock(&svc, "", "", "sku-1", 999.0).await.unwrap_err();
    assert!(e.message().contains("warehouse"), "{}", e.message());

    // A's SetStock of a SKU B stocks too changes A's only.
    set_stock(&svc, A, "wh-1", "sku-1", 11.0).await.unwrap();
    assert_eq!(
        stock(&svc, A, "wh-1").await.unwrap(),
        vec![row("sku-1", 11.0, 1.0), row("sku-2", 4.0, 1.0)]
    );
    assert_eq!(
        stock(&svc, B, "wh-1").await.unwrap(),
        vec![row("sku-1", 100.0, 1.0)]
    );
    // No tenant: every tenant's, summed per SKU.
    assert_eq!(
        stock(&svc, "", "wh-1").await.unwrap(),
        vec![row("sku-1", 111.0, 2.0), row("sku-2", 4.0, 1.0)]
    );
    // B's warehouse answers A as a warehouse nobody stocked.
    let theirs = stock(&svc, A, "wh-8").await.unwrap_err();
    let nobodys = stock(&svc, A, "wh-none").await.unwrap_err();
    assert_eq!(
        (theirs.code(), nobodys.code()),
        (Code::NotFound, Code::NotFound)
    );
    assert_eq!(
        theirs.message().replace("wh-8", "W"),
        nobodys.message().replace("wh-none", "W")
    );
    assert_eq!(
        stock(&svc, B, "wh-8").await.unwrap(),
        vec![row("sku-9", 5.0, 1.0)]
    );
    assert_eq!(
        stock(&svc, "", "wh-8").await.unwrap(),
        vec![row("sku-9", 5.0, 1.0)]
    );

    // Same warehouse, region and day: A's and B's orders form two waves.
    publish(
        &svc,
        &[
            order(A, "a1", 2, 1),
            order(A, "a2", 2, 2),
            order(B, "b1", 3, 3),
        ],
    )
    .await;
    let plan_a = until(
        "A's wave planned",
        async || get_plan(&svc, "", WAVE_A).await.ok(),
        |p| p.as_ref().is_some_and(|p| stops_of(p).len() == 2),
    )
    .await
    .unwrap();
    assert_eq!(stops_of(&plan_a), ["ta/a1", "ta/a2"]);
    let plan_b = until(
        "B's wave planned",
        async || get_plan(&svc, "", WAVE_B).await.ok(),
        |p| p.as_ref().is_some_and(|p| stops_of(p).len() == 1),
    )
    .await
    .unwrap();
    assert_eq!(stops_of(&plan_b), ["tb/b1"]);

    // Each tenant's orders moved its own stock only.
    let moved = until(
        "stock moved",
        async || {
            (
                stock(&svc, A, "wh-1").await.unwrap(),
                stock(&svc, B, "wh-1").await.unwrap(),
            )
        },
        |(a, b)| a[0].1 == 7.0 && b[0].1 == 97.0,
    )
    .await;
    assert_eq!(moved.0[1], row("sku-2", 4.0, 1.0));
    assert_eq!(
        stock(&svc, "", "wh-1").await.unwrap()[0],
        row("sku-1", 104.0, 2.0)
    );

    // ListWaves: each tenant its own, no tenant both, a third tenant none.
    assert_eq!(waves(&svc, A).await.unwrap(), [WAVE_A]);
    assert_eq!(waves(&svc, B).await.unwrap(), [WAVE_B]);
    let all = waves(&svc, "").await.unwrap();
    assert!(
        all.contains(&WAVE_A.to_string()) && all.contains(&WAVE_B.to_string()),
        "{all:?}"
    );
    assert!(waves(&svc, "tc").await.unwrap().is_empty());

    // GetPlan: A reads its own wave; B's answers A as an unknown wave does.
    assert_eq!(
        stops_of(&get_plan(&svc, A, WAVE_A).await.unwrap()),
        ["ta/a1", "ta/a2"]
    );
    let theirs = get_plan(&svc, A, WAVE_B).await.unwrap_err();
    let unknown = "ta|wh-1|north|2099-01-01";
    let nobodys = get_plan(&svc, A, unknown).await.unwrap_err();
    assert_eq!(
        (theirs.code(), nobodys.code()),
        (Code::NotFound, Code::NotFound)
    );
    assert_eq!(
        theirs.message().replace(WAVE_B, "W"),
        nobodys.message().replace(unknown, "W")
    );
    // Also with the fresh-solve comparison (nothing is solved for A).
    let e = svc
        .client
        .clone()
        .get_plan(pb::GetPlanRequest {
            tenant_id: A.into(),
            wave_id: WAVE_B.into(),
            compare_fresh: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // A wave id from before waves carried the tenant is no tenant's.
    assert_eq!(
        get_plan(&svc, A, "wh-1|north|2026-11-21")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        stops_of(&get_plan(&svc, B, WAVE_B).await.unwrap()),
        ["tb/b1"]
    );

    // Tenant ids no tenant can have are refused, naming the field.
    let long = "t".repeat(65);
    for bad in ["a b", "ta/x", "ta|wh-1", long.as_str()] {
        let codes = [
            get_plan(&svc, bad, WAVE_A).await.unwrap_err(),
            waves(&svc, bad).await.unwrap_err(),
            set_stock(&svc, bad, "wh-1", "sku-1", 1.0)
                .await
                .unwrap_err(),
            stock(&svc, bad, "wh-1").await.unwrap_err(),
        ];
        for e in codes {
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
            assert!(e.message().contains("tenant_id"), "{bad}: {}", e.message());
        }
    }
    assert!(waves(&svc, &"t".repeat(64)).await.unwrap().is_empty());

    // Nothing of B's changed along the way.
    assert_eq!(
        stock(&svc, B, "wh-1").await.unwrap(),
        vec![row("sku-1", 97.0, 1.0)]
    );
    assert_eq!(
        stock(&svc, B, "wh-8").await.unwrap(),
        vec![row("sku-9", 5.0, 1.0)]
    );
    svc.shutdown.cancel();
    let _ = svc.running.consumer.await;
}
