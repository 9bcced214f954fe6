//! Re-planning latency of a 200-stop wave through the service path: the
//! order ops are applied to the store as the consumer would, then each
//! round cancels one planned order, adds a new one and times
//! `wave::plan_wave` (load the wave from every slot, `replan`, store the
//! versioned plan). Prints p50/p99.
//!
//! ```text
//! cargo run --release -p mesh-logistics-svc --example replan_latency [ROUNDS]
//! MESH_TEST_REDIS_URL=redis://127.0.0.1:16379 cargo run ... # on Redis instead of memory
//! ```
use std::collections::HashMap;
use std::time::{Duration, Instant};

use mesh_logistics_svc::{fold, wave};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, Location, OrderCancelled, OrderPlaced};
use mesh_store::{MemoryStore, PartitionBatch, RedisStore, StateStore};

const PARTITIONS: i32 = 8;
const STOPS: usize = 200;
const DAY: i64 = 86_400_000;
const NOW: i64 = 1_795_132_800_000;

/// Applies events as the consumer does: one batch per partition.
struct Feeder {
    store: StateStore,
    offsets: HashMap<i32, i64>,
}

impl Feeder {
    async fn apply(&mut self, e: &Envelope) {
        let p = mesh_bus::partition::partition_for(&e.user_key(), PARTITIONS);
        let off = self.offsets.entry(p).or_insert(0);
        *off += 1;
        let mut b = PartitionBatch::new("bench.order-events", p);
        b.push(*off, fold::ops(e, "default"));
        self.store
            .apply(mesh_logistics_svc::SCOPE, &b)
            .await
            .expect("apply");
    }
}

/// A deterministic pseudo-random number in [0, 1) for `i`, `salt`.
fn rnd(i: usize, salt: u64) -> f64 {
    let mut x =
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn order(i: usize) -> Envelope {
    let day = NOW + DAY;
    let start = 8.0 + 8.0 * rnd(i, 3);
    Envelope {
        event_id: format!("p{i}"),
        tenant_id: "bench".into(),
        user_id: format!("u{i}"),
        occurred_at_ms: NOW,
        source: "bench".into(),
        context: None,
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: format!("o{i}"),
            items: vec![LineItem {
                sku: "sku".into(),
                category: "cat".into(),
                quantity: 1 + (rnd(i, 4) * 9.0) as u32,
                ..Default::default()
            }],
            payment_method: "cod".into(),
            ship_to: Some(Location {
                lat: 52.35 + 0.3 * rnd(i, 1),
                lon: 13.15 + 0.5 * rnd(i, 2),
                country: "DE".into(),
                region: "r".into(),
            }),
            warehouse_id: "wh".into(),
            promised_from_ms: day + (start * 3_600_000.0) as i64,
            promised_to_ms: day + ((start + 4.0) * 3_600_000.0) as i64,
            ..Default::default()
        })),
    }
}

fn cancel(i: usize) -> Envelope {
    Envelope {
        event_id: format!("c{i}"),
        tenant_id: "bench".into(),
        user_id: format!("u{i}"),
        occurred_at_ms: NOW,
        source: "bench".into(),
        context: None,
        body: Some(Body::OrderCancelled(OrderCancelled {
            order_id: format!("o{i}"),
            reason: "customer".into(),
        })),
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let prefix = format!("bench-{}", std::process::id());
    let (store, backend) = match std::env::var("MESH_TEST_REDIS_URL") {
        Ok(url) => (
            StateStore::Redis(RedisStore::connect(&url, &prefix).await.expect("redis")),
            "redis",
        ),
        Err(_) => (StateStore::Memory(MemoryStore::new(&prefix)), "memory"),
    };
    let routing = wave::Routing {
        capacity: 100,
        vehicles: None,
        speed_kmh: 30.0,
        service_min: 5.0,
        depots: [("wh".to_string(), (52.5, 13.4))].into(),
        solve_budget: Duration::from_secs(5),
        solve_iterations: 300,
        replan_budget: Duration::from_millis(200),
        require_depots: false,
        // Off: the example times the replan alone.
        reoptimize: wave::Reoptimize {
            drift: 0.0,
            ..Default::default()
        },
    };
    let mut feeder = Feeder {
        store: store.clone(),
        offsets: HashMap::new(),
    };
    for i in 0..STOPS {
        feeder.apply(&order(i)).await;
    }
    let wave_id = "bench|wh|r|2026-11-21";
    let t = Instant::now();
    let first = wave::plan_wave(&store, PARTITIONS, &routing, wave_id, NOW, None)
        .await
        .expect("plan")
        .expect("a first plan");
    println!(
        "first plan ({backend}): {} stops, {} vehicles, {} unassigned, {:.1} ms",
        first.routes.iter().map(|r| r.stops.len()).sum::<usize>(),
        first.routes.len(),
        first.unassigned.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut times = Vec::with_capacity(rounds);
    let mut moved = 0usize;
    for r in 0..rounds {
        let before = wave::load_plan(&store, PARTITIONS, wave_id)
            .await
            .unwrap()
            .unwrap();
        feeder.apply(&cancel(r * 3)).await;
        feeder.apply(&order(STOPS + r)).await;
        let t = Instant::now();
        let p = wave::plan_wave(&store, PARTITIONS, &routing, wave_id, NOW, None)
            .await
            .expect("replan")
            .expect("a new plan");
        times.push(t.elapsed());
        moved += p
            .routes
            .iter()
            .flat_map(|r| r.stops.iter())
            .filter(|s| {
                before
                    .vehicle_of(s)
                    .is_some_and(|v| Some(v) != p.vehicle_of(s))
            })
            .count();
    }
    times.sort();
    println!(
        "replan of a {STOPS}-stop wave ({backend}, {rounds} rounds, 1 cancel + 1 add each): \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; stops moved between vehicles: {moved}",
        pct(&times, 0.5).as_secs_f64() * 1e3,
        pct(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
    );
    if let StateStore::Redis(_) = store {
        store.clear_scope(mesh_logistics_svc::SCOPE).await.ok();
    }
}
