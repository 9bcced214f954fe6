//! The profile service: what the mesh knows about each user.
//!
//! Consumes both event topics in one consumer group, turns each event into
//! state ops ([`fold`], [`features`]) and applies them with the partition's
//! watermark in one atomic store step ([`handler`]), so every event counts
//! exactly once. A `user_erased` event deletes the user's keys and every
//! later event of the user changes nothing ([`erasure`]). Orders and a
//! periodic sweep move users through the lifecycle stages and publish each
//! transition ([`engine`], [`lifecycle`]). Answers `ProfileService` from the slot that owns the
//! user ([`grpc`]), with features derived at the injected clock's now, rule
//! tags ([`tags`]) and the k-means segment ([`segments`]).
//!
//! # Layout
//! - [`fold`]: event → backbone counters, and the in-memory reference fold.
//! - [`features`]: event → feature ops; state → features at an instant.
//! - [`erasure`]: the guard on every record, and what `user_erased`
//!   deletes.
//! - [`lifecycle`]: the stage machine (pure).
//! - [`engine`]: reads, transitions (compare-and-set + publish), sweep.
//! - [`tags`], [`segments`]: rule tags, k-means segments.
//! - [`analytics`]: funnel, active users, cohorts over all users.
//! - [`offline`]: applying events without a broker (reports, benchmarks).
//! - [`training`]: the engine at a fixed instant, segment training, the
//!   CDNOW fold (`mesh train segments`, `mesh report cdnow`).
//! - [`bench`]: `mesh bench profile` and its bare consume + Redis baseline.
//! - [`handler`]: the bus handler.
//! - [`grpc`]: the `ProfileService` implementation.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod bench;
pub mod engine;
pub mod erasure;
pub mod error;
pub mod features;
pub mod fold;
pub mod grpc;
pub mod handler;
pub mod lifecycle;
pub mod metrics;
pub mod offline;
pub mod segments;
pub mod tags;
pub mod training;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_proto::profile::v1::profile_service_server::ProfileServiceServer;
use mesh_runtime::config::Env;
use mesh_runtime::grpc::GrpcServer;
use mesh_runtime::service::{self, FirstRun};
use tokio_util::sync::CancellationToken;

/// Profile settings (`MESH_PROFILE_*`).
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    /// gRPC listen address (`MESH_PROFILE_GRPC_ADDR`, default 127.0.0.1:50052).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_PROFILE_GROUP`, default `mesh-profile`).
    pub group: String,
    /// Days without an order before at-risk, dormant, churned
    /// (`MESH_PROFILE_AT_RISK_DAYS` 30, `MESH_PROFILE_DORMANT_DAYS` 90,
    /// `MESH_PROFILE_CHURNED_DAYS` 180; strictly increasing).
    pub thresholds: lifecycle::Thresholds,
    /// Decay time constants (`MESH_PROFILE_AFFINITY_TAU_DAYS` 30,
    /// `MESH_PROFILE_ACTIVITY_TAU_DAYS` 7).
    pub features: features::FeatureConfig,
    /// Time between sweeps and segment-model reloads
    /// (`MESH_PROFILE_SWEEP_INTERVAL_MS`, 60000).
    pub sweep_interval: Duration,
    /// Tag rules (`MESH_PROFILE_TAGS_FILE`; default: the bundled
    /// `services/profile/tags.toml`).
    pub tags: tags::TagRules,
}

impl ProfileConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        let days = |var: &str, default: i32| env.positive(var, default).map(i64::from);
        let at_risk = days("MESH_PROFILE_AT_RISK_DAYS", 30)?;
        let dormant = days("MESH_PROFILE_DORMANT_DAYS", 90)?;
        let churned = days("MESH_PROFILE_CHURNED_DAYS", 180)?;
        if dormant <= at_risk {
            return Err(bad(
                env,
                "MESH_PROFILE_DORMANT_DAYS",
                format!("{dormant} must be more than MESH_PROFILE_AT_RISK_DAYS ({at_risk})"),
            ));
        }
        if churned <= dormant {
            return Err(bad(
                env,
                "MESH_PROFILE_CHURNED_DAYS",
                format!("{churned} must be more than MESH_PROFILE_DORMANT_DAYS ({dormant})"),
            ));
        }
        let thresholds = lifecycle::Thresholds::from_days(at_risk, dormant, churned);
        let features = features::FeatureConfig {
            affinity_tau_ms: days("MESH_PROFILE_AFFINITY_TAU_DAYS", 30)? as f64
                * features::DAY_MS as f64,
            activity_tau_ms: days("MESH_PROFILE_ACTIVITY_TAU_DAYS", 7)? as f64
                * features::DAY_MS as f64,
            first_deadline_ms: thresholds.at_risk_ms,
        };
        let tags = match env.get("MESH_PROFILE_TAGS_FILE") {
            Some(path) => tags::TagRules::read(std::path::Path::new(path))
                .map_err(|e| bad(env, "MESH_PROFILE_TAGS_FILE", e.to_string()))?,
            None => tags::TagRules::parse(tags::DEFAULT_TAGS).expect("bundled tags parse"),
        };
        Ok(ProfileConfig {
            grpc_addr: env.addr("MESH_PROFILE_GRPC_ADDR", "127.0.0.1:50052")?,
            group: env.string("MESH_PROFILE_GROUP", "mesh-profile"),
            thresholds,
            features,
            sweep_interval: env
                .millis("MESH_PROFILE_SWEEP_INTERVAL_MS", Duration::from_secs(60))?,
            tags,
        })
    }
}

