//! # mesh-text
//!
//! The text core of Lifecycle Mesh's `support` and `catalog` services: tokenizing mixed
//! Chinese/English text, sparse linear classifiers, sentiment, feedback categories, catalog
//! search, product categories and the customer-service assistant. Chinese first, English
//! second: every feature takes both.
//!
//! This crate owns text in, decisions out. It must not do I/O beyond reading the shipped
//! data files it is pointed at, must not talk to the network, and must not know about gRPC,
//! Kafka or the `mesh` CLI; services wrap it.
//!
//! # Layout
//! - [`tokenize`] — mixed-script tokens, negation marks, hashed TF-IDF features.
//! - [`classify`] — seeded softmax regression on sparse vectors (serde-serializable).
//! - [`pipeline`] — text → features → classifier, with cross-validated hyper-parameters.
//! - [`sentiment`] — lexicon + n-gram sentiment, the two evals, [`sentiment::SentimentModel`].
//! - [`feedback`] — feedback categories trained on generated text.
//! - [`search`] — own BM25 catalog index with fuzzy Latin terms, filters and rerank hook.
//! - [`product`] — product category tree classifier over a generated catalog.
//! - [`catalog`] — the seeded bilingual generated catalog used by search and product.
//! - [`assistant`] — intents, knowledge base and slot-filling dialogue behind a [`assistant::Backend`].
//! - [`data`] — locating the shared data directory and reading the review files.
#![forbid(unsafe_code)]

pub mod assistant;
pub mod catalog;
pub mod classify;
pub mod cli;
pub mod data;
pub mod feedback;
mod gen;
pub mod metrics;
pub mod pipeline;
pub mod product;
pub mod search;
pub mod sentiment;
pub mod tokenize;

mod error;
pub use error::Error;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
