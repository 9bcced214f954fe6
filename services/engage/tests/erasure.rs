//! Erasure of a user against the real broker and Redis: the consumer's
//! handler is fed records directly (a log kept in the test, offsets per
//! topic and partition), offers and responses go through the engine behind
//! `ChooseOffer` and `RecordResponse`, and what it published is read back
//! from the engagement topic.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::headers::{HeaderList, CE_TYPE};
use mesh_bus::{Handler, Producer, ProducerConfig, Record, TopicNames, TopicSpec};
use mesh_engage_svc::handler::EngageHandler;
use mesh_engage_svc::{keys, Engage, Error, Settings, SCOPE};
use mesh_proto::churn::v1::RetentionAction;
use mesh_proto::engage::v1 as pb;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced, ProductView, UserErased};
use mesh_proto::profile::v1::{Stage, StageTransition};
use mesh_store::{erasure, RedisStore, Slot, StateStore};
use prost::Message;

const TENANT: &str = "shop";
const PARTITIONS: i32 = 2;
const CAMPAIGN: &str = "spring";
/// The engine's clock: every offer is made at this time.
const T0: i64 = 1_800_000_000_000;

fn partition_of(user: &str) -> i32 {
    mesh_bus::partition::partition_for(&erasure::member(TENANT, user), PARTITIONS)
}

fn user_slot(user: &str) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition: partition_of(user),
    }
}

/// The user and offer of an `OfferSent` or `OfferResponse` (same tags).
#[derive(Clone, PartialEq, Message)]
struct Named {
    #[prost(string, tag = "3")]
    user_id: String,
    #[prost(string, tag = "4")]
    offer_id: String,
}

struct Env {
    engage: Arc<Engage>,
    topics: TopicNames,
    brokers: String,
    /// Every record of the consumed topics, in the order produced.
    log: Vec<Record>,
    next: HashMap<(String, i32), i64>,
}

impl Env {
    async fn new(name: &str) -> Self {
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
        let engage = Arc::new(Engage {
            store,
            producer: Producer::new(ProducerConfig::new(&brokers, &name)).unwrap(),
            topic: topics.engagement.clone(),
            partitions: PARTITIONS,
            peers: Default::default(),
            settings: Settings {
                retention_offers: vec!["coupon".into(), "bundle".into()],
                exploration: 0.5,
            },
            clock: Arc::new(|| T0),
            bandit_lock: tokio::sync::Mutex::new(()),
        });
        Env {
            engage,
            topics,
            brokers,
            log: Vec::new(),
            next: HashMap::new(),
        }
    }

    fn handler(&self) -> EngageHandler {
        EngageHandler {
            engage: self.engage.clone(),
            alerts_topic: self.topics.alerts.clone(),
            lifecycle_topic: self.topics.lifecycle.clone(),
            market_topic: self.topics.market_prices.clone(),
            dead_letter_topic: self.topics.dead_letter.clone(),
            group: "test".into(),
        }
    }

    fn push(&mut self, topic: String, partition: i32, payload: Vec<u8>, headers: HeaderList) {
        let offset = self.next.entry((topic.clone(), partition)).or_insert(0);
        self.log.push(Record {
            topic,
            partition,
            offset: *offset,
            key: None,
            payload,
            headers,
            timestamp_ms: None,
        });
        *offset += 1;
    }

    fn event(&mut self, orders: bool, user: &str, at: i64, body: Body) {
        let e = Envelope {
            event_id: format!("{user}-{at}"),
            tenant_id: TENANT.into(),
            user_id: user.into(),
            occurred_at_ms: at,
            source: "test".into(),
            context: None,
            body: Some(body),
        };
        let topic = if orders {
            self.topics.order_events.clone()
        } else {
            self.topics.user_events.clone()
        };
        self.push(
            topic,
            partition_of(user),
            e.encode_to_vec(),
            HeaderList::new(),
        );
    }

    fn view(&mut self, user: &str, sku: &str, at: i64) {
        let v = ProductView {
            sku: sku.into(),
            category: "c".into(),
            price: 10.0,
            ..Default::default()
        };
        self.event(false, user, at, Body::ProductView(v));
    }

