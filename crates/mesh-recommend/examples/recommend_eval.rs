//! `cargo run --release -p mesh-recommend --example recommend_eval -- --protocol msrec --json`
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: mesh_recommend::cli::EvalArgs,
}

fn main() -> Result<(), mesh_recommend::Error> {
    let cli = Cli::parse();
    let report = mesh_recommend::cli::eval(&cli.args)?;
    if cli.args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
