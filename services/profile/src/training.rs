//! Offline work on profile state: the engine at a fixed instant, segment
//! training (`mesh train segments`) and the CDNOW fold (`mesh report
//! cdnow`): the public purchase log replayed through the same fold, features
//! and lifecycle as the live service, on an in-memory store.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced};
use mesh_store::{MemoryStore, StateStore};
use serde::Serialize;

use crate::engine::{ManualClock, Profiles};
use crate::error::{Error, Result};
use crate::features::DAY_MS;
use crate::segments::{self, Segment, SegmentModel};
use crate::{analytics, lifecycle, offline, ProfileConfig};

/// A read-only engine over `store` with `cfg`'s settings, its clock fixed at
/// `at_ms`.
pub fn engine_at(cfg: &ProfileConfig, store: StateStore, partitions: i32, at_ms: i64) -> Profiles {
    Profiles {
        features: cfg.features,
        thresholds: cfg.thresholds,
        tags: cfg.tags.clone(),
        clock: Arc::new(ManualClock::new(at_ms)),
        ..Profiles::read_only(store, partitions)
    }
}

/// What segment training did.
#[derive(Debug, Serialize)]
pub struct TrainReport {
    pub users: usize,
    pub version: u64,
    pub segments: Vec<Segment>,
}

/// Trains `k` segments on every user's features at `now_ms`.
pub async fn train_on(p: &Profiles, k: usize, now_ms: i64) -> Result<SegmentModel> {
    let snaps = offline::snapshots(p, now_ms).await?;
    let rows: Vec<[f64; 4]> = snaps
        .iter()
        .map(|(_, s)| segments::vector(&s.features))
        .collect();
    SegmentModel::train(&rows, k, 0, now_ms)
}

/// Trains `k` segments on the users of `store` at `now_ms` and stores the
/// model as the next version (the service picks it up at its next sweep).
pub async fn train_and_store(
    cfg: &ProfileConfig,
    store: &StateStore,
    partitions: i32,
    k: usize,
    now_ms: i64,
) -> Result<TrainReport> {
    let p = engine_at(cfg, store.clone(), partitions, now_ms);
    let model = train_on(&p, k, now_ms).await?;
    let users = model.segments.iter().map(|s| s.size).sum();
    let model = segments::store(store, model).await?;
    Ok(TrainReport {
        users,
        version: model.version,
        segments: model.segments,
    })
}

/// What the CDNOW fold found (`mesh report cdnow`).
#[derive(Debug, Serialize)]
pub struct CdnowReport {
    pub customers: usize,
    pub purchase_lines: usize,
    pub order_events: usize,
    pub cutoff: String,
    pub events_per_sec: f64,
    pub segments: Vec<Segment>,
    /// Users per stage at the cut-off (end of the day).
    pub stages: BTreeMap<String, usize>,
    /// Users per rule tag at the cut-off.
    pub tags: BTreeMap<String, usize>,
    /// Cohort retention by first-purchase month, over the whole log.
    pub cohorts: Vec<CohortRow>,
    pub cohorts_as_of: String,
}

#[derive(Debug, Serialize)]
pub struct CohortRow {
    pub month: String,
    pub users: u64,
    pub retention: Vec<f64>,
}

/// One order event per (customer, day) of the log, at noon UTC.
pub fn cdnow_events(log: &mesh_churn::data::PurchaseLog) -> Vec<Envelope> {
    let mut out = Vec::new();
    for c in &log.customers {
        for (i, p) in c.purchases.iter().enumerate() {
            let at = p
                .day
                .and_hms_opt(12, 0, 0)
                .expect("noon exists")
                .and_utc()
                .timestamp_millis();
            out.push(Envelope {
                event_id: format!("cdnow-{}-{i}", c.id),
                tenant_id: "cdnow".into(),
                user_id: c.id.clone(),
                occurred_at_ms: at,
                source: "cdnow".into(),
                context: None,
                body: Some(Body::OrderPlaced(OrderPlaced {
                    order_id: format!("{}-{}", c.id, p.day),
                    items: vec![LineItem {
                        sku: "cd".into(),
                        category: "music".into(),
                        quantity: p.quantity.max(1.0) as u32,
                        unit_price: p.amount / p.quantity.max(1.0),
                        ..Default::default()
                    }],
                    subtotal: p.amount,
                    total: p.amount,
                    currency: "USD".into(),
                    ..Default::default()
                })),
            });
        }
    }
    out.sort_by_key(|e| e.occurred_at_ms);
    out
}

/// Replays the log through the profile fold (in-memory store) and reports
/// segments and stages at the cut-off and cohorts at the end of the log.
pub async fn cdnow(
    cfg: &ProfileConfig,
    partitions: i32,
    log: &mesh_churn::data::PurchaseLog,
    cutoff: &str,
    k: usize,
) -> Result<CdnowReport> {
    let events = cdnow_events(log);
    // The end of the cut-off day.
    let cut_ms = analytics::parse_date_ms(cutoff).ok_or_else(|| Error::InvalidArgument {
        field: "cutoff".into(),
        reason: format!("{cutoff:?} is not a date (YYYY-MM-DD)"),
    })? + DAY_MS
        - 1;
    let store = StateStore::Memory(MemoryStore::new("cdnow"));
    let p = engine_at(cfg, store, partitions, cut_ms);
    let split = events.partition_point(|e| e.occurred_at_ms <= cut_ms);
    let mut offsets = BTreeMap::new();
    let started = Instant::now();
    offline::apply_events(&p, "cdnow", &events[..split], &mut offsets).await?;
    let calib_secs = started.elapsed().as_secs_f64();
    let snaps = offline::snapshots(&p, cut_ms).await?;
    let rows: Vec<[f64; 4]> = snaps
        .iter()
        .map(|(_, s)| segments::vector(&s.features))
        .collect();
    let model = SegmentModel::train(&rows, k, 1, cut_ms)?;
    let mut stages: BTreeMap<String, usize> = BTreeMap::new();
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    for (_, s) in &snaps {
        let path = lifecycle::path(
            s.state.counters.first_seen_ms,
            &s.state.order_times(),
            cut_ms,
            &p.thresholds,
        );
        let stage = path.last().expect("a path has its first step").to;
        *stages
            .entry(lifecycle::stage_name(stage).to_string())
            .or_default() += 1;
        for t in p.tags.tags(&s.features, stage) {
            *tags.entry(t).or_default() += 1;
        }
    }
    let started = Instant::now();
    offline::apply_events(&p, "cdnow", &events[split..], &mut offsets).await?;
    let total_secs = calib_secs + started.elapsed().as_secs_f64();
    let end_ms = events.last().map_or(cut_ms, |e| e.occurred_at_ms);
    let states = p.all_states().await?;
    let cohorts = analytics::cohorts(states.iter().map(|(_, s)| s), end_ms)
        .into_iter()
        .map(|c| CohortRow {
            month: c.month,
            users: c.users,
            retention: c.retention,
        })
        .collect();
    Ok(CdnowReport {
        customers: log.customers.len(),
        purchase_lines: log.lines,
        order_events: events.len(),
        cutoff: cutoff.to_string(),
        events_per_sec: events.len() as f64 / total_secs.max(1e-9),
        segments: model.segments,
        stages,
        tags,
        cohorts,
        cohorts_as_of: analytics::date_of(end_ms),
    })
}
