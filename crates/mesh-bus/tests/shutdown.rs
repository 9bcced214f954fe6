//! Shutdown under a backlog, on the real broker: the consumer lets the
//! batches in the handler end and drops what it had buffered instead of
//! applying it, so a stop takes at most `max_in_flight` more batches
//! however much was buffered; the group's committed offsets never pass
//! what was applied, so the next consumer of the group receives every
//! record the first one did not apply.
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_bus::consumer::Assignment;
use mesh_bus::headers::HeaderList;
use mesh_bus::{
    ensure_topics, run_consumer, ConsumerConfig, Handler, HandlerError, Producer, ProducerConfig,
    Record, TopicNames, TopicSpec,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 2;
const PER_PARTITION: usize = 2_000;
/// Small batches of a slow handler: a backlog of many batches buffers up
/// (up to 64 batches per partition) while one is applied.
const MAX_BATCH: usize = 10;
const MAX_IN_FLIGHT: usize = 2;

/// Records the offsets it applied per partition, and how many batches
/// ended after `stopping` was set.
struct Slow {
    per_batch: Duration,
    applied: Mutex<HashMap<i32, Vec<i64>>>,
    batches: AtomicUsize,
    stopping: AtomicBool,
    after_stop: AtomicUsize,
}

impl Slow {
    fn new(per_batch: Duration) -> Arc<Self> {
        Arc::new(Slow {
            per_batch,
            applied: Mutex::new(HashMap::new()),
            batches: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            after_stop: AtomicUsize::new(0),
        })
    }

    fn applied(&self) -> HashMap<i32, Vec<i64>> {
        self.applied.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.applied.lock().unwrap().values().map(Vec::len).sum()
    }
}

impl Handler for Slow {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        if !self.per_batch.is_zero() {
            tokio::time::sleep(self.per_batch).await;
        }
        self.applied
            .lock()
            .unwrap()
            .entry(first.partition)
            .or_default()
            .extend(records.iter().map(|r| r.offset));
        if self.stopping.load(Ordering::SeqCst) {
            self.after_stop.fetch_add(1, Ordering::SeqCst);
        }
        self.batches.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn start(
    topic: &str,
    group: &str,
    max_batch: usize,
    handler: Arc<Slow>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let mut cc = ConsumerConfig::new(&mesh_testkit::kafka_brokers(), group, &[topic]);
    cc.max_batch = max_batch;
    cc.max_in_flight = MAX_IN_FLIGHT;
    cc.session_timeout = Duration::from_secs(6);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            run_consumer(cc, handler, Assignment::default(), shutdown)
                .await
                .expect("the consumer ends without an error");
        }
    });
    (shutdown, task)
}

/// The group's committed offset of each partition (`None`: nothing
/// committed).
fn committed(topic: &str, group: &str) -> HashMap<i32, Option<i64>> {
    let c: BaseConsumer = mesh_bus::security::client_config()
        .set("bootstrap.servers", mesh_testkit::kafka_brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a client for the committed offsets");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), o)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_the_buffered_backlog_and_the_next_consumer_gets_it() {
    let brokers = mesh_testkit::kafka_brokers();
    let names = TopicNames::with_prefix(&mesh_testkit::unique("shutdown"));
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    ensure_topics(&brokers, &names, spec, Duration::from_secs(10))
        .await
        .expect("topics");
    let topic = names.user_events.clone();
    let producer = Producer::new(ProducerConfig::new(&brokers, "shutdown")).expect("producer");
    let sends = (0..PER_PARTITION).flat_map(|i| {
        let (producer, topic) = (&producer, &topic);
        (0..PARTITIONS).map(move |p| async move {
            producer
                .send_to(topic, p, "k", i.to_string().as_bytes(), &HeaderList::new())
                .await
                .expect("publish")
        })
    });
    futures::future::join_all(sends).await;
    let group = mesh_testkit::unique("shutdown-group");

    // A slow consumer, stopped once it applied a few batches: by then the
    // loop has buffered far more than the batches in the handler.
    let first = Slow::new(Duration::from_millis(200));
    let (shutdown, task) = start(&topic, &group, MAX_BATCH, first.clone());
    let begun = Instant::now();
    while first.batches.load(Ordering::SeqCst) < 3 {
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "the first consumer applied no batch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stopping.store(true, Ordering::SeqCst);
    shutdown.cancel();
    // A guard against a hang, not a measure: the figure is the count below.
    tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the first consumer stops")
        .expect("joined");
    let after = first.after_stop.load(Ordering::SeqCst);
    assert!(
        after <= MAX_IN_FLIGHT,
        "{after} batches applied after shutdown was asked; at most the {MAX_IN_FLIGHT} in the handler may end"
    );
    let applied = first.applied();
    assert!(
        first.count() < PARTITIONS as usize * PER_PARTITION,
        "the first consumer applied the whole backlog: the test shows nothing"
    );

    // Each partition was applied in order from offset 0, with no gap, and
    // the committed offset is just past the last applied record: never
    // beyond it (nothing lost) and not behind it (the final commit ran).
    let commits = committed(&topic, &group);
    for p in 0..PARTITIONS {
        let got = applied.get(&p).cloned().unwrap_or_default();
        let want: Vec<i64> = (0..got.len() as i64).collect();
        assert_eq!(got, want, "partition {p}: applied in order from 0");
        let next = got.last().map_or(0, |o| o + 1);
        let c = commits.get(&p).copied().flatten();
        assert_eq!(
            c.unwrap_or(0),
            next,
            "partition {p}: committed {c:?}, applied through {}",
            next - 1
        );
    }

    // The next consumer of the group, fast: it receives every record the
    // first one did not apply.
    let second = Slow::new(Duration::ZERO);
    let (shutdown, task) = start(&topic, &group, 500, second.clone());
    let want_rest = PARTITIONS as usize * PER_PARTITION - first.count();
    let begun = Instant::now();
    while second.count() < want_rest {
        assert!(
            begun.elapsed() < Duration::from_secs(90),
            "the second consumer applied {} of the {want_rest} records left",
            second.count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the second consumer stops")
        .expect("joined");

    let rest = second.applied();
    for p in 0..PARTITIONS {
        let before: BTreeSet<i64> = applied.get(&p).into_iter().flatten().copied().collect();
        let after: Vec<i64> = rest.get(&p).cloned().unwrap_or_default();
        let from = commits.get(&p).copied().flatten().unwrap_or(0);
        // It starts at the committed offset, and so applies again only
        // records after the last commit (none, as the commit ran).
        assert_eq!(
            after.first().copied(),
            (from < PER_PARTITION as i64).then_some(from),
            "partition {p}: the second consumer starts at the committed offset"
        );
        let all: BTreeSet<i64> = before.iter().copied().chain(after).collect();
        let want: BTreeSet<i64> = (0..PER_PARTITION as i64).collect();
        assert_eq!(
            all, want,
            "partition {p}: every record applied by one or the other"
        );
    }
}
