//! A store that went back while the consumer keeps running, against the
//! real broker and Redis: every key under the test's prefix deleted (a
//! store restored empty), or every key restored from a snapshot taken one
//! phase earlier (DUMP, then DEL and RESTORE). The consumer re-reads what
//! the store forgot: the trends and zero-result counts read through the
//! engine equal a fold of every accepted event (nothing lost, nothing
//! counted twice), an erasure the store forgot is applied again before the
//! user's later review, and that review's analysis is never published.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::headers::HeaderList;
use mesh_bus::{Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, ReviewSubmitted, Search, SupportMessage, UserErased};
use mesh_proto::support::v1 as pb;
use mesh_runtime::config::Env;
use mesh_runtime::Deps;
use mesh_store::{erasure, RedisStore, StateStore};
use mesh_support_svc::{Running, SupportConfig};
use prost::Message;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "shop";
const PARTITIONS: i32 = 2;
/// The service's clock (08:00 UTC): every event of the test is "today".
const T0: i64 = 1_800_000_000_000;

const REVIEWS: [&str; 3] = [
    "great product, works perfectly, I love it",
    "terrible quality, it broke after one day",
    "it is ok, nothing special",
];
const MESSAGES: [&str; 3] = [
    "my parcel never arrived, where is my delivery",
    "I want a refund for this order",
    "the price is too high for what it is",
];

/// A user of `partition` (`u<partition>-<n>`, the first such names).
fn user_in(partition: i32, n: usize) -> String {
    (0..)
        .map(|i| format!("u{partition}-{i}"))
        .filter(|u| {
            mesh_bus::partition::partition_for(&erasure::member(TENANT, u), PARTITIONS) == partition
        })
        .nth(n)
        .expect("a user of the partition")
}

/// What the service should hold: a fold of the accepted events.
#[derive(Debug, Default, Clone, PartialEq)]
struct Folded {
    /// Subject → (positive, neutral, negative) of today.
    trends: BTreeMap<String, (u64, u64, u64)>,
    /// Zero-result query → count.
    zero: BTreeMap<String, u64>,
}

struct Test {
    running: Running,
    deps: Deps,
    prefix: String,
    shutdown: CancellationToken,
    seq: i64,
    erased: BTreeSet<String>,
    expected: Folded,
    /// Event ids whose analysis must be published, and those that must not.
    analysed: BTreeSet<String>,
    never: BTreeSet<String>,
}

impl Test {
    async fn start(name: &str) -> Test {
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
        let group = format!("{prefix}-support");
        let cfg = SupportConfig::from_env(&Env::from_pairs([
            ("MESH_SUPPORT_GRPC_ADDR", "127.0.0.1:0"),
            ("MESH_SUPPORT_GROUP", group.as_str()),
        ]))
        .unwrap();
        let shutdown = CancellationToken::new();
        let running = mesh_support_svc::start(&cfg, &deps, shutdown.clone())
            .await
            .unwrap();
        Test {
            running,
            deps,
            prefix,
            shutdown,
            seq: 0,
            erased: BTreeSet::new(),
            expected: Folded::default(),
            analysed: BTreeSet::new(),
            never: BTreeSet::new(),
        }
    }

    /// Publishes one event of `user`; returns its id and whether the
    /// service must take it (the user is not erased).
    async fn publish(&mut self, user: &str, body: Body) -> (String, bool) {
        self.seq += 1;
        let e = Envelope {
            event_id: format!("{}-{user}-{}", self.prefix, self.seq),
            tenant_id: TENANT.into(),
            user_id: user.into(),
            occurred_at_ms: T0 - 3_600_000 + self.seq,
            source: "test".into(),
            context: None,
            body: Some(body),
        };
        self.deps
            .producer
            .send(
                &self.deps.topics.user_events,
                &e.user_key(),
                &e.encode_to_vec(),
                &HeaderList::new(),
            )
            .await
            .unwrap();
        (e.event_id, !self.erased.contains(user))
    }

    /// Adds one analysed text to the fold (or to what must never be
    /// published, for an erased user).
    fn fold_text(&mut self, id: String, taken: bool, subject: String, text: &str) {
        let counts = self.expected.trends.entry(subject).or_default();
        if !taken {
            self.never.insert(id);
            return;
        }
        match self.running.support.analyze(text).sentiment.as_str() {
            "positive" => counts.0 += 1,
            "negative" => counts.2 += 1,
            _ => counts.1 += 1,
        }
        self.analysed.insert(id);
    }

    async fn review(&mut self, user: &str, sku: &str, text: &str) {
        let body = Body::ReviewSubmitted(ReviewSubmitted {
            sku: sku.into(),
            rating: 3,
            text: text.into(),
            ..Default::default()
        });
        let (id, taken) = self.publish(user, body).await;
        self.fold_text(id, taken, sku.into(), text);
    }

