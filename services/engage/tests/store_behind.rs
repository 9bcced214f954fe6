//! A store that went back while the consumer keeps running, against the
//! real broker and Redis: every key under the test's prefix deleted (a
//! store restored empty), or every key restored from a snapshot taken one
//! phase earlier (DUMP, then DEL and RESTORE). The consumer re-reads what
//! the store forgot on all five topics (stage transitions, retention
//! actions, market prices, user and order events): stages, retention
//! offers and their attributed orders, the campaign report, price
//! observations and market prices equal a fold of every accepted record
//! (nothing lost, nothing counted twice); an erasure the store forgot is
//! applied again before the user's later order, whose conversion is never
//! published, and the erased user's offer index stays swept.
//!
//! Records of one user on different topics are not ordered by Kafka, and
//! a re-read is triggered per partition by its next record: after the
//! store went back the test publishes stage transitions, retention actions
//! and market prices first and waits until the offers and stages are back,
//! then the events that use them, as the original run did.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::headers::{HeaderList, CE_TYPE};
use mesh_bus::{Handler, Producer, ProducerConfig, Record, TopicNames, TopicSpec};
use mesh_engage::campaign::{assign_group, Group};
use mesh_engage_svc::handler::EngageHandler;
use mesh_engage_svc::observe::price_field;
use mesh_engage_svc::{keys, pricing, Engage, EngageConfig, SCOPE};
use mesh_proto::churn::v1::RetentionAction;
use mesh_proto::engage::v1 as pb;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced, ProductView, UserErased};
use mesh_proto::profile::v1::{Stage, StageTransition};
use mesh_runtime::config::Env;
use mesh_runtime::Deps;
use mesh_store::{erasure, PartitionBatch, RedisStore, StateStore};
use prost::Message;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "shop";
const PARTITIONS: i32 = 2;
const RETENTION: &str = "retention";
/// The engine's clock: every offer is made at this time.
const T0: i64 = 1_800_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// The n-th name `<base><partition>-<i>` whose `<tenant>/<name>` is in
/// `partition`: users (events, stages and alerts are keyed by them) and
/// skus (market prices are).
fn name_in(base: &str, partition: i32, n: usize) -> String {
    (0..)
        .map(|i| format!("{base}{partition}-{i}"))
        .filter(|x| {
            mesh_bus::partition::partition_for(&erasure::member(TENANT, x), PARTITIONS) == partition
        })
        .nth(n)
        .expect("a name of the partition")
}

fn arm_of(user: &str) -> &'static str {
    match assign_group(RETENTION, user, 0.1).unwrap() {
        Group::Treatment => "treatment",
        Group::Control => "control",
    }
}

/// The retention campaign's offers. The bandit picks one at random: an
/// offer the store forgot is picked again, maybe another, so the state
/// names none of them ([`TREATED`]) and the report's per-offer counts are
/// summed.
const OFFERS: [&str; 2] = ["coupon", "bundle"];
/// What [`State`] says instead of the offer a treated user got.
const TREATED: &str = "one of OFFERS";

/// A user's retention offer as the engine keeps it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Offer {
    arm: String,
    offer_id: String,
    /// [`TREATED`], or "" for the control arm.
    offer: String,
    orders: u32,
    revenue: f64,
    converted: bool,
}

/// One arm of the campaign report.
#[derive(Debug, Default, Clone, PartialEq)]
struct Arm {
    participants: u64,
    converted: u64,
    orders: u64,
    revenue: f64,
}

/// The service's state, or what a fold of the accepted records gives.
#[derive(Debug, Default, Clone, PartialEq)]
struct State {
    /// User → stage name.
    stages: BTreeMap<String, String>,
    /// User → retention offer.
    offers: BTreeMap<String, Offer>,
    /// User → whether the offer's index entry and the user's list of them
    /// are stored.
    indexed: BTreeMap<String, bool>,
    /// "treatment" / "control" → the report's counts.
    arms: BTreeMap<String, Arm>,
    /// Offers sent and converted users who got one (the report's maps,
    /// summed over offers).
    sent: u64,
    converted: u64,
    /// Sku → observation field → count, over every shard.
    observations: BTreeMap<String, BTreeMap<String, i64>>,
    /// Sku → price `GetPrice` answers (the latest seen; no pricer runs).
    prices: BTreeMap<String, f64>,
    /// Sku → source → `<price>|<observed ms>`.
    market: BTreeMap<String, BTreeMap<String, String>>,
}

