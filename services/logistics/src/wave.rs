//! Waves: reading a wave's stops from every partition slot, turning them
//! into a routing instance, planning (first `solve`, then `replan` from the
//! stored plan) and storing the plan with its version.
//! Plans are stored with their version by [`crate::plan_store`].
//!
//! Units: coordinates are minutes of travel from the depot
//! (equirectangular projection, `speed_kmh`), times are minutes after the
//! wave day's midnight (UTC). The depot opens at 0 and vehicles must be back
//! by [`DEPOT_CLOSE_MIN`].
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use mesh_store::{Slot, StateStore};
use mesh_vrp::{Budget, Changes, Instance, ReplanOptions, Solution, SolveOptions, Stop};

use crate::error::{Error, Result};
use crate::fold::{self, FRAUD_HOLD};
pub use crate::plan_store::{load_plan, store_plan, StoredPlan, StoredRoute};
use crate::SCOPE;

/// Latest return to the depot, minutes after the wave day's midnight.
pub const DEPOT_CLOSE_MIN: f64 = 2.0 * 1440.0;

/// Routing settings shared by every wave.
#[derive(Debug, Clone)]
pub struct Routing {
    /// Capacity of every vehicle (units of ordered items).
    pub capacity: i64,
    /// Most vehicles per wave, `None` for unlimited.
    pub vehicles: Option<usize>,
    /// Travel speed used to turn kilometres into minutes.
    pub speed_kmh: f64,
    /// Service minutes per stop.
    pub service_min: f64,
    /// Depot coordinates (lat, lon) per warehouse. A warehouse without one
    /// is refused when `require_depots` is set (production); otherwise it
    /// uses the centroid of its wave's stops at the first solve, kept in the
    /// plan so later replans route from the same point.
    pub depots: HashMap<String, (f64, f64)>,
    /// Refuse waves of warehouses missing from `depots`.
    pub require_depots: bool,
    /// When a replanned wave is compared with a fresh solve.
    pub reoptimize: Reoptimize,
    /// Time budget of a first `solve`.
    pub solve_budget: Duration,
    /// Generation cap of a first `solve` (it stops at whichever limit comes first).
    pub solve_iterations: u64,
    /// Time budget of a `replan`.
    pub replan_budget: Duration,
}

/// Background re-optimization: incremental replans drift from what a fresh
/// solve of the same stops finds (new stops are inserted where the
/// anchored routes have room, and the anchored local search rarely moves a
/// stop to another vehicle), so the planner compares a replanned wave with
/// a fresh solve at the solve budget every `every` replans, when the served
/// stops grew by `growth` since the last fresh solve, when that solve is
/// older than `max_age`, or when the cheap estimate
/// ([`crate::drift::estimated_drift`]) exceeds `drift`; it adopts the fresh
/// plan when the replanned one is longer by more than a quarter of `drift`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reoptimize {
    /// Tolerated relative excess over a fresh solve (0.02 = 2%); 0 disables.
    pub drift: f64,
    /// Replans between two comparisons (0: no count limit).
    pub every: u32,
    /// Growth of the served stops since the last fresh solve that makes a
    /// comparison due (0.02 = 2% more stops; 0: no growth limit). A wave
    /// that doubles after its first solve drifts most.
    pub growth: f64,
    /// Age of the last fresh solve after which the next replan that adds
    /// stops is compared (zero: no age limit).
    pub max_age: Duration,
}

impl Default for Reoptimize {
    fn default() -> Self {
        Self {
            drift: 0.02,
            every: 10,
            growth: 0.02,
            max_age: Duration::from_secs(10),
        }
    }
}

/// Where a stop is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopState {
    /// Placed, not yet paid (and not cash on delivery).
    Pending,
    /// Paid (or cash on delivery) and not cancelled: to be delivered.
    Active,
    /// Cancelled with reason `fraud_hold`.
    Held,
    /// Cancelled for any other reason.
    Cancelled,
}

/// One order of a wave, as stored.
#[derive(Debug, Clone)]
pub struct StopRec {
    /// `<tenant>/<order_id>`.
    pub id: String,
    pub lat: f64,
    pub lon: f64,
    pub demand: i64,
    pub from_ms: i64,
    pub to_ms: i64,
    pub state: StopState,
    /// The buyer (`user` field), for `GetDecision`.
    pub user: String,
    /// Fraud's action on the order (`ACTION_ACCEPT`, ...) once known.
    pub fraud: Option<String>,
}

