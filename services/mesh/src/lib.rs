//! The operator binary's library: everything `mesh` does, callable from
//! tests and benchmarks.
//!
//! # Layout
//! - [`node`]: the whole mesh in one process (`mesh up`).
//! - [`serve`]: one service in its own process (`mesh serve <role>`);
//!   [`processes`]: all of them as child processes (`mesh up --processes`).
//! - [`replay`]: rebuild state from offset 0 (`mesh replay`).
//! - [`bench`]: the ingest load benchmark (`mesh bench ingest`);
//!   [`bench_all`]: every benchmark in one run (`mesh bench all`), with
//!   [`bench_reads`] (reads under write load) and [`bench_servers`]
//!   (tansu and redis-server when none are configured).
//! - [`sim`]: a small seeded event generator used by the bench and tests;
//!   [`sim_priced`]: demand at shown prices with known elasticities
//!   (`mesh simulate priced`); [`sim_campaign`]: a campaign whose offers
//!   have known response rates and a known true lift (`mesh simulate
//!   campaign`).
//! - `cmd_*`: `mesh train`, `mesh report` and per-service benchmarks, one
//!   module per service; [`cmd_progress`]: their progress bars; [`status`]:
//!   `mesh status`.
//! - [`console`]: the web console on the admin address; [`lag`]: the
//!   consumer-lag sampler behind `mesh_consumer_lag`.
#![forbid(unsafe_code)]

pub mod bench;
pub mod bench_all;
pub mod bench_procs;
pub mod bench_reads;
pub mod bench_scale;
pub mod bench_servers;
pub mod chaos;
pub mod cmd_churn;
pub mod cmd_fraud;
pub mod cmd_profile;
pub mod cmd_progress;
pub mod cmd_recommend;
pub mod console;
pub mod console_stages;
pub mod forget;
pub mod lag;
pub mod node;
pub mod processes;
pub mod replay;
pub mod serve;
pub mod sim;
pub mod sim_campaign;
pub mod sim_priced;
pub mod sim_retention;
pub mod status;
