//! The whole mesh in one process: broker (embedded or real), state store
//! (in memory or Redis), every service, and the admin endpoints.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use mesh_bus::consumer::Assignment;
use mesh_bus::security::KafkaTls;
use mesh_bus::{EmbeddedKafka, Producer, ProducerConfig, TopicNames, TopicSpec};
use mesh_runtime::config::Env;
use mesh_runtime::peers::Peers;
use mesh_runtime::Deps;
use mesh_store::{IdLedger, MemoryStore, RedisStore, RedisTls, StateStore};
use tokio_util::sync::CancellationToken;

/// Where the mesh's servers are and how topics and keys are named
/// (`MESH_*` variables; see README.md).
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// `MESH_KAFKA_BROKERS`; unset = the embedded in-process cluster.
    pub brokers: Option<String>,
    /// `MESH_REDIS_URL`; unset = the in-memory store.
    pub redis_url: Option<String>,
    /// `MESH_TOPIC_PREFIX` (default `mesh`): topics are `<prefix>.user-events`, ...
    pub topic_prefix: String,
    /// `MESH_PARTITIONS` (default 8): partitions of each created topic.
    pub partitions: i32,
    /// `MESH_REPLICATION` (default 1): replication factor of created topics.
    pub replication: i32,
    /// `MESH_REDIS_PREFIX` (default `mesh`): prefix of every Redis key.
    pub key_prefix: String,
    /// `MESH_ADMIN_ADDR` (default 127.0.0.1:9090): `/live`, `/ready`, `/metrics`.
    pub admin_addr: SocketAddr,
    /// `MESH_DELIVERY_TIMEOUT_MS` (default 5000): how long a publish waits for
    /// the broker before answering UNAVAILABLE.
    pub delivery_timeout: Duration,
    /// `MESH_IDEMPOTENCY_TTL_MS` (default 24 h): how long retried event ids
    /// are recognised.
    pub idempotency_ttl: Duration,
    pub ingest: mesh_ingest::IngestConfig,
    pub profile: mesh_profile::ProfileConfig,
    pub fraud: mesh_fraud_svc::FraudConfig,
    pub churn: mesh_churn_svc::ChurnConfig,
    pub logistics: mesh_logistics_svc::LogisticsConfig,
    pub recommend: mesh_recommend_svc::RecommendConfig,
    pub engage: mesh_engage_svc::EngageConfig,
    pub support: mesh_support_svc::SupportConfig,
    /// Extra librdkafka settings for consumers (tests shorten timeouts).
    pub consumer_extra: Vec<(String, String)>,
    /// `MESH_PRODUCER_COMPRESSION` (default `zstd`): compression of
    /// produced record batches.
    pub producer_compression: String,
    /// `MESH_PRODUCER_LINGER_MS` (default 2): how long the producer waits
    /// to fill a batch.
    pub producer_linger: Duration,
    /// `MESH_POISON_ATTEMPTS` (default 5): attempts of a record that fails on
    /// its own, while the store answers, before it is dead-lettered.
    pub poison_attempts: u32,
    /// `MESH_CONSUMER_REJOIN_EMPTY_MS` (default 0, off): a consumer holding
    /// no partition for this long rejoins its group (a tansu 0.6
    /// workaround, see `mesh_bus::ConsumerConfig::rejoin_when_empty`).
    pub rejoin_empty: Duration,
    /// `MESH_CONSUMER_MAX_BATCH` (default 100,
    /// `mesh_runtime::service::DEFAULT_MAX_BATCH`): records of one
    /// partition per handler call and store step.
    pub consumer_max_batch: usize,
    /// `MESH_CONSUMER_IN_FLIGHT` (default 1,
    /// `mesh_runtime::service::DEFAULT_IN_FLIGHT`): batches of different
    /// partitions a consumer has in its handler at once.
    pub consumer_in_flight: usize,
    /// `MESH_CONSOLE_TENANT` (default: every tenant's demand summed): whose
    /// demand forecasts the console shows.
    pub console_tenant: String,
    /// `MESH_REDIS_TLS_CA`, `MESH_REDIS_TLS_CERT`, `MESH_REDIS_TLS_KEY`
    /// (PEM files, read at start): TLS settings for a `rediss://` store.
    pub redis_tls: RedisTls,
    /// `MESH_KAFKA_TLS_CA`, `MESH_KAFKA_TLS_CERT`, `MESH_KAFKA_TLS_KEY`
    /// (PEM files): TLS for every Kafka client; `None` = plaintext.
    pub kafka_tls: Option<KafkaTls>,
}

