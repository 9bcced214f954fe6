//! Gradient-boosted trees: what they learn, missing-value directions, determinism, the test
//! split kept out of early stopping, and numbers far outside the usual range.

use mesh_fraud::gbdt::{Column, Gbdt, GbdtParams, MISSING_CODE};
use mesh_fraud::metrics::roc_auc;
use mesh_fraud::tabular::synth::{wide_table, SynthParams};
use mesh_fraud::tabular::{eval_loaded, TabularModel, TabularOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn small_synth(seed: u64) -> mesh_fraud::tabular::Table {
    wide_table(&SynthParams {
        rows: 8_000,
        numeric: 24,
        categorical: 5,
        positive_rate: 0.08,
        merchants: 60,
        seed,
    })
    .unwrap()
}

#[test]
fn learns_a_nonlinear_function_with_missing_values_and_categoricals_better_than_logistic() {
    let table = small_synth(3);
    let opts = TabularOptions {
        models: vec![TabularModel::Gbdt, TabularModel::Logistic],
        ..TabularOptions::default()
    };
    let r = eval_loaded(&table, &opts).unwrap();
    let (g, l) = (r.gbdt.unwrap(), r.logistic.unwrap());
    assert!(r.columns_with_missing >= 3, "{}", r.columns_with_missing);
    assert_eq!(r.categorical_columns.len(), 5);
    assert!(
        g.roc_auc > l.roc_auc + 0.03,
        "gbdt {} vs logistic {}",
        g.roc_auc,
        l.roc_auc
    );
    // the top-level figures are the test metrics of the model chosen on validation
    let best = if r.best_model == "gbdt" { g } else { l };
    assert_eq!((r.roc_auc, r.pr_auc), (best.roc_auc, best.pr_auc));
}

/// y = (x > 0.5) xor (category in {2, 5}); x missing for a fifth of the rows, all positive.
fn xor_table(n: usize, seed: u64) -> (Vec<Column>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut x, mut c, mut y) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let xv: f64 = rng.random();
        let cv: u32 = rng.random_range(0..8);
        let missing = rng.random::<f64>() < 0.2;
        let truth = missing || ((xv > 0.5) ^ (cv == 2 || cv == 5));
        let noisy = if rng.random::<f64>() < 0.05 {
            !truth
        } else {
            truth
        };
        x.push(if missing { f64::NAN } else { xv });
        c.push(cv);
        y.push(noisy);
    }
    (vec![Column::Numeric(x), Column::Categorical(c)], y)
}

#[test]
fn xor_of_a_number_and_a_category_and_missing_values_go_the_learned_way() {
    let (cols, y) = xor_table(6_000, 1);
    let rows: Vec<usize> = (0..5_000).collect();
    let val: Vec<usize> = (5_000..6_000).collect();
    let m = Gbdt::fit(&cols, &y, &rows, &val, &GbdtParams::default()).unwrap();
    let p = m.predict(&cols, &val).unwrap();
    let yv: Vec<bool> = val.iter().map(|i| y[*i]).collect();
    assert!(roc_auc(&p, &yv) > 0.93, "auc {}", roc_auc(&p, &yv));
    // a missing x scores high whatever the category; present x follows the xor
    let probe = vec![
        Column::Numeric(vec![f64::NAN, f64::NAN, 0.9, 0.9, 0.1, 0.1]),
        Column::Categorical(vec![0, 2, 0, 2, 0, 2]),
    ];
    let q = m.predict(&probe, &[0, 1, 2, 3, 4, 5]).unwrap();
    assert!(q[0] > 0.8 && q[1] > 0.8, "missing: {q:?}");
    assert!(
        q[2] > 0.8 && q[3] < 0.2 && q[4] < 0.2 && q[5] > 0.8,
        "xor: {q:?}"
    );
}

#[test]
fn missing_values_unseen_in_training_follow_the_larger_child() {
    let n = 3_000;
    let x: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
    // positives only at the top 10%: the larger child is the low side
    let y: Vec<bool> = x.iter().map(|v| *v > 0.9).collect();
    let cols = vec![Column::Numeric(x)];
    let rows: Vec<usize> = (0..n).collect();
    let m = Gbdt::fit(
        &cols,
        &y,
        &rows,
        &[],
        &GbdtParams {
            max_iter: 30,
            ..Default::default()
        },
    )
    .unwrap();
    let q = m
        .predict(&[Column::Numeric(vec![f64::NAN, 0.95])], &[0, 1])
        .unwrap();
    assert!(q[0] < 0.2 && q[1] > 0.8, "{q:?}");
}