    async fn message(&mut self, user: &str, text: &str) {
        let body = Body::SupportMessage(SupportMessage {
            ticket_id: format!("t-{user}"),
            text: text.into(),
            channel: "chat".into(),
        });
        let (id, taken) = self.publish(user, body).await;
        let category = self.running.support.analyze(text).category;
        self.fold_text(id, taken, format!("support:{category}"), text);
    }

    async fn search(&mut self, user: &str, query: &str) {
        let body = Body::Search(Search {
            query: query.into(),
            results: 0,
        });
        let (_, taken) = self.publish(user, body).await;
        let count = self.expected.zero.entry(query.to_lowercase()).or_default();
        if taken {
            *count += 1;
        }
    }

    async fn erase(&mut self, user: &str) {
        let body = Body::UserErased(UserErased {
            reason: "gdpr_request".into(),
        });
        self.publish(user, body).await;
        self.erased.insert(user.to_string());
    }

    /// A review, a support message and a zero-result search of `user`.
    async fn activity(&mut self, user: &str, n: usize) {
        self.review(user, &format!("sku-{}", n % 4), REVIEWS[n % 3])
            .await;
        self.message(user, MESSAGES[(n + user.len()) % 3]).await;
        self.search(user, &format!("Query {}", n % 5)).await;
    }

    /// The service's state, read through the engine.
    async fn state(&self) -> Folded {
        let s = &self.running.support;
        let mut out = Folded::default();
        for subject in self.expected.trends.keys() {
            let t = s.trends(TENANT, subject, 7).await.unwrap();
            let today = t.days.last().unwrap();
            let older: u64 = t.days[..t.days.len() - 1]
                .iter()
                .map(|d| d.positive + d.neutral + d.negative)
                .sum();
            assert_eq!(older, 0, "{subject}: counts on another day");
            out.trends.insert(
                subject.clone(),
                (today.positive, today.neutral, today.negative),
            );
        }
        for q in s.zero_result_queries(TENANT, 1000).await.unwrap() {
            out.zero.insert(q.query, q.count);
        }
        // Queries only erased users searched for are not there at all.
        for (q, n) in &self.expected.zero {
            if *n == 0 {
                out.zero.entry(q.clone()).or_insert(0);
            }
        }
        out
    }

    /// Waits until the state equals the fold, then checks it stays so.
    async fn settle(&self, what: &str) {
        let mut last = Folded::default();
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

    /// Every analysis published was of an accepted event, each of those
    /// was published, and nothing of an erased user's later events.
    async fn check_published(&self) {
        let (brokers, topic) = (
            self.deps.brokers.clone(),
            self.deps.topics.engagement.clone(),
        );
        let ids: BTreeSet<String> = tokio::task::spawn_blocking(move || {
            mesh_bus::log::read_log(
                &brokers,
                &[topic],
                Duration::from_secs(20),
                "support-store-behind-test",
                |b| pb::FeedbackAnalysed::decode(b).ok().map(|a| a.event_id),
                &|_| {},
            )
        })
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .collect();
        let leaked: Vec<_> = self.never.intersection(&ids).collect();
        assert!(
            leaked.is_empty(),
            "published for an erased user: {leaked:?}"
        );
        assert_eq!(ids, self.analysed);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.running.consumer.await;
        let _ = self.running.server.await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_empty_is_rebuilt_from_the_log_once() {
    let mut t = Test::start("support-behind-empty").await;
    let (a, b, gone) = (user_in(0, 0), user_in(1, 0), user_in(0, 1));
    for n in 0..3 {
        t.activity(&a, n).await;
        t.activity(&b, n + 1).await;
        t.activity(&gone, n + 2).await;
    }
    t.erase(&gone).await;
    t.settle("before the flush").await;

    delete_all(&t.prefix).await;
    // The erased user's review comes first on its partition: the store
    // forgot the erasure, and the consumer must re-apply it before it
    // analyses (and publishes) anything of this batch.
    t.review(&gone, "sku-late", REVIEWS[1]).await;
    for n in 3..5 {
        t.activity(&a, n).await;
        t.activity(&b, n).await;
        t.activity(&gone, n).await;
    }
    t.settle("after the flush").await;
    t.check_published().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_from_an_older_snapshot_catches_up_once() {
    let mut t = Test::start("support-behind-snapshot").await;
    let (a, b, gone) = (user_in(0, 0), user_in(1, 0), user_in(0, 1));
    for n in 0..2 {
        t.activity(&a, n).await;
        t.activity(&b, n + 1).await;
        t.activity(&gone, n + 2).await;
    }
    t.settle("phase 1").await;
    let dumps = snapshot(&t.prefix).await;

    for n in 2..4 {
        t.activity(&a, n).await;
        t.activity(&b, n).await;
        t.activity(&gone, n).await;
    }
    t.erase(&gone).await;
    t.settle("phase 2").await;

    restore(&t.prefix, &dumps).await;
    t.review(&gone, "sku-late", REVIEWS[1]).await;
    for n in 4..6 {
        t.activity(&a, n).await;
        t.activity(&b, n).await;
        t.activity(&gone, n).await;
    }
    t.settle("after the restore").await;
    t.check_published().await;
    t.stop().await;
}
