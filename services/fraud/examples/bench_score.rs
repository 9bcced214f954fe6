//! `ScoreOrder` at a fixed offered rate with the feature store on Redis:
//! the load of `mesh bench fraud`, buildable without the other services.
//!
//! ```sh
//! MESH_REDIS_URL=redis://127.0.0.1:16379 \
//!   cargo run --release -p mesh-fraud-svc --example bench_score -- [RATE] [SECONDS] [CONNECTIONS]
//! ```
//! Defaults: 2,000 requests/s for 10 s over 4 connections, 8 slots
//! (`MESH_PARTITIONS`), models trained on the simulator.
use mesh_fraud_svc::bench::{run, BenchOptions};
use mesh_fraud_svc::scoring::{load_rules, open_models};
use mesh_store::{RedisStore, StateStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let url = std::env::var("MESH_REDIS_URL")
        .map_err(|_| "set MESH_REDIS_URL to a Redis URL (e.g. redis://127.0.0.1:16379)")?;
    let partitions = std::env::var("MESH_PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let prefix = format!("bench-fraud-{}", std::process::id());
    let store = StateStore::Redis(RedisStore::connect(&url, &prefix).await?);
    let models = tokio::task::spawn_blocking(|| open_models(None)).await??;
    let report = run(
        store,
        models,
        load_rules(None)?,
        &BenchOptions {
            rate: arg(0, 2_000) as u32,
            seconds: arg(1, 10) as u32,
            connections: arg(2, 4) as usize,
            seed_orders: 20_000,
            partitions,
            store_name: format!("redis {url}"),
        },
    )
    .await?;
    print!("{report}");
    Ok(())
}
