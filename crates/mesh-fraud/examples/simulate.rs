//! `cargo run --release -p mesh-fraud --example simulate -- --out events.jsonl`
//! Parses the same arguments as `mesh fraud simulate` and prints the report.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: mesh_fraud::cli::SimulateArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<(), mesh_fraud::Error> {
    let report = mesh_fraud::cli::simulate(&cli.args)?;
    if cli.args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
