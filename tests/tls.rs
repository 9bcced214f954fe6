//! Mutual TLS (issue #17, item 4), against the real broker and Redis: with
//! a certificate from `mesh auth certs` the services serve only TLS clients
//! that present a certificate of the mesh's CA, and call each other the
//! same way; plaintext, a missing client certificate, a certificate of
//! another CA, and a server outside the trusted CA all fail.
//!
//! TLS is process-wide ([`mesh_runtime::tls::install`]), so this file holds
//! one test.
use std::time::Duration;

use mesh_e2e::{config, start, Servers};
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::profile::v1::GetProfileRequest;
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::recommend::v1::RecommendRequest;
use mesh_runtime::config::Env;
use mesh_runtime::tls::{self, Tls};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

fn pem(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// A GetProfile over `ep`: `Ok` for any answer from the service (NOT_FOUND
/// included), `Err` when no answer came through.
async fn answered(ep: Endpoint) -> Result<(), String> {
    let ch = ep
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    match ProfileServiceClient::new(ch)
        .get_profile(GetProfileRequest {
            tenant_id: "tls".into(),
            user_id: "u-1".into(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(format!("{:?}: {}", s.code(), s.message())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_speak_only_mutual_tls_with_the_mesh_ca() {
    let dir = std::env::temp_dir().join(mesh_testkit::unique("mesh-tls"));
    let good = tls::generate(&dir.join("good"), &[]).expect("certificates");
    let rogue = tls::generate(&dir.join("rogue"), &[]).expect("certificates");
    let env = Env::from_pairs([
        (tls::CERT_VAR, good.cert.to_str().unwrap()),
        (tls::KEY_VAR, good.key.to_str().unwrap()),
        (tls::CA_VAR, good.ca.to_str().unwrap()),
    ]);
    tls::install(Tls::from_env(&env).expect("valid TLS material"));
    let cfg = config(Servers::Real, "tls");
    let (mesh, shutdown) = start(&cfg).await;
    let addr = mesh.profile.grpc_addr;
    let https = format!("https://{addr}");
    let mut failures = Vec::new();

    // The mesh's own clients: mutual TLS.
    if let Err(e) = answered(tls::endpoint(&addr.to_string()).unwrap()).await {
        failures.push(format!("a client with the mesh's certificate: {e}"));
    }
    // Recommend asks profile over mutual TLS: no degraded answer.
    let ch = tls::endpoint(&mesh.recommend.grpc_addr.to_string())
        .unwrap()
        .connect_lazy();
    match RecommendServiceClient::new(ch)
        .recommend(RecommendRequest {
            tenant_id: "tls".into(),
            user_id: "u-1".into(),
            n: 5,
            ..Default::default()
        })
        .await
    {
        Ok(r) if r.get_ref().degraded.iter().all(|d| !d.contains("profile")) => {}
        Ok(r) => failures.push(format!(
            "recommend could not reach profile over TLS: {:?}",
            r.get_ref().degraded
        )),
        Err(s) => failures.push(format!("recommend over TLS: {s:?}")),
    }

    // Everyone else fails.
    let ca = Certificate::from_pem(pem(&good.ca));
    let cases: Vec<(&str, Endpoint)> = vec![
        (
            "plaintext",
            Endpoint::from_shared(format!("http://{addr}")).unwrap(),
        ),
        (
            "TLS without a client certificate",
            Endpoint::from_shared(https.clone())
                .unwrap()
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(ca.clone())
                        .domain_name("mesh"),
                )
                .unwrap(),
        ),
        (
            "a client certificate of another CA",
            Endpoint::from_shared(https.clone())
                .unwrap()
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(ca.clone())
                        .identity(Identity::from_pem(pem(&rogue.cert), pem(&rogue.key)))
                        .domain_name("mesh"),
                )
                .unwrap(),
        ),
        (
            "a client that trusts another CA",
            Endpoint::from_shared(https.clone())
                .unwrap()
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(pem(&rogue.ca)))
                        .identity(Identity::from_pem(pem(&rogue.cert), pem(&rogue.key)))
                        .domain_name("mesh"),
                )
                .unwrap(),
        ),
    ];
    for (what, ep) in cases {
        match answered(ep).await {
            Ok(()) => failures.push(format!("{what} was served")),
            Err(e) => eprintln!("{what}: refused ({e})"),
        }
    }

    shutdown.cancel();
    mesh.stopped(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
