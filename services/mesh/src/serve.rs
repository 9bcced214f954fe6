//! `mesh serve <role>`: one service in this process, the way production
//! runs the mesh (one container, one Deployment per service).
//!
//! The process reads the same `MESH_*` variables as `mesh up`, needs a real
//! broker and Redis (its state must outlive it and be shared with its
//! replicas), runs that service's gRPC server, consumers and background
//! work, and serves `/live`, `/ready` and `/metrics` on `MESH_ADMIN_ADDR`.
//! Peers it asks at request time come from `MESH_<PEER>_ADDR`
//! ([`mesh_runtime::peers`]); an unset peer is not asked and the service
//! answers with its fallback.
use std::net::SocketAddr;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_runtime::config::Env;
use mesh_runtime::peers::Peers;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::node::{ready_check, spawn_store_pinger, Backends, MeshConfig};

/// A service that runs as its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Ingest,
    Profile,
    Churn,
    Recommend,
    Fraud,
    Logistics,
    /// Pricing, offers, campaigns and audiences; asks profile and churn.
    Engage,
    /// Feedback, the assistant, search and product classification; asks
    /// fraud and recommend.
    Support,
    /// The web console and consumer-lag sampler; asks churn, fraud and
    /// logistics over gRPC (`MESH_CHURN_ADDR`, ...). Serves no gRPC itself.
    Console,
}

impl Role {
    /// Every service, in start order (a service starts after the peers it
    /// asks); the console is not among them.
    pub const ALL: [Role; 8] = [
        Role::Ingest,
        Role::Profile,
        Role::Fraud,
        Role::Recommend,
        Role::Churn,
        Role::Logistics,
        Role::Engage,
        Role::Support,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Profile => "profile",
            Role::Churn => "churn",
            Role::Recommend => "recommend",
            Role::Fraud => "fraud",
            Role::Logistics => "logistics",
            Role::Engage => "engage",
            Role::Support => "support",
            Role::Console => "console",
        }
    }

    /// The services this one asks over gRPC at request time.
    pub fn peers(self) -> &'static [&'static str] {
        match self {
            Role::Recommend | Role::Fraud => &["profile"],
            Role::Churn => &["recommend"],
            Role::Logistics => &["fraud"],
            Role::Engage => &["profile", "churn"],
            Role::Support => &["fraud", "recommend"],
            Role::Console => &["churn", "fraud", "logistics", "engage"],
            Role::Ingest | Role::Profile => &[],
        }
    }
}

/// One running service.
pub struct Served {
    pub role: Role,
    /// The role's gRPC address (none for the console).
    pub grpc_addr: Option<SocketAddr>,
    /// Ingest's HTTP address.
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub backends: Backends,
    /// Consumer tasks: each returns after its final commit.
    consumers: Vec<JoinHandle<()>>,
    /// Other tasks (servers, sweeps), aborted if still running at the end.
    others: Vec<JoinHandle<()>>,
}

impl Served {
    /// After the shutdown token is cancelled, in order and within one
    /// `grace` deadline: the servers stop accepting and the periodic work
    /// ends (aborted at the deadline), the consumers finish their batch,
    /// commit and leave their groups, the producer is flushed.
    pub async fn stopped(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        crate::node::join_until(deadline, "servers and periodic tasks", self.others, true).await;
        crate::node::join_until(deadline, "consumers", self.consumers, false).await;
        if let Err(e) = self.backends.producer.flush(Duration::from_secs(5)) {
            tracing::warn!(%e, "producer flush at shutdown failed; unsent records are lost");
        }
    }
}

