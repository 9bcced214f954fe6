//! `cargo run --release -p mesh-fraud --example eval_csv -- --csv FILE --label COL --time COL`
//! The generic trainer alone.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: mesh_fraud::cli::EvalCsvArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<(), mesh_fraud::Error> {
    let report = mesh_fraud::cli::eval_csv(&cli.args)?;
    if cli.args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
