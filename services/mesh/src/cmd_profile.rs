//! `mesh train segments`, `mesh report cdnow` and `mesh bench profile`.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use mesh_profile::engine::{ManualClock, Profiles};
use mesh_profile::features::DAY_MS;
use mesh_profile::segments::{self, Segment, SegmentModel};
use mesh_profile::{analytics, lifecycle, offline};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced};
use mesh_store::{MemoryStore, RedisStore, StateStore};
use serde::Serialize;

use crate::node::MeshConfig;

/// Arguments of `mesh train segments`.
#[derive(clap::Args, Debug)]
pub struct TrainSegmentsArgs {
    /// Number of segments.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mesh report cdnow`.
#[derive(clap::Args, Debug)]
pub struct CdnowArgs {
    /// CDNOW purchase log (`customer [sample_id] yyyymmdd quantity amount`).
    #[arg(long, default_value = "../shared/data/churn/CDNOW_sample.txt")]
    pub transactions: PathBuf,
    /// End of the calibration period (stages and segments are taken here).
    #[arg(long, default_value = "1997-09-30", value_parser = parse_day)]
    pub cutoff: String,
    /// Number of k-means segments.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_day(s: &str) -> Result<String, String> {
    analytics::parse_date_ms(s)
        .map(|_| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// What `mesh train segments` did.
#[derive(Debug, Serialize)]
pub struct TrainReport {
    pub users: usize,
    pub version: u64,
    pub segments: Vec<Segment>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn engine(cfg: &MeshConfig, store: StateStore, at_ms: i64) -> Profiles {
    Profiles {
        features: cfg.profile.features,
        thresholds: cfg.profile.thresholds,
        tags: cfg.profile.tags.clone(),
        clock: Arc::new(ManualClock::new(at_ms)),
        ..Profiles::read_only(store, cfg.partitions)
    }
}

/// Trains `k` segments on every user's features at `now_ms`.
pub async fn train_on(p: &Profiles, k: usize, now_ms: i64) -> anyhow::Result<SegmentModel> {
    let snaps = offline::snapshots(p, now_ms).await?;
    let rows: Vec<[f64; 4]> = snaps
        .iter()
        .map(|(_, s)| segments::vector(&s.features))
        .collect();
    Ok(SegmentModel::train(&rows, k, 0, now_ms)?)
}

/// `mesh train segments`: trains from the current state in Redis and stores
/// the model as the next version (the service picks it up at its next
/// sweep tick).
pub async fn train_segments(cfg: &MeshConfig, args: &TrainSegmentsArgs) -> anyhow::Result<()> {
    let url = cfg.redis_url.as_deref().context(
        "MESH_REDIS_URL is unset: mesh train segments trains from the profile state in Redis",
    )?;
    let store = StateStore::Redis(
        RedisStore::connect(url, &cfg.key_prefix)
            .await
            .with_context(|| format!("redis at {url}"))?,
    );
    let now = now_ms();
    let p = engine(cfg, store.clone(), now);
    let training = crate::cmd_progress::spinner("reading profiles and training segments");
    let model = train_on(&p, args.k, now).await;
    training.finish_and_clear();
    let model = model?;
    let users = model.segments.iter().map(|s| s.size).sum();
    let model = segments::store(&store, model).await?;
    let r = TrainReport {
        users,
        version: model.version,
        segments: model.segments,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "segment model v{} trained on {} users (stored)",
            r.version, r.users
        );
        print_segments(&r.segments);
    }
    Ok(())
}

fn print_segments(s: &[Segment]) {
    println!(
        "  {:>3} {:>6}  {:>9} {:>7} {:>9} {:>8}  description",
        "id", "users", "recency_d", "orders", "spend", "activity"
    );
    for x in s {
        println!(
            "  {:>3} {:>6}  {:>9.1} {:>7.2} {:>9.2} {:>8.3}  {}",
            x.id, x.size, x.centroid[0], x.centroid[1], x.centroid[2], x.centroid[3], x.description
        );
    }
}

/// What `mesh report cdnow` prints.
#[derive(Debug, Serialize)]
pub struct CdnowReport {
    pub customers: usize,
    pub purchase_lines: usize,
    pub order_events: usize,
    pub cutoff: String,
    pub events_per_sec: f64,
    pub segments: Vec<Segment>,
    /// Users per stage at the cut-off (end of the day).
    pub stages: BTreeMap<String, usize>,
    /// Users per rule tag at the cut-off.
    pub tags: BTreeMap<String, usize>,
    /// Cohort retention by first-purchase month, over the whole log.
    pub cohorts: Vec<CohortRow>,
    pub cohorts_as_of: String,
}

#[derive(Debug, Serialize)]
pub struct CohortRow {
    pub month: String,
    pub users: u64,
    pub retention: Vec<f64>,
}

/// One order event per (customer, day) of the log, at noon UTC.
pub fn cdnow_events(log: &mesh_churn::data::PurchaseLog) -> Vec<Envelope> {
    let mut out = Vec::new();
    for c in &log.customers {
        for (i, p) in c.purchases.iter().enumerate() {
            let at = p
                .day
                .and_hms_opt(12, 0, 0)
                .expect("noon exists")
                .and_utc()
                .timestamp_millis();
            out.push(Envelope {
                event_id: format!("cdnow-{}-{i}", c.id),
                tenant_id: "cdnow".into(),
                user_id: c.id.clone(),
                occurred_at_ms: at,
                source: "cdnow".into(),
                context: None,
                body: Some(Body::OrderPlaced(OrderPlaced {
                    order_id: format!("{}-{}", c.id, p.day),
                    items: vec![LineItem {
                        sku: "cd".into(),
                        category: "music".into(),
                        quantity: p.quantity.max(1.0) as u32,
                        unit_price: p.amount / p.quantity.max(1.0),
                        ..Default::default()
                    }],
                    subtotal: p.amount,
                    total: p.amount,
                    currency: "USD".into(),
                    ..Default::default()
                })),
            });
        }
    }
    out.sort_by_key(|e| e.occurred_at_ms);
    out
}

/// Replays the log through the profile fold (in-memory store) and reports
/// segments and stages at the cut-off and cohorts at the end of the log.
pub async fn cdnow(
    cfg: &MeshConfig,
    log: &mesh_churn::data::PurchaseLog,
    cutoff: &str,
    k: usize,
) -> anyhow::Result<CdnowReport> {
    let events = cdnow_events(log);
    // The end of the cut-off day.
    let cut_ms = analytics::parse_date_ms(cutoff)
        .with_context(|| format!("cutoff {cutoff:?} is not a date (YYYY-MM-DD)"))?
        + DAY_MS
        - 1;
    let store = StateStore::Memory(MemoryStore::new("cdnow"));
    let p = engine(cfg, store, cut_ms);
    let split = events.partition_point(|e| e.occurred_at_ms <= cut_ms);
    let mut offsets = BTreeMap::new();
    let started = Instant::now();
    offline::apply_events(&p, "cdnow", &events[..split], &mut offsets).await?;
    let calib_secs = started.elapsed().as_secs_f64();
    let snaps = offline::snapshots(&p, cut_ms).await?;
    let rows: Vec<[f64; 4]> = snaps
        .iter()
        .map(|(_, s)| segments::vector(&s.features))
        .collect();
    let model = SegmentModel::train(&rows, k, 1, cut_ms)?;
    let mut stages: BTreeMap<String, usize> = BTreeMap::new();
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    for (_, s) in &snaps {
        let path = lifecycle::path(
            s.state.counters.first_seen_ms,
            &s.state.order_times(),
            cut_ms,
            &p.thresholds,
        );
        let stage = path.last().expect("a path has its first step").to;
        *stages
            .entry(lifecycle::stage_name(stage).to_string())
            .or_default() += 1;
        for t in p.tags.tags(&s.features, stage) {
            *tags.entry(t).or_default() += 1;
        }
    }
    let started = Instant::now();
    offline::apply_events(&p, "cdnow", &events[split..], &mut offsets).await?;
    let total_secs = calib_secs + started.elapsed().as_secs_f64();
    let end_ms = events.last().map_or(cut_ms, |e| e.occurred_at_ms);
    let states = p.all_states().await?;
    let cohorts = analytics::cohorts(states.iter().map(|(_, s)| s), end_ms)
        .into_iter()
        .map(|c| CohortRow {
            month: c.month,
            users: c.users,
            retention: c.retention,
        })
        .collect();
    Ok(CdnowReport {
        customers: log.customers.len(),
        purchase_lines: log.lines,
        order_events: events.len(),
        cutoff: cutoff.to_string(),
        events_per_sec: events.len() as f64 / total_secs.max(1e-9),
        segments: model.segments,
        stages,
        tags,
        cohorts,
        cohorts_as_of: analytics::date_of(end_ms),
    })
}

pub async fn report_cdnow(cfg: &MeshConfig, args: &CdnowArgs) -> anyhow::Result<()> {
    let log = mesh_churn::data::PurchaseLog::read(&args.transactions)
        .with_context(|| format!("--transactions {}", args.transactions.display()))?;
    let r = cdnow(cfg, &log, &args.cutoff, args.k).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "CDNOW: {} customers, {} purchase lines, {} order events through profile ({:.0} events/s, in-memory store)",
        r.customers, r.purchase_lines, r.order_events, r.events_per_sec
    );
    println!(
        "\nRFM segments at {} (k-means on standardized recency, ln orders, ln spend, ln activity):",
        r.cutoff
    );
    print_segments(&r.segments);
    println!(
        "\nLifecycle stages at {} (at-risk {} d, dormant {} d, churned {} d without an order):",
        r.cutoff,
        cfg.profile.thresholds.at_risk_ms / DAY_MS,
        cfg.profile.thresholds.dormant_ms / DAY_MS,
        cfg.profile.thresholds.churned_ms / DAY_MS
    );
    let total: usize = r.stages.values().sum();
    for s in lifecycle::STAGES {
        let n = r.stages.get(lifecycle::stage_name(s)).copied().unwrap_or(0);
        println!(
            "  {:<12} {:>6}  {:>5.1}%",
            lifecycle::stage_name(s),
            n,
            100.0 * n as f64 / total.max(1) as f64
        );
    }
    println!("\nRule tags at {}:", r.cutoff);
    for (t, n) in &r.tags {
        println!("  {t:<18} {n:>6}");
    }
    println!(
        "\nCohort retention by first-purchase month (share with an order in month +0, +1, ...; as of {}):",
        r.cohorts_as_of
    );
    for c in &r.cohorts {
        let cells: Vec<String> = c
            .retention
            .iter()
            .map(|x| format!("{:>4.0}", 100.0 * x))
            .collect();
        println!("  {} {:>5}  {}", c.month, c.users, cells.join(" "));
    }
    Ok(())
}

/// Arguments of `mesh bench profile`.
#[derive(clap::Args, Debug)]
pub struct BenchProfileArgs {
    /// Events to push through profile (and through the bare loop).
    #[arg(long, default_value_t = 50_000)]
    pub events: usize,
    /// Distinct users in the simulated traffic.
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Concurrent GetProfile callers while profile consumes.
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `mesh bench profile` measured.
#[derive(Debug, Serialize)]
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
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// `mesh bench profile`: the same pre-produced events consumed by a bare
/// decode + pipelined Redis loop and by the profile service, each timed
/// from its first record to the last; GetProfile latency sampled by
/// concurrent callers while profile consumes.
pub async fn bench(cfg: &MeshConfig, args: &BenchProfileArgs) -> anyhow::Result<()> {
    use mesh_proto::events::v1::Topic;
    use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
    use mesh_proto::profile::v1::GetProfileRequest;

    let url = cfg.redis_url.clone().context(
        "MESH_REDIS_URL is unset: mesh bench profile measures profile on Redis (e.g. redis://127.0.0.1:6379)",
    )?;
    let mut cfg = cfg.clone();
    let run = format!("pbench{}", std::process::id());
    cfg.topic_prefix = format!("{}.{run}", cfg.topic_prefix);
    cfg.key_prefix = format!("{}:{run}", cfg.key_prefix);
    cfg.profile.group = format!("{run}-profile");
    cfg.profile.grpc_addr = "127.0.0.1:0".parse()?;
    let backends = crate::node::Backends::connect(&cfg).await?;
    let topics = cfg.topics();
    let now = now_ms();
    let events = crate::sim::events(11, &run, args.users, args.events, now - DAY_MS);
    // Produce everything first, concurrently; remember the last offset of
    // every partition to know when a consumer is done.
    let mut last: HashMap<(String, i32), i64> = HashMap::new();
    for chunk in events.chunks(5_000) {
        let sends = chunk.iter().map(|e| {
            let topic = match e.kind().map(|k| k.topic()) {
                Some(Topic::Order) => topics.order_events.clone(),
                _ => topics.user_events.clone(),
            };
            let producer = backends.producer.clone();
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
    let bare = mesh_profile::bench::bare_consume_redis(
        &backends.brokers,
        &topics.inputs(),
        &url,
        &cfg.key_prefix,
        &format!("{run}-bare"),
        args.events,
    )
    .await
    .map_err(anyhow::Error::msg)?;

    let shutdown = tokio_util::sync::CancellationToken::new();
    let running =
        mesh_profile::start(&cfg.profile, &backends.profile_deps(&cfg), shutdown.clone()).await?;
    let store = backends.store.clone();
    let done = || async {
        let mut applied = 0i64;
        let mut all = true;
        for ((topic, partition), off) in &last {
            let slot = mesh_store::Slot {
                scope: mesh_profile::handler::SCOPE,
                partition: *partition,
            };
            match store.watermark(slot, topic).await? {
                Some(w) => {
                    applied += 1;
                    all &= w >= *off;
                }
                None => all = false,
            }
        }
        Ok::<_, mesh_store::Error>((applied > 0, all))
    };
    while !done().await?.0 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let started = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let users: Vec<String> = events.iter().map(|e| e.user_id.clone()).collect();
    let mut readers = Vec::new();
    for r in 0..args.readers {
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
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lat = Vec::new();
    for r in readers {
        lat.extend(r.await?);
    }
    shutdown.cancel();
    let rate = args.events as f64 / secs;
    let r = BenchProfileReport {
        broker: if backends.embedded.is_some() {
            "embedded".into()
        } else {
            backends.brokers.clone()
        },
        events: args.events,
        users: args.users,
        profile_events_per_sec: rate,
        bare_events_per_sec: bare,
        ratio_profile_to_bare: rate / bare,
        get_profile_calls: lat.len(),
        get_profile_p50_ms: pct(&mut lat, 0.5),
        get_profile_p99_ms: pct(&mut lat, 0.99),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "broker {} / redis, {} events, {} users",
            r.broker, r.events, r.users
        );
        println!(
            "profile               {:>10.0} events/s",
            r.profile_events_per_sec
        );
        println!(
            "bare consume + redis  {:>10.0} events/s",
            r.bare_events_per_sec
        );
        println!(
            "ratio                 {:.3} (profile / bare)",
            r.ratio_profile_to_bare
        );
        println!(
            "GetProfile under load p50 {:.2} ms  p99 {:.2} ms  ({} calls, {} callers)",
            r.get_profile_p50_ms, r.get_profile_p99_ms, r.get_profile_calls, args.readers
        );
    }
    Ok(())
}