const REDIS_TLS_VARS: [&str; 3] = [
    mesh_store::tls::CA_VAR,
    mesh_store::tls::CERT_VAR,
    mesh_store::tls::KEY_VAR,
];
const KAFKA_TLS_VARS: [&str; 3] = [
    "MESH_KAFKA_TLS_CA",
    "MESH_KAFKA_TLS_CERT",
    "MESH_KAFKA_TLS_KEY",
];

/// A TLS file variable that is set: its path and the file's bytes.
type TlsFile = Option<(String, Vec<u8>)>;

/// The three TLS file variables `[ca, cert, key]`: each unset or a
/// readable file (its bytes), and a certificate only with its key.
fn tls_files(env: &Env, vars: [&str; 3]) -> mesh_runtime::Result<[TlsFile; 3]> {
    let read = |var: &str| -> mesh_runtime::Result<TlsFile> {
        let Some(path) = env.get(var).filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let bytes = std::fs::read(path).map_err(|e| mesh_runtime::Error::Config {
            var: var.into(),
            value: path.into(),
            reason: format!("cannot read: {e}"),
        })?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
            return Err(mesh_runtime::Error::Config {
                var: var.into(),
                value: path.into(),
                reason: "expected a PEM file".into(),
            });
        }
        Ok(Some((path.to_string(), bytes)))
    };
    let [ca, cert, key] = vars;
    let out = [read(ca)?, read(cert)?, read(key)?];
    if out[1].is_some() != out[2].is_some() {
        let (set, missing) = if out[1].is_some() {
            (cert, key)
        } else {
            (key, cert)
        };
        return Err(mesh_runtime::Error::Config {
            var: missing.into(),
            value: String::new(),
            reason: format!("{set} is set: a client certificate and its key go together"),
        });
    }
    Ok(out)
}

/// `MESH_REDIS_TLS_*`: the PEM bytes.
fn redis_tls(env: &Env) -> mesh_runtime::Result<RedisTls> {
    let [ca, cert, key] = tls_files(env, REDIS_TLS_VARS)?;
    let bytes = |f: TlsFile| f.map(|(_, b)| b);
    Ok(RedisTls {
        ca: bytes(ca),
        cert: bytes(cert),
        key: bytes(key),
    })
}

/// `MESH_KAFKA_TLS_*`: the paths (librdkafka reads the files), checked
/// readable now; any of them turns TLS on.
fn kafka_tls(env: &Env) -> mesh_runtime::Result<Option<KafkaTls>> {
    let files = tls_files(env, KAFKA_TLS_VARS)?;
    if files.iter().all(Option::is_none) {
        return Ok(None);
    }
    let [ca, cert, key] = files.map(|f| f.map(|(p, _)| std::path::PathBuf::from(p)));
    if env.get("MESH_KAFKA_BROKERS").is_none() {
        return Err(mesh_runtime::Error::Config {
            var: KAFKA_TLS_VARS.join("/"),
            value: String::new(),
            reason: "set without MESH_KAFKA_BROKERS: the embedded broker speaks plaintext".into(),
        });
    }
    Ok(Some(KafkaTls { ca, cert, key }))
}

/// `MESH_CONSOLE_TENANT`: a tenant id as ingest accepts them, or unset.
fn console_tenant(env: &Env) -> mesh_runtime::Result<String> {
    let t = env.string("MESH_CONSOLE_TENANT", "");
    if t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        Ok(t)
    } else {
        Err(mesh_runtime::Error::Config {
            var: "MESH_CONSOLE_TENANT".into(),
            value: t,
            reason: "expected a tenant id: up to 64 letters, digits, '_', '.', '-'".into(),
        })
    }
}

/// librdkafka settings of every consumer from `MESH_CONSUMER_*`; unset
/// variables keep the consumer's defaults.
fn consumer_extra(env: &Env) -> mesh_runtime::Result<Vec<(String, String)>> {
    let mut extra = Vec::new();
    // How long the group waits for a consumer that stopped answering before
    // its partitions move (librdkafka default 45 s); a group join takes
    // about half of it.
    if env.get("MESH_CONSUMER_SESSION_TIMEOUT_MS").is_some() {
        let t = env.millis("MESH_CONSUMER_SESSION_TIMEOUT_MS", Duration::from_secs(45))?;
        extra.push(("session.timeout.ms".into(), t.as_millis().to_string()));
    }
    // How long the broker may hold a fetch with too little data (the
    // consumer's default is 10 ms, see `ConsumerConfig::fetch_wait`).
    if env.get("MESH_CONSUMER_FETCH_WAIT_MS").is_some() {
        let t = env.millis("MESH_CONSUMER_FETCH_WAIT_MS", Duration::from_millis(10))?;
        extra.push(("fetch.wait.max.ms".into(), t.as_millis().to_string()));
    }
    Ok(extra)
}