/// Whether fraud's action keeps an order out of the routes.
pub fn holds(action: &str) -> bool {
    action == "ACTION_REVIEW" || action == "ACTION_REJECT"
}

impl StopRec {
    fn from_hash(id: &str, h: &HashMap<String, String>) -> Option<Self> {
        let f = |k: &str| h.get(k).and_then(|v| v.parse::<f64>().ok());
        let i = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let flag = |k: &str| h.get(k).is_some_and(|v| v == "1");
        let fraud = h.get("fraud").cloned();
        let state = match h.get("cancelled").map(String::as_str) {
            Some(FRAUD_HOLD) => StopState::Held,
            Some(_) => StopState::Cancelled,
            None if fraud.as_deref().is_some_and(holds) => StopState::Held,
            None if flag("paid") || flag("cod") => StopState::Active,
            None => StopState::Pending,
        };
        Some(StopRec {
            id: id.to_string(),
            lat: f("lat")?,
            lon: f("lon")?,
            demand: i("demand").max(1),
            from_ms: i("from_ms"),
            to_ms: i("to_ms"),
            state,
            user: h.get("user").cloned().unwrap_or_default(),
            fraud,
        })
    }
}

fn slots(partitions: i32) -> impl Iterator<Item = Slot<'static>> {
    (0..partitions).map(|partition| Slot {
        scope: SCOPE,
        partition,
    })
}

/// Every order ever placed into `wave`, from every partition slot, by id.
pub async fn load_wave(
    store: &StateStore,
    partitions: i32,
    wave: &str,
) -> Result<BTreeMap<String, StopRec>> {
    let wkey = fold::wave_key(wave);
    let members: Vec<_> = slots(partitions).map(|s| (s, wkey.clone())).collect();
    let members = store.hgetall_many(&members).await?;
    let mut keys = Vec::new();
    for (slot, m) in slots(partitions).zip(members) {
        for id in m.into_keys() {
            keys.push((slot, format!("o:{id}"), id));
        }
    }
    let lookups: Vec<_> = keys.iter().map(|(s, k, _)| (*s, k.clone())).collect();
    let hashes = store.hgetall_many(&lookups).await?;
    Ok(keys
        .iter()
        .zip(hashes)
        .filter_map(|((_, _, id), h)| Some((id.clone(), StopRec::from_hash(id, &h)?)))
        .collect())
}

/// Asks fraud's `GetDecision` for the active stops whose decision has not
/// arrived on the decisions topic; a REVIEW or REJECT holds the stop for
/// this plan (the topic's record persists it later). Returns the degraded
/// note when fraud did not answer: those stops are routed.
async fn ask_decisions(
    fraud: Option<&mesh_runtime::peers::Peer>,
    stops: &mut BTreeMap<String, StopRec>,
) -> Vec<String> {
    use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
    use mesh_proto::fraud::v1::GetDecisionRequest;
    let Some(fraud) = fraud else {
        return Vec::new();
    };
    let missing: Vec<(String, GetDecisionRequest)> = stops
        .values()
        .filter(|s| s.state == StopState::Active && s.fraud.is_none() && !s.user.is_empty())
        .filter_map(|s| {
            let (tenant, order) = s.id.split_once('/')?;
            Some((
                s.id.clone(),
                GetDecisionRequest {
                    tenant_id: tenant.to_string(),
                    user_id: s.user.clone(),
                    order_id: order.to_string(),
                },
            ))
        })
        .collect();
    let asks = missing.into_iter().map(|(id, req)| async move {
        let r = fraud
            .call("GetDecision", req, |ch, r| async move {
                FraudServiceClient::new(ch).get_decision(r).await
            })
            .await;
        (id, r)
    });
    let mut unanswered = 0;
    let mut reason = String::new();
    for (id, r) in futures::future::join_all(asks).await {
        match r {
            Ok(d) if d.found => {
                let action = d.action().as_str_name().to_string();
                if let Some(s) = stops.get_mut(&id) {
                    if holds(&action) {
                        s.state = StopState::Held;
                    }
                    s.fraud = Some(action);
                }
            }
            Ok(_) => {}
            Err(e) => {
                unanswered += 1;
                reason = e.reason();
            }
        }
    }
    if unanswered == 0 {
        return Vec::new();
    }
    mesh_runtime::peers::degraded("logistics", "fraud");
    vec![format!(
        "{reason} ({unanswered} orders without a decision routed)"
    )]
}

