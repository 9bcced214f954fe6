//! Dump, per series, the test forecasts of every combination member and their
//! rolling-origin validation errors inside the history, so weighting schemes can be
//! compared offline without refitting.
//! `cargo run --release -p mesh-forecast --example component_dump -- DATA.json OUT.json [ORIGINS]`
use mesh_forecast::combine::{naive_scale, origins, CvConfig};
use mesh_forecast::data::load_m3;
use mesh_forecast::forecast;
use mesh_forecast::method::COMB_PARTS;
use mesh_forecast::metrics::smape;
use rayon::prelude::*;
use serde_json::json;

fn main() -> Result<(), mesh_forecast::Error> {
    let args: Vec<String> = std::env::args().collect();
    let series = load_m3(std::path::Path::new(&args[1]))?;
    let cfg = CvConfig {
        origins: args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3),
        ..CvConfig::default()
    };
    let start = std::time::Instant::now();
    let rows: Vec<serde_json::Value> = series
        .par_iter()
        .map(|s| {
            let m = s.period.seasonal_period();
            let test: Vec<Vec<f64>> = COMB_PARTS
                .iter()
                .map(|k| forecast(*k, &s.x, m, s.h).map(|f| f.mean).unwrap_or_default())
                .collect();
            let cv: Vec<serde_json::Value> = origins(s.x.len(), s.h, &cfg)
                .into_iter()
                .map(|(o, hv)| {
                    let (train, val) = (&s.x[..o], &s.x[o..o + hv]);
                    let scale = naive_scale(train, m);
                    let errs: Vec<(f64, f64)> = COMB_PARTS
                        .iter()
                        .map(|k| match forecast(*k, train, m, hv) {
                            Ok(f) => {
                                let mae = val
                                    .iter()
                                    .zip(&f.mean)
                                    .map(|(a, b)| (a - b).abs())
                                    .sum::<f64>()
                                    / hv as f64;
                                (mae / scale.max(1e-12), smape(val, &f.mean).unwrap_or(200.0))
                            }
                            Err(_) => (f64::NAN, f64::NAN),
                        })
                        .collect();
                    json!({"o": o, "hv": hv, "err": errs})
                })
                .collect();
            json!({"name": s.name, "period": s.period, "m": m, "x": s.x, "xx": s.xx, "test": test, "cv": cv})
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
