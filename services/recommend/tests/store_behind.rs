//! The store goes back while the recommend service runs (issue #17 item 1):
//! its Redis is flushed, or restored from an older snapshot, under both
//! consumers (events, and the alerts flags). Both consumers re-read what
//! the store lost, and the state read through the service's own readers
//! ends equal to an offline fold of every accepted event and alert: nothing
//! lost, nothing applied twice (sales, stars, clicks and carts are exact
//! counts; co-occurrence and popularity are float sums).
//!
//! Every user's events are on one topic (viewers on the user-events topic,
//! buyers on the order-events topic), so the fold does not depend on how
//! the consumer interleaves the two topics, and every phase publishes to
//! every partition of both event topics and of the alerts topic: a
//! consumer notices that the store went back at its next batch of that
//! partition.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use mesh_bus::headers::{HeaderList, CE_TYPE};
use mesh_bus::{Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_proto::churn::v1::ChurnAlert;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{
    AddToCart, Envelope, LineItem, OrderPlaced, ProductView, RemoveFromCart, ReviewSubmitted,
    UserErased,
};
use mesh_proto::fraud::v1::RiskAlert;
use mesh_recommend::feedback::{Attribution, FeedbackCounts};
use mesh_recommend::live::LiveConfig;
use mesh_recommend::rank::Source;
use mesh_recommend::types::ItemMeta;
use mesh_recommend_svc::alerts::{CHURN_ALERT_TYPE, RISK_ALERT_TYPE};
use mesh_recommend_svc::feedback::{Feedback, FeedbackConfig};
use mesh_recommend_svc::keys::{self, SCOPE};
use mesh_recommend_svc::live::{LiveReader, UserState};
use mesh_recommend_svc::{signals, Deps, RecommendConfig, Running};
use mesh_store::{erasure, MemoryStore, Op, PartitionBatch, RedisStore, Slot, StateStore};
use prost::Message;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "shop";
const PARTITIONS: i32 = 3;
const ITEMS: usize = 10;
/// How long the state may take to converge after a phase.
const CONVERGE: Duration = Duration::from_secs(90);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn member(user: &str) -> String {
    erasure::member(TENANT, user)
}

fn user_partition(user: &str) -> i32 {
    mesh_bus::partition::partition_for(&member(user), PARTITIONS)
}

/// The `k`-th user named `<base><n>` whose events land in partition `p`.
fn user_in(base: &str, p: i32, k: usize) -> String {
    (0..)
        .map(|n| format!("{base}{n}"))
        .filter(|u| user_partition(u) == p)
        .nth(k)
        .unwrap()
}

fn item(i: usize) -> String {
    format!("i{}", i % ITEMS)
}

fn category(sku: &str) -> String {
    format!("cat{}", sku.bytes().last().unwrap_or(0) % 3)
}

fn price(sku: &str) -> f64 {
    10.0 + (sku.bytes().last().unwrap_or(0) % 7) as f64
}

// ---------------------------------------------------------------- events

/// One accepted input of the service.
#[derive(Debug, Clone)]
enum Input {
    /// An event on the user-events topic.
    User(Envelope),
    /// An event on the order-events topic.
    Order(Envelope),
    /// An alert on the alerts topic about `user`.
    Alert {
        user: String,
        ce_type: &'static str,
        payload: Vec<u8>,
        /// The flag it sets: field and value.
        flag: Option<(&'static str, i64)>,
    },
}

struct Clock(i64);

impl Clock {
    fn tick(&mut self) -> i64 {
        self.0 += 1000;
        self.0
    }
}

fn envelope(user: &str, at: i64, body: Body) -> Envelope {
    Envelope {
        event_id: mesh_testkit::unique("e"),
        tenant_id: TENANT.into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "test".into(),
        context: None,
        body: Some(body),
    }
}

fn view(user: &str, sku: &str, at: i64, rec: Option<&str>) -> Envelope {
    envelope(
        user,
        at,
        Body::ProductView(ProductView {
            sku: sku.into(),
            category: category(sku),
            price: price(sku),
            recommendation_id: rec.unwrap_or_default().into(),
            ..Default::default()
        }),
    )
}

/// An attribution of a `Recommend` answer, as the click carries it.
fn attribution(id: &str, source: Source, slot: u32) -> String {
    Attribution {
        recommendation_id: id.into(),
        source,
        slot,
    }
    .encode()
}

fn churn_alert(user: &str, at: i64, arm: &str) -> Input {
    let a = ChurnAlert {
        tenant_id: TENANT.into(),
        user_id: user.into(),
        at_ms: at,
        arm: arm.into(),
        ..Default::default()
    };
    Input::Alert {
        user: user.into(),
        ce_type: CHURN_ALERT_TYPE,
        payload: a.encode_to_vec(),
        flag: (arm != "holdout").then_some((keys::FLAG_AT_RISK, at)),
    }
}

fn abuse_alert(user: &str, at: i64) -> Input {
    let a = RiskAlert {
        kind: "promotion_abuse".into(),
        tenant_id: TENANT.into(),
        user_id: user.into(),
        occurred_at_ms: at,
        ..Default::default()
    };
    Input::Alert {
        user: user.into(),
        ce_type: RISK_ALERT_TYPE,
        payload: a.encode_to_vec(),
        flag: Some((keys::FLAG_PROMO_ABUSE, at)),
    }
}

/// The user who is erased in phase 1 (partition 0, user-events only).
fn erased_user() -> String {
    user_in("gone", 0, 0)
}

/// The inputs of phase `k`: for every partition, two viewers (views, one
/// of them a click, a click again on an attribution counted before, a cart
/// change, a review) and a buyer (a two-line order), and alerts about
/// them (some flags set again every phase, some only in phase 0 or 1);
/// plus the erased user's activity (before its erasure in phase 0, the
/// erasure and ignored activity after it in phase 1 and later).
fn phase(k: usize, clock: &mut Clock) -> Vec<Input> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        for v in 0..2 {
            let user = user_in("viewer", p, v);
            let base = k * 3 + v * 5 + p as usize;
            for j in 0..3usize {
                let rec =
                    (j == 1).then(|| attribution(&format!("r{k}{p}{v}"), Source::Popularity, 1));
                out.push(Input::User(view(
                    &user,
                    &item(base + j),
                    clock.tick(),
                    rec.as_deref(),
                )));
            }
            // The same impression clicked again (phase k - 1's): counted once.
            if k > 0 {
                let again = attribution(&format!("r{}{p}{v}", k - 1), Source::Popularity, 1);
                out.push(Input::User(view(
                    &user,
                    &item(base),
                    clock.tick(),
                    Some(&again),
                )));
            }
            let sku = item(base + 7);
            out.push(Input::User(envelope(
                &user,
                clock.tick(),
                Body::AddToCart(AddToCart {
                    sku: sku.clone(),
                    category: category(&sku),
                    quantity: 2,
                    unit_price: price(&sku),
                    ..Default::default()
                }),
            )));
            if k % 2 == 1 {
                out.push(Input::User(envelope(
                    &user,
                    clock.tick(),
                    Body::RemoveFromCart(RemoveFromCart {
                        sku: item(base + 4),
                        quantity: 1,
                    }),
                )));
            }
            out.push(Input::User(envelope(
                &user,
                clock.tick(),
                Body::ReviewSubmitted(ReviewSubmitted {
                    sku: item(base + 1),
                    rating: (base % 5) as u32 + 1,
                    ..Default::default()
                }),
            )));
        }
        let buyer = user_in("buyer", p, 0);
        let line = |i: usize, qty: u32| {
            let sku = item(i);
            LineItem {
                category: category(&sku),
                unit_price: price(&sku),
                sku,
                quantity: qty,
                ..Default::default()
            }
        };
        let at = clock.tick();
        out.push(Input::Order(envelope(
            &buyer,
            at,
            Body::OrderPlaced(OrderPlaced {
                order_id: format!("o-{buyer}-{k}"),
                items: vec![line(k + p as usize, 1), line(k + p as usize + 3, 2)],
                ..Default::default()
            }),
        )));
        let at = clock.tick();
        out.push(churn_alert(&user_in("viewer", p, 0), at, "treatment"));
        out.push(churn_alert(&user_in("viewer", p, 1), at, "holdout"));
        out.push(abuse_alert(&buyer, at));
        // Flags no later alert refreshes: lost for good unless re-read.
        match k {
            0 => out.push(abuse_alert(&user_in("viewer", p, 1), at)),
            1 => out.push(churn_alert(&buyer, at, "treatment")),
            _ => {}
        }
    }
    let gone = erased_user();
    match k {
        0 => {
            for j in 0..3 {
                let rec = (j == 2).then(|| attribution("rgone", Source::Cooccurrence, 0));
                out.push(Input::User(view(
                    &gone,
                    &item(j + 2),
                    clock.tick(),
                    rec.as_deref(),
                )));
            }
            out.push(churn_alert(&gone, clock.tick(), "treatment"));
        }
        1 => {
            out.push(Input::User(envelope(
                &gone,
                clock.tick(),
                Body::UserErased(UserErased {
                    reason: "gdpr_request".into(),
                }),
            )));
            // Ignored: the user is erased.
            out.push(Input::User(view(&gone, &item(9), clock.tick(), None)));
            out.push(Input::User(view(
                &gone,
                &item(8),
                clock.tick(),
                Some(&attribution("rgone2", Source::Model, 1)),
            )));
            out.push(abuse_alert(&gone, clock.tick()));
        }
        _ => {
            out.push(Input::User(view(&gone, &item(1), clock.tick(), None)));
            out.push(churn_alert(&gone, clock.tick(), "treatment"));
        }
    }
    out
}

