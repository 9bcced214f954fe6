//! The operator console: one HTML page (`/console`, also `/`) served on the
//! admin address, polling one JSON document (`/api/console`) every second.
//!
//! The JSON is built from what any client could see: the process's own
//! Prometheus registry (throughput, decisions, errors), the lag sampler
//! ([`crate::lag`]), and the services' public gRPC APIs (churn `ListAtRisk`,
//! fraud `GetReviewQueue`, logistics `ListWaves`/`GetPlan`/`ListSeries`/
//! `Forecast`); it reads no service's store. A section whose source fails
//! says why in its `error` field; the page shows that instead of the panel,
//! so the console degrades one panel at a time.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use mesh_bus::TopicNames;
use mesh_proto::churn::v1::churn_service_client::ChurnServiceClient;
use mesh_proto::churn::v1::ListAtRiskRequest;
use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_proto::fraud::v1::{Action, GetReviewQueueRequest};
use mesh_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use mesh_proto::logistics::v1::{
    ForecastRequest, GetPlanRequest, ListSeriesRequest, ListWavesRequest, ReorderSuggestionsRequest,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::console_stages::SharedStages;
use crate::lag::SharedLag;

const PAGE: &str = include_str!("../console/index.html");
/// Seconds of throughput history kept for the sparkline.
const HISTORY: usize = 120;

/// What the console reads from.
#[derive(Clone)]
pub struct ConsoleCtx {
    pub topics: TopicNames,
    pub lag: SharedLag,
    pub stages: SharedStages,
    churn: Ch,
    fraud: Ch,
    logistics: Ch,
    engage: Ch,
    rates: Arc<Mutex<Rates>>,
    /// Fresh-solve distance of the last drawn plan: (wave, version, km).
    fresh: Arc<Mutex<Option<(String, u64, f64)>>>,
    /// Whose demand the forecast panel shows; empty: every tenant's summed.
    tenant: String,
}

/// Where the services the console asks answer: `http://host:port` each.
#[derive(Debug, Clone)]
pub struct Addrs {
    pub churn: String,
    pub fraud: String,
    pub logistics: String,
    pub engage: String,
}

impl Addrs {
    /// The services of one process, on the addresses they bound.
    pub fn local(
        churn: SocketAddr,
        fraud: SocketAddr,
        logistics: SocketAddr,
        engage: SocketAddr,
    ) -> Self {
        Addrs {
            churn: format!("http://{churn}"),
            fraud: format!("http://{fraud}"),
            logistics: format!("http://{logistics}"),
            engage: format!("http://{engage}"),
        }
    }
}

/// A channel to a service that sends the process's service token when the
/// mesh requires tokens.
type Ch = mesh_runtime::auth::AuthChannel;

fn channel(url: &str) -> Ch {
    let ch = mesh_runtime::tls::endpoint(url)
        .unwrap_or_else(|_| Endpoint::from_static("http://127.0.0.1:9"))
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    mesh_runtime::auth::authed(ch)
}

impl ConsoleCtx {
    pub fn new(topics: TopicNames, lag: SharedLag, stages: SharedStages, addrs: Addrs) -> Self {
        ConsoleCtx {
            topics,
            lag,
            stages,
            churn: channel(&addrs.churn),
            fraud: channel(&addrs.fraud),
            logistics: channel(&addrs.logistics),
            engage: channel(&addrs.engage),
            rates: Arc::default(),
            fresh: Arc::default(),
            tenant: String::new(),
        }
    }

    /// Shows the demand forecasts of `tenant` (`MESH_CONSOLE_TENANT`).
    pub fn with_tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.to_string();
        self
    }
}

/// Counter totals at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at_ms: i64,
    ingested: f64,
    consumed: f64,
}

#[derive(Debug, Default)]
struct Rates {
    history: VecDeque<Sample>,
}

