//! Stock from the order stream: placed order lines decrement the on-hand
//! stock of their tenant at their warehouse, cancellations before shipment
//! put it back, and a stock-out or a fall below the reorder point is
//! alerted as it happens (to that tenant: the alert carries its id).
//!
//! Exactly once: the stock of a warehouse lives in the slot of the
//! warehouse, not of the order's input partition, so a batch's stock moves
//! are applied as their own [`PartitionBatch`] per stock slot, under the
//! pseudo source `stock<-<topic>[<partition>]` with the records' offsets:
//! the store's watermark of that source drops a redelivered record, in
//! the stock slot, atomically with the move. The handler applies these
//! batches *before* the order batch, so the order hashes it read to price a
//! cancellation are still those the first attempt saw; a redelivery
//! computes the same moves and the watermark skips them.
//!
//! Refunds do not restock: a refund returns money, and nothing in the
//! stream says the goods came back. `fraud_hold` does not restock either:
//! the order is held, not cancelled, and may still ship.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_proto::logistics::v1::{AlertKind, LogisticsAlert};
use mesh_store::{Op, PartitionBatch, StateStore};

use crate::error::Result;
use crate::fold::{self, FRAUD_HOLD};
use crate::forecasting::{self, Inventory};
use crate::metrics::STOCK_MOVES;

/// Order-hash field set when a cancellation put the order's lines back.
pub const RESTOCKED: &str = "restocked";

/// Whose stock: `(tenant, warehouse, sku)`.
pub type StockKey = (String, String, String);

/// The stock side of one batch of order records.
#[derive(Debug, Default)]
pub struct StockPlan {
    /// One batch per stock slot, to apply before the order batch.
    pub batches: Vec<PartitionBatch>,
    /// Ops to add to the order batch, by record offset (the `restocked` flag).
    pub order_ops: HashMap<i64, Vec<Op>>,
    /// Net units sold per (tenant, warehouse, SKU) in this batch.
    pub sold: BTreeMap<StockKey, f64>,
}

/// Order keys whose hash [`plan`] needs read before the batch is applied.
pub fn keys_to_read(events: &[(i64, Envelope)]) -> Vec<String> {
    events
        .iter()
        .filter_map(|(_, e)| match e.body.as_ref()? {
            Body::OrderPlaced(o) => Some(fold::order_key(&e.tenant_id, &o.order_id)),
            Body::OrderCancelled(c) => Some(fold::order_key(&e.tenant_id, &c.order_id)),
            _ => None,
        })
        .collect()
}

/// What the batch knows of one order while walking it.
struct OrderStock {
    tenant: String,
    warehouse: String,
    items: Vec<(String, f64)>,
    shipped: bool,
    restocked: bool,
}

