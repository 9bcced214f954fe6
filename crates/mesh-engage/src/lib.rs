//! `mesh-engage`: the statistics and decision core of the `engage` service — pricing,
//! personalized offers, campaign evaluation and ad targeting.
//!
//! The crate owns the maths only: estimators, decision rules, their serializable state and
//! simulations that check them against known truth. It must not do I/O, read the clock or
//! hold global randomness: time and random number generators are passed in, so the service
//! decides where state lives and tests are reproducible.
//!
//! # Layout
//! - [`pricing`]: Poisson log-log elasticity per item, empirical-Bayes shrinkage to the
//!   category, and [`pricing::optimize_price`] under hard constraints.
//! - [`bandit`]: contextual bandit (linear Thompson sampling or LinUCB) over offers, and a
//!   [`bandit::FrequencyCap`].
//! - [`campaign`]: hash assignment to treatment / control, streaming counters, Welch lift
//!   intervals, CUPED and an always-valid mSPRT.
//! - [`ads`]: lookalike audiences, a hashed-feature CTR model (smartcore), and a Thompson
//!   budget splitter on ROAS.
//! - [`simulate`]: seeded ground-truth worlds for all of the above.
//! - [`eval`]: [`eval::run`] measures every component against those worlds;
//!   [`cli`] is `mesh eval engage`.
//! - [`stats`] and [`error`]: shared numerics (normal quantiles, Cholesky, stable hashing,
//!   AUC) and the crate's one error enum.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ads;
pub mod bandit;
pub mod campaign;
pub mod cli;
pub mod error;
pub mod eval;
pub mod pricing;
pub mod simulate;
pub mod stats;

pub use error::{EngageError, Result};
