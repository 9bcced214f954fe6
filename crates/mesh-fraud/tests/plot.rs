//! `mesh eval fraud --simulate --plot DIR` on the small simulator of `sim_eval.rs`:
//! the SVG parses and holds one precision–recall line per scorer.

use mesh_fraud::cli::{eval_with, EvalArgs, EvalReport};
use mesh_fraud::sim::SimParams;
use mesh_fraud::ModelKind;

fn small() -> SimParams {
    SimParams {
        seed: 5,
        users: 700,
        days: 21,
        card_testing_rate: 1.2,
        account_takeover_rate: 2.0,
        promo_abuse_rate: 0.8,
        reseller_bot_rate: 0.6,
        friendly_fraud_rate: 2.0,
    }
}

#[test]
fn eval_writes_precision_recall_svg() {
    let dir = std::env::temp_dir().join(format!("mesh-fraud-plot-{}", std::process::id()));
    let args = EvalArgs {
        simulate: true,
        sim: small(),
        rules: None,
        save_models: None,
        model: ModelKind::Forest,
        trees: 25,
        max_depth: 8,
        csv: None,
        label: None,
        time: None,
        drop: vec![],
        tabular: Default::default(),
        review_budget: 0.02,
        json: true,
        plot: Some(dir.clone()),
    };
    let steps = std::cell::Cell::new(0);
    let (report, files) = eval_with(&args, &|done, _| steps.set(done)).unwrap();
    assert_eq!(steps.get(), mesh_fraud::eval::EVAL_STEPS);
    let EvalReport::Simulate(report) = report else {
        panic!("simulate mode")
    };
    assert_eq!(files, vec![dir.join("fraud-pr.svg")]);
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let series: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.starts_with("series "))
        })
        .collect();
    let names: Vec<&str> = series
        .iter()
        .filter_map(|n| n.attribute("data-name"))
        .collect();
    assert_eq!(names, ["base rate", "rules", "forest", "policy"]);
    for n in &series[1..] {
        let points: Vec<(f64, f64)> = n
            .attribute("points")
            .unwrap()
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert!(
            (2..=mesh_fraud::eval::PR_CURVE_POINTS).contains(&points.len()),
            "{}: {} points",
            n.attribute("data-name").unwrap(),
            points.len()
        );
        // recall never decreases along the curve: SVG x grows left to right
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0 + 1e-9));
    }
    assert!(report.holdout_fraud > 0);
    std::fs::remove_dir_all(&dir).ok();
}