// ---------------------------------------------------------------- the fold

/// What the accepted inputs give, applied one by one in publish order to a
/// memory store with the same key layout, from the pure event → ops
/// functions of [`signals`].
struct Fold {
    store: StateStore,
    live: LiveConfig,
    histories: HashMap<String, Vec<keys::HistEntry>>,
    clicked: HashMap<String, Vec<String>>,
    erased: HashSet<String>,
    next: HashMap<i32, i64>,
    users: BTreeSet<String>,
    items: BTreeSet<String>,
    popularity: BTreeSet<String>,
}

impl Fold {
    fn new(live: LiveConfig) -> Self {
        Fold {
            store: StateStore::Memory(MemoryStore::new("fold")),
            live,
            histories: HashMap::new(),
            clicked: HashMap::new(),
            erased: HashSet::new(),
            next: HashMap::new(),
            users: BTreeSet::new(),
            items: BTreeSet::new(),
            popularity: BTreeSet::new(),
        }
    }

    async fn put(&mut self, partition: i32, ops: Vec<Op>) {
        let next = self.next.entry(partition).or_insert(0);
        let mut b = PartitionBatch::new("fold", partition);
        b.push(*next, ops);
        *next += 1;
        self.store.apply(SCOPE, &b).await.unwrap();
    }

