//! A store that goes back while the logistics consumer runs (restored from
//! an older snapshot, or emptied) loses nothing: the consumer re-reads
//! both of its inputs (orders, fraud's decisions) from what the store
//! applied, and the waves, the demand series, the warehouse stock and the
//! plans end up as the events give them, each event counted once; an
//! erasure holds through the re-read.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{create_topics, envelope, Svc, DAY, MIN, NOW, PARTITIONS};
use mesh_bus::headers::HeaderList;
use mesh_bus::{Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_logistics_svc::fold::{self, FRAUD_HOLD};
use mesh_logistics_svc::wave::{self, StopState};
use mesh_logistics_svc::{forecasting, LogisticsConfig};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{
    Envelope, LineItem, Location, OrderCancelled, OrderPlaced, PaymentAuthorized, UserErased,
};
use mesh_proto::fraud::v1::{Action, Decision};
use mesh_proto::logistics::v1 as pb;
use mesh_runtime::config::Env;
use mesh_store::{RedisStore, StateStore};
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The service of `common::start`, with fraud's decisions topic created
/// first (the consumer reads it with the orders).
async fn start(name: &str) -> (Svc, String) {
    let prefix = mesh_testkit::unique(name);
    let topics = TopicNames::with_prefix(&prefix);
    create_topics(&topics).await;
    let brokers = mesh_testkit::kafka_brokers();
    mesh_bus::ensure_output_topics(
        &brokers,
        &topics,
        TopicSpec {
            partitions: PARTITIONS,
            replication: 1,
        },
        Duration::from_secs(20),
    )
    .await
    .expect("decisions topic");
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &prefix)).unwrap();
    let group = format!("{prefix}-lg");
    let cfg = LogisticsConfig::from_env(&Env::from_pairs([
        ("MESH_LOGISTICS_GRPC_ADDR", "127.0.0.1:0"),
        ("MESH_LOGISTICS_GROUP", group.as_str()),
        ("MESH_LOGISTICS_PLAN_DEBOUNCE_MS", "100"),
        ("MESH_LOGISTICS_SOLVE_MS", "300"),
        ("MESH_LOGISTICS_SOLVE_ITERATIONS", "200"),
        ("MESH_LOGISTICS_REPLAN_MS", "100"),
        ("MESH_LOGISTICS_CAPACITY", "10"),
        ("MESH_LOGISTICS_DEPOTS", "wh-1=52.50,13.40"),
    ]))
    .unwrap();
    let deps = mesh_logistics_svc::Deps {
        brokers,
        topics: topics.clone(),
        partitions: PARTITIONS,
        store,
        producer,
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        clock: Arc::new(|| NOW),
        peers: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let running = mesh_logistics_svc::start(&cfg, &deps, shutdown.clone())
        .await
        .unwrap();
    let client = pb::logistics_service_client::LogisticsServiceClient::connect(format!(
        "http://{}",
        running.grpc_addr
    ))
    .await
    .unwrap();
    (
        Svc {
            topics,
            deps,
            running,
            client,
            shutdown,
        },
        prefix,
    )
}

/// Just enough of a Redis client for DUMP and RESTORE (this crate has no
/// Redis client of its own): RESP over one connection.
struct Redis(BufReader<TcpStream>);

#[derive(Debug)]
enum Reply {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Reply>),
}

impl Reply {
    fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    fn text(&self) -> String {
        match self {
            Reply::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected a string, got {other:?}"),
        }
    }
}

