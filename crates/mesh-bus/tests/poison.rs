//! Issue 15 on the real broker and Redis: a record that cannot be applied
//! is dead-lettered after a bounded number of attempts while every other
//! record of its partition is applied; a store outage is retried through,
//! losing nothing and dead-lettering nothing.
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_bus::consumer::Assignment;
use mesh_bus::headers::{self, HeaderList};
use mesh_bus::metrics::{HANDLER_ERRORS, POISON_RECORDS};
use mesh_bus::{
    ensure_topics, run_consumer, ConsumerConfig, Handler, HandlerError, PoisonPolicy, Producer,
    ProducerConfig, Record, TopicNames, TopicSpec,
};
use mesh_store::{Op, PartitionBatch, RedisStore, Slot, StateStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const SCOPE: &str = "poison-test";
const PARTITIONS: i32 = 2;

/// `inc:<user>` adds one to `u:<user>` field `n`; `poison` adds one to a
/// field that holds a non-number, which Redis refuses (the whole batch's
/// script fails, as with any store error a retry repeats).
struct Counter {
    store: StateStore,
    /// How often a `poison` record was handled on its own.
    poison_alone: Mutex<u32>,
}

impl Handler for Counter {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        for r in records {
            let ops = match std::str::from_utf8(&r.payload).unwrap_or_default() {
                "poison" => vec![incr("bad")],
                p => vec![incr(&format!("u:{}", p.trim_start_matches("inc:")))],
            };
            batch.push(r.offset, ops);
        }
        if records.len() == 1 && first.payload == b"poison" {
            *self.poison_alone.lock().unwrap() += 1;
        }
        self.store
            .apply(SCOPE, &batch)
            .await
            .map(|_| ())
            .map_err(|e| HandlerError(e.to_string()))
    }
}

fn incr(key: &str) -> Op {
    Op::HIncr {
        key: key.into(),
        field: "n".into(),
        delta: 1,
    }
}

fn slot(partition: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition,
    }
}

struct Setup {
    names: TopicNames,
    group: String,
    producer: Producer,
    shutdown: CancellationToken,
    handler: Arc<Counter>,
}

async fn setup(name: &str, store: StateStore) -> Setup {
    let brokers = mesh_testkit::kafka_brokers();
    let names = TopicNames::with_prefix(&mesh_testkit::unique(name));
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    ensure_topics(&brokers, &names, spec, Duration::from_secs(10))
        .await
        .expect("topics");
    let producer = Producer::new(ProducerConfig::new(&brokers, name)).expect("producer");
    Setup {
        group: mesh_testkit::unique(name),
        names,
        producer,
        shutdown: CancellationToken::new(),
        handler: Arc::new(Counter {
            store,
            poison_alone: Mutex::new(0),
        }),
    }
}

impl Setup {
    fn start_consumer(&self, max_attempts: u32) {
        let mut cc = ConsumerConfig::new(
            &mesh_testkit::kafka_brokers(),
            &self.group,
            &[&self.names.user_events],
        );
        let store = self.handler.store.clone();
        cc.poison = Some(
            PoisonPolicy::new(self.producer.clone(), &self.names.dead_letter, move || {
                let s = store.clone();
                async move { s.ping().await.is_ok() }
            })
            .with_max_attempts(max_attempts),
        );
        tokio::spawn(run_consumer(
            cc,
            self.handler.clone(),
            Assignment::default(),
            self.shutdown.clone(),
        ));
    }

    async fn publish(&self, partition: i32, payload: &str) -> i64 {
        self.producer
            .send_to(
                &self.names.user_events,
                partition,
                "k",
                payload.as_bytes(),
                &HeaderList::new().with(headers::CE_TYPE, "test"),
            )
            .await
            .expect("publish")
            .offset
    }