    async fn add(&mut self, inputs: &[Input]) {
        for i in inputs {
            match i {
                Input::User(e) | Input::Order(e) => self.event(e).await,
                Input::Alert { user, flag, .. } => {
                    self.users.insert(user.clone());
                    let Some((field, at)) = flag else { continue };
                    if self.erased.contains(&member(user)) {
                        continue;
                    }
                    let op = Op::HMax {
                        key: keys::flags(TENANT, user),
                        field: field.to_string(),
                        value: *at,
                    };
                    self.put(user_partition(user), vec![op]).await;
                }
            }
        }
    }

    async fn event(&mut self, e: &Envelope) {
        let m = member(&e.user_id);
        let p = user_partition(&e.user_id);
        self.users.insert(e.user_id.clone());
        if self.erased.contains(&m) {
            return;
        }
        if matches!(e.body, Some(Body::UserErased(_))) {
            self.erased.insert(m.clone());
            self.histories.remove(&m);
            self.clicked.remove(&m);
            self.put(p, signals::erasure_ops(e)).await;
            return;
        }
        if !signals::is_relevant(e) {
            return;
        }
        let history = self.histories.entry(m.clone()).or_default();
        let mut routed = signals::routed_ops(e, history, &self.live);
        if let Some((_, ops)) = signals::click_ops(e, self.clicked.entry(m).or_default()) {
            routed.extend(ops);
        }
        for (home, op) in routed {
            let key = op.key().to_string();
            if key.starts_with("pop:") {
                self.popularity.insert(key.clone());
            }
            if let Some(item) = key.strip_prefix(&format!("item:{TENANT}/")) {
                self.items.insert(item.to_string());
            }
            let q = home.partition(&op, p, PARTITIONS);
            self.put(q, vec![op]).await;
        }
    }
}

// ---------------------------------------------------------------- the view

/// Everything the service's readers say about the test's users and items.
#[derive(Debug, Clone, PartialEq)]
struct View {
    users: BTreeMap<String, UserState>,
    /// Co-occurring items of each item, decayed to the read time.
    similar: BTreeMap<String, BTreeMap<String, f64>>,
    catalog: BTreeMap<String, ItemMeta>,
    popularity: BTreeMap<String, BTreeMap<String, f64>>,
    feedback: FeedbackCounts,
}

