//! # mesh-churn — the churn model core of Lifecycle Mesh
//!
//! Owns the churn mathematics: probabilistic repeat-purchase models (BG/NBD,
//! Pareto/NBD, Gamma-Gamma spend and CLV), supervised and hybrid churn classifiers on
//! smartcore, the streaming per-customer scorer with once-per-crossing alerts,
//! retention holdout assignment and lift statistics, and the CDNOW evaluation behind
//! `mesh eval churn`.
//!
//! It must not do I/O beyond reading a purchase log file for evaluation: no Kafka, no
//! Redis, no network, no sleeping (time is injected through [`scoring::Clock`]). The
//! churn service wires these types to the bus and store.
//!
//! # Layout
//! - [`data`] — CDNOW purchase-log parsing, per-customer histories, (frequency, recency, T).
//! - [`special`] — log-gamma and the Gauss hypergeometric function 2F1.
//! - [`optimize`] — Nelder–Mead + BFGS polish (argmin) for the likelihood fits.
//! - [`bgnbd`] — BG/NBD likelihood, fit, P(alive), conditional and unconditional expectations.
//! - [`pareto`] — Pareto/NBD likelihood, fit, P(alive), expectations.
//! - [`gamma_gamma`] — Gamma-Gamma spend model and discounted CLV.
//! - [`behaviour`] — per-day logins, sessions, dwell, support messages, complaints; their features.
//! - [`features`] — named per-customer feature matrices (plain and BG/NBD hybrid).
//! - [`supervised`] — versioned, serialisable, Platt-calibrated churn classifier.
//! - [`training`] — time-split training of the classifier from histories (`mesh train churn`).
//! - [`learned`] — the honest time-split protocol for supervised/hybrid models on CDNOW.
//! - [`sim`] — seeded synthetic BG/NBD cohorts (CDNOW-sized, with heavy buyers).
//! - [`metrics`] — ROC-AUC and Pearson correlation.
//! - [`scoring`] — streaming state, risk score, alerts with hysteresis and reasons.
//! - [`retention`] — deterministic holdout assignment and lift with Wald/Newcombe CIs.
//! - [`plot`] — calibration and gains charts for `mesh eval churn --plot DIR`.
//! - [`eval`] — the Fader, Hardie & Lee (2005) reproduction and report.
//! - [`cli`] — clap argument structs and entry points for the `mesh` binary.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod behaviour;
pub mod bgnbd;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod features;
pub mod gamma_gamma;
pub mod learned;
pub mod metrics;
pub mod optimize;
pub mod pareto;
pub mod plot;
pub mod retention;
pub mod scoring;
pub mod sim;
pub mod special;
pub mod supervised;
pub mod training;

pub use error::{Error, Result};
