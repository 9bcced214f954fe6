//! `LogisticsService`: conversion and validation only; the work is in
//! [`crate::wave`] and [`crate::forecasting`].
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::Producer;
use mesh_proto::logistics::v1 as pb;
use mesh_proto::logistics::v1::logistics_service_server::LogisticsService;
use mesh_store::StateStore;
use mesh_vrp::{Budget, Instance, SolveOptions, Stop};
use tonic::{Request, Response, Status};

use crate::error::{invalid, to_status, Error, Result};
use crate::forecasting::{self, Inventory, StockVersions};
use crate::handler::publish_alert;
use crate::wave::{self, schedule, StopState, StoredPlan};
use crate::{fold, plan_store, Clock};

/// Due time used for "no limit" in `PlanRoutes`.
const NO_LIMIT: f64 = 1e9;

/// Longest id a request may name. Ids the stream carries are shorter
/// (ingest caps them at 128 bytes), and a NOT_FOUND that repeats an
/// unbounded id could outgrow the caller's HTTP/2 header limit.
const MAX_ID_BYTES: usize = 256;

/// Refuses an empty or over-long id, naming the field.
fn check_id(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        Err(invalid(field, "is empty"))
    } else if value.len() > MAX_ID_BYTES {
        Err(invalid(
            field,
            format!("is {} bytes; at most {MAX_ID_BYTES}", value.len()),
        ))
    } else {
        Ok(())
    }
}

/// Longest tenant id, as ingest accepts them.
const MAX_TENANT_BYTES: usize = 64;

/// Refuses a `tenant_id` that ingest would not accept (more than 64 bytes,
/// or characters outside `[A-Za-z0-9_.-]`): no tenant has such an id. Empty
/// passes: every tenant's.
pub fn check_tenant(tenant: &str) -> Result<()> {
    if tenant.len() > MAX_TENANT_BYTES {
        return Err(invalid(
            "tenant_id",
            format!("is {} bytes; at most {MAX_TENANT_BYTES}", tenant.len()),
        ));
    }
    if let Some(c) = tenant
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
    {
        return Err(invalid(
            "tenant_id",
            format!("has {c:?}; expected letters, digits, '_', '.', '-'"),
        ));
    }
    Ok(())
}

pub struct LogisticsGrpc {
    pub store: StateStore,
    pub partitions: i32,
    pub producer: Producer,
    pub alerts_topic: String,
    pub inventory: Inventory,
    pub plan_routes_default: Duration,
    pub clock: Clock,
    pub stock_versions: Arc<StockVersions>,
    /// Routing settings: depots for `GetPlan`'s map, budgets for its
    /// fresh-solve comparison.
    pub routing: wave::Routing,
}

fn check_stop(field: &str, s: &pb::RouteStop, capacity: i64, depot: bool) -> Result<Stop> {
    for (name, v) in [
        ("x", s.x),
        ("y", s.y),
        ("ready", s.ready),
        ("due", s.due),
        ("service", s.service),
    ] {
        if !v.is_finite() || (v < 0.0 && !matches!(name, "x" | "y")) {
            return Err(invalid(
                format!("{field}.{name}"),
                format!("{v} must be finite and >= 0"),
            ));
        }
    }
    let due = if s.due == 0.0 { NO_LIMIT } else { s.due };
    if s.ready > due {
        return Err(invalid(
            format!("{field}.ready"),
            format!("{} is after due {}", s.ready, s.due),
        ));
    }
    if !depot && !(0..=capacity).contains(&s.demand) {
        return Err(invalid(
            format!("{field}.demand"),
            format!("{} is outside 0..={capacity}", s.demand),
        ));
    }
    Ok(Stop {
        x: s.x,
        y: s.y,
        demand: if depot { 0 } else { s.demand },
        ready: s.ready,
        due,
        service: if depot { 0.0 } else { s.service },
    })
}