/// Sums every sample of a metric family whose labels match `filter`.
pub fn metric_sum(
    families: &[prometheus::proto::MetricFamily],
    name: &str,
    filter: &[(&str, &str)],
) -> f64 {
    // `+ 0.0`: an empty f64 sum is -0.0.
    metric_by(families, name, filter, None)
        .values()
        .sum::<f64>()
        + 0.0
}

/// Sums a metric family grouped by one label (`None`: one group `""`).
pub fn metric_by(
    families: &[prometheus::proto::MetricFamily],
    name: &str,
    filter: &[(&str, &str)],
    label: Option<&str>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in families.iter().filter(|f| f.name() == name) {
        for m in f.get_metric() {
            let labels: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if !filter.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            let v = if m.counter.is_some() {
                m.get_counter().value()
            } else if m.gauge.is_some() {
                m.get_gauge().value()
            } else if m.histogram.is_some() {
                m.get_histogram().get_sample_count() as f64
            } else {
                0.0
            };
            let key = label
                .and_then(|l| labels.get(l))
                .map(|s| s.to_string())
                .unwrap_or_default();
            *out.entry(key).or_insert(0.0) += v;
        }
    }
    out
}

/// Samples the counters once a second until `shutdown`.
pub fn spawn_sampler(ctx: &ConsoleCtx, shutdown: CancellationToken) {
    let rates = ctx.rates.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let fams = prometheus::gather();
            let s = Sample {
                at_ms: now_ms(),
                ingested: metric_sum(&fams, "mesh_ingest_accepted_total", &[]),
                consumed: metric_sum(&fams, "mesh_bus_consumed_total", &[]),
            };
            let mut r = rates.lock().expect("rates lock");
            r.history.push_back(s);
            while r.history.len() > HISTORY {
                r.history.pop_front();
            }
        }
    });
}

/// The console's routes, to merge into the admin router.
pub fn router(ctx: ConsoleCtx) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/console", get(page))
        .route("/api/console", get(snapshot))
        .with_state(ctx)
}

async fn page() -> impl IntoResponse {
    Html(PAGE)
}

async fn snapshot(State(ctx): State<ConsoleCtx>) -> Json<Value> {
    Json(build(&ctx).await)
}

/// The whole console document.
pub async fn build(ctx: &ConsoleCtx) -> Value {
    let (at_risk, reviews, logistics, campaigns) =
        tokio::join!(at_risk(ctx), reviews(ctx), logistics(ctx), campaigns(ctx));
    json!({
        "at_ms": now_ms(),
        "throughput": throughput(ctx),
        "lag": serde_json::to_value(ctx.lag.lock().expect("lag lock").clone()).unwrap_or(Value::Null),
        "lifecycle": lifecycle(ctx),
        "at_risk": at_risk,
        "fraud": reviews,
        "logistics": logistics,
        "campaigns": campaigns,
    })
}