/// The codecs librdkafka's `compression.type` takes.
const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// `MESH_PRODUCER_COMPRESSION`, checked against [`COMPRESSIONS`].
fn producer_compression(env: &Env) -> mesh_runtime::Result<String> {
    const VAR: &str = "MESH_PRODUCER_COMPRESSION";
    let v = env.string(VAR, "zstd").to_ascii_lowercase();
    if COMPRESSIONS.contains(&v.as_str()) {
        return Ok(v);
    }
    Err(mesh_runtime::Error::Config {
        var: VAR.into(),
        value: v,
        reason: format!("expected one of {}", COMPRESSIONS.join(", ")),
    })
}

/// `MESH_PRODUCER_LINGER_MS`: at most librdkafka's bound of 900,000 ms.
fn producer_linger(env: &Env) -> mesh_runtime::Result<Duration> {
    const VAR: &str = "MESH_PRODUCER_LINGER_MS";
    let t = env.millis(VAR, Duration::from_millis(2))?;
    if t > Duration::from_secs(900) {
        return Err(mesh_runtime::Error::Config {
            var: VAR.into(),
            value: t.as_millis().to_string(),
            reason: "must be at most 900000 (librdkafka's limit)".into(),
        });
    }
    Ok(t)
}

impl MeshConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        Ok(MeshConfig {
            brokers: env.get("MESH_KAFKA_BROKERS").map(str::to_string),
            redis_url: env.get("MESH_REDIS_URL").map(str::to_string),
            topic_prefix: env.string("MESH_TOPIC_PREFIX", "mesh"),
            partitions: env.positive("MESH_PARTITIONS", 8)?,
            replication: env.positive("MESH_REPLICATION", 1)?,
            key_prefix: env.string("MESH_REDIS_PREFIX", "mesh"),
            admin_addr: env.addr("MESH_ADMIN_ADDR", "127.0.0.1:9090")?,
            delivery_timeout: env.millis("MESH_DELIVERY_TIMEOUT_MS", Duration::from_secs(5))?,
            idempotency_ttl: env.millis("MESH_IDEMPOTENCY_TTL_MS", Duration::from_secs(86_400))?,
            ingest: mesh_ingest::IngestConfig::from_env(env)?,
            profile: mesh_profile::ProfileConfig::from_env(env)?,
            fraud: mesh_fraud_svc::FraudConfig::from_env(env)?,
            churn: mesh_churn_svc::ChurnConfig::from_env(env)?,
            logistics: mesh_logistics_svc::LogisticsConfig::from_env(env)?,
            recommend: mesh_recommend_svc::RecommendConfig::from_env(env)?,
            engage: mesh_engage_svc::EngageConfig::from_env(env)?,
            support: mesh_support_svc::SupportConfig::from_env(env)?,
            poison_attempts: mesh_runtime::service::poison_attempts_from(env)?,
            rejoin_empty: mesh_runtime::service::rejoin_empty_from(env)?,
            consumer_max_batch: mesh_runtime::service::max_batch_from(env)?,
            consumer_in_flight: mesh_runtime::service::in_flight_from(env)?,
            console_tenant: console_tenant(env)?,
            redis_tls: redis_tls(env)?,
            kafka_tls: kafka_tls(env)?,
            consumer_extra: consumer_extra(env)?,
            producer_compression: producer_compression(env)?,
            producer_linger: producer_linger(env)?,
        })
    }

    /// Every listener on an ephemeral loopback port; for tests and benches.
    pub fn ephemeral(brokers: Option<String>, redis_url: Option<String>, name: &str) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        let mut cfg = MeshConfig {
            brokers,
            redis_url,
            topic_prefix: name.to_string(),
            partitions: 4,
            replication: 1,
            key_prefix: name.to_string(),
            admin_addr: any,
            delivery_timeout: Duration::from_secs(5),
            idempotency_ttl: Duration::from_secs(3600),
            consumer_extra: vec![("session.timeout.ms".into(), "6000".into())],
            ingest: mesh_ingest::IngestConfig::ephemeral(),
            ..MeshConfig::from_env(&Env::default()).expect("defaults are valid")
        };
        for role in crate::serve::Role::ALL {
            if let Some((group, addr)) = cfg.group_and_addr(role) {
                *group = format!("{name}-{}", role.name());
                *addr = any;
            }
        }
        cfg
    }

    pub fn topics(&self) -> TopicNames {
        TopicNames::with_prefix(&self.topic_prefix)
    }

    /// The consumer group and gRPC address of `role`'s settings (none for
    /// ingest and the console, which consume nothing).
    pub fn group_and_addr(
        &mut self,
        role: crate::serve::Role,
    ) -> Option<(&mut String, &mut SocketAddr)> {
        use crate::serve::Role;
        Some(match role {
            Role::Profile => (&mut self.profile.group, &mut self.profile.grpc_addr),
            Role::Churn => (&mut self.churn.group, &mut self.churn.grpc_addr),
            Role::Recommend => (&mut self.recommend.group, &mut self.recommend.grpc_addr),
            Role::Fraud => (&mut self.fraud.group, &mut self.fraud.grpc_addr),
            Role::Logistics => (&mut self.logistics.group, &mut self.logistics.grpc_addr),
            Role::Engage => (&mut self.engage.group, &mut self.engage.grpc_addr),
            Role::Support => (&mut self.support.group, &mut self.support.grpc_addr),
            Role::Ingest | Role::Console => return None,
        })
    }
}

