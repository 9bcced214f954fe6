//! The logistics service: delivery waves planned from the live order
//! stream, stateless route optimisation, demand forecasts and reorder
//! suggestions.
//!
//! **Dispatch.** Consumes the order topic in its own group. An order joins
//! the wave `<tenant>|<warehouse>|<region>|<day of the promised window>`
//! when it is placed (a tenant's deliveries are its own: tenants never
//! share a wave); it becomes an *active* stop once paid — `payment_authorized`, or
//! at placement when the payment method is cash on delivery (`cod`). An
//! `order_cancelled` removes it (reason `fraud_hold` holds it instead).
//! Order and wave state is applied exactly once ([`fold`], [`handler`]).
//! Touched waves go to a debounced planner task ([`planner`]) that plans
//! outside the exactly-once path: `solve` first, `replan` from the stored
//! plan after that, so stops stay on their vehicles ([`wave`]).
//! Fraud's decisions (the decisions topic, same group) hold an order whose
//! decision is REVIEW or REJECT; an order with no decision yet when its wave
//! is planned is looked up with fraud's `GetDecision` over gRPC (without an
//! answer it is routed, and the plan says so in `degraded`).
//! `order_delivered` with `success = false`, or after the promised window,
//! publishes a `LogisticsAlert` on the alerts topic.
//!
//! **Forecasting.** Order lines add to daily demand series per tenant: per
//! SKU, SKU and warehouse, category, and category and region; `Forecast`
//! fits the forecasting core's default method to one tenant's series (or
//! every tenant's summed); `ReorderSuggestions` combines a tenant's forecast
//! of a SKU at the warehouse with the tenant's stock set by `SetStock` and
//! raises stock-out alerts
//! ([`forecasting`]). The tenant's placed orders decrement that stock and
//! cancellations before shipment restore it, exactly once; a stock-out or a
//! fall below the reorder point is alerted from the stream ([`stock`]).
//!
//! **Tenants.** `GetPlan`, `ListWaves`, `ReorderSuggestions`, `Forecast`
//! and `ListSeries` with a `tenant_id` see only that tenant's waves, stock
//! and demand; another tenant's wave or warehouse answers as an unknown one
//! (NOT_FOUND / empty). Empty = every tenant's (admin, service, open mesh;
//! `ReorderSuggestions` then sums the tenants' stock per SKU). `SetStock`
//! needs a tenant: stock is always some tenant's. The wave id and the stock
//! keys carry the tenant ([`fold`], [`forecasting`]), so scoping costs no
//! extra read.
//!
//! # Layout
//! - [`fold`]: order event → store ops (pure), key layout.
//! - [`handler`]: the bus handler; planner notification and delivery alerts.
//! - [`wave`]: wave loading, routing instance, `solve`/`replan`, plan storage.
//! - [`drift`]: drift of replans and the background re-optimization.
//! - [`plan_store`]: the versioned plan in the store.
//! - [`planner`]: the debounced planner task.
//! - [`stock`]: stock moves and stock alerts from the order stream.
//! - [`forecasting`]: series, forecasts, stock and reorder suggestions.
//! - [`retention`]: past waves and old demand days leave the store.
//! - [`grpc`]: the `LogisticsService` implementation.
//! - [`error`]: the error type and its gRPC status mapping.
//! - [`metrics`]: metric names.
#![forbid(unsafe_code)]

pub mod drift;
pub mod error;
pub mod fold;
pub mod forecasting;
pub mod grpc;
pub mod handler;
pub mod metrics;
pub mod plan_store;
pub mod planner;
pub mod retention;
pub mod stock;
pub mod wave;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_proto::logistics::v1::logistics_service_server::LogisticsServiceServer;
use mesh_runtime::config::Env;
use mesh_runtime::grpc::GrpcServer;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// Scope of the service's keys in the store.
pub const SCOPE: &str = "logistics";

/// Keys that no topic can rebuild: stock set over `SetStock`
/// (`stock:<tenant>/<warehouse>` and its tenant index
/// `stock:tenants@<warehouse>`). `mesh replay --service logistics` keeps
/// them.
pub const REPLAY_KEEPS: &[&str] = &["stock:"];

