//! `cargo run --release -p mesh-fraud --example fraud_eval -- --simulate --json`
//! Parses the same arguments as `mesh eval fraud` and prints the report.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: mesh_fraud::cli::EvalArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<(), mesh_fraud::Error> {
    let report = mesh_fraud::cli::eval(&cli.args)?;
    if cli.args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
