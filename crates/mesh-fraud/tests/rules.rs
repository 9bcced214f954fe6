//! Rules, reload without restart, and the decision policy.

use std::sync::Arc;

use mesh_fraud::features::{FeatureVector, FEATURE_NAMES, N_FEATURES};
use mesh_fraud::iforest::IsolationForest;
use mesh_fraud::{Action, Error, Policy, PolicyConfig, RuleSet, RulesHandle};

fn fv(pairs: &[(&str, f64)]) -> FeatureVector {
    let mut v = vec![0.0; N_FEATURES];
    for (name, x) in pairs {
        v[FEATURE_NAMES.iter().position(|n| n == name).unwrap()] = *x;
    }
    FeatureVector(v)
}

const TWO_RULES: &str = r#"
[[rule]]
code = "BIG"
action = "review"
when = { feature = "amount", op = ">=", value = 1000 }

[[rule]]
code = "CARDS"
action = "reject"
when = { all = [
  { feature = "instrument_failed_1h", op = ">=", value = 3 },
  { any = [ { feature = "amount", op = "<", value = 20 }, { feature = "new_device", op = "==", value = 1 } ] },
] }
"#;

#[test]
fn default_rules_parse() {
    assert!(RuleSet::default_rules().rules.len() >= 5);
}

#[test]
fn conditions_combine_all_and_any() {
    let rules = RuleSet::from_toml_str(TWO_RULES, "test").unwrap();
    let hits = rules.evaluate(&fv(&[("amount", 1500.0)]));
    assert_eq!(
        hits.iter().map(|h| h.code.as_str()).collect::<Vec<_>>(),
        ["BIG"]
    );
    assert!(rules
        .evaluate(&fv(&[("instrument_failed_1h", 3.0), ("amount", 50.0)]))
        .is_empty());
    let hits = rules.evaluate(&fv(&[("instrument_failed_1h", 3.0), ("amount", 5.0)]));
    assert_eq!(hits[0].code, "CARDS");
    assert_eq!(hits[0].action, Action::Reject);
    let hits = rules.evaluate(&fv(&[
        ("instrument_failed_1h", 4.0),
        ("amount", 50.0),
        ("new_device", 1.0),
    ]));
    assert_eq!(hits.len(), 1);
}

