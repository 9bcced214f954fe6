//! `mesh bench ingest`: ingest capacity and latency, beside a bare rdkafka
//! producer on the same broker in the same run, so the ratio shows the
//! mesh's overhead.
//!
//! Two phases, because one call at a time measures neither:
//! - latency: Publish calls of `--batch` events started on schedule at the
//!   offered `--rate` (open loop: a slow call does not delay the next one),
//!   each latency counted from the call's scheduled start; one probe event
//!   per call gives publish → visible through GetProfile;
//! - throughput: `--concurrency` publishers in a closed loop, unthrottled,
//!   once per level of the list; the best level's events/s is ingest's
//!   capacity, comparable with the bare producer that keeps up to 20,000
//!   records in flight (16 publishers of 100 events keep only 1,600 in
//!   flight: that measures the round trip, not what ingest can carry).
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mesh_proto::events::v1::{envelope::Body, Envelope, Login};
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::node::{self, MeshConfig};

#[derive(clap::Args, Debug, Clone)]
pub struct IngestBenchArgs {
    /// Events to publish through the mesh in the latency phase.
    #[arg(long, default_value_t = 50_000)]
    pub events: usize,
    /// Events to publish at each throughput level (long enough that a
    /// level is not a second's sample of a shared machine).
    #[arg(long, default_value_t = 200_000)]
    pub throughput_events: usize,
    /// Offered rate of the latency phase, events per second.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Events per Publish call.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Publishers calling back to back in the throughput phase, one run per
    /// level (comma separated); the best is the capacity.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_CONCURRENCY.to_vec())]
    pub concurrency: Vec<usize>,
    /// Records for the bare-producer baseline.
    #[arg(long, default_value_t = 100_000)]
    pub baseline_records: usize,
    #[arg(long)]
    pub json: bool,
}

/// Default levels of `--concurrency`.
pub const DEFAULT_CONCURRENCY: &[usize] = &[16, 64, 128];