impl Redis {
    /// Connects to `redis://[[user]:password@]host:port[/db]`.
    async fn connect(url: &str) -> Self {
        let rest = url.strip_prefix("redis://").expect("a redis:// URL");
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a.to_string()), r),
            None => (None, rest),
        };
        let (addr, db) = match rest.split_once('/') {
            Some((a, d)) => (a, d.trim()),
            None => (rest, ""),
        };
        let mut r = Redis(BufReader::new(
            TcpStream::connect(addr).await.expect("redis connects"),
        ));
        if let Some(auth) = auth {
            let (user, pass) = auth.split_once(':').unwrap_or(("", auth.as_str()));
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if !user.is_empty() {
                args.push(user.as_bytes());
            }
            args.push(pass.as_bytes());
            r.cmd(&args).await;
        }
        if !db.is_empty() {
            r.cmd(&[b"SELECT", db.as_bytes()]).await;
        }
        r
    }

    async fn cmd(&mut self, args: &[&[u8]]) -> Reply {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend(format!("${}\r\n", a.len()).into_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.0.get_mut().write_all(&out).await.expect("redis write");
        read_reply(&mut self.0).await
    }

    /// Every key under `prefix`, by SCAN.
    async fn keys(&mut self, prefix: &str) -> Vec<Vec<u8>> {
        let pattern = format!("{prefix}:*");
        let mut cursor = "0".to_string();
        let mut out = BTreeSet::new();
        loop {
            let reply = self
                .cmd(&[
                    b"SCAN",
                    cursor.as_bytes(),
                    b"MATCH",
                    pattern.as_bytes(),
                    b"COUNT",
                    b"1000",
                ])
                .await;
            let Reply::Array(parts) = reply else {
                panic!("SCAN answered {reply:?}");
            };
            cursor = parts[0].text();
            if let Reply::Array(keys) = &parts[1] {
                for k in keys {
                    if let Reply::Bytes(k) = k {
                        out.insert(k.clone());
                    }
                }
            }
            if cursor == "0" {
                return out.into_iter().collect();
            }
        }
    }

    /// Deletes every key under `prefix`: a store restored empty.
    async fn flush(&mut self, prefix: &str) -> usize {
        let keys = self.keys(prefix).await;
        for k in &keys {
            self.cmd(&[b"DEL", k]).await.int();
        }
        keys.len()
    }

    /// Every key under `prefix`: name, DUMP, PTTL.
    async fn snapshot(&mut self, prefix: &str) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
        let mut out = Vec::new();
        for k in self.keys(prefix).await {
            let Reply::Bytes(dump) = self.cmd(&[b"DUMP", &k]).await else {
                continue;
            };
            let ttl = self.cmd(&[b"PTTL", &k]).await.int().max(0);
            out.push((k, dump, ttl));
        }
        out
    }

    /// The store as `snap` had it: every key deleted, its keys restored.
    async fn restore(&mut self, prefix: &str, snap: &[(Vec<u8>, Vec<u8>, i64)]) {
        self.flush(prefix).await;
        for (k, dump, ttl) in snap {
            let ttl = ttl.to_string();
            let r = self.cmd(&[b"RESTORE", k, ttl.as_bytes(), dump]).await;
            assert_eq!(r.text(), "OK", "RESTORE");
        }
    }
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
    Box::pin(async move {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).await.expect("redis read");
        let head = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => Reply::Bytes(head.into_bytes()),
            b'-' => panic!("redis: {head}"),
            b':' => Reply::Int(head.parse().expect("integer")),
            b'$' => {
                let n: i64 = head.parse().expect("length");
                if n < 0 {
                    return Reply::Nil;
                }
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf).await.expect("redis read");
                buf.truncate(n as usize);
                Reply::Bytes(buf)
            }
            b'*' => {
                let n: i64 = head.parse().expect("length");
                if n < 0 {
                    return Reply::Nil;
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(r).await);
                }
                Reply::Array(items)
            }
            other => panic!("unexpected RESP type {:?}", other as char),
        }
    })
}

/// A user id of tenant `shop` whose partition is `partition`.
fn user_in(partition: i32, stem: &str) -> String {
    (0..)
        .map(|i| format!("{stem}-{i}"))
        .find(|u| mesh_bus::partition::partition_for(&format!("shop/{u}"), PARTITIONS) == partition)
        .unwrap()
}

const SKU: &str = "sk";
const STOCK: f64 = 1000.0;

fn region_of(partition: i32) -> &'static str {
    if partition < 2 {
        "north"
    } else {
        "south"
    }
}

fn placed(user: &str, partition: i32, id: &str, qty: u32, method: &str, at: i64) -> Envelope {
    envelope(
        &format!("placed-{id}"),
        user,
        at,
        Body::OrderPlaced(OrderPlaced {
            order_id: id.into(),
            items: vec![LineItem {
                sku: SKU.into(),
                category: "socks".into(),
                quantity: qty,
                unit_price: 4.0,
                ..Default::default()
            }],
            payment_method: method.into(),
            ship_to: Some(Location {
                lat: 52.50 + 0.01 * qty as f64,
                lon: 13.40 + 0.01 * partition as f64,
                country: "DE".into(),
                region: region_of(partition).into(),
            }),
            warehouse_id: "wh-1".into(),
            promised_from_ms: NOW + DAY + 8 * 60 * MIN,
            promised_to_ms: NOW + DAY + 18 * 60 * MIN,
            ..Default::default()
        }),
    )
}

