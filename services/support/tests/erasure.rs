//! Erasure of a user against the real broker and Redis: the handler is fed
//! records directly (a log kept in the test), conversations go through the
//! engine behind `Converse`, and the analyses it publishes are read back
//! from the engagement topic.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::headers::HeaderList;
use mesh_bus::{Handler, Producer, ProducerConfig, Record, TopicNames, TopicSpec};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, ReviewSubmitted, Search, SupportMessage, UserErased};
use mesh_proto::support::v1 as pb;
use mesh_store::{erasure, RedisStore, Slot, StateStore};
use mesh_support_svc::handler::SupportHandler;
use mesh_support_svc::{keys, Models, Support, REPLAY_KEEPS, SCOPE};
use prost::Message;

const TENANT: &str = "shop";
const PARTITIONS: i32 = 2;

struct Env {
    support: Arc<Support>,
    topics: TopicNames,
    brokers: String,
    /// The user topic as produced so far, with offsets per partition.
    log: Vec<Record>,
    next: HashMap<i32, i64>,
    seq: i64,
}

fn partition_of(user: &str) -> i32 {
    mesh_bus::partition::partition_for(&erasure::member(TENANT, user), PARTITIONS)
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
        let models = tokio::task::spawn_blocking(|| Models::train(42))
            .await
            .unwrap()
            .unwrap();
        let support = Arc::new(Support {
            store,
            producer: Producer::new(ProducerConfig::new(&brokers, &name)).unwrap(),
            engagement_topic: topics.engagement.clone(),
            alerts_topic: topics.alerts.clone(),
            partitions: PARTITIONS,
            peers: Default::default(),
            models: Arc::new(models),
            indexes: Default::default(),
            clock: mesh_runtime::clock::system(),
            writes: Default::default(),
        });
        Env {
            support,
            topics,
            brokers,
            log: Vec::new(),
            next: HashMap::new(),
            seq: 0,
        }
    }

    fn handler(&self) -> SupportHandler {
        SupportHandler {
            support: self.support.clone(),
            dead_letter_topic: self.topics.dead_letter.clone(),
            group: "test".into(),
        }
    }

    /// Appends an event of `user` to the log; returns its id.
    fn event(&mut self, user: &str, body: Body) -> String {
        self.seq += 1;
        let e = Envelope {
            event_id: format!("{}-{user}-{}", self.topics.user_events, self.seq),
            tenant_id: TENANT.into(),
            user_id: user.into(),
            occurred_at_ms: self.support.now() + self.seq,
            source: "test".into(),
            context: None,
            body: Some(body),
        };
        let p = partition_of(user);
        let offset = self.next.entry(p).or_insert(0);
        self.log.push(Record {
            topic: self.topics.user_events.clone(),
            partition: p,
            offset: *offset,
            key: None,
            payload: e.encode_to_vec(),
            headers: HeaderList::new(),
            timestamp_ms: None,
        });
        *offset += 1;
        e.event_id
    }

    fn review(&mut self, user: &str, sku: &str) -> String {
        self.event(
            user,
            Body::ReviewSubmitted(ReviewSubmitted {
                sku: sku.into(),
                rating: 1,
                text: "terrible quality, it broke after one day".into(),
                ..Default::default()
            }),
        )
    }

    fn activity(&mut self, user: &str, sku: &str, query: &str) -> Vec<String> {
        let mut ids = vec![self.review(user, sku)];
        ids.push(self.event(
            user,
            Body::SupportMessage(SupportMessage {
                ticket_id: format!("t-{user}"),
                text: "my parcel never arrived, where is my delivery".into(),
                channel: "chat".into(),
            }),
        ));
        self.event(
            user,
            Body::Search(Search {
                query: query.into(),
                results: 0,
            }),
        );
        ids
    }

    /// Hands records `from..` to `handler`, each partition in order, in
    /// batches of `batch`.
    async fn deliver(&self, handler: &SupportHandler, from: usize, batch: usize) {
        let mut runs: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for r in &self.log[from..] {
            runs.entry(r.partition).or_default().push(r.clone());
        }
        for run in runs.values() {
            for chunk in run.chunks(batch) {
                handler.handle(chunk).await.unwrap();
            }
        }
    }

    async fn converse(
        &self,
        user: &str,
        id: &str,
        text: &str,
    ) -> Result<pb::ConverseResponse, mesh_support_svc::Error> {
        self.support
            .converse(&pb::ConverseRequest {
                tenant_id: TENANT.into(),
                user_id: user.into(),
                conversation_id: id.into(),
                text: text.into(),
            })
            .await
    }

    /// The user's conversations and handoffs as stored, and whether the
    /// slot's handoff queue names the user.
    async fn stored(&self, user: &str) -> (HashMap<String, String>, HashMap<String, String>, bool) {
        let s = &self.support.store;
        let slot = Slot {
            scope: SCOPE,
            partition: partition_of(user),
        };
        let convs = s
            .hgetall(slot, &keys::conversations(TENANT, user))
            .await
            .unwrap();
        let handoffs = s
            .hgetall(slot, &keys::handoffs(TENANT, user))
            .await
            .unwrap();
        let queued = s
            .hgetall(slot, &keys::handoff_users(TENANT))
            .await
            .unwrap()
            .contains_key(user);
        (convs, handoffs, queued)
    }

    async fn queue(&self) -> Vec<pb::Handoff> {
        self.support.handoffs(TENANT, 0).await.unwrap()
    }

    /// (positive, neutral, negative) summed over the subject's trend.
    async fn trend(&self, subject: &str) -> (u64, u64, u64) {
        let t = self.support.trends(TENANT, subject, 7).await.unwrap();
        t.days.iter().fold((0, 0, 0), |(p, u, n), d| {
            (p + d.positive, u + d.neutral, n + d.negative)
        })
    }

    async fn zero_results(&self) -> HashMap<String, u64> {
        self.support
            .zero_result_queries(TENANT, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|q| (q.query, q.count))
            .collect()
    }

    /// Event ids of the analyses published on the engagement topic.
    async fn published(&self) -> HashSet<String> {
        let (brokers, topic) = (self.brokers.clone(), self.topics.engagement.clone());
        tokio::task::spawn_blocking(move || {
            mesh_bus::log::read_log(
                &brokers,
                &[topic],
                Duration::from_secs(10),
                "support-erasure-test",
                |b| pb::FeedbackAnalysed::decode(b).ok().map(|a| a.event_id),
                &|_| {},
            )
        })
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_stays_gone_and_a_replay_does_not_bring_them_back() {
    let mut env = Env::new("support-erase").await;
    let a_ids = env.activity("ua", "s1", "unicorn lamp");
    env.activity("ub", "s1", "dragon kite");
    let consumer = env.handler();
    env.deliver(&consumer, 0, 2).await;
    let human = "I want to talk to a human agent";
    let a_conv = env.converse("ua", "", human).await.unwrap();
    let b_conv = env.converse("ub", "", human).await.unwrap();
    assert!(a_conv.handed_off && b_conv.handed_off, "{a_conv:?}");

    let a_before = env.stored("ua").await;
    let b_before = env.stored("ub").await;
    assert!(!a_before.0.is_empty() && !a_before.1.is_empty() && a_before.2);
    let queue = env.queue().await;
    assert_eq!(queue.len(), 2);
    let b_queue: Vec<_> = queue.into_iter().filter(|h| h.user_id == "ub").collect();
    let s1 = env.trend("s1").await;
    assert_eq!(s1.0 + s1.1 + s1.2, 2);
    let zero = env.zero_results().await;
    assert!(zero.contains_key("unicorn lamp") && zero.contains_key("dragon kite"));

    // The erasure.
    let mark = env.log.len();
    env.event(
        "ua",
        Body::UserErased(UserErased {
            reason: "gdpr_request".into(),
        }),
    );
    env.deliver(&consumer, mark, 2).await;
    assert_eq!(
        env.stored("ua").await,
        (HashMap::new(), HashMap::new(), false)
    );
    assert_eq!(env.stored("ub").await, b_before);
    assert_eq!(env.queue().await, b_queue);
    // Anonymous counts stay.
    assert_eq!(env.trend("s1").await, s1);
    assert_eq!(env.zero_results().await, zero);
    // The conversation is gone, and the user is not served again.
    let err = env
        .converse("ua", &a_conv.conversation_id, "hello?")
        .await
        .unwrap_err();
    assert!(matches!(err, mesh_support_svc::Error::NotFound(_)), "{err}");
    let err = env.converse("ua", "", human).await.unwrap_err();
    assert!(matches!(err, mesh_support_svc::Error::NotFound(_)), "{err}");
    assert_eq!(env.stored("ua").await.0, HashMap::new());
    assert_eq!(env.queue().await, b_queue);

    // Late events of ua change nothing and publish nothing.
    let mark = env.log.len();
    let late = env.activity("ua", "s2", "phoenix mug");
    env.deliver(&consumer, mark, 1).await;
    assert_eq!(env.trend("s2").await, (0, 0, 0));
    assert!(!env.zero_results().await.contains_key("phoenix mug"));
    let published = env.published().await;
    assert!(
        a_ids.iter().all(|id| published.contains(id)),
        "{published:?}"
    );
    assert!(!late.iter().any(|id| published.contains(id)));

    // Replay: the scope cleared except what replay keeps and the erasure
    // hash, then every record again from offset 0 in whole batches.
    let mut keep = REPLAY_KEEPS.to_vec();
    keep.push(erasure::KEY);
    env.support
        .store
        .clear_scope_keeping(SCOPE, &keep)
        .await
        .unwrap();
    let replayed = env.handler();
    env.deliver(&replayed, 0, usize::MAX).await;
    assert_eq!(
        env.stored("ua").await,
        (HashMap::new(), HashMap::new(), false)
    );
    assert_eq!(env.stored("ub").await, b_before);
    assert_eq!(env.queue().await, b_queue);
    // Only ub's review is counted again; ua's searches are not.
    let s1 = env.trend("s1").await;
    assert_eq!(s1.0 + s1.1 + s1.2, 1);
    assert_eq!(env.trend("s2").await, (0, 0, 0));
    let zero = env.zero_results().await;
    assert!(zero.contains_key("dragon kite"));
    assert!(!zero.contains_key("unicorn lamp") && !zero.contains_key("phoenix mug"));
}
