//! The consumer resumes from what the store says it applied, on the real
//! broker and Redis: also for a partition that receives nothing (after a
//! restart with nothing new on its partitions, a store that went back is
//! re-read by the idle audit, not left without the effects until the next
//! record arrives), and also when the store goes back again while a re-read
//! is on its way (the re-read does not apply past the new gap).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_bus::consumer::Assignment;
use mesh_bus::headers::{self, HeaderList};
use mesh_bus::{
    ensure_topics, run_consumer, ConsumerConfig, Handler, HandlerError, Producer, ProducerConfig,
    Record, TopicNames, TopicSpec, Watermark,
};
use mesh_store::{Op, PartitionBatch, RedisStore, Slot, StateStore};
use tokio_util::sync::CancellationToken;

const SCOPE: &str = "behind-test";
const PARTITIONS: i32 = 2;
const PER_PARTITION: i64 = 12;

/// Counts its records in `n` of its partition's slot, in one atomic step
/// per batch that carries the consumer's expectation; the store can be
/// replaced under it (a store that went back).
struct Tracked {
    store: Mutex<StateStore>,
    /// Replaces the store right after the next answer of
    /// `applied_through` that reports a watermark: the store goes back
    /// again just after the consumer decided where to re-read from.
    after_answer: Mutex<Option<StateStore>>,
}

impl Tracked {
    fn store(&self) -> StateStore {
        self.store.lock().unwrap().clone()
    }
}

impl Handler for Tracked {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = mesh_bus::expected_through();
        for r in records {
            batch.push(
                r.offset,
                vec![Op::HIncr {
                    key: "n".into(),
                    field: "n".into(),
                    delta: 1,
                }],
            );
        }
        self.store().apply(SCOPE, &batch).await?;
        Ok(())
    }

    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        let mark = Watermark::of(&self.store(), SCOPE, topic, partition).await?;
        if matches!(mark, Watermark::At(_)) {
            if let Some(next) = self.after_answer.lock().unwrap().take() {
                *self.store.lock().unwrap() = next;
            }
        }
        Ok(mark)
    }
}

async fn redis_store(prefix: &str) -> StateStore {
    StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), prefix)
            .await
            .expect("redis"),
    )
}

async fn counts(store: &StateStore) -> Vec<i64> {
    let mut out = Vec::new();
    for partition in 0..PARTITIONS {
        let h = store
            .hgetall(
                Slot {
                    scope: SCOPE,
                    partition,
                },
                "n",
            )
            .await
            .unwrap();
        out.push(h.get("n").and_then(|v| v.parse().ok()).unwrap_or(0));
    }
    out
}

async fn wait_counts(handler: &Tracked, want: i64, what: &str) {
    let start = Instant::now();
    loop {
        let got = counts(&handler.store()).await;
        if got.iter().all(|n| *n == want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: counts {got:?}, expected {want} per partition"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn consumer(
    group: &str,
    topic: &str,
    handler: Arc<Tracked>,
) -> (Assignment, CancellationToken, tokio::task::JoinHandle<()>) {
    let mut cc = ConsumerConfig::new(&mesh_testkit::kafka_brokers(), group, &[topic]);
    cc.extra = vec![("session.timeout.ms".into(), "6000".into())];
    let assigned = Assignment::default();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (assigned, shutdown) = (assigned.clone(), shutdown.clone());
        async move {
            run_consumer(cc, handler, assigned, shutdown)
                .await
                .expect("consumer runs");
        }
    });
    (assigned, shutdown, task)
}

/// A topic of its own with `PER_PARTITION` records on each partition.
async fn published_topic() -> String {
    let brokers = mesh_testkit::kafka_brokers();
    let names = TopicNames::with_prefix(&mesh_testkit::unique("behind"));
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    ensure_topics(&brokers, &names, spec, Duration::from_secs(10))
        .await
        .expect("topics");
    let topic = names.user_events.clone();
    let producer = Producer::new(ProducerConfig::new(&brokers, "behind")).unwrap();
    for partition in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            producer
                .send_to(
                    &topic,
                    partition,
                    "k",
                    format!("{i}").as_bytes(),
                    &HeaderList::new().with(headers::CE_TYPE, "test"),
                )
                .await
                .expect("publish");
        }
    }
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_partition_whose_store_went_back_is_re_read_without_new_records() {
    let topic = published_topic().await;
    let group = mesh_testkit::unique("behind-group");
    let handler = Arc::new(Tracked {
        store: Mutex::new(redis_store(&mesh_testkit::unique("behind-a")).await),
        after_answer: Mutex::new(None),
    });

    // Applied once, committed, and the consumer gone.
    let (_, shutdown, task) = consumer(&group, &topic, handler.clone());
    wait_counts(&handler, PER_PARTITION, "first run").await;
    shutdown.cancel();
    task.await.unwrap();

    // A new consumer of the same group: its partitions start at the
    // committed end and receive nothing.
    let (assigned, shutdown, task) = consumer(&group, &topic, handler.clone());
    let joined = Instant::now();
    while assigned.partitions() < PARTITIONS as usize {
        assert!(joined.elapsed() < Duration::from_secs(60), "never assigned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        counts(&handler.store()).await,
        vec![PER_PARTITION; PARTITIONS as usize],
        "the restart applied nothing twice"
    );

    // The store goes back to empty while nothing arrives: the idle audit
    // finds it and the partitions are read again from the start, once.
    *handler.store.lock().unwrap() = redis_store(&mesh_testkit::unique("behind-b")).await;
    wait_counts(&handler, PER_PARTITION, "after the store went back").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        counts(&handler.store()).await,
        vec![PER_PARTITION; PARTITIONS as usize],
        "re-read once"
    );
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_back_again_during_a_re_read_is_re_read_from_its_new_watermark() {
    let topic = published_topic().await;
    let group = mesh_testkit::unique("behind-again");
    let handler = Arc::new(Tracked {
        store: Mutex::new(redis_store(&mesh_testkit::unique("again-a")).await),
        after_answer: Mutex::new(None),
    });
    let (_, shutdown, task) = consumer(&group, &topic, handler.clone());
    wait_counts(&handler, PER_PARTITION, "first run").await;

    // An older snapshot: records 0..=5 of every partition applied.
    let older = redis_store(&mesh_testkit::unique("again-older")).await;
    for partition in 0..PARTITIONS {
        let mut b = PartitionBatch::new(&topic, partition);
        for offset in 0..=5 {
            b.push(
                offset,
                vec![Op::HIncr {
                    key: "n".into(),
                    field: "n".into(),
                    delta: 1,
                }],
            );
        }
        older.apply(SCOPE, &b).await.unwrap();
    }
    // The store is restored from it; right after the audit reads its
    // watermark (and the consumer seeks to offset 6 to re-read), it goes
    // back again, to empty.
    *handler.after_answer.lock().unwrap() =
        Some(redis_store(&mesh_testkit::unique("again-empty")).await);
    *handler.store.lock().unwrap() = older;
    wait_counts(&handler, PER_PARTITION, "after the store went back twice").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        counts(&handler.store()).await,
        vec![PER_PARTITION; PARTITIONS as usize],
        "every record applied once"
    );
    shutdown.cancel();
    task.await.unwrap();
}
