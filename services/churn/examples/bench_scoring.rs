//! Scoring latency per event in the service path: one order record through
//! the handler (decode → ops → atomic apply on Redis → read back → score →
//! hysteresis check), on loopback Redis. Prints p50/p99.
//!
//! `MESH_TEST_REDIS_URL=redis://127.0.0.1:16379 cargo run [--release] -p mesh-churn-svc --example bench_scoring [events]`
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use mesh_bus::headers::HeaderList;
use mesh_bus::{Producer, ProducerConfig, Record};
use mesh_churn_svc::handler::ChurnHandler;
use mesh_churn_svc::{Churn, ChurnConfig, Model};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, OrderPlaced};
use mesh_runtime::config::Env;
use mesh_runtime::ManualClock;
use mesh_store::{RedisStore, StateStore};
use prost::Message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(5000), |v| v.parse())?;
    let url = std::env::var("MESH_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let prefix = format!("bench-churn-{}", std::process::id());
    let store = StateStore::Redis(RedisStore::connect(&url, &prefix).await?);
    // Orders are scored at their own time, so no alert fires and nothing is
    // produced; the producer is never contacted.
    let producer = Producer::new(ProducerConfig::new("127.0.0.1:9", "bench"))?;
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::at(start));
    let cfg = ChurnConfig::from_env(&Env::from_pairs([]))?;
    let churn = Arc::new(Churn {
        store: store.clone(),
        producer,
        alerts_topic: "bench.alerts".into(),
        partitions: 1,
        model: Model::prior(start),
        scoring: cfg.scoring,
        clock: clock.clone(),
        supervised: Default::default(),
        recommend: None,
    });
    let handler = ChurnHandler {
        churn,
        dead_letter_topic: "bench.dead-letter".into(),
        group: "bench".into(),
    };
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let at = start + chrono::Duration::hours(i as i64);
        clock.set_at(at);
        let e = Envelope {
            event_id: format!("e{i}"),
            tenant_id: "shop".into(),
            user_id: format!("u{}", i % 500),
            occurred_at_ms: at.timestamp_millis(),
            body: Some(Body::OrderPlaced(OrderPlaced {
                total: 10.0 + (i % 17) as f64,
                ..Default::default()
            })),
            ..Default::default()
        };
        let rec = Record {
            topic: "bench.order-events".into(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: e.encode_to_vec(),
            headers: HeaderList::new(),
            timestamp_ms: None,
        };
        let t = Instant::now();
        handler.apply(std::slice::from_ref(&rec)).await?;
        lat.push(t.elapsed());
    }
    store.clear_scope(mesh_churn_svc::SCOPE).await?;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "churn scoring per event (handler → ops → Redis apply → score), {n} events, 500 users: p50 {:?}  p99 {:?}",
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