/// "Now" of the reads (seconds).
fn read_time(t0: i64) -> f64 {
    (t0 / 1000 + 3600) as f64
}

async fn view_of(store: &StateStore, fold: &Fold, live: &LiveConfig, now: f64) -> View {
    let reader = LiveReader {
        store: store.clone(),
        partitions: PARTITIONS,
        live: live.clone(),
    };
    let mut users = BTreeMap::new();
    for u in &fold.users {
        users.insert(u.clone(), reader.user_state(TENANT, u).await.unwrap());
    }
    let mut similar = BTreeMap::new();
    for i in &fold.items {
        let s = reader.similar(TENANT, i, 100, now).await.unwrap();
        similar.insert(i.clone(), s.into_iter().collect());
    }
    let ids: Vec<String> = fold.items.iter().cloned().collect();
    let catalog = reader
        .catalog(TENANT, &ids)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let mut popularity = BTreeMap::new();
    for key in &fold.popularity {
        let slot = Slot {
            scope: SCOPE,
            partition: keys::key_partition(key, PARTITIONS),
        };
        let top = store.ztop(slot, key, 1000).await.unwrap();
        popularity.insert(key.clone(), top.into_iter().collect());
    }
    let feedback = Feedback::new(store.clone(), PARTITIONS, FeedbackConfig::default())
        .counts(TENANT)
        .await
        .unwrap();
    View {
        users,
        similar,
        catalog,
        popularity,
        feedback,
    }
}

/// Where `got` differs from `want`: floats of sums compared to 1e-9
/// relative (the same terms added in another order), everything else
/// exactly.
fn differences(got: &View, want: &View) -> Vec<String> {
    fn floats(
        what: &str,
        got: &BTreeMap<String, BTreeMap<String, f64>>,
        want: &BTreeMap<String, BTreeMap<String, f64>>,
        out: &mut Vec<String>,
    ) {
        for k in got.keys().chain(want.keys()).collect::<BTreeSet<_>>() {
            let (g, w) = (got.get(k), want.get(k));
            let empty = BTreeMap::new();
            let (g, w) = (g.unwrap_or(&empty), w.unwrap_or(&empty));
            for m in g.keys().chain(w.keys()).collect::<BTreeSet<_>>() {
                let (a, b) = (g.get(m).copied(), w.get(m).copied());
                let close = match (a, b) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300),
                    _ => false,
                };
                if !close {
                    out.push(format!("{what} {k} {m}: got {a:?}, want {b:?}"));
                }
            }
        }
    }
    let mut out = Vec::new();
    for u in got
        .users
        .keys()
        .chain(want.users.keys())
        .collect::<BTreeSet<_>>()
    {
        let (g, w) = (got.users.get(u), want.users.get(u));
        if g != w {
            out.push(format!("user {u}: got {g:?}, want {w:?}"));
        }
    }
    for i in got
        .catalog
        .keys()
        .chain(want.catalog.keys())
        .collect::<BTreeSet<_>>()
    {
        let (g, w) = (got.catalog.get(i), want.catalog.get(i));
        if g != w {
            out.push(format!("catalog {i}: got {g:?}, want {w:?}"));
        }
    }
    floats("similar", &got.similar, &want.similar, &mut out);
    floats("popularity", &got.popularity, &want.popularity, &mut out);
    if got.feedback != want.feedback {
        out.push(format!(
            "feedback: got {:?}, want {:?}",
            got.feedback, want.feedback
        ));
    }
    out
}

// ---------------------------------------------------------------- Redis

