//! Mutual TLS between the mesh's processes and for its gRPC clients.
//!
//! `MESH_TLS_CERT` and `MESH_TLS_KEY` (PEM files) are this process's
//! identity, presented as its server certificate and as its client
//! certificate when it calls a peer; `MESH_TLS_CA` (PEM) is the mesh's CA:
//! servers accept only clients with a certificate it signed (mTLS), and
//! clients accept only servers it signed, for the name `MESH_TLS_SERVER_NAME`
//! (default `mesh`) whatever address they dial. Set all three or none; with
//! none, gRPC is plaintext (and the process says so at start).
//! `mesh auth certs --out DIR` makes a CA and one certificate for the mesh
//! ([`generate`]).
//!
//! Every gRPC server from [`crate::grpc::server`] and every channel from
//! [`endpoint`] (peers, the console, the simulators, `mesh` commands) uses
//! the installed configuration.
use std::sync::{Arc, LazyLock, Mutex};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::config::Env;
use crate::{Error, Result};

pub const CERT_VAR: &str = "MESH_TLS_CERT";
pub const KEY_VAR: &str = "MESH_TLS_KEY";
pub const CA_VAR: &str = "MESH_TLS_CA";
pub const SERVER_NAME_VAR: &str = "MESH_TLS_SERVER_NAME";

/// The PEM material of one process.
#[derive(Clone)]
pub struct Tls {
    cert: String,
    key: String,
    ca: String,
    server_name: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn read(var: &str, path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Config {
        var: var.into(),
        value: path.into(),
        reason: format!("cannot read: {e}"),
    })
}

impl Tls {
    /// From PEM text; checked by building the server side once.
    pub fn from_pem(cert: String, key: String, ca: String, server_name: String) -> Result<Tls> {
        let tls = Tls {
            cert,
            key,
            ca,
            server_name,
        };
        for (var, pem, what) in [
            (CERT_VAR, &tls.cert, "CERTIFICATE"),
            (KEY_VAR, &tls.key, "PRIVATE KEY"),
            (CA_VAR, &tls.ca, "CERTIFICATE"),
        ] {
            if !pem.contains("-----BEGIN ") || !pem.contains(what) {
                return Err(Error::Config {
                    var: var.into(),
                    value: String::new(),
                    reason: format!("expected a PEM file with a {what}"),
                });
            }
        }
        tonic::transport::Server::builder()
            .tls_config(tls.server())
            .map_err(|e| Error::Config {
                var: format!("{CERT_VAR}/{KEY_VAR}/{CA_VAR}"),
                value: String::new(),
                reason: format!("not a usable TLS identity: {e}"),
            })?;
        Ok(tls)
    }

    /// `MESH_TLS_CERT`, `MESH_TLS_KEY`, `MESH_TLS_CA` (all or none) and
    /// `MESH_TLS_SERVER_NAME`.
    pub fn from_env(env: &Env) -> Result<Option<Tls>> {
        let vars = [CERT_VAR, KEY_VAR, CA_VAR];
        let set: Vec<&str> = vars
            .iter()
            .copied()
            .filter(|v| env.get(v).is_some_and(|x| !x.is_empty()))
            .collect();
        if set.is_empty() {
            return Ok(None);
        }
        if set.len() < vars.len() {
            let missing: Vec<&str> = vars.iter().copied().filter(|v| !set.contains(v)).collect();
            return Err(Error::Config {
                var: missing.join(", "),
                value: String::new(),
                reason: format!("TLS needs {CERT_VAR}, {KEY_VAR} and {CA_VAR} together"),
            });
        }
        let get = |v: &str| read(v, env.get(v).unwrap_or_default());
        Tls::from_pem(
            get(CERT_VAR)?,
            get(KEY_VAR)?,
            get(CA_VAR)?,
            env.string(SERVER_NAME_VAR, "mesh"),
        )
        .map(Some)
    }

    /// The server side: this identity, clients must present a certificate
    /// signed by the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// The client side: trust the CA only, present this identity.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(self.server_name.clone())
    }
}