    fn order(&mut self, user: &str, sku: &str, at: i64) {
        let o = OrderPlaced {
            order_id: format!("o-{user}-{at}"),
            items: vec![LineItem {
                sku: sku.into(),
                quantity: 1,
                unit_price: 10.0,
                category: "c".into(),
                ..Default::default()
            }],
            total: 10.0,
            ..Default::default()
        };
        self.event(true, user, at, Body::OrderPlaced(o));
    }

    fn stage(&mut self, user: &str, n: u32) {
        let t = StageTransition {
            transition_id: format!("{TENANT}/{user}/{n}"),
            tenant_id: TENANT.into(),
            user_id: user.into(),
            new_stage: Stage::Active as i32,
            ..Default::default()
        };
        let topic = self.topics.lifecycle.clone();
        self.push(
            topic,
            partition_of(user),
            t.encode_to_vec(),
            HeaderList::new(),
        );
    }

    fn retention_action(&mut self, user: &str, n: u32) {
        let a = RetentionAction {
            tenant_id: TENANT.into(),
            user_id: user.into(),
            action: "coupon".into(),
            arm: "treatment".into(),
            alert_id: format!("{TENANT}/{user}/{n}"),
            at_ms: T0,
            ..Default::default()
        };
        let h = HeaderList::new().with(CE_TYPE, "mesh.churn.v1.RetentionAction");
        let topic = self.topics.alerts.clone();
        self.push(topic, 0, a.encode_to_vec(), h);
    }

    /// A `user_erased` event goes to both event topics, as ingest does it.
    fn erase(&mut self, user: &str, at: i64) {
        for orders in [false, true] {
            let body = Body::UserErased(UserErased {
                reason: "gdpr_request".into(),
            });
            self.event(orders, user, at, body);
        }
    }

    /// Hands records `from..` to `handler`, each topic-partition in order,
    /// in batches of `batch`: stages first, then alerts, then events (the
    /// order a consumer could see them in).
    async fn deliver(&self, handler: &EngageHandler, from: usize, batch: usize) {
        let rank = |t: &str| {
            [&self.topics.lifecycle, &self.topics.alerts]
                .iter()
                .position(|x| x.as_str() == t)
                .unwrap_or(2)
        };
        let mut runs: BTreeMap<(usize, String, i32), Vec<Record>> = BTreeMap::new();
        for r in &self.log[from..] {
            runs.entry((rank(&r.topic), r.topic.clone(), r.partition))
                .or_default()
                .push(r.clone());
        }
        for run in runs.values() {
            for chunk in run.chunks(batch) {
                handler.handle(chunk).await.unwrap();
            }
        }
    }

    async fn choose(&self, user: &str) -> Result<pb::OfferDecision, Error> {
        self.engage.choose_offer(TENANT, CAMPAIGN, user, None).await
    }

    async fn respond(&self, offer_id: &str, kind: &str) -> Result<bool, Error> {
        self.engage
            .record_response(&pb::RecordResponseRequest {
                tenant_id: TENANT.into(),
                offer_id: offer_id.into(),
                kind: kind.into(),
                revenue: if kind == "conversion" { 5.0 } else { 0.0 },
            })
            .await
    }

    /// Everything the store holds about one user: offer records, stage,
    /// offer ids, and the index entries of `offer_ids` in any shard.
    async fn stored(&self, user: &str, offer_ids: &[String]) -> Stored {
        let s = &self.engage.store;
        let slot = user_slot(user);
        let hash = |key: String| async move {
            s.hgetall(slot, &key)
                .await
                .unwrap()
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        };
        let mut index = BTreeMap::new();
        for id in offer_ids {
            for p in 0..PARTITIONS {
                let h = s
                    .hgetall(keys::shard(p), &keys::offer(TENANT, id))
                    .await
                    .unwrap();
                if !h.is_empty() {
                    index.insert((id.clone(), p), h.into_iter().collect());
                }
            }
        }
        Stored {
            offers: hash(keys::offers(TENANT, user)).await,
            stage: hash(keys::stage(TENANT, user)).await,
            offer_ids: hash(keys::offer_ids(TENANT, user)).await,
            index,
        }
    }