/// The current time (the runtime's one clock). Tests pass a fixed one.
pub type Clock = Arc<dyn mesh_runtime::Clock>;

/// Logistics settings (`MESH_LOGISTICS_*`).
#[derive(Debug, Clone)]
pub struct LogisticsConfig {
    /// gRPC listen address (`MESH_LOGISTICS_GRPC_ADDR`, default 127.0.0.1:50056).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_LOGISTICS_GROUP`, default `mesh-logistics`).
    pub group: String,
    /// Warehouse of orders without one (`MESH_LOGISTICS_DEFAULT_WAREHOUSE`, `default`).
    pub default_warehouse: String,
    /// Quiet period before a touched wave is re-planned (`MESH_LOGISTICS_PLAN_DEBOUNCE_MS`, 200).
    pub debounce: Duration,
    /// Default budget of `PlanRoutes` (`MESH_LOGISTICS_PLAN_ROUTES_MS`, 1000).
    pub plan_routes_default: Duration,
    /// Routing of waves: `MESH_LOGISTICS_CAPACITY` (100), `MESH_LOGISTICS_VEHICLES`
    /// (0 = unlimited), `MESH_LOGISTICS_SPEED_KMH` (30), `MESH_LOGISTICS_SERVICE_MIN` (5),
    /// `MESH_LOGISTICS_DEPOTS` (`wh=lat,lon;...`), `MESH_LOGISTICS_SOLVE_MS` (1000),
    /// `MESH_LOGISTICS_SOLVE_ITERATIONS` (2000), `MESH_LOGISTICS_REPLAN_MS` (200),
    /// `MESH_LOGISTICS_REQUIRE_DEPOTS` (false; set true in production: a wave of a
    /// warehouse missing from `MESH_LOGISTICS_DEPOTS` is refused instead of routed
    /// from its stops' centroid), `MESH_LOGISTICS_REOPTIMIZE_DRIFT` (0.02; 0 = off),
    /// `MESH_LOGISTICS_REOPTIMIZE_EVERY` (10 replans), `MESH_LOGISTICS_REOPTIMIZE_GROWTH`
    /// (0.02) and `MESH_LOGISTICS_REOPTIMIZE_MAX_AGE_MS` (10000), see [`wave::Reoptimize`].
    pub routing: wave::Routing,
    /// Period of the planner's INFO summary (`MESH_LOGISTICS_LOG_SUMMARY_MS`, 60000);
    /// single plans are logged at DEBUG.
    pub log_summary: Duration,
    /// Inventory: `MESH_LOGISTICS_LEAD_TIME_DAYS` (3), `MESH_LOGISTICS_SERVICE_LEVEL` (0.95),
    /// `MESH_LOGISTICS_STOCKOUT_THRESHOLD` (0.2), `MESH_LOGISTICS_HISTORY_DAYS` (365).
    pub inventory: forecasting::Inventory,
    /// Past waves and demand days removed ([`retention`]): waves more than
    /// `MESH_LOGISTICS_RETAIN_DAYS` (30; 0 = keep every wave) days past,
    /// demand days older than `MESH_LOGISTICS_HISTORY_DAYS`.
    pub retention: retention::Retention,
    /// How often retention runs (`MESH_LOGISTICS_RETENTION_EVERY_MS`,
    /// 3600000; the first run is at start).
    pub retention_every: Duration,
}

fn bad(var: &str, value: &str, reason: &str) -> mesh_runtime::Error {
    mesh_runtime::Error::Config {
        var: var.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Parses `wh-1=52.52,13.40;wh-2=48.1,11.6`.
fn depots(env: &Env) -> mesh_runtime::Result<HashMap<String, (f64, f64)>> {
    const VAR: &str = "MESH_LOGISTICS_DEPOTS";
    let raw = env.string(VAR, "");
    let expected = "expected warehouse=lat,lon pairs separated by ';', e.g. wh-1=52.52,13.40";
    raw.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (wh, ll) = item
                .split_once('=')
                .ok_or_else(|| bad(VAR, &raw, expected))?;
            let (lat, lon) = ll.split_once(',').ok_or_else(|| bad(VAR, &raw, expected))?;
            let lat: f64 = lat.trim().parse().map_err(|_| bad(VAR, &raw, expected))?;
            let lon: f64 = lon.trim().parse().map_err(|_| bad(VAR, &raw, expected))?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(bad(
                    VAR,
                    &raw,
                    "latitude must be in -90..=90, longitude in -180..=180",
                ));
            }
            Ok((wh.trim().to_string(), (lat, lon)))
        })
        .collect()
}

