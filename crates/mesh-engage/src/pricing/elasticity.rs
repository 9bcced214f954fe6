//! Elasticity estimation: per-item Poisson log-log fits, then empirical-Bayes shrinkage
//! toward the category mean.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{saturate, DemandCurve};
use crate::error::{finite, non_negative, positive, EngageError, Result};

/// One period (e.g. a day) of one item shown at one price.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PriceObservation {
    /// Item id.
    pub item_id: u64,
    /// Category id; shrinkage pools items within a category.
    pub category: u32,
    /// Price shown, > 0.
    pub price: f64,
    /// Views / exposures in the period, > 0.
    pub exposures: f64,
    /// Units sold in the period, >= 0.
    pub units: f64,
}

impl PriceObservation {
    fn validate(&self) -> Result<()> {
        positive("observation price", self.price)?;
        positive("observation exposures", self.exposures)?;
        non_negative("observation units", self.units)?;
        Ok(())
    }
}

/// Settings for [`estimate_elasticities`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ElasticityConfig {
    /// Elasticity assumed for a category with no identifiable item.
    pub prior_elasticity: f64,
    /// Between-item variance used when a category has a single identifiable item.
    pub prior_tau2: f64,
    /// Lower bound on the between-item variance, so that one noisy category never pools
    /// every item onto the same value.
    pub min_tau2: f64,
    /// Newton iterations for each item's Poisson fit.
    pub max_iter: usize,
}

impl Default for ElasticityConfig {
    fn default() -> Self {
        Self {
            prior_elasticity: -1.5,
            prior_tau2: 0.25,
            min_tau2: 0.0025,
            max_iter: 50,
        }
    }
}

/// Fitted demand for one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemElasticity {
    /// Item id.
    pub item_id: u64,
    /// Category id.
    pub category: u32,
    /// Number of observations used.
    pub observations: usize,
    /// Item-only maximum-likelihood elasticity; `None` when prices never varied or nothing
    /// sold, so the slope is not identified.
    pub raw_elasticity: Option<f64>,
    /// Estimated variance of `raw_elasticity` (overdispersion-corrected).
    pub raw_variance: Option<f64>,
    /// Elasticity after shrinkage; the one to use for decisions.
    pub elasticity: f64,
    /// Weight on the category mean in `elasticity` (0 = item only, 1 = category only).
    pub shrinkage_weight: f64,
    /// Reference price (geometric mean of prices shown).
    pub ref_price: f64,
    /// Expected units per exposure at `ref_price`, refitted with the shrunk elasticity.
    pub rate_at_ref: f64,
}

impl ItemElasticity {
    /// Expected units per exposure at `price`.
    pub fn rate_at(&self, price: f64) -> f64 {
        saturate(self.rate_at_ref * ((price / self.ref_price).ln() * self.elasticity).exp())
    }

    /// The demand curve for a period with `exposures` views.
    pub fn demand_curve(&self, exposures: f64) -> DemandCurve {
        DemandCurve {
            elasticity: self.elasticity,
            base_demand: saturate(self.rate_at_ref * exposures),
            ref_price: self.ref_price,
            shrinkage_weight: self.shrinkage_weight,
        }
    }
}

/// Category-level prior learned from the items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryPrior {
    /// Category id.
    pub category: u32,
    /// Precision-weighted mean elasticity.
    pub mean: f64,
    /// Between-item variance of true elasticities.
    pub tau2: f64,
    /// Items with an identified elasticity.
    pub identified_items: usize,
}

/// All fitted items and categories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElasticityModel {
    /// Items, sorted by id.
    pub items: Vec<ItemElasticity>,
    /// Categories, sorted by id.
    pub categories: Vec<CategoryPrior>,
}

impl ElasticityModel {
    /// The fit for `item_id`, if it had observations.
    pub fn item(&self, item_id: u64) -> Option<&ItemElasticity> {
        self.items
            .binary_search_by_key(&item_id, |i| i.item_id)
            .ok()
            .map(|i| &self.items[i])
    }
}

pub(super) struct RawFit {
    pub(super) item_id: u64,
    pub(super) category: u32,
    pub(super) n: usize,
    pub(super) ref_price: f64,
    /// Slope and its variance, when identified.
    pub(super) slope: Option<(f64, f64)>,
}