/// One level of the throughput phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ThroughputLevel {
    /// Publishers in the closed loop.
    pub publishers: usize,
    /// Events accepted.
    pub events: usize,
    /// Accepted events per second.
    pub events_per_sec: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestBenchReport {
    pub broker: String,
    pub store: String,
    /// Offered rate of the latency phase.
    pub offered_rate: u32,
    /// Events accepted in the throughput phase.
    pub events: usize,
    pub batch: usize,
    /// Publishers of the best throughput level.
    pub concurrency: usize,
    /// Throughput phase: accepted events per second, closed loop, at the
    /// best level.
    pub ingest_events_per_sec: f64,
    /// Every level of the throughput phase, in the order run.
    pub throughput_levels: Vec<ThroughputLevel>,
    /// Latency phase: events accepted, and accepted per second from the
    /// first scheduled call to the last answer.
    pub latency_events: usize,
    pub achieved_rate: f64,
    /// Latency phase calls that failed (not in the percentiles), and the
    /// last failure's message.
    pub latency_failed_calls: usize,
    pub latency_last_error: Option<String>,
    /// Latency phase, from each call's scheduled start.
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
            "latency phase: offered {} events/s, achieved {:.0} events/s ({} events, batch {})",
            self.offered_rate, self.achieved_rate, self.latency_events, self.batch
        )?;
        if let Some(e) = &self.latency_last_error {
            writeln!(f, "{} calls failed (last: {e})", self.latency_failed_calls)?;
        }
        writeln!(
            f,
            "publish call    p50 {:.2} ms  p99 {:.2} ms  (from scheduled start)",
            self.publish_call_p50_ms, self.publish_call_p99_ms
        )?;
        writeln!(
            f,
            "publish→visible p50 {:.2} ms  p99 {:.2} ms  ({} samples, GetProfile)",
            self.visible_p50_ms, self.visible_p99_ms, self.visible_samples
        )?;
        for l in &self.throughput_levels {
            writeln!(
                f,
                "throughput phase: {:>3} publishers, batch {}, unthrottled, {} events: {:.0} events/s",
                l.publishers, self.batch, l.events, l.events_per_sec
            )?;
        }
        writeln!(
            f,
            "ingest          {:>10.0} events/s (best level: {} publishers)",
            self.ingest_events_per_sec, self.concurrency
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

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
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
    // Ingest and profile only: the other services' start-up training and
    // planning would take the CPU this stage measures.
    let mesh = node::start_front(&cfg, shutdown.clone()).await?;
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

    let ingest = Channel::from_shared(format!("http://{}", mesh.ingest.grpc_addr))?
        .connect()
        .await?;
    let profile =
        ProfileServiceClient::connect(format!("http://{}", mesh.profile.grpc_addr)).await?;
    let batch = args.batch.max(1);
    // Warm up: topic metadata, the connection, the ledger's first write.
    let warm = batches(&format!("{run}w"), batch, batch);
    publish_all(&ingest, warm, 1).await?;

    // Latency first: the throughput phase leaves the profile consumer
    // behind, which would show up as publish → visible latency.
    let lat = latency_phase(&ingest, profile, &run, args, batch).await?;

    let mut levels = Vec::new();
    let concurrency = if args.concurrency.is_empty() {
        DEFAULT_CONCURRENCY.to_vec()
    } else {
        args.concurrency.clone()
    };
    for (k, &publishers) in concurrency.iter().enumerate() {
        let publishers = publishers.max(1);
        let events = batches(&format!("{run}t{k}"), args.throughput_events, batch);
        let started = Instant::now();
        let accepted = publish_all(&ingest, events, publishers).await?;
        levels.push(ThroughputLevel {
            publishers,
            events: accepted as usize,
            events_per_sec: accepted as f64 / started.elapsed().as_secs_f64(),
        });
    }
    shutdown.cancel();
    let best = levels
        .iter()
        .max_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec))
        .cloned()
        .expect("at least one level");
    let rate = best.events_per_sec;
    let LatencyPhase {
        mut call_ms,
        mut visible_ms,
        accepted: latency_events,
        achieved_rate,
        failed: latency_failed_calls,
        last_error: latency_last_error,
    } = lat;
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
        events: best.events,
        batch,
        concurrency: best.publishers,
        ingest_events_per_sec: rate,
        throughput_levels: levels,
        latency_events,
        achieved_rate,
        latency_failed_calls,
        latency_last_error,
        publish_call_p50_ms: pct(&mut call_ms, 0.5),
        publish_call_p99_ms: pct(&mut call_ms, 0.99),
        visible_p50_ms: pct(&mut visible_ms, 0.5),
        visible_p99_ms: pct(&mut visible_ms, 0.99),
        visible_samples: visible_ms.len(),
        bare_producer_records_per_sec: bare,
        ratio_ingest_to_bare: rate / bare,
    })
}

/// `n` simulated events with ids of their own (`tag`), in calls of `batch`.
fn batches(tag: &str, n: usize, batch: usize) -> Vec<Vec<Envelope>> {
    let now = now_ms();
    let mut events = mesh_proto::sim::events(7, tag, 10_000, n, now - 3_600_000 * 24);
    for e in events.iter_mut() {
        e.occurred_at_ms = now - 1000;
    }
    events.chunks(batch).map(<[Envelope]>::to_vec).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Closed loop: `workers` publishers each take the next call as soon as
/// their last one was answered. Returns the events accepted.
async fn publish_all(
    channel: &Channel,
    calls: Vec<Vec<Envelope>>,
    workers: usize,
) -> anyhow::Result<u64> {
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = std::iter::repeat_with(|| {
        let (calls, next) = (calls.clone(), next.clone());
        let mut client = IngestServiceClient::new(channel.clone());
        tokio::spawn(async move {
            let mut accepted = 0u64;
            while let Some(events) = calls.get(next.fetch_add(1, Ordering::Relaxed)) {
                let r = client
                    .publish(PublishRequest {
                        events: events.clone(),
                    })
                    .await?;
                accepted += r.into_inner().accepted as u64;
            }
            anyhow::Ok(accepted)
        })
    })
    .take(workers)
    .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await??;
    }
    Ok(accepted)
}

