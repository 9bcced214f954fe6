//! Incremental forecasting: a [`Forecaster`] owns one series, absorbs new observations
//! cheaply through the fitted model's state update and re-estimates parameters every
//! `refit_every` observations or on demand.

use crate::error::{invalid, Result};
use crate::forecast::Forecast;
use crate::method::{fit, FittedModel, Method};

/// One series and its current fitted model.
#[derive(Clone, Debug)]
pub struct Forecaster {
    method: Method,
    period: usize,
    refit_every: usize,
    history: Vec<f64>,
    model: Option<FittedModel>,
    since_fit: usize,
}

impl Forecaster {
    /// A forecaster for `method` with seasonal period `period` that re-estimates its
    /// parameters after every `refit_every` new observations (>= 1).
    pub fn new(method: Method, period: usize, refit_every: usize) -> Result<Self> {
        if refit_every == 0 {
            return Err(invalid("refit_every", "must be at least 1"));
        }
        if period == 0 {
            return Err(invalid("period", "must be at least 1 (1 = no season)"));
        }
        Ok(Forecaster {
            method,
            period,
            refit_every,
            history: Vec::new(),
            model: None,
            since_fit: 0,
        })
    }

    /// The observations seen so far.
    pub fn history(&self) -> &[f64] {
        &self.history
    }

    /// The current model, if one has been fitted.
    pub fn model(&self) -> Option<&FittedModel> {
        self.model.as_ref()
    }

    /// Append an observation. With a fitted model, its state absorbs `y`; every
    /// `refit_every` observations the parameters are re-estimated.
    pub fn push(&mut self, y: f64) -> Result<()> {
        if !y.is_finite() {
            return Err(invalid("y", format!("{y} is not a finite observation")));
        }
        self.history.push(y);
        self.since_fit += 1;
        if self.model.is_some() && self.since_fit >= self.refit_every {
            self.refit()?;
        } else if let Some(m) = self.model.as_mut() {
            m.observe(y);
        }
        Ok(())
    }

    /// Append many observations.
    pub fn extend(&mut self, ys: impl IntoIterator<Item = f64>) -> Result<()> {
        ys.into_iter().try_for_each(|y| self.push(y))
    }

    /// Re-estimate the model on the whole history now.
    pub fn refit(&mut self) -> Result<()> {
        self.model = Some(fit(self.method, &self.history, self.period)?);
        self.since_fit = 0;
        Ok(())
    }

    /// Forecast `h` steps, fitting first if no model exists yet.
    pub fn forecast(&mut self, h: usize) -> Result<Forecast> {
        if self.model.is_none() {
            self.refit()?;
        }
        match &self.model {
            Some(m) => Ok(m.forecast(h)),
            None => Err(crate::error::Error::EmptySeries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_updates_state_and_refits_on_schedule() {
        let mut f = Forecaster::new(Method::Naive, 1, 3).unwrap();
        assert!(f.forecast(1).is_err());
        f.extend([1.0, 2.0, 3.0]).unwrap();
        assert_eq!(f.forecast(1).unwrap().mean, vec![3.0]);
        f.push(7.0).unwrap();
        // Absorbed without a refit: the naive state already moved.
        assert_eq!(f.forecast(1).unwrap().mean, vec![7.0]);
        assert!(f.push(f64::NAN).is_err());
        assert_eq!(f.history().len(), 4);
    }
}
