//! Demand series read back from the store, forecasts with the core's
//! default method, stock levels and reorder suggestions.
//!
//! Series are daily: day `d` (days since 1970-01-01, UTC) holds the units
//! ordered that day, summed over every partition slot. A forecast uses the
//! complete days only: from the first observation up to yesterday,
//! zero-filled, at most `max_history_days`. Today (and any day after it, from
//! a skewed clock) is left out rather than scaled by the elapsed fraction of
//! the day: early in the day a scaled count multiplies a handful of orders
//! by up to 1440 and the intraday profile is not flat, so either choice
//! adds a biased, noisy last point; leaving it out costs one day of
//! latency and keeps every point comparable.
//!
//! Stock belongs to a tenant: `SetStock` writes the baseline
//! `on_hand,on_order` of a SKU in `stock:<tenant>/<warehouse>`, resets its
//! field in `sold:<tenant>/<warehouse>` and names the tenant in
//! `stock:tenants@<warehouse>`; the tenant's order lines placed at the
//! warehouse add to `sold` and cancellations before shipment take it back
//! ([`crate::stock`]), so on-hand is the baseline minus `sold`. Every
//! tenant's stock of a warehouse lives in the warehouse's slot
//! ([`stock_slot`]). A tenant's stock is planned from that tenant's demand.
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};

use mesh_forecast::{Method, Suggestion};
use mesh_store::{Op, PartitionBatch, Slot, StateStore};

use crate::error::{invalid, Error, Result};
use crate::fold::{self, day_of};
use crate::SCOPE;

/// Weekly seasonality of daily demand.
pub const PERIOD: usize = 7;

/// Forecasting and inventory settings.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Replenishment lead time in days.
    pub lead_time_days: usize,
    /// Target probability of no stock-out over the lead time.
    pub service_level: f64,
    /// A stock-out alert is raised above this probability.
    pub stockout_threshold: f64,
    /// Longest history fitted.
    pub max_history_days: usize,
}

/// A forecast of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesForecast {
    pub method: String,
    /// Day number of the first forecast day.
    pub first_day: i64,
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub history_days: usize,
    /// The complete days fitted, zero-filled, oldest first: the day before
    /// `first_day` is the last.
    pub history: Vec<f64>,
    /// Units ordered so far today (not fitted: the day is not over).
    pub today: f64,
}

fn slots(partitions: i32) -> impl Iterator<Item = Slot<'static>> {
    (0..partitions).map(|partition| Slot {
        scope: SCOPE,
        partition,
    })
}

/// The series index of every slot: `<tenant>/<series>` per series with
/// recorded demand ([`fold::tenant_series`]).
async fn indexed_series(
    store: &StateStore,
    partitions: i32,
) -> Result<std::collections::BTreeSet<String>> {
    let keys: Vec<_> = slots(partitions)
        .map(|s| (s, fold::SERIES.to_string()))
        .collect();
    Ok(store
        .hgetall_many(&keys)
        .await?
        .into_iter()
        .flat_map(|h| h.into_keys())
        .collect())
}

/// The series with recorded demand of `tenant`, or of any tenant when
/// `tenant` is empty; without the tenant qualifier, sorted.
pub async fn series_keys(
    store: &StateStore,
    partitions: i32,
    tenant: &str,
) -> Result<std::collections::BTreeSet<String>> {
    Ok(indexed_series(store, partitions)
        .await?
        .iter()
        .filter_map(|k| fold::split_tenant_series(k))
        .filter(|(t, _)| tenant.is_empty() || *t == tenant)
        .map(|(_, s)| s.to_string())
        .collect())
}

/// Units per day of a series, summed over every partition: one tenant's
/// demand, or every tenant's summed when `tenant` is empty.
pub async fn load_series(
    store: &StateStore,
    partitions: i32,
    tenant: &str,
    series: &str,
) -> Result<BTreeMap<i64, f64>> {
    let hashes: Vec<String> = if tenant.is_empty() {
        indexed_series(store, partitions)
            .await?
            .iter()
            .filter(|k| fold::split_tenant_series(k).is_some_and(|(_, s)| s == series))
            .map(|k| fold::series_hash(k))
            .collect()
    } else {
        vec![fold::series_hash(&fold::tenant_series(tenant, series))]
    };
    let keys: Vec<_> = hashes
        .iter()
        .flat_map(|h| slots(partitions).map(move |s| (s, h.clone())))
        .collect();
    let mut out = BTreeMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    for h in store.hgetall_many(&keys).await? {
        for (day, v) in h {
            if let (Ok(d), Ok(v)) = (day.parse::<i64>(), v.parse::<f64>()) {
                *out.entry(d).or_insert(0.0) += v;
            }
        }
    }
    Ok(out)
}