/// Every wave id seen, over all partitions, sorted.
pub async fn list_waves(store: &StateStore, partitions: i32) -> Result<Vec<String>> {
    let keys: Vec<_> = slots(partitions)
        .map(|s| (s, fold::WAVES.to_string()))
        .collect();
    let mut waves: Vec<String> = store
        .hgetall_many(&keys)
        .await?
        .into_iter()
        .flat_map(HashMap::into_keys)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    waves.sort();
    Ok(waves)
}

/// Midnight (Unix ms, UTC) of the day in a wave id ([`fold::WaveParts`]).
fn wave_midnight(wave: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(fold::WaveParts::parse(wave).day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0)
}

/// A wave as a routing instance: node `i + 1` is `ids[i]`.
struct WaveInstance {
    inst: Instance,
    ids: Vec<String>,
}

/// The depot a wave is routed from: the warehouse's configured depot; else
/// an error when depots are required; else the one stored with the previous
/// plan; else the centroid of `stops`.
pub fn depot_of(
    routing: &Routing,
    wave: &str,
    stops: &[&StopRec],
    prev: Option<&StoredPlan>,
) -> Result<(f64, f64)> {
    let warehouse = fold::WaveParts::parse(wave).warehouse;
    if let Some(d) = routing.depots.get(warehouse) {
        return Ok(*d);
    }
    if routing.require_depots {
        return Err(Error::NoDepot {
            warehouse: warehouse.to_string(),
        });
    }
    if let Some(d) = prev.and_then(|p| p.depot) {
        return Ok(d);
    }
    let n = stops.len().max(1) as f64;
    Ok((
        stops.iter().map(|s| s.lat).sum::<f64>() / n,
        stops.iter().map(|s| s.lon).sum::<f64>() / n,
    ))
}

impl WaveInstance {
    fn build(
        routing: &Routing,
        wave: &str,
        stops: &[&StopRec],
        (lat0, lon0): (f64, f64),
    ) -> Result<Self> {
        let per_km = 60.0 / routing.speed_kmh;
        let cos = lat0.to_radians().cos();
        let midnight = wave_midnight(wave);
        let minutes = |ms: i64| (ms - midnight) as f64 / 60_000.0;
        let mut nodes = vec![Stop {
            x: 0.0,
            y: 0.0,
            demand: 0,
            ready: 0.0,
            due: DEPOT_CLOSE_MIN,
            service: 0.0,
        }];
        for s in stops {
            let ready = if s.from_ms > 0 {
                minutes(s.from_ms).clamp(0.0, DEPOT_CLOSE_MIN)
            } else {
                0.0
            };
            let due = if s.to_ms > 0 {
                minutes(s.to_ms).clamp(ready, DEPOT_CLOSE_MIN)
            } else {
                DEPOT_CLOSE_MIN
            };
            nodes.push(Stop {
                x: (s.lon - lon0) * cos * 111.32 * per_km,
                y: (s.lat - lat0) * 110.57 * per_km,
                demand: s.demand.min(routing.capacity),
                ready,
                due,
                service: routing.service_min,
            });
        }
        let inst = Instance::from_stops(wave, &nodes, routing.capacity, routing.vehicles, None)?;
        Ok(WaveInstance {
            inst,
            ids: stops.iter().map(|s| s.id.clone()).collect(),
        })
    }

    /// Whether a vehicle can serve node `c` alone and be back in time.
    fn reachable(&self, c: usize) -> bool {
        let i = &self.inst;
        let start = i.d(0, c).max(i.ready[c]);
        i.d(0, c) <= i.due[c] && start + i.service[c] + i.d(c, 0) <= i.due[0]
    }