/// Just enough of the Redis protocol for SCAN, DUMP, DEL and a MULTI of
/// RESTOREs (the test has no Redis client of its own).
mod resp {
    use std::future::Future;
    use std::pin::Pin;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Nil,
        Int(i64),
        Bytes(Vec<u8>),
        Status(String),
        Error(String),
        Array(Vec<Value>),
    }

    impl Value {
        pub fn bytes(self) -> Option<Vec<u8>> {
            match self {
                Value::Bytes(b) => Some(b),
                _ => None,
            }
        }
    }

    pub struct Conn {
        io: BufReader<TcpStream>,
    }

    impl Conn {
        /// `redis://[[user]:password@]host:port[/db]`.
        pub async fn connect(url: &str) -> Conn {
            let rest = url.strip_prefix("redis://").expect("a redis:// URL");
            let (auth, rest) = match rest.rsplit_once('@') {
                Some((a, r)) => (Some(a), r),
                None => (None, rest),
            };
            let (addr, db) = rest.split_once('/').unwrap_or((rest, ""));
            let mut c = Conn {
                io: BufReader::new(TcpStream::connect(addr).await.expect("redis connects")),
            };
            if let Some(a) = auth {
                let cmd: Vec<Vec<u8>> = match a.split_once(':') {
                    Some(("", pass)) => vec!["AUTH".into(), pass.into()],
                    Some((user, pass)) => vec!["AUTH".into(), user.into(), pass.into()],
                    None => vec!["AUTH".into(), a.into()],
                };
                c.ok(cmd).await;
            }
            if !db.is_empty() {
                c.ok(vec!["SELECT".into(), db.into()]).await;
            }
            c
        }

        async fn ok(&mut self, cmd: Vec<Vec<u8>>) {
            let v = self.cmd(cmd).await;
            assert!(!matches!(v, Value::Error(_)), "{v:?}");
        }

        pub async fn cmd(&mut self, cmd: Vec<Vec<u8>>) -> Value {
            self.pipeline(vec![cmd]).await.remove(0)
        }

        /// Sends `cmds` in one write and reads their replies in order.
        pub async fn pipeline(&mut self, cmds: Vec<Vec<Vec<u8>>>) -> Vec<Value> {
            let mut buf = Vec::new();
            for args in &cmds {
                buf.extend(format!("*{}\r\n", args.len()).bytes());
                for a in args {
                    buf.extend(format!("${}\r\n", a.len()).bytes());
                    buf.extend(a);
                    buf.extend(b"\r\n");
                }
            }
            self.io.get_mut().write_all(&buf).await.unwrap();
            let mut out = Vec::with_capacity(cmds.len());
            for _ in &cmds {
                out.push(read(&mut self.io).await);
            }
            out
        }
    }

    fn read<'a>(
        io: &'a mut BufReader<TcpStream>,
    ) -> Pin<Box<dyn Future<Output = Value> + Send + 'a>> {
        Box::pin(async move {
            let mut line = String::new();
            io.read_line(&mut line).await.unwrap();
            let line = line.trim_end_matches("\r\n");
            let (kind, rest) = line.split_at(1);
            match kind {
                "+" => Value::Status(rest.into()),
                "-" => Value::Error(rest.into()),
                ":" => Value::Int(rest.parse().unwrap()),
                "$" => {
                    let n: i64 = rest.parse().unwrap();
                    if n < 0 {
                        return Value::Nil;
                    }
                    let mut b = vec![0; n as usize + 2];
                    io.read_exact(&mut b).await.unwrap();
                    b.truncate(n as usize);
                    Value::Bytes(b)
                }
                "*" => {
                    let n: i64 = rest.parse().unwrap();
                    if n < 0 {
                        return Value::Nil;
                    }
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(read(io).await);
                    }
                    Value::Array(items)
                }
                other => panic!("unexpected reply {other}{rest}"),
            }
        })
    }
}

/// The test's keys in Redis, through SCAN, and ways to make the store go
/// back.
struct Redis {
    conn: resp::Conn,
    pattern: String,
}

type Dump = Vec<(Vec<u8>, Vec<u8>)>;

impl Redis {
    async fn connect(prefix: &str) -> Self {
        Redis {
            conn: resp::Conn::connect(&mesh_testkit::redis_url()).await,
            pattern: format!("{prefix}:*"),
        }
    }

