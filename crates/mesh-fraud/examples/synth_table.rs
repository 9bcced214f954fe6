//! `cargo run --release -p mesh-fraud --example synth_table -- --rows 200000 --numeric 390 --out wide.csv`
//! Write a seeded wide synthetic transaction table (label `is_fraud`, time `ts`) for
//! `mesh eval fraud --csv wide.csv --label is_fraud --time ts`.

use clap::Parser;
use mesh_fraud::tabular::synth::{wide_table, write_csv, SynthParams};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value_t = 20_000)]
    rows: usize,
    #[arg(long, default_value_t = 200)]
    numeric: usize,
    #[arg(long, default_value_t = 10)]
    categorical: usize,
    #[arg(long, default_value_t = 0.02)]
    positive_rate: f64,
    #[arg(long, default_value_t = 3000)]
    merchants: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    out: std::path::PathBuf,
}

fn main() {
    let c = Cli::parse();
    let p = SynthParams {
        rows: c.rows,
        numeric: c.numeric,
        categorical: c.categorical,
        positive_rate: c.positive_rate,
        merchants: c.merchants,
        seed: c.seed,
    };
    let run = || -> Result<(), mesh_fraud::Error> {
        let t = wide_table(&p)?;
        write_csv(&t, &c.out, "is_fraud", "ts")?;
        let pos = t.labels.iter().filter(|l| **l).count();
        println!(
            "{}: {} rows, {} columns, {} positives ({:.2}%)",
            c.out.display(),
            t.rows(),
            t.names.len(),
            pos,
            100.0 * pos as f64 / t.rows() as f64
        );
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
