//! The bounded price optimizer.

use serde::{Deserialize, Serialize};

use super::saturate;
use crate::error::{finite, non_negative, positive, EngageError, Result};

/// What to maximise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PriceObjective {
    /// `price * demand`.
    Revenue,
    /// `(price - unit_cost) * demand`.
    Margin,
}

/// Hard limits on the new price.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PriceConstraints {
    /// Lowest allowed price, > 0.
    pub floor: f64,
    /// Highest allowed price, >= floor.
    pub ceiling: f64,
    /// Largest relative move from the current price per decision (0.1 = ±10%).
    pub max_change: f64,
    /// Smallest margin as a share of price, in [0, 1): `price - cost >= min_margin * price`.
    pub min_margin: f64,
    /// Highest price the market bears: competitors' lowest price times the allowed premium;
    /// `None` when no market price is known. The lower limits win where they conflict (a
    /// floor or a margin is a business rule, a competitor's price only a guide).
    #[serde(default)]
    pub market_ceiling: Option<f64>,
}

impl PriceConstraints {
    /// Whether `price` satisfies every constraint given the current price and unit cost.
    /// Uses exactly the arithmetic of [`optimize_price`], so a decision it returns always
    /// passes.
    pub fn allows(&self, price: f64, current_price: f64, unit_cost: f64) -> bool {
        price.is_finite()
            && price >= self.floor
            && price <= self.ceiling
            && price >= current_price * (1.0 - self.max_change)
            && price <= current_price * (1.0 + self.max_change)
            && price * (1.0 - self.min_margin) >= unit_cost
            && self
                .market_ceiling
                .is_none_or(|m| price <= m.max(self.low(current_price, unit_cost).0))
    }

    /// The highest of the lower limits and which one it is.
    fn low(&self, current_price: f64, unit_cost: f64) -> (f64, BindingConstraint) {
        let mut margin_low = unit_cost / (1.0 - self.min_margin);
        // Division can round below the true bound; step up until the check itself passes.
        while margin_low.is_finite() && margin_low * (1.0 - self.min_margin) < unit_cost {
            margin_low = margin_low.next_up();
        }
        [
            (self.floor, BindingConstraint::Floor),
            (
                current_price * (1.0 - self.max_change),
                BindingConstraint::MaxDecrease,
            ),
            (margin_low, BindingConstraint::MinMargin),
        ]
        .into_iter()
        .fold((f64::NEG_INFINITY, BindingConstraint::Floor), |acc, x| {
            if x.0 > acc.0 {
                x
            } else {
                acc
            }
        })
    }

    fn validate(&self) -> Result<()> {
        positive("price floor", self.floor)?;
        positive("price ceiling", self.ceiling)?;
        if self.ceiling < self.floor {
            return Err(EngageError::Infeasible {
                low: self.floor,
                high: self.ceiling,
            });
        }
        non_negative("max price change", self.max_change)?;
        non_negative("min margin", self.min_margin)?;
        if let Some(m) = self.market_ceiling {
            positive("market ceiling", m)?;
        }
        if self.min_margin >= 1.0 {
            return Err(EngageError::OutOfRange {
                what: "min margin",
                expected: "in [0, 1)",
                value: self.min_margin,
            });
        }
        Ok(())
    }
}

/// Constant-elasticity demand: `base_demand * (price / ref_price)^elasticity` units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DemandCurve {
    /// Elasticity (usually negative).
    pub elasticity: f64,
    /// Expected units at `ref_price`.
    pub base_demand: f64,
    /// Price at which `base_demand` holds.
    pub ref_price: f64,
    /// Shrinkage weight of the estimate, carried into the explanation.
    pub shrinkage_weight: f64,
}

impl DemandCurve {
    /// Expected units at `price`, saturated to stay finite.
    pub fn demand(&self, price: f64) -> f64 {
        saturate(self.base_demand * ((price / self.ref_price).ln() * self.elasticity).exp())
    }
}

