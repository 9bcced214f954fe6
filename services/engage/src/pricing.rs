//! Dynamic pricing: elasticities from the observations the consumer keeps
//! (per item, and per item × viewer lifecycle stage), an optimized price per
//! item within its bounds and under the market's lowest fresh price, and a
//! `PriceChanged` event for every change. The pricer runs every `MESH_ENGAGE_PRICING_INTERVAL_MS`
//! on each replica; every write is a compare-and-set on the quoted price, so
//! replicas agree and each change is published once.
use std::collections::{BTreeMap, HashMap};

use mesh_bus::headers;
use mesh_engage::pricing::{
    estimate_elasticities, estimate_segment_elasticities, optimize_price, BindingConstraint,
    ElasticityConfig, PriceConstraints, PriceObjective, PriceObservation, SegmentObservation,
};
use mesh_proto::engage::v1 as pb;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::engine::Engage;
use crate::error::{Error, Result};
use crate::keys;
use crate::metrics::{PRICE_CHANGES, PRICE_LAST_CHANGE};

const DAY_MS: i64 = 86_400_000;

/// Market prices older than this are ignored.
const MARKET_FRESH_MS: i64 = 7 * DAY_MS;

/// Premium over the lowest market price allowed when bounds set none.
const DEFAULT_MARKET_PREMIUM: f64 = 0.05;

/// An item's pricing bounds as stored (0 = default).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Bounds {
    pub floor: f64,
    pub ceiling: f64,
    pub max_change_per_day: f64,
    pub unit_cost: f64,
    pub min_margin: f64,
    pub objective: String,
    #[serde(default)]
    pub max_market_premium: f64,
    #[serde(default)]
    pub ignore_market: bool,
}

impl Bounds {
    pub fn from_request(r: &pb::SetPriceBoundsRequest) -> Result<Bounds> {
        for (field, v) in [
            ("floor", r.floor),
            ("ceiling", r.ceiling),
            ("max_change_per_day", r.max_change_per_day),
            ("unit_cost", r.unit_cost),
            ("min_margin", r.min_margin),
            ("max_market_premium", r.max_market_premium),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::invalid(
                    field,
                    format!("{v} must be finite and >= 0"),
                ));
            }
        }
        if r.ceiling > 0.0 && r.floor > r.ceiling {
            return Err(Error::invalid(
                "floor",
                format!("floor {} is above ceiling {}", r.floor, r.ceiling),
            ));
        }
        if r.min_margin >= 1.0 {
            return Err(Error::invalid("min_margin", "must be below 1"));
        }
        if r.max_change_per_day > 1.0 {
            return Err(Error::invalid(
                "max_change_per_day",
                "must be at most 1 (100%)",
            ));
        }
        if !matches!(r.objective.as_str(), "" | "revenue" | "margin") {
            return Err(Error::invalid(
                "objective",
                "must be \"revenue\" or \"margin\"",
            ));
        }
        Ok(Bounds {
            floor: r.floor,
            ceiling: r.ceiling,
            max_change_per_day: r.max_change_per_day,
            unit_cost: r.unit_cost,
            min_margin: r.min_margin,
            objective: r.objective.clone(),
            max_market_premium: r.max_market_premium,
            ignore_market: r.ignore_market,
        })
    }

    /// Constraints around the item's list price: floor 0.8×, ceiling 1.25×
    /// and 10% per day unless set; at most 5% over the lowest market price
    /// unless set or ignored.
    fn constraints(&self, list: f64, market: Option<f64>) -> PriceConstraints {
        let floor = if self.floor > 0.0 {
            self.floor
        } else {
            0.8 * list
        };
        let ceiling = if self.ceiling > 0.0 {
            self.ceiling
        } else {
            (1.25 * list).max(floor)
        };
        PriceConstraints {
            floor,
            ceiling,
            max_change: if self.max_change_per_day > 0.0 {
                self.max_change_per_day
            } else {
                0.1
            },
            min_margin: self.min_margin,
            market_ceiling: market.filter(|_| !self.ignore_market).map(|m| {
                m * (1.0
                    + if self.max_market_premium > 0.0 {
                        self.max_market_premium
                    } else {
                        DEFAULT_MARKET_PREMIUM
                    })
            }),
        }
    }
}

/// One stage's elasticity in an explanation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageElasticity {
    pub segment: String,
    pub elasticity: f64,
    pub raw_elasticity: f64,
    pub shrinkage_weight: f64,
    pub observations: u64,
}