    fn stored(&self, routes: &[Vec<usize>]) -> (Vec<StoredRoute>, f64) {
        let mut total = 0.0;
        let out = routes
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| {
                let s = schedule(&self.inst, r);
                total += s.distance;
                StoredRoute {
                    stops: r.iter().map(|&c| self.ids[c - 1].clone()).collect(),
                    arrivals: s.arrivals,
                    load: s.load,
                    distance: s.distance,
                }
            })
            .collect();
        (out, total)
    }
}

/// A route driven: service start per stop, load and distance.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub arrivals: Vec<f64>,
    pub load: i64,
    pub distance: f64,
}

/// Drives `route` (customer nodes of `inst`) from the depot's opening,
/// waiting at stops that are not open yet.
pub fn schedule(inst: &Instance, route: &[usize]) -> Schedule {
    let (mut time, mut prev, mut distance, mut load) = (inst.ready[0], 0, 0.0, 0);
    let mut arrivals = Vec::with_capacity(route.len());
    for &c in route {
        distance += inst.d(prev, c);
        let start = (time + inst.d(prev, c)).max(inst.ready[c]);
        arrivals.push(start);
        time = start + inst.service[c];
        load += inst.demand[c];
        prev = c;
    }
    distance += inst.d(prev, 0);
    Schedule {
        arrivals,
        load,
        distance,
    }
}

