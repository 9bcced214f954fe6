//! Retention: past waves and old demand days leave the store.
//!
//! Without it logistics state only grows: every order keeps its hash
//! (`o:<tenant>/<order>`), every wave its membership hash, plan and index
//! entries, every demand series one field per day. [`expire`] removes
//!
//! - every wave whose day is more than `keep_days` before today: its
//!   orders' hashes, their entries in the buyers' indexes, the membership
//!   hash `w:<wave>`, the wave's `waves` index field in every slot, its plan
//!   `p:<wave>` and its `live_waves` entry;
//! - every demand-series day older than `history_days` (forecasts never
//!   read past [`crate::forecasting::Inventory::max_history_days`]), and the
//!   series' index field when no day is left.
//!
//! Deletions go through [`StateStore::apply`] as batches of the pseudo
//! source [`SOURCE`], one per slot, at an offset taken from the clock, so
//! each slot's deletion is atomic; a run whose offset is not above the
//! slot's watermark (a clock that went back, or a second replica that ran
//! first) deletes nothing there and says so in [`Expired::skipped`].
//!
//! What stays: the watermark fields of each wave's plan source (`plan/<wave>`,
//! two short fields per wave in its plan slot's watermark hash), so a late
//! replan of an expired wave is refused instead of resurrecting its plan.
//! A status event for an expired order (shipped, delivered, ...) arriving
//! after the expiry sets its fields on a new `o:` hash without a wave; such
//! hashes are not found again (no index points at them). An order placed
//! into a past wave between this run's reads and its delete loses its
//! membership (the run deletes `w:<wave>` whole); the next placement into
//! that wave indexes the wave again and a later run removes it.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use mesh_store::{HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};

use crate::error::Result;
use crate::fold::{self, WaveParts};
use crate::plan_store::{plan_key, plan_slot, LIVE_WAVES};
use crate::SCOPE;

/// Pseudo source of the deletion batches (its watermark is per slot).
pub const SOURCE: &str = "retention";

/// Most ops in one record of a deletion batch: a first run on a large store
/// is split into records of this size (one script call each on Redis).
const OPS_PER_RECORD: usize = 5_000;

/// What to keep (`MESH_LOGISTICS_RETAIN_DAYS`, `MESH_LOGISTICS_HISTORY_DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Waves whose day is more than this many days before today are
    /// removed; 0 keeps every wave.
    pub keep_days: u32,
    /// Demand days older than this are removed; 0 keeps every day.
    pub history_days: u32,
}

/// What one [`expire`] run removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expired {
    /// Waves removed.
    pub waves: usize,
    /// Order hashes removed.
    pub orders: usize,
    /// Demand-series days removed.
    pub series_days: usize,
    /// Slots whose deletion batch was skipped: its offset was not above the
    /// slot's `retention` watermark.
    pub skipped: usize,
}

fn slot(partition: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition,
    }
}

/// Day number (days since 1970-01-01) of a wave id, `None` when it does not
/// end in a `yyyy-mm-dd` day (never expired).
pub fn wave_day(wave: &str) -> Option<i64> {
    let day = chrono::NaiveDate::parse_from_str(WaveParts::parse(wave).day, "%Y-%m-%d").ok()?;
    let ms = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some(fold::day_of(ms))
}

/// Removes what `retention` no longer keeps, as of `now_ms`.
pub async fn expire(
    store: &StateStore,
    partitions: i32,
    now_ms: i64,
    retention: Retention,
) -> Result<Expired> {
    let today = fold::day_of(now_ms);
    let mut ops: BTreeMap<i32, Vec<Op>> = BTreeMap::new();
    let mut out = Expired::default();
    if retention.keep_days > 0 {
        let cutoff = today - i64::from(retention.keep_days);
        expire_waves(store, partitions, cutoff, &mut ops, &mut out).await?;
    }
    if retention.history_days > 0 {
        let cutoff = today - i64::from(retention.history_days);
        expire_series_days(store, partitions, cutoff, &mut ops, &mut out).await?;
    }
    for (partition, ops) in ops {
        if ops.is_empty() {
            continue;
        }
        let mut batch = PartitionBatch::new(SOURCE, partition);
        for (i, chunk) in ops.chunks(OPS_PER_RECORD).enumerate() {
            batch.push(now_ms + i as i64, chunk.to_vec());
        }
        let applied = store.apply(SCOPE, &batch).await?;
        if applied.skipped > 0 {
            out.skipped += 1;
        }
    }
    Ok(out)
}