/// Why a quote is what it is, as stored beside it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Explanation {
    pub elasticity: f64,
    pub item_elasticity: f64,
    pub category_elasticity: f64,
    pub shrinkage_weight: f64,
    pub demand_at_base: f64,
    pub demand_at_price: f64,
    pub objective: String,
    pub bound_by: String,
    pub observations: u64,
    pub summary: String,
    #[serde(default)]
    pub market_price: f64,
    #[serde(default)]
    pub market_source: String,
    #[serde(default)]
    pub segments: Vec<StageElasticity>,
}

fn bound_name(b: Option<BindingConstraint>) -> &'static str {
    match b {
        None => "",
        Some(BindingConstraint::Floor) => "floor",
        Some(BindingConstraint::Ceiling) => "ceiling",
        Some(BindingConstraint::MaxDecrease | BindingConstraint::MaxIncrease) => "max_change",
        Some(BindingConstraint::MinMargin) => "min_margin",
        Some(BindingConstraint::Market) => "market",
    }
}

/// One item as the shards describe it.
#[derive(Debug, Default)]
struct ItemView {
    price: f64,
    seen_ms: i64,
    list: f64,
    category: String,
    /// (day, price cents) → (views, units).
    obs: BTreeMap<(i64, i64), (f64, f64)>,
    /// (day, price cents, stage) → (views, units), where the stage is known.
    stage_obs: BTreeMap<(i64, i64, String), (f64, f64)>,
    /// Source → (price, observed ms), the latest per source.
    market: BTreeMap<String, (f64, i64)>,
}