/// The stock moves of `events` (offset, envelope) of input `topic` /
/// `partition`; `prior` holds the order hashes read before the batch.
pub fn plan(
    topic: &str,
    partition: i32,
    partitions: i32,
    events: &[(i64, Envelope)],
    prior: &HashMap<String, HashMap<String, String>>,
    default_warehouse: &str,
) -> StockPlan {
    let mut out = StockPlan::default();
    let mut batches: BTreeMap<i32, PartitionBatch> = BTreeMap::new();
    let mut orders: HashMap<String, OrderStock> = HashMap::new();
    let known = |tenant: &str, key: &str, orders: &mut HashMap<String, OrderStock>| {
        if !orders.contains_key(key) {
            let h = prior.get(key)?;
            orders.insert(
                key.to_string(),
                OrderStock {
                    tenant: tenant.to_string(),
                    warehouse: h.get("warehouse")?.clone(),
                    items: fold::decode_items(h.get("items")?),
                    shipped: h.contains_key("shipped_at"),
                    restocked: h.get(RESTOCKED).is_some_and(|v| v == "1"),
                },
            );
        }
        Some(())
    };
    for (offset, e) in events {
        let Some(body) = &e.body else { continue };
        let (key, sign) = match body {
            Body::OrderPlaced(o) => {
                let key = fold::order_key(&e.tenant_id, &o.order_id);
                // A second placement of the same order counts nothing.
                if orders.contains_key(&key)
                    || prior.get(&key).is_some_and(|h| h.contains_key("placed_at"))
                {
                    continue;
                }
                let warehouse = fold::warehouse_of(o, default_warehouse);
                let items = fold::decode_items(&fold::encode_items(o));
                orders.insert(
                    key.clone(),
                    OrderStock {
                        tenant: e.tenant_id.clone(),
                        warehouse,
                        items,
                        shipped: false,
                        restocked: false,
                    },
                );
                (key, 1.0)
            }
            Body::OrderShipped(s) => {
                let key = fold::order_key(&e.tenant_id, &s.order_id);
                if let Some(o) = orders.get_mut(&key) {
                    o.shipped = true;
                }
                continue;
            }
            Body::OrderCancelled(c) if c.reason != FRAUD_HOLD => {
                let key = fold::order_key(&e.tenant_id, &c.order_id);
                if known(&e.tenant_id, &key, &mut orders).is_none() {
                    continue;
                }
                let o = &orders[&key];
                if o.shipped || o.restocked {
                    continue;
                }
                out.order_ops.entry(*offset).or_default().push(Op::HSet {
                    key: key.clone(),
                    field: RESTOCKED.into(),
                    value: "1".into(),
                });
                (key, -1.0)
            }
            _ => continue,
        };
        let o = orders.get_mut(&key).expect("inserted above");
        if sign < 0.0 {
            o.restocked = true;
        }
        let slot = forecasting::stock_slot(&o.warehouse, partitions).partition;
        let ops: Vec<Op> = o
            .items
            .iter()
            .map(|(sku, q)| Op::HIncrFloat {
                key: forecasting::sold_key(&o.tenant, &o.warehouse),
                field: sku.clone(),
                delta: sign * q,
            })
            .collect();
        for (sku, q) in &o.items {
            *out.sold
                .entry((o.tenant.clone(), o.warehouse.clone(), sku.clone()))
                .or_default() += sign * q;
        }
        STOCK_MOVES
            .with_label_values(&[if sign > 0.0 { "sold" } else { "restored" }])
            .inc_by(o.items.len() as u64);
        let b = batches
            .entry(slot)
            .or_insert_with(|| PartitionBatch::new(format!("stock<-{topic}[{partition}]"), slot));
        match b.records.last_mut() {
            Some((last, prev)) if last == offset => prev.extend(ops),
            _ => b.push(*offset, ops),
        }
    }
    out.batches = batches.into_values().collect();
    out
}

/// Per input partition, the last offset this process applied in each stock
/// slot, while its consumer applies the partition batch after batch: what a
/// stock slot must still hold. A stock slot's watermark of
/// `stock<-<topic>[<partition>]` is the last offset that sold at its
/// warehouses, and which offset that is only the writer knows. A stock
/// batch expects it (`expect_through`), so a store that went back between
/// the handler's check and the stock moves refuses them instead of moving
/// its watermark past moves it lost. Forgotten when the consumer starts
/// over (an assignment, a re-read): its first batch expects nothing.
#[derive(Debug, Default)]
pub struct StockMarks(Mutex<HashMap<(String, i32), BTreeMap<i32, i64>>>);

impl StockMarks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), BTreeMap<i32, i64>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The marks of `topic[partition]` for a batch the consumer applies
    /// right after its previous one (`continued`); otherwise none, and
    /// those kept are forgotten.
    pub fn of(&self, topic: &str, partition: i32, continued: bool) -> BTreeMap<i32, i64> {
        let key = (topic.to_string(), partition);
        let mut marks = self.lock();
        if continued {
            marks.get(&key).cloned().unwrap_or_default()
        } else {
            marks.remove(&key);
            BTreeMap::new()
        }
    }

    /// Records the last offset of each stock batch applied.
    pub fn applied(&self, topic: &str, partition: i32, applied: impl Iterator<Item = (i32, i64)>) {
        let mut marks = self.lock();
        let slots = marks.entry((topic.to_string(), partition)).or_default();
        for (slot, offset) in applied {
            let m = slots.entry(slot).or_insert(offset);
            *m = (*m).max(offset);
        }
    }

    /// Forgets the marks of `topic[partition]`.
    pub fn forget(&self, topic: &str, partition: i32) {
        self.lock().remove(&(topic.to_string(), partition));
    }
}

/// Lead-time forecasts kept for the day they were made (they use complete
/// days only, so they change once a day), and the alert ids this process
/// already published.
#[derive(Default)]
pub struct AlertState {
    forecasts: Mutex<HashMap<StockKey, (i64, mesh_forecast::Forecast)>>,
    sent: Mutex<HashSet<String>>,
}