impl State {
    /// What stage transitions, retention actions and market prices alone
    /// give, for users not erased: which offer each user got (not what it
    /// earned since), stages, market prices.
    fn inputs(&self, erased: &BTreeSet<String>) -> String {
        let offers: BTreeMap<&String, (&str, &str, &str)> = self
            .offers
            .iter()
            .filter(|(u, _)| !erased.contains(*u))
            .map(|(u, o)| (u, (o.arm.as_str(), o.offer_id.as_str(), o.offer.as_str())))
            .collect();
        let stages: BTreeMap<&String, &String> = self
            .stages
            .iter()
            .filter(|(u, _)| !erased.contains(*u))
            .collect();
        format!("{offers:?} {stages:?} {:?}", self.market)
    }
}

struct Test {
    engage: Arc<Engage>,
    deps: Deps,
    prefix: String,
    shutdown: CancellationToken,
    consumer: tokio::task::JoinHandle<()>,
    seq: i64,
    erased: BTreeSet<String>,
    /// Users with a retention action, skus viewed or bought, skus priced.
    users: BTreeSet<String>,
    skus: BTreeSet<String>,
    market_skus: BTreeSet<String>,
    expected: State,
    /// (user, order id) of every conversion that must be published, and of
    /// those that must not (an erased user's).
    responses: BTreeSet<(String, String)>,
    never: BTreeSet<(String, String)>,
}

impl Test {
    async fn start(name: &str) -> Test {
        let (deps, cfg, prefix) = setup(name).await;
        let engage = mesh_engage_svc::engine(&cfg, &deps);
        let shutdown = CancellationToken::new();
        // The engage consumer as `mesh_engage_svc::start_consumer` builds
        // it, but without the idle audit of quiet partitions: the audit
        // re-reads every partition the store lost within 2 s, in no order
        // across topics (Kafka orders none, in production neither), and a
        // phase-2 order re-read before its user's stage or offer would be
        // folded with no stage or no attribution. Here each partition's
        // re-read is started by its next record, in the order the test
        // publishes (see the module doc); the audit has its own test in
        // crates/mesh-bus/tests/store_behind.rs.
        let (mut cc, handler) = mesh_engage_svc::consumer(&cfg, &deps, engage.clone());
        cc.store_audit = Duration::from_secs(24 * 3600);
        let (_, consumer) =
            mesh_runtime::service::start_consumer("engage", cc, handler, shutdown.clone());
        let mut expected = State::default();
        for arm in ["treatment", "control"] {
            expected.arms.insert(arm.into(), Arm::default());
        }
        Test {
            engage,
            deps,
            prefix,
            shutdown,
            consumer,
            seq: 0,
            erased: BTreeSet::new(),
            users: BTreeSet::new(),
            skus: BTreeSet::new(),
            market_skus: BTreeSet::new(),
            expected,
            responses: BTreeSet::new(),
            never: BTreeSet::new(),
        }
    }
}

/// Topics, store (under a prefix of the test's own) and settings of one
/// engage service; its clock stands at [`T0`].
async fn setup(name: &str) -> (Deps, EngageConfig, String) {
    let prefix = mesh_testkit::unique(name);
    let brokers = mesh_testkit::kafka_brokers();
    let topics = TopicNames::with_prefix(&prefix);
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    mesh_bus::ensure_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .unwrap();
    mesh_bus::ensure_output_topics(&brokers, &topics, spec, Duration::from_secs(20))
        .await
        .unwrap();
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let deps = Deps {
        brokers: brokers.clone(),
        topics,
        partitions: PARTITIONS,
        store,
        producer: Producer::new(ProducerConfig::new(&brokers, &prefix)).unwrap(),
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        peers: Default::default(),
        clock: Arc::new(mesh_runtime::ManualClock::new(T0)),
    };
    let group = format!("{prefix}-engage");
    let cfg = EngageConfig::from_env(&Env::from_pairs([
        ("MESH_ENGAGE_GROUP", group.as_str()),
        ("MESH_ENGAGE_RETENTION_OFFERS", "coupon,bundle"),
    ]))
    .unwrap();
    (deps, cfg, prefix)
}

