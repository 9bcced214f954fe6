//! The churn service: who is about to stop buying, and what to do about it.
//!
//! Consumes the order and user-event topics in its own consumer group and
//! keeps each user's summary (first/last purchase, distinct purchase days,
//! spend per day; logins, sessions, dwell, support messages and complaints
//! per day) with state ops applied exactly once ([`summary`], [`handler`]).
//! Every event re-scores its user and a periodic sweep re-scores everyone
//! at the injected clock's now ([`engine`]). The risk is the probability of
//! no order in the horizon from one model: the supervised classifier stored
//! by `mesh train churn` when there is one, else BG/NBD from `mesh-churn`;
//! every answer names which. A risk crossing the
//! threshold publishes one `ChurnAlert` per crossing on the alerts topic,
//! and, for users in the treatment arm of the retention experiment, one
//! `RetentionAction`; the hysteresis and the experiment live in the store,
//! so restarts and several instances neither repeat nor lose a crossing.
//! Answers `mesh.churn.v1.ChurnService` ([`grpc`]).
//!
//! A `user_erased` event (on both topics) deletes the user's summary and
//! index entry; every record of a user starts with the erasure guard, so
//! nothing the user did before or after brings them back, and no alert or
//! retention action is produced for them ([`summary::erasure_ops`]).
//!
//! It must not hold state outside the store, nor sleep to let time pass.
//!
//! # Layout
//! - [`summary`]: order → ops, and the stored summary read back.
//! - [`model`]: the parameters in use (file, fitted at start, or prior).
//! - [`engine`]: scoring, hysteresis, publishing, sweep, at-risk list,
//!   retention report.
//! - [`handler`]: the bus handler.
//! - [`grpc`]: the `ChurnService` implementation.
//! - [`training`]: the `mesh train churn` pipeline (order log → stored model).
//! - [`report`]: the retention report as `mesh report retention` shows it.
//! - [`error`], [`metrics`]: the error type and metric names.
#![forbid(unsafe_code)]

pub mod engine;
pub mod error;
pub mod grpc;
pub mod handler;
pub mod metrics;
pub mod model;
pub mod report;
pub mod summary;
pub mod training;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_churn::retention::IntervalMethod;
use mesh_churn::scoring::AlertConfig;
use mesh_proto::churn::v1::churn_service_server::ChurnServiceServer;
use mesh_proto::churn::v1::RetentionReportResponse;
use mesh_runtime::config::Env;
use mesh_runtime::grpc::GrpcServer;
use mesh_runtime::service::{self, FirstRun};
use tokio_util::sync::CancellationToken;

pub use engine::{Churn, Effects, Scoring, SCOPE};
pub use error::{Error, Result};
pub use model::Model;

/// Churn settings (`MESH_CHURN_*`).
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// gRPC listen address (`MESH_CHURN_GRPC_ADDR`, default 127.0.0.1:50053).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_CHURN_GROUP`, default `mesh-churn`).
    pub group: String,
    /// `MESH_CHURN_MODEL`: inline JSON or a JSON file; unset: fit at start
    /// or the CDNOW prior.
    pub model: Option<String>,
    /// Fewest users for a fit at start (`MESH_CHURN_MIN_FIT_USERS`, 500).
    pub min_fit_users: usize,
    /// Time between sweeps (`MESH_CHURN_SWEEP_INTERVAL_MS`, 60000).
    pub sweep_interval: Duration,
    /// `MESH_CHURN_THRESHOLD` (0.8), `MESH_CHURN_REARM_BELOW` (0.6),
    /// `MESH_CHURN_HORIZON_WEEKS` (13); `MESH_CHURN_DISCOUNT_RATE` per month
    /// (0.01), `MESH_CHURN_CLV_WEEKS` (52), `MESH_CHURN_ACTION` (`coupon`,
    /// `message`, `boost_recs`), `MESH_CHURN_HOLDOUT_SHARE` (0.2),
    /// `MESH_CHURN_SALT` (`mesh-churn-retention`).
    pub scoring: Scoring,
}

