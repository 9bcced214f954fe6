//! Unconstrained minimisation for the maximum-likelihood fits: argmin's Nelder–Mead
//! (restarted from its own optimum, which un-sticks collapsed simplices) followed by a
//! BFGS polish with central finite-difference gradients. The polish is kept only when it
//! improves the objective, so a failed line search can never make a fit worse.

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::neldermead::NelderMead;
use argmin::solver::quasinewton::BFGS;

use crate::error::{Error, Result};

/// Outcome of a minimisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    /// Arg-min.
    pub x: Vec<f64>,
    /// Objective value at `x`.
    pub value: f64,
    /// Objective evaluations used by all stages (approximate for BFGS).
    pub iterations: u64,
}

struct Problem<'a> {
    f: &'a dyn Fn(&[f64]) -> f64,
}

impl Problem<'_> {
    fn eval(&self, x: &[f64]) -> f64 {
        let v = (self.f)(x);
        if v.is_finite() {
            v
        } else {
            // Nelder–Mead treats this as "very bad" and moves away.
            f64::MAX / 4.0
        }
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.eval(p))
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        let mut g = vec![0.0; p.len()];
        let mut x = p.clone();
        for i in 0..p.len() {
            let h = 1e-5 * p[i].abs().max(1.0);
            x[i] = p[i] + h;
            let up = self.eval(&x);
            x[i] = p[i] - h;
            let down = self.eval(&x);
            x[i] = p[i];
            g[i] = (up - down) / (2.0 * h);
        }
        Ok(g)
    }
}

fn nelder_mead(problem: Problem<'_>, x0: &[f64], step: f64) -> Result<Minimum> {
    let mut simplex = vec![x0.to_vec()];
    for i in 0..x0.len() {
        let mut v = x0.to_vec();
        v[i] += step;
        simplex.push(v);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-12)
        .map_err(|e| Error::Fit(e.to_string()))?;
    let res = Executor::new(problem, solver)
        .configure(|s| s.max_iters(20_000))
        .run()
        .map_err(|e| Error::Fit(format!("Nelder-Mead: {e}")))?;
    let state = res.state();
    let x = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| Error::Fit("Nelder-Mead returned no parameters".into()))?;
    Ok(Minimum {
        x,
        value: state.get_best_cost(),
        iterations: state.get_iter(),
    })
}

fn bfgs_polish(f: &dyn Fn(&[f64]) -> f64, x0: &[f64]) -> Option<Minimum> {
    let n = x0.len();
    let identity: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    let solver = BFGS::new(MoreThuenteLineSearch::new())
        .with_tolerance_grad(1e-9)
        .ok()?
        .with_tolerance_cost(1e-14)
        .ok()?;
    let res = Executor::new(Problem { f }, solver)
        .configure(|s| s.param(x0.to_vec()).inv_hessian(identity).max_iters(200))
        .run()
        .ok()?;
    let state = res.state();
    Some(Minimum {
        x: state.get_best_param()?.clone(),
        value: state.get_best_cost(),
        iterations: state.get_iter(),
    })
}

/// Minimises `f` from `x0`: Nelder–Mead, a restart of Nelder–Mead at its optimum, then
/// a BFGS polish kept only if it lowers `f`. Errors if no finite optimum is found.
pub fn minimize(f: &dyn Fn(&[f64]) -> f64, x0: &[f64]) -> Result<Minimum> {
    if !f(x0).is_finite() {
        return Err(Error::Fit(format!(
            "objective is not finite at the starting point {x0:?}"
        )));
    }
    let first = nelder_mead(Problem { f }, x0, 0.5)?;
    let second = nelder_mead(Problem { f }, &first.x, 0.1)?;
    let mut best = if second.value <= first.value {
        second.clone()
    } else {
        first.clone()
    };
    best.iterations = first.iterations + second.iterations;
    if let Some(p) = bfgs_polish(f, &best.x) {
        let v = f(&p.x);
        if v.is_finite() && v < best.value {
            best = Minimum {
                x: p.x,
                value: v,
                iterations: best.iterations + p.iterations,
            };
        }
    }
    if !best.value.is_finite() || best.value >= f64::MAX / 8.0 {
        return Err(Error::Fit("no finite optimum found".into()));
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rosenbrock_minimum() {
        let f = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let m = minimize(&f, &[-1.2, 1.0]).unwrap();
        assert!((m.x[0] - 1.0).abs() < 1e-5, "{m:?}");
        assert!((m.x[1] - 1.0).abs() < 1e-5, "{m:?}");
    }

    #[test]
    fn rejects_non_finite_start() {
        let f = |x: &[f64]| x[0].ln();
        assert!(minimize(&f, &[-1.0]).is_err());
    }
}