#[test]
fn bad_rules_name_the_rule_and_field() {
    let unknown = r#"
[[rule]]
code = "OOPS"
action = "review"
when = { all = [ { feature = "amount", op = ">", value = 1 }, { feature = "amount_zz", op = ">", value = 1 } ] }
"#;
    match RuleSet::from_toml_str(unknown, "t").unwrap_err() {
        Error::InvalidRule {
            rule,
            field,
            message,
        } => {
            assert_eq!(rule, "OOPS");
            assert_eq!(field, "when.all[1].feature");
            assert!(message.contains("amount_zz"));
        }
        e => panic!("unexpected {e}"),
    }
    let bad_op = "[[rule]]\ncode = \"X\"\naction = \"review\"\nwhen = { feature = \"amount\", op = \"=>\", value = 1 }\n";
    let e = RuleSet::from_toml_str(bad_op, "t").unwrap_err().to_string();
    assert!(e.contains("rule `X`") && e.contains("when.op"), "{e}");
    let bad_action = "[[rule]]\ncode = \"Y\"\naction = \"block\"\nwhen = { feature = \"amount\", op = \">\", value = 1 }\n";
    let e = RuleSet::from_toml_str(bad_action, "t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("rule `Y`") && e.contains("action"), "{e}");
    let not_toml = "[[rule]\ncode =";
    assert!(matches!(
        RuleSet::from_toml_str(not_toml, "t"),
        Err(Error::RulesParse { .. })
    ));
}

#[test]
fn reload_changes_decisions_without_restart_and_keeps_old_rules_on_error() {
    let dir = std::env::temp_dir().join(format!("mesh-fraud-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.toml");
    let rule = |threshold: f64| {
        format!("[[rule]]\ncode = \"BIG\"\naction = \"reject\"\nwhen = {{ feature = \"amount\", op = \">=\", value = {threshold} }}\n")
    };
    std::fs::write(&path, rule(1000.0)).unwrap();
    let handle = RulesHandle::load(&path).unwrap();
    let policy = Policy::default();
    let order = fv(&[("amount", 500.0)]);
    assert_eq!(
        policy.decide(&order, &handle.current()).unwrap().action,
        Action::Approve
    );
    assert!(
        !handle.reload_if_changed(&path).unwrap(),
        "unchanged content is not reloaded"
    );

    std::fs::write(&path, rule(400.0)).unwrap();
    assert!(handle.reload_if_changed(&path).unwrap());
    let d = policy.decide(&order, &handle.current()).unwrap();
    assert_eq!(d.action, Action::Reject);
    assert_eq!(d.reasons, ["BIG"]);

    std::fs::write(&path, "[[rule]]\ncode = \"BIG\"\naction = \"reject\"\nwhen = { feature = \"amout\", op = \">=\", value = 1 }\n").unwrap();
    let err = handle.reload_if_changed(&path).unwrap_err().to_string();
    assert!(
        err.contains("BIG") && err.contains("when.feature") && err.contains("amout"),
        "{err}"
    );
    assert_eq!(
        policy.decide(&order, &handle.current()).unwrap().action,
        Action::Reject,
        "old rules kept"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn policy_combines_rules_and_anomaly_with_thresholds() {
    let rules = RuleSet::from_toml_str(TWO_RULES, "t").unwrap();
    let policy = Policy {
        config: PolicyConfig::default(),
        model: None,
        anomaly: None,
    };
    let d = policy.decide(&fv(&[("amount", 2000.0)]), &rules).unwrap();
    assert_eq!(d.action, Action::Review);
    assert_eq!(d.reasons, ["BIG"]);
    assert!(d.model_score.is_none() && d.anomaly_score.is_none());

    // cold start: an isolation forest on ordinary orders flags an outlier
    let rows: Vec<Vec<f64>> = (0..400)
        .map(|i| {
            fv(&[
                ("amount", 20.0 + (i % 40) as f64),
                ("user_order_count", (i % 7) as f64),
            ])
            .0
        })
        .collect();
    let iso = IsolationForest::fit(&rows, 100, 128, 1).unwrap();
    let policy = Policy {
        // anomaly scores sit near 0.5 for ordinary points; rescaled, 0.1 means a score of 0.55
        config: PolicyConfig {
            review_at: 0.1,
            ..PolicyConfig::default()
        },
        model: None,
        anomaly: Some(Arc::new(iso)),
    };
    let normal = policy
        .decide(
            &fv(&[("amount", 35.0), ("user_order_count", 3.0)]),
            &RuleSet::default(),
        )
        .unwrap();
    let odd = fv(&[
        ("amount", 900.0),
        ("user_order_count", 3.0),
        ("device_orders_1h", 30.0),
        ("instrument_failed_1h", 9.0),
    ]);
    let odd = policy.decide(&odd, &RuleSet::default()).unwrap();
    assert!(odd.anomaly_score.unwrap() > normal.anomaly_score.unwrap());
    assert_eq!(normal.action, Action::Approve);
    assert_eq!(
        odd.action,
        Action::Review,
        "anomaly {:?} vs normal {:?}",
        odd.anomaly_score,
        normal.anomaly_score
    );
    assert!(odd.reasons.contains(&"ANOMALY".to_string()));
}

/// Under a review budget a review rule adds to the score instead of forcing
/// a review, so one threshold decides every review; a reject rule still
/// rejects.
#[test]
fn review_rules_go_through_the_threshold_when_reviews_are_by_score() {
    let rules = RuleSet::default_rules();
    let velocity = fv(&[("device_orders_1h", 9.0), ("amount", 20.0)]);
    let card_testing = fv(&[("instrument_failed_1h", 5.0), ("amount", 20.0)]);
    let forced = Policy::default();
    assert_eq!(
        forced.decide(&velocity, &rules).unwrap().action,
        Action::Review
    );
    let by_score = Policy {
        config: PolicyConfig {
            review_by_score: true,
            review_at: 0.3,
            ..PolicyConfig::default()
        },
        ..Policy::default()
    };
    let d = by_score.decide(&velocity, &rules).unwrap();
    // No model: base 0, plus the 0.05 rule boost, below 0.3.
    assert_eq!(d.action, Action::Approve);
    assert!(d.reasons.iter().any(|r| r == "DEVICE_VELOCITY"), "{d:?}");
    let low = Policy {
        config: PolicyConfig {
            review_at: 0.04,
            ..by_score.config.clone()
        },
        ..Policy::default()
    };
    assert_eq!(
        low.decide(&velocity, &rules).unwrap().action,
        Action::Review
    );
    assert_eq!(
        by_score.decide(&card_testing, &rules).unwrap().action,
        Action::Reject
    );
    // A rule lifts the score to the configured review level: reviewed
    // while the budget's threshold is there, not once it rose above.
    let lifted = |review_at: f64| Policy {
        config: PolicyConfig {
            review_at,
            review_rule_score: Some(0.55),
            ..by_score.config.clone()
        },
        ..Policy::default()
    };
    assert_eq!(
        lifted(0.5).decide(&velocity, &rules).unwrap().action,
        Action::Review
    );
    assert_eq!(
        lifted(0.6).decide(&velocity, &rules).unwrap().action,
        Action::Approve
    );
}