/// The servers behind the mesh, created or connected once.
pub struct Backends {
    /// Keeps the embedded cluster alive when there is one.
    pub embedded: Option<EmbeddedKafka>,
    pub brokers: String,
    pub store: StateStore,
    pub ledger: IdLedger,
    pub producer: Producer,
}

impl Backends {
    /// Connects to (or starts) the broker and the store, and creates topics.
    pub async fn connect(cfg: &MeshConfig) -> anyhow::Result<Self> {
        // Every Kafka client of the process is created after this point,
        // here or from what this returns: the one place the setting is
        // installed (`mesh up`, `mesh serve <role>` and the commands).
        if cfg.kafka_tls.is_some() && cfg.brokers.is_none() {
            anyhow::bail!(
                "MESH_KAFKA_TLS_* is set without MESH_KAFKA_BROKERS: the embedded broker speaks \
                 plaintext"
            );
        }
        mesh_bus::security::install(cfg.kafka_tls.clone());
        if cfg.brokers.is_some() {
            tracing::info!("{}", mesh_bus::security::describe());
        }
        let (embedded, brokers) = match &cfg.brokers {
            Some(b) => (None, b.clone()),
            None => {
                let e = EmbeddedKafka::start(1)?;
                let b = e.bootstrap_servers();
                tracing::info!(brokers = %b, "embedded Kafka-protocol cluster started (MESH_KAFKA_BROKERS unset)");
                (Some(e), b)
            }
        };
        create_topics(
            embedded.as_ref(),
            &brokers,
            &cfg.topics(),
            TopicSpec {
                partitions: cfg.partitions,
                replication: cfg.replication,
            },
        )
        .await?;
        let pending = Duration::from_secs(30);
        let (store, ledger) = match &cfg.redis_url {
            Some(url) => {
                let s = RedisStore::connect_with(url, &cfg.key_prefix, &cfg.redis_tls)
                    .await
                    .map_err(|e| anyhow::anyhow!("redis at {url}: {e}"))?;
                let ledger = IdLedger::redis(
                    s.connection(),
                    &format!("{}:ingest", cfg.key_prefix),
                    pending,
                    cfg.idempotency_ttl,
                );
                (StateStore::Redis(s), ledger)
            }
            None => (
                StateStore::Memory(MemoryStore::new(&cfg.key_prefix)),
                IdLedger::memory(pending, cfg.idempotency_ttl),
            ),
        };
        let mut pc = ProducerConfig::new(&brokers, "mesh");
        pc.delivery_timeout = cfg.delivery_timeout;
        pc.compression = cfg.producer_compression.clone();
        pc.linger_ms = cfg.producer_linger.as_millis() as u32;
        let producer = Producer::new(pc)?;
        Ok(Backends {
            embedded,
            brokers,
            store,
            ledger,
            producer,
        })
    }

    /// `deps` with `peers` and a Redis connection of the service's own:
    /// on one shared connection every service's reads wait, in order,
    /// behind every consumer's queued apply scripts; on its own they wait
    /// at most for the script Redis is running. The in-memory store is
    /// shared as it is.
    pub async fn service_deps(
        &self,
        cfg: &MeshConfig,
        deps: &Deps,
        peers: Peers,
    ) -> anyhow::Result<Deps> {
        let store = match (&self.store, &cfg.redis_url) {
            (StateStore::Redis(_), Some(url)) => StateStore::Redis(
                RedisStore::connect_with(url, &cfg.key_prefix, &cfg.redis_tls)
                    .await
                    .map_err(|e| anyhow::anyhow!("redis at {url}: {e}"))?,
            ),
            _ => self.store.clone(),
        };
        Ok(Deps {
            store,
            ..deps.with_peers(peers)
        })
    }

    /// The broker for reports: its address, or `embedded`.
    pub fn broker_name(&self) -> String {
        if self.embedded.is_some() {
            "embedded".into()
        } else {
            self.brokers.clone()
        }
    }

