//! Bad input gets a clear per-event error and a dead-letter record, the
//! service keeps serving, and an unreachable broker gives UNAVAILABLE
//! promptly.
use std::time::{Duration, Instant};

use mesh_bus::headers;
use mesh_e2e::{config, events, start, Servers};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::json;

fn good(id: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    json!({"event_id": id, "tenant_id": "t", "user_id": "u1", "occurred_at_ms": now - 1000, "source": "test",
           "type": "order_placed", "data": {"order_id": "o1", "items": [{"sku": "s", "quantity": 1, "unit_price": 5.0}],
           "total": 5.0, "currency": "USD"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bad_input_is_named_and_dead_lettered() {
    let _e2e = mesh_e2e::shared().await;
    let cfg = config(Servers::Real, "bad");
    let (mesh, shutdown) = start(&cfg).await;
    let url = format!("http://{}/v1/events", mesh.ingest.http_addr);
    let http = reqwest::Client::new();

    let mut unknown = good("e-unknown");
    unknown["type"] = json!("teleported");
    let mut no_user = good("e-nouser");
    no_user.as_object_mut().unwrap().remove("user_id");
    let mut negative = good("e-neg");
    negative["data"]["total"] = json!(-3.0);
    let mut huge = good("e-huge");
    huge["type"] = json!("review_submitted");
    huge["data"] = json!({"sku": "s", "rating": 5, "text": "x".repeat(5 << 20)});
    let mut future = good("e-future");
    future["occurred_at_ms"] =
        json!(future["occurred_at_ms"].as_i64().unwrap() + 365 * 86_400_000i64);

    // One batch: four bad events around a good one.
    let batch = json!([unknown, no_user, good("e-good"), negative, future]);
    let r = http.post(&url).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 1, "{v}");
    let rejected = v["rejected"].as_array().unwrap();
    let by_index: Vec<(u64, &str, &str)> = rejected
        .iter()
        .map(|x| {
            (
                x["index"].as_u64().unwrap(),
                x["field"].as_str().unwrap(),
                x["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_index.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
        vec![
            (0, "type"),
            (1, "user_id"),
            (3, "order_placed.total"),
            (4, "occurred_at_ms"),
        ]
    );
    assert!(by_index[0].2.contains("teleported"), "{:?}", by_index[0]);
    assert!(by_index[2].2.contains(">= 0"), "{:?}", by_index[2]);
    assert!(by_index[3].2.contains("ahead"), "{:?}", by_index[3]);

    // A 5 MB event, malformed JSON, invalid UTF-8: each its own request.
    let r = http.post(&url).json(&huge).send().await.unwrap();
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["rejected"][0]["field"], "review_submitted.text", "{v}");
    for (body, needle) in [
        (b"{\"event_id\": ".to_vec(), "not valid JSON"),
        (b"{\"event_id\": \"\xff\xfe\"}".to_vec(), "UTF-8"),
    ] {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["rejected"][0]["reason"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{v}"
        );
    }

    // Seven rejected inputs from ingest are on the dead-letter topic, each with a reason.
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &mesh.backends.brokers)
        .set("group.id", mesh_testkit::unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&[&cfg.topics().dead_letter]).unwrap();
    let mut reasons = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reasons.len() < 7 && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), c.recv()).await {
            let h = m.headers().expect("dead-letter records carry headers");
            let origin = h
                .iter()
                .find(|x| x.key == headers::DLQ_ORIGIN)
                .and_then(|x| x.value);
            if origin != Some(b"http".as_slice()) {
                continue; // kept by another service; not part of this check
            }
            let reason = h
                .iter()
                .find(|x| x.key == headers::DLQ_REASON)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .expect("reason header");
            assert!(m.payload().is_some_and(|p| !p.is_empty()), "raw input kept");
            reasons.push(reason);
        }
    }
    assert_eq!(reasons.len(), 7, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("UTF-8")));

    // Still serving.
    let r = http.post(&url).json(&good("e-after")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_gives_unavailable_promptly() {
    let _e2e = mesh_e2e::shared().await;
    let mut pc = mesh_bus::ProducerConfig::new("127.0.0.1:1", "dead");
    pc.delivery_timeout = Duration::from_millis(1500);
    let producer = mesh_bus::Producer::new(pc).unwrap();
    let ledger = mesh_store::IdLedger::memory(Duration::from_secs(30), Duration::from_secs(60));
    let publisher = mesh_ingest::Publisher::new(
        producer,
        ledger,
        mesh_bus::TopicNames::with_prefix("dead"),
        1000,
        1000,
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = mesh_ingest::start(
        &mesh_ingest::IngestConfig::ephemeral(),
        publisher,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let mut c = mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient::connect(
        format!("http://{}", running.grpc_addr),
    )
    .await
    .unwrap();
    let evs = events("dead", 3, 5);
    let t = Instant::now();
    let err = c
        .publish(mesh_proto::ingest::v1::PublishRequest {
            events: evs.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    // The ids were released: a retry tries to publish again, not "duplicate".
    let err = c
        .publish(mesh_proto::ingest::v1::PublishRequest { events: evs })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    shutdown.cancel();
}

/// The labelled fraud traffic `mesh up --simulate` publishes passes ingest's
/// validation: every simulated order reaches the fraud service.
#[test]
fn fraud_simulator_events_are_valid() {
    let _e2e = mesh_e2e::shared_blocking();
    let now = 1_800_000_000_000;
    let stream = mesh_fraud_svc::live_sim::labelled_stream(
        &mesh_fraud_svc::scoring::quick_sim_params(),
        "demo",
        "fs",
        now,
    )
    .unwrap();
    assert!(stream.iter().any(|l| l.fraud == Some(true)));
    for l in &stream {
        if let Err(e) = mesh_ingest::validate::validate(&l.envelope, now) {
            panic!("{e:?}: {:?}", l.envelope);
        }
    }
}
