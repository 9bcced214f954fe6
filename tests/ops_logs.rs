//! Issue 15, as an operator meets it.
//!
//! - `mesh up --simulate`, the binary on its embedded broker and in-memory
//!   store: after start-up it writes a handful of INFO lines a minute
//!   (start-up, state changes, periodic summaries; no line per event,
//!   batch or request), and SIGINT stops it in order (servers, consumers,
//!   producer, broker last) within a bound, with exit code 0 and not one
//!   ERROR or librdkafka line.
//! - A consumer built the way every service builds it
//!   (`Deps::consumer_config`, `service::start_consumer`) on the real
//!   broker and Redis dead-letters a record its handler can never apply,
//!   with the reason and the attempts in headers, and applies the rest.
//!   The policy itself is tested in `crates/mesh-bus/tests/poison.rs`.
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_bus::headers::{self, HeaderList};
use mesh_bus::metrics::POISON_RECORDS;
use mesh_bus::{
    ensure_topics, Handler, HandlerError, Producer, ProducerConfig, Record, TopicNames, TopicSpec,
};
use mesh_runtime::peers::Peers;
use mesh_runtime::service::{self, Deps};
use mesh_store::{RedisStore, StateStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// Start-up trains support's and fraud's models: 5 s on a quiet machine,
/// minutes on a busy one (debug build).
const START_WITHIN: Duration = Duration::from_secs(400);
/// Start-up lines (model training, partition assignment) are not counted.
const WARM_UP: Duration = Duration::from_secs(15);
/// How long INFO lines are counted after the warm-up.
const MEASURED: Duration = Duration::from_secs(45);
/// INFO lines a minute after start-up. Measured: 0 to 2 (see the issue);
/// one line per event at the simulator's 200 events/s would be 12,000, one
/// per batch or per wave hundreds.
const MAX_INFO_PER_MINUTE: f64 = 30.0;
/// From SIGINT to exit: the 10 s grace, the 5 s flush, the runtime's 5 s.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// One output line and when it arrived.
struct Line {
    at: Instant,
    text: String,
}

/// The line without ANSI colour codes.
fn plain(s: &str) -> String {
    regex::Regex::new("\x1b\\[[0-9;]*m")
        .expect("literal regex")
        .replace_all(s, "")
        .into_owned()
}

/// The tracing level of a log line (`<timestamp>  INFO message ...`).
fn level(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    let _timestamp = words.next()?;
    words
        .next()
        .filter(|w| ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(w))
}

/// Collects lines from `rx` until `until` (or until both pipes closed).
fn receive_until(rx: &mpsc::Receiver<Line>, until: Instant, lines: &mut Vec<Line>) {
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
}

#[test]
fn mesh_up_is_quiet_after_start_up_and_stops_silently_in_order() {
    let _e2e = mesh_e2e::exclusive_blocking();
    let bin = mesh_e2e::mesh_binary();
    let mut cmd = Command::new(&bin);
    cmd.args(["up", "--simulate"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The embedded default, default log filter and format, every listener
    // on a free port (other meshes may run on this machine).
    for (k, _) in std::env::vars() {
        if k.starts_with("MESH_") || k.starts_with("OTEL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1");
    for var in [
        "MESH_ADMIN_ADDR",
        "MESH_INGEST_GRPC_ADDR",
        "MESH_INGEST_HTTP_ADDR",
        "MESH_PROFILE_GRPC_ADDR",
        "MESH_CHURN_GRPC_ADDR",
        "MESH_RECOMMEND_GRPC_ADDR",
        "MESH_FRAUD_GRPC_ADDR",
        "MESH_LOGISTICS_GRPC_ADDR",
        "MESH_ENGAGE_GRPC_ADDR",
        "MESH_SUPPORT_GRPC_ADDR",
    ] {
        cmd.env(var, "127.0.0.1:0");
    }
    let mut child = cmd.spawn().expect("mesh starts");
    let (tx, rx) = mpsc::channel::<Line>();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let readers: Vec<_> = [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err) as Box<dyn std::io::Read + Send>,
    ]
    .into_iter()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(Line {
                    at: Instant::now(),
                    text: plain(&l),
                });
            }
        })
    })
    .collect();
    drop(tx);
    let mut lines: Vec<Line> = Vec::new();

    // Start-up: the banner comes once every service runs.
    let started = Instant::now();
    let up = loop {
        receive_until(&rx, Instant::now() + Duration::from_millis(200), &mut lines);
        if let Some(l) = lines
            .iter()
            .find(|l| l.text.contains("Lifecycle Mesh is up"))
        {
            break l.at;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
            panic!("mesh up exited at start: {status}\n{}", text.join("\n"));
        }
        assert!(
            started.elapsed() < START_WITHIN,
            "mesh up did not start within {START_WITHIN:?}"
        );
    };
    println!("mesh up started in {:.1} s", (up - started).as_secs_f64());
    let window = (up + WARM_UP, up + WARM_UP + MEASURED);
    receive_until(&rx, window.1, &mut lines);

    // SIGINT, as Ctrl-C in a terminal.
    let sigint = Instant::now();
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if sigint.elapsed() > STOP_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mesh up did not stop within {STOP_WITHIN:?} of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stop_took = sigint.elapsed();
    for r in readers {
        r.join().expect("reader");
    }
    receive_until(&rx, Instant::now() + Duration::from_millis(100), &mut lines);

    let info: Vec<&str> = lines
        .iter()
        .filter(|l| l.at >= window.0 && l.at < window.1)
        .filter(|l| level(&l.text) == Some("INFO"))
        .map(|l| l.text.as_str())
        .collect();
    let per_minute = info.len() as f64 * 60.0 / MEASURED.as_secs_f64();
    println!(
        "INFO lines after start-up: {} in {:?} = {per_minute:.1}/min (bound {MAX_INFO_PER_MINUTE}/min)",
        info.len(),
        MEASURED
    );
    for l in &info {
        println!("  {l}");
    }
    let after_sigint: Vec<&str> = lines
        .iter()
        .filter(|l| l.at >= sigint)
        .map(|l| l.text.as_str())
        .collect();
    println!(
        "stopped in {:.1} s with {status}; {} lines after SIGINT:",
        stop_took.as_secs_f64(),
        after_sigint.len()
    );
    for l in &after_sigint {
        println!("  {l}");
    }
    let errors: Vec<&str> = lines
        .iter()
        .map(|l| l.text.as_str())
        .filter(|l| level(l) == Some("ERROR") || l.contains("ERROR"))
        .collect();
    let librdkafka: Vec<&str> = lines
        .iter()
        .map(|l| l.text.as_str())
        .filter(|l| l.contains("librdkafka") || l.contains("rdkafka"))
        .collect();
    let warnings_at_stop: Vec<&str> = after_sigint
        .iter()
        .copied()
        .filter(|l| level(l) == Some("WARN"))
        .collect();
    println!(
        "ERROR lines: {}, librdkafka lines: {}, WARN lines after SIGINT: {}",
        errors.len(),
        librdkafka.len(),
        warnings_at_stop.len()
    );

    assert_eq!(status.code(), Some(0), "exit status after SIGINT");
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
    assert!(librdkafka.is_empty(), "librdkafka lines: {librdkafka:#?}");
    assert!(
        warnings_at_stop.is_empty(),
        "warnings at shutdown: {warnings_at_stop:#?}"
    );
    assert!(
        per_minute <= MAX_INFO_PER_MINUTE,
        "{per_minute:.1} INFO lines a minute after start-up (bound {MAX_INFO_PER_MINUTE}): {info:#?}"
    );
}