fn positive_f64(env: &Env, var: &str, default: f64) -> mesh_runtime::Result<f64> {
    let v = env.parse::<f64>(var, default, "a number")?;
    if !(v.is_finite() && v > 0.0) {
        return Err(bad(var, &v.to_string(), "must be a finite number > 0"));
    }
    Ok(v)
}

fn fraction(env: &Env, var: &str, default: f64) -> mesh_runtime::Result<f64> {
    let v = env.parse::<f64>(var, default, "a number")?;
    if !(0.0..1.0).contains(&v) {
        return Err(bad(var, &v.to_string(), "must be in 0..1 (0 = off)"));
    }
    Ok(v)
}

fn probability(env: &Env, var: &str, default: f64) -> mesh_runtime::Result<f64> {
    let v = env.parse::<f64>(var, default, "a number")?;
    if !(v > 0.0 && v < 1.0) {
        return Err(bad(var, &v.to_string(), "must be strictly between 0 and 1"));
    }
    Ok(v)
}

impl LogisticsConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        let cfg = Self::read(env)?;
        if cfg.routing.require_depots && cfg.routing.depots.is_empty() {
            return Err(bad(
                "MESH_LOGISTICS_DEPOTS",
                "",
                "is empty while MESH_LOGISTICS_REQUIRE_DEPOTS=true; expected warehouse=lat,lon \
                 pairs, e.g. wh-1=52.52,13.40",
            ));
        }
        Ok(cfg)
    }

    fn read(env: &Env) -> mesh_runtime::Result<Self> {
        let history_days = env.positive("MESH_LOGISTICS_HISTORY_DAYS", 365)?;
        let vehicles = env.parse::<usize>(
            "MESH_LOGISTICS_VEHICLES",
            0,
            "a whole number (0 = unlimited)",
        )?;
        Ok(LogisticsConfig {
            grpc_addr: env.addr("MESH_LOGISTICS_GRPC_ADDR", "127.0.0.1:50056")?,
            group: env.string("MESH_LOGISTICS_GROUP", "mesh-logistics"),
            default_warehouse: env.string("MESH_LOGISTICS_DEFAULT_WAREHOUSE", "default"),
            debounce: env.millis(
                "MESH_LOGISTICS_PLAN_DEBOUNCE_MS",
                Duration::from_millis(200),
            )?,
            plan_routes_default: env
                .millis("MESH_LOGISTICS_PLAN_ROUTES_MS", Duration::from_secs(1))?,
            routing: wave::Routing {
                capacity: i64::from(env.positive("MESH_LOGISTICS_CAPACITY", 100)?),
                vehicles: (vehicles > 0).then_some(vehicles),
                speed_kmh: positive_f64(env, "MESH_LOGISTICS_SPEED_KMH", 30.0)?,
                service_min: env.parse("MESH_LOGISTICS_SERVICE_MIN", 5.0, "a number of minutes")?,
                depots: depots(env)?,
                solve_budget: env.millis("MESH_LOGISTICS_SOLVE_MS", Duration::from_secs(1))?,
                solve_iterations: env.parse(
                    "MESH_LOGISTICS_SOLVE_ITERATIONS",
                    2000,
                    "a whole number",
                )?,
                replan_budget: env
                    .millis("MESH_LOGISTICS_REPLAN_MS", Duration::from_millis(200))?,
                require_depots: env.parse(
                    "MESH_LOGISTICS_REQUIRE_DEPOTS",
                    false,
                    "true or false",
                )?,
                reoptimize: wave::Reoptimize {
                    drift: fraction(env, "MESH_LOGISTICS_REOPTIMIZE_DRIFT", 0.02)?,
                    every: env.parse(
                        "MESH_LOGISTICS_REOPTIMIZE_EVERY",
                        10,
                        "a whole number of replans (0 = no count limit)",
                    )?,
                    growth: env.parse(
                        "MESH_LOGISTICS_REOPTIMIZE_GROWTH",
                        0.02,
                        "a fraction of the served stops (0 = no growth limit)",
                    )?,
                    max_age: env.millis(
                        "MESH_LOGISTICS_REOPTIMIZE_MAX_AGE_MS",
                        Duration::from_secs(10),
                    )?,
                },
            },
            log_summary: env.millis("MESH_LOGISTICS_LOG_SUMMARY_MS", Duration::from_secs(60))?,
            inventory: forecasting::Inventory {
                lead_time_days: env.positive("MESH_LOGISTICS_LEAD_TIME_DAYS", 3)? as usize,
                service_level: probability(env, "MESH_LOGISTICS_SERVICE_LEVEL", 0.95)?,
                stockout_threshold: probability(env, "MESH_LOGISTICS_STOCKOUT_THRESHOLD", 0.2)?,
                max_history_days: history_days as usize,
            },
            retention: retention::Retention {
                keep_days: env.parse(
                    "MESH_LOGISTICS_RETAIN_DAYS",
                    30,
                    "a whole number of days (0 = keep every wave)",
                )?,
                history_days: history_days.unsigned_abs(),
            },
            retention_every: env.millis(
                "MESH_LOGISTICS_RETENTION_EVERY_MS",
                Duration::from_secs(3600),
            )?,
        })
    }
}