/// Which constraint stopped the optimizer short of the unconstrained optimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindingConstraint {
    /// The price floor.
    Floor,
    /// The price ceiling.
    Ceiling,
    /// The largest allowed cut.
    MaxDecrease,
    /// The largest allowed rise.
    MaxIncrease,
    /// The minimum margin.
    MinMargin,
    /// The market's price (competitors' lowest, with the allowed premium).
    Market,
}

/// Why the price was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceExplanation {
    /// Elasticity used.
    pub elasticity: f64,
    /// Weight on the category mean in that elasticity.
    pub shrinkage_weight: f64,
    /// Expected units at the current price.
    pub demand_at_old_price: f64,
    /// Expected units at the new price.
    pub demand_at_new_price: f64,
    /// Objective value at the current price.
    pub objective_at_old_price: f64,
    /// Objective value at the new price.
    pub objective_at_new_price: f64,
    /// Unconstrained optimum (0 or infinity are reported as `None`).
    pub unconstrained_optimum: Option<f64>,
    /// The constraint that bound, if any.
    pub binding: Option<BindingConstraint>,
    /// One sentence for humans.
    pub summary: String,
}

/// The chosen price and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceDecision {
    /// New price; always satisfies the constraints.
    pub price: f64,
    /// Price before the decision.
    pub previous_price: f64,
    /// Objective maximised.
    pub objective: PriceObjective,
    /// Explanation.
    pub explanation: PriceExplanation,
}