    /// What every service needs from the process, on the wall clock and
    /// with no peers (each service gets its own with [`Deps::with_peers`]).
    /// Also sets the process's poison-attempts bound, which every consumer
    /// built from these `Deps` uses.
    pub fn deps(&self, cfg: &MeshConfig) -> Deps {
        mesh_runtime::service::set_poison_attempts(cfg.poison_attempts);
        mesh_runtime::service::set_rejoin_empty(cfg.rejoin_empty);
        mesh_runtime::service::set_max_batch(cfg.consumer_max_batch);
        mesh_runtime::service::set_in_flight(cfg.consumer_in_flight);
        Deps {
            brokers: self.brokers.clone(),
            topics: cfg.topics(),
            partitions: cfg.partitions,
            store: self.store.clone(),
            producer: self.producer.clone(),
            consumer_extra: cfg.consumer_extra.clone(),
            peers: Peers::default(),
            clock: mesh_runtime::clock::system(),
        }
    }
}

/// Creates missing topics: through the admin API on a real broker, directly
/// on the embedded cluster (which has no CreateTopics).
pub async fn create_topics(
    embedded: Option<&EmbeddedKafka>,
    brokers: &str,
    topics: &TopicNames,
    spec: TopicSpec,
) -> anyhow::Result<()> {
    match embedded {
        Some(e) => {
            e.create_topics(&topics.all(), spec.partitions)?;
            e.create_topics(&topics.outputs(), spec.partitions)?;
        }
        None => {
            mesh_bus::ensure_topics(brokers, topics, spec, Duration::from_secs(10))
                .await
                .map_err(|e| anyhow::anyhow!("broker at {brokers}: {e}"))?;
            mesh_bus::ensure_output_topics(brokers, topics, spec, Duration::from_secs(10))
                .await
                .map_err(|e| anyhow::anyhow!("broker at {brokers}: {e}"))?;
        }
    }
    Ok(())
}

/// A running mesh.
pub struct Mesh {
    pub backends: Backends,
    pub ingest: mesh_ingest::Running,
    pub profile: mesh_profile::Running,
    pub fraud: mesh_fraud_svc::Running,
    pub churn: mesh_churn_svc::Running,
    pub logistics: mesh_logistics_svc::Running,
    pub recommend: mesh_recommend_svc::Running,
    pub engage: mesh_engage_svc::Running,
    pub support: mesh_support_svc::Running,
    /// Admin endpoints and the console (`/console`).
    pub admin_addr: SocketAddr,
    /// The latest consumer-lag sample.
    pub lag: crate::lag::SharedLag,
}

/// The front of the mesh: the backends, ingest and profile (what an
/// event goes through until `GetProfile` shows it).
pub struct Front {
    pub backends: Backends,
    pub ingest: mesh_ingest::Running,
    pub profile: mesh_profile::Running,
}

/// Starts ingest and profile in this process: [`start`] adds the other
/// services; `mesh bench ingest` measures these alone.
pub async fn start_front(cfg: &MeshConfig, shutdown: CancellationToken) -> anyhow::Result<Front> {
    let backends = Backends::connect(cfg).await?;
    let publisher = mesh_ingest::Publisher::new(
        backends.producer.clone(),
        backends.ledger.clone(),
        cfg.topics(),
        cfg.ingest.max_in_flight,
        cfg.ingest.max_batch,
    );
    let ingest = mesh_ingest::start(&cfg.ingest, publisher, shutdown.clone()).await?;
    let deps = backends.deps(cfg);
    let profile = mesh_profile::start(
        &cfg.profile,
        &backends.service_deps(cfg, &deps, Peers::default()).await?,
        shutdown.clone(),
    )
    .await?;
    Ok(Front {
        backends,
        ingest,
        profile,
    })
}