impl Test {
    async fn send(&self, topic: &str, key: &str, payload: Vec<u8>, headers: HeaderList) {
        self.deps
            .producer
            .send(topic, key, &payload, &headers)
            .await
            .unwrap();
    }

    /// A stage transition of `user` on the lifecycle topic.
    async fn stage(&mut self, user: &str, stage: Stage) {
        let t = StageTransition {
            transition_id: format!("{TENANT}/{user}/1"),
            tenant_id: TENANT.into(),
            user_id: user.into(),
            new_stage: stage as i32,
            seq: 1,
            ..Default::default()
        };
        let topic = self.deps.topics.lifecycle.clone();
        let key = erasure::member(TENANT, user);
        self.send(&topic, &key, t.encode_to_vec(), HeaderList::new())
            .await;
        if !self.erased.contains(user) {
            let name = stage.as_str_name().to_string();
            self.expected.stages.insert(user.into(), name);
        }
    }

    /// Churn's retention action for `user`, on the alerts topic.
    async fn alert(&mut self, user: &str) {
        let alert_id = format!("{TENANT}/{user}/1");
        let a = RetentionAction {
            tenant_id: TENANT.into(),
            user_id: user.into(),
            action: "coupon".into(),
            arm: "treatment".into(),
            alert_id: alert_id.clone(),
            at_ms: T0,
            ..Default::default()
        };
        let h = HeaderList::new().with(CE_TYPE, "mesh.churn.v1.RetentionAction");
        let topic = self.deps.topics.alerts.clone();
        self.send(&topic, &erasure::member(TENANT, user), a.encode_to_vec(), h)
            .await;
        self.users.insert(user.into());
        if self.erased.contains(user) {
            return;
        }
        let arm = arm_of(user);
        let offer = if arm == "treatment" { TREATED } else { "" };
        self.expected.arms.get_mut(arm).unwrap().participants += 1;
        if !offer.is_empty() {
            self.expected.sent += 1;
        }
        self.expected.offers.insert(
            user.into(),
            Offer {
                arm: arm.into(),
                offer_id: format!("{alert_id}/offer"),
                offer: offer.into(),
                ..Default::default()
            },
        );
        self.expected.indexed.insert(user.into(), true);
    }

    /// A market price of `sku` from `source`.
    async fn market(&mut self, sku: &str, source: &str, price: f64) {
        self.seq += 1;
        let m = pb::MarketPrice {
            tenant_id: TENANT.into(),
            sku: sku.into(),
            source: source.into(),
            price,
            observed_at_ms: T0 + self.seq,
        };
        let topic = self.deps.topics.market_prices.clone();
        self.send(
            &topic,
            &erasure::member(TENANT, sku),
            m.encode_to_vec(),
            HeaderList::new(),
        )
        .await;
        self.market_skus.insert(sku.into());
        self.expected
            .market
            .entry(sku.into())
            .or_default()
            .insert(source.into(), format!("{}|{}", price, T0 + self.seq));
    }

    async fn event(&mut self, orders: bool, user: &str, body: Body) -> i64 {
        self.seq += 1;
        let at = T0 + self.seq * 1_000;
        let e = Envelope {
            event_id: format!("{user}-{}", self.seq),
            tenant_id: TENANT.into(),
            user_id: user.into(),
            occurred_at_ms: at,
            source: "test".into(),
            context: None,
            body: Some(body),
        };
        let topics = &self.deps.topics;
        let topic = if orders {
            topics.order_events.clone()
        } else {
            topics.user_events.clone()
        };
        self.send(&topic, &e.user_key(), e.encode_to_vec(), HeaderList::new())
            .await;
        at
    }

