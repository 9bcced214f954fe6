//! TLS to Redis against a real `redis-server` with TLS, started here on a
//! free loopback port, with certificates from the generator behind
//! `mesh auth certs`: the CA makes a `rediss://` store work, no CA fails
//! the handshake with a message that says so, and a server that requires
//! client certificates takes the mesh's and refuses a client without one.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_store::{Op, PartitionBatch, RedisStore, RedisTls, Slot, StateStore};

/// A TLS-only `redis-server`, stopped when dropped.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Certs {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    paths: mesh_runtime::tls::Generated,
}

fn certs(dir: &Path) -> Certs {
    let paths = mesh_runtime::tls::generate(dir, &[]).expect("certificates");
    let read = |p: &Path| std::fs::read(p).expect("generated file");
    Certs {
        ca: read(&paths.ca),
        cert: read(&paths.cert),
        key: read(&paths.key),
        paths,
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `redis-server` with TLS only (no plaintext port) and waits until
/// it accepts connections. `auth_clients`: `tls-auth-clients yes|no`.
fn start(name: &str, auth_clients: bool) -> (TlsRedis, Certs) {
    let dir = std::env::temp_dir().join(mesh_testkit::unique(name));
    let certs = certs(&dir);
    let port = free_port();
    let arg = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .args(["--tls-cert-file", &arg(&certs.paths.cert)])
        .args(["--tls-key-file", &arg(&certs.paths.key)])
        .args(["--tls-ca-cert-file", &arg(&certs.paths.ca)])
        .args([
            "--tls-auth-clients",
            if auth_clients { "yes" } else { "no" },
        ])
        .args(["--save", "", "--appendonly", "no", "--dir", &arg(&dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server with TLS exited at start: {status} (built without TLS?)");
        }
        assert!(
            Instant::now() < deadline,
            "redis-server TLS port never opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (TlsRedis { child, port, dir }, certs)
}

/// Applies one batch and reads it back.
async fn round_trip(store: RedisStore) -> mesh_store::Result<()> {
    let store = StateStore::Redis(store);
    let mut b = PartitionBatch::new("events", 0);
    b.push(
        1,
        vec![Op::HIncr {
            key: "u:tls".into(),
            field: "n".into(),
            delta: 2,
        }],
    );
    let applied = store.apply("tls", &b).await?;
    assert_eq!(applied.applied, 1);
    let slot = Slot {
        scope: "tls",
        partition: 0,
    };
    assert_eq!(store.hgetall(slot, "u:tls").await?["n"], "2");
    Ok(())
}

#[tokio::test]
async fn the_ca_makes_a_rediss_store_work_and_no_ca_fails_the_handshake() {
    let (server, certs) = start("redis-tls", false);
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let prefix = mesh_testkit::unique("tls");
    let with_ca = RedisTls {
        ca: Some(certs.ca.clone()),
        ..RedisTls::default()
    };

    let store = RedisStore::connect_with(&url, &prefix, &with_ca)
        .await
        .expect("TLS store with the CA");
    round_trip(store).await.expect("apply and read over TLS");

    // The system roots do not know the test CA.
    let e = RedisStore::connect(&url, &prefix)
        .await
        .err()
        .expect("a server signed by an unknown CA must be refused")
        .to_string();
    assert!(e.contains("TLS") && e.contains(&url), "{e}");
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // TLS settings with a plaintext URL are a configuration error.
    let plain = format!("redis://127.0.0.1:{}", server.port);
    let e = RedisStore::connect_with(&plain, &prefix, &with_ca)
        .await
        .err()
        .expect("TLS settings with redis:// must be refused")
        .to_string();
    assert!(
        e.contains("MESH_REDIS_TLS_CA") && e.contains("rediss://"),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_that_requires_client_certificates_takes_ours_and_refuses_none() {
    let (server, certs) = start("redis-mtls", true);
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let prefix = mesh_testkit::unique("mtls");

    let mutual = RedisTls {
        ca: Some(certs.ca.clone()),
        cert: Some(certs.cert.clone()),
        key: Some(certs.key.clone()),
    };
    let store = RedisStore::connect_with(&url, &prefix, &mutual)
        .await
        .expect("mutual TLS store");
    round_trip(store)
        .await
        .expect("apply and read over mutual TLS");

    // Without a client certificate the server ends the handshake. Under
    // TLS 1.3 the client may learn it on its first command rather than at
    // connect; either way nothing is applied.
    let ca_only = RedisTls {
        ca: Some(certs.ca.clone()),
        ..RedisTls::default()
    };
    let e = match RedisStore::connect_with(&url, &prefix, &ca_only).await {
        Err(e) => e.to_string(),
        Ok(store) => round_trip(store)
            .await
            .expect_err("a client without a certificate must be refused")
            .to_string(),
    };
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // A certificate without its key is a configuration error.
    let half = RedisTls {
        key: None,
        ..mutual
    };
    let e = RedisStore::connect_with(&url, &prefix, &half)
        .await
        .err()
        .expect("a certificate without a key must be refused")
        .to_string();
    assert!(e.contains("MESH_REDIS_TLS_KEY"), "{e}");
}