/// Every campaign (at most 10) with its report, from engage.
async fn campaigns(ctx: &ConsoleCtx) -> Value {
    use mesh_proto::engage::v1 as epb;
    use mesh_proto::engage::v1::engage_service_client::EngageServiceClient;
    let mut c = EngageServiceClient::new(ctx.engage.clone());
    let list = match c
        .list_campaigns(epb::ListCampaignsRequest {
            tenant_id: String::new(),
        })
        .await
    {
        Ok(r) => r.into_inner().campaigns,
        Err(s) => return json!({ "error": format!("engage ListCampaigns: {}", s.message()) }),
    };
    let mut out = Vec::new();
    for camp in list.into_iter().take(10) {
        let r = match c
            .campaign_report(epb::CampaignReportRequest {
                tenant_id: camp.tenant_id.clone(),
                campaign_id: camp.campaign_id.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return json!({ "error": format!("engage CampaignReport: {}", s.message()) }),
        };
        let arm = |a: &Option<epb::ArmStats>| {
            let a = a.unwrap_or_default();
            json!({"participants": a.participants, "converted": a.converted,
                   "conversion_rate": a.conversion_rate, "revenue_per_user": a.revenue_per_user})
        };
        let lift = |l: &Option<epb::Lift>| {
            let l = l.unwrap_or_default();
            json!({"difference": l.difference, "ci_low": l.ci_low, "ci_high": l.ci_high,
                   "relative": l.relative})
        };
        out.push(json!({
            "tenant_id": camp.tenant_id, "campaign_id": camp.campaign_id, "name": camp.name,
            "treatment": arm(&r.treatment), "control": arm(&r.control), "ready": r.ready,
            "conversion_lift": lift(&r.conversion_lift),
            "revenue_lift_cuped": lift(&r.revenue_lift_cuped),
            "cuped_variance_reduction": r.cuped_variance_reduction,
            "sequential_p_value": r.sequential_p_value, "significant": r.significant,
            "sequential_min_per_arm": r.sequential_min_per_arm,
            "offers_sent": r.offers_sent,
        }));
    }
    json!({ "campaigns": out })
}

fn throughput(ctx: &ConsoleCtx) -> Value {
    let fams = prometheus::gather();
    let r = ctx.rates.lock().expect("rates lock");
    let last = r.history.back().copied().unwrap_or_default();
    // Rate over the last five seconds of samples.
    let base = r
        .history
        .iter()
        .rev()
        .nth(5)
        .or(r.history.front())
        .copied()
        .unwrap_or_default();
    let dt = ((last.at_ms - base.at_ms) as f64 / 1000.0).max(1e-9);
    let rate = |a: f64, b: f64| {
        if last.at_ms > base.at_ms {
            (a - b) / dt
        } else {
            0.0
        }
    };
    let series: Vec<Value> = r
        .history
        .iter()
        .zip(r.history.iter().skip(1))
        .map(|(a, b)| {
            let dt = ((b.at_ms - a.at_ms) as f64 / 1000.0).max(1e-9);
            json!({"at_ms": b.at_ms, "ingested_per_s": (b.ingested - a.ingested) / dt})
        })
        .collect();
    json!({
        "ingested_total": metric_sum(&fams, "mesh_ingest_accepted_total", &[]),
        "rejected_total": metric_sum(&fams, "mesh_ingest_rejected_total", &[]),
        "dead_lettered_total": metric_sum(&fams, "mesh_ingest_dead_lettered_total", &[]),
        "duplicates_total": metric_sum(&fams, "mesh_ingest_duplicates_total", &[]),
        "consumed_total": metric_sum(&fams, "mesh_bus_consumed_total", &[]),
        "consumed_by_group": metric_by(&fams, "mesh_bus_consumed_total", &[], Some("group")),
        "handler_errors_total": metric_sum(&fams, "mesh_bus_handler_errors_total", &[]),
        "ingested_per_s": rate(last.ingested, base.ingested),
        "consumed_per_s": rate(last.consumed, base.consumed),
        // Actions are labelled with the proto names (`ACTION_REJECT`).
        "decisions": metric_by(&fams, "mesh_fraud_decisions_total", &[("path", "consumer")], Some("action"))
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches("ACTION_").to_lowercase(), v))
            .collect::<BTreeMap<_, _>>(),
        "churn_alerts": metric_by(&fams, "mesh_churn_alerts_total", &[], Some("kind")),
        "fraud_budget": fraud_budget(&fams),
        "history": series,
    })
}

