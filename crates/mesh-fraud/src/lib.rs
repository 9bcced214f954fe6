//! # mesh-fraud — the fraud and risk model core
//!
//! Owns the fraud logic of the mesh: live order features over time-bucketed counters, the
//! state increments every event causes, TOML rules with hot reload, supervised models
//! (smartcore logistic regression and random forest, own gradient-boosted trees for tables), an isolation-forest anomaly score for
//! cold start, the decision policy, risk detectors (account takeover, promotion abuse, card
//! testing), a labelled simulator and the evaluations behind `mesh eval fraud`.
//!
//! It must not do I/O against infrastructure: no Kafka, Redis or gRPC here. State lives
//! outside; reads go through [`state::FeatureSource`] (one batch per order, see
//! [`features::reads_for`] / [`features::features_from`]) and writes are returned as plain
//! [`state::StateOp`]s (from [`updates::updates`]) that the service applies exactly once.
//!
//! # Layout
//! - [`event`] — input types: [`event::Order`], [`event::PaymentEvent`], [`event::AccountEvent`].
//! - [`state`] — keys, windows, [`state::StateOp`], read shapes, [`state::MemoryFeatures`].
//! - [`updates`] — the ops an event causes.
//! - [`features`] — [`features::FeatureVector`] and its named, fixed order.
//! - [`rules`] — TOML rules, [`rules::RulesHandle`] for reload without restart.
//! - [`model`] — [`model::FraudModel`]: train, score, serialize.
//! - [`iforest`] — isolation forest anomaly score.
//! - [`policy`] — rules + model + anomaly → [`policy::Decision`].
//! - [`risk`] — [`risk::RiskAlert`] detectors.
//! - [`sim`] — labelled simulator.
//! - [`metrics`] — ROC-AUC, PR-AUC, precision at 1%, recall at 1% FPR.
//! - [`tabular`] — generic CSV trainer (GBDT, forest, logistic, anomaly) and a wide
//!   synthetic table generator.
//! - [`gbdt`] — histogram gradient-boosted trees with missing values and categoricals.
//! - [`eval`] — the simulated end-to-end evaluation.
//! - [`plot`] — precision–recall chart for `mesh eval fraud --plot DIR`.
//! - [`cli`] — clap arguments and printable reports for the `mesh` binary.
//! - [`error`] — the crate's error type.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod error;
pub mod eval;
pub mod event;
pub mod features;
pub mod gbdt;
pub mod iforest;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod policy;
pub mod risk;
pub mod rules;
pub mod sim;
pub mod state;
pub mod tabular;
pub mod updates;

pub use error::{Error, Result};

/// Default largest share of orders sent to manual review (2%): what a review
/// team of usual size handles; the service's `MESH_FRAUD_REVIEW_BUDGET` and
/// `mesh eval fraud --review-budget` default to it.
pub const DEFAULT_REVIEW_BUDGET: f64 = 0.02;
pub use event::{AccountEvent, AccountEventKind, Event, LineItem, Location, Order, PaymentEvent};
pub use features::{features, features_from, reads_for, FeatureVector, FEATURE_NAMES};
pub use model::{train, FraudModel, ModelKind, TrainParams};
pub use policy::{Decision, Policy, PolicyConfig, PolicyModels, ReviewBudget};
pub use risk::{RiskAlert, RiskKind};
pub use rules::{Action, RuleSet, RulesHandle};
pub use sim::{simulate, SimEvent, SimParams};
pub use state::{FeatureSource, MemoryFeatures, ReadReply, ReadRequest, ReadResults, StateOp};
pub use updates::updates;