impl ItemView {
    /// The lowest price seen by the market within a week of `now`.
    fn market_low(&self, now: i64) -> Option<(&str, f64)> {
        self.market
            .iter()
            .filter(|(_, (_, at))| now - at <= MARKET_FRESH_MS)
            .map(|(s, (p, _))| (s.as_str(), *p))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// Reads every shard of `items` (`(tenant, sku)`) in one round trip each.
async fn read_items(engage: &Engage, items: &[(String, String)]) -> Result<Vec<ItemView>> {
    let parts = engage.partitions;
    let mut reads = Vec::with_capacity(items.len() * parts as usize * 3);
    for (t, s) in items {
        for p in 0..parts {
            reads.push((keys::shard(p), keys::item(t, s)));
            reads.push((keys::shard(p), keys::observations(t, s)));
            reads.push((keys::shard(p), keys::market(t, s)));
        }
    }
    let mut hashes = engage.store.hgetall_many(&reads).await?.into_iter();
    let mut out = Vec::with_capacity(items.len());
    for _ in items {
        let mut v = ItemView::default();
        for _ in 0..parts {
            let item = hashes.next().unwrap_or_default();
            let obs = hashes.next().unwrap_or_default();
            for (source, raw) in hashes.next().unwrap_or_default() {
                let Some((p, at)) = raw.split_once('|') else {
                    continue;
                };
                let (Ok(p), Ok(at)) = (p.parse::<f64>(), at.parse::<i64>()) else {
                    continue;
                };
                if v.market.get(&source).is_none_or(|(_, old)| at >= *old) {
                    v.market.insert(source, (p, at));
                }
            }
            let seen: i64 = item
                .get("seen_ms")
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            if seen >= v.seen_ms {
                if let Some(p) = item.get("price").and_then(|x| x.parse().ok()) {
                    v.price = p;
                    v.seen_ms = seen;
                }
            }
            if v.list == 0.0 {
                v.list = item.get("list").and_then(|x| x.parse().ok()).unwrap_or(0.0);
            }
            if let Some(c) = item.get("category") {
                v.category = c.clone();
            }
            for (field, n) in obs {
                let mut it = field.split('|');
                let (Some(day), Some(cents), Some(kind)) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                let (Ok(day), Ok(cents), Ok(n)) = (day.parse(), cents.parse(), n.parse::<f64>())
                else {
                    continue;
                };
                let e = v.obs.entry((day, cents)).or_insert((0.0, 0.0));
                if kind == "v" {
                    e.0 += n;
                } else {
                    e.1 += n;
                }
                if let Some(stage) = it.next() {
                    let e = v
                        .stage_obs
                        .entry((day, cents, stage.to_string()))
                        .or_insert((0.0, 0.0));
                    if kind == "v" {
                        e.0 += n;
                    } else {
                        e.1 += n;
                    }
                }
            }
        }
        if v.price == 0.0 {
            v.price = v.list;
        }
        out.push(v);
    }
    Ok(out)
}

/// Every item of every partition, `(tenant, sku)`.
async fn all_items(engage: &Engage) -> Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    for p in 0..engage.partitions {
        for (m, _) in engage
            .store
            .ztop(keys::shard(p), keys::ITEMS, 100_000)
            .await?
        {
            if let Some((t, s)) = m.split_once('/') {
                items.push((t.to_string(), s.to_string()));
            }
        }
    }
    items.sort();
    items.dedup();
    Ok(items)
}

/// One pricing round over every item; returns how many prices changed.
pub async fn price_once(engage: &Engage) -> Result<usize> {
    let items = all_items(engage).await?;
    if items.is_empty() {
        return Ok(0);
    }
    let views = read_items(engage, &items).await?;
    let mut categories: HashMap<(String, String), u32> = HashMap::new();
    let mut observations = Vec::new();
    let mut stage_ids: Vec<String> = Vec::new();
    let mut stage_observations = Vec::new();
    for (i, ((tenant, _), v)) in items.iter().zip(&views).enumerate() {
        for ((_, cents, stage), &(views, units)) in &v.stage_obs {
            let exposures = views.max(units);
            if exposures > 0.0 && *cents > 0 {
                let segment = match stage_ids.iter().position(|s| s == stage) {
                    Some(p) => p,
                    None => {
                        stage_ids.push(stage.clone());
                        stage_ids.len() - 1
                    }
                } as u32;
                stage_observations.push(SegmentObservation {
                    item_id: i as u64,
                    segment,
                    price: *cents as f64 / 100.0,
                    exposures,
                    units,
                });
            }
        }
        let next = categories.len() as u32;
        let category = *categories
            .entry((tenant.clone(), v.category.clone()))
            .or_insert(next);
        for (&(_, cents), &(views, units)) in &v.obs {
            // Views are exposures; a sale without a recorded view still
            // counts as one exposure.
            let exposures = views.max(units);
            if exposures > 0.0 && cents > 0 {
                observations.push(PriceObservation {
                    item_id: i as u64,
                    category,
                    price: cents as f64 / 100.0,
                    exposures,
                    units,
                });
            }
        }
    }
    if observations.is_empty() {
        return Ok(0);
    }
    let config = ElasticityConfig::default();
    let model = estimate_elasticities(&observations, &config)?;
    let stage_model = if stage_observations.is_empty() {
        None
    } else {
        Some(estimate_segment_elasticities(
            &stage_observations,
            &model,
            &config,
        )?)
    };
    let now = engage.now();
    let today = now.div_euclid(DAY_MS);
    let mut changed = 0;
    for (i, ((tenant, sku), v)) in items.iter().zip(&views).enumerate() {
        let Some(fit) = model.item(i as u64) else {
            continue;
        };
        if v.price <= 0.0 {
            continue;
        }
        let home = keys::member(tenant, sku);
        let slot = keys::slot(&home, engage.partitions);
        let quote = engage
            .store
            .hgetall(slot, &keys::quote(tenant, sku))
            .await?;
        let bounds: Bounds = match engage
            .store
            .hgetall(slot, &keys::bounds(tenant, sku))
            .await?
            .get("json")
        {
            Some(raw) => serde_json::from_str(raw).map_err(|e| Error::Corrupt {
                what: format!("bounds of {home}"),
                reason: e.to_string(),
            })?,
            None => Bounds::default(),
        };
        let old_price: Option<f64> = quote.get("price").and_then(|x| x.parse().ok());
        let current = old_price.unwrap_or(v.price);
        // The daily change limit counts from the day's first price.
        let day_price = match (
            quote.get("day").and_then(|d| d.parse::<i64>().ok()),
            quote.get("day_price"),
        ) {
            (Some(d), Some(p)) if d == today => p.parse().unwrap_or(current),
            _ => current,
        };
        let list = if v.list > 0.0 { v.list } else { v.price };
        let days = v
            .obs
            .keys()
            .map(|(d, _)| *d)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            .max(1);
        let exposures_per_day = v.obs.values().map(|(vw, u)| vw.max(*u)).sum::<f64>() / days as f64;
        let curve = fit.demand_curve(exposures_per_day);
        let objective = if bounds.objective == "margin" {
            PriceObjective::Margin
        } else {
            PriceObjective::Revenue
        };
        let market = v.market_low(now);
        let constraints = bounds.constraints(list, market.map(|m| m.1));
        let decision =
            match optimize_price(&curve, bounds.unit_cost, day_price, &constraints, objective) {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(tenant, sku, %e, "no feasible price; quote unchanged");
                    continue;
                }
            };
        let cat_mean = model
            .categories
            .iter()
            .find(|c| c.category == fit.category)
            .map_or(fit.elasticity, |c| c.mean);
        let x = &decision.explanation;
        let explanation = Explanation {
            elasticity: x.elasticity,
            item_elasticity: fit.raw_elasticity.unwrap_or(cat_mean),
            category_elasticity: cat_mean,
            shrinkage_weight: 1.0 - x.shrinkage_weight,
            demand_at_base: curve.demand(v.price),
            demand_at_price: x.demand_at_new_price,
            objective: if objective == PriceObjective::Margin {
                "margin".into()
            } else {
                "revenue".into()
            },
            bound_by: bound_name(x.binding).into(),
            observations: fit.observations as u64,
            summary: x.summary.clone(),
            market_price: market.map_or(0.0, |m| m.1),
            market_source: market.map(|m| m.0.to_string()).unwrap_or_default(),
            segments: stage_model
                .iter()
                .flat_map(|m| {
                    stage_ids.iter().enumerate().filter_map(move |(s, name)| {
                        let f = m.get(i as u64, s as u32)?;
                        Some(StageElasticity {
                            segment: name.clone(),
                            elasticity: f.elasticity,
                            raw_elasticity: f.raw_elasticity.unwrap_or(0.0),
                            shrinkage_weight: f.shrinkage_weight,
                            observations: f.observations as u64,
                        })
                    })
                })
                .collect(),
        };
        let price = (decision.price * 100.0).round() / 100.0;
        let price = if constraints.allows(price, day_price, bounds.unit_cost) {
            price
        } else {
            decision.price
        };
        let source = if explanation.bound_by.is_empty() {
            "optimized"
        } else {
            "bounded"
        };
        let (ps, ds, dps, ats) = (
            price.to_string(),
            today.to_string(),
            day_price.to_string(),
            now.to_string(),
        );
        let json = serde_json::to_string(&explanation).expect("explanation serializes");
        let base = v.price.to_string();
        let guard = old_price.map(|p| p.to_string());
        let won = engage
            .store
            .hset_if(
                slot,
                &keys::quote(tenant, sku),
                &[("price", guard.as_deref())],
                &[
                    ("price", ps.as_str()),
                    ("base", base.as_str()),
                    ("source", source),
                    ("day", ds.as_str()),
                    ("day_price", dps.as_str()),
                    ("explanation", json.as_str()),
                    ("at_ms", ats.as_str()),
                ],
            )
            .await?;
        if won && old_price.is_none_or(|o| (o - price).abs() > 1e-9) {
            changed += 1;
            PRICE_CHANGES
                .with_label_values(&[if explanation.bound_by.is_empty() {
                    "none"
                } else {
                    explanation.bound_by.as_str()
                }])
                .inc();
            // Against the price the event reports as the old one.
            let from = old_price.unwrap_or(v.price);
            if from > 0.0 {
                PRICE_LAST_CHANGE.set(price / from - 1.0);
            }
            let quote = pb::PriceQuote {
                tenant_id: tenant.clone(),
                sku: sku.clone(),
                price,
                base_price: v.price,
                source: source.into(),
                at_ms: now,
            };
            let event = pb::PriceChanged {
                tenant_id: tenant.clone(),
                sku: sku.clone(),
                old_price: old_price.unwrap_or(v.price),
                new_price: price,
                explanation: Some(to_proto(quote, &explanation)),
                at_ms: now,
            };
            let id = format!("{home}/{now}");
            let h = headers::cloud_event(
                "mesh.engage.v1.PriceChanged",
                &id,
                "mesh-engage",
                tenant,
                sku,
                now,
            );
            engage
                .producer
                .send(&engage.topic, &home, &event.encode_to_vec(), &h)
                .await?;
        }
    }
    Ok(changed)
}