/// Solves a stateless routing request.
pub fn plan_routes(
    r: &pb::PlanRoutesRequest,
    default_budget: Duration,
) -> Result<pb::PlanRoutesResponse> {
    if r.capacity <= 0 {
        return Err(invalid("capacity", format!("{} must be > 0", r.capacity)));
    }
    let depot = r
        .depot
        .as_ref()
        .ok_or_else(|| invalid("depot", "is required"))?;
    if r.stops.is_empty() {
        return Err(invalid("stops", "needs at least one stop"));
    }
    if r.time_budget_ms > 60_000 {
        return Err(invalid(
            "time_budget_ms",
            format!("{} is above 60000", r.time_budget_ms),
        ));
    }
    let mut nodes = vec![check_stop("depot", depot, r.capacity, true)?];
    for (i, s) in r.stops.iter().enumerate() {
        nodes.push(check_stop(&format!("stops[{i}]"), s, r.capacity, false)?);
    }
    let fleet = (r.vehicles > 0).then_some(r.vehicles as usize);
    let inst = Instance::from_stops("plan-routes", &nodes, r.capacity, fleet, None)?;
    let budget = if r.time_budget_ms == 0 {
        default_budget
    } else {
        Duration::from_millis(u64::from(r.time_budget_ms))
    };
    let res = mesh_vrp::solve(
        &inst,
        &SolveOptions {
            seed: 1,
            budget: Budget::time(budget),
            threads: 1,
        },
    )?;
    let id = |c: usize| {
        let s = &r.stops[c - 1];
        if s.id.is_empty() {
            (c - 1).to_string()
        } else {
            s.id.clone()
        }
    };
    let routes = res
        .solution
        .routes
        .iter()
        .filter(|r| !r.is_empty())
        .map(|route| {
            let s = schedule(&inst, route);
            pb::Route {
                stop_ids: route.iter().map(|&c| id(c)).collect(),
                stop_indexes: route.iter().map(|&c| (c - 1) as u32).collect(),
                arrivals: s.arrivals,
                load: s.load,
                distance: s.distance,
            }
        })
        .collect();
    Ok(pb::PlanRoutesResponse {
        routes,
        distance: res.distance,
        vehicles: res.vehicles as u32,
        seconds: res.seconds,
    })
}

fn to_wave_plan(p: StoredPlan) -> pb::WavePlan {
    pb::WavePlan {
        held: p.held,
        degraded: p.degraded,
        vehicles: p.routes.len() as u32,
        routes: p
            .routes
            .into_iter()
            .map(|r| pb::Route {
                stop_ids: r.stops,
                stop_indexes: Vec::new(),
                arrivals: r.arrivals,
                load: r.load,
                distance: r.distance,
            })
            .collect(),
        wave_id: p.wave_id,
        version: p.version,
        method: p.method,
        distance: p.distance,
        unassigned: p.unassigned,
        computed_at_ms: p.computed_at_ms,
        seconds: p.seconds,
        stops: Vec::new(),
        depot: None,
        fresh_distance: 0.0,
    }
}

impl LogisticsGrpc {
    /// The plan of `wave_id`; a wave of another tenant than a non-empty
    /// `tenant` answers as an unknown wave does.
    async fn get_plan(
        &self,
        tenant: &str,
        wave_id: &str,
        compare_fresh: bool,
    ) -> Result<pb::WavePlan> {
        check_tenant(tenant)?;
        check_id("wave_id", wave_id)?;
        let not_found = || Error::NotFound(format!("wave {wave_id} has no plan (yet)"));
        if !fold::WaveParts::parse(wave_id).visible_to(tenant) {
            return Err(not_found());
        }
        let stored = wave::load_plan(&self.store, self.partitions, wave_id)
            .await?
            .ok_or_else(not_found)?;
        let fresh = if compare_fresh {
            let stops = wave::load_wave(&self.store, self.partitions, wave_id).await?;
            let (routing, wave, plan) = (self.routing.clone(), wave_id.to_string(), stored.clone());
            tokio::task::spawn_blocking(move || {
                wave::fresh_distance(&routing, &wave, &stops, &plan)
            })
            .await
            .map_err(|e| Error::BadPlan {
                wave: wave_id.to_string(),
                reason: format!("fresh solve task failed: {e}"),
            })??
        } else {
            None
        };
        let mut plan = to_wave_plan(stored);
        plan.fresh_distance = fresh.unwrap_or(0.0);
        let planned: std::collections::HashSet<&String> = plan
            .routes
            .iter()
            .flat_map(|r| &r.stop_ids)
            .chain(&plan.unassigned)
            .collect();
        plan.stops = wave::load_wave(&self.store, self.partitions, wave_id)
            .await?
            .into_values()
            .filter(|s| planned.contains(&s.id))
            .map(|s| pb::WaveStop {
                id: s.id,
                location: Some(pb::GeoPoint {
                    lat: s.lat,
                    lon: s.lon,
                }),
            })
            .collect();
        let warehouse = fold::WaveParts::parse(wave_id).warehouse;
        plan.depot = self
            .routing
            .depots
            .get(warehouse)
            .map(|&(lat, lon)| pb::GeoPoint { lat, lon });
        Ok(plan)
    }

