//! Refit one member at every origin of an `origin_dump` file and replace its forecasts, so
//! a change to that member can be scored offline (`comb_select`) without redumping the
//! others. `cargo run --release -p mesh-forecast --example member_redump -- ets IN.json OUT.json`
use mesh_forecast::method::{fit_for_horizon, CANDIDATES};
use rayon::prelude::*;
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [member, input, output] = args.as_slice() else {
        panic!("usage: member_redump MEMBER IN.json OUT.json");
    };
    let k = CANDIDATES
        .iter()
        .position(|c| c.name() == member)
        .unwrap_or_else(|| panic!("{member} is not one of the dumped candidates"));
    let text = std::fs::read_to_string(input).expect("read the dump");
    let mut rows: Vec<Value> = serde_json::from_str(&text).expect("dump is JSON");
    let start = std::time::Instant::now();
    rows.par_iter_mut().for_each(|row| {
        let x: Vec<f64> = serde_json::from_value(row["x"].clone()).expect("x");
        let m = row["m"].as_u64().expect("m") as usize;
        let h = row["h"].as_u64().expect("h") as usize;
        for origin in row["fc"].as_array_mut().expect("fc") {
            let o = origin["o"].as_u64().expect("o") as usize;
            let f = fit_for_horizon(CANDIDATES[k], &x[..o], m, h)
                .ok()
                .map(|f| f.forecast(h).mean);
            origin["f"][k] = serde_json::to_value(f).expect("forecast");
        }
    });
    eprintln!(
        "{} series in {:.1}s",
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    std::fs::write(output, serde_json::to_string(&rows).expect("json")).expect("write");
}