fn paid(user: &str, id: &str, at: i64) -> Envelope {
    envelope(
        &format!("paid-{id}"),
        user,
        at,
        Body::PaymentAuthorized(PaymentAuthorized {
            order_id: id.into(),
            amount: 8.0,
            ..Default::default()
        }),
    )
}

fn cancelled(user: &str, id: &str, reason: &str, at: i64) -> Envelope {
    envelope(
        &format!("cancel-{id}"),
        user,
        at,
        Body::OrderCancelled(OrderCancelled {
            order_id: id.into(),
            reason: reason.into(),
        }),
    )
}

fn erased(user: &str, at: i64) -> Envelope {
    envelope(
        &format!("erase-{user}"),
        user,
        at,
        Body::UserErased(UserErased {
            reason: "asked".into(),
        }),
    )
}

fn decision(user: &str, id: &str, action: Action, at: i64) -> Decision {
    Decision {
        order_id: id.into(),
        tenant_id: "shop".into(),
        user_id: user.into(),
        event_id: format!("placed-{id}"),
        action: action as i32,
        occurred_at_ms: at,
        ..Default::default()
    }
}

/// One order as the events leave it.
#[derive(Debug, Clone, Default)]
struct OrderF {
    wave: String,
    qty: f64,
    paid: bool,
    cod: bool,
    cancelled: Option<String>,
    fraud: Option<String>,
    erased: bool,
}

impl OrderF {
    fn state(&self) -> StopState {
        match self.cancelled.as_deref() {
            Some(FRAUD_HOLD) => StopState::Held,
            Some(_) => StopState::Cancelled,
            None if self.fraud.as_deref().is_some_and(wave::holds) => StopState::Held,
            None if self.paid || self.cod => StopState::Active,
            None => StopState::Pending,
        }
    }
}

/// What the accepted events give (see `mesh_logistics_svc::fold`,
/// `stock`): orders by stop id, units sold and put back.
#[derive(Default)]
struct Fold {
    orders: BTreeMap<String, OrderF>,
    buyers: BTreeMap<String, BTreeSet<String>>,
    erased: BTreeSet<String>,
    /// Units placed per region (demand, erased buyers' included).
    demand: BTreeMap<&'static str, f64>,
    /// Net units out of stock.
    sold: f64,
}

impl Fold {
    fn event(&mut self, e: &Envelope) {
        let member = e.user_key();
        if self.erased.contains(&member) {
            return;
        }
        let stop = |id: &str| fold::stop_id(&e.tenant_id, id);
        match e.body.as_ref().unwrap() {
            Body::OrderPlaced(o) => {
                let (_, wave) = fold::placement(e, "default").unwrap();
                let region = region_of(mesh_bus::partition::partition_for(&member, PARTITIONS));
                let qty: f64 = o.items.iter().map(|i| f64::from(i.quantity)).sum();
                self.orders.insert(
                    stop(&o.order_id),
                    OrderF {
                        wave,
                        qty,
                        cod: fold::CASH_ON_DELIVERY.contains(&o.payment_method.as_str()),
                        ..Default::default()
                    },
                );
                self.buyers
                    .entry(member)
                    .or_default()
                    .insert(stop(&o.order_id));
                *self.demand.entry(region).or_default() += qty;
                self.sold += qty;
            }
            Body::PaymentAuthorized(p) => {
                self.orders.get_mut(&stop(&p.order_id)).unwrap().paid = true;
            }
            Body::OrderCancelled(c) => {
                let o = self.orders.get_mut(&stop(&c.order_id)).unwrap();
                if c.reason != FRAUD_HOLD && o.cancelled.is_none() {
                    self.sold -= o.qty;
                }
                o.cancelled = Some(c.reason.clone());
            }
            Body::UserErased(_) => {
                for s in self.buyers.remove(&member).unwrap_or_default() {
                    self.orders.get_mut(&s).unwrap().erased = true;
                }
                self.erased.insert(member);
            }
            other => panic!("not folded: {other:?}"),
        }
    }

