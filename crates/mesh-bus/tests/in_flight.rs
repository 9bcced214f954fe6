//! Batches in flight on the real broker: with `max_in_flight` above one,
//! batches of different partitions are in the handler at once while every
//! partition is still handed over whole and in order, one batch at a time;
//! with one, a single batch is in the handler at a time.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_bus::consumer::Assignment;
use mesh_bus::headers::HeaderList;
use mesh_bus::{
    ensure_topics, run_consumer, ConsumerConfig, Handler, HandlerError, Producer, ProducerConfig,
    Record, TopicNames, TopicSpec,
};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 300;

/// Records what it is handed and how many calls overlap.
#[derive(Default)]
struct Recorder {
    /// Payloads (the publish sequence number) per partition, in the order
    /// handed over.
    seen: Mutex<HashMap<i32, Vec<usize>>>,
    /// Calls in the handler now, and per partition.
    active: AtomicUsize,
    active_in: Mutex<HashMap<i32, usize>>,
    /// The most calls at once, and the most of one partition at once.
    most: AtomicUsize,
    most_in_one: AtomicUsize,
    batches: AtomicUsize,
    largest: AtomicUsize,
}

impl Handler for Recorder {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let p = first.partition;
        assert!(
            records.iter().all(|r| r.partition == p),
            "one partition per batch"
        );
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        {
            let mut a = self.active_in.lock().unwrap();
            let n = a.entry(p).or_default();
            *n += 1;
            self.most_in_one.fetch_max(*n, Ordering::SeqCst);
        }
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.largest.fetch_max(records.len(), Ordering::SeqCst);
        // Long enough for batches of other partitions to start meanwhile.
        tokio::time::sleep(Duration::from_millis(15)).await;
        {
            let mut seen = self.seen.lock().unwrap();
            let v = seen.entry(p).or_default();
            for r in records {
                v.push(std::str::from_utf8(&r.payload).unwrap().parse().unwrap());
            }
        }
        *self.active_in.lock().unwrap().get_mut(&p).unwrap() -= 1;
        self.active.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Consumes the topic (already holding every record) in a group of its
/// own until every record was handed over, then stops the consumer.
async fn consume(topic: &str, max_in_flight: usize) -> Arc<Recorder> {
    let mut cc = ConsumerConfig::new(
        &mesh_testkit::kafka_brokers(),
        &mesh_testkit::unique("in-flight"),
        &[topic],
    );
    cc.max_batch = 20;
    cc.max_in_flight = max_in_flight;
    cc.session_timeout = Duration::from_secs(6);
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        cc,
        recorder.clone(),
        Assignment::default(),
        shutdown.clone(),
    ));
    let start = Instant::now();
    loop {
        let got: usize = recorder.seen.lock().unwrap().values().map(Vec::len).sum();
        if got >= PARTITIONS as usize * PER_PARTITION {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "handed over {got} records in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the consumer stops")
        .expect("joined")
        .expect("the consumer ends without an error");
    recorder
}

/// Every partition's records exactly once, in the order published.
fn assert_whole_and_in_order(r: &Recorder) {
    let seen = r.seen.lock().unwrap();
    for p in 0..PARTITIONS {
        let got = seen.get(&p).cloned().unwrap_or_default();
        let want: Vec<usize> = (0..PER_PARTITION).collect();
        assert_eq!(got, want, "partition {p}");
    }
    assert!(
        r.largest.load(Ordering::SeqCst) <= 20,
        "a batch above max_batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_different_partitions_overlap_and_each_partition_stays_in_order() {
    let brokers = mesh_testkit::kafka_brokers();
    let names = TopicNames::with_prefix(&mesh_testkit::unique("in-flight"));
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    ensure_topics(&brokers, &names, spec, Duration::from_secs(10))
        .await
        .expect("topics");
    let producer = Producer::new(ProducerConfig::new(&brokers, "in-flight")).expect("producer");
    // Sent in order: each send is queued when first polled, and `join_all`
    // polls in order, so every partition's records are in sequence.
    let sends = (0..PER_PARTITION).flat_map(|i| {
        let (producer, topic) = (&producer, &names.user_events);
        (0..PARTITIONS).map(move |p| async move {
            producer
                .send_to(topic, p, "k", i.to_string().as_bytes(), &HeaderList::new())
                .await
                .expect("publish")
        })
    });
    futures::future::join_all(sends).await;

    let four = consume(&names.user_events, 4).await;
    assert_whole_and_in_order(&four);
    let most = four.most.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&most),
        "at most 4 batches at once, and more than one: {most}"
    );
    assert_eq!(
        four.most_in_one.load(Ordering::SeqCst),
        1,
        "two batches of one partition at once"
    );

    let one = consume(&names.user_events, 1).await;
    assert_whole_and_in_order(&one);
    assert_eq!(one.most.load(Ordering::SeqCst), 1, "one batch at a time");
    // Full batches from the backlog, not a lingering one-record batch after
    // each: 1,200 records in batches of 20 take at least 60.
    let batches = one.batches.load(Ordering::SeqCst);
    assert!(
        batches < 120,
        "{batches} batches for 1,200 records of 20 per batch"
    );
}