impl AlertState {
    /// Whether this process published alert `id` already.
    pub fn sent(&self, id: &str) -> bool {
        self.sent.lock().expect("not poisoned").contains(id)
    }

    /// Records alert `id` as published (after the broker took it).
    pub fn mark_sent(&self, id: &str) {
        let mut sent = self.sent.lock().expect("not poisoned");
        if sent.len() > 100_000 {
            sent.clear();
        }
        sent.insert(id.to_string());
    }

    async fn get(
        &self,
        store: &StateStore,
        partitions: i32,
        inv: &Inventory,
        (tenant, warehouse, sku): (&str, &str, &str),
        now_ms: i64,
    ) -> Result<mesh_forecast::Forecast> {
        let day = fold::day_of(now_ms);
        let k = (tenant.to_string(), warehouse.to_string(), sku.to_string());
        if let Some((d, f)) = self.forecasts.lock().expect("not poisoned").get(&k) {
            if *d == day {
                return Ok(f.clone());
            }
        }
        let f =
            forecasting::lead_time_forecast(store, partitions, inv, tenant, warehouse, sku, now_ms)
                .await?;
        self.forecasts
            .lock()
            .expect("not poisoned")
            .insert(k, (day, f.clone()));
        Ok(f)
    }
}

/// The alerts of stock this batch sold (`sold`: net units per tenant,
/// warehouse and SKU) that is now out (on hand <= 0) or below its reorder
/// point (inventory position under the tenant's lead-time demand plus
/// safety stock). The state is read after the batch; partitions run
/// concurrently, so instead of detecting the crossing, every batch that
/// leaves the SKU low names the same alert id (per tenant, warehouse, SKU,
/// kind and day) and this process publishes each id once (`state`); after a
/// restart an id may repeat, and readers drop it by id. SKUs without a
/// stock set are not alerted.
pub async fn alerts(
    store: &StateStore,
    partitions: i32,
    inv: &Inventory,
    state: &AlertState,
    sold: &BTreeMap<StockKey, f64>,
    now_ms: i64,
) -> Result<Vec<LogisticsAlert>> {
    let mut out = Vec::new();
    let mut by_stock: BTreeMap<(&str, &str), Vec<(&str, f64)>> = BTreeMap::new();
    for ((tenant, wh, sku), q) in sold {
        if *q > 0.0 {
            by_stock.entry((tenant, wh)).or_default().push((sku, *q));
        }
    }
    let day = fold::day_name(fold::day_of(now_ms));
    for ((tenant, wh), skus) in by_stock {
        let stock: HashMap<String, (f64, f64)> = forecasting::stock(store, partitions, tenant, wh)
            .await?
            .into_iter()
            .map(|(sku, a, b)| (sku, (a, b)))
            .collect();
        for (sku, q) in skus {
            let Some(&(after, on_order)) = stock.get(sku) else {
                continue;
            };
            let alert = |kind: &str, probability: f64, detail: String| LogisticsAlert {
                alert_id: format!("logistics:stock:{tenant}/{wh}:{sku}:{kind}:{day}"),
                kind: AlertKind::StockoutRisk as i32,
                tenant_id: tenant.to_string(),
                warehouse: wh.to_string(),
                sku: sku.to_string(),
                probability,
                detail,
                occurred_at_ms: now_ms,
                vehicle: -1,
                ..Default::default()
            };
            let a = if after <= 0.0 {
                alert(
                    "out",
                    1.0,
                    format!("out of stock: on hand {after} after orders of {q} units"),
                )
            } else {
                let f = state
                    .get(store, partitions, inv, (tenant, wh, sku), now_ms)
                    .await?;
                let s = forecasting::suggest(inv, after, on_order, &f)?;
                if after + on_order >= s.reorder_point {
                    continue;
                }
                alert(
                    "reorder",
                    s.stockout_probability,
                    format!(
                        "inventory position {} is below the reorder point {:.1} \
                         (stock-out probability {:.2} over {} days)",
                        after + on_order,
                        s.reorder_point,
                        s.stockout_probability,
                        inv.lead_time_days
                    ),
                )
            };
            if !state.sent(&a.alert_id) {
                out.push(a);
            }
        }
    }
    Ok(out)
}