    fn decision(&mut self, d: &Decision) {
        if self
            .erased
            .contains(&format!("{}/{}", d.tenant_id, d.user_id))
        {
            return;
        }
        let o = self
            .orders
            .get_mut(&fold::stop_id(&d.tenant_id, &d.order_id))
            .unwrap();
        o.fraud = Some(d.action().as_str_name().to_string());
    }

    /// Stops of each wave (erased buyers' gone) and their states.
    fn waves(&self) -> BTreeMap<String, BTreeMap<String, StopState>> {
        let mut out: BTreeMap<String, BTreeMap<String, StopState>> = BTreeMap::new();
        for (id, o) in &self.orders {
            let stops = out.entry(o.wave.clone()).or_default();
            if !o.erased {
                stops.insert(id.clone(), o.state());
            }
        }
        out
    }
}

/// Publishes order events and decisions, keyed by buyer as ingest and
/// fraud do, and folds them.
struct Publisher<'a> {
    svc: &'a Svc,
    fold: Fold,
}

impl Publisher<'_> {
    async fn events(&mut self, events: &[Envelope]) {
        common::publish(self.svc, events).await;
        for e in events {
            self.fold.event(e);
        }
    }

    async fn decisions(&mut self, decisions: &[Decision]) {
        for d in decisions {
            self.svc
                .deps
                .producer
                .send(
                    &self.svc.topics.decisions,
                    &format!("{}/{}", d.tenant_id, d.user_id),
                    &d.encode_to_vec(),
                    &HeaderList::new(),
                )
                .await
                .unwrap();
            self.fold.decision(d);
        }
    }
}

/// What the service holds, read through its engine and its API.
#[derive(Debug, PartialEq)]
struct Seen {
    waves: BTreeMap<String, BTreeMap<String, StopState>>,
    demand: BTreeMap<String, f64>,
    on_hand: Option<f64>,
}

async fn seen(svc: &Svc, fold: &Fold) -> Seen {
    let store = &svc.deps.store;
    let mut waves = BTreeMap::new();
    for w in fold.waves().keys() {
        let stops = wave::load_wave(store, PARTITIONS, w).await.unwrap();
        waves.insert(
            w.clone(),
            stops.into_iter().map(|(id, s)| (id, s.state)).collect(),
        );
    }
    let mut demand = BTreeMap::new();
    for series in ["sku:sk", "cat:socks@north", "cat:socks@south"] {
        let units: f64 = forecasting::load_series(store, PARTITIONS, "shop", series)
            .await
            .unwrap()
            .values()
            .sum();
        demand.insert(series.to_string(), units);
    }
    let on_hand = forecasting::stock(store, PARTITIONS, "shop", "wh-1")
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.0 == SKU)
        .map(|s| s.1);
    Seen {
        waves,
        demand,
        on_hand,
    }
}

fn expected(fold: &Fold, stock: f64) -> Seen {
    let north = fold.demand.get("north").copied().unwrap_or(0.0);
    let south = fold.demand.get("south").copied().unwrap_or(0.0);
    Seen {
        waves: fold.waves(),
        demand: [
            ("sku:sk".to_string(), north + south),
            ("cat:socks@north".to_string(), north),
            ("cat:socks@south".to_string(), south),
        ]
        .into(),
        on_hand: Some(stock - fold.sold),
    }
}