struct LatencyPhase {
    call_ms: Vec<f64>,
    visible_ms: Vec<f64>,
    accepted: usize,
    achieved_rate: f64,
    /// Calls that failed (an overloaded machine: ledger or broker timeouts).
    failed: usize,
    last_error: Option<String>,
}

/// Open loop at the offered rate: call `b` starts at `start + b × interval`
/// whatever earlier calls are doing, and its latency counts from then, so
/// a stall shows as latency instead of as a lower offered rate. Each call
/// carries one probe event for a user of its own, polled through
/// GetProfile until visible.
async fn latency_phase(
    channel: &Channel,
    profile: ProfileServiceClient<Channel>,
    run: &str,
    args: &IngestBenchArgs,
    batch: usize,
) -> anyhow::Result<LatencyPhase> {
    let (probe_tx, probe_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let prober = tokio::spawn(probe_visible(profile, probe_rx));
    let calls = batches(&format!("{run}l"), args.events, batch);
    let interval = Duration::from_secs_f64(batch as f64 / args.rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(calls.len());
    for (b, mut events) in calls.into_iter().enumerate() {
        let scheduled = start + interval * b as u32;
        tokio::time::sleep_until(scheduled).await;
        let scheduled = scheduled.into_std();
        let probe = format!("probe-{b}");
        events.push(probe_event(run, b, &probe));
        let mut client = IngestServiceClient::new(channel.clone());
        let probe_tx = probe_tx.clone();
        tasks.push(tokio::spawn(async move {
            let r = client.publish(PublishRequest { events }).await;
            let took = ms_since(scheduled);
            if r.is_ok() {
                let _ = probe_tx.send((probe, scheduled));
            }
            (took, r.map(|r| r.into_inner().accepted as usize))
        }));
    }
    drop(probe_tx);
    let mut call_ms = Vec::with_capacity(tasks.len());
    let (mut accepted, mut failed, mut last_error) = (0, 0, None);
    for t in tasks {
        let (took, r) = t.await?;
        match r {
            Ok(n) => {
                call_ms.push(took);
                accepted += n;
            }
            Err(e) => {
                failed += 1;
                last_error = Some(e.message().to_string());
            }
        }
    }
    let achieved_rate = accepted as f64 / start.elapsed().as_secs_f64();
    Ok(LatencyPhase {
        call_ms,
        visible_ms: prober.await?,
        accepted,
        achieved_rate,
        failed,
        last_error,
    })
}

fn probe_event(run: &str, b: usize, user: &str) -> Envelope {
    Envelope {
        event_id: format!("{run}-probe-{b}"),
        tenant_id: "bench".into(),
        user_id: user.to_string(),
        occurred_at_ms: now_ms(),
        source: "bench".into(),
        context: None,
        body: Some(Body::Login(Login {
            success: true,
            method: "password".into(),
        })),
    }
}

/// Polls GetProfile for each probe user until it exists; milliseconds from
/// the probe's time to the first answer that has it.
async fn probe_visible(
    mut profile: ProfileServiceClient<Channel>,
    mut probe_rx: tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
) -> Vec<f64> {
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
                    lat.push(ms_since(t));
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
    // A sliding window of 20,000 records in flight: a new record as soon as
    // one is acknowledged (waiting for a whole window to drain before the
    // next would stall the pipeline and flatter whatever it is compared with).
    let mut in_flight = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let key = &keys[i % keys.len()];
        in_flight.push(p.send(
            FutureRecord::to(topic).key(key).payload(&payload),
            Duration::from_secs(30),
        ));
        if in_flight.len() >= 20_000 {
            if let Some(r) = in_flight.next().await {
                r.map_err(|(e, _)| e)?;
            }
        }
    }
    while let Some(r) = in_flight.next().await {
        r.map_err(|(e, _)| e)?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
