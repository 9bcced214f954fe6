//! `cargo run --release -p mesh-forecast --example forecast_eval -- --json --method comb,ets,theta`
use clap::Parser;
use mesh_forecast::cli::{eval, EvalArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EvalArgs,
}

fn main() -> Result<(), mesh_forecast::Error> {
    let cli = Cli::parse();
    let report = eval(&cli.args)?;
    if cli.args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        print!("{report}");
    }
    Ok(())
}
