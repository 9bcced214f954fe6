//! TLS settings for a `rediss://` store.
//!
//! A `rediss://` URL alone verifies the server against the system trust
//! store. [`RedisTls`] adds what a private deployment needs: the CA that
//! signed the servers' certificates (`MESH_REDIS_TLS_CA`), and a client
//! certificate and key for servers that run `tls-auth-clients yes`
//! (`MESH_REDIS_TLS_CERT`, `MESH_REDIS_TLS_KEY`). The handshake is rustls
//! with the ring provider, the one provider of the workspace.
use redis::{ClientTlsConfig, TlsCertificates};

use crate::{Error, Result};

/// The variables that fill a [`RedisTls`], named in configuration errors.
pub const CA_VAR: &str = "MESH_REDIS_TLS_CA";
pub const CERT_VAR: &str = "MESH_REDIS_TLS_CERT";
pub const KEY_VAR: &str = "MESH_REDIS_TLS_KEY";

/// PEM material for TLS to Redis; the default is "nothing beyond the URL".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CA certificate(s) to trust instead of the system roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate (chain) presented to the server.
    pub cert: Option<Vec<u8>>,
    /// The client certificate's private key.
    pub key: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whether each part is set, never its bytes (the key is secret).
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.is_some())
            .field("cert", &self.cert.is_some())
            .field("key", &self.key.is_some())
            .finish()
    }
}

impl RedisTls {
    /// Whether nothing is set (then a `rediss://` URL uses the system roots).
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// The certificates for the `redis` client; a certificate without its
    /// key (or the reverse) is a configuration error.
    pub(crate) fn certificates(&self) -> Result<TlsCertificates> {
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::Config(format!(
                    "{CERT_VAR} is set but {KEY_VAR} is not: a client certificate needs its key"
                )))
            }
            (None, Some(_)) => {
                return Err(Error::Config(format!(
                    "{KEY_VAR} is set but {CERT_VAR} is not: a client key needs its certificate"
                )))
            }
        };
        Ok(TlsCertificates {
            client_tls,
            root_cert: self.ca.clone(),
        })
    }
}

/// Whether `seed` (one URL of a topology) asks for TLS.
pub(crate) fn is_tls_url(seed: &str) -> bool {
    seed.starts_with("rediss://")
}

/// Refuses TLS settings for a URL that does not use TLS: they would be
/// ignored silently and the traffic would go in the clear.
pub(crate) fn check_scheme(seed: &str, tls: &RedisTls) -> Result<()> {
    if tls.is_empty() || is_tls_url(seed) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{CA_VAR}/{CERT_VAR}/{KEY_VAR} are set but the Redis URL {} is not TLS: use rediss:// \
         (rediss+cluster:// for a cluster) or unset them",
        redacted(seed)
    )))
}

/// Makes sure rustls has its process provider: ring, as tonic uses. With
/// ring the only provider compiled in rustls would pick it too; installing
/// it keeps that true if another crate ever enables a second one.
pub(crate) fn install_provider() {
    // Err = a provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `url` without its password (`rediss://user:secret@h` → `rediss://user:***@h`).
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// A connection error on a TLS URL, saying it was the TLS connection that
/// failed, where, and why (an unknown CA, a missing client certificate,
/// ...). Stays [`Error::Redis`], as any connection failure.
pub(crate) fn connect_error(url: &str, e: redis::RedisError) -> Error {
    if !url.split(',').any(|s| is_tls_url(s.trim())) {
        return Error::from(e);
    }
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let more = s.to_string();
        if !cause.contains(&more) {
            cause = format!("{cause}: {more}");
        }
        source = s.source();
    }
    Error::from(redis::RedisError::from((
        e.kind(),
        "TLS connection failed",
        format!(
            "to {} ({cause}); check {CA_VAR} (the CA that signed the server's certificate) and, \
             when the server requires client certificates, {CERT_VAR}/{KEY_VAR}",
            redacted(url)
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_need_a_tls_url_and_a_cert_needs_its_key() {
        let ca = RedisTls {
            ca: Some(b"pem".to_vec()),
            ..RedisTls::default()
        };
        assert!(check_scheme("rediss://h:1", &ca).is_ok());
        assert!(check_scheme("redis://h:1", &RedisTls::default()).is_ok());
        let e = check_scheme("redis://u:pw@h:1", &ca)
            .unwrap_err()
            .to_string();
        assert!(e.contains(CA_VAR) && e.contains("rediss://"), "{e}");
        assert!(!e.contains("pw"), "{e}");

        let half = RedisTls {
            cert: Some(b"pem".to_vec()),
            ..RedisTls::default()
        };
        let e = half.certificates().unwrap_err().to_string();
        assert!(e.contains(KEY_VAR), "{e}");
        assert!(!format!("{half:?}").contains("pem"));
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redacted("rediss://:s3@h:1"), "rediss://:***@h:1");
        assert_eq!(redacted("rediss://u:s3@h:1"), "rediss://u:***@h:1");
        assert_eq!(redacted("rediss://h:1"), "rediss://h:1");
    }
}