/// Starts every service in this process.
pub async fn start(cfg: &MeshConfig, shutdown: CancellationToken) -> anyhow::Result<Mesh> {
    let Front {
        backends,
        ingest,
        profile,
    } = start_front(cfg, shutdown.clone()).await?;
    let deps = backends.deps(cfg);
    // In one process the services still ask each other over gRPC, on the
    // addresses they just bound: the same code path as separate processes.
    let peer = |name: &'static str, addr: SocketAddr| {
        mesh_runtime::peers::Peer::connect(mesh_runtime::peers::PeerConfig::new(
            name,
            vec![format!("http://{addr}")],
        ))
    };
    let profile_peer = Some(peer("profile", profile.grpc_addr)?);
    let only_profile = Peers {
        profile: profile_peer.clone(),
        ..Peers::default()
    };
    let fraud = mesh_fraud_svc::start(
        &cfg.fraud,
        &backends
            .service_deps(cfg, &deps, only_profile.clone())
            .await?,
        shutdown.clone(),
    )
    .await?;
    let fraud_peer = Some(peer("fraud", fraud.grpc_addr)?);
    let recommend = mesh_recommend_svc::start(
        &cfg.recommend,
        &backends.service_deps(cfg, &deps, only_profile).await?,
        shutdown.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("recommend: {e}"))?;
    let recommend_peer = Some(peer("recommend", recommend.grpc_addr)?);
    let churn_peers = Peers {
        recommend: recommend_peer.clone(),
        ..Peers::default()
    };
    let churn = mesh_churn_svc::start(
        &cfg.churn,
        &backends.service_deps(cfg, &deps, churn_peers).await?,
        shutdown.clone(),
    )
    .await?;
    let engage_peers = Peers {
        profile: profile_peer,
        churn: Some(peer("churn", churn.grpc_addr)?),
        ..Peers::default()
    };
    let engage = mesh_engage_svc::start(
        &cfg.engage,
        &backends.service_deps(cfg, &deps, engage_peers).await?,
        shutdown.clone(),
    )
    .await?;
    let support_peers = Peers {
        fraud: fraud_peer.clone(),
        recommend: recommend_peer,
        ..Peers::default()
    };
    let support = mesh_support_svc::start(
        &cfg.support,
        &backends.service_deps(cfg, &deps, support_peers).await?,
        shutdown.clone(),
    )
    .await?;
    let logistics_peers = Peers {
        fraud: fraud_peer,
        ..Peers::default()
    };
    let logistics = mesh_logistics_svc::start(
        &cfg.logistics,
        &backends.service_deps(cfg, &deps, logistics_peers).await?,
        shutdown.clone(),
    )
    .await?;
    // Readiness: every service's consumers assigned and the store
    // answering (pinged in the background so /ready never blocks on Redis).
    let store_ok = spawn_store_pinger(&backends.store, shutdown.clone());
    let ready = ready_check(
        vec![
            ("profile", profile.assigned.clone()),
            ("fraud", fraud.assigned.clone()),
            ("churn", churn.assigned.clone()),
            ("logistics", logistics.assigned.clone()),
            ("recommend", recommend.assigned.clone()),
            ("recommend flags", recommend.flags_assigned.clone()),
            ("engage", engage.assigned.clone()),
            ("support", support.assigned.clone()),
        ],
        store_ok,
        Peers::default(),
    );
    zero_failure_series(cfg);
    let lag = crate::lag::spawn(
        backends.brokers.clone(),
        lag_groups(cfg),
        lag_topics(cfg),
        cfg.partitions,
        Duration::from_secs(5),
        shutdown.clone(),
    );
    let console = crate::console::ConsoleCtx::new(
        cfg.topics(),
        lag.clone(),
        crate::console_stages::spawn(
            backends.brokers.clone(),
            cfg.topics().lifecycle,
            cfg.partitions,
            shutdown.clone(),
        ),
        crate::console::Addrs::local(
            churn.grpc_addr,
            fraud.grpc_addr,
            logistics.grpc_addr,
            engage.grpc_addr,
        ),
    )
    .with_tenant(&cfg.console_tenant);
    crate::console::spawn_sampler(&console, shutdown.clone());
    let admin = mesh_runtime::admin::router(ready).merge(crate::console::router(console));
    let (admin_addr, _) = mesh_runtime::admin::serve(cfg.admin_addr, admin, shutdown).await?;
    Ok(Mesh {
        backends,
        ingest,
        profile,
        fraud,
        churn,
        logistics,
        recommend,
        engage,
        support,
        admin_addr,
        lag,
    })
}

