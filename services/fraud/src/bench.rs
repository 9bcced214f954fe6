//! `ScoreOrder` at a fixed offered rate over gRPC, with the feature store
//! seeded first: the load behind `mesh bench fraud` (and the
//! `bench_score` example, which needs no other service to build).
//!
//! Open loop: each request is sent at its scheduled time whatever the
//! previous ones are doing (a task per request over a few HTTP/2
//! connections), and its latency is measured from that time, so a stall
//! shows in the percentiles instead of lowering the offered rate. The
//! client runs in the same process as the server; the CPU time per request
//! of this process and of Redis is reported beside the latencies, since the
//! machine may be shared.
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Context, Envelope, LineItem, Location, OrderPlaced};
use mesh_proto::fraud::v1 as pb;
use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_proto::fraud::v1::fraud_service_server::FraudServiceServer;
use mesh_store::StateStore;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::grpc::FraudGrpc;
use crate::model::ModelHandle;
use crate::state::{BatchWrite, FeatureReader, SCOPE};
use crate::{convert, RulesHandle, Scorer};
use mesh_runtime::Clock as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Offered rate, requests per second.
    pub rate: u32,
    /// Seconds of load.
    pub seconds: u32,
    /// HTTP/2 connections the requests are spread over.
    pub connections: usize,
    /// Orders seeded into the store first (2,000 users over the last 24 h).
    pub seed_orders: u64,
    /// Slots (partitions).
    pub partitions: i32,
    /// How the store is described in the report.
    pub store_name: String,
}

/// What `mesh bench fraud` measured.
#[derive(Debug, Clone, Serialize)]
pub struct FraudBenchReport {
    pub store: String,
    pub build: &'static str,
    pub partitions: i32,
    pub seeded_orders: u64,
    pub model_version: String,
    pub offered_per_sec: u32,
    pub seconds: u32,
    pub connections: usize,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// The first error's code and message, if any.
    pub first_error: Option<String>,
    /// 1-minute load average at the end (other work on the machine).
    pub load_average: String,
    pub achieved_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Latency from the moment the call was made (excludes the sender's
    /// timer lag before it): the call's own time.
    pub call_p50_ms: f64,
    pub call_p99_ms: f64,
    pub max_ms: f64,
    /// CPU time of this process (gRPC client and server, scoring) and of
    /// the Redis server per request during the load, microseconds: what
    /// the offered rate costs, whatever else runs on the machine.
    pub process_cpu_us_per_request: Option<f64>,
    pub redis_cpu_us_per_request: Option<f64>,
    /// One order at a time, without gRPC: the feature read (one pipelined
    /// store round trip) and the decision (rules, the policy's chosen model —
    /// forest, logistic, blend or GBDT — and the isolation forest).
    pub sequential_read_p50_ms: f64,
    pub sequential_read_p99_ms: f64,
    pub sequential_decide_p50_ms: f64,
    pub sequential_decide_p99_ms: f64,
}

impl std::fmt::Display for FraudBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "ScoreOrder over gRPC, store {} ({} slots, {} orders seeded), models {}, {} build, load average {}",
            self.store, self.partitions, self.seeded_orders, self.model_version, self.build, self.load_average
        )?;
        writeln!(
            f,
            "offered {}/s for {} s over {} connections: sent {}, ok {}, errors {}, achieved {:.0}/s",
            self.offered_per_sec,
            self.seconds,
            self.connections,
            self.sent,
            self.ok,
            self.errors,
            self.achieved_per_sec
        )?;
        if let Some(e) = &self.first_error {
            writeln!(f, "first error: {e}")?;
        }
        writeln!(
            f,
            "latency from scheduled send (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        )?;
        writeln!(
            f,
            "latency from the call (ms): p50 {:.2}  p99 {:.2}",
            self.call_p50_ms, self.call_p99_ms
        )?;
        let us = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0} µs"));
        writeln!(
            f,
            "CPU per request: this process {} (client + server), redis {}",
            us(self.process_cpu_us_per_request),
            us(self.redis_cpu_us_per_request)
        )?;
        writeln!(
            f,
            "one order at a time, in process: feature read p50 {:.3} ms p99 {:.3} ms; decide p50 {:.3} ms p99 {:.3} ms",
            self.sequential_read_p50_ms,
            self.sequential_read_p99_ms,
            self.sequential_decide_p50_ms,
            self.sequential_decide_p99_ms
        )
    }
}

const BENCH_USERS: u64 = 2_000;