impl ChurnConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        let float = |var: &str, default: f64| env.parse::<f64>(var, default, "a number");
        let bad = |var: &str, value: String, reason: &str| mesh_runtime::Error::Config {
            var: var.into(),
            value,
            reason: reason.into(),
        };
        let alert = AlertConfig {
            threshold: float("MESH_CHURN_THRESHOLD", 0.8)?,
            rearm_below: float("MESH_CHURN_REARM_BELOW", 0.6)?,
            horizon_weeks: float("MESH_CHURN_HORIZON_WEEKS", 13.0)?,
        };
        if !(0.0..=1.0).contains(&alert.threshold) {
            return Err(bad(
                "MESH_CHURN_THRESHOLD",
                alert.threshold.to_string(),
                "must be in [0, 1]",
            ));
        }
        if !(0.0..=alert.threshold).contains(&alert.rearm_below) {
            return Err(bad(
                "MESH_CHURN_REARM_BELOW",
                alert.rearm_below.to_string(),
                "must be in [0, MESH_CHURN_THRESHOLD]",
            ));
        }
        if !(alert.horizon_weeks > 0.0 && alert.horizon_weeks.is_finite()) {
            return Err(bad(
                "MESH_CHURN_HORIZON_WEEKS",
                alert.horizon_weeks.to_string(),
                "must be > 0",
            ));
        }
        let discount_rate = float("MESH_CHURN_DISCOUNT_RATE", 0.01)?;
        if !(discount_rate > -1.0 && discount_rate.is_finite()) {
            return Err(bad(
                "MESH_CHURN_DISCOUNT_RATE",
                discount_rate.to_string(),
                "must be > -1",
            ));
        }
        let clv_weeks = float("MESH_CHURN_CLV_WEEKS", 52.0)?;
        if !(clv_weeks > 0.0 && clv_weeks <= 520.0) {
            return Err(bad(
                "MESH_CHURN_CLV_WEEKS",
                clv_weeks.to_string(),
                "must be in (0, 520]",
            ));
        }
        let action = env.string("MESH_CHURN_ACTION", "coupon");
        if !["coupon", "message", "boost_recs"].contains(&action.as_str()) {
            return Err(bad(
                "MESH_CHURN_ACTION",
                action,
                "expected coupon, message or boost_recs",
            ));
        }
        let holdout_share = float("MESH_CHURN_HOLDOUT_SHARE", 0.2)?;
        if !(0.0..=1.0).contains(&holdout_share) {
            return Err(bad(
                "MESH_CHURN_HOLDOUT_SHARE",
                holdout_share.to_string(),
                "must be in [0, 1]",
            ));
        }
        Ok(ChurnConfig {
            grpc_addr: env.addr("MESH_CHURN_GRPC_ADDR", "127.0.0.1:50053")?,
            group: env.string("MESH_CHURN_GROUP", "mesh-churn"),
            model: env.get("MESH_CHURN_MODEL").map(str::to_string),
            min_fit_users: env.positive("MESH_CHURN_MIN_FIT_USERS", 500)? as usize,
            sweep_interval: env.millis("MESH_CHURN_SWEEP_INTERVAL_MS", Duration::from_secs(60))?,
            scoring: Scoring {
                alert,
                discount_rate,
                clv_weeks,
                action,
                holdout_share,
                salt: env.string("MESH_CHURN_SALT", "mesh-churn-retention"),
            },
        })
    }
}

/// What the service needs from the process (the runtime's skeleton). Its
/// peers: recommend (retention offer items); its clock: "now" for scoring
/// and sweeps.
pub type Deps = mesh_runtime::Deps;

/// A started churn service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    /// The engine, e.g. to run a sweep by hand.
    pub churn: Arc<Churn>,
    pub consumer: tokio::task::JoinHandle<()>,
    pub sweeper: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
}

