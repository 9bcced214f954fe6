//! The Redis connection: one server or a Redis Cluster, chosen by the URL.
//!
//! [`StoreConnection`] implements [`redis::aio::ConnectionLike`], so
//! commands, scripts and single-slot pipelines run on it unchanged in both
//! modes. What a cluster adds is routing, and it is done here once:
//! [`query_by_slot`] splits a pipeline whose commands touch several hash
//! slots into one pipeline per slot, and [`scan_nodes`] lists every
//! master to scan (a plain `SCAN` on a cluster sees one node only).
use std::collections::HashMap;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot as HashSlot};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::tls::RedisTls;
use crate::{Error, Result};

/// Where the store's Redis is, parsed from a URL (see
/// [`crate::RedisStore::connect`] for the accepted forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a proxy in front of a cluster).
    Single(String),
    /// A Redis Cluster reached through these seed nodes.
    Cluster(Vec<String>),
}

impl Topology {
    /// Parses a `MESH_REDIS_URL`-style value: one `redis://` / `rediss://`
    /// URL is a single server; several comma-separated URLs, or the scheme
    /// `redis+cluster://` (`rediss+cluster://`), name the seed nodes of a
    /// cluster. Seeds after the first may omit the scheme
    /// (`redis+cluster://10.0.0.1:7001,10.0.0.2:7001`).
    pub fn parse(url: &str) -> Result<Topology> {
        let parts: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let Some(first) = parts.first() else {
            return Err(Error::Config(
                "the Redis URL is empty; expected redis://host:port, several comma-separated \
                 URLs or redis+cluster://host:port,..."
                    .into(),
            ));
        };
        let (scheme, forced) = match first.split_once("://") {
            Some(("redis+cluster", _)) => ("redis", true),
            Some(("rediss+cluster", _)) => ("rediss", true),
            Some((s @ ("redis" | "rediss" | "redis+unix" | "unix"), _)) => (s, false),
            _ => {
                return Err(Error::Config(format!(
                    "bad Redis URL {first:?}: expected redis://host:port, rediss://host:port or \
                     redis+cluster://host:port,..."
                )))
            }
        };
        let seeds: Vec<String> = parts
            .iter()
            .map(|p| match p.split_once("://") {
                Some((_, rest)) => format!("{scheme}://{rest}"),
                None => format!("{scheme}://{p}"),
            })
            .collect();
        if forced || seeds.len() > 1 {
            Ok(Topology::Cluster(seeds))
        } else {
            Ok(Topology::Single(
                seeds.into_iter().next().expect("one seed"),
            ))
        }
    }
}

/// A connection to the store's Redis, cheap to clone (clones share the
/// multiplexed connection). Reconnects on its own in both modes.
#[derive(Clone)]
pub enum StoreConnection {
    /// One server, through a [`ConnectionManager`].
    Single(ConnectionManager),
    /// A Redis Cluster; commands are routed by their key's hash slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for StoreConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreConnection::Single(_) => "StoreConnection::Single",
            StoreConnection::Cluster(_) => "StoreConnection::Cluster",
        })
    }
}

impl StoreConnection {
    /// Connects to `url` (any form [`Topology::parse`] accepts); a
    /// `rediss://` URL verifies the server against the system roots.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &RedisTls::default()).await
    }

    /// Connects to `url` with TLS settings beyond the URL: the CA to trust
    /// and a client certificate ([`RedisTls`]). Settings with a URL that is
    /// not `rediss://` are refused ([`Error::Config`]); a failed TLS
    /// connection says so, with the URL and the cause.
    pub async fn connect_with(url: &str, tls: &RedisTls) -> Result<Self> {
        let topology = Topology::parse(url)?;
        let seeds = match &topology {
            Topology::Single(u) => std::slice::from_ref(u),
            Topology::Cluster(seeds) => seeds.as_slice(),
        };
        for s in seeds {
            crate::tls::check_scheme(s, tls)?;
        }
        if seeds.iter().any(|s| crate::tls::is_tls_url(s)) {
            crate::tls::install_provider();
        }
        let failed = |e| crate::tls::connect_error(url, e);
        match topology {
            Topology::Single(u) => {
                let client = if tls.is_empty() {
                    redis::Client::open(u)?
                } else {
                    redis::Client::build_with_tls(u, tls.certificates()?)?
                };
                Ok(StoreConnection::Single(
                    ConnectionManager::new(client).await.map_err(failed)?,
                ))
            }
            Topology::Cluster(seeds) => {
                let mut builder = ClusterClient::builder(seeds);
                if !tls.is_empty() {
                    builder = builder.certs(tls.certificates()?);
                }
                Ok(StoreConnection::Cluster(
                    builder
                        .build()?
                        .get_async_connection()
                        .await
                        .map_err(failed)?,
                ))
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, StoreConnection::Cluster(_))
    }
}

impl From<ConnectionManager> for StoreConnection {
    fn from(c: ConnectionManager) -> Self {
        StoreConnection::Single(c)
    }
}

impl From<ClusterConnection> for StoreConnection {
    fn from(c: ClusterConnection) -> Self {
        StoreConnection::Cluster(c)
    }
}