    /// Views counted for `sku`, over every shard.
    async fn views(&self, sku: &str) -> i64 {
        let mut n = 0;
        for p in 0..PARTITIONS {
            let h = self
                .engage
                .store
                .hgetall(keys::shard(p), &keys::observations(TENANT, sku))
                .await
                .unwrap();
            n += h
                .iter()
                .filter(|(f, _)| f.contains("|v"))
                .map(|(_, v)| v.parse::<i64>().unwrap())
                .sum::<i64>();
        }
        n
    }

    /// The campaign report without its time.
    async fn report(&self, campaign: &str) -> pb::CampaignReportResponse {
        let mut r = self.engage.report(TENANT, campaign).await.unwrap();
        r.at_ms = 0;
        r
    }

    /// (user, offer id) of every offer and response published.
    async fn published(&self) -> Vec<(String, String)> {
        let (brokers, topic) = (self.brokers.clone(), self.topics.engagement.clone());
        tokio::task::spawn_blocking(move || {
            mesh_bus::log::read_log(
                &brokers,
                &[topic],
                Duration::from_secs(10),
                "engage-erasure-test",
                |b| Named::decode(b).ok().map(|n| (n.user_id, n.offer_id)),
                &|_| {},
            )
        })
        .await
        .unwrap()
        .unwrap()
    }
}

#[derive(Debug, PartialEq)]
struct Stored {
    offers: BTreeMap<String, String>,
    stage: BTreeMap<String, String>,
    offer_ids: BTreeMap<String, String>,
    /// (offer id, shard) -> index entry.
    index: BTreeMap<(String, i32), BTreeMap<String, String>>,
}