/// What the service needs from the process (the runtime's skeleton). Its
/// clock dates plans, forecasts and stock versions; its peers: fraud
/// (`GetDecision` for orders whose decision has not arrived when their wave
/// is planned).
pub type Deps = mesh_runtime::Deps;

/// A started consumer and planner.
pub struct Consumer {
    pub assigned: Assignment,
    pub consumer: tokio::task::JoinHandle<()>,
    pub planner: tokio::task::JoinHandle<()>,
    /// The periodic retention run ([`retention`]).
    pub retention: tokio::task::JoinHandle<()>,
}

/// A started logistics service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub consumer: tokio::task::JoinHandle<()>,
    pub planner: tokio::task::JoinHandle<()>,
    pub retention: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
}

/// Starts the order consumer and the wave planner (no server).
pub fn start_consumer(cfg: &LogisticsConfig, deps: &Deps, shutdown: CancellationToken) -> Consumer {
    let (handle, planner) = planner::spawn(
        planner::PlannerCtx {
            store: deps.store.clone(),
            partitions: deps.partitions,
            routing: cfg.routing.clone(),
            debounce: cfg.debounce,
            log_summary: cfg.log_summary,
            clock: deps.clock.clone(),
            fraud: deps.peers.fraud.clone(),
        },
        shutdown.clone(),
    );
    // Orders, and fraud's decisions on them: a REVIEW or REJECT holds the
    // order's stop out of the routes.
    let cc = deps.consumer_config(
        &cfg.group,
        &[&deps.topics.order_events, &deps.topics.decisions],
    );
    let handler = Arc::new(handler::LogisticsHandler {
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        partitions: deps.partitions,
        dead_letter_topic: deps.topics.dead_letter.clone(),
        alerts_topic: deps.topics.alerts.clone(),
        group: cfg.group.clone(),
        default_warehouse: cfg.default_warehouse.clone(),
        planner: handle,
        decisions_topic: deps.topics.decisions.clone(),
        inventory: cfg.inventory.clone(),
        clock: deps.clock.clone(),
        stock_alerts: Default::default(),
        stock_marks: Default::default(),
    });
    let (assigned, consumer) =
        mesh_runtime::service::start_consumer("logistics", cc, handler, shutdown.clone());
    let retention = spawn_retention(cfg, deps, shutdown);
    Consumer {
        assigned,
        consumer,
        planner,
        retention,
    }
}

