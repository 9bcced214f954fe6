//! `mesh bench profile` ([`run`]) and its baseline: a bare consumer that
//! decodes each record and writes one pipelined Redis hash increment per
//! record (plus the offset), with none of the profile's work. The ratio of
//! the profile's rate to this one is the cost of the features, the
//! exactly-once step and the lifecycle evaluation.
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
    let c: StreamConsumer = mesh_bus::security::client_config()
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

/// What `mesh bench profile` asks for.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Events to push through profile (and through the bare loop).
    pub events: usize,
    /// Distinct users in the simulated traffic.
    pub users: u32,
    /// Concurrent GetProfile callers while profile consumes.
    pub readers: usize,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `mesh bench profile` measured.
#[derive(Debug, serde::Serialize)]
pub struct BenchProfileReport {
    pub broker: String,
    pub events: usize,
    pub users: u32,
    pub profile_events_per_sec: f64,
    pub bare_events_per_sec: f64,
    pub ratio_profile_to_bare: f64,
    pub get_profile_calls: usize,
    pub get_profile_p50_ms: f64,
    pub get_profile_p99_ms: f64,
    /// Concurrent GetProfile callers.
    pub readers: usize,
    /// How the store applied the batches during the run (this process):
    /// folded in memory, by the apply script, folds run again after a
    /// concurrent write (`mesh_store::apply_paths`).
    pub batches_folded: u64,
    pub batches_scripted: u64,
    pub batches_refolded: u64,
    /// Resident memory of this process just before the service started
    /// and when it had applied every event, bytes (Linux; 0 elsewhere):
    /// the growth is what the running profile service holds at this size.
    pub rss_before_service_bytes: u64,
    pub rss_after_apply_bytes: u64,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

impl std::fmt::Display for BenchProfileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "broker {} / redis, {} events, {} users",
            self.broker, self.events, self.users
        )?;
        writeln!(
            f,
            "profile               {:>10.0} events/s",
            self.profile_events_per_sec
        )?;
        writeln!(
            f,
            "bare consume + redis  {:>10.0} events/s",
            self.bare_events_per_sec
        )?;
        writeln!(
            f,
            "ratio                 {:.3} (profile / bare)",
            self.ratio_profile_to_bare
        )?;
        writeln!(
            f,
            "GetProfile under load p50 {:.2} ms  p99 {:.2} ms  ({} calls, {} callers)",
            self.get_profile_p50_ms, self.get_profile_p99_ms, self.get_profile_calls, self.readers
        )?;
        writeln!(
            f,
            "store batches         {} folded, {} by the apply script, {} folded again",
            self.batches_folded, self.batches_scripted, self.batches_refolded
        )?;
        write!(
            f,
            "process memory        {:.0} MiB before the service started, {:.0} MiB when every event was applied",
            mib(self.rss_before_service_bytes),
            mib(self.rss_after_apply_bytes)
        )
    }
}

