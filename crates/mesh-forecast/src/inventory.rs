//! Inventory maths on top of a forecast: lead-time demand, safety stock, reorder point,
//! order quantity and the probability of a stock-out before a new order arrives.
//!
//! Lead-time demand is taken as normal with mean `Σ mean_h` and variance `Σ sd_h²` over
//! the first `lead_time` steps (the textbook `z σ √L` when all steps share one σ).

use serde::Serialize;

use crate::error::{invalid, Result};
use crate::forecast::{normal_cdf, z_quantile, Forecast};

/// What to do about one item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suggestion {
    /// Expected demand over the lead time.
    pub lead_time_demand: f64,
    /// Standard deviation of lead-time demand.
    pub lead_time_sd: f64,
    /// `z(service_level) * lead_time_sd`.
    pub safety_stock: f64,
    /// `lead_time_demand + safety_stock`: order when the inventory position falls to this.
    pub reorder_point: f64,
    /// `on_hand + on_order`.
    pub inventory_position: f64,
    /// Quantity that lifts the inventory position back to the reorder point (0 if above).
    pub order_qty: f64,
    /// Probability that lead-time demand exceeds the current inventory position.
    pub stockout_probability: f64,
}

impl Suggestion {
    /// True when the stock-out risk over the lead time exceeds `threshold` (in [0, 1]).
    pub fn stockout_alert(&self, threshold: f64) -> bool {
        self.stockout_probability > threshold
    }
}

/// Reorder suggestion for an item with `on_hand` stock and `on_order` already ordered,
/// given a demand `forecast` (per period), a `lead_time` in whole periods and the target
/// cycle `service_level` (probability of no stock-out, e.g. 0.95).
pub fn reorder_suggestion(
    on_hand: f64,
    on_order: f64,
    forecast: &Forecast,
    lead_time: usize,
    service_level: f64,
) -> Result<Suggestion> {
    if !on_hand.is_finite() || !on_order.is_finite() || on_order < 0.0 {
        return Err(invalid(
            "on_hand/on_order",
            format!("need finite stock and non-negative on-order, got {on_hand} / {on_order}"),
        ));
    }
    if lead_time == 0 || lead_time > forecast.horizon() {
        return Err(invalid(
            "lead_time",
            format!(
                "{lead_time} must be between 1 and the forecast horizon {}",
                forecast.horizon()
            ),
        ));
    }
    let z = z_quantile(service_level, "service_level")?;
    let demand: f64 = forecast.mean[..lead_time].iter().map(|d| d.max(0.0)).sum();
    let sd = forecast.sd[..lead_time]
        .iter()
        .map(|s| s * s)
        .sum::<f64>()
        .sqrt();
    let safety_stock = (z * sd).max(0.0);
    let reorder_point = demand + safety_stock;
    let position = on_hand + on_order;
    let stockout_probability = if sd > 0.0 {
        1.0 - normal_cdf((position - demand) / sd)
    } else if demand > position {
        1.0
    } else {
        0.0
    };
    Ok(Suggestion {
        lead_time_demand: demand,
        lead_time_sd: sd,
        safety_stock,
        reorder_point,
        inventory_position: position,
        order_qty: (reorder_point - position).max(0.0),
        stockout_probability,
    })
}