/// The zero-filled daily history of complete days, ending yesterday, at
/// most `max_days` long; with its first day. `None` before the first
/// complete day.
pub fn daily(series: &BTreeMap<i64, f64>, today: i64, max_days: usize) -> Option<(i64, Vec<f64>)> {
    let first = *series.range(..today).next()?.0;
    let last = today - 1;
    let first = first.max(last + 1 - max_days.max(1) as i64);
    let ys = (first..=last)
        .map(|d| series.get(&d).copied().unwrap_or(0.0))
        .collect();
    Some((first, ys))
}

/// Fits the core's default method and forecasts `horizon` days with
/// intervals at `level`. Demand cannot be negative: bounds are floored at 0.
pub fn forecast_daily(
    first: i64,
    ys: &[f64],
    horizon: usize,
    level: f64,
) -> Result<SeriesForecast> {
    let fitted = mesh_forecast::fit(Method::Auto, ys, PERIOD)?;
    let f = fitted.forecast(horizon);
    let iv = f.interval(level)?;
    let floor = |v: &Vec<f64>| v.iter().map(|x| x.max(0.0)).collect::<Vec<_>>();
    let point = floor(&f.mean);
    Ok(SeriesForecast {
        method: fitted.describe(),
        first_day: first + ys.len() as i64,
        lower: floor(&iv.lower)
            .into_iter()
            .zip(&point)
            .map(|(l, p)| l.min(*p))
            .collect(),
        upper: floor(&iv.upper)
            .into_iter()
            .zip(&point)
            .map(|(u, p)| u.max(*p))
            .collect(),
        point,
        history_days: ys.len(),
        history: ys.to_vec(),
        today: 0.0,
    })
}

/// Loads and forecasts a series of `tenant` (every tenant's summed when
/// empty).
#[allow(clippy::too_many_arguments)]
pub async fn forecast(
    store: &StateStore,
    partitions: i32,
    inv: &Inventory,
    tenant: &str,
    series: &str,
    horizon: usize,
    level: f64,
    now_ms: i64,
) -> Result<SeriesForecast> {
    if series.is_empty() {
        return Err(invalid(
            "series_key",
            "is empty; expected e.g. sku:<sku> or cat:<category>",
        ));
    }
    if !(1..=365).contains(&horizon) {
        return Err(invalid("horizon", format!("{horizon} is outside 1..=365")));
    }
    if !(level > 0.0 && level < 1.0) {
        return Err(invalid("level", format!("{level} is outside (0, 1)")));
    }
    let data = load_series(store, partitions, tenant, series).await?;
    let (first, ys) = daily(&data, day_of(now_ms), inv.max_history_days)
        .ok_or_else(|| {
            let whose = if tenant.is_empty() {
                String::new()
            } else {
                format!(" of tenant {tenant}")
            };
            Error::NotFound(format!(
                "no complete day of demand recorded for series {series}{whose} (today is left out until it ends)"
            ))
        })?;
    let mut f = forecast_daily(first, &ys, horizon, level)?;
    f.today = data.get(&day_of(now_ms)).copied().unwrap_or(0.0);
    Ok(f)
}

/// Key of a tenant's stock baseline at a warehouse: one field per SKU,
/// value `on_hand,on_order`.
pub fn stock_key(tenant: &str, warehouse: &str) -> String {
    format!("stock:{tenant}/{warehouse}")
}

/// Key of the units of a tenant sold per SKU at a warehouse since its stock
/// was set.
pub fn sold_key(tenant: &str, warehouse: &str) -> String {
    format!("sold:{tenant}/{warehouse}")
}

