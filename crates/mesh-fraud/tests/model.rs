//! Model training, scoring, serialization and the generic CSV trainer.

use std::io::Write;

use mesh_fraud::cli::{eval_csv, EvalCsvArgs};
use mesh_fraud::model::train_matrix;
use mesh_fraud::{Error, FraudModel, TrainParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn synthetic(n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let a: f64 = rng.random_range(0.0..10.0);
        let b: f64 = rng.random_range(0.0..10.0);
        let noise: f64 = rng.random_range(-2.0..2.0);
        y.push(a + b + noise > 14.0);
        x.push(vec![a, b, rng.random_range(0.0..1.0)]);
    }
    (x, y)
}

fn small_params() -> TrainParams {
    TrainParams {
        n_trees: 20,
        max_depth: 6,
        ..TrainParams::default()
    }
}

#[test]
fn trains_scores_and_round_trips() {
    let (x, y) = synthetic(600, 1);
    let names = vec!["a".to_string(), "b".to_string(), "noise".to_string()];
    let model = train_matrix(&x, &y, names, &small_params()).unwrap();
    let (tx, ty) = synthetic(300, 2);
    let lr: Vec<f64> = tx.iter().map(|r| model.score_lr(r).unwrap()).collect();
    let rf = model.score_rf_batch(&tx).unwrap();
    assert!(mesh_fraud::metrics::roc_auc(&lr, &ty) > 0.9);
    assert!(mesh_fraud::metrics::roc_auc(&rf, &ty) > 0.85);
    let top = model.top_contributions(&[9.0, 9.0, 0.5], 2).unwrap();
    assert!(top.iter().all(|(n, _)| n != "noise"), "{top:?}");

    let json = model.to_json().unwrap();
    let back = FraudModel::from_json(&json).unwrap();
    assert_eq!(back.version, "fraud-v1");
    for r in tx.iter().take(20) {
        assert_eq!(model.score_lr(r).unwrap(), back.score_lr(r).unwrap());
        assert_eq!(model.score_rf(r).unwrap(), back.score_rf(r).unwrap());
    }
    let old = json.replacen("\"format_version\":1", "\"format_version\":0", 1);
    assert!(matches!(
        FraudModel::from_json(&old),
        Err(Error::ModelVersion { found: 0, .. })
    ));
    assert!(model.score_lr(&[1.0]).is_err(), "wrong width is an error");
}

#[test]
fn one_class_is_an_error() {
    let (x, _) = synthetic(50, 3);
    let names = vec!["a".into(), "b".into(), "c".into()];
    assert!(train_matrix(&x, &[false; 50], names, &small_params()).is_err());
}

/// A table where fraud depends on a numeric column, a low-cardinality category and a
/// high-cardinality merchant id, with a drift-free time column.
fn write_csv(path: &std::path::Path, rows: usize, label_of: impl Fn(bool) -> String) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "id,when,amount,channel,merchant,is_fraud").unwrap();
    for i in 0..rows {
        let amount: f64 = rng.random_range(1.0..500.0);
        let channel = ["web", "app", "phone"][rng.random_range(0..3)];
        let merchant = format!("m{}", rng.random_range(0..60));
        let bad_merchant = merchant.ends_with('7');
        let score = amount / 500.0
            + if channel == "phone" { 0.4 } else { 0.0 }
            + if bad_merchant { 0.6 } else { 0.0 };
        let fraud = score + rng.random_range(-0.3..0.3) > 1.0;
        let day = 1 + (i * 28 / rows);
        writeln!(
            f,
            "{i},2026-02-{day:02} 10:{:02}:00,{amount:.2},{channel},{merchant},{}",
            i % 60,
            label_of(fraud)
        )
        .unwrap();
    }
}

#[test]
fn csv_trainer_on_a_generated_table() {
    let dir = std::env::temp_dir().join(format!("mesh-fraud-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.csv");
    write_csv(&path, 1500, |b| if b { "yes".into() } else { "no".into() });
    let args = EvalCsvArgs {
        csv: path.clone(),
        label: "is_fraud".into(),
        time: "when".into(),
        drop: vec!["id".into()],
        tabular: Default::default(),
        json: true,
    };
    let r = eval_csv(&args).unwrap();
    assert_eq!((r.train_rows, r.test_rows), (1200, 300));
    assert_eq!(r.numeric_columns, ["amount"]);
    assert_eq!(r.categorical_columns, ["channel", "merchant"]);
    assert_eq!(
        r.encoded_features,
        1 + 3 + 2,
        "amount, one-hot channel, merchant freq+target"
    );
    assert!(r.logistic.unwrap().roc_auc > 0.85, "{r}");
    assert!(r.forest.unwrap().roc_auc > 0.85, "{r}");
    assert!(r.forest.unwrap().pr_auc > r.test_positives as f64 / r.test_rows as f64);
    assert!(r.gbdt.unwrap().roc_auc > 0.85, "{r}");
    // the evaluation contract: the chosen model's test figures at the top level
    let json = serde_json::to_value(&r).unwrap();
    let best = json["best_model"].as_str().unwrap();
    assert!(["gbdt", "forest", "logistic", "anomaly"].contains(&best));
    assert_eq!(json["roc_auc"], json[best]["roc_auc"]);
    assert_eq!(json["pr_auc"], json[best]["pr_auc"]);
    assert!(json["peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(json["train_secs"]["gbdt"].as_f64().is_some());

    let missing = EvalCsvArgs {
        label: "fraud".into(),
        ..args.clone()
    };
    let e = eval_csv(&missing).unwrap_err();
    assert!(
        matches!(&e, Error::MissingColumn { column, .. } if column == "fraud"),
        "{e}"
    );

    write_csv(&path, 200, |b| if b { "2".into() } else { "0".into() });
    let e = eval_csv(&args).unwrap_err();
    assert!(matches!(e, Error::NonBinaryLabel { .. }), "{e}");
    assert!(e.to_string().contains("\"2\""), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
