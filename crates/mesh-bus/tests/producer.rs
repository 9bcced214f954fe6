//! `Producer::send_all` on the real broker: a batch lands in order within
//! each partition with every result in the caller's order, and after a
//! record the local queue refuses nothing later is sent, so no record
//! overtakes a failed one of the same key.
use std::time::Duration;

use mesh_bus::headers::HeaderList;
use mesh_bus::partition::partition_for;
use mesh_bus::producer::Outgoing;
use mesh_bus::{ensure_topics, Producer, ProducerConfig, TopicNames, TopicSpec};

const PARTITIONS: i32 = 2;

async fn topics() -> (String, TopicNames) {
    let brokers = mesh_testkit::kafka_brokers();
    let names = TopicNames::with_prefix(&mesh_testkit::unique("producer-test"));
    let spec = TopicSpec {
        partitions: PARTITIONS,
        replication: 1,
    };
    ensure_topics(&brokers, &names, spec, Duration::from_secs(10))
        .await
        .expect("topics");
    (brokers, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lands_in_order_per_partition_with_results_in_order() {
    let (brokers, names) = topics().await;
    let producer = Producer::new(ProducerConfig::new(&brokers, "producer-test")).expect("producer");
    let keys: Vec<String> = (0..40).map(|i| format!("user-{}", i % 5)).collect();
    let payloads: Vec<Vec<u8>> = (0..40).map(|i| format!("{i}").into_bytes()).collect();
    let headers = HeaderList::new().with("n", "1");
    let records: Vec<Outgoing> = keys
        .iter()
        .zip(&payloads)
        .map(|(key, payload)| Outgoing {
            topic: &names.user_events,
            key,
            payload,
            headers: &headers,
        })
        .collect();
    let results = producer.send_all(&records).await;
    assert_eq!(results.len(), records.len());
    let mut last_offset = [-1i64; PARTITIONS as usize];
    for (r, key) in results.iter().zip(&keys) {
        let d = r.as_ref().expect("acknowledged");
        assert_eq!(d.partition, partition_for(key, PARTITIONS), "{key}");
        let last = &mut last_offset[d.partition as usize];
        assert!(d.offset > *last, "offsets follow the batch's order");
        *last = d.offset;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_after_a_refused_record_is_sent() {
    let (brokers, names) = topics().await;
    let mut cfg = ProducerConfig::new(&brokers, "producer-test-full");
    // A local queue of 3 records: the 4th of a batch is refused.
    cfg.extra
        .push(("queue.buffering.max.messages".into(), "3".into()));
    cfg.extra.push(("batch.num.messages".into(), "1".into()));
    let producer = Producer::new(cfg).expect("producer");
    let headers = HeaderList::new();
    let record = Outgoing {
        topic: &names.user_events,
        key: "same-user",
        payload: b"x",
        headers: &headers,
    };
    let records = vec![record; 8];
    let results = producer.send_all(&records).await;
    let ok = results.iter().take_while(|r| r.is_ok()).count();
    assert!(
        ok >= 1 && ok < records.len(),
        "{ok} of {} sent",
        records.len()
    );
    assert!(
        results[ok..].iter().all(|r| r.is_err()),
        "a record after a refused one was sent: {results:?}"
    );
}

/// The poison policy's broker probe: a running broker answers, a port
/// with nothing listening does not (within the timeout, without hanging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_probe_tells_a_running_broker_from_none() {
    let (brokers, names) = topics().await;
    let up = Producer::new(ProducerConfig::new(&brokers, "probe-up")).unwrap();
    assert!(
        up.broker_answers(&names.dead_letter, Duration::from_secs(5))
            .await
    );
    let down = Producer::new(ProducerConfig::new("127.0.0.1:1", "probe-down")).unwrap();
    assert!(
        !down
            .broker_answers(&names.dead_letter, Duration::from_millis(500))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_sends_to_a_topic_share_one_partition_lookup() {
    let (brokers, names) = topics().await;
    let producer = Producer::new(ProducerConfig::new(&brokers, "lookup-test")).expect("producer");
    let headers = HeaderList::new();
    // 300 sends at once, none of which knows the topic yet: each used to
    // start a metadata client of its own.
    let sends = (0..300).map(|i| {
        let (producer, topic, headers) = (producer.clone(), names.order_events.clone(), &headers);
        async move {
            producer
                .send(&topic, &format!("user-{i}"), b"x", headers)
                .await
        }
    });
    let results = futures::future::join_all(sends).await;
    for r in &results {
        let d = r.as_ref().expect("acknowledged");
        assert!((0..PARTITIONS).contains(&d.partition), "{d:?}");
    }
    assert_eq!(producer.partition_lookups(), 1);
    assert_eq!(
        producer.partitions(&names.order_events).await.unwrap(),
        PARTITIONS
    );
    assert_eq!(producer.partition_lookups(), 1);
    // A topic that does not exist is not cached: every caller gets the
    // error, and a later call looks again.
    let mut cfg = ProducerConfig::new(&brokers, "lookup-missing");
    cfg.delivery_timeout = Duration::from_millis(300);
    let missing = Producer::new(cfg).expect("producer");
    let topic = mesh_testkit::unique("no-such-topic");
    assert!(missing.partitions(&topic).await.is_err());
    assert!(missing.partitions(&topic).await.is_err());
    assert_eq!(missing.partition_lookups(), 2);
}