static INSTALLED: LazyLock<Mutex<Option<Arc<Tls>>>> = LazyLock::new(|| Mutex::new(None));

/// Makes `tls` the process's TLS for servers and channels built after this
/// call; `None` = plaintext.
pub fn install(tls: Option<Tls>) {
    *INSTALLED.lock().unwrap_or_else(|e| e.into_inner()) = tls.map(Arc::new);
}

/// A line for the start-up log.
pub fn describe() -> String {
    match installed() {
        Some(t) => format!("gRPC over mutual TLS (server name {:?})", t.server_name),
        None => format!(
            "gRPC is PLAINTEXT: set {CERT_VAR}, {KEY_VAR} and {CA_VAR} for mutual TLS (`mesh auth certs`)"
        ),
    }
}

/// The process's TLS, if any.
pub fn installed() -> Option<Arc<Tls>> {
    INSTALLED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// An endpoint for `url` (`http://host:port` or `host:port`), over mutual
/// TLS when the process has it (the scheme then becomes `https`).
pub fn endpoint(url: &str) -> std::result::Result<Endpoint, tonic::transport::Error> {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    match installed() {
        None => Endpoint::from_shared(url),
        Some(t) => {
            let url = match url.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => url,
            };
            Endpoint::from_shared(url)?.tls_config(t.client())
        }
    }
}

/// What [`generate`] writes.
pub struct Generated {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Writes a new CA (`ca.pem`) and one certificate for the mesh
/// (`mesh.pem`, `mesh-key.pem`, valid for the names `names` plus `mesh`,
/// `localhost` and `127.0.0.1`, for both server and client use) into `dir`.
/// The CA's key is not kept: new certificates need a new CA.
pub fn generate(dir: &std::path::Path, names: &[&str]) -> std::result::Result<Generated, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Lifecycle Mesh CA");
    ca.distinguished_name = dn;
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut sans: Vec<String> = vec!["mesh".into(), "localhost".into(), "127.0.0.1".into()];
    sans.extend(names.iter().map(|n| n.to_string()));
    let leaf_key = KeyPair::generate().map_err(e)?;
    let mut leaf = CertificateParams::new(sans).map_err(e)?;
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "mesh");
    leaf.distinguished_name = dn;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(e)?;

    std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    let out = Generated {
        ca: dir.join("ca.pem"),
        cert: dir.join("mesh.pem"),
        key: dir.join("mesh-key.pem"),
    };
    let write = |p: &std::path::Path, text: &str| {
        std::fs::write(p, text).map_err(|x| format!("{}: {x}", p.display()))
    };
    write(&out.ca, &ca_cert.pem())?;
    write(&out.cert, &leaf_cert.pem())?;
    write(&out.key, &leaf_key.serialize_pem())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out.key, std::fs::Permissions::from_mode(0o600))
            .map_err(|x| format!("{}: {x}", out.key.display()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_loads_and_partial_config_is_refused() {
        let dir = std::env::temp_dir().join(format!("mesh-tls-{}", std::process::id()));
        let g = generate(&dir, &["profile"]).unwrap();
        let (cert, key, ca) = (
            g.cert.to_str().unwrap(),
            g.key.to_str().unwrap(),
            g.ca.to_str().unwrap(),
        );
        let env = Env::from_pairs([(CERT_VAR, cert), (KEY_VAR, key), (CA_VAR, ca)]);
        let tls = Tls::from_env(&env).unwrap().expect("configured");
        assert_eq!(tls.server_name, "mesh");
        assert!(!format!("{tls:?}").contains("PRIVATE"));
        let env = Env::from_pairs([(CERT_VAR, cert), (KEY_VAR, key)]);
        let e = Tls::from_env(&env).unwrap_err().to_string();
        assert!(e.contains(CA_VAR) && e.contains("together"), "{e}");
        let env = Env::from_pairs([(CERT_VAR, ca), (KEY_VAR, cert), (CA_VAR, ca)]);
        let e = Tls::from_env(&env).unwrap_err().to_string();
        assert!(e.contains(KEY_VAR), "{e}");
        assert!(Tls::from_env(&Env::from_pairs([])).unwrap().is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
