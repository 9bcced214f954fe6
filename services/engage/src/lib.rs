//! The engage service: what to charge and what to offer, measured.
//!
//! Consumes the user and order topics and the alerts topic in its own
//! consumer group. Product views and order lines become price observations
//! per item, day and price ([`handler`]); a pricer estimates each item's
//! elasticity (shrunk toward its category), chooses a price within the
//! item's bounds and publishes every change with its explanation
//! ([`pricing`]). Campaigns hold a randomized control group; `ChooseOffer`
//! asks churn and profile over gRPC for the user's context and lets a
//! contextual bandit pick the offer; orders are attributed to offers from
//! the stream, exactly once, and feed the bandit and the campaign report
//! (lift with intervals, CUPED, an always-valid sequential test)
//! ([`engine`]). Churn's `RetentionAction`s become offers of each tenant's
//! `retention` campaign. `BuildAudience` ranks lookalikes of a segment's best
//! customers ([`audience`]). `ScoreCreatives` ranks creatives by a CTR
//! model fitted on the ad platforms' delivery reports, and `AllocateBudget`
//! splits an ad budget by Thompson sampling on reported return on spend
//! ([`ads`]). Every decision is published on the engagement topic. Answers `mesh.engage.v1.EngageService` ([`grpc`]).
//!
//! The statistics live in `mesh-engage`; this crate keeps state, talks to
//! peers and publishes. It must not hold state outside the store.
//!
//! # Layout
//! - [`keys`]: key names and the slot that owns each.
//! - [`engine`]: campaigns, offers, bandit updates, attribution, reports.
//! - [`pricing`]: observations → elasticities → quotes, bounds.
//! - [`audience`]: lookalike audiences over profile's users.
//! - [`ads`]: creative ranking (CTR model) and ad budget split (bandit).
//! - [`handler`]: the bus handler.
//! - [`observe`]: what the handler keeps for the pricer (observations,
//!   market prices).
//! - [`grpc`]: the `EngageService` implementation.
//! - [`error`], [`metrics`]: the error type and metric names.
#![forbid(unsafe_code)]

pub mod ads;
pub mod audience;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod handler;
pub mod keys;
pub mod metrics;
pub mod observe;
pub mod pricing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_proto::engage::v1::engage_service_server::EngageServiceServer;
use mesh_runtime::config::Env;
use mesh_runtime::grpc::GrpcServer;
use mesh_runtime::service::{self, FirstRun};
use tokio_util::sync::CancellationToken;

pub use engine::{Engage, Settings};
pub use error::{Error, Result};
pub use keys::SCOPE;

/// Engage settings (`MESH_ENGAGE_*`).
#[derive(Debug, Clone)]
pub struct EngageConfig {
    /// gRPC listen address (`MESH_ENGAGE_GRPC_ADDR`, default 127.0.0.1:50057).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_ENGAGE_GROUP`, default `mesh-engage`).
    pub group: String,
    /// How often the pricer runs (`MESH_ENGAGE_PRICING_INTERVAL_MS`, 60 s).
    pub pricing_interval: Duration,
    /// Offers of the retention campaign (`MESH_ENGAGE_RETENTION_OFFERS`,
    /// comma-separated, default `coupon,bundle,recommendation_push`).
    pub retention_offers: Vec<String>,
    /// Thompson sampling scale (`MESH_ENGAGE_EXPLORATION`, default 0.5).
    pub exploration: f64,
}

impl EngageConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        let offers: Vec<String> = env
            .string(
                "MESH_ENGAGE_RETENTION_OFFERS",
                "coupon,bundle,recommendation_push",
            )
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let bad = |var: &str, value: String, reason: &str| mesh_runtime::Error::Config {
            var: var.into(),
            value,
            reason: reason.into(),
        };
        let raw_offers = env.string("MESH_ENGAGE_RETENTION_OFFERS", "");
        for o in &offers {
            if engine::check_id("offers", o).is_err() {
                return Err(bad(
                    "MESH_ENGAGE_RETENTION_OFFERS",
                    raw_offers,
                    "offer names of letters, digits, '-', '_' and '.', comma-separated",
                ));
            }
        }
        if offers.is_empty() {
            return Err(bad(
                "MESH_ENGAGE_RETENTION_OFFERS",
                raw_offers,
                "at least one offer name is needed",
            ));
        }
        let exploration: f64 = env.parse("MESH_ENGAGE_EXPLORATION", 0.5, "a number > 0")?;
        if !(exploration.is_finite() && exploration > 0.0) {
            return Err(bad(
                "MESH_ENGAGE_EXPLORATION",
                exploration.to_string(),
                "a number > 0",
            ));
        }
        Ok(EngageConfig {
            grpc_addr: env.addr("MESH_ENGAGE_GRPC_ADDR", "127.0.0.1:50057")?,
            group: env.string("MESH_ENGAGE_GROUP", "mesh-engage"),
            pricing_interval: env
                .millis("MESH_ENGAGE_PRICING_INTERVAL_MS", Duration::from_secs(60))?,
            retention_offers: offers,
            exploration,
        })
    }
}