impl ConnectionLike for StoreConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            StoreConnection::Single(c) => c.req_packed_command(cmd),
            StoreConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            StoreConnection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            StoreConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            StoreConnection::Single(c) => c.get_db(),
            StoreConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// Runs single-key commands and returns their replies in the order given.
/// `cmds` pairs each command with the key it touches. On one server this
/// is one pipeline; on a cluster, where a pipeline must stay on one hash
/// slot, it is one pipeline per slot, sent concurrently. No input, no
/// round trip: Redis refuses an empty pipeline ("empty command").
pub(crate) async fn query_by_slot(
    conn: &StoreConnection,
    cmds: Vec<(String, Cmd)>,
) -> RedisResult<Vec<Value>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    if !conn.is_cluster() {
        let mut pipe = redis::pipe();
        for (_, c) in cmds {
            pipe.add_command(c);
        }
        return pipe.query_async(&mut conn.clone()).await;
    }
    let mut groups: HashMap<HashSlot, (Vec<usize>, Pipeline)> = HashMap::new();
    let n = cmds.len();
    for (i, (key, c)) in cmds.into_iter().enumerate() {
        let (idx, pipe) = groups
            .entry(HashSlot::for_key(key.as_bytes()))
            .or_insert_with(|| (Vec::new(), redis::pipe()));
        idx.push(i);
        pipe.add_command(c);
    }
    let runs = groups.into_values().map(|(idx, pipe)| {
        let mut c = conn.clone();
        async move {
            let vals: Vec<Value> = pipe.query_async(&mut c).await?;
            Ok::<_, redis::RedisError>((idx, vals))
        }
    });
    let mut out = vec![Value::Nil; n];
    for (idx, vals) in futures::future::try_join_all(runs).await? {
        for (i, v) in idx.into_iter().zip(vals) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// One server to scan: the connection's own (one server), or a master of
/// the cluster. A plain `SCAN` on a cluster connection reaches one random
/// node, so a cluster is scanned master by master.
#[derive(Debug, Clone)]
pub(crate) struct ScanNode(Option<RoutingInfo>);

/// The servers that hold every key: the one server, or every master.
pub(crate) async fn scan_nodes(conn: &StoreConnection) -> Result<Vec<ScanNode>> {
    match conn {
        StoreConnection::Single(_) => Ok(vec![ScanNode(None)]),
        StoreConnection::Cluster(_) => {
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn.clone())
                .await?;
            Ok(masters(&nodes)
                .into_iter()
                .map(|(host, port)| {
                    ScanNode(Some(RoutingInfo::SingleNode(
                        SingleNodeRoutingInfo::ByAddress { host, port },
                    )))
                })
                .collect())
        }
    }
}

/// One `SCAN cursor MATCH pattern COUNT 1000` page on `node`: the next
/// cursor (0 at the end) and the keys.
pub(crate) async fn scan_page(
    conn: &StoreConnection,
    node: &ScanNode,
    cursor: u64,
    pattern: &str,
) -> Result<(u64, Vec<String>)> {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000);
    let reply = match (conn, &node.0) {
        (StoreConnection::Cluster(c), Some(route)) => {
            c.clone().route_command(cmd, route.clone()).await?
        }
        _ => cmd.query_async(&mut conn.clone()).await?,
    };
    Ok(redis::from_redis_value(reply).map_err(redis::RedisError::from)?)
}

/// `(host, port)` of every master that is not failing, from a
/// `CLUSTER NODES` reply (`<id> <ip:port@cport[,hostname]> <flags> ...`).
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let addr = f.nth(1)?;
            let flags = f.next()?;
            let master = flags.split(',').any(|x| x == "master");
            let failing = flags
                .split(',')
                .any(|x| x.starts_with("fail") || x == "noaddr");
            if !master || failing {
                return None;
            }
            let hostport = addr.split(['@', ',']).next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_single_server() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6379").unwrap(),
            Topology::Single("redis://127.0.0.1:6379".into())
        );
    }

    #[test]
    fn several_urls_or_the_cluster_scheme_select_a_cluster() {
        let want = Topology::Cluster(vec![
            "redis://127.0.0.1:7001".into(),
            "redis://127.0.0.1:7002".into(),
        ]);
        assert_eq!(
            Topology::parse("redis://127.0.0.1:7001, redis://127.0.0.1:7002").unwrap(),
            want
        );
        assert_eq!(
            Topology::parse("redis+cluster://127.0.0.1:7001,127.0.0.1:7002").unwrap(),
            want
        );
        assert_eq!(
            Topology::parse("redis+cluster://127.0.0.1:7001").unwrap(),
            Topology::Cluster(vec!["redis://127.0.0.1:7001".into()])
        );
        assert_eq!(
            Topology::parse("rediss+cluster://a:1").unwrap(),
            Topology::Cluster(vec!["rediss://a:1".into()])
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_expected_forms() {
        for bad in ["", " , ", "http://x:1", "127.0.0.1:6379"] {
            let e = Topology::parse(bad).unwrap_err().to_string();
            assert!(e.contains("redis://"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let nodes = "\
07c3 127.0.0.1:30004@31004,host4 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            masters(nodes),
            vec![
                ("127.0.0.1".to_string(), 30002),
                ("127.0.0.1".to_string(), 30001)
            ]
        );
    }
}
