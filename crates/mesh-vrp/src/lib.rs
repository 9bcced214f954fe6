//! `mesh-vrp`: the route optimizer of the Lifecycle Mesh.
//!
//! It owns capacitated vehicle routing with time windows: reading instances (TSPLIB /
//! CVRPLIB `.vrp`, the DIMACS VRPTW variant, Solomon text), solving them with a hybrid
//! genetic search (giant-tour split, OX crossover, granular local search, penalised
//! capacity and time warp, diversity management) under a wall-clock or iteration budget,
//! re-planning an existing plan when stops are added, cancelled or held, checking every
//! solution with an independent feasibility checker, and writing CVRPLIB `.sol` files.
//!
//! It must not do I/O beyond reading instance / solution files it is pointed at, talk to
//! Kafka, Redis or gRPC (the logistics service wires it in), or keep global state: every
//! call is a pure function of its inputs, its seed and (only with a time budget) the clock.
//!
//! # Layout
//! - [`instance`]: the problem model and distance conventions.
//! - [`parse`]: `.vrp`, Solomon and `.sol` readers.
//! - [`generate`]: seeded CVRP instances in the style of Uchoa et al.'s X set, VRPLIB writer.
//! - [`solution`]: routes and the `.sol` writer.
//! - [`check`]: the independent feasibility checker.
//! - [`solver`]: `solve` — budgets, threads, route minimisation for vehicles-first objectives.
//! - [`replan`]: incremental re-planning with route stability.
//! - `construct`: regret-2 insertion (internal).
//! - `segment`, `ls`, `split`, `population`, `hgs`: time-window segments, the granular local
//!   search, giant-tour split, the population and the genetic loop (internal).
//! - `ils`: the iterated local search (ruin-and-recreate steps) that takes over from the
//!   genetic loop on capacity-only instances of 100+ customers (internal).
//! - [`plot`]: routes of solved instances as SVG for `mesh eval vrp --plot DIR`.
//! - [`cli`]: argument structs and reports for the `mesh` operator binary.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod cli;
mod construct;
pub mod error;
pub mod generate;
mod hgs;
mod ils;
pub mod instance;
mod ls;
pub mod parse;
pub mod plot;
mod population;
pub mod replan;
mod segment;
pub mod solution;
pub mod solver;
mod split;

pub use check::{check, Checked};
pub use error::{Error, Result};
pub use instance::{BestKnown, DistanceConvention, Instance, Objective, Stop};
pub use parse::load;
pub use replan::{replan, Changes, ReplanOptions, ReplanOutcome};
pub use solution::Solution;
pub use solver::{solve, Budget, SolveOptions, SolveResult};
