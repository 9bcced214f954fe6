//! Erasure of a user against the real Redis: the consumer's handlers are
//! fed records directly (a log kept in the test, offsets per topic and
//! partition) and the answers come from the engine behind the RPCs.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mesh_bus::headers::{HeaderList, CE_TYPE};
use mesh_bus::{Handler, Producer, ProducerConfig, Record};
use mesh_proto::churn::v1::ChurnAlert;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{AddToCart, Envelope, LineItem, OrderPlaced, ProductView, UserErased};
use mesh_recommend::feedback::Attribution;
use mesh_recommend::live::LiveConfig;
use mesh_recommend::rank::Source;
use mesh_recommend::ModelSpec;
use mesh_recommend_svc::alerts::{AlertsHandler, CHURN_ALERT_TYPE};
use mesh_recommend_svc::engine::{Engine, Query};
use mesh_recommend_svc::handler::RecommendHandler;
use mesh_recommend_svc::keys::{self, SCOPE};
use mesh_recommend_svc::live::LiveReader;
use mesh_recommend_svc::{model, ModelHandle};
use mesh_store::{erasure, RedisStore, Slot, StateStore};
use prost::Message;

const TENANT: &str = "shop";
const PARTITIONS: i32 = 2;
const EVENTS: &str = "user_events";
const ORDERS: &str = "order_events";
const ALERTS: &str = "alerts";
const T0: i64 = 1_800_000_000_000;
/// "Now" of the reads, seconds: shortly after the events.
const NOW: f64 = (T0 / 1000 + 600) as f64;

/// The records of the test's topics, in the order they were produced.
#[derive(Default)]
struct Log {
    records: Vec<Record>,
    next: HashMap<(String, i32), i64>,
}

impl Log {
    fn push(&mut self, topic: &str, partition: i32, payload: Vec<u8>, headers: HeaderList) {
        let offset = self.next.entry((topic.into(), partition)).or_insert(0);
        self.records.push(Record {
            topic: topic.into(),
            partition,
            offset: *offset,
            key: None,
            payload,
            headers,
            timestamp_ms: None,
        });
        *offset += 1;
    }

    fn event(&mut self, topic: &str, e: &Envelope) {
        let p = user_partition(&e.user_id);
        self.push(topic, p, e.encode_to_vec(), HeaderList::new());
    }

    /// A `user_erased` event goes to both event topics, as ingest does it.
    fn erase(&mut self, user: &str, at: i64) {
        let e = envelope(
            user,
            at,
            Body::UserErased(UserErased {
                reason: "gdpr_request".into(),
            }),
        );
        self.event(EVENTS, &e);
        self.event(ORDERS, &e);
    }

    fn churn_alert(&mut self, user: &str, at: i64) {
        let a = ChurnAlert {
            tenant_id: TENANT.into(),
            user_id: user.into(),
            at_ms: at,
            arm: "treatment".into(),
            ..Default::default()
        };
        let h = HeaderList::new().with(CE_TYPE, CHURN_ALERT_TYPE);
        self.push(ALERTS, 0, a.encode_to_vec(), h);
    }

    fn len(&self) -> usize {
        self.records.len()
    }
}

fn user_partition(user: &str) -> i32 {
    mesh_bus::partition::partition_for(&erasure::member(TENANT, user), PARTITIONS)
}

fn envelope(user: &str, at: i64, body: Body) -> Envelope {
    Envelope {
        event_id: format!("{user}-{at}"),
        tenant_id: TENANT.into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: "test".into(),
        context: None,
        body: Some(body),
    }
}

fn view(user: &str, sku: &str, at: i64) -> Envelope {
    envelope(
        user,
        at,
        Body::ProductView(ProductView {
            sku: sku.into(),
            category: "c".into(),
            price: 10.0,
            ..Default::default()
        }),
    )
}

/// A view that is a click on a recommendation.
fn click(user: &str, sku: &str, at: i64) -> Envelope {
    let mut e = view(user, sku, at);
    if let Some(Body::ProductView(v)) = &mut e.body {
        v.recommendation_id = Attribution {
            recommendation_id: format!("r{at}"),
            source: Source::Popularity,
            slot: 0,
        }
        .encode();
    }
    e
}

fn cart(user: &str, sku: &str, at: i64) -> Envelope {
    envelope(
        user,
        at,
        Body::AddToCart(AddToCart {
            sku: sku.into(),
            category: "c".into(),
            quantity: 1,
            unit_price: 10.0,
            ..Default::default()
        }),
    )
}