/// The review budget as the review team sees it, since this process
/// started: share of consumer decisions sent to review against the budget,
/// precision = resolved reviews labelled fraud / all resolved reviews,
/// recall = confirmed fraud / (confirmed fraud + chargebacks on approved
/// orders). `null` where nothing was counted yet.
fn fraud_budget(fams: &[prometheus::proto::MetricFamily]) -> Value {
    let decided = metric_by(
        fams,
        "mesh_fraud_decisions_total",
        &[("path", "consumer")],
        Some("action"),
    );
    let total: f64 = decided.values().sum();
    let of = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let reviewed = of(&decided, "ACTION_REVIEW");
    let rejected = of(&decided, "ACTION_REJECT");
    let labels = metric_by(
        fams,
        "mesh_fraud_review_resolutions_total",
        &[],
        Some("label"),
    );
    let fraud = of(&labels, "LABEL_FRAUD");
    let legit = of(&labels, "LABEL_LEGIT");
    let chargebacks = metric_by(fams, "mesh_fraud_chargebacks_total", &[], Some("decision"));
    let missed = of(&chargebacks, "ACTION_APPROVE");
    let ratio = |a: f64, b: f64| if b > 0.0 { json!(a / b) } else { Value::Null };
    let budget = metric_sum(fams, "mesh_fraud_review_budget", &[]);
    json!({
        "budget": if budget > 0.0 { json!(budget) } else { Value::Null },
        "threshold": metric_sum(fams, "mesh_fraud_review_threshold", &[]),
        "decided": total,
        "reviewed": reviewed,
        "rejected": rejected,
        "review_rate": ratio(reviewed, total),
        "resolved_fraud": fraud,
        "resolved_legit": legit,
        "chargebacks_on_approved": missed,
        "precision": ratio(fraud, fraud + legit),
        "recall": ratio(fraud, fraud + missed),
    })
}

/// Lifecycle stages: users per stage folded from the lifecycle topic
/// ([`crate::console_stages`]), the transitions published, and the records
/// consumed per input topic.
fn lifecycle(ctx: &ConsoleCtx) -> Value {
    let fams = prometheus::gather();
    // What this process's profile published, or the topic's end offset
    // when profile runs elsewhere (brokers may report that one late).
    let topic_end = ctx
        .lag
        .lock()
        .expect("lag lock")
        .topic_ends
        .get(&ctx.topics.lifecycle)
        .copied()
        .unwrap_or(0);
    let published = metric_sum(&fams, "mesh_profile_transitions_total", &[]) as i64;
    let transitions = topic_end.max(published);
    let stages = ctx.stages.lock().expect("stages lock").clone();
    json!({
        "stages": if stages.stages.is_empty() { Value::Null } else { json!(stages.stages) },
        "stage_transitions_read": stages.transitions,
        // Why there is no table, or what went wrong reading the topic.
        "note": match (&stages.error, stages.stages.is_empty()) {
            (Some(e), _) => json!(e),
            (None, true) => json!("no stage transition published yet (users still new)"),
            (None, false) => Value::Null,
        },
        "transitions_published": transitions,
        "events_by_topic": metric_by(&fams, "mesh_bus_consumed_total", &[], Some("topic")),
    })
}

async fn at_risk(ctx: &ConsoleCtx) -> Value {
    let mut c = ChurnServiceClient::new(ctx.churn.clone());
    match c
        .list_at_risk(ListAtRiskRequest {
            tenant_id: String::new(),
            threshold: 0.0,
            page_size: 12,
            page_token: String::new(),
        })
        .await
    {
        Ok(r) => {
            let users: Vec<Value> = r
                .into_inner()
                .users
                .into_iter()
                .map(|u| {
                    // churn_probability: P(no order in `horizon_weeks`) from
                    // `model`; p_alive only on "bgnbd" rows (see churn.proto).
                    json!({"tenant_id": u.tenant_id, "user_id": u.user_id,
                           "churn_probability": u.churn_probability, "p_alive": u.p_alive,
                           "model": u.model, "horizon_weeks": u.horizon_weeks,
                           "last_purchase_ms": u.last_purchase_ms,
                           "last_active_ms": u.last_active_ms, "alerted": u.alerted})
                })
                .collect();
            json!({ "users": users })
        }
        Err(s) => json!({ "error": format!("churn ListAtRisk: {}", s.message()) }),
    }
}