/// A deterministic order of user `i % BENCH_USERS` (xorshift, no RNG state).
pub fn bench_order(i: u64, at_ms: i64) -> Envelope {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let user = i % BENCH_USERS;
    let amount = 10.0 + (x % 40_000) as f64 / 100.0;
    Envelope {
        event_id: format!("b-{i}"),
        tenant_id: "bench".into(),
        user_id: format!("u{user}"),
        occurred_at_ms: at_ms,
        source: "bench".into(),
        context: Some(Context {
            device_hash: format!("d{}", user / 2),
            ip_hash: format!("ip{}", user / 10),
            ..Context::default()
        }),
        body: Some(Body::OrderPlaced(OrderPlaced {
            order_id: format!("o-{i}"),
            items: vec![LineItem {
                sku: "s".into(),
                category: if x.is_multiple_of(5) {
                    "electronics"
                } else {
                    "shoes"
                }
                .into(),
                quantity: 1,
                unit_price: amount,
                ..LineItem::default()
            }],
            total: amount,
            currency: "EUR".into(),
            payment_hash: format!("card{user}"),
            promo_code: if x.is_multiple_of(7) {
                "P10".into()
            } else {
                String::new()
            },
            ship_to: Some(Location {
                lat: 48.0 + (user % 50) as f64 / 10.0,
                lon: 2.0 + (user % 30) as f64 / 10.0,
                country: "FR".into(),
                region: format!("{}", user % 95),
            }),
            ..OrderPlaced::default()
        })),
    }
}

/// Applies `n` orders spread over the last day, as the consumer would
/// (user slot + home slots), in chunks of 200 records per partition.
async fn seed(store: &StateStore, partitions: i32, n: u64, now_ms: i64) -> Result<(), BoxError> {
    let mut per_partition: Vec<Vec<mesh_fraud::Event>> = vec![Vec::new(); partitions as usize];
    for i in 0..n {
        let env = bench_order(
            i,
            now_ms - 86_400_000 + (i as i64 * 86_000_000 / n.max(1) as i64),
        );
        let p = mesh_bus::partition::partition_for(&env.user_key(), partitions) as usize;
        let ev =
            convert::event_from(&env)?.ok_or_else(|| format!("bench order {i} is not an order"))?;
        per_partition[p].push(ev);
    }
    for (p, events) in per_partition.iter().enumerate() {
        for (c, chunk) in events.chunks(200).enumerate() {
            let mut w = BatchWrite::new("bench-seed", p as i32, partitions);
            for (j, ev) in chunk.iter().enumerate() {
                w.push((c * 200 + j) as i64, &mesh_fraud::updates(ev), Vec::new());
            }
            w.apply(store).await?;
        }
    }
    Ok(())
}