/// Key of the tenants with stock set at a warehouse (one field per tenant):
/// what an every-tenant read of the warehouse walks. Under `stock:`, so
/// `mesh replay` keeps it with the stock; `@` never occurs in a tenant id,
/// so it cannot be a tenant's [`stock_key`].
pub fn stock_tenants_key(warehouse: &str) -> String {
    format!("stock:tenants@{warehouse}")
}

/// Slot of a warehouse's stock, every tenant's: an every-tenant read of a
/// warehouse reads one slot, and the stream's stock batches are per
/// warehouse slot.
pub fn stock_slot(warehouse: &str, partitions: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition: mesh_bus::partition::partition_for(warehouse, partitions),
    }
}

/// Versions of stock writes: strictly increasing in this process and
/// tied to the clock across restarts, so the store's watermark of the
/// pseudo source `stock/<warehouse>` drops nothing but stale writes.
#[derive(Default)]
pub struct StockVersions(AtomicI64);

impl StockVersions {
    fn next(&self, now_ms: i64) -> i64 {
        let want = now_ms.saturating_mul(1000);
        let prev = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(want.max(last + 1))
            })
            .unwrap_or(0);
        want.max(prev + 1)
    }
}

/// Sets `tenant`'s stock of one SKU in one warehouse. Stock always belongs
/// to a tenant (only that tenant's orders move it), so an empty `tenant`
/// is refused, after the other fields are checked.
#[allow(clippy::too_many_arguments)]
pub async fn set_stock(
    store: &StateStore,
    partitions: i32,
    versions: &StockVersions,
    tenant: &str,
    warehouse: &str,
    sku: &str,
    on_hand: f64,
    on_order: f64,
    now_ms: i64,
) -> Result<()> {
    if warehouse.is_empty() {
        return Err(invalid("warehouse", "is empty"));
    }
    if sku.is_empty() {
        return Err(invalid("sku", "is empty"));
    }
    if !on_hand.is_finite() {
        return Err(invalid("on_hand", format!("{on_hand} is not finite")));
    }
    if !(on_order.is_finite() && on_order >= 0.0) {
        return Err(invalid(
            "on_order",
            format!("{on_order} must be finite and >= 0"),
        ));
    }
    if tenant.is_empty() {
        return Err(invalid(
            "tenant_id",
            "required to set stock: stock belongs to the tenant whose orders sell it",
        ));
    }
    let slot = stock_slot(warehouse, partitions);
    let mut batch = PartitionBatch::new(format!("stock/{warehouse}"), slot.partition);
    batch.push(
        versions.next(now_ms),
        vec![
            Op::HSet {
                key: stock_key(tenant, warehouse),
                field: sku.to_string(),
                value: format!("{on_hand},{on_order}"),
            },
            // The new baseline counts everything sold so far.
            Op::HSet {
                key: sold_key(tenant, warehouse),
                field: sku.to_string(),
                value: "0".into(),
            },
            Op::HSet {
                key: stock_tenants_key(warehouse),
                field: tenant.to_string(),
                value: "1".into(),
            },
        ],
    );
    store.apply(SCOPE, &batch).await?;
    Ok(())
}

