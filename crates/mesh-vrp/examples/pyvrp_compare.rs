//! Our solver against PyVRP at equal wall time on generated X-like CVRP instances.
//!
//! ```text
//! pip install pyvrp
//! cargo run --release -p mesh-vrp --example pyvrp_compare -- [--secs-per-100 5] [--specs FILE]
//! ```
//!
//! For each spec of `bench/pyvrp_compare.json` (size, X-set attributes, seed) the instance
//! is generated, written as VRPLIB into a fresh temp dir, solved by us, then by
//! `scripts/pyvrp_run.py` — one after the other, never concurrently, with the same
//! wall-clock limit `n / 100 * secs-per-100`. PyVRP's routes are re-checked and re-priced
//! by our checker. One table row per size band: cost ratio ours / PyVRP (mean, worst),
//! iterations per second of each (our generations, plus ILS steps from 100 customers;
//! PyVRP's iterated-local-search steps),
//! our local-search evaluations and moves per second, and the CPU seconds each process got
//! (the machine may be shared: compare CPU shares before reading the ratios).
use clap::Parser;
use mesh_vrp::generate::{generate, to_vrplib, GenSpec};
use mesh_vrp::{check, solve, Budget, Solution, SolveOptions};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[derive(Parser)]
struct Cli {
    /// Instance specs (JSON list of `GenSpec`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/pyvrp_compare.json"))]
    specs: PathBuf,
    /// Wall-clock seconds per 100 customers, for each solver.
    #[arg(long, default_value_t = 5.0)]
    secs_per_100: f64,
    /// Seed of both solvers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Python interpreter with pyvrp installed.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Only run our solver (no PyVRP columns).
    #[arg(long)]
    ours_only: bool,
    /// Only the specs with at most this many customers.
    #[arg(long)]
    max_n: Option<usize>,
    /// Only the specs with at least this many customers.
    #[arg(long)]
    min_n: Option<usize>,
}

struct Row {
    n: usize,
    name: String,
    ours: f64,
    ours_iters: f64,
    ours_evals: f64,
    ours_moves: f64,
    ours_cpu: Option<f64>,
    py: Option<PyRun>,
}

struct PyRun {
    cost: f64,
    iters: f64,
    cpu: f64,
}

/// CPU seconds of this process (Linux `/proc/self/stat`, 100 ticks/s); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn band(n: usize) -> &'static str {
    match n {
        0..200 => "100-200",
        200..500 => "200-500",
        _ => "500-1000",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let specs: Vec<GenSpec> = serde_json::from_str(&std::fs::read_to_string(&cli.specs)?)?;
    let dir = std::env::temp_dir().join(format!("mesh-vrp-pyvrp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pyvrp_run.py");
    let mut rows = Vec::new();
    for spec in specs
        .iter()
        .filter(|s| cli.max_n.is_none_or(|m| s.n <= m) && cli.min_n.is_none_or(|m| s.n >= m))
    {
        let inst = generate(spec)?;
        let secs = spec.n as f64 / 100.0 * cli.secs_per_100;
        let path = dir.join(format!("{}.vrp", inst.name));
        std::fs::write(&path, to_vrplib(&inst))?;
        let cpu0 = cpu_seconds();
        let res = solve(
            &inst,
            &SolveOptions {
                seed: cli.seed,
                budget: Budget::time(Duration::from_secs_f64(secs)),
                threads: 1,
            },
        )?;
        let ours_cpu = cpu0.zip(cpu_seconds()).map(|(a, b)| b - a);
        let py = if cli.ours_only {
            None
        } else {
            let out = Command::new(&cli.python)
                .arg(&script)
                .args(["--time-limit", &secs.to_string()])
                .args(["--seed", &cli.seed.to_string()])
                .arg(&path)
                .output()?;
            if !out.status.success() {
                return Err(format!(
                    "pyvrp_run.py failed on {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let routes: Vec<Vec<usize>> = serde_json::from_value(v["routes"].clone())?;
            // PyVRP's answer goes through our own checker and distances.
            let checked = check(&inst, &Solution::new(routes))?;
            Some(PyRun {
                cost: checked.distance,
                iters: v["iterations"].as_f64().unwrap_or(0.0)
                    / v["seconds"].as_f64().unwrap_or(secs),
                cpu: v["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
            })
        };
        let row = Row {
            n: spec.n,
            name: inst.name.clone(),
            ours: res.distance,
            ours_iters: res.iterations as f64 / res.seconds,
            ours_evals: res.ls_evaluations as f64 / res.seconds,
            ours_moves: res.ls_moves as f64 / res.seconds,
            ours_cpu,
            py,
        };
        println!(
            "{:<36} {:>5.1}s  ours {:>8} ({:>7.1} it/s, {:>9.0} evals/s, cpu {:>5.1}s)  pyvrp {}",
            row.name,
            secs,
            row.ours,
            row.ours_iters,
            row.ours_evals,
            row.ours_cpu.unwrap_or(f64::NAN),
            row.py.as_ref().map_or("-".into(), |p| format!(
                "{:>8} ({:>7.1} it/s, cpu {:>5.1}s)  ratio {:.4}",
                p.cost,
                p.iters,
                p.cpu,
                row.ours / p.cost
            )),
        );
        rows.push(row);
    }
    std::fs::remove_dir_all(&dir)?;
    println!();
    println!(
        "{:<9} {:>3} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10} {:>9} {:>9}",
        "band",
        "k",
        "ratio.mean",
        "ratio.max",
        "ours.it/s",
        "py.it/s",
        "ours.eval/s",
        "ours.mv/s",
        "ours.cpu",
        "py.cpu"
    );
    for b in ["100-200", "200-500", "500-1000"] {
        let rs: Vec<&Row> = rows.iter().filter(|r| band(r.n) == b).collect();
        if rs.is_empty() {
            continue;
        }
        let k = rs.len() as f64;
        let mean = |f: &dyn Fn(&Row) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / k;
        let ratios: Vec<f64> = rs
            .iter()
            .filter_map(|r| r.py.as_ref().map(|p| r.ours / p.cost))
            .collect();
        let fmt = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
        let has_py = ratios.len() == rs.len();
        println!(
            "{:<9} {:>3} {:>10} {:>10} {:>10.1} {:>10} {:>11.0} {:>10.0} {:>9.1} {:>9}",
            b,
            rs.len(),
            fmt(has_py.then(|| ratios.iter().sum::<f64>() / k), 4),
            fmt(
                has_py.then(|| ratios.iter().copied().fold(f64::MIN, f64::max)),
                4
            ),
            mean(&|r| r.ours_iters),
            fmt(
                has_py.then(|| mean(&|r| r.py.as_ref().map_or(0.0, |p| p.iters))),
                1
            ),
            mean(&|r| r.ours_evals),
            mean(&|r| r.ours_moves),
            rs.iter().filter_map(|r| r.ours_cpu).sum::<f64>(),
            fmt(
                has_py.then(|| rs
                    .iter()
                    .filter_map(|r| r.py.as_ref().map(|p| p.cpu))
                    .sum::<f64>()),
                1
            ),
        );
    }
    println!(
        "ratio = our cost / PyVRP's at equal wall time ({} s per 100 customers, seed {}); \
         it/s: our HGS generations (+ ILS steps from 100 customers), PyVRP's ILS iterations; cpu: CPU seconds summed over the band",
        cli.secs_per_100, cli.seed
    );
    Ok(())
}
