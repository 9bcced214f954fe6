//! `cargo run --release -p mesh-vrp --example solve -- --time-limit 5 --out x.sol FILE`
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: mesh_vrp::cli::SolveArgs,
}

fn main() -> Result<(), mesh_vrp::Error> {
    let cli = Cli::parse();
    let report = mesh_vrp::cli::solve_file(&cli.args)?;
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