/// Chooses the price maximising expected revenue or margin within `constraints`.
///
/// Under constant elasticity the objective is unimodal in price, with the optimum at
/// `cost * e / (1 + e)` for margin (`e < -1`) and at a bound otherwise, so the answer is
/// that point clamped into the feasible interval. Candidates are still compared in log
/// space so that extreme prices (1e-6 .. 1e9) cannot overflow the comparison.
pub fn optimize_price(
    demand: &DemandCurve,
    unit_cost: f64,
    current_price: f64,
    constraints: &PriceConstraints,
    objective: PriceObjective,
) -> Result<PriceDecision> {
    finite("elasticity", demand.elasticity)?;
    non_negative("base demand", demand.base_demand)?;
    positive("reference price", demand.ref_price)?;
    positive("current price", current_price)?;
    non_negative("unit cost", unit_cost)?;
    constraints.validate()?;

    let e = demand.elasticity;
    let r = constraints.max_change;
    let (lo, lo_by) = constraints.low(current_price, unit_cost);
    let highs = [
        (constraints.ceiling, BindingConstraint::Ceiling),
        (current_price * (1.0 + r), BindingConstraint::MaxIncrease),
        (
            constraints
                .market_ceiling
                .map_or(f64::INFINITY, |m| m.max(lo)),
            BindingConstraint::Market,
        ),
    ];
    let (hi, hi_by) =
        highs
            .iter()
            .copied()
            .fold((f64::INFINITY, BindingConstraint::Ceiling), |acc, x| {
                if x.0 < acc.0 {
                    x
                } else {
                    acc
                }
            });
    if lo > hi || !lo.is_finite() {
        return Err(EngageError::Infeasible { low: lo, high: hi });
    }

    // Unconstrained optimum: 0.0 means "as low as possible", INFINITY "as high as possible".
    let optimum = if demand.base_demand == 0.0 {
        current_price
    } else {
        match objective {
            PriceObjective::Revenue if e < -1.0 => 0.0,
            PriceObjective::Revenue if e > -1.0 => f64::INFINITY,
            PriceObjective::Revenue => current_price,
            PriceObjective::Margin if e < -1.0 => unit_cost * e / (1.0 + e),
            PriceObjective::Margin => f64::INFINITY,
        }
    };
    let log_value = |p: f64| -> f64 {
        let unit = match objective {
            PriceObjective::Revenue => p,
            PriceObjective::Margin => p - unit_cost,
        };
        if unit <= 0.0 || demand.base_demand == 0.0 {
            return if unit == 0.0 || demand.base_demand == 0.0 {
                f64::MIN
            } else {
                f64::NEG_INFINITY
            };
        }
        unit.ln() + demand.base_demand.ln() + e * (p / demand.ref_price).ln()
    };
    let clamp = |p: f64| p.max(lo).min(hi);
    let mut best = clamp(current_price);
    let mut best_v = log_value(best);
    for cand in [clamp(optimum), lo, hi] {
        let v = log_value(cand);
        // Require a real improvement so ties keep the current price.
        if v > best_v + 1e-12 {
            best = cand;
            best_v = v;
        }
    }
    debug_assert!(constraints.allows(best, current_price, unit_cost));

    let binding = if optimum < lo && best == lo {
        Some(lo_by)
    } else if optimum > hi && best == hi {
        Some(hi_by)
    } else {
        None
    };
    let value = |p: f64| {
        let unit = match objective {
            PriceObjective::Revenue => p,
            PriceObjective::Margin => p - unit_cost,
        };
        saturate(unit * demand.demand(p))
    };
    let explanation = PriceExplanation {
        elasticity: e,
        shrinkage_weight: demand.shrinkage_weight,
        demand_at_old_price: demand.demand(current_price),
        demand_at_new_price: demand.demand(best),
        objective_at_old_price: value(current_price),
        objective_at_new_price: value(best),
        unconstrained_optimum: (optimum > 0.0 && optimum.is_finite()).then_some(optimum),
        binding,
        summary: format!(
            "elasticity {e:.3} (shrinkage {:.2}); {objective:?} {} from {current_price:.4} to {best:.4}{}",
            demand.shrinkage_weight,
            if best > current_price {
                "raises price"
            } else if best < current_price {
                "cuts price"
            } else {
                "keeps price"
            },
            binding.map(|b| format!(", limited by {b:?}")).unwrap_or_default()
        ),
    };
    Ok(PriceDecision {
        price: best,
        previous_price: current_price,
        objective,
        explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn curve(e: f64) -> DemandCurve {
        DemandCurve {
            elasticity: e,
            base_demand: 100.0,
            ref_price: 10.0,
            shrinkage_weight: 0.3,
        }
    }

    const WIDE: PriceConstraints = PriceConstraints {
        floor: 1.0,
        ceiling: 100.0,
        max_change: 10.0,
        min_margin: 0.0,
        market_ceiling: None,
    };

    #[test]
    fn margin_optimum_is_the_lerner_price() {
        let d = optimize_price(&curve(-2.0), 4.0, 10.0, &WIDE, PriceObjective::Margin).unwrap();
        assert!((d.price - 8.0).abs() < 1e-9, "{}", d.price);
        assert_eq!(d.explanation.binding, None);
        assert!(d.explanation.demand_at_new_price > d.explanation.demand_at_old_price);
    }

    #[test]
    fn revenue_moves_to_the_bound_the_elasticity_points_to() {
        let c = PriceConstraints {
            max_change: 0.1,
            ..WIDE
        };
        let elastic = optimize_price(&curve(-2.0), 0.0, 10.0, &c, PriceObjective::Revenue).unwrap();
        assert!((elastic.price - 9.0).abs() < 1e-12);
        assert_eq!(
            elastic.explanation.binding,
            Some(BindingConstraint::MaxDecrease)
        );
        let inelastic =
            optimize_price(&curve(-0.5), 0.0, 10.0, &c, PriceObjective::Revenue).unwrap();
        assert!((inelastic.price - 11.0).abs() < 1e-12);
        let m = PriceConstraints {
            min_margin: 0.5,
            ..c
        };
        let margin = optimize_price(&curve(-3.0), 5.0, 10.5, &m, PriceObjective::Revenue).unwrap();
        assert_eq!(
            margin.explanation.binding,
            Some(BindingConstraint::MinMargin)
        );
        assert!(m.allows(margin.price, 10.5, 5.0));
    }

    #[test]
    fn the_market_caps_a_rise_but_never_breaks_a_floor() {
        let c = PriceConstraints {
            max_change: 0.2,
            market_ceiling: Some(10.5),
            ..WIDE
        };
        // Inelastic demand wants +20%; competitors at 10.5 stop it there.
        let d = optimize_price(&curve(-0.5), 0.0, 10.0, &c, PriceObjective::Revenue).unwrap();
        assert!((d.price - 10.5).abs() < 1e-12, "{}", d.price);
        assert_eq!(d.explanation.binding, Some(BindingConstraint::Market));
        // A market below the floor: the floor wins and the price is allowed.
        let low = PriceConstraints {
            floor: 9.5,
            market_ceiling: Some(5.0),
            ..c
        };
        let d = optimize_price(&curve(-0.5), 0.0, 10.0, &low, PriceObjective::Revenue).unwrap();
        assert!((d.price - 9.5).abs() < 1e-12, "{}", d.price);
        assert!(low.allows(d.price, 10.0, 0.0));
        assert!(!low.allows(9.6, 10.0, 0.0));
        // A bad market price is named.
        let bad = PriceConstraints {
            market_ceiling: Some(f64::NAN),
            ..c
        };
        let err =
            optimize_price(&curve(-0.5), 0.0, 10.0, &bad, PriceObjective::Revenue).unwrap_err();
        assert!(err.to_string().contains("market ceiling"), "{err}");
    }

    #[test]
    fn bad_inputs_name_the_problem() {
        let err =
            optimize_price(&curve(-2.0), 1.0, -3.0, &WIDE, PriceObjective::Revenue).unwrap_err();
        assert!(err.to_string().contains("current price"), "{err}");
        let err =
            optimize_price(&curve(f64::NAN), 1.0, 3.0, &WIDE, PriceObjective::Revenue).unwrap_err();
        assert!(err.to_string().contains("elasticity"), "{err}");
        let tight = PriceConstraints {
            floor: 1.0,
            ceiling: 2.0,
            max_change: 0.1,
            min_margin: 0.0,
            market_ceiling: None,
        };
        assert!(matches!(
            optimize_price(&curve(-2.0), 1.0, 50.0, &tight, PriceObjective::Revenue),
            Err(EngageError::Infeasible { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn constraints_never_violated(
            e in -6.0f64..2.0,
            base in 0.0f64..1e6,
            log_cur in (1e-6f64).ln()..(1e9f64).ln(),
            log_ref in (1e-6f64).ln()..(1e9f64).ln(),
            cost_share in 0.0f64..1.5,
            floor_share in 0.0f64..1.2,
            ceil_share in 0.8f64..50.0,
            max_change in 0.0f64..2.0,
            min_margin in 0.0f64..0.95,
            margin_obj in any::<bool>(),
            market_share in proptest::option::of(0.1f64..3.0),
        ) {
            let cur = log_cur.exp();
            let floor = (cur * floor_share).max(1e-9);
            let market_ceiling = market_share.map(|m| cur * m);
            let c = PriceConstraints { floor, ceiling: floor.max(cur * ceil_share), max_change, min_margin, market_ceiling };
            let cost = cur * cost_share;
            let d = DemandCurve { elasticity: e, base_demand: base, ref_price: log_ref.exp(), shrinkage_weight: 0.5 };
            let obj = if margin_obj { PriceObjective::Margin } else { PriceObjective::Revenue };
            match optimize_price(&d, cost, cur, &c, obj) {
                Ok(dec) => {
                    prop_assert!(c.allows(dec.price, cur, cost), "{:?} {:?}", c, dec);
                    prop_assert!(dec.price >= c.floor && dec.price <= c.ceiling);
                    prop_assert!(dec.price * (1.0 - min_margin) >= cost);
                    let x = &dec.explanation;
                    for v in [x.demand_at_old_price, x.demand_at_new_price, x.objective_at_old_price, x.objective_at_new_price] {
                        prop_assert!(v.is_finite());
                    }
                }
                Err(EngageError::Infeasible { low, high }) => prop_assert!(low > high || !low.is_finite()),
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }
}