pub fn to_proto(quote: pb::PriceQuote, x: &Explanation) -> pb::PriceExplanation {
    pb::PriceExplanation {
        quote: Some(quote),
        elasticity: x.elasticity,
        item_elasticity: x.item_elasticity,
        category_elasticity: x.category_elasticity,
        shrinkage_weight: x.shrinkage_weight,
        demand_at_base: x.demand_at_base,
        demand_at_price: x.demand_at_price,
        objective: x.objective.clone(),
        bound_by: x.bound_by.clone(),
        observations: x.observations,
        summary: x.summary.clone(),
        market_price: x.market_price,
        market_source: x.market_source.clone(),
        segments: x
            .segments
            .iter()
            .map(|s| pb::SegmentElasticity {
                segment: s.segment.clone(),
                elasticity: s.elasticity,
                raw_elasticity: s.raw_elasticity,
                shrinkage_weight: s.shrinkage_weight,
                observations: s.observations,
            })
            .collect(),
    }
}

/// `GetPrice` / `ExplainPrice`: the stored quote, or the base price while
/// the pricer has not priced the item.
pub async fn explain(engage: &Engage, tenant: &str, sku: &str) -> Result<pb::PriceExplanation> {
    if tenant.trim().is_empty() {
        return Err(Error::invalid("tenant_id", "required"));
    }
    if sku.trim().is_empty() || sku.len() > 256 {
        return Err(Error::invalid("sku", "required, 1..=256 bytes"));
    }
    let slot = keys::slot(&keys::member(tenant, sku), engage.partitions);
    let q = engage
        .store
        .hgetall(slot, &keys::quote(tenant, sku))
        .await?;
    if let (Some(p), Some(x)) = (q.get("price"), q.get("explanation")) {
        let x: Explanation = serde_json::from_str(x).map_err(|e| Error::Corrupt {
            what: format!("quote of {tenant}/{sku}"),
            reason: e.to_string(),
        })?;
        let quote = pb::PriceQuote {
            tenant_id: tenant.into(),
            sku: sku.into(),
            price: p.parse().unwrap_or(0.0),
            base_price: q.get("base").and_then(|b| b.parse().ok()).unwrap_or(0.0),
            source: q.get("source").cloned().unwrap_or_default(),
            at_ms: q.get("at_ms").and_then(|b| b.parse().ok()).unwrap_or(0),
        };
        return Ok(to_proto(quote, &x));
    }
    let v = read_items(engage, &[(tenant.to_string(), sku.to_string())])
        .await?
        .pop()
        .unwrap_or_default();
    if v.price <= 0.0 {
        return Err(Error::NotFound(format!(
            "item {tenant}/{sku} was never seen with a price"
        )));
    }
    Ok(pb::PriceExplanation {
        quote: Some(pb::PriceQuote {
            tenant_id: tenant.into(),
            sku: sku.into(),
            price: v.price,
            base_price: v.price,
            source: "base".into(),
            at_ms: engage.now(),
        }),
        summary: "not priced yet: the last price seen".into(),
        ..Default::default()
    })
}

