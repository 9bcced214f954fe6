//! Model training, scoring, serialization and the generic CSV trainer.

use std::io::Write;

use mesh_fraud::cli::{eval_csv, EvalCsvArgs};
use mesh_fraud::model::train_matrix;
use mesh_fraud::{Error, FraudModel, ModelKind, TrainParams};
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
    let params = TrainParams {
        primary: ModelKind::Gbdt,
        ..small_params()
    };
    let model = train_matrix(&x, &y, names, &params).unwrap();
    let (tx, ty) = synthetic(300, 2);
    let lr: Vec<f64> = tx.iter().map(|r| model.score_lr(r).unwrap()).collect();
    let rf = model.score_rf_batch(&tx).unwrap();
    let gb: Vec<f64> = tx.iter().map(|r| model.score_gbdt(r).unwrap()).collect();
    assert!(mesh_fraud::metrics::roc_auc(&lr, &ty) > 0.9);
    assert!(mesh_fraud::metrics::roc_auc(&rf, &ty) > 0.85);
    assert!(mesh_fraud::metrics::roc_auc(&gb, &ty) > 0.85);
    assert!(gb.iter().all(|p| (0.0..=1.0).contains(p)));
    assert_eq!(
        model.score(&tx[0]).unwrap(),
        gb[0],
        "the GBDT is the primary model"
    );
    let top = model.top_contributions(&[9.0, 9.0, 0.5], 2).unwrap();
    assert!(top.iter().all(|(n, _)| n != "noise"), "{top:?}");

    let json = model.to_json().unwrap();
    let back = FraudModel::from_json(&json).unwrap();
    assert_eq!(back.version, "fraud-v1");
    for r in tx.iter().take(20) {
        assert_eq!(model.score_lr(r).unwrap(), back.score_lr(r).unwrap());
        assert_eq!(model.score_rf(r).unwrap(), back.score_rf(r).unwrap());
        assert_eq!(model.score_gbdt(r).unwrap(), back.score_gbdt(r).unwrap());
    }
    // a file written before the trees were part of the model still loads and scores with the
    // forest; asking it for the trees is an error that says to retrain
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value.as_object_mut().unwrap().remove("gbdt");
    value["primary"] = serde_json::json!("forest");
    let older = FraudModel::from_json(&value.to_string()).unwrap();
    assert!(!older.has_gbdt());
    assert_eq!(
        older.score(&tx[0]).unwrap(),
        model.score_rf(&tx[0]).unwrap()
    );
    let e = older.score_gbdt(&tx[0]).unwrap_err().to_string();
    assert!(
        e.contains("no gradient-boosted trees") && e.contains("retrain"),
        "{e}"
    );
    assert!(model.score_gbdt(&[1.0]).is_err(), "wrong width is an error");
    let old = json.replacen("\"format_version\":1", "\"format_version\":0", 1);
    assert!(matches!(
        FraudModel::from_json(&old),
        Err(Error::ModelVersion { found: 0, .. })
    ));
    assert!(model.score_lr(&[1.0]).is_err(), "wrong width is an error");
}

/// `auto` fits every model on the earliest nine tenths, keeps the one with the best PR-AUC on
/// the latest tenth, and scores with it; too few validation positives fall back to the forest.
#[test]
fn auto_chooses_the_model_by_the_latest_tenth() {
    let (x, y) = synthetic(3_000, 7);
    let names = vec!["a".to_string(), "b".to_string(), "noise".to_string()];
    let model = train_matrix(&x, &y, names.clone(), &small_params()).unwrap();
    let kinds: Vec<ModelKind> = model.selection.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            ModelKind::Logistic,
            ModelKind::Forest,
            ModelKind::Blend,
            ModelKind::Gbdt
        ]
    );
    let best = model
        .selection
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(model.primary, best.0, "{:?}", model.selection);
    let r = &x[0];
    let expected = match model.primary {
        ModelKind::Logistic => model.score_lr(r).unwrap(),
        ModelKind::Forest => model.score_rf(r).unwrap(),
        ModelKind::Blend => 0.5 * (model.score_lr(r).unwrap() + model.score_rf(r).unwrap()),
        ModelKind::Gbdt => model.score_gbdt(r).unwrap(),
        ModelKind::Auto => panic!("a fitted model stores the kind it chose"),
    };
    assert_eq!(model.score(r).unwrap(), expected);
    let back = FraudModel::from_json(&model.to_json().unwrap()).unwrap();
    assert_eq!(back.primary, model.primary);
    assert_eq!(back.selection, model.selection);

    // 600 rows: about a dozen positives in the latest tenth, too few to choose by
    let (x, y) = synthetic(600, 8);
    let small = train_matrix(&x, &y, names, &small_params()).unwrap();
    assert_eq!(small.primary, ModelKind::Forest);
    assert!(small.selection.is_empty());
}

/// Extreme magnitudes and missing values far outside the training range score finitely: the
/// trees send them to the outermost bins or the learned missing side.
#[test]
fn gbdt_scores_values_far_outside_the_training_range() {
    let (x, y) = synthetic(600, 4);
    let names = vec!["a".to_string(), "b".to_string(), "noise".to_string()];
    let model = train_matrix(&x, &y, names, &small_params()).unwrap();
    for row in [
        [1e300, -1e300, 0.5],
        [f64::NAN, f64::NAN, f64::NAN],
        [f64::INFINITY, f64::NEG_INFINITY, 1e-300],
        [-1e12, 1e12, -7.0],
    ] {
        let p = model.score_gbdt(&row).unwrap();
        assert!(p.is_finite() && (0.0..=1.0).contains(&p), "{row:?} -> {p}");
    }
}

/// Small training sets (no room for a validation tenth) still fit the trees.
#[test]
fn gbdt_fits_a_small_training_set() {
    let (x, y) = synthetic(120, 5);
    let names = vec!["a".into(), "b".into(), "c".into()];
    let model = train_matrix(&x, &y, names, &small_params()).unwrap();
    let (tx, ty) = synthetic(300, 6);
    let gb: Vec<f64> = tx.iter().map(|r| model.score_gbdt(r).unwrap()).collect();
    assert!(mesh_fraud::metrics::roc_auc(&gb, &ty) > 0.8);
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