async fn reviews(ctx: &ConsoleCtx) -> Value {
    let mut c = FraudServiceClient::new(ctx.fraud.clone());
    match c
        .get_review_queue(GetReviewQueueRequest {
            tenant_id: String::new(),
            page_size: 12,
            page_token: String::new(),
        })
        .await
    {
        Ok(r) => {
            let items: Vec<Value> = r
                .into_inner()
                .items
                .into_iter()
                .filter_map(|i| i.decision)
                .map(|d| {
                    let action = Action::try_from(d.action)
                        .map(|a| a.as_str_name().trim_start_matches("ACTION_").to_lowercase())
                        .unwrap_or_else(|_| d.action.to_string());
                    json!({"order_id": d.order_id, "user_id": d.user_id, "action": action,
                           "score": d.score, "model_score": d.model_score,
                           "anomaly_score": d.anomaly_score, "occurred_at_ms": d.occurred_at_ms,
                           "reasons": d.reasons.iter().map(|r| json!({"code": r.code, "text": r.text})).collect::<Vec<_>>()})
                })
                .collect();
            json!({ "review_queue": items })
        }
        Err(s) => json!({ "error": format!("fraud GetReviewQueue: {}", s.message()) }),
    }
}

async fn logistics(ctx: &ConsoleCtx) -> Value {
    let mut c = LogisticsServiceClient::new(ctx.logistics.clone());
    let waves = match c.list_waves(ListWavesRequest::default()).await {
        Ok(r) => r.into_inner().waves,
        Err(s) => return json!({ "error": format!("logistics ListWaves: {}", s.message()) }),
    };
    let wave_list: Vec<Value> = waves
        .iter()
        .map(|w| {
            json!({"wave_id": w.wave_id, "warehouse": w.warehouse, "region": w.region,
                        "day": w.day, "orders": w.orders, "active_stops": w.active_stops,
                        "plan_version": w.plan_version})
        })
        .collect();
    // Draw the planned wave with the most active stops.
    let best = waves
        .iter()
        .filter(|w| w.plan_version > 0)
        .max_by_key(|w| (w.active_stops, w.wave_id.clone()));
    let plan = match best {
        Some(w) => plan_drawing(ctx, &mut c, &w.wave_id).await,
        None => json!({ "error": "no wave has a plan yet" }),
    };
    let mut warehouses: Vec<String> = waves.iter().map(|w| w.warehouse.clone()).collect();
    warehouses.sort();
    warehouses.dedup();
    json!({ "waves": wave_list, "plan": plan, "forecasts": forecasts(&mut c, &ctx.tenant).await,
            "stock": stock(&mut c, &warehouses).await })
}

/// Stock on hand of the SKUs with stock set in `warehouses` (read only:
/// no alert is published), lowest first, at most 8 rows.
async fn stock(c: &mut LogisticsServiceClient<Ch>, warehouses: &[String]) -> Value {
    let mut rows = Vec::new();
    for w in warehouses.iter().take(4) {
        let Ok(r) = c
            .reorder_suggestions(ReorderSuggestionsRequest {
                tenant_id: String::new(),
                warehouse: w.clone(),
                read_only: true,
            })
            .await
        else {
            // NOT_FOUND: no stock set for this warehouse.
            continue;
        };
        for s in r.into_inner().suggestions {
            rows.push((w.clone(), s));
        }
    }
    rows.sort_by(|a, b| {
        a.1.on_hand
            .total_cmp(&b.1.on_hand)
            .then_with(|| a.1.sku.cmp(&b.1.sku))
    });
    let total: f64 = rows.iter().map(|(_, s)| s.on_hand).sum();
    let skus = rows.len();
    let lowest: Vec<Value> = rows
        .into_iter()
        .take(8)
        .map(|(w, s)| {
            json!({"warehouse": w, "sku": s.sku, "on_hand": s.on_hand, "reorder_point": s.reorder_point,
                   "stockout_probability": s.stockout_probability})
        })
        .collect();
    json!({"skus": skus, "on_hand_total": total, "lowest": lowest})
}