/// Runs [`retention::expire`] at start and every `retention_every`.
fn spawn_retention(
    cfg: &LogisticsConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let state = (
        deps.store.clone(),
        deps.partitions,
        deps.clock.clone(),
        cfg.retention,
    );
    mesh_runtime::service::spawn_periodic(
        "logistics retention",
        cfg.retention_every,
        mesh_runtime::service::FirstRun::AtStart,
        shutdown,
        state,
        |(store, partitions, clock, keep)| async move {
            let gone = retention::expire(&store, partitions, clock.now_ms(), keep).await?;
            for (kind, n) in [
                ("waves", gone.waves),
                ("orders", gone.orders),
                ("series_days", gone.series_days),
            ] {
                metrics::EXPIRED.with_label_values(&[kind]).inc_by(n as u64);
            }
            if gone.waves + gone.series_days > 0 || gone.skipped > 0 {
                tracing::info!(
                    waves = gone.waves,
                    orders = gone.orders,
                    series_days = gone.series_days,
                    skipped_slots = gone.skipped,
                    "retention removed past waves and demand days"
                );
            }
            Ok::<_, Error>(())
        },
    )
}

/// The gRPC service over `deps`.
pub fn service(cfg: &LogisticsConfig, deps: &Deps) -> grpc::LogisticsGrpc {
    grpc::LogisticsGrpc {
        store: deps.store.clone(),
        partitions: deps.partitions,
        producer: deps.producer.clone(),
        alerts_topic: deps.topics.alerts.clone(),
        inventory: cfg.inventory.clone(),
        plan_routes_default: cfg.plan_routes_default,
        clock: deps.clock.clone(),
        stock_versions: Arc::new(forecasting::StockVersions::default()),
        routing: cfg.routing.clone(),
    }
}

/// Starts the consumer, the planner and the gRPC server.
pub async fn start(
    cfg: &LogisticsConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> mesh_runtime::Result<Running> {
    let c = start_consumer(cfg, deps, shutdown.clone());
    let (grpc_addr, server) = GrpcServer::new()
        .add(LogisticsServiceServer::new(service(cfg, deps)))
        .await
        .start("logistics", cfg.grpc_addr, shutdown)
        .await?;
    Ok(Running {
        grpc_addr,
        assigned: c.assigned,
        consumer: c.consumer,
        planner: c.planner,
        retention: c.retention,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors_name_the_variable() {
        let cfg = LogisticsConfig::from_env(&Env::from_pairs([(
            "MESH_LOGISTICS_DEPOTS",
            "wh-1=52.5,13.4; wh-2 = 48.1,11.6",
        )]))
        .unwrap();
        assert_eq!(cfg.routing.depots["wh-2"], (48.1, 11.6));
        assert_eq!(cfg.routing.vehicles, None);
        let e = LogisticsConfig::from_env(&Env::from_pairs([("MESH_LOGISTICS_DEPOTS", "wh-1")]))
            .unwrap_err();
        assert!(e.to_string().contains("MESH_LOGISTICS_DEPOTS"), "{e}");
        let e =
            LogisticsConfig::from_env(&Env::from_pairs([("MESH_LOGISTICS_SERVICE_LEVEL", "1.5")]))
                .unwrap_err();
        assert!(
            e.to_string().contains("MESH_LOGISTICS_SERVICE_LEVEL"),
            "{e}"
        );
        assert!(
            !cfg.routing.require_depots,
            "off by default (embedded mesh)"
        );
        let e = LogisticsConfig::from_env(&Env::from_pairs([(
            "MESH_LOGISTICS_REQUIRE_DEPOTS",
            "true",
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("MESH_LOGISTICS_DEPOTS"), "{e}");
        let e = LogisticsConfig::from_env(&Env::from_pairs([(
            "MESH_LOGISTICS_REQUIRE_DEPOTS",
            "yes please",
        )]))
        .unwrap_err();
        assert!(
            e.to_string().contains("MESH_LOGISTICS_REQUIRE_DEPOTS"),
            "{e}"
        );
        let ok = LogisticsConfig::from_env(&Env::from_pairs([
            ("MESH_LOGISTICS_REQUIRE_DEPOTS", "true"),
            ("MESH_LOGISTICS_DEPOTS", "wh-1=52.5,13.4"),
        ]))
        .unwrap();
        assert!(ok.routing.require_depots);
        assert_eq!(ok.routing.reoptimize.drift, 0.02);
    }
}