    async fn count(&self, partition: i32, user: &str) -> i64 {
        let h = self
            .handler
            .store
            .hgetall(slot(partition), &format!("u:{user}"))
            .await
            .unwrap_or_default();
        h.get("n").and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Waits until partition 0 counted `a` events of user `a` and
    /// partition 1 `b` of user `b`.
    async fn wait_counts(&self, a: i64, b: i64, limit: Duration) {
        let start = Instant::now();
        loop {
            let got = (self.count(0, "a").await, self.count(1, "b").await);
            if got == (a, b) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "counts {got:?}, expected {:?}",
                (a, b)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every record on the dead-letter topic (read until the end offsets,
    /// which tansu may report late, have been reached and stayed put).
    fn dead_letters(&self) -> Vec<(Vec<u8>, HeaderList, Vec<u8>)> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mesh_testkit::kafka_brokers())
            .set("group.id", mesh_testkit::unique("dlq-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&self.names.dead_letter, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let quiet_until = |t: Instant| t + Duration::from_secs(2);
        let mut quiet = quiet_until(Instant::now());
        while Instant::now() < quiet {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                out.push((
                    m.key().unwrap_or_default().to_vec(),
                    HeaderList::from_kafka(m.headers()),
                    m.payload().unwrap_or_default().to_vec(),
                ));
                quiet = quiet_until(Instant::now());
            }
        }
        let end: i64 = (0..PARTITIONS)
            .map(|p| {
                c.fetch_watermarks(&self.names.dead_letter, p, Duration::from_secs(5))
                    .unwrap()
                    .1
            })
            .sum();
        assert_eq!(end, out.len() as i64, "read every dead-letter record");
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_and_its_partition_moves_on() {
    let prefix = mesh_testkit::unique("poison");
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .expect("redis"),
    );
    let s = setup("poison", store).await;
    // The field a poison record increments holds a non-number.
    for p in 0..PARTITIONS {
        let mut seed = PartitionBatch::new("seed", p);
        seed.push(
            0,
            vec![Op::HSet {
                key: "bad".into(),
                field: "n".into(),
                value: "not a number".into(),
            }],
        );
        s.handler.store.apply(SCOPE, &seed).await.unwrap();
    }
    // Published before the consumer starts, so the poison record arrives
    // in the middle of a batch and has to be found.
    let (mut poison_offset, mut last) = (-1, -1);
    for i in 0..30 {
        if i == 10 {
            poison_offset = s.publish(0, "poison").await;
        } else {
            last = s.publish(0, "inc:a").await;
        }
        if i < 20 {
            s.publish(1, "inc:b").await;
        }
    }
    let max_attempts = 3;
    s.start_consumer(max_attempts);
    s.wait_counts(29, 20, Duration::from_secs(60)).await;
    // The records after the poison one moved the watermark past it.
    assert_eq!(
        s.handler
            .store
            .watermark(slot(0), &s.names.user_events)
            .await
            .unwrap(),
        Some(last)
    );
    assert_eq!(*s.handler.poison_alone.lock().unwrap(), max_attempts);

    let dl = s.dead_letters();
    assert_eq!(dl.len(), 1, "one dead-letter record");
    let (key, h, payload) = &dl[0];
    assert_eq!(
        (key.as_slice(), payload.as_slice()),
        (&b"poison"[..], &b"poison"[..])
    );
    let source = headers::dlq_source(&s.names.user_events, 0, poison_offset);
    assert_eq!(h.get(headers::DLQ_SOURCE), Some(source.as_str()));
    assert_eq!(
        headers::parse_dlq_source(&source),
        Some((s.names.user_events.as_str(), 0, poison_offset))
    );
    assert_eq!(h.get(headers::DLQ_ORIGIN), Some(s.group.as_str()));
    assert_eq!(h.get(headers::DLQ_ATTEMPTS), Some("3"));
    assert_eq!(
        h.get(headers::CE_TYPE),
        Some("test"),
        "original headers kept"
    );
    let reason = h.get(headers::DLQ_REASON).unwrap_or_default();
    assert!(reason.contains("not an integer"), "{reason}");
    assert_eq!(
        POISON_RECORDS
            .with_label_values(&[&s.group, &s.names.user_events])
            .get(),
        1
    );
    s.shutdown.cancel();
}

/// A redis-server of this test's own, with an append-only file synced on
/// every write, so it can be killed and restarted without losing what it
/// acknowledged.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(mesh_testkit::unique("mesh-bus-redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = OwnRedis {
            port,
            dir,
            child: None,
        };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_loses_nothing_and_dead_letters_nothing() {
    let mut redis = OwnRedis::start();
    let store = StateStore::Redis(
        RedisStore::connect(&redis.url(), "outage")
            .await
            .expect("own redis"),
    );
    let s = setup("outage", store).await;
    // Fewest attempts: the outage alone must not make a record poison.
    s.start_consumer(2);
    for _ in 0..10 {
        s.publish(0, "inc:a").await;
        s.publish(1, "inc:b").await;
    }
    s.wait_counts(10, 10, Duration::from_secs(60)).await;

    redis.kill();
    let errors = || HANDLER_ERRORS.with_label_values(&[&s.group]).get();
    let before = errors();
    for _ in 0..10 {
        s.publish(0, "inc:a").await;
        s.publish(1, "inc:b").await;
    }
    // The first record to fail waits on the probe instead of using up its
    // attempts (the flush, and so the other partition, waits with it);
    // give it a few seconds of that.
    let start = Instant::now();
    while errors() == before {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the consumer did not fail while Redis was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    redis.restart();

    s.wait_counts(20, 20, Duration::from_secs(60)).await;
    assert!(s.dead_letters().is_empty(), "nothing dead-lettered");
    assert_eq!(
        POISON_RECORDS
            .with_label_values(&[&s.group, &s.names.user_events])
            .get(),
        0
    );
    s.shutdown.cancel();
}
