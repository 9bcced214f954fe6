//! `mesh bench ingest`: ingest throughput and publish → visible latency at
//! a fixed offered rate, and a bare rdkafka producer on the same broker in
//! the same run, so the ratio shows the mesh's overhead.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use mesh_proto::events::v1::{envelope::Body, Envelope, Login};
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::node::{self, MeshConfig};

#[derive(clap::Args, Debug, Clone)]
pub struct IngestBenchArgs {
    /// Events to publish through the mesh.
    #[arg(long, default_value_t = 50_000)]
    pub events: usize,
    /// Offered rate, events per second.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Events per Publish call.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Records for the bare-producer baseline.
    #[arg(long, default_value_t = 100_000)]
    pub baseline_records: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestBenchReport {
    pub broker: String,
    pub store: String,
    pub offered_rate: u32,
    pub events: usize,
    pub ingest_events_per_sec: f64,
    pub publish_call_p50_ms: f64,
    pub publish_call_p99_ms: f64,
    pub visible_p50_ms: f64,
    pub visible_p99_ms: f64,
    pub visible_samples: usize,
    pub bare_producer_records_per_sec: f64,
    pub ratio_ingest_to_bare: f64,
}

impl std::fmt::Display for IngestBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "broker {} / store {}", self.broker, self.store)?;
        writeln!(
            f,
            "offered {} events/s, {} events",
            self.offered_rate, self.events
        )?;
        writeln!(
            f,
            "ingest          {:>10.0} events/s",
            self.ingest_events_per_sec
        )?;
        writeln!(
            f,
            "publish call    p50 {:.2} ms  p99 {:.2} ms",
            self.publish_call_p50_ms, self.publish_call_p99_ms
        )?;
        writeln!(
            f,
            "publish→visible p50 {:.2} ms  p99 {:.2} ms  ({} samples, GetProfile)",
            self.visible_p50_ms, self.visible_p99_ms, self.visible_samples
        )?;
        writeln!(
            f,
            "bare producer   {:>10.0} records/s",
            self.bare_producer_records_per_sec
        )?;
        write!(
            f,
            "ratio           {:.3} (ingest / bare producer)",
            self.ratio_ingest_to_bare
        )
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the benchmark against the configured (or embedded) backends.
pub async fn ingest(cfg: &MeshConfig, args: &IngestBenchArgs) -> anyhow::Result<IngestBenchReport> {
    let mut cfg = cfg.clone();
    let run = format!("bench{}", std::process::id());
    cfg.topic_prefix = format!("{}.{run}", cfg.topic_prefix);
    cfg.key_prefix = format!("{}:{run}", cfg.key_prefix);
    cfg.profile.group = format!("{run}-profile");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    cfg.ingest.grpc_addr = any;
    cfg.ingest.http_addr = any;
    cfg.profile.grpc_addr = any;
    cfg.admin_addr = any;
    let shutdown = CancellationToken::new();
    let mesh = node::start(&cfg, shutdown.clone()).await?;
    // Measure the steady state, not the consumer group's first join.
    let joined = Instant::now();
    while mesh.profile.assigned.partitions() == 0 && joined.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bare = bare_producer(
        &mesh.backends,
        &format!("{run}.baseline"),
        args.baseline_records,
    )
    .await?;

    let mut ingest =
        IngestServiceClient::connect(format!("http://{}", mesh.ingest.grpc_addr)).await?;
    let profile =
        ProfileServiceClient::connect(format!("http://{}", mesh.profile.grpc_addr)).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut events = mesh_proto::sim::events(7, &run, 10_000, args.events, now - 3_600_000 * 24);
    for e in events.iter_mut() {
        e.occurred_at_ms = now - 1000;
    }
    // Each batch carries one probe event for a user of its own; the prober
    // polls GetProfile until it sees it.
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let prober = tokio::spawn(async move {
        let mut profile = profile;
        let mut waiting: HashMap<String, Instant> = HashMap::new();
        let mut lat = Vec::new();
        let mut closed = false;
        while !(closed && waiting.is_empty()) {
            while let Ok((u, t)) = probe_rx.try_recv() {
                waiting.insert(u, t);
            }
            if probe_rx.is_closed() && probe_rx.is_empty() {
                closed = true;
            }
            let users: Vec<String> = waiting.keys().cloned().collect();
            for u in users {
                let r = profile
                    .get_profile(GetProfileRequest {
                        tenant_id: "bench".into(),
                        user_id: u.clone(),
                    })
                    .await;
                if r.is_ok() {
                    if let Some(t) = waiting.remove(&u) {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                } else if let Some(t) = waiting.get(&u) {
                    if t.elapsed() > Duration::from_secs(30) {
                        waiting.remove(&u);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat
    });
    let interval = Duration::from_secs_f64(args.batch as f64 / args.rate.max(1) as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut call_ms = Vec::new();
    let started = Instant::now();
    let mut accepted = 0u64;
    for (b, chunk) in events.chunks(args.batch).enumerate() {
        tick.tick().await;
        let mut batch = chunk.to_vec();
        let probe = format!("probe-{b}");
        batch.push(Envelope {
            event_id: format!("{run}-probe-{b}"),
            tenant_id: "bench".into(),
            user_id: probe.clone(),
            occurred_at_ms: now,
            source: "bench".into(),
            context: None,
            body: Some(Body::Login(Login {
                success: true,
                method: "password".into(),
            })),
        });
        let t = Instant::now();
        let r = ingest
            .publish(PublishRequest { events: batch })
            .await?
            .into_inner();
        call_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        accepted += r.accepted as u64;
        let _ = probe_tx.send((probe, t));
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(probe_tx);
    let mut lat = prober.await?;
    shutdown.cancel();
    let rate = accepted as f64 / elapsed;
    Ok(IngestBenchReport {
        broker: if mesh.backends.embedded.is_some() {
            "embedded".into()
        } else {
            mesh.backends.brokers.clone()
        },
        store: if cfg.redis_url.is_some() {
            "redis".into()
        } else {
            "memory".into()
        },
        offered_rate: args.rate,
        events: accepted as usize,
        ingest_events_per_sec: rate,
        publish_call_p50_ms: pct(&mut call_ms, 0.5),
        publish_call_p99_ms: pct(&mut call_ms, 0.99),
        visible_p50_ms: pct(&mut lat, 0.5),
        visible_p99_ms: pct(&mut lat, 0.99),
        visible_samples: lat.len(),
        bare_producer_records_per_sec: bare,
        ratio_ingest_to_bare: rate / bare,
    })
}

/// Records/s of a plain rdkafka producer (acks=all, idempotent, same
/// payload size as a typical event) against the same broker.
async fn bare_producer(backends: &node::Backends, topic: &str, n: usize) -> anyhow::Result<f64> {
    let brokers = backends.brokers.as_str();
    node::create_topics(
        backends.embedded.as_ref(),
        brokers,
        &mesh_bus::TopicNames {
            user_events: topic.to_string(),
            order_events: format!("{topic}-2"),
            dead_letter: format!("{topic}-dlq"),
            lifecycle: format!("{topic}-lc"),
            decisions: format!("{topic}-dec"),
            alerts: format!("{topic}-al"),
            engagement: format!("{topic}-eng"),
            market_prices: format!("{topic}-mkt"),
        },
        mesh_bus::TopicSpec {
            partitions: 4,
            replication: 1,
        },
    )
    .await?;
    let p: FutureProducer = mesh_bus::security::client_config()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "zstd")
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let payload = vec![b'x'; 160];
    let started = Instant::now();
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let key = &keys[i % keys.len()];
        futs.push(p.send(
            FutureRecord::to(topic).key(key).payload(&payload),
            Duration::from_secs(30),
        ));
        if futs.len() >= 20_000 {
            for r in futures::future::join_all(futs.drain(..)).await {
                r.map_err(|(e, _)| e)?;
            }
        }
    }
    for r in futures::future::join_all(futs).await {
        r.map_err(|(e, _)| e)?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