/// Computes the next plan of a wave from its stops and the stored plan:
/// `solve` when there is no plan with routes yet, `replan` from it
/// otherwise, `reoptimize` when a replan drifted and a fresh solve of the
/// same stops is shorter ([`Reoptimize`]). `None` when nothing changed.
pub fn next_plan(
    routing: &Routing,
    wave: &str,
    stops: &BTreeMap<String, StopRec>,
    prev: Option<&StoredPlan>,
    now_ms: i64,
) -> Result<Option<StoredPlan>> {
    let started = Instant::now();
    let planned: HashSet<&str> = prev
        .map(|p| p.routes.iter().flat_map(|r| r.stops.iter()))
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|id| stops.contains_key(*id))
        .collect();
    let nodes: Vec<&StopRec> = stops
        .values()
        .filter(|s| s.state == StopState::Active || planned.contains(s.id.as_str()))
        .collect();
    let active = nodes
        .iter()
        .filter(|s| s.state == StopState::Active)
        .count();
    // Stops of the previous plan that left the wave (their buyer was
    // erased): the plan must be stored again without them, even when
    // nothing else changed.
    let gone = prev.is_some_and(|p| {
        p.routes
            .iter()
            .flat_map(|r| &r.stops)
            .chain(&p.unassigned)
            .chain(&p.held)
            .any(|id| !stops.contains_key(id))
    });
    let emptied = || {
        prev.filter(|_| gone)
            .map(|p| emptied(wave, p, stops, now_ms))
    };
    if nodes.is_empty() || (planned.is_empty() && active == 0) {
        return Ok(emptied());
    }
    let depot = depot_of(routing, wave, &nodes, prev)?;
    let w = WaveInstance::build(routing, wave, &nodes, depot)?;
    let index: HashMap<&str, usize> = w
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i + 1))
        .collect();
    let mut unassigned: Vec<String> = Vec::new();
    let mut wanted = Vec::new();
    for (i, s) in nodes.iter().enumerate() {
        if s.state == StopState::Active && !planned.contains(s.id.as_str()) {
            if w.reachable(i + 1) {
                wanted.push(i + 1);
            } else {
                unassigned.push(s.id.clone());
            }
        }
    }
    let version = prev.map(|p| p.version).unwrap_or(0) + 1;
    let mut replans = 0;
    let mut reference = None;
    let (method, routes) = if planned.is_empty() {
        if wanted.is_empty() {
            return Ok(emptied());
        }
        // Solve only the stops that can be served; the others stay unassigned.
        ("solve", fresh_solve(routing, &w, &wanted)?)
    } else {
        let prev = prev.expect("planned stops come from a plan");
        let plan = Solution::new(
            prev.routes
                .iter()
                .map(|r| {
                    r.stops
                        .iter()
                        .filter_map(|s| index.get(s.as_str()).copied())
                        .collect()
                })
                .collect(),
        );
        let mut changes = Changes {
            added: wanted,
            ..Changes::default()
        };
        for s in &nodes {
            if !planned.contains(s.id.as_str()) {
                continue;
            }
            let c = index[s.id.as_str()];
            match s.state {
                StopState::Active => {}
                StopState::Cancelled => changes.cancelled.push(c),
                StopState::Held | StopState::Pending => changes.held.push(c),
            }
        }
        if changes == Changes::default() && unassigned == prev.unassigned && !gone {
            return Ok(None);
        }
        let out = mesh_vrp::replan(
            &w.inst,
            &plan,
            &changes,
            &ReplanOptions {
                budget: Budget::time(routing.replan_budget),
                reassign_penalty: None,
                seed: 1,
            },
        )?;
        unassigned.extend(out.unassigned.iter().map(|&c| w.ids[c - 1].clone()));
        replans = prev.replans_since_solve + 1;
        let routes: Vec<Vec<usize>> = out
            .solution
            .routes
            .into_iter()
            .filter(|r| !r.is_empty())
            .collect();
        let distance = w.inst.routes_distance(&routes);
        // Only when stops were added: removing stops never moves the
        // others to another vehicle (the replan's contract), and the
        // comparison waits for the next insertion.
        let check = if changes.added.is_empty() {
            crate::drift::Check::NotDue
        } else {
            crate::drift::reoptimize(
                &routing.reoptimize,
                prev,
                crate::drift::Since {
                    replans,
                    age_ms: now_ms.saturating_sub(prev.solved_at_ms),
                },
                &routes,
                distance,
                |served| {
                    let fresh = fresh_solve(routing, &w, served)?;
                    let d = w.inst.routes_distance(&fresh);
                    Ok((fresh, d))
                },
            )
        };
        match check {
            crate::drift::Check::Adopted { routes } => {
                replans = 0;
                ("reoptimize", routes)
            }
            crate::drift::Check::Kept { fresh_distance } => {
                replans = 0;
                reference = Some(fresh_distance);
                ("replan", routes)
            }
            crate::drift::Check::NotDue => ("replan", routes),
        }
    };
    let (routes, distance) = w.stored(&routes);
    let served = routes.iter().map(|r| r.stops.len()).sum();
    let (solved_distance, solved_stops, solved_at_ms) = match (prev, reference) {
        (_, Some(fresh)) => (fresh, served, now_ms),
        (Some(p), None) if replans > 0 => (p.solved_distance, p.solved_stops, p.solved_at_ms),
        _ => (distance, served, now_ms),
    };
    unassigned.sort();
    Ok(Some(StoredPlan {
        wave_id: wave.to_string(),
        version,
        method: method.to_string(),
        routes,
        distance,
        unassigned,
        computed_at_ms: now_ms,
        seconds: started.elapsed().as_secs_f64(),
        held: stops
            .values()
            .filter(|s| s.state == StopState::Held)
            .map(|s| s.id.clone())
            .collect(),
        degraded: Vec::new(),
        depot: Some(depot),
        replans_since_solve: replans,
        solved_distance,
        solved_stops,
        solved_at_ms,
    }))
}

/// The plan after `prev` when no stop is left to route: no routes, the
/// held stops of `stops`, the rest of `prev` kept.
fn emptied(
    wave: &str,
    prev: &StoredPlan,
    stops: &BTreeMap<String, StopRec>,
    now_ms: i64,
) -> StoredPlan {
    StoredPlan {
        wave_id: wave.to_string(),
        version: prev.version + 1,
        method: "replan".into(),
        routes: Vec::new(),
        distance: 0.0,
        unassigned: Vec::new(),
        computed_at_ms: now_ms,
        seconds: 0.0,
        held: stops
            .values()
            .filter(|s| s.state == StopState::Held)
            .map(|s| s.id.clone())
            .collect(),
        degraded: Vec::new(),
        depot: prev.depot,
        replans_since_solve: prev.replans_since_solve + 1,
        solved_distance: prev.solved_distance,
        solved_stops: prev.solved_stops,
        solved_at_ms: prev.solved_at_ms,
    }
}