/// `SetPriceBounds`.
pub async fn set_bounds(engage: &Engage, r: &pb::SetPriceBoundsRequest) -> Result<()> {
    if r.tenant_id.trim().is_empty() {
        return Err(Error::invalid("tenant_id", "required"));
    }
    if r.sku.trim().is_empty() || r.sku.len() > 256 {
        return Err(Error::invalid("sku", "required, 1..=256 bytes"));
    }
    let b = Bounds::from_request(r)?;
    let slot = keys::slot(&keys::member(&r.tenant_id, &r.sku), engage.partitions);
    let json = serde_json::to_string(&b).expect("bounds serialize");
    engage
        .store
        .hset_if(
            slot,
            &keys::bounds(&r.tenant_id, &r.sku),
            &[],
            &[("json", json.as_str())],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_bad_field() {
        let ok = pb::SetPriceBoundsRequest {
            tenant_id: "t".into(),
            sku: "s".into(),
            floor: 5.0,
            ceiling: 10.0,
            ..Default::default()
        };
        assert!(Bounds::from_request(&ok).is_ok());
        for (bad, field) in [
            (
                pb::SetPriceBoundsRequest {
                    floor: 11.0,
                    ..ok.clone()
                },
                "floor",
            ),
            (
                pb::SetPriceBoundsRequest {
                    unit_cost: f64::NAN,
                    ..ok.clone()
                },
                "unit_cost",
            ),
            (
                pb::SetPriceBoundsRequest {
                    min_margin: 1.0,
                    ..ok.clone()
                },
                "min_margin",
            ),
            (
                pb::SetPriceBoundsRequest {
                    objective: "fun".into(),
                    ..ok.clone()
                },
                "objective",
            ),
        ] {
            let e = Bounds::from_request(&bad).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn default_constraints_follow_the_list_price() {
        let c = Bounds::default().constraints(20.0, None);
        assert_eq!((c.floor, c.ceiling, c.max_change), (16.0, 25.0, 0.1));
        assert_eq!(c.market_ceiling, None);
        let c = Bounds::default().constraints(20.0, Some(18.0));
        assert!((c.market_ceiling.unwrap() - 18.9).abs() < 1e-9);
        let ignore = Bounds {
            ignore_market: true,
            ..Bounds::default()
        };
        assert_eq!(ignore.constraints(20.0, Some(18.0)).market_ceiling, None);
    }
}