    async fn keys(&mut self) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let reply = self
                .conn
                .cmd(vec![
                    b"SCAN".to_vec(),
                    cursor,
                    b"MATCH".to_vec(),
                    self.pattern.clone().into_bytes(),
                    b"COUNT".to_vec(),
                    b"1000".to_vec(),
                ])
                .await;
            let resp::Value::Array(mut parts) = reply else {
                panic!("SCAN: {reply:?}");
            };
            let page = parts.pop().unwrap();
            cursor = parts.pop().unwrap().bytes().unwrap();
            if let resp::Value::Array(page) = page {
                keys.extend(page.into_iter().filter_map(resp::Value::bytes));
            }
            if cursor == b"0" {
                return keys;
            }
        }
    }

    /// Every key under the prefix, serialized (DUMP).
    async fn dump(&mut self) -> Dump {
        let keys = self.keys().await;
        let cmds = keys
            .iter()
            .map(|k| vec![b"DUMP".to_vec(), k.clone()])
            .collect();
        let values = self.conn.pipeline(cmds).await;
        keys.into_iter()
            .zip(values)
            .filter_map(|(k, v)| v.bytes().map(|v| (k, v)))
            .collect()
    }

    /// Deletes every key under the prefix in one command: a store restored
    /// empty. Returns how many there were.
    async fn flush(&mut self) -> usize {
        let keys = self.keys().await;
        if keys.is_empty() {
            return 0;
        }
        let mut del = vec![b"DEL".to_vec()];
        del.extend(keys.iter().cloned());
        let n = self.conn.cmd(del).await;
        assert_eq!(n, resp::Value::Int(keys.len() as i64));
        keys.len()
    }

    /// Replaces every key under the prefix with `dump`, atomically (one
    /// MULTI): a store restored from an older snapshot.
    async fn restore(&mut self, dump: &Dump) {
        let keys = self.keys().await;
        let mut cmds = vec![vec![b"MULTI".to_vec()]];
        if !keys.is_empty() {
            let mut del = vec![b"DEL".to_vec()];
            del.extend(keys);
            cmds.push(del);
        }
        for (k, v) in dump {
            cmds.push(vec![
                b"RESTORE".to_vec(),
                k.clone(),
                b"0".to_vec(),
                v.clone(),
                b"REPLACE".to_vec(),
            ]);
        }
        cmds.push(vec![b"EXEC".to_vec()]);
        let replies = self.conn.pipeline(cmds).await;
        let Some(resp::Value::Array(done)) = replies.last() else {
            panic!("restore: {replies:?}");
        };
        assert!(
            done.iter().all(|v| !matches!(v, resp::Value::Error(_))),
            "restore: {done:?}"
        );
    }
}

// ---------------------------------------------------------------- service

struct Svc {
    running: Running,
    topics: TopicNames,
    producer: Producer,
    store: StateStore,
    live: LiveConfig,
    name: String,
    shutdown: CancellationToken,
}

async fn start(name: &str) -> Svc {
    let name = mesh_testkit::unique(name);
    let brokers = mesh_testkit::kafka_brokers();
    let topics = TopicNames::with_prefix(&name);
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    mesh_bus::ensure_topics(&brokers, &topics, spec, Duration::from_secs(10))
        .await
        .unwrap();
    mesh_bus::ensure_output_topics(&brokers, &topics, spec, Duration::from_secs(10))
        .await
        .unwrap();
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &name)
            .await
            .unwrap(),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, &name)).unwrap();
    let deps = Deps {
        brokers,
        topics: topics.clone(),
        partitions: PARTITIONS,
        store: store.clone(),
        producer: producer.clone(),
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        peers: Default::default(),
        clock: mesh_runtime::clock::system(),
    };
    let mut cfg = RecommendConfig::from_env(&mesh_runtime::config::Env::default()).unwrap();
    cfg.grpc_addr = "127.0.0.1:0".parse().unwrap();
    cfg.group = name.clone();
    let shutdown = CancellationToken::new();
    let running = mesh_recommend_svc::start(&cfg, &deps, shutdown.clone())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.assigned.partitions() == 0 || running.flags_assigned.partitions() == 0 {
        assert!(
            Instant::now() < deadline,
            "no partitions assigned to both consumers in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Svc {
        running,
        topics,
        producer,
        store,
        live: cfg.live.clone(),
        name,
        shutdown,
    }
}

impl Svc {
    async fn publish(&self, inputs: &[Input]) {
        for i in inputs {
            let (topic, key, payload, headers) = match i {
                Input::User(e) => (
                    &self.topics.user_events,
                    e.user_key(),
                    e.encode_to_vec(),
                    HeaderList::new(),
                ),
                Input::Order(e) => (
                    &self.topics.order_events,
                    e.user_key(),
                    e.encode_to_vec(),
                    HeaderList::new(),
                ),
                Input::Alert {
                    user,
                    ce_type,
                    payload,
                    ..
                } => (
                    &self.topics.alerts,
                    member(user),
                    payload.clone(),
                    HeaderList::new().with(CE_TYPE, ce_type),
                ),
            };
            self.producer
                .send(topic, &key, &payload, &headers)
                .await
                .unwrap();
        }
    }

