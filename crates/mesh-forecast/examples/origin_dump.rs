//! Dump, per series, every combination member's forecasts from every origin that either the
//! test forecast or the `--holdout` forecast (last `h` of the history held back) would use,
//! including the rolling-origin validation windows inside each. Combination rules (member
//! set, shrinkage, number of origins) can then be scored offline on the holdout first, and
//! on the test split only once a rule has been chosen.
//! Holdouts: the last `h` of the history, and the `h` before those (`cuts` in the dump).
//! `cargo run --release -p mesh-forecast --example origin_dump -- DATA.json OUT.json`
use std::collections::BTreeSet;

use mesh_forecast::combine::{origins, CvConfig};
use mesh_forecast::data::load_m3;
use mesh_forecast::method::{fit_for_horizon, CANDIDATES};
use rayon::prelude::*;
use serde_json::json;

/// Most validation origins an offline rule may use.
const MAX_ORIGINS: usize = 3;

/// Holdout cuts per series: the history minus its last `k h` values, `k = 1..=HOLDOUTS`,
/// each scored on the `h` values after the cut (all inside the history).
const HOLDOUTS: usize = 2;

/// Holdout cuts of one series whose shortened history can still scale MASE (as
/// [`mesh_forecast::data::Series::holdout`] requires for `k = 1`).
fn holdout_cuts(x: &[f64], h: usize, m: usize) -> Vec<usize> {
    (1..=HOLDOUTS)
        .filter_map(|k| x.len().checked_sub(k * h).filter(|c| *c > m))
        .filter(|&cut| (m..cut).any(|t| x[t] != x[t - m]))
        .collect()
}

fn main() -> Result<(), mesh_forecast::Error> {
    let args: Vec<String> = std::env::args().collect();
    let series = load_m3(std::path::Path::new(&args[1]))?;
    let cfg = CvConfig {
        origins: MAX_ORIGINS,
        ..CvConfig::default()
    };
    let start = std::time::Instant::now();
    let rows: Vec<serde_json::Value> = series
        .par_iter()
        .map(|s| {
            let m = s.period.seasonal_period();
            let n = s.x.len();
            let mut set: BTreeSet<usize> = BTreeSet::new();
            set.insert(n);
            set.extend(origins(n, s.h, &cfg).into_iter().map(|(o, _)| o));
            let cuts = holdout_cuts(&s.x, s.h, m);
            for &cut in &cuts {
                set.insert(cut);
                set.extend(origins(cut, s.h, &cfg).into_iter().map(|(o, _)| o));
            }
            let fc: Vec<serde_json::Value> = set
                .into_iter()
                .map(|o| {
                    let f: Vec<Option<Vec<f64>>> = CANDIDATES
                        .iter()
                        .map(|k| {
                            fit_for_horizon(*k, &s.x[..o], m, s.h)
                                .ok()
                                .map(|f| f.forecast(s.h).mean)
                        })
                        .collect();
                    json!({"o": o, "f": f})
                })
                .collect();
            json!({"name": s.name, "period": s.period, "m": m, "h": s.h, "x": s.x, "xx": s.xx,
                   "holdout": s.holdout().is_some(), "cuts": cuts, "fc": fc})
        })
        .collect();
    eprintln!(
        "{} series in {:.1}s",
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    std::fs::write(&args[2], serde_json::to_string(&rows).expect("json")).expect("write");
    Ok(())
}