    fn observe(&mut self, sku: &str, field: String, n: i64) {
        *self
            .expected
            .observations
            .entry(sku.into())
            .or_default()
            .entry(field)
            .or_default() += n;
    }

    async fn view(&mut self, user: &str, sku: &str, price: f64) {
        let v = ProductView {
            sku: sku.into(),
            category: "c".into(),
            price,
            ..Default::default()
        };
        let at = self.event(false, user, Body::ProductView(v)).await;
        self.skus.insert(sku.into());
        if self.erased.contains(user) {
            return;
        }
        let stage = self.expected.stages.get(user).cloned();
        self.observe(
            sku,
            price_field(at.div_euclid(DAY_MS), price, 'v', stage.as_deref()),
            1,
        );
        self.expected.prices.insert(sku.into(), price);
    }

    async fn order(&mut self, user: &str, sku: &str, price: f64, quantity: u32) {
        let total = price * f64::from(quantity);
        let order_id = format!("o-{user}-{}", self.seq + 1);
        let o = OrderPlaced {
            order_id: order_id.clone(),
            items: vec![LineItem {
                sku: sku.into(),
                quantity,
                unit_price: price,
                category: "c".into(),
                ..Default::default()
            }],
            total,
            ..Default::default()
        };
        let at = self.event(true, user, Body::OrderPlaced(o)).await;
        self.skus.insert(sku.into());
        if self.erased.contains(user) {
            self.never.insert((user.into(), order_id));
            return;
        }
        let stage = self.expected.stages.get(user).cloned();
        self.observe(
            sku,
            price_field(at.div_euclid(DAY_MS), price, 'u', stage.as_deref()),
            i64::from(quantity),
        );
        // Every offer is made at T0 with a 7-day window.
        if let Some(offer) = self.expected.offers.get_mut(user) {
            let arm = self.expected.arms.get_mut(&offer.arm).unwrap();
            arm.orders += 1;
            arm.revenue += total;
            if !offer.converted {
                arm.converted += 1;
                if !offer.offer.is_empty() {
                    self.expected.converted += 1;
                }
            }
            offer.converted = true;
            offer.orders += 1;
            offer.revenue += total;
            self.responses.insert((user.into(), order_id));
        }
    }

    /// `user_erased` on both event topics, as ingest publishes it.
    async fn erase(&mut self, user: &str) {
        for orders in [false, true] {
            let body = Body::UserErased(UserErased {
                reason: "gdpr_request".into(),
            });
            self.event(orders, user, body).await;
        }
        self.erased.insert(user.into());
        self.expected.stages.remove(user);
        self.expected.offers.remove(user);
        if let Some(i) = self.expected.indexed.get_mut(user) {
            *i = false;
        }
    }

