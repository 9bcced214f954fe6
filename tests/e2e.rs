//! The whole-mesh tests, one module per concern, in one test binary: each
//! file used to be a binary of its own, and every one linked the whole mesh
//! (~20 links of ~100 MB in a CI build). `mesh_e2e::shared` /
//! `mesh_e2e::exclusive` keep the heavy tests apart. `ops_traces` stays a
//! binary of its own: it installs the process's global tracer.
//!
//! One file: `cargo test -p mesh-e2e --test e2e chaos::`.
mod auth;
mod backbone;
mod bad_input;
mod bad_input_rpc;
mod chaos;
mod churn;
mod engage;
mod engage_sim;
mod erasure;
mod fuzz_rpc;
mod ops_console;
mod ops_deploy;
mod ops_logs;
mod ops_metrics;
mod overload;
mod profile;
mod recommend;
mod store_cluster;
mod support;
mod tls;