fn bad(env: &Env, var: &str, reason: String) -> mesh_runtime::Error {
    mesh_runtime::Error::Config {
        var: var.to_string(),
        value: env.get(var).unwrap_or_default().to_string(),
        reason,
    }
}

/// What the service needs from the process (the runtime's skeleton). Its
/// clock is "now" for derivations, lifecycle and sweeps; it asks no peer.
pub type Deps = mesh_runtime::Deps;

/// A started profile service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub consumer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
    /// The engine, e.g. to run a sweep by hand.
    pub profiles: Arc<engine::Profiles>,
    pub sweeper: tokio::task::JoinHandle<()>,
}

/// The service's working parts on `deps`, with `clock` as "now".
pub fn profiles(
    cfg: &ProfileConfig,
    deps: &Deps,
    clock: Arc<dyn engine::Clock>,
) -> Arc<engine::Profiles> {
    Arc::new(engine::Profiles {
        store: deps.store.clone(),
        producer: Some(deps.producer.clone()),
        lifecycle_topic: deps.topics.lifecycle.clone(),
        partitions: deps.partitions,
        features: cfg.features,
        thresholds: cfg.thresholds,
        clock,
        tags: cfg.tags.clone(),
        segments: Default::default(),
    })
}

/// Starts the consumer only (replay and tests use it without a server),
/// on the deps' clock.
pub fn start_consumer(
    cfg: &ProfileConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let p = profiles(cfg, deps, deps.clock.clone());
    start_consumer_with(cfg, deps, p, shutdown)
}

/// Starts the consumer on an existing engine.
pub fn start_consumer_with(
    cfg: &ProfileConfig,
    deps: &Deps,
    profiles: Arc<engine::Profiles>,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let cc = deps.consumer_config(&cfg.group, &deps.topics.inputs());
    let handler = Arc::new(handler::ProfileHandler {
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: cfg.group.clone(),
        profiles,
    });
    service::start_consumer("profile", cc, handler, shutdown)
}

/// Reloads the segment model and runs a sweep every `interval` until
/// shutdown, the first at once. The interval only paces the work; what a
/// sweep sees as "now" comes from the engine's clock.
pub fn start_sweeper(
    profiles: Arc<engine::Profiles>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let first = FirstRun::AtStart;
    service::spawn_periodic(
        "profile sweep",
        interval,
        first,
        shutdown,
        profiles,
        |p| async move {
            match segments::load(&p.store).await {
                Ok(m) => {
                    let mut cur = p.segments.write().unwrap_or_else(|e| e.into_inner());
                    if cur.as_ref().map(|c| c.version) != m.as_ref().map(|m| m.version) {
                        *cur = m.map(Arc::new);
                    }
                }
                Err(e) => tracing::warn!(%e, "segment model reload failed"),
            }
            let fx = p.sweep_once().await?;
            tracing::debug!(?fx, "profile sweep");
            Ok::<_, error::Error>(())
        },
    )
}

/// Starts the consumer, the sweeper and the gRPC server on the deps' clock.
pub async fn start(
    cfg: &ProfileConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> mesh_runtime::Result<Running> {
    let profiles = profiles(cfg, deps, deps.clock.clone());
    let (assigned, consumer) = start_consumer_with(cfg, deps, profiles.clone(), shutdown.clone());
    let sweeper = start_sweeper(profiles.clone(), cfg.sweep_interval, shutdown.clone());
    let (grpc_addr, server) = GrpcServer::new()
        .add(ProfileServiceServer::new(grpc::ProfileApi {
            profiles: profiles.clone(),
        }))
        .await
        .start("profile", cfg.grpc_addr, shutdown)
        .await?;
    Ok(Running {
        grpc_addr,
        assigned,
        consumer,
        server,
        profiles,
        sweeper,
    })
}