fn order(user: &str, sku: &str, at: i64) -> Envelope {
    envelope(
        user,
        at,
        Body::OrderPlaced(OrderPlaced {
            order_id: format!("o-{user}-{at}"),
            items: vec![LineItem {
                sku: sku.into(),
                quantity: 1,
                unit_price: 10.0,
                category: "c".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    )
}

/// The activity of users `ua` and `ub` (and two others the model learns
/// from), on both event topics, plus a churn alert about each of them.
fn activity(log: &mut Log) -> Vec<Envelope> {
    let mut events = Vec::new();
    for (u, items) in [
        ("ua", ["a", "b", "c"]),
        ("ub", ["a", "d", "e"]),
        ("uc", ["b", "c", "d"]),
        ("ud", ["a", "c", "e"]),
    ] {
        for (k, i) in items.iter().enumerate() {
            let at = T0 + k as i64 * 1000;
            let e = if k == 1 {
                click(u, i, at)
            } else {
                view(u, i, at)
            };
            log.event(EVENTS, &e);
            events.push(e);
        }
        let c = cart(u, "f", T0 + 5_000);
        log.event(EVENTS, &c);
        let o = order(u, items[0], T0 + 6_000);
        log.event(ORDERS, &o);
        events.extend([c, o]);
    }
    log.churn_alert("ua", T0 + 7_000);
    log.churn_alert("ub", T0 + 7_000);
    events
}

struct Consumers {
    events: RecommendHandler,
    alerts: AlertsHandler,
}

impl Consumers {
    fn new(store: &StateStore) -> Self {
        // Nothing here is undecodable: the producer never sends.
        let producer = Producer::new(ProducerConfig::new("127.0.0.1:1", "test")).unwrap();
        Consumers {
            events: RecommendHandler::new(
                store.clone(),
                producer,
                "dlq".into(),
                "g".into(),
                LiveConfig::default(),
                PARTITIONS,
            ),
            alerts: AlertsHandler {
                store: store.clone(),
                partitions: PARTITIONS,
            },
        }
    }

    /// Hands `records` to the handlers, each topic-partition in order, in
    /// batches of `batch` records.
    async fn deliver(&self, records: &[Record], batch: usize) {
        let mut runs: BTreeMap<(String, i32), Vec<Record>> = BTreeMap::new();
        for r in records {
            runs.entry((r.topic.clone(), r.partition))
                .or_default()
                .push(r.clone());
        }
        for ((topic, _), run) in runs {
            for chunk in run.chunks(batch) {
                if topic == ALERTS {
                    self.alerts.handle(chunk).await.unwrap();
                } else {
                    self.events.handle(chunk).await.unwrap();
                }
            }
        }
    }
}

/// Everything the store holds about one user, as plain values.
#[derive(Debug, PartialEq)]
struct Stored {
    history: Vec<String>,
    bought: BTreeMap<String, String>,
    cart: BTreeMap<String, String>,
    flags: BTreeMap<String, String>,
    clicked: Vec<String>,
    /// Score of the user in the slot's `users` index.
    indexed: Option<f64>,
}

impl Stored {
    fn is_empty(&self) -> bool {
        self.history.is_empty()
            && self.bought.is_empty()
            && self.cart.is_empty()
            && self.flags.is_empty()
            && self.clicked.is_empty()
            && self.indexed.is_none()
    }
}

async fn stored(store: &StateStore, user: &str) -> Stored {
    let slot = Slot {
        scope: SCOPE,
        partition: user_partition(user),
    };
    let hash = |key: String| async move {
        store
            .hgetall(slot, &key)
            .await
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>()
    };
    let member = erasure::member(TENANT, user);
    Stored {
        history: store
            .lrange(slot, &keys::history(TENANT, user), 100)
            .await
            .unwrap(),
        bought: hash(keys::bought(TENANT, user)).await,
        cart: hash(keys::cart(TENANT, user)).await,
        flags: hash(keys::flags(TENANT, user)).await,
        clicked: store
            .lrange(slot, &keys::clicked(TENANT, user), 100)
            .await
            .unwrap(),
        indexed: store
            .ztop(slot, keys::USERS, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|(m, _)| *m == member)
            .map(|(_, s)| s),
    }
}

/// Whether an item left any trace in the catalog, co-occurrence or
/// global popularity.
async fn item_seen(store: &StateStore, item: &str) -> bool {
    let home = Slot {
        scope: SCOPE,
        partition: keys::item_partition(TENANT, item, PARTITIONS),
    };
    let live = LiveConfig::default();
    let pop = keys::popularity(
        TENANT,
        &mesh_recommend::live::Scope::Global,
        mesh_recommend::live::Horizon::Long,
        live.popularity_decay().epoch(NOW),
    );
    let pop_slot = Slot {
        scope: SCOPE,
        partition: keys::key_partition(&pop, PARTITIONS),
    };
    !store
        .hgetall(home, &keys::item(TENANT, item))
        .await
        .unwrap()
        .is_empty()
        || !store
            .ztop(
                home,
                &keys::cooc(TENANT, item, live.cooc_decay().epoch(NOW)),
                10,
            )
            .await
            .unwrap()
            .is_empty()
        || store
            .ztop(pop_slot, &pop, 1000)
            .await
            .unwrap()
            .iter()
            .any(|(m, _)| m == item)
}

/// What `Recommend` answers, without the fresh recommendation id.
async fn answer(engine: &Engine, user: &str) -> (Vec<(String, Source)>, bool, &'static str) {
    let q = Query {
        tenant: TENANT.into(),
        user: user.into(),
        n: 10,
        context: Default::default(),
        recently_shown: Default::default(),
    };
    let a = engine.recommend(&q, NOW).await.unwrap();
    let items = a.items.into_iter().map(|r| (r.item, r.source)).collect();
    (items, a.cold_start, a.user_features)
}

async fn redis(name: &str) -> StateStore {
    let prefix = mesh_testkit::unique(name);
    StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_stays_gone_and_a_replay_does_not_bring_them_back() {
    let store = redis("rec-erase").await;
    let mut log = Log::default();
    let events = activity(&mut log);
    let consumers = Consumers::new(&store);
    consumers.deliver(&log.records, 2).await;

    // A model that learned ua's history (per-user state held in memory).
    let spec = ModelSpec::Als(mesh_recommend::models::AlsParams {
        dims: 4,
        iterations: 5,
        alpha: 10.0,
        reg: 0.1,
    });
    let artifact =
        model::train_from_interactions(&model::interactions_from_events(&events), &spec, 7, "v1")
            .unwrap();
    assert!(artifact.knows_user("ua"));
    let live = LiveReader {
        store: store.clone(),
        partitions: PARTITIONS,
        live: LiveConfig::default(),
    };
    let engine = Engine::new(live.clone(), Arc::new(ModelHandle::fixed(artifact)));

    let a_before = stored(&store, "ua").await;
    let b_before = stored(&store, "ub").await;
    assert!(
        !a_before.history.is_empty()
            && !a_before.bought.is_empty()
            && !a_before.cart.is_empty()
            && !a_before.flags.is_empty()
            && !a_before.clicked.is_empty()
            && a_before.indexed.is_some(),
        "{a_before:?}"
    );
    assert!(!b_before.flags.is_empty() && !b_before.clicked.is_empty());
    let (items, cold, _) = answer(&engine, "ua").await;
    assert!(!cold);
    assert!(items.iter().any(|(_, s)| *s == Source::Model), "{items:?}");
    let b_answer = answer(&engine, "ub").await;

    // The erasure, on both topics.
    let mark = log.len();
    log.erase("ua", T0 + 10_000);
    consumers.deliver(&log.records[mark..], 2).await;
    assert!(stored(&store, "ua").await.is_empty());
    assert_eq!(stored(&store, "ub").await, b_before);
    let erased_at = store
        .hgetall(
            Slot {
                scope: SCOPE,
                partition: user_partition("ua"),
            },
            erasure::KEY,
        )
        .await
        .unwrap();
    assert_eq!(
        erased_at
            .get(&erasure::member(TENANT, "ua"))
            .map(String::as_str),
        Some("1800000010000")
    );
    // The read RPC answers as for a user it never saw, though the model
    // still holds ua's factors.
    let state = live.user_state(TENANT, "ua").await.unwrap();
    assert!(state.erased && state.history.is_empty());
    let unknown = answer(&engine, "never-seen").await;
    assert!(unknown.1);
    assert_eq!(answer(&engine, "ua").await, unknown);
    assert_eq!(answer(&engine, "ub").await, b_answer);

    // Late events of ua (a view of a new item, a cart, an order, a churn
    // alert) change nothing, not even the anonymous counts in other slots.
    let mark = log.len();
    log.event(EVENTS, &view("ua", "z", T0 + 20_000));
    log.event(EVENTS, &cart("ua", "z", T0 + 20_001));
    log.event(ORDERS, &order("ua", "z", T0 + 20_002));
    log.churn_alert("ua", T0 + 20_003);
    consumers.deliver(&log.records[mark..], 1).await;
    assert!(stored(&store, "ua").await.is_empty());
    assert!(
        !item_seen(&store, "z").await,
        "an erased user's event counted"
    );
    assert_eq!(answer(&engine, "ua").await, unknown);
    assert_eq!(stored(&store, "ub").await, b_before);

    // Replay: the scope cleared except what replay keeps and the erasure
    // hash, then every record again from offset 0, in whole-partition
    // batches (the erasure then shares a batch with ua's earlier events).
    let mut keep = keys::REPLAY_KEEPS.to_vec();
    keep.push(erasure::KEY);
    store.clear_scope_keeping(SCOPE, &keep).await.unwrap();
    let replayed = Consumers::new(&store);
    replayed.deliver(&log.records, usize::MAX).await;
    assert!(stored(&store, "ua").await.is_empty());
    assert_eq!(stored(&store, "ub").await, b_before);
    assert!(!item_seen(&store, "z").await);
    assert_eq!(answer(&engine, "ua").await, unknown);
    assert!(
        !model::interactions_from_events(&events_of(&log))
            .iter()
            .any(|i| i.user == "ua"),
        "training from the log must leave the erased user out"
    );
}

/// The envelopes of the log's event topics.
fn events_of(log: &Log) -> Vec<Envelope> {
    log.records
        .iter()
        .filter(|r| r.topic != ALERTS)
        .map(|r| Envelope::decode(r.payload.as_slice()).unwrap())
        .collect()
}
