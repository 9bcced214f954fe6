//! How this process's Kafka clients reach the broker: plaintext (the
//! default) or TLS.
//!
//! The setting is process-wide, like the gRPC TLS and the auth guard of
//! `mesh-runtime`: the process [`install`]s a [`KafkaTls`] once at start
//! (the mesh does it from `MESH_KAFKA_TLS_CA`, `MESH_KAFKA_TLS_CERT`,
//! `MESH_KAFKA_TLS_KEY`), and every librdkafka client the mesh builds —
//! producer, consumers, readers, admin — starts from [`client_config`], the
//! one place the setting is applied. TLS is librdkafka's own (OpenSSL);
//! the server's name is checked against its certificate.
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, RwLock};

use rdkafka::ClientConfig;

/// TLS for the Kafka clients: PEM files, read by librdkafka when a client
/// is created (a client created after the files change sees the new ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaTls {
    /// CA certificate(s) that signed the brokers' certificates; `None` =
    /// the system trust store.
    pub ca: Option<PathBuf>,
    /// Client certificate, for brokers that require one (mutual TLS).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
}

impl KafkaTls {
    /// The librdkafka properties this setting adds to every client.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let mut out = vec![("security.protocol", "ssl".to_string())];
        if let Some(ca) = &self.ca {
            out.push(("ssl.ca.location", path(ca)));
        }
        if let Some(cert) = &self.cert {
            out.push(("ssl.certificate.location", path(cert)));
        }
        if let Some(key) = &self.key {
            out.push(("ssl.key.location", path(key)));
        }
        out
    }

    /// A line for the start-up log (paths only, never key material).
    pub fn describe(&self) -> String {
        let show = |p: &Option<PathBuf>| match p {
            Some(p) => p.display().to_string(),
            None => "-".into(),
        };
        format!(
            "Kafka over TLS (CA {}, client certificate {})",
            match &self.ca {
                Some(_) => show(&self.ca),
                None => "the system roots".into(),
            },
            show(&self.cert)
        )
    }
}

static INSTALLED: LazyLock<RwLock<Option<Arc<KafkaTls>>>> = LazyLock::new(|| RwLock::new(None));

/// Makes `tls` the setting of every Kafka client created after this call;
/// `None` = plaintext.
pub fn install(tls: Option<KafkaTls>) {
    *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = tls.map(Arc::new);
}

/// The installed setting, if any.
pub fn installed() -> Option<Arc<KafkaTls>> {
    INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A line for the start-up log.
pub fn describe() -> String {
    match installed() {
        Some(t) => t.describe(),
        None => "Kafka is PLAINTEXT: set MESH_KAFKA_TLS_CA (and MESH_KAFKA_TLS_CERT/KEY for \
                 mutual TLS) for TLS"
            .into(),
    }
}

/// A new client configuration with the installed security applied: the
/// start of every rdkafka client of the mesh.
pub fn client_config() -> ClientConfig {
    let mut cc = ClientConfig::new();
    apply(&mut cc);
    cc
}

/// Applies the installed security to `cc` (nothing when plaintext).
pub fn apply(cc: &mut ClientConfig) {
    if let Some(tls) = installed() {
        for (k, v) in tls.properties() {
            cc.set(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_sets_the_protocol_the_ca_and_the_client_identity() {
        let tls = KafkaTls {
            ca: Some("/etc/mesh/ca.pem".into()),
            cert: Some("/etc/mesh/c.pem".into()),
            key: Some("/etc/mesh/k.pem".into()),
        };
        assert_eq!(
            tls.properties(),
            vec![
                ("security.protocol", "ssl".to_string()),
                ("ssl.ca.location", "/etc/mesh/ca.pem".to_string()),
                ("ssl.certificate.location", "/etc/mesh/c.pem".to_string()),
                ("ssl.key.location", "/etc/mesh/k.pem".to_string()),
            ]
        );
        let ca_only = KafkaTls {
            ca: Some("/ca.pem".into()),
            ..KafkaTls::default()
        };
        assert_eq!(ca_only.properties().len(), 2);
        assert!(ca_only.describe().contains("/ca.pem"));
    }

    #[test]
    fn installed_setting_reaches_every_client_config() {
        // The only test of this binary that installs anything: the setting
        // is process-wide.
        install(Some(KafkaTls {
            ca: Some("/ca.pem".into()),
            ..KafkaTls::default()
        }));
        let cc = client_config();
        assert_eq!(cc.get("security.protocol"), Some("ssl"));
        assert_eq!(cc.get("ssl.ca.location"), Some("/ca.pem"));
        install(None);
        assert_eq!(client_config().get("security.protocol"), None);
        assert!(describe().contains("PLAINTEXT"));
    }
}
