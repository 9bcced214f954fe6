//! Derivative-free minimisation (Nelder–Mead via `argmin`) used by every model fit.
//!
//! Objectives signal infeasible parameters with [`PENALTY`] rather than infinity so the
//! simplex statistics stay finite.

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::neldermead::NelderMead;

/// Cost returned for parameter vectors outside the feasible region.
pub const PENALTY: f64 = 1e12;

struct Objective<F>(F);

impl<F: Fn(&[f64]) -> f64> CostFunction for Objective<F> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Self::Param) -> Result<f64, argmin::core::Error> {
        let v = (self.0)(p);
        Ok(if v.is_finite() {
            v.min(PENALTY)
        } else {
            PENALTY
        })
    }
}

/// Minimise `f` from `x0`, starting simplex `x0 + steps[i] * e_i`.
///
/// Returns the best point and its cost. `max_iters` bounds the Nelder–Mead iterations.
pub fn minimize<F>(f: F, x0: &[f64], steps: &[f64], max_iters: u64) -> (Vec<f64>, f64)
where
    F: Fn(&[f64]) -> f64,
{
    let mut simplex = Vec::with_capacity(x0.len() + 1);
    simplex.push(x0.to_vec());
    for (i, s) in steps.iter().enumerate() {
        let mut p = x0.to_vec();
        p[i] += s;
        simplex.push(p);
    }
    let fallback = || {
        let c = f(x0);
        (x0.to_vec(), if c.is_finite() { c } else { PENALTY })
    };
    let solver = match NelderMead::new(simplex).with_sd_tolerance(1e-9) {
        Ok(s) => s,
        Err(_) => return fallback(),
    };
    let result = Executor::new(Objective(&f), solver)
        .configure(|state| state.max_iters(max_iters))
        .run();
    match result {
        Ok(res) => {
            let state = res.state();
            match state.get_best_param() {
                Some(p) => (p.clone(), state.get_best_cost()),
                None => fallback(),
            }
        }
        Err(_) => fallback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_minimum_of_shifted_quadratic() {
        let f = |x: &[f64]| (x[0] - 1.5).powi(2) + 3.0 * (x[1] + 0.5).powi(2);
        let (x, c) = minimize(f, &[0.0, 0.0], &[0.5, 0.5], 500);
        assert!((x[0] - 1.5).abs() < 1e-3, "{x:?}");
        assert!((x[1] + 0.5).abs() < 1e-3, "{x:?}");
        assert!(c < 1e-6);
    }
}