/// Estimates every item's elasticity and shrinks it toward its category mean.
///
/// Errors on empty input or any non-finite / negative field, naming the field.
pub fn estimate_elasticities(
    observations: &[PriceObservation],
    config: &ElasticityConfig,
) -> Result<ElasticityModel> {
    if observations.is_empty() {
        return Err(EngageError::NotEnoughData {
            what: "price observations",
            needed: 1,
            got: 0,
        });
    }
    finite("prior elasticity", config.prior_elasticity)?;
    non_negative("prior tau2", config.prior_tau2)?;
    non_negative("min tau2", config.min_tau2)?;
    let mut by_item: BTreeMap<u64, Vec<&PriceObservation>> = BTreeMap::new();
    for o in observations {
        o.validate()?;
        by_item.entry(o.item_id).or_default().push(o);
    }
    let raws: Vec<RawFit> = by_item
        .iter()
        .map(|(id, obs)| fit_item(*id, obs, config.max_iter))
        .collect();

    // Empirical-Bayes prior per category, with the global pool as a fallback.
    let global = pool(
        raws.iter().filter_map(|r| r.slope),
        config.prior_elasticity,
        config,
    );
    let mut cats: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &raws {
        let e = cats.entry(r.category).or_default();
        if let Some(s) = r.slope {
            e.push(s);
        }
    }
    let categories: Vec<CategoryPrior> = cats
        .iter()
        .map(|(c, slopes)| {
            let (mean, tau2) = if slopes.is_empty() {
                global
            } else {
                pool(slopes.iter().copied(), global.0, config)
            };
            CategoryPrior {
                category: *c,
                mean,
                tau2,
                identified_items: slopes.len(),
            }
        })
        .collect();

    let items = raws
        .iter()
        .map(|r| {
            let prior = categories
                .iter()
                .find(|c| c.category == r.category)
                .expect("every item's category was pooled");
            let (elasticity, weight) = match r.slope {
                Some((b, v)) => {
                    let w = v / (v + prior.tau2);
                    let w = if w.is_finite() { w } else { 1.0 };
                    ((1.0 - w) * b + w * prior.mean, w)
                }
                None => (prior.mean, 1.0),
            };
            let obs = &by_item[&r.item_id];
            // Poisson MLE of the intercept with the slope held at the shrunk value.
            let units: f64 = obs.iter().map(|o| o.units).sum();
            let scaled: f64 = obs
                .iter()
                .map(|o| o.exposures * ((o.price / r.ref_price).ln() * elasticity).exp())
                .sum();
            let rate = if units > 0.0 { units } else { 0.5 } / scaled;
            ItemElasticity {
                item_id: r.item_id,
                category: r.category,
                observations: r.n,
                raw_elasticity: r.slope.map(|s| s.0),
                raw_variance: r.slope.map(|s| s.1),
                elasticity,
                shrinkage_weight: weight,
                ref_price: r.ref_price,
                rate_at_ref: saturate(rate),
            }
        })
        .collect();
    Ok(ElasticityModel { items, categories })
}

/// DerSimonian–Laird pooled mean and between-item variance of `(estimate, variance)` pairs.
pub(super) fn pool(
    slopes: impl Iterator<Item = (f64, f64)>,
    fallback_mean: f64,
    config: &ElasticityConfig,
) -> (f64, f64) {
    let s: Vec<(f64, f64)> = slopes.collect();
    match s.len() {
        0 => (fallback_mean, config.prior_tau2.max(config.min_tau2)),
        1 => {
            // One item cannot tell its own noise from the spread between items: shrink it
            // toward the fallback with the configured prior spread.
            let (b, v) = s[0];
            let w = v / (v + config.prior_tau2);
            (
                (1.0 - w) * b + w * fallback_mean,
                config.prior_tau2.max(config.min_tau2),
            )
        }
        k => {
            let w: Vec<f64> = s.iter().map(|(_, v)| 1.0 / v).collect();
            let sw: f64 = w.iter().sum();
            let sw2: f64 = w.iter().map(|x| x * x).sum();
            let fe = s.iter().zip(&w).map(|((b, _), w)| w * b).sum::<f64>() / sw;
            let q: f64 = s
                .iter()
                .zip(&w)
                .map(|((b, _), w)| w * (b - fe).powi(2))
                .sum();
            let denom = sw - sw2 / sw;
            let tau2 = if denom > 0.0 {
                ((q - (k as f64 - 1.0)) / denom).max(0.0)
            } else {
                0.0
            }
            .max(config.min_tau2);
            let w2: Vec<f64> = s.iter().map(|(_, v)| 1.0 / (v + tau2)).collect();
            let mean =
                s.iter().zip(&w2).map(|((b, _), w)| w * b).sum::<f64>() / w2.iter().sum::<f64>();
            (mean, tau2)
        }
    }
}