/// `(sku, on_hand, on_order)` by SKU from a baseline hash and its sold
/// hash: on-hand is the baseline minus the units sold since.
fn levels(
    base: HashMap<String, String>,
    sold: &HashMap<String, String>,
) -> Vec<(String, f64, f64)> {
    let mut out: Vec<_> = base
        .into_iter()
        .filter_map(|(sku, v)| {
            let (a, b) = v.split_once(',')?;
            let (a, b): (f64, f64) = (a.parse().ok()?, b.parse().ok()?);
            let sold: f64 = sold.get(&sku).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            Some((sku, a - sold, b))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `tenant`'s stock of every SKU of a warehouse: `(sku, on_hand, on_order)`,
/// by SKU; on-hand is the baseline set by `SetStock` minus the units sold
/// since.
pub async fn stock(
    store: &StateStore,
    partitions: i32,
    tenant: &str,
    warehouse: &str,
) -> Result<Vec<(String, f64, f64)>> {
    let slot = stock_slot(warehouse, partitions);
    let mut h = store
        .hgetall_many(&[
            (slot, stock_key(tenant, warehouse)),
            (slot, sold_key(tenant, warehouse)),
        ])
        .await?;
    let sold = h.pop().unwrap_or_default();
    let base = h.pop().unwrap_or_default();
    Ok(levels(base, &sold))
}

/// Every tenant's stock at a warehouse: `(tenant, sku, on_hand, on_order)`,
/// by tenant and SKU.
pub async fn stock_of_every_tenant(
    store: &StateStore,
    partitions: i32,
    warehouse: &str,
) -> Result<Vec<(String, String, f64, f64)>> {
    let slot = stock_slot(warehouse, partitions);
    let mut tenants: Vec<String> = store
        .hgetall(slot, &stock_tenants_key(warehouse))
        .await?
        .into_keys()
        .collect();
    tenants.sort();
    let keys: Vec<_> = tenants
        .iter()
        .flat_map(|t| {
            [
                (slot, stock_key(t, warehouse)),
                (slot, sold_key(t, warehouse)),
            ]
        })
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut hashes = store.hgetall_many(&keys).await?.into_iter();
    let mut out = Vec::new();
    for t in tenants {
        let base = hashes.next().unwrap_or_default();
        let sold = hashes.next().unwrap_or_default();
        out.extend(
            levels(base, &sold)
                .into_iter()
                .map(|(sku, a, b)| (t.clone(), sku, a, b)),
        );
    }
    Ok(out)
}

/// Stock levels of a warehouse as `(sku, on_hand, on_order)`, by SKU:
/// `tenant`'s, or every tenant's summed per SKU when `tenant` is empty.
pub async fn stock_levels(
    store: &StateStore,
    partitions: i32,
    tenant: &str,
    warehouse: &str,
) -> Result<Vec<(String, f64, f64)>> {
    if !tenant.is_empty() {
        return stock(store, partitions, tenant, warehouse).await;
    }
    let mut by_sku: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (_, sku, on_hand, on_order) in stock_of_every_tenant(store, partitions, warehouse).await? {
        let e = by_sku.entry(sku).or_default();
        e.0 += on_hand;
        e.1 += on_order;
    }
    Ok(by_sku.into_iter().map(|(s, (a, b))| (s, a, b)).collect())
}

/// The reorder suggestion for one SKU of a warehouse from `tenant`'s demand
/// at that warehouse (`sku:<sku>@<warehouse>`; every tenant's summed when
/// `tenant` is empty); no demand yet means a zero forecast.
#[allow(clippy::too_many_arguments)]
pub async fn suggestion(
    store: &StateStore,
    partitions: i32,
    inv: &Inventory,
    tenant: &str,
    warehouse: &str,
    sku: &str,
    on_hand: f64,
    on_order: f64,
    now_ms: i64,
) -> Result<Suggestion> {
    let f = lead_time_forecast(store, partitions, inv, tenant, warehouse, sku, now_ms).await?;
    suggest(inv, on_hand, on_order, &f)
}

/// The forecast of `tenant`'s demand of a SKU at a warehouse over the lead
/// time (every tenant's summed when `tenant` is empty). It changes once a
/// day (complete days only), so callers may keep it for the day.
pub async fn lead_time_forecast(
    store: &StateStore,
    partitions: i32,
    inv: &Inventory,
    tenant: &str,
    warehouse: &str,
    sku: &str,
    now_ms: i64,
) -> Result<mesh_forecast::Forecast> {
    let horizon = inv.lead_time_days.max(1);
    let data = load_series(store, partitions, tenant, &format!("sku:{sku}@{warehouse}")).await?;
    Ok(match daily(&data, day_of(now_ms), inv.max_history_days) {
        Some((_, ys)) => mesh_forecast::fit(Method::Auto, &ys, PERIOD)?.forecast(horizon),
        None => mesh_forecast::Forecast {
            mean: vec![0.0; horizon],
            sd: vec![0.0; horizon],
        },
    })
}

/// The reorder suggestion for a stock level from a lead-time forecast.
pub fn suggest(
    inv: &Inventory,
    on_hand: f64,
    on_order: f64,
    f: &mesh_forecast::Forecast,
) -> Result<Suggestion> {
    let horizon = inv.lead_time_days.max(1);
    Ok(mesh_forecast::reorder_suggestion(
        on_hand,
        on_order,
        f,
        horizon,
        inv.service_level,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_zero_fills_up_to_yesterday() {
        let s: BTreeMap<i64, f64> = [(10, 2.0), (12, 3.0)].into();
        assert_eq!(
            daily(&s, 15, 100),
            Some((10, vec![2.0, 0.0, 3.0, 0.0, 0.0]))
        );
        // Today (15) and later days are incomplete: left out.
        let partial: BTreeMap<i64, f64> = [(10, 2.0), (15, 9.0), (16, 1.0)].into();
        assert_eq!(
            daily(&partial, 15, 100),
            Some((10, vec![2.0, 0.0, 0.0, 0.0, 0.0]))
        );
        let only_today: BTreeMap<i64, f64> = [(15, 9.0)].into();
        assert_eq!(daily(&only_today, 15, 100), None);
        assert_eq!(daily(&s, 15, 2), Some((13, vec![0.0, 0.0])));
        assert_eq!(daily(&BTreeMap::new(), 15, 10), None);
    }

    #[test]
    fn forecast_of_a_seasonal_series_brackets_its_points() {
        let ys: Vec<f64> = (0..60)
            .map(|i| 20.0 + 5.0 * ((i % 7) as f64) + (i as f64 * 0.7).sin())
            .collect();
        let f = forecast_daily(100, &ys, 14, 0.9).unwrap();
        assert_eq!(f.point.len(), 14);
        assert_eq!(f.first_day, 160);
        for i in 0..14 {
            assert!(f.lower[i] <= f.point[i] && f.point[i] <= f.upper[i]);
        }
    }

    /// A steady series of about `level` units a day for 60 days (irregular
    /// noise of about 10%), and today's partial count `today_units`.
    fn steady(level: f64, today_units: f64) -> BTreeMap<i64, f64> {
        let mut s: BTreeMap<i64, f64> = (0..60)
            .map(|d| {
                let noise = 0.1 * level * ((d as f64 * 1.7).sin() + (d as f64 * 0.37).cos()) / 2.0;
                (1000 + d, (level + noise).round().max(0.0))
            })
            .collect();
        s.insert(1060, today_units);
        s
    }

    /// The 90% interval of the next day as the service computes it, and as
    /// it was when today's partial day entered the history.
    fn next_day(s: &BTreeMap<i64, f64>) -> ((f64, f64), (f64, f64)) {
        let (first, ys) = daily(s, 1060, 365).unwrap();
        let f = forecast_daily(first, &ys, 1, 0.9).unwrap();
        let mut with_today = ys.clone();
        with_today.push(s[&1060]);
        let g = forecast_daily(first, &with_today, 1, 0.9).unwrap();
        ((f.lower[0], f.upper[0]), (g.lower[0], g.upper[0]))
    }

    #[test]
    fn intervals_contain_the_recent_daily_volume_with_a_partial_last_day() {
        // A quiet start of the day (5 units by 06:00 against ~20 a day), a
        // burst (1,698 units against ~4 a day, as the console showed) and
        // nothing yet.
        for (level, today) in [(20.0, 5.0), (4.0, 1698.0), (20.0, 0.0)] {
            let s = steady(level, today);
            let recent: f64 = (1053..1060).map(|d| s[&d]).sum::<f64>() / 7.0;
            let ((lo, hi), (old_lo, old_hi)) = next_day(&s);
            eprintln!(
                "level {level}, today so far {today}: 90% interval {lo:.1}..{hi:.1} \
                 (with the partial day: {old_lo:.1}..{old_hi:.1}), recent {recent:.1}"
            );
            assert!(lo <= recent && recent <= hi, "{recent} outside {lo}..{hi}");
            assert!(
                hi - lo < 2.0 * level,
                "interval {lo}..{hi} too wide for {level}"
            );
        }
    }

    #[test]
    fn stock_versions_increase() {
        let v = StockVersions::default();
        let a = v.next(5);
        let b = v.next(5);
        let c = v.next(4);
        assert!(a < b && b < c);
    }
}