/// `mesh bench profile`: the same pre-produced events consumed by the bare
/// loop ([`bare_consume_redis`]) and by the profile service started on
/// `deps` (its own topics, keys and group: `run` names them), each timed
/// from its first record to the last; GetProfile latency sampled by
/// concurrent callers while profile consumes. `broker` labels the report.
pub async fn run(
    cfg: &crate::ProfileConfig,
    deps: &crate::Deps,
    redis_url: &str,
    key_prefix: &str,
    run: &str,
    broker: &str,
    opts: &BenchOptions,
) -> Result<BenchProfileReport, BoxError> {
    use mesh_proto::events::v1::Topic;
    use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
    use mesh_proto::profile::v1::GetProfileRequest;
    use std::collections::HashMap;
    use std::sync::Arc;

    let topics = &deps.topics;
    let now = chrono::Utc::now().timestamp_millis();
    // The simulated events are 1.5 s apart on average: a long run starts
    // further back, so that it ends about now.
    let span_ms = (opts.events as i64).saturating_mul(1_500);
    let events = mesh_proto::sim::events(
        11,
        run,
        opts.users,
        opts.events,
        now - span_ms.max(crate::features::DAY_MS),
    );
    // Produce everything first, concurrently; remember the last offset of
    // every partition to know when a consumer is done.
    let mut last: HashMap<(String, i32), i64> = HashMap::new();
    for chunk in events.chunks(5_000) {
        let sends = chunk.iter().map(|e| {
            let topic = match e.kind().map(|k| k.topic()) {
                Some(Topic::Order) => topics.order_events.clone(),
                _ => topics.user_events.clone(),
            };
            let producer = deps.producer.clone();
            async move {
                use prost::Message as _;
                let d = producer
                    .send(
                        &topic,
                        &e.user_key(),
                        &e.encode_to_vec(),
                        &mesh_bus::headers::HeaderList::new(),
                    )
                    .await?;
                Ok::<_, mesh_bus::Error>((topic, d))
            }
        });
        for r in futures::future::join_all(sends).await {
            let (topic, d) = r?;
            let e = last.entry((topic, d.partition)).or_insert(-1);
            *e = (*e).max(d.offset);
        }
    }
    let bare = bare_consume_redis(
        &deps.brokers,
        &topics.inputs(),
        redis_url,
        key_prefix,
        &format!("{run}-bare"),
        opts.events,
    )
    .await
    .map_err(BoxError::from)?;

    let shutdown = tokio_util::sync::CancellationToken::new();
    // Built before the memory reading: the callers' user list is not the
    // service's.
    let users: Vec<String> = if opts.readers > 0 {
        events.iter().map(|e| e.user_id.clone()).collect()
    } else {
        Vec::new()
    };
    let paths = mesh_store::apply_paths();
    let rss = || mesh_runtime::procfs::rss_bytes(None).unwrap_or(0);
    let rss_before_service_bytes = rss();
    let running = crate::start(cfg, deps, shutdown.clone()).await?;
    let store = deps.store.clone();
    // Every watermark at once (one pipelined round trip on the store's
    // connection), every 10 ms: polling them one after another every 5 ms
    // sent ~2,000 reads a second to the Redis the measured consumer uses.
    let done =
        || async {
            let marks =
                futures::future::try_join_all(last.iter().map(|((topic, partition), off)| {
                    let slot = mesh_store::Slot {
                        scope: crate::handler::SCOPE,
                        partition: *partition,
                    };
                    let store = &store;
                    async move {
                        Ok::<_, mesh_store::Error>((store.watermark(slot, topic).await?, *off))
                    }
                }))
                .await?;
            let any = marks.iter().any(|(w, _)| w.is_some());
            let all = marks.iter().all(|(w, off)| w.is_some_and(|w| w >= *off));
            Ok::<_, mesh_store::Error>((any, all))
        };
    while !done().await?.0 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let started = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..opts.readers {
        let (stop, users) = (stop.clone(), users.clone());
        let mut client =
            ProfileServiceClient::connect(format!("http://{}", running.grpc_addr)).await?;
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = r * 7919;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i = (i + 104_729) % users.len();
                let t = Instant::now();
                let _ = client
                    .get_profile(GetProfileRequest {
                        tenant_id: "demo".into(),
                        user_id: users[i].clone(),
                    })
                    .await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    while !done().await?.1 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let rss_after_apply_bytes = rss();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lat = Vec::new();
    for r in readers {
        lat.extend(r.await?);
    }
    shutdown.cancel();
    let after = mesh_store::apply_paths();
    let rate = opts.events as f64 / secs;
    Ok(BenchProfileReport {
        broker: broker.to_string(),
        events: opts.events,
        users: opts.users,
        profile_events_per_sec: rate,
        bare_events_per_sec: bare,
        ratio_profile_to_bare: rate / bare,
        get_profile_calls: lat.len(),
        get_profile_p50_ms: pct(&mut lat, 0.5),
        get_profile_p99_ms: pct(&mut lat, 0.99),
        readers: opts.readers,
        batches_folded: after.folded - paths.folded,
        batches_scripted: after.scripted - paths.scripted,
        batches_refolded: after.refolded - paths.refolded,
        rss_before_service_bytes,
        rss_after_apply_bytes,
    })
}
