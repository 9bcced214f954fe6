//! Price elasticity and price decisions.
//!
//! Demand is constant-elasticity: `E[units] = exposures * exp(a) * (price / ref)^b`, so
//! `b` is the elasticity. Each item is fitted on its own by Poisson maximum likelihood
//! (log link, exposures as offset), which copes with days without sales where a log-log OLS
//! would need an arbitrary `+0.5`. Item estimates are then shrunk toward their category
//! mean by empirical Bayes (DerSimonian–Laird between-item variance), weighting each item by
//! its own estimation variance: items with little price variation borrow from the category.
//!
//! Segments (lifecycle stages, customer groups) can answer price differently:
//! [`estimate_segment_elasticities`] fits every item × segment the same way and shrinks it
//! toward the item's elasticity plus the segment's typical offset, learned across items, so a
//! segment seen rarely for an item borrows from the item and from the segment elsewhere.
//!
//! [`optimize_price`] chooses a price inside hard constraints. The constraints are turned
//! into one feasible interval first and every candidate is clamped into it, so they cannot
//! be violated whatever the demand model says.

mod elasticity;
mod optimize;
mod segment;

pub use elasticity::{
    estimate_elasticities, CategoryPrior, ElasticityConfig, ElasticityModel, ItemElasticity,
    PriceObservation,
};
pub use optimize::{
    optimize_price, BindingConstraint, DemandCurve, PriceConstraints, PriceDecision,
    PriceExplanation, PriceObjective,
};
pub use segment::{
    estimate_segment_elasticities, SegmentElasticity, SegmentModel, SegmentObservation,
    SegmentPrior,
};

/// Clamps to the finite range (NaN becomes 0) so explanations never carry inf or NaN.
pub(crate) fn saturate(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-f64::MAX, f64::MAX)
    }
}
