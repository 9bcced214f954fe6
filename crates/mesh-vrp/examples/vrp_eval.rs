//! `cargo run --release -p mesh-vrp --example vrp_eval -- [--json] --time-limit 5 FILES...`
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: mesh_vrp::cli::EvalArgs,
}

fn main() -> Result<(), mesh_vrp::Error> {
    let cli = Cli::parse();
    let report = mesh_vrp::cli::eval(&cli.args)?;
    if cli.args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        println!("{report}");
    }
    Ok(())
}
