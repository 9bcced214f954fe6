//! Simulator determinism and labels; end-to-end evaluation smoke test.

use mesh_fraud::cli::{eval, simulate as simulate_cli, EvalArgs, EvalReport, SimulateArgs};
use mesh_fraud::sim::{simulate, SimParams, LEGIT, PATTERNS};
use mesh_fraud::{Event, ModelKind};

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
fn simulator_is_seeded_sorted_and_labelled() {
    let a: Vec<_> = simulate(&small()).unwrap().collect();
    let b: Vec<_> = simulate(&small()).unwrap().collect();
    assert_eq!(a, b, "same seed, same stream");
    let c: Vec<_> = simulate(&SimParams { seed: 6, ..small() })
        .unwrap()
        .collect();
    assert_ne!(a, c);
    assert!(a.windows(2).all(|w| w[0].event.ts() <= w[1].event.ts()));
    for p in PATTERNS {
        let n = a
            .iter()
            .filter(|e| e.pattern == p && matches!(e.event, Event::Order(_)))
            .count();
        assert!(n > 0, "pattern {p} has orders");
        assert!(a.iter().filter(|e| e.pattern == p).all(|e| e.fraud));
    }
    assert!(a.iter().filter(|e| e.pattern == LEGIT).all(|e| !e.fraud));
    // legitimate noise exists: night orders, declines, refunds
    let legit_orders: Vec<_> = a
        .iter()
        .filter_map(|e| match &e.event {
            Event::Order(o) if !e.fraud => Some(o),
            _ => None,
        })
        .collect();
    let night = legit_orders
        .iter()
        .filter(|o| (o.ts.rem_euclid(86_400) / 3600) < 5)
        .count();
    assert!(night > legit_orders.len() / 50, "{night} night orders");
    assert!(a
        .iter()
        .any(|e| !e.fraud && matches!(&e.event, Event::Payment(p) if !p.success)));
}

#[test]
fn simulate_writes_json_lines() {
    let path = std::env::temp_dir().join(format!("mesh-fraud-sim-{}.jsonl", std::process::id()));
    let args = SimulateArgs {
        sim: SimParams {
            users: 100,
            days: 3,
            ..small()
        },
        out: Some(path.clone()),
        json: true,
    };
    let report = simulate_cli(&args).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), report.events);
    let first: mesh_fraud::SimEvent = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(!first.pattern.is_empty());
    std::fs::remove_file(&path).ok();
}

#[test]
fn combined_policy_beats_rules_alone() {
    let models =
        std::env::temp_dir().join(format!("mesh-fraud-models-{}.json", std::process::id()));
    let args = EvalArgs {
        simulate: true,
        sim: small(),
        rules: None,
        save_models: Some(models.clone()),
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
        plot: None,
    };
    let EvalReport::Simulate(r) = eval(&args).unwrap() else {
        panic!("simulate mode")
    };
    let get = |name: &str| r.scorers.iter().find(|s| s.scorer == name).unwrap().overall;
    let (rules, policy, forest) = (get("rules"), get("policy"), get("forest"));
    assert!(r.holdout_fraud >= 20, "{}", r.holdout_fraud);
    assert!(
        policy.pr_auc > rules.pr_auc,
        "policy {policy:?} vs rules {rules:?}"
    );
    assert!(forest.roc_auc > 0.8, "{forest:?}");
    // Held at a 2% review budget: the review team sees at most about 2% of
    // the orders, and what it sees is mostly fraud (base rate a few %).
    let b = &r.budget;
    assert!(b.review_rate <= 0.03, "{b:?}");
    let base_rate = r.holdout_fraud as f64 / r.holdout_orders as f64;
    assert!(b.precision > 2.0 * base_rate, "{b:?} base rate {base_rate}");
    assert!(b.recall > 0.0 && b.recall <= 1.0, "{b:?}");
    // the saved artifact loads back into a working policy
    let text = std::fs::read_to_string(&models).unwrap();
    let policy = mesh_fraud::PolicyModels::from_json(&text)
        .unwrap()
        .into_policy(Default::default());
    let probe = mesh_fraud::FeatureVector(vec![0.0; mesh_fraud::features::N_FEATURES]);
    let d = policy
        .decide(&probe, &mesh_fraud::RuleSet::default_rules())
        .unwrap();
    assert!(d.model_score.is_some() && d.anomaly_score.is_some());
    std::fs::remove_file(&models).ok();
    let json = serde_json::to_value(EvalReport::Simulate(r)).unwrap();
    assert_eq!(json["mode"], "simulate");
    assert!(json["scorers"][0]["per_pattern"]["card_testing"]["pr_auc"].is_number());
}
