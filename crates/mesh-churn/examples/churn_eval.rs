//! `cargo run --release -p mesh-churn --example churn_eval -- [--json] [--transactions FILE]`
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: mesh_churn::cli::EvalArgs,
}

fn main() {
    let cli = Cli::parse();
    match mesh_churn::cli::eval(&cli.args) {
        Ok(report) if cli.args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serialises")
            )
        }
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
