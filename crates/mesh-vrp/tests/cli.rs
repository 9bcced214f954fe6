//! The `mesh eval vrp` entry point: JSON fields and the human-readable table.
mod common;

use clap::Parser;
use common::data_file;
use mesh_vrp::cli::{eval, solve_file, EvalArgs, SolveArgs};

#[derive(Parser)]
struct Eval {
    #[command(flatten)]
    args: EvalArgs,
}

#[test]
fn eval_reports_cost_bks_gap_and_mean() {
    let a = data_file("vrp/cvrp/A-n32-k5.vrp");
    let rc = data_file("vrp/vrptw/RC208.vrp");
    let cli = Eval::try_parse_from([
        "eval".as_ref(),
        "--time-limit".as_ref(),
        "0".as_ref(),
        "--iterations".as_ref(),
        "40".as_ref(),
        "--json".as_ref(),
        a.as_os_str(),
        rc.as_os_str(),
    ])
    .unwrap();
    assert!(cli.args.json);
    let report = eval(&cli.args).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let first = &json["instances"][0];
    assert_eq!(first["name"], "A-n32-k5");
    assert_eq!(first["bks"], 784.0);
    assert!(first["vehicles"].as_u64().unwrap() <= 5);
    let cost = first["cost"].as_f64().unwrap();
    assert!((first["gap"].as_f64().unwrap() - 100.0 * (cost - 784.0) / 784.0).abs() < 1e-9);
    assert_eq!(json["instances"][1]["bks"], 776.1);
    let mean = json["mean_gap"].as_f64().unwrap();
    let gaps: Vec<f64> = report.instances.iter().filter_map(|i| i.gap).collect();
    assert!((mean - gaps.iter().sum::<f64>() / 2.0).abs() < 1e-9);
    let table = report.to_string();
    assert!(
        table.contains("A-n32-k5") && table.contains("mean gap"),
        "{table}"
    );
}

#[test]
fn solve_writes_a_sol_file_that_reads_back() {
    #[derive(Parser)]
    struct Solve {
        #[command(flatten)]
        args: SolveArgs,
    }
    let out = std::env::temp_dir().join(format!("mesh-vrp-test-{}.sol", std::process::id()));
    let file = data_file("vrp/cvrp/A-n33-k5.vrp");
    let cli = Solve::try_parse_from([
        "solve".as_ref(),
        "--time-limit".as_ref(),
        "0".as_ref(),
        "--iterations".as_ref(),
        "20".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        file.as_os_str(),
    ])
    .unwrap();
    let report = solve_file(&cli.args).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).ok();
    assert_eq!(text, report.sol);
    let (routes, cost) = mesh_vrp::parse::parse_sol(&text, "out.sol").unwrap();
    let inst = mesh_vrp::load(&file).unwrap();
    let checked = mesh_vrp::check(&inst, &mesh_vrp::Solution::new(routes)).unwrap();
    assert_eq!(cost, Some(checked.distance));
    assert_eq!(report.result.cost, checked.distance);
}