/// What the service needs from the process (the runtime's skeleton). Its
/// peers: churn, profile.
pub type Deps = mesh_runtime::Deps;

/// A started engage service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub engage: Arc<Engage>,
    pub consumer: tokio::task::JoinHandle<()>,
    pub pricer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
}

pub fn engine(cfg: &EngageConfig, deps: &Deps) -> Arc<Engage> {
    Arc::new(Engage {
        bandit_lock: tokio::sync::Mutex::new(()),
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        topic: deps.topics.engagement.clone(),
        partitions: deps.partitions,
        peers: deps.peers.clone(),
        settings: Settings {
            retention_offers: cfg.retention_offers.clone(),
            exploration: cfg.exploration,
        },
        clock: {
            let clock = deps.clock.clone();
            Arc::new(move || clock.now_ms())
        },
    })
}

/// Starts the consumer only.
pub fn start_consumer(
    cfg: &EngageConfig,
    deps: &Deps,
    engage: Arc<Engage>,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    let (cc, handler) = consumer(cfg, deps, engage);
    service::start_consumer("engage", cc, handler, shutdown)
}

/// The engage consumer's settings (its five input topics) and handler, for
/// [`start_consumer`] and for tests that change a setting.
pub fn consumer(
    cfg: &EngageConfig,
    deps: &Deps,
    engage: Arc<Engage>,
) -> (mesh_bus::ConsumerConfig, Arc<handler::EngageHandler>) {
    let cc = deps.consumer_config(
        &cfg.group,
        &[
            &deps.topics.user_events,
            &deps.topics.order_events,
            &deps.topics.alerts,
            &deps.topics.lifecycle,
            &deps.topics.market_prices,
        ],
    );
    let handler = Arc::new(handler::EngageHandler {
        engage,
        alerts_topic: deps.topics.alerts.clone(),
        lifecycle_topic: deps.topics.lifecycle.clone(),
        market_topic: deps.topics.market_prices.clone(),
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: cfg.group.clone(),
    });
    (cc, handler)
}

/// Prices every item every `interval` until shutdown, with a summary at
/// INFO only when something changed.
pub fn start_pricer(
    engage: Arc<Engage>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let first = FirstRun::AfterInterval;
    service::spawn_periodic(
        "pricing round",
        interval,
        first,
        shutdown,
        engage,
        |engage| async move {
            match pricing::price_once(&engage).await? {
                0 => tracing::debug!("pricing round: no change"),
                n => tracing::info!(changed = n, "pricing round"),
            }
            Ok::<_, Error>(())
        },
    )
}

/// Starts the consumer, the pricer and the gRPC server.
pub async fn start(
    cfg: &EngageConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> Result<Running> {
    let engage = engine(cfg, deps);
    metrics::export_price_metrics();
    let (assigned, consumer) = start_consumer(cfg, deps, engage.clone(), shutdown.clone());
    let pricer = start_pricer(engage.clone(), cfg.pricing_interval, shutdown.clone());
    let (grpc_addr, server) = GrpcServer::new()
        .add(EngageServiceServer::new(grpc::EngageGrpc {
            engage: engage.clone(),
        }))
        .await
        .start("engage", cfg.grpc_addr, shutdown)
        .await?;
    Ok(Running {
        grpc_addr,
        assigned,
        engage,
        consumer,
        pricer,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_bad_values_name_the_variable() {
        let c = EngageConfig::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(c.retention_offers.len(), 3);
        for (var, value) in [
            ("MESH_ENGAGE_RETENTION_OFFERS", "a b"),
            ("MESH_ENGAGE_RETENTION_OFFERS", ","),
            ("MESH_ENGAGE_EXPLORATION", "-1"),
            ("MESH_ENGAGE_PRICING_INTERVAL_MS", "soon"),
        ] {
            let e = EngageConfig::from_env(&Env::from_pairs([(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(var), "{var}: {e}");
        }
    }
}
