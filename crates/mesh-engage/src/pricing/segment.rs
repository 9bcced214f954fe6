//! Elasticity per item and segment: each item × segment fitted on its own, then shrunk
//! toward the item's elasticity plus the segment's offset pooled across items.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::elasticity::{fit_item, pool};
use super::{ElasticityConfig, ElasticityModel, PriceObservation};
use crate::error::{non_negative, positive, EngageError, Result};

/// One period of one item shown to one segment at one price.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegmentObservation {
    /// Item id.
    pub item_id: u64,
    /// Segment id.
    pub segment: u32,
    /// Price shown, > 0.
    pub price: f64,
    /// Views in the period, > 0.
    pub exposures: f64,
    /// Units sold in the period, >= 0.
    pub units: f64,
}

/// A segment's typical deviation from the item elasticity, learned across items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentPrior {
    /// Segment id.
    pub segment: u32,
    /// Mean of (item × segment elasticity − item elasticity) over items.
    pub offset: f64,
    /// Between-item variance of that deviation.
    pub tau2: f64,
    /// Items whose slope for this segment was identified.
    pub identified_items: usize,
}

/// Fitted elasticity of one item for one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentElasticity {
    /// Item id.
    pub item_id: u64,
    /// Segment id.
    pub segment: u32,
    /// Observations used.
    pub observations: usize,
    /// Item × segment maximum-likelihood elasticity, when identified.
    pub raw_elasticity: Option<f64>,
    /// Elasticity after shrinkage; the one to use.
    pub elasticity: f64,
    /// Weight on the prior (item elasticity + segment offset): 0 = own data only.
    pub shrinkage_weight: f64,
}

/// Every item × segment fit, sorted by `(item_id, segment)`, and the segment priors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentModel {
    /// The fits.
    pub fits: Vec<SegmentElasticity>,
    /// One prior per segment seen.
    pub segments: Vec<SegmentPrior>,
}

impl SegmentModel {
    /// The fit of `item_id` for `segment`, if that pair had observations.
    pub fn get(&self, item_id: u64, segment: u32) -> Option<&SegmentElasticity> {
        self.fits
            .binary_search_by_key(&(item_id, segment), |f| (f.item_id, f.segment))
            .ok()
            .map(|i| &self.fits[i])
    }
}

/// Estimates every item × segment elasticity against the item fits in `items`.
///
/// Pairs whose item is not in `items` are skipped. Errors on empty input or a
/// non-finite / negative field, naming it.
pub fn estimate_segment_elasticities(
    observations: &[SegmentObservation],
    items: &ElasticityModel,
    config: &ElasticityConfig,
) -> Result<SegmentModel> {
    if observations.is_empty() {
        return Err(EngageError::NotEnoughData {
            what: "segment price observations",
            needed: 1,
            got: 0,
        });
    }
    let mut by_pair: BTreeMap<(u64, u32), Vec<PriceObservation>> = BTreeMap::new();
    for o in observations {
        positive("observation price", o.price)?;
        positive("observation exposures", o.exposures)?;
        non_negative("observation units", o.units)?;
        by_pair
            .entry((o.item_id, o.segment))
            .or_default()
            .push(PriceObservation {
                item_id: o.item_id,
                category: o.segment,
                price: o.price,
                exposures: o.exposures,
                units: o.units,
            });
    }
    // Raw fits and their deviations from the item's (shrunk) elasticity.
    let mut raws = Vec::with_capacity(by_pair.len());
    let mut deviations: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    for (&(item_id, segment), obs) in &by_pair {
        let Some(item) = items.item(item_id) else {
            continue;
        };
        let refs: Vec<&PriceObservation> = obs.iter().collect();
        let raw = fit_item(item_id, &refs, config.max_iter);
        let dev = deviations.entry(segment).or_default();
        if let Some((b, v)) = raw.slope {
            dev.push((b - item.elasticity, v));
        }
        raws.push((segment, item.elasticity, raw));
    }
    let segments: Vec<SegmentPrior> = deviations
        .iter()
        .map(|(&segment, devs)| {
            let (offset, tau2) = pool(devs.iter().copied(), 0.0, config);
            SegmentPrior {
                segment,
                offset,
                tau2,
                identified_items: devs.len(),
            }
        })
        .collect();
    let fits = raws
        .into_iter()
        .map(|(segment, item_e, raw)| {
            let prior = segments
                .iter()
                .find(|p| p.segment == segment)
                .expect("every segment was pooled");
            let center = item_e + prior.offset;
            let (elasticity, weight) = match raw.slope {
                Some((b, v)) => {
                    let w = v / (v + prior.tau2);
                    let w = if w.is_finite() { w } else { 1.0 };
                    ((1.0 - w) * b + w * center, w)
                }
                None => (center, 1.0),
            };
            SegmentElasticity {
                item_id: raw.item_id,
                segment,
                observations: raw.n,
                raw_elasticity: raw.slope.map(|s| s.0),
                elasticity,
                shrinkage_weight: weight,
            }
        })
        .collect();
    Ok(SegmentModel { fits, segments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::estimate_elasticities;
    use crate::simulate::{simulate_segment_history, PricingWorld, SegmentWorld};

    #[test]
    fn bad_observations_name_the_problem() {
        let world = PricingWorld::generate(1, 2, 2, 0.2);
        let seg = SegmentWorld::standard(world);
        let (item_obs, _) = simulate_segment_history(&seg, 20, 200.0, 0.2, 3);
        let items = estimate_elasticities(&item_obs, &ElasticityConfig::default()).unwrap();
        let err =
            estimate_segment_elasticities(&[], &items, &ElasticityConfig::default()).unwrap_err();
        assert!(
            err.to_string().contains("segment price observations"),
            "{err}"
        );
        let bad = SegmentObservation {
            item_id: 1,
            segment: 0,
            price: 2.0,
            exposures: f64::INFINITY,
            units: 1.0,
        };
        let err = estimate_segment_elasticities(&[bad], &items, &ElasticityConfig::default())
            .unwrap_err();
        assert!(err.to_string().contains("observation exposures"), "{err}");
    }

    #[test]
    fn segments_beat_the_item_elasticity_where_they_differ() {
        let world = PricingWorld::generate(5, 4, 8, 0.25);
        let seg = SegmentWorld::standard(world);
        let (item_obs, seg_obs) = simulate_segment_history(&seg, 60, 400.0, 0.15, 9);
        let cfg = ElasticityConfig::default();
        let items = estimate_elasticities(&item_obs, &cfg).unwrap();
        let model = estimate_segment_elasticities(&seg_obs, &items, &cfg).unwrap();
        let (mut own, mut item_only) = (0.0, 0.0);
        for item in &seg.world.items {
            for s in 0..seg.offsets.len() as u32 {
                let truth = seg.true_elasticity(item, s);
                own += (model.get(item.id, s).unwrap().elasticity - truth).abs();
                item_only += (items.item(item.id).unwrap().elasticity - truth).abs();
            }
        }
        assert!(
            own < 0.6 * item_only,
            "segment error {own} vs item-only {item_only}"
        );
        // The learned offsets keep the segments' order.
        let off: Vec<f64> = model.segments.iter().map(|p| p.offset).collect();
        assert!(off[0] < off[1] && off[1] < off[2], "{off:?}");
    }
}