    /// Waits until the service's state equals the fold's, and says how
    /// long it took; panics with the differences otherwise.
    async fn converge(&self, fold: &Fold, now: f64, what: &str) -> Duration {
        let started = Instant::now();
        let want = view_of(&fold.store, fold, &self.live, now).await;
        loop {
            let got = view_of(&self.store, fold, &self.live, now).await;
            let diff = differences(&got, &want);
            if diff.is_empty() {
                return started.elapsed();
            }
            if started.elapsed() > CONVERGE {
                panic!(
                    "{what}: the state did not converge to the fold in {CONVERGE:?}; {} \
                     differences:\n{}",
                    diff.len(),
                    diff.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.running.consumer.await;
        let _ = self.running.flags_consumer.await;
        let _ = self.running.server.await;
    }
}

/// The fold's view is not trivial: every part of the state is exercised.
async fn check_coverage(fold: &Fold, live: &LiveConfig, now: f64) {
    let v = view_of(&fold.store, fold, live, now).await;
    let gone = erased_user();
    assert!(v.users[&gone].erased);
    assert!(v
        .users
        .values()
        .any(|u| u.at_risk_ms.is_some() && !u.in_cart.is_empty()));
    assert!(v.users.values().any(|u| u.promo_abuse_ms.is_some()));
    assert!(v.users.values().any(|u| !u.purchased.is_empty()));
    assert!(v.catalog.values().any(|m| m.sales > 0.0 && m.rating > 0.0));
    assert!(v.similar.values().filter(|s| !s.is_empty()).count() >= ITEMS / 2);
    assert!(v.feedback.total().clicks > 0);
}

async fn after(svc: &Svc, fold: &Fold, now: f64, what: &str) {
    let took = svc.converge(fold, now, what).await;
    println!("{what}: converged in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_empty_is_rebuilt_without_losing_or_doubling_anything() {
    let svc = start("rec-behind-empty").await;
    let mut redis = Redis::connect(&svc.name).await;
    let t0 = now_ms();
    let now = read_time(t0);
    let mut clock = Clock(t0);
    let mut fold = Fold::new(svc.live.clone());

    let p0 = phase(0, &mut clock);
    svc.publish(&p0).await;
    fold.add(&p0).await;
    after(&svc, &fold, now, "phase 0").await;

    // Restored empty while both consumers run; then more inputs.
    let n = redis.flush().await;
    assert!(n > 0);
    println!("flushed {n} keys");
    let p1 = phase(1, &mut clock);
    svc.publish(&p1).await;
    fold.add(&p1).await;
    after(&svc, &fold, now, "flushed after phase 0, then phase 1").await;

    // And once more, after the erasure.
    redis.flush().await;
    let p2 = phase(2, &mut clock);
    svc.publish(&p2).await;
    fold.add(&p2).await;
    after(&svc, &fold, now, "flushed after phase 1, then phase 2").await;
    check_coverage(&fold, &svc.live, now).await;

    // Nothing more arrives late.
    tokio::time::sleep(Duration::from_secs(2)).await;
    after(&svc, &fold, now, "2 s later").await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_from_an_older_snapshot_catches_up_without_losing_or_doubling_anything() {
    let svc = start("rec-behind-snap").await;
    let mut redis = Redis::connect(&svc.name).await;
    let t0 = now_ms();
    let now = read_time(t0);
    let mut clock = Clock(t0);
    let mut fold = Fold::new(svc.live.clone());

    let p0 = phase(0, &mut clock);
    svc.publish(&p0).await;
    fold.add(&p0).await;
    after(&svc, &fold, now, "phase 0").await;
    let snapshot = redis.dump().await;
    assert!(!snapshot.is_empty());
    println!("snapshot of {} keys", snapshot.len());

    // Phase 1 (with the erasure) is applied, then lost: the store comes
    // back from the snapshot of phase 0 while both consumers run.
    let p1 = phase(1, &mut clock);
    svc.publish(&p1).await;
    fold.add(&p1).await;
    after(&svc, &fold, now, "phase 1").await;
    redis.restore(&snapshot).await;
    let p2 = phase(2, &mut clock);
    svc.publish(&p2).await;
    fold.add(&p2).await;
    after(&svc, &fold, now, "restored to phase 0, then phase 2").await;
    check_coverage(&fold, &svc.live, now).await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    after(&svc, &fold, now, "2 s later").await;
    svc.stop().await;
}
