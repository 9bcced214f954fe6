//! The planner's INFO volume does not grow with the order rate: one plan is
//! a DEBUG line, and INFO carries one summary per period. A tracing layer
//! counts the planner's events while it plans a stream of touched waves
//! (in-memory store: this is about logging, not the store).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_logistics_svc::planner::{self, PlannerCtx};
use mesh_logistics_svc::wave::{Reoptimize, Routing};
use mesh_logistics_svc::{fold, SCOPE};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, Location, OrderPlaced};
use mesh_store::{MemoryStore, PartitionBatch, StateStore};
use tokio_util::sync::CancellationToken;
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const NOW: i64 = 1_795_132_800_000;
const PARTITIONS: i32 = 2;

/// Counts the planner's events: (INFO, DEBUG "wave planned").
#[derive(Clone, Default)]
struct Count(Arc<(AtomicUsize, AtomicUsize)>);

impl<S: Subscriber> Layer<S> for Count {
    fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
        let m = e.metadata();
        if !m.target().starts_with("mesh_logistics_svc::planner") {
            return;
        }
        match *m.level() {
            Level::INFO => self.0 .0.fetch_add(1, Ordering::SeqCst),
            Level::DEBUG => self.0 .1.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
    }
}

fn order(i: usize, wave_region: &str) -> Envelope {
    Envelope {
        event_id: format!("e{i}"),
        tenant_id: "shop".into(),
        user_id: format!("u{i}"),
        occurred_at_ms: NOW,
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: format!("o{i}"),
            items: vec![LineItem {
                sku: "s".into(),
                quantity: 1,
                ..Default::default()
            }],
            payment_method: "cod".into(),
            ship_to: Some(Location {
                lat: 52.5 + 0.001 * (i % 17) as f64,
                lon: 13.4 + 0.001 * (i % 13) as f64,
                region: wave_region.into(),
                ..Default::default()
            }),
            warehouse_id: "wh".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn planner_info_lines_are_bounded_per_period() {
    let count = Count::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(count.clone()));
    let store = StateStore::Memory(MemoryStore::new("logs"));
    let summary = Duration::from_millis(500);
    let (handle, task) = planner::spawn(
        PlannerCtx {
            store: store.clone(),
            partitions: PARTITIONS,
            routing: Routing {
                capacity: 50,
                vehicles: None,
                speed_kmh: 30.0,
                service_min: 3.0,
                depots: [("wh".to_string(), (52.5, 13.4))].into(),
                require_depots: false,
                reoptimize: Reoptimize {
                    drift: 0.02,
                    every: 5,
                    ..Default::default()
                },
                solve_budget: Duration::from_millis(50),
                solve_iterations: 20,
                replan_budget: Duration::from_millis(5),
            },
            debounce: Duration::from_millis(5),
            log_summary: summary,
            clock: Arc::new(|| NOW),
            fraud: None,
        },
        CancellationToken::new(),
    );
    // Orders arrive one by one into 4 waves for about 2.5 s; every arrival
    // touches its wave, as the consumer does.
    let started = Instant::now();
    let mut offset = 0;
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        let region = ["a", "b", "c", "d"][i % 4];
        let e = order(i, region);
        let Some(Body::OrderPlaced(o)) = &e.body else {
            unreachable!()
        };
        let wave = fold::wave_id(&e.tenant_id, o, e.occurred_at_ms, "wh");
        let mut batch = PartitionBatch::new("orders", 0);
        batch.push(offset, fold::ops(&e, "wh"));
        offset += 1;
        store.apply(SCOPE, &batch).await.unwrap();
        handle.touch(&wave);
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elapsed = started.elapsed();
    drop(handle);
    task.await.unwrap();
    let info = count.0 .0.load(Ordering::SeqCst);
    let planned = count.0 .1.load(Ordering::SeqCst);
    let periods = (elapsed.as_secs_f64() / summary.as_secs_f64()).ceil() as usize;
    eprintln!("{i} orders, {planned} plans at DEBUG, {info} INFO lines over {elapsed:?}");
    assert!(
        planned >= 20,
        "only {planned} plans: the test did not load the planner"
    );
    // One summary per period, plus the final one at stop.
    assert!(
        info <= periods + 1,
        "{info} INFO lines in {periods} periods of {summary:?}"
    );
    assert!(info >= 1, "no summary written");
}