/// Starts `role` against the configured broker and store.
pub async fn serve(
    role: Role,
    cfg: &MeshConfig,
    env: &Env,
    shutdown: CancellationToken,
) -> anyhow::Result<Served> {
    if cfg.brokers.is_none() {
        anyhow::bail!(
            "mesh serve {}: MESH_KAFKA_BROKERS is not set. A service on its own shares a real \
             broker with the others; `mesh up` runs every service in one process on an embedded one",
            role.name()
        );
    }
    if cfg.redis_url.is_none() {
        anyhow::bail!(
            "mesh serve {}: MESH_REDIS_URL is not set. A service on its own keeps its state in \
             Redis so that it survives restarts and is shared by replicas; `mesh up` runs every \
             service in one process on an in-memory store",
            role.name()
        );
    }
    let backends = Backends::connect(cfg).await?;
    let peers = Peers::from_env(env, role.peers())?;
    let deps = backends.deps(cfg).with_peers(peers.clone());
    let mut assigned: Vec<(&'static str, Assignment)> = Vec::new();
    let mut consumers = Vec::new();
    let mut others = Vec::new();
    let mut http_addr = None;
    let mut console = None;
    let grpc_addr = match role {
        Role::Console => {
            let url =
                |p: &Option<mesh_runtime::peers::Peer>, var: &str| -> anyhow::Result<String> {
                    anyhow::ensure!(p.is_some(), "mesh serve console: {var} is not set");
                    Ok(env
                        .get(var)
                        .unwrap_or_default()
                        .split(',')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string())
                };
            let addrs = crate::console::Addrs {
                churn: url(&peers.churn, "MESH_CHURN_ADDR")?,
                fraud: url(&peers.fraud, "MESH_FRAUD_ADDR")?,
                logistics: url(&peers.logistics, "MESH_LOGISTICS_ADDR")?,
                engage: url(&peers.engage, "MESH_ENGAGE_ADDR")?,
            };
            let lag = crate::lag::spawn(
                backends.brokers.clone(),
                crate::node::lag_groups(cfg),
                crate::node::lag_topics(cfg),
                cfg.partitions,
                Duration::from_secs(5),
                shutdown.clone(),
            );
            let ctx = crate::console::ConsoleCtx::new(
                cfg.topics(),
                lag,
                crate::console_stages::spawn(
                    backends.brokers.clone(),
                    cfg.topics().lifecycle,
                    cfg.partitions,
                    shutdown.clone(),
                ),
                addrs,
            )
            .with_tenant(&cfg.console_tenant);
            crate::console::spawn_sampler(&ctx, shutdown.clone());
            console = Some(crate::console::router(ctx));
            None
        }
        Role::Ingest => {
            let publisher = mesh_ingest::Publisher::new(
                backends.producer.clone(),
                backends.ledger.clone(),
                cfg.topics(),
                cfg.ingest.max_in_flight,
                cfg.ingest.max_batch,
            );
            let r = mesh_ingest::start(&cfg.ingest, publisher, shutdown.clone()).await?;
            http_addr = Some(r.http_addr);
            others.extend(r.tasks);
            Some(r.grpc_addr)
        }
        Role::Profile => {
            let r = mesh_profile::start(&cfg.profile, &deps, shutdown.clone()).await?;
            assigned.push(("profile", r.assigned.clone()));
            consumers.push(r.consumer);
            others.extend([r.server, r.sweeper]);
            Some(r.grpc_addr)
        }
        Role::Fraud => {
            let r = mesh_fraud_svc::start(&cfg.fraud, &deps, shutdown.clone()).await?;
            assigned.push(("fraud", r.assigned.clone()));
            consumers.push(r.consumer);
            others.push(r.server);
            others.extend(r.reloader);
            others.extend(r.model_watcher);
            Some(r.grpc_addr)
        }
        Role::Recommend => {
            let r = mesh_recommend_svc::start(&cfg.recommend, &deps, shutdown.clone())
                .await
                .map_err(|e| anyhow::anyhow!("recommend: {e}"))?;
            assigned.push(("recommend", r.assigned.clone()));
            assigned.push(("recommend flags", r.flags_assigned.clone()));
            consumers.extend([r.consumer, r.flags_consumer]);
            others.extend([r.server, r.watcher]);
            Some(r.grpc_addr)
        }
        Role::Churn => {
            let r = mesh_churn_svc::start(&cfg.churn, &deps, shutdown.clone()).await?;
            assigned.push(("churn", r.assigned.clone()));
            consumers.push(r.consumer);
            others.extend([r.server, r.sweeper]);
            Some(r.grpc_addr)
        }
        Role::Logistics => {
            let r = mesh_logistics_svc::start(&cfg.logistics, &deps, shutdown.clone()).await?;
            assigned.push(("logistics", r.assigned.clone()));
            consumers.push(r.consumer);
            others.extend([r.server, r.planner, r.retention]);
            Some(r.grpc_addr)
        }
        Role::Engage => {
            let r = mesh_engage_svc::start(&cfg.engage, &deps, shutdown.clone()).await?;
            assigned.push(("engage", r.assigned.clone()));
            consumers.push(r.consumer);
            others.extend([r.server, r.pricer]);
            Some(r.grpc_addr)
        }
        Role::Support => {
            let r = mesh_support_svc::start(&cfg.support, &deps, shutdown.clone()).await?;
            assigned.push(("support", r.assigned.clone()));
            consumers.push(r.consumer);
            others.push(r.server);
            Some(r.grpc_addr)
        }
    };
    crate::node::zero_failure_series(cfg);
    // Probe each peer until it has answered once (readiness waits for it),
    // then keep probing every 5 s so the breaker learns a peer came back
    // without a user request paying for it.
    for p in peers.all() {
        let (p, stop) = (p.clone(), shutdown.clone());
        others.push(tokio::spawn(async move {
            loop {
                let up = p.probe().await;
                let wait = if up {
                    Duration::from_secs(5)
                } else {
                    Duration::from_millis(500)
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }));
    }
    let store_ok = spawn_store_pinger(&backends.store, shutdown.clone());
    let ready = ready_check(assigned, store_ok, peers);
    let mut router = mesh_runtime::admin::router(ready);
    if let Some(c) = console {
        router = router.merge(c);
    }
    let (admin_addr, admin) = mesh_runtime::admin::serve(cfg.admin_addr, router, shutdown).await?;
    others.push(admin);
    tracing::info!(role = role.name(), ?grpc_addr, %admin_addr, "serving");
    Ok(Served {
        role,
        grpc_addr,
        http_addr,
        admin_addr,
        backends,
        consumers,
        others,
    })
}
