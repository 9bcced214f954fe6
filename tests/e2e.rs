//! The whole-mesh tests, one module per concern, in one test binary: each
//! file used to be a binary of its own, and every one linked the whole mesh
//! (~20 links of ~100 MB in a CI build). `mesh_e2e::shared` /
//! `mesh_e2e::exclusive` keep the heavy tests apart. `auth`, `overload`,
//! `tls`, `ops_traces` and `ops_console` stay binaries of their own: each
//! installs process-wide state (the auth guard, TLS, the global tracer) or
//! reads it (the console's totals come from the process's metrics).
//!
//! One file: `cargo test -p mesh-e2e --test e2e chaos::`.
mod backbone;
mod bad_input;
mod bad_input_rpc;
mod chaos;
mod churn;
mod engage;
mod engage_sim;
mod erasure;
mod fuzz_rpc;
mod ops_deploy;
mod ops_logs;
mod ops_metrics;
mod profile;
mod recommend;
mod store_cluster;
mod support;
