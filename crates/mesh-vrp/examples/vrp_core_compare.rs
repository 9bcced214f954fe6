//! Measures the `vrp-core` engine (reinterpretcat/vrp, the engine of vrp-cli) on TSPLIB
//! CVRP instances with a wall-clock budget, so its cost/gap/time can be compared with ours.
//!
//! `cargo run --release -p mesh-vrp --features compare-vrp-core --example vrp_core_compare -- 5 FILES...`
//!
//! Note: vrp-scientific's TSPLIB reader builds an unlimited fleet (one vehicle per node), so
//! this measures vrp-core with the fleet limit lifted (its cost can only be lower or equal).
use std::io::BufReader;
use std::sync::Arc;
use std::time::Instant;
use vrp_core::prelude::*;
use vrp_scientific::tsplib::TsplibProblem;

fn main() -> Result<(), GenericError> {
    let mut args = std::env::args().skip(1);
    let secs: usize = args
        .next()
        .expect("usage: SECONDS FILES...")
        .parse()
        .expect("seconds");
    let mut gaps = Vec::new();
    for path in args {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let bks: f64 = text
            .split("Optimal value:")
            .nth(1)
            .and_then(|s| {
                s.trim()
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .split(')')
                    .next()
                    .map(|s| s.trim().to_string())
            })
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        let problem = Arc::new(BufReader::new(text.as_bytes()).read_tsplib(true)?);
        let start = Instant::now();
        let config = VrpConfigBuilder::new(problem.clone())
            .prebuild()?
            .with_max_time(Some(secs))
            .build()?;
        let solution = Solver::new(problem, config).solve()?;
        let secs_used = start.elapsed().as_secs_f64();
        let gap = 100.0 * (solution.cost - bks) / bks;
        gaps.push(gap);
        println!(
            "{} cost {} routes {} unassigned {} bks {} gap {:.2}% time {:.2}s",
            path.rsplit('/').next().unwrap_or(&path),
            solution.cost,
            solution.routes.len(),
            solution.unassigned.len(),
            bks,
            gap,
            secs_used
        );
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
    println!("mean_gap {mean:.3}%");
    Ok(())
}