/// The distance of a fresh solve, at the solve budget, of the stops `plan`
/// serves, from the same depot: what a replanned plan is judged against
/// (`GetPlan` with `compare_fresh`). `None` when the plan serves no stop.
pub fn fresh_distance(
    routing: &Routing,
    wave: &str,
    stops: &BTreeMap<String, StopRec>,
    plan: &StoredPlan,
) -> Result<Option<f64>> {
    let served: HashSet<&str> = plan
        .routes
        .iter()
        .flat_map(|r| r.stops.iter())
        .map(String::as_str)
        .collect();
    let nodes: Vec<&StopRec> = stops
        .values()
        .filter(|s| served.contains(s.id.as_str()))
        .collect();
    if nodes.is_empty() {
        return Ok(None);
    }
    let depot = depot_of(routing, wave, &nodes, Some(plan))?;
    let w = WaveInstance::build(routing, wave, &nodes, depot)?;
    let wanted: Vec<usize> = (1..=nodes.len()).collect();
    let fresh = fresh_solve(routing, &w, &wanted)?;
    Ok(Some(w.inst.routes_distance(&fresh)))
}

/// A fresh solve of customer nodes `wanted` of `w` at the solve budget;
/// routes in `w`'s node numbers.
fn fresh_solve(routing: &Routing, w: &WaveInstance, wanted: &[usize]) -> Result<Vec<Vec<usize>>> {
    let nodes: Vec<Stop> = std::iter::once(0)
        .chain(wanted.iter().copied())
        .map(|c| Stop {
            x: w.inst.coords[c].0,
            y: w.inst.coords[c].1,
            demand: w.inst.demand[c],
            ready: w.inst.ready[c],
            due: w.inst.due[c],
            service: w.inst.service[c],
        })
        .collect();
    let sub = Instance::from_stops(&w.inst.name, &nodes, w.inst.capacity, w.inst.fleet, None)?;
    let r = mesh_vrp::solve(
        &sub,
        &SolveOptions {
            seed: 1,
            budget: Budget {
                time: Some(routing.solve_budget),
                iterations: Some(routing.solve_iterations),
            },
            threads: 1,
        },
    )?;
    Ok(r.solution
        .routes
        .iter()
        .filter(|r| !r.is_empty())
        .map(|route| route.iter().map(|&c| wanted[c - 1]).collect())
        .collect())
}