/// Builds the engine: loads or fits the model from the current state.
pub async fn engine(cfg: &ChurnConfig, deps: &Deps) -> Result<Arc<Churn>> {
    let now = deps.clock.now();
    let mut churn = Churn {
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        alerts_topic: deps.topics.alerts.clone(),
        partitions: deps.partitions,
        model: Model::prior(now),
        scoring: cfg.scoring.clone(),
        clock: deps.clock.clone(),
        supervised: Default::default(),
        recommend: deps.peers.recommend.clone(),
    };
    churn.model = match &cfg.model {
        Some(setting) => {
            let m = Model::from_setting(setting, now)?;
            tracing::info!(params = ?m.bgnbd, version = %m.version, "churn model loaded from MESH_CHURN_MODEL");
            m
        }
        None => {
            let summaries: Vec<_> = churn
                .all_summaries()
                .await?
                .into_iter()
                .map(|(_, s)| s)
                .collect();
            Model::fit_or_prior(&summaries, cfg.min_fit_users, now)
        }
    };
    if let Err(e) = churn.refresh_supervised().await {
        tracing::warn!(%e, "churn: stored supervised model not loaded; scoring with BG/NBD only");
    }
    Ok(Arc::new(churn))
}

/// Starts the consumer only (replay and tests use it without a server).
pub fn start_consumer(
    cfg: &ChurnConfig,
    deps: &Deps,
    churn: Arc<Churn>,
    shutdown: CancellationToken,
) -> (Assignment, tokio::task::JoinHandle<()>) {
    // Orders for the purchase summary, user events for the behaviour
    // (logins, sessions, dwell, support messages, complaints).
    let cc = deps.consumer_config(
        &cfg.group,
        &[&deps.topics.order_events, &deps.topics.user_events],
    );
    let handler = Arc::new(handler::ChurnHandler {
        churn,
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: cfg.group.clone(),
    });
    service::start_consumer("churn", cc, handler, shutdown)
}

/// Runs a sweep every `interval` until shutdown. The interval only paces
/// the sweeps; what a sweep sees as "now" comes from the engine's clock.
pub fn start_sweeper(
    churn: Arc<Churn>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let first = FirstRun::AfterInterval;
    service::spawn_periodic(
        "churn sweep",
        interval,
        first,
        shutdown,
        churn,
        |churn| async move {
            let fx = churn.sweep_once().await?;
            tracing::debug!(?fx, "churn sweep");
            Ok::<_, Error>(())
        },
    )
}

/// Starts the consumer, the sweeper and the gRPC server.
pub async fn start(cfg: &ChurnConfig, deps: &Deps, shutdown: CancellationToken) -> Result<Running> {
    let churn = engine(cfg, deps).await?;
    let (assigned, consumer) = start_consumer(cfg, deps, churn.clone(), shutdown.clone());
    let sweeper = start_sweeper(churn.clone(), cfg.sweep_interval, shutdown.clone());
    let (grpc_addr, server) = GrpcServer::new()
        .add(ChurnServiceServer::new(grpc::ChurnGrpc {
            churn: churn.clone(),
        }))
        .await
        .start("churn", cfg.grpc_addr, shutdown)
        .await?;
    tracing::info!(model = %churn.model.version, source = churn.model.source.name(), "churn model in use");
    Ok(Running {
        grpc_addr,
        assigned,
        churn,
        consumer,
        sweeper,
        server,
    })
}

/// `mesh report retention`: the lift report from the stored experiment.
pub async fn report_retention(
    cfg: &ChurnConfig,
    deps: &Deps,
    confidence: f64,
    method: IntervalMethod,
) -> Result<RetentionReportResponse> {
    engine(cfg, deps)
        .await?
        .retention_report(confidence, method, "")
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_bad_values_name_the_variable() {
        let c = ChurnConfig::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(c.scoring.alert, AlertConfig::default());
        assert_eq!(c.scoring.action, "coupon");
        for (var, value) in [
            ("MESH_CHURN_REARM_BELOW", "0.9"),
            ("MESH_CHURN_ACTION", "pizza"),
            ("MESH_CHURN_THRESHOLD", "high"),
            ("MESH_CHURN_HOLDOUT_SHARE", "2"),
        ] {
            let e = ChurnConfig::from_env(&Env::from_pairs([(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(var), "{e}");
        }
    }
}
