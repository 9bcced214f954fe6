//! Kafka over TLS with the process-wide setting ([`mesh_bus::security`]),
//! against a real broker: the mesh's producer, admin and consumer loop
//! reach it over mutual TLS; a client without a certificate, and a
//! plaintext client, are refused.
//!
//! The test broker, tansu 0.6, cannot terminate TLS itself (its `--cert`
//! and `--key` flags are mutually exclusive and its listener is plain
//! TCP), so the test puts a TLS listener (rustls, requiring client
//! certificates signed by the test CA) in front of a tansu it starts, and
//! has tansu advertise that listener: every connection librdkafka makes,
//! bootstrap and partition leader alike, goes through TLS, as with a broker
//! behind a TLS-terminating proxy.
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_bus::consumer::Assignment;
use mesh_bus::headers::HeaderList;
use mesh_bus::security::{self, KafkaTls};
use mesh_bus::{
    ensure_topics, run_consumer, ConsumerConfig, Handler, HandlerError, Producer, ProducerConfig,
    Record, TopicNames, TopicSpec,
};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// The tansu binary, as `scripts/test.sh` found it (`ensure_tansu`).
fn tansu_binary() -> String {
    match std::env::var("MESH_TEST_TANSU") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "MESH_TEST_TANSU is not set: run the tests with `scripts/test.sh`, which installs \
             tansu and sets it to the binary's path"
        ),
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A tansu broker on a plaintext port that advertises `advertised`.
struct Tansu(Child);

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_tansu(port: u16, advertised: u16) -> Tansu {
    let child = Command::new(tansu_binary())
        .arg("broker")
        .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let mut t = Tansu(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = t.0.try_wait() {
            panic!("tansu exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "tansu never opened its port");
        std::thread::sleep(Duration::from_millis(50));
    }
    t
}

/// Serves TLS on `listener` (the mesh certificate, client certificates
/// signed by the CA required) and forwards the plaintext to `backend`.
fn tls_front(listener: StdListener, backend: u16, certs: &mesh_runtime::tls::Generated) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_file(&certs.key).expect("key PEM");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&certs.ca).expect("CA file") {
        roots.add(ca.expect("CA PEM")).expect("CA");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server identity");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake just ends this connection.
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
}

/// Collects what the consumer loop delivers.
#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl Handler for Collect {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let mut got = self.0.lock().unwrap();
        for r in records {
            got.push(String::from_utf8_lossy(&r.payload).into_owned());
        }
        Ok(())
    }
}

/// librdkafka's log lines, where it says why a connection failed.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

impl ClientContext for Logs {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, line: &str) {
        self.0.lock().unwrap().push(format!("{fac}: {line}"));
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("error: {error}: {reason}"));
    }
}
impl ConsumerContext for Logs {}

/// Fetches metadata with the installed setting; on failure, the error and
/// librdkafka's log.
fn metadata(brokers: &str) -> Result<(), String> {
    let logs = Logs::default();
    let c: BaseConsumer<Logs> = security::client_config()
        .set("bootstrap.servers", brokers)
        .set("group.id", mesh_testkit::unique("tls-probe"))
        .set_log_level(RDKafkaLogLevel::Info)
        .create_with_context(logs.clone())
        .map_err(|e| e.to_string())?;
    match c.fetch_metadata(None, Duration::from_secs(5)) {
        Ok(_) => Ok(()),
        Err(e) => {
            // Log lines and errors arrive as events, served by polling.
            for _ in 0..5 {
                let _ = c.poll(Duration::from_millis(100));
            }
            Err(format!("{e}; log: {}", logs.0.lock().unwrap().join(" | ")))
        }
    }
}

fn path(p: &Path) -> Option<std::path::PathBuf> {
    Some(p.to_path_buf())
}

// One test: the setting is process-wide, so its cases run in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_clients_reach_a_broker_over_mutual_tls_and_others_are_refused() {
    let dir = std::env::temp_dir().join(mesh_testkit::unique("kafka-tls"));
    let certs = mesh_runtime::tls::generate(&dir, &[]).expect("certificates");
    let front = StdListener::bind("127.0.0.1:0").expect("TLS port");
    let tls_port = front.local_addr().unwrap().port();
    let plain_port = free_port();
    let _tansu = start_tansu(plain_port, tls_port);
    tls_front(front, plain_port, &certs);
    let brokers = format!("127.0.0.1:{tls_port}");

    // Mutual TLS: topics, a publish and the consumer loop.
    security::install(Some(KafkaTls {
        ca: path(&certs.ca),
        cert: path(&certs.cert),
        key: path(&certs.key),
    }));
    let names = TopicNames::with_prefix(&mesh_testkit::unique("tls"));
    let spec = TopicSpec {
        partitions: 1,
        replication: 1,
    };
    ensure_topics(&brokers, &names, spec, Duration::from_secs(10))
        .await
        .expect("topics over TLS");
    let producer = Producer::new(ProducerConfig::new(&brokers, "tls-test")).expect("producer");
    for i in 0..3 {
        producer
            .send_to(
                &names.user_events,
                0,
                "k",
                format!("m{i}").as_bytes(),
                &HeaderList::new(),
            )
            .await
            .expect("publish over TLS");
    }
    let handler = Arc::new(Collect::default());
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        ConsumerConfig::new(
            &brokers,
            &mesh_testkit::unique("tls-group"),
            &[&names.user_events],
        ),
        handler.clone(),
        Assignment::default(),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while handler.0.lock().unwrap().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "consumed over TLS: {:?}",
            handler.0.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    consumer
        .await
        .expect("consumer task")
        .expect("consumer loop");
    assert_eq!(*handler.0.lock().unwrap(), ["m0", "m1", "m2"]);

    // TLS without a client certificate: the listener requires one.
    security::install(Some(KafkaTls {
        ca: path(&certs.ca),
        ..KafkaTls::default()
    }));
    let e = metadata(&brokers).expect_err("a client without a certificate must be refused");
    assert!(
        e.contains("ssl://") && e.contains("certificate required"),
        "{e}"
    );

    // Plaintext against the TLS listener.
    security::install(None);
    let e = metadata(&brokers).expect_err("a plaintext client must be refused");
    // The listener drops the connection at the client's first request.
    assert!(
        e.contains("Disconnected") && e.contains("APIVERSION_QUERY"),
        "{e}"
    );

    std::fs::remove_dir_all(&dir).ok();
}
