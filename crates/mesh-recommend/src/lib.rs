//! # mesh-recommend — the recommendation model core
//!
//! Owns the pure logic behind the recommend service: live signals (decayed item-to-item
//! co-occurrence, bounded user histories, popularity and trending per scope), learned
//! implicit-feedback models (popularity, item-kNN, BPR, implicit ALS, EASE^R) that are
//! deterministic for a seed and serializable for hot-swapping, candidate generation,
//! business-rule ranking with diversity, cold start, and offline evaluation on MovieLens.
//!
//! It must not do I/O beyond reading evaluation data files: no Kafka, Redis, gRPC, clocks or
//! threads of its own (time is always a parameter). The service stores the live increments
//! this crate computes (see [`live::decay`] for the forward-decay math) and calls the models.
//!
//! # Layout
//! - [`types`] — ids, [`EventKind`], [`Interaction`].
//! - [`live`] — [`live::Decay`], pure update functions ([`cooccurrence_updates`],
//!   [`popularity_updates`]) and the in-memory [`LiveIndex`].
//! - [`models`] — [`ModelSpec`] → [`Model`] (popularity, item-kNN, BPR, ALS, EASE^R, blend);
//!   [`ModelArtifact`] (ids, history, versioned JSON, `recommend`).
//! - [`rank`] — [`rank::rank`]: scoring features, business rules, diversity, reasons.
//! - [`feedback`] — impressions and clicks per source and slot, position-debiased CTR, the
//!   Thompson-sampling bandit that sets per-source weights, and its click simulator.
//! - [`cold`] — context-aware popularity for new users, attribute neighbours for new items.
//! - [`data`] — `.inter` loading and the RecBole / Microsoft Recommenders splits.
//! - [`metrics`], [`eval`] — top-K metrics, evaluation, tuning and early stopping.
//! - [`topn`] — heap top-n with exclusion.
//! - [`cli`] — `mesh eval recommend` arguments and report.
//! - [`error`] — the crate's [`Error`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod cold;
pub mod data;
pub mod error;
pub mod eval;
pub mod feedback;
pub mod live;
pub mod metrics;
pub mod models;
pub mod rank;
pub mod topn;
pub mod types;

pub use error::{Error, Result};
pub use live::{cooccurrence_updates, popularity_updates, LiveConfig, LiveIndex};
pub use models::{Model, ModelArtifact, ModelSpec};
pub use types::{EventKind, Interaction, ItemId, UserId};
