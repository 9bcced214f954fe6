//! `mesh status`: a summary of a running mesh, from outside it. Reads the
//! admin endpoint (`MESH_ADMIN_ADDR`: `/live`, `/ready`, `/metrics`,
//! `/api/console` for lag) and asks every service's gRPC health
//! (`grpc.health.v1`) at its configured address.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::node::MeshConfig;

/// Arguments of `mesh status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `mesh status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub admin: String,
    pub live: bool,
    /// `ready`, or why not.
    pub ready: String,
    /// gRPC health per service: `SERVING`, `NOT_SERVING`, or the error.
    pub services: BTreeMap<String, String>,
    pub ingested: f64,
    pub rejected: f64,
    pub dead_lettered: f64,
    pub consumed_by_group: BTreeMap<String, f64>,
    pub lag_by_group: BTreeMap<String, f64>,
    pub fraud_decisions: BTreeMap<String, f64>,
    pub churn_alerts: BTreeMap<String, f64>,
    pub handler_errors: f64,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kv = |m: &BTreeMap<String, f64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        writeln!(
            f,
            "Lifecycle Mesh at {}: {}, {}",
            self.admin,
            if self.live { "live" } else { "NOT LIVE" },
            self.ready
        )?;
        for (s, h) in &self.services {
            writeln!(f, "  {s:<10} {h}")?;
        }
        writeln!(
            f,
            "  events     {:.0} ingested, {:.0} rejected, {:.0} dead-lettered",
            self.ingested, self.rejected, self.dead_lettered
        )?;
        writeln!(f, "  consumed   {}", kv(&self.consumed_by_group))?;
        writeln!(f, "  lag        {}", kv(&self.lag_by_group))?;
        writeln!(f, "  errors     {:.0} failed batches", self.handler_errors)?;
        writeln!(f, "  fraud      {}", kv(&self.fraud_decisions))?;
        write!(f, "  churn      alerts: {}", kv(&self.churn_alerts))
    }
}

pub async fn run(cfg: &MeshConfig, args: &StatusArgs) -> anyhow::Result<()> {
    let s = collect(cfg).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("{s}");
    }
    Ok(())
}

/// An address to connect to: a wildcard listen address means this host.
fn reachable(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    }
}

/// Gathers the status; fails only when the admin endpoint does not answer.
pub async fn collect(cfg: &MeshConfig) -> anyhow::Result<Status> {
    let admin = reachable(cfg.admin_addr);
    let (live_code, _) = http_get(admin, "/live").await.map_err(|e| {
        anyhow::anyhow!("no mesh answers at MESH_ADMIN_ADDR={admin}: {e} (is `mesh up` running?)")
    })?;
    let (ready_code, ready_body) = http_get(admin, "/ready").await?;
    let (_, metrics) = http_get(admin, "/metrics").await?;
    let samples = parse_metrics(&metrics);
    let console = http_get(admin, "/api/console")
        .await
        .ok()
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok());
    let lag_by_group = console
        .as_ref()
        .and_then(|c| c["lag"]["groups"].as_object().cloned())
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, v.as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default();
    let services = [
        ("ingest", cfg.ingest.grpc_addr),
        ("profile", cfg.profile.grpc_addr),
        ("churn", cfg.churn.grpc_addr),
        ("recommend", cfg.recommend.grpc_addr),
        ("fraud", cfg.fraud.grpc_addr),
        ("logistics", cfg.logistics.grpc_addr),
    ];
    let mut health = BTreeMap::new();
    for (name, addr) in services {
        health.insert(name.to_string(), grpc_health(reachable(addr)).await);
    }
    Ok(Status {
        admin: admin.to_string(),
        live: live_code == 200,
        ready: if ready_code == 200 {
            "ready".into()
        } else {
            format!("not ready: {}", ready_body.trim())
        },
        services: health,
        ingested: total(&samples, "mesh_ingest_accepted_total"),
        rejected: total(&samples, "mesh_ingest_rejected_total"),
        dead_lettered: total(&samples, "mesh_ingest_dead_lettered_total"),
        consumed_by_group: sum(&samples, "mesh_bus_consumed_total", Some("group")),
        lag_by_group,
        fraud_decisions: sum(&samples, "mesh_fraud_decisions_total", Some("action"))
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches("ACTION_").to_lowercase(), v))
            .collect(),
        churn_alerts: sum(&samples, "mesh_churn_alerts_total", Some("kind")),
        handler_errors: total(&samples, "mesh_bus_handler_errors_total"),
    })
}

async fn grpc_health(addr: SocketAddr) -> String {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let ep = match mesh_runtime::tls::endpoint(&addr.to_string()) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2)),
        Err(e) => return format!("bad address {addr}: {e}"),
    };
    let ch = match ep.connect().await {
        Ok(c) => c,
        Err(e) => return format!("unreachable at {addr}: {e}"),
    };
    match HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(r) => ServingStatus::try_from(r.into_inner().status)
            .map(|s| s.as_str_name().to_string())
            .unwrap_or_else(|_| "UNKNOWN".into()),
        Err(s) => format!("health check at {addr}: {}", s.message()),
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped).
pub fn parse_metrics(text: &str) -> Vec<MetricSample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (head, BTreeMap::new()),
        };
        out.push(MetricSample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(match n {
                            'n' => '\n',
                            o => o,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.insert(k.trim_start_matches(',').trim().to_string(), val);
        rest = &after[end..];
    }
    out
}

/// Sum of every sample of `name` (0 when there is none).
pub fn total(samples: &[MetricSample], name: &str) -> f64 {
    sum(samples, name, None).values().sum::<f64>() + 0.0
}

/// Sums samples of `name` grouped by `label` (`None`: one group `""`).
pub fn sum(samples: &[MetricSample], name: &str, label: Option<&str>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        let k = label
            .and_then(|l| s.labels.get(l).cloned())
            .unwrap_or_default();
        *out.entry(k).or_insert(0.0) += s.value;
    }
    out
}

/// A minimal HTTP/1.1 GET (the admin endpoint is plain HTTP on loopback or
/// a cluster network); returns status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{}Connection: close\r\n\r\n",
                // MESH_AUTH_TOKEN when the mesh requires tokens.
                std::env::var(mesh_runtime::auth::CLIENT_TOKEN_VAR)
                    .ok()
                    .filter(|t| !t.is_empty())
                    .map(|t| format!("Authorization: Bearer {t}\r\n"))
                    .unwrap_or_default()
            )
            .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| anyhow::anyhow!("GET {path} at {addr} timed out"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("GET {path} at {addr}: not an HTTP response"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("GET {path} at {addr}: no status code"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        code,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let t = "# HELP x y\n# TYPE a counter\na_total{group=\"g1\",topic=\"t\"} 3\na_total{group=\"g2\",topic=\"t\"} 4\nb 1.5\nc{l=\"q\\\"x\"} 2\n";
        let s = parse_metrics(t);
        assert_eq!(s.len(), 4);
        let by = sum(&s, "a_total", Some("group"));
        assert_eq!(by["g1"], 3.0);
        assert_eq!(by["g2"], 4.0);
        assert_eq!(sum(&s, "b", None)[""], 1.5);
        assert_eq!(s[3].labels["l"], "q\"x");
    }

    #[test]
    fn dechunks_bodies() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