/// Poisson regression of units on log price with log exposures as offset, by Newton's
/// method with step halving. Returns the slope and its overdispersion-corrected variance.
pub(super) fn fit_item(item_id: u64, obs: &[&PriceObservation], max_iter: usize) -> RawFit {
    let n = obs.len();
    let log_ref = obs.iter().map(|o| o.price.ln()).sum::<f64>() / n as f64;
    let ref_price = log_ref.exp();
    let x: Vec<f64> = obs.iter().map(|o| o.price.ln() - log_ref).collect();
    let sxx: f64 = x.iter().map(|v| v * v).sum();
    let units: f64 = obs.iter().map(|o| o.units).sum();
    let exposure: f64 = obs.iter().map(|o| o.exposures).sum();
    let mut out = RawFit {
        item_id,
        category: obs[0].category,
        n,
        ref_price,
        slope: None,
    };
    if n < 3 || sxx < 1e-10 || units <= 0.0 {
        return out;
    }
    let loglik = |a: f64, b: f64| -> f64 {
        obs.iter()
            .zip(&x)
            .map(|(o, xi)| {
                let eta = o.exposures.ln() + a + b * xi;
                o.units * eta - eta.exp()
            })
            .sum()
    };
    let (mut a, mut b) = ((units / exposure).ln(), 0.0);
    let mut ll = loglik(a, b);
    let mut info = [0.0; 3];
    for _ in 0..max_iter {
        let (mut ua, mut ub, mut iaa, mut iab, mut ibb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (o, xi) in obs.iter().zip(&x) {
            let mu = (o.exposures.ln() + a + b * xi).exp();
            ua += o.units - mu;
            ub += xi * (o.units - mu);
            iaa += mu;
            iab += mu * xi;
            ibb += mu * xi * xi;
        }
        info = [iaa, iab, ibb];
        let det = iaa * ibb - iab * iab;
        if !(det > 0.0 && det.is_finite()) {
            return out;
        }
        let da = (ibb * ua - iab * ub) / det;
        let db = (iaa * ub - iab * ua) / det;
        let mut step = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let (na, nb) = (a + step * da, b + step * db);
            let nll = loglik(na, nb);
            if nll.is_finite() && nll >= ll - 1e-12 {
                a = na;
                b = nb;
                ll = nll;
                improved = true;
                break;
            }
            step /= 2.0;
        }
        if !improved || (da.abs() + db.abs()) * step < 1e-10 {
            break;
        }
    }
    let det = info[0] * info[2] - info[1] * info[1];
    let pearson: f64 = obs
        .iter()
        .zip(&x)
        .map(|(o, xi)| {
            let mu = (o.exposures.ln() + a + b * xi).exp();
            (o.units - mu).powi(2) / mu.max(1e-300)
        })
        .sum();
    let phi = if n > 2 {
        (pearson / (n - 2) as f64).max(1.0)
    } else {
        1.0
    };
    let var = phi * info[0] / det;
    if b.is_finite() && var.is_finite() && var > 0.0 {
        out.slope = Some((b, var));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{simulate_price_history, PricingWorld};

    #[test]
    fn bad_observations_name_the_problem() {
        let err = estimate_elasticities(&[], &ElasticityConfig::default()).unwrap_err();
        assert!(err.to_string().contains("price observations"), "{err}");
        let bad = PriceObservation {
            item_id: 1,
            category: 0,
            price: -1.0,
            exposures: 10.0,
            units: 1.0,
        };
        let err = estimate_elasticities(&[bad], &ElasticityConfig::default()).unwrap_err();
        assert!(err.to_string().contains("observation price"), "{err}");
    }

    #[test]
    fn elasticity_recovered_on_a_large_sample() {
        let world = PricingWorld::generate(7, 4, 5, 0.2);
        let obs = simulate_price_history(&world, 240, 3000.0, 0.25, 11);
        let model = estimate_elasticities(&obs, &ElasticityConfig::default()).unwrap();
        for item in &world.items {
            let fit = model.item(item.id).unwrap();
            assert!(
                (fit.elasticity - item.true_elasticity).abs() < 0.15,
                "item {} true {} est {}",
                item.id,
                item.true_elasticity,
                fit.elasticity
            );
        }
    }

    #[test]
    fn shrinkage_pulls_unidentified_items_to_the_category() {
        let mut obs = Vec::new();
        for (id, e) in [(1u64, -2.0f64), (2, -2.2), (3, -1.8)] {
            for d in 0..40 {
                let p = 10.0 * (1.0 + 0.2 * ((d % 5) as f64 - 2.0) / 2.0);
                obs.push(PriceObservation {
                    item_id: id,
                    category: 9,
                    price: p,
                    exposures: 1000.0,
                    units: (100.0 * (p / 10.0).powf(e)).round(),
                });
            }
        }
        // Item 4 never changed price: slope unknown, must borrow the category's.
        for _ in 0..10 {
            obs.push(PriceObservation {
                item_id: 4,
                category: 9,
                price: 5.0,
                exposures: 100.0,
                units: 3.0,
            });
        }
        let m = estimate_elasticities(&obs, &ElasticityConfig::default()).unwrap();
        let four = m.item(4).unwrap();
        assert_eq!(four.raw_elasticity, None);
        assert_eq!(four.shrinkage_weight, 1.0);
        assert!((four.elasticity + 2.0).abs() < 0.1, "{}", four.elasticity);
        assert!((four.rate_at(5.0) - 0.03).abs() < 1e-9);
    }
}