/// The plan of one wave with coordinates: routes as polylines of (lon, lat).
/// The plan of `wave` drawn as routes, with its distance beside a fresh
/// solve of the same stops (asked once per plan version: a solve costs the
/// solve budget).
async fn plan_drawing(ctx: &ConsoleCtx, c: &mut LogisticsServiceClient<Ch>, wave: &str) -> Value {
    let get = |compare_fresh| GetPlanRequest {
        tenant_id: String::new(),
        wave_id: wave.to_string(),
        compare_fresh,
    };
    let mut plan = match c.get_plan(get(false)).await {
        Ok(p) => p.into_inner(),
        Err(s) => return json!({ "error": format!("logistics GetPlan: {}", s.message()) }),
    };
    let cached = ctx
        .fresh
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|(w, v, _)| w == wave && *v == plan.version)
        .map(|(_, _, d)| *d);
    let fresh = match cached {
        Some(d) => Some(d),
        None => match c.get_plan(get(true)).await {
            Ok(p) => {
                plan = p.into_inner();
                *ctx.fresh.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((wave.to_string(), plan.version, plan.fresh_distance));
                Some(plan.fresh_distance)
            }
            Err(_) => None,
        },
    };
    let drift = fresh.filter(|f| *f > 0.0).map(|f| plan.distance / f - 1.0);
    let lon_lat = |p: &mesh_proto::logistics::v1::GeoPoint| [p.lon, p.lat];
    let stops: HashMap<&str, [f64; 2]> = plan
        .stops
        .iter()
        .filter_map(|s| Some((s.id.as_str(), lon_lat(s.location.as_ref()?))))
        .collect();
    let routes: Vec<Value> = plan
        .routes
        .iter()
        .map(|r| {
            let pts: Vec<[f64; 2]> = r
                .stop_ids
                .iter()
                .filter_map(|id| stops.get(id.as_str()).copied())
                .collect();
            json!({"points": pts, "load": r.load, "distance": r.distance})
        })
        .collect();
    let depot = plan.depot.as_ref().map(lon_lat);
    json!({"wave_id": plan.wave_id, "version": plan.version, "method": plan.method,
           "distance": plan.distance, "vehicles": plan.vehicles, "unassigned": plan.unassigned.len(),
           "fresh_distance": fresh, "drift": drift,
           "depot": depot, "routes": routes})
}

/// Forecasts of the first three category series of `tenant` (every
/// tenant's summed when empty).
async fn forecasts(c: &mut LogisticsServiceClient<Ch>, tenant: &str) -> Value {
    let series = match c
        .list_series(ListSeriesRequest {
            prefix: "cat:".into(),
            tenant_id: tenant.to_string(),
        })
        .await
    {
        Ok(r) => r.into_inner().series_keys,
        Err(s) => return json!({ "error": format!("logistics ListSeries: {}", s.message()) }),
    };
    let mut out = Vec::new();
    for key in series.into_iter().filter(|k| !k.contains('@')).take(3) {
        let r = c
            .forecast(ForecastRequest {
                series_key: key.clone(),
                horizon: 14,
                level: 0.9,
                tenant_id: tenant.to_string(),
            })
            .await;
        out.push(match r {
            Ok(f) => {
                let f = f.into_inner();
                json!({"series_key": key, "tenant_id": tenant, "method": f.method, "first_day": f.first_day,
                       "history": f.history, "today": f.today,
                       "point": f.point, "lower": f.lower, "upper": f.upper, "level": f.level})
            }
            Err(s) => json!({"series_key": key, "error": s.message(), "history": []}),
        });
    }
    Value::Array(out)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