/// Waits (at most 90 s) until the service holds what the events give,
/// then (at most 60 s more) until every wave's plan routes exactly its
/// active stops and holds its held ones.
async fn converges(svc: &Svc, fold: &Fold, stock: f64, what: &str) {
    let want = expected(fold, stock);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = seen(svc, fold).await;
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the service holds\n{got:#?}\nbut the events give\n{want:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (w, stops) in &want.waves {
        let of = |state| -> BTreeSet<String> {
            stops
                .iter()
                .filter(|(_, s)| **s == state)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let (active, held) = (of(StopState::Active), of(StopState::Held));
        loop {
            let plan = svc
                .client
                .clone()
                .get_plan(pb::GetPlanRequest {
                    tenant_id: String::new(),
                    wave_id: w.clone(),
                    compare_fresh: false,
                })
                .await
                .map(|p| p.into_inner());
            let planned = plan.as_ref().ok().map(|p| {
                let routed: BTreeSet<String> = p
                    .routes
                    .iter()
                    .flat_map(|r| r.stop_ids.iter().cloned())
                    .chain(p.unassigned.iter().cloned())
                    .collect();
                let held: BTreeSet<String> = p.held.iter().cloned().collect();
                (routed, held)
            });
            // A wave that never had a stop to route has no plan.
            if planned.as_ref() == Some(&(active.clone(), held.clone()))
                || (active.is_empty() && plan.is_err())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: plan of {w} is {planned:?}, want routed {active:?}, held {held:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Event times, a second apart.
struct Ticks(i64);

impl Ticks {
    fn next(&mut self) -> i64 {
        self.0 += 1_000;
        self.0
    }
}

async fn set_stock(svc: &Svc, on_hand: f64) {
    svc.client
        .clone()
        .set_stock(pb::SetStockRequest {
            tenant_id: "shop".into(),
            warehouse: "wh-1".into(),
            sku: SKU.into(),
            on_hand,
            on_order: 0.0,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_from_a_snapshot_or_emptied_is_rebuilt_by_the_running_consumer() {
    let (svc, prefix) = start("lg-behind").await;
    let mut redis = Redis::connect(&mesh_testkit::redis_url()).await;
    set_stock(&svc, STOCK).await;
    // One buyer per partition: card and paid, cash on delivery, card and
    // unpaid, cash on delivery and held by fraud. The erased buyer shares
    // partition 0.
    let users: Vec<String> = (0..PARTITIONS).map(|p| user_in(p, "buyer")).collect();
    let x = user_in(0, "erased");
    let mut t = Ticks(NOW);
    let mut p = Publisher {
        svc: &svc,
        fold: Fold::default(),
    };
    // Every phase has order events and decisions in every partition: a
    // partition notices its store went back with its next batch.
    let phase = async |p: &mut Publisher<'_>, t: &mut Ticks, n: u32, extra: Vec<Envelope>| {
        let mut events = Vec::new();
        let mut decisions = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let id = format!("{u}-p{n}");
            let qty = 1 + (i as u32 + n) % 3;
            let method = if i % 2 == 0 { "card" } else { "cod" };
            events.push(placed(u, i as i32, &id, qty, method, t.next()));
            if i == 0 {
                events.push(paid(u, &id, t.next()));
            }
            if i == 1 && n > 1 {
                // The previous phase's order goes back to the shelf.
                events.push(cancelled(
                    u,
                    &format!("{u}-p{}", n - 1),
                    "customer",
                    t.next(),
                ));
            }
            let action = if i == 3 {
                Action::Review
            } else {
                Action::Approve
            };
            decisions.push(decision(u, &id, action, t.next()));
        }
        events.extend(extra);
        p.events(&events).await;
        p.decisions(&decisions).await;
    };

    // Phase 1, then a snapshot.
    let x1 = format!("{x}-p1");
    let extra = vec![placed(&x, 0, &x1, 2, "cod", t.next())];
    phase(&mut p, &mut t, 1, extra).await;
    converges(&svc, &p.fold, STOCK, "phase 1").await;
    let snap = redis.snapshot(&prefix).await;
    assert!(snap.len() > 10, "{} keys in the snapshot", snap.len());

    // Phase 2 (x is erased after a second order and fraud's decision on the
    // first), then the store is restored from the snapshot while the
    // consumer runs.
    let x2 = format!("{x}-p2");
    p.decisions(&[decision(&x, &x1, Action::Approve, t.next())])
        .await;
    let extra = vec![placed(&x, 0, &x2, 1, "cod", t.next()), erased(&x, t.next())];
    phase(&mut p, &mut t, 2, extra).await;
    converges(&svc, &p.fold, STOCK, "phase 2").await;
    redis.restore(&prefix, &snap).await;

    // Phase 3: the consumer finds the store behind and re-reads phase 2 of
    // both topics; x's late payment changes nothing.
    let extra = vec![paid(&x, &x2, t.next())];
    phase(&mut p, &mut t, 3, extra).await;
    converges(&svc, &p.fold, STOCK, "phase 3, after the restore").await;

    // The store is emptied (the stock baseline with it: set again, while
    // nothing arrives); phase 4 makes the consumer re-read everything.
    assert!(redis.flush(&prefix).await > 10);
    set_stock(&svc, STOCK).await;
    phase(&mut p, &mut t, 4, Vec::new()).await;
    converges(&svc, &p.fold, STOCK, "phase 4, after the flush").await;
    svc.shutdown.cancel();
    let _ = svc.running.consumer.await;
}