/// Pings the store every 2 s in the background; the flag says whether the
/// last ping was answered within 1 s.
pub fn spawn_store_pinger(store: &StateStore, stop: CancellationToken) -> Arc<AtomicBool> {
    let ok = Arc::new(AtomicBool::new(false));
    let (store, flag) = (store.clone(), ok.clone());
    let backend = match &store {
        StateStore::Redis(_) => "redis",
        _ => "memory",
    };
    tokio::spawn(async move {
        loop {
            let started = std::time::Instant::now();
            let up = matches!(
                tokio::time::timeout(Duration::from_secs(1), store.ping()).await,
                Ok(Ok(()))
            );
            if up {
                mesh_runtime::metrics::STORE_PING_SECONDS
                    .with_label_values(&[backend])
                    .observe(started.elapsed().as_secs_f64());
            }
            flag.store(up, Ordering::Relaxed);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
    ok
}

/// `/ready`: every consumer named in `consumers` has partitions, the store
/// answers, and every peer has answered at least once since start. A peer
/// that goes away later does not make the service unready: it answers
/// degraded instead (taking it out of rotation would spread the outage).
pub fn ready_check(
    consumers: Vec<(&'static str, Assignment)>,
    store_ok: Arc<AtomicBool>,
    peers: Peers,
) -> mesh_runtime::admin::ReadyCheck {
    Arc::new(move || {
        if let Some((name, _)) = consumers.iter().find(|(_, a)| a.partitions() == 0) {
            return Err(format!("{name} has no partitions assigned yet"));
        }
        if !store_ok.load(Ordering::Relaxed) {
            return Err("state store does not answer".into());
        }
        if let Some(p) = peers.all().into_iter().find(|p| !p.has_answered()) {
            return Err(format!("peer {} has not answered yet", p.name()));
        }
        Ok(())
    })
}

impl Mesh {
    /// The ordered stop, after the shutdown token was cancelled: the gRPC
    /// and HTTP servers stop accepting and finish their requests; the
    /// consumers finish the batches in their handler (dropping what they
    /// had buffered), commit and leave their groups; the periodic work
    /// (sweeps, planner, pricer, reloads) ends; the producer is flushed.
    /// Every step shares one `grace` deadline; servers and periodic work
    /// still running after it are aborted, consumers are left to their own
    /// bounded final commit, and [`Stopped::consumers_stopped`] says so.
    pub async fn stopped(self, grace: Duration) -> Stopped {
        let deadline = tokio::time::Instant::now() + grace;
        let mut servers = self.ingest.tasks;
        servers.extend([
            self.profile.server,
            self.fraud.server,
            self.churn.server,
            self.logistics.server,
            self.recommend.server,
            self.engage.server,
            self.support.server,
        ]);
        join_until(deadline, "servers", servers, true).await;
        let consumers = vec![
            self.profile.consumer,
            self.fraud.consumer,
            self.churn.consumer,
            self.logistics.consumer,
            self.recommend.consumer,
            self.recommend.flags_consumer,
            self.engage.consumer,
            self.support.consumer,
        ];
        let consumers_stopped = join_until(deadline, "consumers", consumers, false).await;
        let mut periodic = vec![
            self.profile.sweeper,
            self.churn.sweeper,
            self.logistics.planner,
            self.logistics.retention,
            self.recommend.watcher,
            self.engage.pricer,
        ];
        periodic.extend(self.fraud.reloader);
        periodic.extend(self.fraud.model_watcher);
        join_until(deadline, "periodic tasks", periodic, true).await;
        if let Err(e) = self.backends.producer.flush(Duration::from_secs(5)) {
            tracing::warn!(%e, "producer flush at shutdown failed; unsent records are lost");
        }
        Stopped {
            embedded: self.backends.embedded,
            consumers_stopped,
        }
    }
}

/// What [`Mesh::stopped`] leaves to its caller.
pub struct Stopped {
    /// The embedded broker, if any, for the caller to stop last: after the
    /// runtime is shut down and with it every task still holding a client
    /// of the broker (samplers, the shared producer), so that no client
    /// loses its broker while it is still connected (librdkafka logs an
    /// ERROR per lost connection).
    pub embedded: Option<EmbeddedKafka>,
    /// Whether every consumer returned within the grace. When false some
    /// are still running (applying a batch or in their final commit) and
    /// still write to the store: a caller must not delete or reuse the
    /// mesh's keys yet.
    pub consumers_stopped: bool,
}

/// Waits for `tasks` until `deadline`; then aborts the ones still running
/// when `abort`, or leaves them be. True when every task ended in time.
pub(crate) async fn join_until(
    deadline: tokio::time::Instant,
    what: &'static str,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    abort: bool,
) -> bool {
    let handles: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    if tokio::time::timeout_at(deadline, futures::future::join_all(tasks))
        .await
        .is_ok()
    {
        return true;
    }
    tracing::warn!(what, "did not stop within the shutdown grace period");
    if abort {
        handles.iter().for_each(|h| h.abort());
    }
    false
}

/// Zero-valued series for alert inputs that only move on failures (handler
/// errors, poison records), so `rate()` and `increase()` over them are 0
/// rather than absent.
pub fn zero_failure_series(cfg: &MeshConfig) {
    mesh_runtime::auth::zero_series();
    for g in lag_groups(cfg) {
        mesh_bus::metrics::HANDLER_ERRORS.with_label_values(&[g.name.as_str()]);
        mesh_bus::metrics::STORE_RESUMES.with_label_values(&[g.name.as_str()]);
        for t in &g.topics {
            mesh_bus::metrics::POISON_RECORDS.with_label_values(&[g.name.as_str(), t.as_str()]);
        }
    }
}

/// Every consumer group of the mesh and the topics it reads.
pub fn lag_groups(cfg: &MeshConfig) -> Vec<crate::lag::Group> {
    let t = cfg.topics();
    let both = vec![t.user_events.clone(), t.order_events.clone()];
    let orders = vec![t.order_events.clone()];
    let users = vec![t.user_events.clone()];
    let engage = vec![
        t.user_events.clone(),
        t.order_events.clone(),
        t.alerts.clone(),
    ];
    [
        (&cfg.profile.group, &both),
        (&cfg.churn.group, &orders),
        (&cfg.recommend.group, &both),
        (&cfg.fraud.group, &both),
        (&cfg.logistics.group, &orders),
        (&cfg.engage.group, &engage),
        (&cfg.support.group, &users),
    ]
    .into_iter()
    .map(|(g, ts)| crate::lag::Group {
        name: g.clone(),
        topics: ts.clone(),
    })
    .collect()
}

/// Topics whose log ends are sampled.
pub fn lag_topics(cfg: &MeshConfig) -> Vec<String> {
    let t = cfg.topics();
    [
        &t.user_events,
        &t.order_events,
        &t.dead_letter,
        &t.lifecycle,
        &t.decisions,
        &t.alerts,
        &t.engagement,
    ]
    .into_iter()
    .cloned()
    .collect()
}

#[cfg(test)]
mod tls_config_tests {
    use super::*;

    #[test]
    fn tls_files_are_read_and_bad_settings_name_the_variable() {
        let dir = std::env::temp_dir().join(format!("mesh-node-tls-{}", std::process::id()));
        let g = mesh_runtime::tls::generate(&dir, &[]).unwrap();
        let (ca, cert, key) = (
            g.ca.to_str().unwrap(),
            g.cert.to_str().unwrap(),
            g.key.to_str().unwrap(),
        );
        let env = Env::from_pairs([
            ("MESH_KAFKA_BROKERS", "127.0.0.1:9092"),
            ("MESH_REDIS_TLS_CA", ca),
            ("MESH_REDIS_TLS_CERT", cert),
            ("MESH_REDIS_TLS_KEY", key),
            ("MESH_KAFKA_TLS_CA", ca),
        ]);
        let cfg = MeshConfig::from_env(&env).unwrap();
        assert!(cfg.redis_tls.ca.is_some() && cfg.redis_tls.key.is_some());
        let k = cfg.kafka_tls.expect("kafka TLS");
        assert_eq!(k.ca.as_deref(), Some(g.ca.as_path()));
        assert!(k.cert.is_none());

        let err = |pairs: &[(&str, &str)]| {
            MeshConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("MESH_REDIS_TLS_CERT", cert)]);
        assert!(e.contains("MESH_REDIS_TLS_KEY"), "{e}");
        let e = err(&[
            ("MESH_KAFKA_BROKERS", "b:9092"),
            ("MESH_KAFKA_TLS_CA", "/nonexistent/ca.pem"),
        ]);
        assert!(e.contains("MESH_KAFKA_TLS_CA"), "{e}");
        let e = err(&[("MESH_KAFKA_TLS_CA", ca)]);
        assert!(e.contains("MESH_KAFKA_BROKERS"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[cfg(test)]
mod producer_config_tests {
    use super::*;

    #[test]
    fn producer_settings_default_parse_and_name_the_variable() {
        let cfg = MeshConfig::from_env(&Env::default()).unwrap();
        assert_eq!(cfg.producer_compression, "zstd");
        assert_eq!(cfg.producer_linger, Duration::from_millis(2));
        let env = Env::from_pairs([
            ("MESH_PRODUCER_COMPRESSION", "LZ4"),
            ("MESH_PRODUCER_LINGER_MS", "20"),
        ]);
        let cfg = MeshConfig::from_env(&env).unwrap();
        assert_eq!(cfg.producer_compression, "lz4");
        assert_eq!(cfg.producer_linger, Duration::from_millis(20));
        for (var, value, says) in [
            (
                "MESH_PRODUCER_COMPRESSION",
                "brotli",
                "expected one of none",
            ),
            (
                "MESH_PRODUCER_LINGER_MS",
                "2.5",
                "whole number of milliseconds",
            ),
            ("MESH_PRODUCER_LINGER_MS", "1000000", "at most 900000"),
        ] {
            let e = MeshConfig::from_env(&Env::from_pairs([(var, value)]))
                .err()
                .unwrap_or_else(|| panic!("{var}={value} accepted"))
                .to_string();
            assert!(e.contains(var) && e.contains(says), "{var}={value}: {e}");
        }
    }
}
