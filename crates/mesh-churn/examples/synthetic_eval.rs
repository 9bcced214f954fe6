//! Runs the whole `mesh eval churn` protocol — BG/NBD, Pareto/NBD, the learned count
//! models, the backtest selection and the customer split — on a synthetic CDNOW-sized
//! cohort ([`mesh_churn::sim::cdnow_like`]) that none of the candidate models was
//! shaped on. The comparisons with the published CDNOW figures in the report do not
//! apply to it; the count-model and customer-split sections do.
//!
//! `cargo run -p mesh-churn --release --example synthetic_eval -- [SEED]` (seed 16).

use chrono::NaiveDate;
use mesh_churn::eval;
use mesh_churn::sim::{cdnow_like, purchase_log, simulate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(16);
    let spec = cdnow_like(seed);
    let cohort = simulate(&spec)?;
    let start = NaiveDate::from_ymd_opt(1997, 1, 1).expect("valid date");
    let log = purchase_log(&spec, &cohort, start);
    let calibration_end = NaiveDate::from_ymd_opt(1997, 9, 30).expect("valid date");
    let holdout_end = NaiveDate::from_ymd_opt(1998, 6, 30).expect("valid date");
    let report = eval::evaluate_with_progress(&log, calibration_end, holdout_end, &|d, n| {
        eprintln!("progress {d}/{n}")
    })?;
    println!("synthetic cohort seed {seed} (sim::cdnow_like)\n{report}");
    Ok(())
}