/// Applies every record except `poison`, which it refuses every time (a
/// record no retry will fix).
#[derive(Default)]
struct Picky {
    applied: Mutex<BTreeSet<String>>,
}

impl Handler for Picky {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        if records.iter().any(|r| r.payload == b"poison") {
            return Err(HandlerError("picky handler refuses this record".into()));
        }
        let mut applied = self.applied.lock().unwrap();
        for r in records {
            applied.insert(String::from_utf8_lossy(&r.payload).into_owned());
        }
        Ok(())
    }
}

/// Every record of partition 0 of `topic`, read until it stayed quiet 2 s.
fn read_topic(topic: &str) -> Vec<(HeaderList, Vec<u8>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mesh_testkit::kafka_brokers())
        .set("group.id", mesh_testkit::unique("dlq-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut quiet = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push((
                HeaderList::from_kafka(m.headers()),
                m.payload().unwrap_or_default().to_vec(),
            ));
            quiet = Instant::now() + Duration::from_secs(2);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_consumers_dead_letter_a_poison_record_and_apply_the_rest() {
    let _e2e = mesh_e2e::exclusive().await;
    let brokers = mesh_testkit::kafka_brokers();
    let prefix = mesh_testkit::unique("opspoison");
    let topics = TopicNames::with_prefix(&prefix);
    let spec = TopicSpec {
        partitions: 1,
        replication: 1,
    };
    ensure_topics(&brokers, &topics, spec, Duration::from_secs(10))
        .await
        .expect("topics");
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .expect("redis"),
    );
    let producer = Producer::new(ProducerConfig::new(&brokers, "opspoison")).expect("producer");
    let deps = Deps {
        brokers: brokers.clone(),
        topics: topics.clone(),
        partitions: 1,
        store,
        producer: producer.clone(),
        consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
        peers: Peers::default(),
        clock: mesh_runtime::clock::system(),
    };
    // What MESH_POISON_ATTEMPTS=2 does at start (the bound is per process;
    // no other test of this binary builds a consumer).
    let env = mesh_runtime::config::Env::from_pairs([("MESH_POISON_ATTEMPTS", "2")]);
    service::set_poison_attempts(service::poison_attempts_from(&env).unwrap());
    let bad = mesh_runtime::config::Env::from_pairs([("MESH_POISON_ATTEMPTS", "0")]);
    let e = service::poison_attempts_from(&bad).unwrap_err().to_string();
    assert!(e.contains("MESH_POISON_ATTEMPTS"), "{e}");

    let group = mesh_testkit::unique("opspoison");
    let cc = deps.consumer_config(&group, &[&topics.user_events]);
    let policy = cc.poison.as_ref().expect("poison policy on by default");
    assert_eq!(policy.dead_letter_topic, topics.dead_letter);
    assert_eq!(policy.max_attempts, 2);

    // Published before the consumer starts: the poison record sits in the
    // middle of a batch and has to be found.
    let mut poison_offset = -1;
    let mut expected = BTreeSet::new();
    for i in 0..10 {
        let payload = if i == 4 {
            "poison".to_string()
        } else {
            format!("ok-{i}")
        };
        let d = producer
            .send_to(
                &topics.user_events,
                0,
                "k",
                payload.as_bytes(),
                &HeaderList::new().with(headers::CE_TYPE, "test"),
            )
            .await
            .expect("publish");
        if i == 4 {
            poison_offset = d.offset;
        } else {
            expected.insert(payload);
        }
    }

    let handler = Arc::new(Picky::default());
    let shutdown = CancellationToken::new();
    let (_assigned, task) =
        service::start_consumer("opspoison", cc, handler.clone(), shutdown.clone());
    let started = Instant::now();
    while *handler.applied.lock().unwrap() != expected {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "applied {:?}, expected {expected:?}",
            handler.applied.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dl = tokio::task::spawn_blocking(move || read_topic(&topics.dead_letter))
        .await
        .unwrap();
    assert_eq!(dl.len(), 1, "one dead-letter record");
    let (h, payload) = &dl[0];
    assert_eq!(payload.as_slice(), b"poison");
    let reason = h.get(headers::DLQ_REASON).unwrap_or_default();
    assert!(reason.contains("picky handler refuses"), "{reason}");
    assert_eq!(h.get(headers::DLQ_ATTEMPTS), Some("2"));
    assert_eq!(h.get(headers::DLQ_ORIGIN), Some(group.as_str()));
    let user_events = TopicNames::with_prefix(&prefix).user_events;
    assert_eq!(
        h.get(headers::DLQ_SOURCE),
        Some(headers::dlq_source(&user_events, 0, poison_offset).as_str())
    );
    assert_eq!(
        POISON_RECORDS
            .with_label_values(&[&group, &user_events])
            .get(),
        1
    );
    shutdown.cancel();
    task.await.unwrap();
}
