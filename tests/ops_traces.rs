//! One ingest request is one trace: the ingest spans, and under the
//! publish span — across the broker, through the `traceparent` header —
//! one span per consuming service. Spans are collected in process with the
//! OpenTelemetry SDK's in-memory exporter.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mesh_e2e::{config, start, Servers};
use mesh_proto::events::v1::{self as ev, envelope::Body, Envelope};
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use opentelemetry_sdk::trace::InMemorySpanExporter;

/// Consumer spans the services open per record, with the parent taken from
/// the record's headers.
const CONSUMERS: &[&str] = &[
    "profile.apply",
    "fraud.apply",
    "churn.apply",
    "recommend.apply",
    "logistics.apply",
];

fn order(id: &str) -> Envelope {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    Envelope {
        event_id: id.to_string(),
        tenant_id: "demo".into(),
        user_id: format!("{id}-user"),
        occurred_at_ms: now - 1000,
        source: "test".into(),
        context: None,
        body: Some(Body::OrderPlaced(ev::OrderPlaced {
            order_id: format!("{id}-order"),
            items: vec![ev::LineItem {
                sku: "sku-1".into(),
                category: "books".into(),
                quantity: 1,
                unit_price: 20.0,
                ..Default::default()
            }],
            subtotal: 20.0,
            total: 20.0,
            currency: "EUR".into(),
            payment_method: "cod".into(),
            ship_to: Some(ev::Location {
                lat: 52.5,
                lon: 13.4,
                country: "DE".into(),
                region: "north".into(),
            }),
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_ingest_request_is_one_trace_across_every_consumer() {
    let exporter = InMemorySpanExporter::default();
    let _telemetry = mesh_runtime::telemetry::init_with_exporter(
        &mesh_runtime::config::Env::default(),
        "mesh-trace-test",
        exporter.clone(),
    )
    .expect("telemetry");
    let cfg = config(Servers::Real, "traces");
    let (mesh, shutdown) = start(&cfg).await;
    // Stop the mesh even when an assertion fails, so the runtime can end.
    let _stop_on_panic = shutdown.clone().drop_guard();
    let id = mesh_testkit::unique("trace");
    let mut c = IngestServiceClient::connect(format!("http://{}", mesh.ingest.grpc_addr))
        .await
        .unwrap();
    let r = c
        .publish(PublishRequest {
            events: vec![order(&id)],
        })
        .await
        .expect("publish")
        .into_inner();
    assert_eq!(r.accepted, 1);

    // Wait until every consumer's span for this event has ended.
    let start_wait = Instant::now();
    let (publish, consumers) = loop {
        let spans = exporter.get_finished_spans().unwrap();
        let publish = spans.iter().find(|s| s.name == "ingest.publish").cloned();
        let consumers: Vec<_> = spans
            .iter()
            .filter(|s| CONSUMERS.contains(&s.name.as_ref()))
            .filter(|s| {
                s.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "event_id" && kv.value.as_str() == id.as_str())
            })
            .cloned()
            .collect();
        let names: BTreeSet<&str> = consumers.iter().map(|s| s.name.as_ref()).collect();
        if (publish.is_some() && names.len() == CONSUMERS.len())
            || start_wait.elapsed() > Duration::from_secs(60)
        {
            break (publish, consumers);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let publish = publish.expect("an ingest.publish span");
    let trace = publish.span_context.trace_id();
    let spans = exporter.get_finished_spans().unwrap();
    // The gRPC handler span is the publish span's parent, in the same trace.
    let grpc = spans
        .iter()
        .find(|s| s.name == "ingest.grpc.Publish" && s.span_context.trace_id() == trace)
        .expect("ingest.grpc.Publish span in the trace");
    assert_eq!(publish.parent_span_id, grpc.span_context.span_id());

    let names: BTreeSet<&str> = consumers.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        CONSUMERS.iter().copied().collect::<BTreeSet<_>>(),
        "consumer spans for event {id}"
    );
    for s in &consumers {
        assert_eq!(
            s.span_context.trace_id(),
            trace,
            "{} in another trace",
            s.name
        );
        // The broker hop: the parent is the publish span, seen remotely.
        assert_eq!(
            s.parent_span_id,
            publish.span_context.span_id(),
            "{} is not a child of ingest.publish",
            s.name
        );
        assert!(
            s.parent_span_is_remote,
            "{}: parent should come from headers",
            s.name
        );
    }
    shutdown.cancel();
}