    /// The live waves of `tenant` (every tenant's when empty).
    async fn list_waves(&self, tenant: &str) -> Result<pb::ListWavesResponse> {
        check_tenant(tenant)?;
        // Only waves with something to deliver: the live index holds waves
        // whose latest plan routes or leaves unassigned an active stop; a
        // wave whose orders were all cancelled or held left it with its
        // empty plan, and waves of unpaid orders never entered it. Another
        // tenant's waves are skipped by id, before anything is read.
        let mut waves = Vec::new();
        let live = plan_store::live_waves(&self.store, self.partitions).await?;
        for w in live
            .into_iter()
            .filter(|w| fold::WaveParts::parse(w).visible_to(tenant))
        {
            let stops = wave::load_wave(&self.store, self.partitions, &w).await?;
            let active = stops
                .values()
                .filter(|s| s.state == StopState::Active)
                .count() as u32;
            if active == 0 {
                continue;
            }
            let plan = wave::load_plan(&self.store, self.partitions, &w).await?;
            let parts = fold::WaveParts::parse(&w);
            waves.push(pb::WaveSummary {
                warehouse: parts.warehouse.to_string(),
                region: parts.region.to_string(),
                day: parts.day.to_string(),
                orders: stops.len() as u32,
                active_stops: active,
                plan_version: plan.map(|p| p.version).unwrap_or(0),
                wave_id: w,
            });
        }
        Ok(pb::ListWavesResponse { waves })
    }

    async fn forecast(&self, r: pb::ForecastRequest) -> Result<pb::ForecastResponse> {
        if r.series_key.len() > MAX_ID_BYTES {
            check_id("series_key", &r.series_key)?;
        }
        check_tenant(&r.tenant_id)?;
        let level = if r.level == 0.0 { 0.95 } else { r.level };
        let f = forecasting::forecast(
            &self.store,
            self.partitions,
            &self.inventory,
            &r.tenant_id,
            &r.series_key,
            r.horizon as usize,
            level,
            self.clock.now_ms(),
        )
        .await?;
        Ok(pb::ForecastResponse {
            history: f.history,
            today: f.today,
            series_key: r.series_key,
            method: f.method,
            first_day: fold::day_name(f.first_day),
            point: f.point,
            lower: f.lower,
            upper: f.upper,
            level,
            history_days: f.history_days as u32,
        })
    }

