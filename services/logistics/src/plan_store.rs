//! Stored wave plans: JSON in field `plan` of hash `p:<wave>`, in the slot
//! `partition_for(wave)`.
//!
//! Plans are computed outside the exactly-once path but stored through it:
//! the plan of wave `W` is written with [`StateStore::apply`] as a batch of
//! the pseudo source `plan/W` whose offset is the plan version, so a stale
//! planner (an older version, or a second instance racing) never overwrites
//! a newer plan.
use mesh_store::{Op, PartitionBatch, Slot, StateStore};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::SCOPE;

/// One vehicle's route in a stored plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRoute {
    /// Stop ids in visiting order.
    pub stops: Vec<String>,
    /// Planned service start per stop (minutes after midnight).
    pub arrivals: Vec<f64>,
    pub load: i64,
    pub distance: f64,
}

/// A wave's plan as stored (JSON in field `plan` of `p:<wave>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    pub wave_id: String,
    pub version: u64,
    /// `solve` or `replan`.
    pub method: String,
    pub routes: Vec<StoredRoute>,
    pub distance: f64,
    pub unassigned: Vec<String>,
    pub computed_at_ms: i64,
    pub seconds: f64,
    /// Orders held out of the routes by fraud (REVIEW/REJECT, `fraud_hold`).
    #[serde(default)]
    pub held: Vec<String>,
    /// Peers that did not answer while planning, with the fallback used.
    #[serde(default)]
    pub degraded: Vec<String>,
    /// Depot (lat, lon) the plan was routed from; replans keep it when the
    /// warehouse has no configured depot, so the routes do not move with
    /// the stops' centroid.
    #[serde(default)]
    pub depot: Option<(f64, f64)>,
    /// Replans since the last fresh solve (`solve` or `reoptimize`).
    #[serde(default)]
    pub replans_since_solve: u32,
    /// Distance and served stops of the last fresh solve: the reference of
    /// the cheap drift estimate.
    #[serde(default)]
    pub solved_distance: f64,
    #[serde(default)]
    pub solved_stops: usize,
    /// When the last fresh solve ran (ms since the epoch; 0 for plans
    /// stored before this field existed, which makes a comparison due).
    #[serde(default)]
    pub solved_at_ms: i64,
}

impl StoredPlan {
    /// Route index of a stop, if planned.
    pub fn vehicle_of(&self, stop: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.stops.iter().any(|s| s == stop))
    }
}

/// Key of the live-wave index (a sorted set in each plan slot, member the
/// wave id, score its plan version): waves whose latest plan routes or
/// leaves unassigned at least one active stop. Written with the plan, so a
/// wave that became empty (every order cancelled or held) leaves it
/// atomically with its empty plan.
pub const LIVE_WAVES: &str = "live_waves";

impl StoredPlan {
    /// Whether the plan has anything to deliver.
    pub fn is_live(&self) -> bool {
        self.routes.iter().any(|r| !r.stops.is_empty()) || !self.unassigned.is_empty()
    }
}

pub(crate) fn plan_key(wave: &str) -> String {
    format!("p:{wave}")
}

/// Slot holding a wave's plan.
pub fn plan_slot(wave: &str, partitions: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition: mesh_bus::partition::partition_for(wave, partitions),
    }
}

/// The stored plan of a wave, if any.
pub async fn load_plan(
    store: &StateStore,
    partitions: i32,
    wave: &str,
) -> Result<Option<StoredPlan>> {
    let h = store
        .hgetall(plan_slot(wave, partitions), &plan_key(wave))
        .await?;
    let Some(json) = h.get("plan") else {
        return Ok(None);
    };
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| Error::BadPlan {
            wave: wave.to_string(),
            reason: e.to_string(),
        })
}

/// Live waves over every partition slot, sorted.
pub async fn live_waves(store: &StateStore, partitions: i32) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for partition in 0..partitions {
        let slot = Slot {
            scope: SCOPE,
            partition,
        };
        out.extend(
            store
                .ztop(slot, LIVE_WAVES, 1_000_000)
                .await?
                .into_iter()
                .map(|(w, _)| w),
        );
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Stores `plan` unless a plan of the same or a newer version is stored;
/// returns whether it was written.
pub async fn store_plan(store: &StateStore, partitions: i32, plan: &StoredPlan) -> Result<bool> {
    let slot = plan_slot(&plan.wave_id, partitions);
    let json = serde_json::to_string(plan).map_err(|e| Error::BadPlan {
        wave: plan.wave_id.clone(),
        reason: e.to_string(),
    })?;
    let key = plan_key(&plan.wave_id);
    let mut batch = PartitionBatch::new(format!("plan/{}", plan.wave_id), slot.partition);
    batch.push(
        plan.version as i64,
        vec![
            Op::HSet {
                key: key.clone(),
                field: "plan".into(),
                value: json,
            },
            Op::HSet {
                key,
                field: "version".into(),
                value: plan.version.to_string(),
            },
            if plan.is_live() {
                Op::ZSet {
                    key: LIVE_WAVES.into(),
                    member: plan.wave_id.clone(),
                    score: plan.version as f64,
                }
            } else {
                Op::ZRem {
                    key: LIVE_WAVES.into(),
                    member: plan.wave_id.clone(),
                }
            },
        ],
    );
    Ok(store.apply(SCOPE, &batch).await?.applied == 1)
}