#[test]
fn same_seed_same_model_other_seed_other_sample() {
    let (cols, y) = xor_table(3_000, 2);
    let rows: Vec<usize> = (0..2_500).collect();
    let val: Vec<usize> = (2_500..3_000).collect();
    let params = GbdtParams {
        subsample: 0.7,
        max_iter: 40,
        ..Default::default()
    };
    let a = Gbdt::fit(&cols, &y, &rows, &val, &params).unwrap();
    let b = Gbdt::fit(&cols, &y, &rows, &val, &params).unwrap();
    let c = Gbdt::fit(
        &cols,
        &y,
        &rows,
        &val,
        &GbdtParams {
            seed: 8,
            ..params.clone()
        },
    )
    .unwrap();
    let (pa, pb, pc) = (
        a.predict(&cols, &val).unwrap(),
        b.predict(&cols, &val).unwrap(),
        c.predict(&cols, &val).unwrap(),
    );
    assert_eq!(pa, pb);
    assert_ne!(pa, pc);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

#[test]
fn early_stopping_and_model_choice_never_read_the_test_split() {
    let table = small_synth(5);
    let opts = TabularOptions {
        models: vec![TabularModel::Gbdt],
        ..TabularOptions::default()
    };
    let a = eval_loaded(&table, &opts).unwrap();
    // scramble every feature and flip the label of the latest 20% by time
    let split = mesh_fraud::tabular::time_split(&table.times, opts.validation_fraction).unwrap();
    let mut t2 = table.clone();
    for &i in &split.test {
        t2.labels[i] = !t2.labels[i];
        for c in &mut t2.columns {
            match c {
                Column::Numeric(v) => v[i] = -v[i] * 1e6,
                Column::Categorical(k) => k[i] = MISSING_CODE,
            }
        }
    }
    let b = eval_loaded(&t2, &opts).unwrap();
    assert_eq!(a.gbdt_rounds, b.gbdt_rounds);
    assert_eq!(a.gbdt_trees, b.gbdt_trees);
    assert_eq!(a.validation["gbdt"], b.validation["gbdt"]);
    assert_ne!(a.gbdt.unwrap().roc_auc, b.gbdt.unwrap().roc_auc);
}

#[test]
fn extreme_constant_and_all_missing_columns_give_finite_scores() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 4_000;
    let amount: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1.0) * 1e9).collect();
    let y: Vec<bool> = amount
        .iter()
        .map(|a| *a > 8e8 || rng.random::<f64>() < 0.01)
        .collect();
    let cols = vec![
        Column::Numeric(amount.clone()),
        Column::Numeric(amount.iter().map(|a| -a * 1e290).collect()),
        Column::Numeric(vec![42.0; n]),
        Column::Numeric(vec![f64::NAN; n]),
        Column::Numeric(
            (0..n)
                .map(|i| {
                    if i % 7 == 0 {
                        f64::INFINITY
                    } else {
                        -(i as f64)
                    }
                })
                .collect(),
        ),
        Column::Numeric((0..n).map(|i| [f64::MAX, f64::MIN, 0.0][i % 3]).collect()),
        Column::Categorical(vec![MISSING_CODE; n]),
        Column::Categorical(vec![3; n]),
    ];
    let rows: Vec<usize> = (0..3_000).collect();
    let val: Vec<usize> = (3_000..n).collect();
    let m = Gbdt::fit(&cols, &y, &rows, &val, &GbdtParams::default()).unwrap();
    let all: Vec<usize> = (0..n).collect();
    let p = m.predict(&cols, &all).unwrap();
    assert!(p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    assert!(m.validation_loss.iter().all(|l| l.is_finite()));
    let yv: Vec<bool> = val.iter().map(|i| y[*i]).collect();
    assert!(roc_auc(&p[3_000..], &yv) > 0.9);
    // rows made only of values never seen at fit
    let odd = vec![
        Column::Numeric(vec![f64::NEG_INFINITY, 1e300]),
        Column::Numeric(vec![f64::NAN, f64::INFINITY]),
        Column::Numeric(vec![-1e300, f64::NAN]),
        Column::Numeric(vec![1.0, f64::NAN]),
        Column::Numeric(vec![f64::NAN, 5.0]),
        Column::Numeric(vec![f64::NAN, f64::NAN]),
        Column::Categorical(vec![7, MISSING_CODE]),
        Column::Categorical(vec![MISSING_CODE, 99]),
    ];
    let q = m.predict(&odd, &[0, 1]).unwrap();
    assert!(q.iter().all(|v| v.is_finite()), "{q:?}");
}