/// User + system CPU seconds of this process (Linux `/proc`).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// `used_cpu_user + used_cpu_sys` of the Redis server, seconds.
async fn redis_cpu_secs(store: &StateStore) -> Option<f64> {
    let StateStore::Redis(r) = store else {
        return None;
    };
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut r.connection())
        .await
        .ok()?;
    let get = |name: &str| {
        info.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some(get("used_cpu_user")? + get("used_cpu_sys")?)
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Sequential cost of one order: the feature read and the decision.
async fn breakdown(scorer: &Scorer, now: i64) -> Result<[f64; 4], BoxError> {
    let (mut read, mut decide) = (Vec::new(), Vec::new());
    for i in 0..500 {
        let o = convert::order_from(&bench_order(900_000 + i, now - 1_000))?;
        let reqs = mesh_fraud::reads_for(&o, o.ts);
        let user = mesh_fraud::state::entity_key(mesh_fraud::state::EntityKind::User, &o.user_id);
        let p = mesh_bus::partition::partition_for(&o.user_id, scorer.reader.partitions);
        let t = Instant::now();
        let res = scorer.reader.read(reqs, &user, p, &[]).await?;
        read.push(t.elapsed());
        let t = Instant::now();
        let f = mesh_fraud::features_from(&o, &res, o.ts)?;
        scorer
            .policy
            .current()
            .decide(&f, &scorer.rules.current())?;
        decide.push(t.elapsed());
    }
    read.sort();
    decide.sort();
    Ok([
        pct(&read, 0.5),
        pct(&read, 0.99),
        pct(&decide, 0.5),
        pct(&decide, 0.99),
    ])
}

/// Seeds `store`, serves `ScoreOrder` with `models` and `rules` on a
/// loopback port, offers the load and measures it; clears the fraud scope
/// of `store` afterwards (give it a key prefix of its own).
pub async fn run(
    store: StateStore,
    models: ModelHandle,
    rules: Arc<RulesHandle>,
    args: &BenchOptions,
) -> Result<FraudBenchReport, BoxError> {
    if args.rate == 0 || args.seconds == 0 || args.connections == 0 {
        return Err("rate, seconds and connections must be at least 1".into());
    }
    let partitions = args.partitions;
    let now = mesh_runtime::SystemClock.now_ms();
    seed(&store, partitions, args.seed_orders, now).await?;
    let model_version = crate::model::model_version(&models.current()).to_string();
    let scorer = Arc::new(Scorer {
        policy: Arc::new(models),
        rules,
        detectors: Default::default(),
        reader: FeatureReader {
            store: store.clone(),
            partitions,
        },
        budget: None,
    });
    let seq = breakdown(&scorer, now).await?;

    let shutdown = CancellationToken::new();
    let (router, _health) = mesh_runtime::grpc::server();
    let svc = FraudServiceServer::new(FraudGrpc {
        scorer,
        store: store.clone(),
        partitions,
        clock: mesh_runtime::clock::system(),
        profile: None,
    });
    let (addr, _server) = mesh_runtime::grpc::serve(
        "127.0.0.1:0".parse()?,
        router.add_service(svc),
        shutdown.clone(),
    )
    .await?;
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        clients.push(FraudServiceClient::connect(format!("http://{addr}")).await?);
    }
    // Warm the connections and the server's paths up.
    for (i, c) in clients.iter_mut().enumerate() {
        c.score_order(pb::ScoreOrderRequest {
            envelope: Some(bench_order(800_000 + i as u64, now - 1_000)),
        })
        .await?;
    }

    let cpu_before = process_cpu_secs();
    let redis_before = redis_cpu_secs(&store).await;
    let total = u64::from(args.rate) * u64::from(args.seconds);
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let started = Instant::now() + Duration::from_millis(100);
    let mut inflight = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let mut client = clients[i as usize % clients.len()].clone();
        let req = pb::ScoreOrderRequest {
            envelope: Some(bench_order(100_000 + i, now - 1_000)),
        };
        inflight.push(tokio::spawn(async move {
            let sent = Instant::now();
            let r = client.score_order(req).await;
            (
                r.err().map(|e| format!("{:?}: {}", e.code(), e.message())),
                due.elapsed(),
                sent.elapsed(),
            )
        }));
    }
    let mut lat = Vec::with_capacity(total as usize);
    let mut call = Vec::with_capacity(total as usize);
    let mut errors = 0u64;
    let mut first_error = None;
    for t in inflight {
        match t.await? {
            (None, l, c) => {
                lat.push(l);
                call.push(c);
            }
            (Some(e), _, _) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_request_us = |before: Option<f64>, after: Option<f64>| {
        before.zip(after).map(|(b, a)| (a - b) * 1e6 / total as f64)
    };
    let process_cpu_us = per_request_us(cpu_before, process_cpu_secs());
    let redis_cpu_us = per_request_us(redis_before, redis_cpu_secs(&store).await);
    lat.sort();
    call.sort();
    shutdown.cancel();
    store.clear_scope(SCOPE).await?;
    let report = FraudBenchReport {
        store: args.store_name.clone(),
        build: if cfg!(debug_assertions) {
            "debug (dependencies at opt-level 3)"
        } else {
            "release"
        },
        partitions,
        seeded_orders: args.seed_orders,
        model_version,
        offered_per_sec: args.rate,
        seconds: args.seconds,
        connections: args.connections,
        sent: total,
        ok: lat.len() as u64,
        errors,
        first_error,
        load_average: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_default(),
        achieved_per_sec: lat.len() as f64 / elapsed,
        p50_ms: pct(&lat, 0.50),
        p90_ms: pct(&lat, 0.90),
        p99_ms: pct(&lat, 0.99),
        p999_ms: pct(&lat, 0.999),
        call_p50_ms: pct(&call, 0.5),
        call_p99_ms: pct(&call, 0.99),
        max_ms: pct(&lat, 1.0),
        process_cpu_us_per_request: process_cpu_us,
        redis_cpu_us_per_request: redis_cpu_us,
        sequential_read_p50_ms: seq[0],
        sequential_read_p99_ms: seq[1],
        sequential_decide_p50_ms: seq[2],
        sequential_decide_p99_ms: seq[3],
    };
    Ok(report)
}
