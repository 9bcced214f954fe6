//! The baseline of `mesh bench profile`: a bare consumer that decodes each
//! record and writes one pipelined Redis hash increment per record (plus
//! the offset), with none of the profile's work. The ratio of the
//! profile's rate to this one is the cost of the features, the exactly-once
//! step and the lifecycle evaluation.
use std::time::{Duration, Instant};

use mesh_proto::events::v1::Envelope;
use prost::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message as _;

/// Records/s of the bare loop over `n` records of `topics` (read from the
/// beginning, new consumer group), writing under `key_prefix` in Redis.
/// Timed from the first record to the `n`-th.
pub async fn bare_consume_redis(
    brokers: &str,
    topics: &[&str],
    redis_url: &str,
    key_prefix: &str,
    group: &str,
    n: usize,
) -> Result<f64, String> {
    let client = redis::Client::open(redis_url).map_err(|e| format!("redis: {e}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("session.timeout.ms", "6000")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    c.subscribe(topics).map_err(|e| format!("subscribe: {e}"))?;
    let mut seen = 0usize;
    let mut started: Option<Instant> = None;
    let mut pipe = redis::pipe();
    let mut pending = 0usize;
    let mut last_flush = Instant::now();
    while seen < n {
        let msg = tokio::time::timeout(Duration::from_millis(5), c.recv()).await;
        if let Ok(m) = msg {
            let m = m.map_err(|e| format!("consume: {e}"))?;
            started.get_or_insert_with(Instant::now);
            let e = Envelope::decode(m.payload().unwrap_or_default()).unwrap_or_default();
            let key = format!(
                "{key_prefix}:{{bare.{}}}:u:{}/{}",
                m.partition(),
                e.tenant_id,
                e.user_id
            );
            pipe.hincr(&key, "events", 1).ignore();
            pipe.hset(
                format!("{key_prefix}:{{bare.{}}}:_wm", m.partition()),
                m.topic(),
                m.offset(),
            )
            .ignore();
            pending += 1;
            seen += 1;
        }
        if pending >= 500 || (pending > 0 && last_flush.elapsed() >= Duration::from_millis(5)) {
            let _: () = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("redis: {e}"))?;
            pipe = redis::pipe();
            pending = 0;
            last_flush = Instant::now();
        }
    }
    if pending > 0 {
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok(n as f64 / secs.max(1e-9))
}