/// `(partition, field)` of every field of the index hash `key` in every slot,
/// sorted.
async fn indexed(store: &StateStore, partitions: i32, key: &str) -> Result<Vec<(i32, String)>> {
    let reads: Vec<_> = (0..partitions)
        .map(|p| (slot(p), key.to_string()))
        .collect();
    let index = store.hgetall_many(&reads).await?;
    Ok((0..partitions)
        .zip(index)
        .flat_map(|(p, fields)| fields.into_keys().map(move |f| (p, f)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect())
}

/// The field names of each `(partition, key)` hash, in one round trip.
async fn field_names(
    store: &StateStore,
    keys: impl Iterator<Item = (i32, String)>,
) -> Result<Vec<Vec<String>>> {
    let reads: Vec<_> = keys
        .map(|(p, key)| HashRead::Keys { slot: slot(p), key })
        .collect();
    Ok(store
        .hread_many(&reads)
        .await?
        .into_iter()
        .map(|reply| match reply {
            HashReply::Keys(names) => names,
            HashReply::Fields(_) => Vec::new(),
        })
        .collect())
}

/// The ops removing every wave whose day is before `cutoff`.
async fn expire_waves(
    store: &StateStore,
    partitions: i32,
    cutoff: i64,
    ops: &mut BTreeMap<i32, Vec<Op>>,
    out: &mut Expired,
) -> Result<()> {
    // A wave is indexed in each slot that holds one of its orders.
    let mut old: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (p, wave) in indexed(store, partitions, fold::WAVES).await? {
        if wave_day(&wave).is_some_and(|d| d < cutoff) {
            old.entry(wave).or_default().push(p);
        }
    }
    if old.is_empty() {
        return Ok(());
    }
    // Members of each old wave in each slot indexing it.
    let members: Vec<(i32, &String)> = old
        .iter()
        .flat_map(|(w, ps)| ps.iter().map(move |p| (*p, w)))
        .collect();
    let ids = field_names(store, members.iter().map(|(p, w)| (*p, fold::wave_key(w)))).await?;
    let mut orders: Vec<(i32, &String, String)> = Vec::new();
    for ((p, w), ids) in members.iter().zip(ids) {
        orders.extend(ids.into_iter().map(|id| (*p, *w, id)));
    }
    // The buyer of each order, for its index entry.
    let reads: Vec<_> = orders
        .iter()
        .map(|(p, _, id)| HashRead::Fields {
            slot: slot(*p),
            key: format!("o:{id}"),
            fields: vec!["user".into()],
        })
        .collect();
    let users = store.hread_many(&reads).await?;
    for ((p, _, id), user) in orders.iter().zip(users) {
        let ops = ops.entry(*p).or_default();
        if let HashReply::Fields(v) = user {
            if let (Some(Some(user)), Some((tenant, _))) =
                (v.into_iter().next(), id.split_once('/'))
            {
                ops.push(Op::HDel {
                    key: fold::buyer_key(&format!("{tenant}/{user}")),
                    field: id.clone(),
                });
            }
        }
        ops.push(Op::Del {
            key: format!("o:{id}"),
        });
        out.orders += 1;
    }
    for (wave, ps) in &old {
        for p in ps {
            let ops = ops.entry(*p).or_default();
            ops.push(Op::Del {
                key: fold::wave_key(wave),
            });
            ops.push(Op::HDel {
                key: fold::WAVES.into(),
                field: wave.clone(),
            });
        }
        let plan = ops
            .entry(plan_slot(wave, partitions).partition)
            .or_default();
        plan.push(Op::Del {
            key: plan_key(wave),
        });
        plan.push(Op::ZRem {
            key: LIVE_WAVES.into(),
            member: wave.clone(),
        });
        out.waves += 1;
    }
    Ok(())
}

/// The ops removing every demand day before `cutoff`.
async fn expire_series_days(
    store: &StateStore,
    partitions: i32,
    cutoff: i64,
    ops: &mut BTreeMap<i32, Vec<Op>>,
    out: &mut Expired,
) -> Result<()> {
    let series = indexed(store, partitions, fold::SERIES).await?;
    let days = field_names(
        store,
        series.iter().map(|(p, s)| (*p, fold::series_hash(s))),
    )
    .await?;
    for ((p, s), fields) in series.iter().zip(days) {
        let parsed: HashMap<&str, Option<i64>> = fields
            .iter()
            .map(|f| (f.as_str(), f.parse::<i64>().ok()))
            .collect();
        let gone: Vec<&str> = parsed
            .iter()
            .filter(|(_, d)| d.is_some_and(|d| d < cutoff))
            .map(|(f, _)| *f)
            .collect();
        if gone.is_empty() {
            continue;
        }
        let ops = ops.entry(*p).or_default();
        for f in &gone {
            ops.push(Op::HDel {
                key: fold::series_hash(s),
                field: (*f).to_string(),
            });
        }
        out.series_days += gone.len();
        if gone.len() == fields.len() {
            ops.push(Op::HDel {
                key: fold::SERIES.into(),
                field: s.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wave_days_parse_with_and_without_a_tenant() {
        assert_eq!(wave_day("shop|wh-1|east|1970-01-03"), Some(2));
        assert_eq!(wave_day("wh-1|east|2026-12-07"), Some(20_794));
        assert_eq!(wave_day("shop|wh-1|east|not-a-day"), None);
        assert_eq!(wave_day(""), None);
    }
}
