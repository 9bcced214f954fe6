//! The operator binary's library: everything `mesh` does, callable from
//! tests and benchmarks.
//!
//! # Layout
//! - [`node`]: the whole mesh in one process (`mesh up`).
//! - [`replay`]: rebuild state from offset 0 (`mesh replay`).
//! - [`bench`]: the ingest load benchmark (`mesh bench ingest`).
//! - [`sim`]: a small seeded event generator used by the bench and tests.
#![forbid(unsafe_code)]

pub mod bench;
pub mod node;
pub mod replay;
pub mod sim;