/// Loads a wave and its plan, computes the next plan and stores it.
/// Returns the stored plan, or `None` when nothing changed or a newer plan
/// was stored meanwhile.
pub async fn plan_wave(
    store: &StateStore,
    partitions: i32,
    routing: &Routing,
    wave: &str,
    now_ms: i64,
    fraud: Option<&mesh_runtime::peers::Peer>,
) -> Result<Option<StoredPlan>> {
    let mut stops = load_wave(store, partitions, wave).await?;
    let degraded = ask_decisions(fraud, &mut stops).await;
    let prev = load_plan(store, partitions, wave).await?;
    let routing = routing.clone();
    let w = wave.to_string();
    let next =
        tokio::task::spawn_blocking(move || next_plan(&routing, &w, &stops, prev.as_ref(), now_ms))
            .await
            .map_err(|e| Error::BadPlan {
                wave: wave.to_string(),
                reason: format!("planner task failed: {e}"),
            })??;
    let Some(mut plan) = next else {
        return Ok(None);
    };
    plan.degraded = degraded;
    let method = plan.method.clone();
    let stored = store_plan(store, partitions, &plan).await?;
    crate::metrics::PLANS
        .with_label_values(&[method.as_str(), if stored { "ok" } else { "stale" }])
        .inc();
    Ok(stored.then_some(plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: i64 = 1_795_132_800_000; // 2026-11-20 00:00 UTC

    fn routing() -> Routing {
        Routing {
            capacity: 10,
            vehicles: None,
            speed_kmh: 30.0,
            service_min: 5.0,
            depots: [("wh".to_string(), (52.5, 13.4))].into(),
            solve_budget: Duration::from_secs(2),
            solve_iterations: 100,
            replan_budget: Duration::from_millis(50),
            require_depots: true,
            reoptimize: Reoptimize {
                drift: 0.02,
                every: 10,
                growth: 0.0,
                max_age: Duration::ZERO,
            },
        }
    }

    fn stops(n: usize) -> BTreeMap<String, StopRec> {
        (0..n)
            .map(|i| {
                let a = i as f64;
                let s = StopRec {
                    id: format!("t/o{i:02}"),
                    lat: 52.5 + 0.04 * a.sin(),
                    lon: 13.4 + 0.06 * a.cos(),
                    demand: 3,
                    from_ms: DAY0 + 8 * 3_600_000,
                    to_ms: DAY0 + 16 * 3_600_000,
                    state: StopState::Active,
                    user: format!("u{i}"),
                    fraud: None,
                };
                (s.id.clone(), s)
            })
            .collect()
    }

    #[test]
    fn a_warehouse_without_depot_is_refused_when_depots_are_required() {
        let s = stops(4);
        let mut r = routing();
        let e = next_plan(&r, "t|wh-x|r|2026-11-20", &s, None, 1).unwrap_err();
        assert!(matches!(e, Error::NoDepot { .. }), "{e}");
        r.require_depots = false;
        let e = next_plan(&r, "t|wh-x|r|2026-11-20", &s, None, 1).unwrap();
        assert!(e.is_some(), "allowed when depots are not required");
        r.require_depots = true;
        let msg = next_plan(&r, "t|wh-x|r|2026-11-20", &s, None, 1)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("wh-x") && msg.contains("MESH_LOGISTICS_DEPOTS"),
            "{msg}"
        );
        assert!(msg.contains("MESH_LOGISTICS_REQUIRE_DEPOTS"), "{msg}");
        assert_eq!(
            crate::error::to_status(Error::NoDepot {
                warehouse: "wh-x".into()
            })
            .code(),
            tonic::Code::FailedPrecondition
        );
    }

    #[test]
    fn without_a_configured_depot_replans_keep_the_first_centroid() {
        let mut s = stops(6);
        let mut r = routing();
        r.depots.clear();
        r.require_depots = false;
        let wave = "t|wh|r|2026-11-20";
        let first = next_plan(&r, wave, &s, None, 1).unwrap().unwrap();
        let depot = first.depot.unwrap();
        for i in 6..9 {
            let mut extra = s["t/o00"].clone();
            extra.id = format!("t/x{i}");
            extra.lat += 0.05;
            s.insert(extra.id.clone(), extra);
        }
        let second = next_plan(&r, wave, &s, Some(&first), 2).unwrap().unwrap();
        assert_eq!(second.depot, Some(depot));
    }

    #[test]
    fn solve_then_replan_keeps_vehicles_and_skips_unpaid_and_unreachable() {
        let wave = "t|wh|r|2026-11-20";
        let mut s = stops(10);
        s.get_mut("t/o09").unwrap().state = StopState::Pending;
        // Far beyond a day's drive: cannot be served.
        s.get_mut("t/o08").unwrap().lat = 10.0;
        let first = next_plan(&routing(), wave, &s, None, 1).unwrap().unwrap();
        assert_eq!((first.method.as_str(), first.version), ("solve", 1));
        assert_eq!(first.unassigned, vec!["t/o08".to_string()]);
        let planned: Vec<_> = first.routes.iter().flat_map(|r| r.stops.clone()).collect();
        assert_eq!(planned.len(), 8);
        assert!(first.routes.iter().all(|r| r.load <= 10));
        assert!(next_plan(&routing(), wave, &s, Some(&first), 2)
            .unwrap()
            .is_none());

        s.get_mut("t/o01").unwrap().state = StopState::Cancelled;
        s.get_mut("t/o02").unwrap().state = StopState::Held;
        let second = next_plan(&routing(), wave, &s, Some(&first), 3)
            .unwrap()
            .unwrap();
        assert_eq!((second.method.as_str(), second.version), ("replan", 2));
        for r in &second.routes {
            for id in &r.stops {
                assert_ne!(id, "t/o01");
                assert_ne!(id, "t/o02");
                let before: HashSet<_> = first.routes[first.vehicle_of(id).unwrap()]
                    .stops
                    .iter()
                    .collect();
                assert!(
                    r.stops.iter().all(|o| before.contains(o)),
                    "{id} changed vehicle"
                );
            }
        }
    }
}