impl Stored {
    fn is_empty(&self) -> bool {
        self.offers.is_empty()
            && self.stage.is_empty()
            && self.offer_ids.is_empty()
            && self.index.is_empty()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_stays_gone_and_a_replay_does_not_bring_them_back() {
    let mut env = Env::new("engage-erase").await;
    // Two users of the same partition: the erasure shares its slot with ub.
    let ua = "ua";
    let ub = ["ub", "uc", "ud", "ue", "uf", "ug"]
        .into_iter()
        .find(|u| partition_of(u) == partition_of(ua))
        .unwrap();
    env.engage
        .create_campaign(pb::Campaign {
            tenant_id: TENANT.into(),
            campaign_id: CAMPAIGN.into(),
            offers: vec!["coupon".into(), "bundle".into()],
            control_share: 0.01,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = env.handler();

    // Stages, offers (RPC and retention), views and orders of both users.
    for u in [ua, ub] {
        env.stage(u, 1);
        env.retention_action(u, 1);
    }
    env.deliver(&consumer, 0, 2).await;
    let a_offer = env.choose(ua).await.unwrap();
    let b_offer = env.choose(ub).await.unwrap();
    assert_eq!(
        (a_offer.arm.as_str(), b_offer.arm.as_str()),
        ("treatment", "treatment")
    );
    let mark = env.log.len();
    for (u, sku) in [(ua, "sa"), (ub, "sb")] {
        env.view(u, sku, T0 + 1_000);
        env.order(u, sku, T0 + 2_000);
    }
    env.deliver(&consumer, mark, 2).await;
    assert!(env.respond(&a_offer.offer_id, "click").await.unwrap());
    assert!(env.respond(&b_offer.offer_id, "click").await.unwrap());

    let a_ids = vec![a_offer.offer_id.clone(), format!("{TENANT}/{ua}/1/offer")];
    let b_ids = vec![b_offer.offer_id.clone(), format!("{TENANT}/{ub}/1/offer")];
    let a_before = env.stored(ua, &a_ids).await;
    let b_before = env.stored(ub, &b_ids).await;
    for s in [&a_before, &b_before] {
        assert_eq!(s.offers.len(), 2, "{s:?}");
        assert_eq!(s.offer_ids.len(), 2, "{s:?}");
        assert_eq!(s.index.len(), 2, "{s:?}");
        assert!(!s.stage.is_empty(), "{s:?}");
    }
    let a_rec: mesh_engage_svc::engine::OfferRecord =
        serde_json::from_str(&a_before.offers[CAMPAIGN]).unwrap();
    assert!(a_rec.converted, "{a_rec:?}");
    let report = env.report(CAMPAIGN).await;
    let retention = env.report("retention").await;
    assert_eq!(report.treatment.as_ref().unwrap().participants, 2);
    assert_eq!(report.treatment.as_ref().unwrap().converted, 2);
    assert_eq!((env.views("sa").await, env.views("sb").await), (1, 1));
    let published = env.published().await;
    let about_a = |p: &[(String, String)]| p.iter().filter(|(u, _)| u == ua).count();
    // Two offers and two conversions, and a click.
    assert_eq!(about_a(&published), 5, "{published:?}");

    // The erasure, on both topics.
    let mark = env.log.len();
    env.erase(ua, T0 + 10_000);
    env.deliver(&consumer, mark, 2).await;
    let a_after = env.stored(ua, &a_ids).await;
    assert!(a_after.is_empty(), "{a_after:?}");
    assert_eq!(env.stored(ub, &b_ids).await, b_before);
    let erased = env
        .engage
        .store
        .hgetall(user_slot(ua), erasure::KEY)
        .await
        .unwrap();
    assert_eq!(
        erased.get(&erasure::member(TENANT, ua)).map(String::as_str),
        Some("1800000010000")
    );
    // The RPCs answer as for a user never seen: the offer is unknown, and
    // the user is refused an offer (an unknown user would be enrolled).
    let err = env
        .respond(&a_offer.offer_id, "conversion")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let unknown = env
        .respond("no-such-offer", "conversion")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string().replace(&a_offer.offer_id, "no-such-offer"),
        unknown.to_string()
    );
    let err = env.choose(ua).await.unwrap_err();
    assert!(matches!(err, Error::Erased(_)), "{err}");
    assert_eq!(
        mesh_engage_svc::error::to_status(err).code(),
        tonic::Code::NotFound
    );
    // Campaign counters are sums over users: they stay, so the reports
    // are the same as before.
    assert_eq!(env.report(CAMPAIGN).await, report);
    assert_eq!(env.report("retention").await, retention);

    // Late records of ua (a stage, a retention action, a view of a new
    // item, an order) change nothing, not even the item counts.
    let mark = env.log.len();
    env.stage(ua, 2);
    env.retention_action(ua, 2);
    env.view(ua, "sz", T0 + 20_000);
    env.order(ua, "sz", T0 + 20_001);
    env.deliver(&consumer, mark, 1).await;
    assert!(env.stored(ua, &a_ids).await.is_empty());
    let late_offer = format!("{TENANT}/{ua}/2/offer");
    assert!(env.stored(ua, &[late_offer]).await.is_empty());
    assert_eq!(env.views("sz").await, 0);
    assert_eq!(env.report(CAMPAIGN).await, report);
    assert_eq!(env.report("retention").await, retention);
    assert_eq!(env.stored(ub, &b_ids).await, b_before);
    let published = env.published().await;
    assert_eq!(about_a(&published), 5, "published after the erasure");

    // Replay: the scope cleared except what replay keeps and the erasure
    // hash, then every record again from offset 0, in whole batches (the
    // erasure then shares a batch with ua's earlier events).
    let mut keep = keys::REPLAY_KEEPS.to_vec();
    keep.push(erasure::KEY);
    env.engage
        .store
        .clear_scope_keeping(SCOPE, &keep)
        .await
        .unwrap();
    let replayed = env.handler();
    env.deliver(&replayed, 0, usize::MAX).await;
    assert!(env.stored(ua, &a_ids).await.is_empty());
    assert_eq!(env.stored(ub, &b_ids).await, b_before);
    assert_eq!((env.views("sa").await, env.views("sb").await), (0, 1));
    assert_eq!(env.views("sz").await, 0);
    assert_eq!(env.report(CAMPAIGN).await, report);
    assert_eq!(env.report("retention").await, retention);
    let published = env.published().await;
    assert_eq!(about_a(&published), 5, "published by the replay");
}