    /// The service's state, read through the engine (the report, offer
    /// records, prices) and, for what no API returns, from its store.
    async fn state(&self) -> State {
        let e = &self.engage;
        let s = &e.store;
        let mut out = State::default();
        for user in &self.users {
            let slot = keys::slot(&erasure::member(TENANT, user), PARTITIONS);
            let stage = s.hgetall(slot, &keys::stage(TENANT, user)).await.unwrap();
            if let Some(name) = stage.get("s") {
                out.stages.insert(user.clone(), name.clone());
            }
            let offer_id = format!("{TENANT}/{user}/1/offer");
            // The index and the list are written and swept in one atomic
            // step each, but read here with two commands: a sweep or an
            // offer between the reads shows half an index for an instant.
            // Only a half index that stays is a fault.
            let mut tries = 0;
            let indexed = loop {
                let index = s
                    .hgetall(slot, &keys::offer(TENANT, &offer_id))
                    .await
                    .unwrap();
                let list = s
                    .hgetall(slot, &keys::offer_ids(TENANT, user))
                    .await
                    .unwrap();
                let indexed = !index.is_empty() && list.contains_key(&offer_id);
                if indexed || (index.is_empty() && list.is_empty()) {
                    break indexed;
                }
                tries += 1;
                assert!(tries < 40, "{user}: half an index: {index:?} {list:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            out.indexed.insert(user.clone(), indexed);
            if let Some(r) = e.offer_record(TENANT, user, RETENTION).await.unwrap() {
                assert!(
                    r.offer.is_empty() || OFFERS.contains(&r.offer.as_str()),
                    "{r:?}"
                );
                let offer = Offer {
                    arm: r.arm,
                    offer_id: r.offer_id,
                    offer: if r.offer.is_empty() { "" } else { TREATED }.into(),
                    orders: r.orders,
                    revenue: r.revenue,
                    converted: r.converted,
                };
                out.offers.insert(user.clone(), offer);
            }
        }
        // The retention campaign is made on the first action; a store that
        // went back empty has none until the actions are read again.
        if let Ok(r) = e.report(TENANT, RETENTION).await {
            for (name, a) in [("treatment", r.treatment), ("control", r.control)] {
                let a = a.unwrap_or_default();
                let arm = Arm {
                    participants: a.participants,
                    converted: a.converted,
                    orders: a.orders,
                    revenue: a.revenue,
                };
                out.arms.insert(name.into(), arm);
            }
            let offered = |m: &std::collections::HashMap<String, u64>| {
                assert!(m.keys().all(|o| OFFERS.contains(&o.as_str())), "{m:?}");
                m.values().sum()
            };
            out.sent = offered(&r.offers_sent);
            out.converted = offered(&r.offers_converted);
        }
        for sku in &self.skus {
            let mut fields: BTreeMap<String, i64> = BTreeMap::new();
            for p in 0..PARTITIONS {
                let h = s
                    .hgetall(keys::shard(p), &keys::observations(TENANT, sku))
                    .await
                    .unwrap();
                for (f, n) in h {
                    *fields.entry(f).or_default() += n.parse::<i64>().unwrap();
                }
            }
            if !fields.is_empty() {
                out.observations.insert(sku.clone(), fields);
            }
            if let Ok(x) = pricing::explain(e, TENANT, sku).await {
                out.prices.insert(sku.clone(), x.quote.unwrap().price);
            }
        }
        for sku in &self.market_skus {
            let slot = keys::slot(&erasure::member(TENANT, sku), PARTITIONS);
            let h = s.hgetall(slot, &keys::market(TENANT, sku)).await.unwrap();
            if !h.is_empty() {
                out.market.insert(sku.clone(), h.into_iter().collect());
            }
        }
        out
    }

    /// Waits until the stage transitions, retention actions and market
    /// prices published so far are applied (offers made, stages and
    /// market prices kept), for users not erased.
    async fn settle_inputs(&self, what: &str) {
        let want = self.expected.inputs(&self.erased);
        let mut last = None;
        for _ in 0..600 {
            let got = self.state().await.inputs(&self.erased);
            if got == want {
                return;
            }
            last = Some(got);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: inputs not applied in 60 s:\n got {last:?}\nwant {want:?}");
    }

    /// Waits until the state equals the fold, then checks it stays so.
    async fn settle(&self, what: &str) {
        let mut last = State::default();
        for _ in 0..600 {
            last = self.state().await;
            if last == self.expected {
                tokio::time::sleep(Duration::from_secs(2)).await;
                assert_eq!(self.state().await, self.expected, "{what}: moved on");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(last, self.expected, "{what}: not reached in 60 s");
    }

    /// The conversions published (read back from the engagement topic)
    /// are those of the fold: none of an erased user's later orders.
    async fn check_responses(&self) {
        let (brokers, topic) = (
            self.deps.brokers.clone(),
            self.deps.topics.engagement.clone(),
        );
        let published: BTreeSet<(String, String)> = tokio::task::spawn_blocking(move || {
            mesh_bus::log::read_log(
                &brokers,
                &[topic],
                Duration::from_secs(20),
                "engage-store-behind-test",
                // `OfferSent` shares the first tags; it has no order id.
                |b| {
                    pb::OfferResponse::decode(b)
                        .ok()
                        .filter(|r| r.kind == "conversion" && !r.order_id.is_empty())
                        .map(|r| (r.user_id, r.order_id))
                },
                &|_| {},
            )
        })
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .collect();
        let leaked: Vec<_> = self.never.intersection(&published).collect();
        assert!(
            leaked.is_empty(),
            "published for an erased user: {leaked:?}"
        );
        assert_eq!(published, self.responses);
    }

    /// A stage, a retention action and (per partition) a market price for
    /// each of `users`.
    async fn inputs(&mut self, users: &[String], phase: usize) {
        for (i, u) in users.iter().enumerate() {
            let stage = [Stage::Active, Stage::AtRisk][i % 2];
            self.stage(u, stage).await;
            self.alert(u).await;
        }
        for p in 0..PARTITIONS {
            let sku = name_in("m", p, 0);
            self.market(&sku, "rival", 10.0 + phase as f64).await;
            self.market(&sku, &format!("feed{phase}"), 20.5).await;
        }
    }

    /// A view and an order of `users`, of an item per phase.
    async fn shop(&mut self, users: &[String], phase: usize) {
        let sku = format!("sku-{phase}");
        let price = 10.0 + phase as f64;
        for u in users {
            self.view(u, &sku, price).await;
            self.order(u, &sku, price, 1 + phase as u32).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.consumer.await;
    }
}

/// The test's own connection to the Redis under the store.
async fn redis() -> redis::aio::MultiplexedConnection {
    mesh_testkit::redis_connection(&mesh_testkit::redis_url()).await
}

/// Every key under `prefix`.
async fn keys_under(c: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await
            .unwrap();
        keys.extend(page);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Deletes every key under `prefix`: the store restored empty.
async fn delete_all(prefix: &str) {
    let mut c = redis().await;
    let keys = keys_under(&mut c, prefix).await;
    assert!(!keys.is_empty(), "nothing stored under {prefix}");
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// Every key under `prefix` with its `DUMP`.
async fn snapshot(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut c = redis().await;
    let mut out = Vec::new();
    for k in keys_under(&mut c, prefix).await {
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        out.extend(dump.map(|d| (k, d)));
    }
    assert!(!out.is_empty(), "nothing stored under {prefix}");
    out
}

/// Deletes every key under `prefix` and restores `dumps`: the store
/// restored from an older snapshot.
async fn restore(prefix: &str, dumps: &[(String, Vec<u8>)]) {
    delete_all(prefix).await;
    let mut c = redis().await;
    for (k, d) in dumps {
        let _: () = redis::cmd("RESTORE")
            .arg(k)
            .arg(0)
            .arg(d.as_slice())
            .arg("REPLACE")
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

/// Users of both partitions, new in `phase`.
fn fresh(phase: usize) -> Vec<String> {
    (0..PARTITIONS).map(|p| name_in("u", p, phase)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_empty_is_rebuilt_from_the_log_once() {
    let mut t = Test::start("engage-behind-empty").await;
    // Erased in phase 1; it has a stage and an offer, no order.
    let gone = name_in("gone", 0, 0);
    let first = fresh(1);
    let mut both = vec![gone.clone()];
    both.extend(first.iter().cloned());
    t.inputs(&both, 1).await;
    t.settle_inputs("phase 1").await;
    t.shop(&first, 1).await;
    t.erase(&gone).await;
    t.settle("phase 1").await;

    delete_all(&t.prefix).await;
    let second = fresh(2);
    t.inputs(&second, 2).await;
    t.settle_inputs("after the flush").await;
    // The erased user's order comes first on its partition: its offer is
    // back (the actions were read again), its erasure not yet, and nothing
    // may be published for it.
    t.order(&gone, "sku-late", 5.0, 1).await;
    t.view(&gone, "sku-late", 5.0).await;
    let mut everyone = first.clone();
    everyone.extend(second.iter().cloned());
    t.shop(&everyone, 2).await;
    t.settle("after the flush").await;
    t.check_responses().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_from_an_older_snapshot_catches_up_once() {
    let mut t = Test::start("engage-behind-snapshot").await;
    // Erased in phase 2, after the snapshot.
    let gone = name_in("gone", 0, 0);
    let first = fresh(1);
    let mut both = vec![gone.clone()];
    both.extend(first.iter().cloned());
    t.inputs(&both, 1).await;
    t.settle_inputs("phase 1").await;
    t.shop(&first, 1).await;
    t.settle("phase 1").await;
    let dumps = snapshot(&t.prefix).await;

    let second = fresh(2);
    t.inputs(&second, 2).await;
    t.settle_inputs("phase 2").await;
    let mut everyone = first.clone();
    everyone.extend(second.iter().cloned());
    t.shop(&everyone, 2).await;
    t.erase(&gone).await;
    t.settle("phase 2").await;

    restore(&t.prefix, &dumps).await;
    let third = fresh(3);
    t.inputs(&third, 3).await;
    t.settle_inputs("after the restore").await;
    t.order(&gone, "sku-late", 5.0, 1).await;
    t.view(&gone, "sku-late", 5.0).await;
    everyone.extend(third.iter().cloned());
    t.shop(&everyone, 3).await;
    t.settle("after the restore").await;
    t.check_responses().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_the_store_forgot_is_done_by_the_partitions_next_batch() {
    let (deps, cfg, _) = setup("engage-behind-sweep").await;
    let engage = mesh_engage_svc::engine(&cfg, &deps);
    let handler = EngageHandler {
        engage: engage.clone(),
        alerts_topic: deps.topics.alerts.clone(),
        lifecycle_topic: deps.topics.lifecycle.clone(),
        market_topic: deps.topics.market_prices.clone(),
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: "test".into(),
    };
    let (gone, other) = (name_in("gone", 1, 0), name_in("u", 1, 0));
    let slot = keys::shard(1);
    engage
        .create_campaign(pb::Campaign {
            tenant_id: TENANT.into(),
            campaign_id: "spring".into(),
            offers: OFFERS.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let offer_id = engage
        .choose_offer(TENANT, "spring", &gone, None)
        .await
        .unwrap()
        .offer_id;
    let index = || async {
        let s = &engage.store;
        let entry = s
            .hgetall(slot, &keys::offer(TENANT, &offer_id))
            .await
            .unwrap();
        let list = s
            .hgetall(slot, &keys::offer_ids(TENANT, &gone))
            .await
            .unwrap();
        (entry.is_empty(), list.is_empty())
    };
    assert_eq!(index().await, (false, false));
    // The erasure's step as the consumer applies it, and not the sweep
    // after it: a store restored from a snapshot taken in between (or a
    // crash there). The consumer resumes after the erasure.
    let topic = deps.topics.user_events.clone();
    let mut b = PartitionBatch::new(&topic, 1);
    b.push(0, keys::erasure_ops(TENANT, &gone, T0));
    engage.store.apply(SCOPE, &b).await.unwrap();
    assert_eq!(index().await, (false, false));
    // The partition's next batch, about someone else, sweeps.
    let view = Envelope {
        event_id: "v1".into(),
        tenant_id: TENANT.into(),
        user_id: other.clone(),
        occurred_at_ms: T0,
        body: Some(Body::ProductView(ProductView {
            sku: "s".into(),
            price: 3.0,
            ..Default::default()
        })),
        ..Default::default()
    };
    let record = Record {
        topic: topic.clone(),
        partition: 1,
        offset: 1,
        key: None,
        payload: view.encode_to_vec(),
        headers: HeaderList::new(),
        timestamp_ms: None,
    };
    handler.handle(std::slice::from_ref(&record)).await.unwrap();
    assert_eq!(index().await, (true, true));
    let pending = engage.store.hgetall(slot, keys::SWEEPS).await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    // Nothing else moved: the erasure stands, the view counted once.
    assert!(engage.is_erased(TENANT, &gone).await.unwrap());
    handler.handle(&[record]).await.unwrap();
    let obs = engage
        .store
        .hgetall(slot, &keys::observations(TENANT, "s"))
        .await
        .unwrap();
    assert_eq!(obs.values().collect::<Vec<_>>(), ["1"]);
}