    /// Reorder suggestions of `tenant`'s stock at a warehouse, from that
    /// tenant's demand; with an empty `tenant`, of every tenant's stock summed
    /// per SKU, from every tenant's demand. A warehouse where `tenant` set no
    /// stock answers as one where nobody did.
    async fn reorder(
        &self,
        tenant: &str,
        warehouse: &str,
        read_only: bool,
    ) -> Result<pb::ReorderSuggestionsResponse> {
        check_tenant(tenant)?;
        check_id("warehouse", warehouse)?;
        let stock =
            forecasting::stock_levels(&self.store, self.partitions, tenant, warehouse).await?;
        if stock.is_empty() {
            return Err(Error::NotFound(format!(
                "no stock set for warehouse {warehouse}"
            )));
        }
        let now = self.clock.now_ms();
        let inv = &self.inventory;
        // Whose stock an alert is about: the tenant's, or (every tenant's
        // summed) the warehouse's.
        let whose = if tenant.is_empty() {
            warehouse.to_string()
        } else {
            format!("{tenant}/{warehouse}")
        };
        let mut suggestions = Vec::with_capacity(stock.len());
        for (sku, on_hand, on_order) in stock {
            let s = forecasting::suggestion(
                &self.store,
                self.partitions,
                inv,
                tenant,
                warehouse,
                &sku,
                on_hand,
                on_order,
                now,
            )
            .await?;
            let alert = s.stockout_alert(inv.stockout_threshold);
            if alert && !read_only {
                let day = fold::day_name(fold::day_of(now));
                let a = pb::LogisticsAlert {
                    alert_id: format!("logistics:stockout:{whose}:{sku}:{day}"),
                    kind: pb::AlertKind::StockoutRisk as i32,
                    tenant_id: tenant.to_string(),
                    warehouse: warehouse.to_string(),
                    sku: sku.clone(),
                    probability: s.stockout_probability,
                    detail: format!(
                        "stock-out probability {:.2} over {} days exceeds {:.2}",
                        s.stockout_probability, inv.lead_time_days, inv.stockout_threshold
                    ),
                    occurred_at_ms: now,
                    vehicle: -1,
                    ..Default::default()
                };
                publish_alert(
                    &self.producer,
                    &self.alerts_topic,
                    &format!("{whose}/{sku}"),
                    &a,
                )
                .await?;
            }
            suggestions.push(pb::ReorderSuggestion {
                sku,
                on_hand,
                on_order,
                lead_time_demand: s.lead_time_demand,
                safety_stock: s.safety_stock,
                reorder_point: s.reorder_point,
                order_quantity: s.order_qty,
                stockout_probability: s.stockout_probability,
                alert,
            });
        }
        Ok(pb::ReorderSuggestionsResponse {
            warehouse: warehouse.to_string(),
            lead_time_days: inv.lead_time_days as u32,
            service_level: inv.service_level,
            suggestions,
        })
    }
}

#[tonic::async_trait]
impl LogisticsService for LogisticsGrpc {
    async fn plan_routes(
        &self,
        request: Request<pb::PlanRoutesRequest>,
    ) -> std::result::Result<Response<pb::PlanRoutesResponse>, Status> {
        let r = request.into_inner();
        let budget = self.plan_routes_default;
        tokio::task::spawn_blocking(move || plan_routes(&r, budget))
            .await
            .map_err(|e| Status::internal(format!("solver task failed: {e}")))?
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> std::result::Result<Response<pb::WavePlan>, Status> {
        let r = request.into_inner();
        self.get_plan(&r.tenant_id, &r.wave_id, r.compare_fresh)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_waves(
        &self,
        request: Request<pb::ListWavesRequest>,
    ) -> std::result::Result<Response<pb::ListWavesResponse>, Status> {
        self.list_waves(&request.into_inner().tenant_id)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn forecast(
        &self,
        request: Request<pb::ForecastRequest>,
    ) -> std::result::Result<Response<pb::ForecastResponse>, Status> {
        self.forecast(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_series(
        &self,
        request: Request<pb::ListSeriesRequest>,
    ) -> std::result::Result<Response<pb::ListSeriesResponse>, Status> {
        let r = request.into_inner();
        check_tenant(&r.tenant_id).map_err(to_status)?;
        let prefix = r.prefix;
        forecasting::series_keys(&self.store, self.partitions, &r.tenant_id)
            .await
            .map(|keys| {
                Response::new(pb::ListSeriesResponse {
                    series_keys: keys
                        .into_iter()
                        .filter(|k| k.starts_with(&prefix))
                        .collect(),
                })
            })
            .map_err(to_status)
    }

    async fn set_stock(
        &self,
        request: Request<pb::SetStockRequest>,
    ) -> std::result::Result<Response<pb::SetStockResponse>, Status> {
        let r = request.into_inner();
        check_tenant(&r.tenant_id).map_err(to_status)?;
        forecasting::set_stock(
            &self.store,
            self.partitions,
            &self.stock_versions,
            &r.tenant_id,
            &r.warehouse,
            &r.sku,
            r.on_hand,
            r.on_order,
            self.clock.now_ms(),
        )
        .await
        .map(|()| Response::new(pb::SetStockResponse {}))
        .map_err(to_status)
    }

    async fn reorder_suggestions(
        &self,
        request: Request<pb::ReorderSuggestionsRequest>,
    ) -> std::result::Result<Response<pb::ReorderSuggestionsResponse>, Status> {
        let r = request.into_inner();
        self.reorder(&r.tenant_id, &r.warehouse, r.read_only)
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}
