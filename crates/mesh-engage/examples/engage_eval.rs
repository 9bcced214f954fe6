//! Prints the evaluation report as JSON.
//!
//! `cargo run --release --example engage_eval -- [--quick] [--seed N]`

use mesh_engage::eval::{run, EvalConfig};

fn main() {
    let mut cfg = EvalConfig {
        seed: 42,
        quick: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => cfg.quick = true,
            "--seed" => {
                let v = args.next().unwrap_or_default();
                cfg.seed = v.parse().unwrap_or_else(|_| {
                    eprintln!("--seed expects an unsigned integer, got {v:?}");
                    std::process::exit(2)
                });
            }
            other => {
                eprintln!("unknown argument {other:?}; expected --quick or --seed N");
                std::process::exit(2)
            }
        }
    }
    let start = std::time::Instant::now();
    let report = run(&cfg);
    eprintln!("eval finished in {:.2} s", start.elapsed().as_secs_f64());
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("report serializes")
    );
}
