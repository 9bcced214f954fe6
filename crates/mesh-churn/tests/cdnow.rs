//! Reproduces Fader, Hardie & Lee (2005) on the CDNOW 1/10 sample from the shared data.
//! Fails (never skips) when the data file is missing.

use std::path::PathBuf;

use chrono::NaiveDate;
use mesh_churn::cli::{self, EvalArgs};
use mesh_churn::data::PurchaseLog;

fn data_file(rel: &str) -> PathBuf {
    let path = cli::shared_data_dir().join(rel);
    assert!(
        path.is_file(),
        "missing shared data file {} (set MESH_SHARED_DATA or place shared/data beside the repo)",
        path.display()
    );
    path
}

fn within(name: &str, measured: f64, published: f64, rel: f64) {
    let err = (measured - published).abs() / published.abs();
    assert!(
        err <= rel,
        "{name}: measured {measured}, published {published}, off by {:.2}% (allowed {:.2}%)",
        100.0 * err,
        100.0 * rel
    );
}

#[test]
fn reproduces_fader_hardie_lee_2005() {
    let args = EvalArgs {
        transactions: data_file("churn/CDNOW_sample.txt"),
        calibration_end: NaiveDate::from_ymd_opt(1997, 9, 30).unwrap(),
        holdout_end: NaiveDate::from_ymd_opt(1998, 6, 30).unwrap(),
        json: false,
        plot: None,
    };
    let r = cli::eval(&args).expect("evaluation runs");
    println!("{r}");
    assert_eq!(r.customers, 2357);
    within("r", r.r, 0.243, 0.01);
    within("alpha", r.alpha, 4.414, 0.01);
    within("a", r.a, 0.793, 0.01);
    within("b", r.b, 2.426, 0.01);
    assert!(
        (r.log_likelihood - -9582.4).abs() <= 0.5,
        "log-likelihood {} vs -9582.4",
        r.log_likelihood
    );
    assert_eq!(r.cumulative_actual_week78, 4339.0);
    within(
        "cumulative forecast",
        r.cumulative_forecast_week78,
        4166.0,
        0.01,
    );
    assert_eq!(r.holdout_actual, 1882.0);
    within("holdout corr", r.holdout_corr, 0.626, 0.01);
    // The paper's under-forecast of the holdout period: about -12%.
    let bias = r.holdout_forecast / r.holdout_actual - 1.0;
    assert!((-0.14..-0.10).contains(&bias), "holdout bias {bias}");
    let published = [0.237, 0.697, 1.393, 1.560, 2.532, 2.947, 3.862, 6.359];
    for (row, want) in r.by_frequency.iter().zip(published) {
        assert!((row.actual - want).abs() < 5e-4, "{row:?} vs {want}");
    }
    let p = &r.pareto.fit;
    within("pareto r", p.params.r, 0.553, 0.01);
    within("pareto alpha", p.params.alpha, 10.578, 0.01);
    assert!(
        (p.log_likelihood - -9595.0).abs() <= 0.5,
        "{}",
        p.log_likelihood
    );
    within("gamma-gamma p", r.gamma_gamma.p, 6.25, 0.01);
    // Learned models are scored on the same customers and the report is complete.
    assert!(r.learned.classifiers.iter().all(|c| c.holdout_auc > 0.6));
    assert!(r
        .learned
        .count_models
        .iter()
        .any(|c| c.name == r.best_model));
    // The goal: the model chosen on the in-calibration backtest alone forecasts the
    // holdout total closer than BG/NBD and correlates better per customer.
    let min_rmse = r
        .learned
        .count_models
        .iter()
        .map(|c| c.backtest_rmse)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(r.learned.best().backtest_rmse, min_rmse);
    assert!(
        (r.best_holdout_forecast - r.holdout_actual).abs()
            < (r.holdout_forecast - r.holdout_actual).abs(),
        "best {} forecast {} vs BG/NBD {}",
        r.best_model,
        r.best_holdout_forecast,
        r.holdout_forecast
    );
    assert!(
        r.best_holdout_corr > r.holdout_corr,
        "best {} corr {} vs BG/NBD {}",
        r.best_model,
        r.best_holdout_corr,
        r.holdout_corr
    );
    // Customer split: the model selected on half A's in-calibration backtest alone
    // still beats plain BG/NBD on half B's holdout (total error and correlation).
    let split = &r.customer_split;
    assert_eq!(split.customers_a + split.customers_b, r.customers);
    assert_eq!(split.models_b.len(), r.learned.count_models.len());
    assert_eq!(split.sweep.seeds, 20);
    let min_a = split
        .backtest_rmse_a
        .iter()
        .map(|(_, v)| *v)
        .fold(f64::INFINITY, f64::min);
    assert!(split
        .backtest_rmse_a
        .iter()
        .any(|(n, v)| *n == split.selected && *v == min_a));
    assert!(
        split.selected_b.holdout_error_pct.abs() < split.bgnbd_b.holdout_error_pct.abs()
            && split.selected_b.holdout_corr > split.bgnbd_b.holdout_corr,
        "{split:?}"
    );
    for auc in [r.auc_supervised, r.auc_hybrid, r.auc_bgnbd_p_purchase] {
        assert!(auc > 0.7, "{auc}");
    }
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "r",
        "alpha",
        "log_likelihood",
        "holdout_corr",
        "best_model",
        "best_holdout_forecast",
        "best_holdout_corr",
        "customer_split",
        "auc_p_alive",
        "auc_supervised",
        "auc_hybrid",
        "published",
        "seconds",
    ] {
        assert!(json.get(key).is_some(), "missing key {key}");
    }
    assert!(r.to_string().contains("BG/NBD"));
}

#[test]
fn summary_matches_published_csv() {
    let log = PurchaseLog::read(&data_file("churn/CDNOW_sample.txt")).unwrap();
    let end = NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
    let mut ours: Vec<(i64, i64, i64)> = log
        .customers
        .iter()
        .filter_map(|c| c.rfm(end))
        .map(|r| {
            let cents = |v: f64| (v * 100.0).round() as i64;
            (r.frequency as i64, cents(r.recency), cents(r.t))
        })
        .collect();
    let csv = std::fs::read_to_string(data_file("churn/cdnow_customers_summary.csv")).unwrap();
    let mut theirs: Vec<(i64, i64, i64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<f64> = l.split(',').skip(1).map(|v| v.parse().unwrap()).collect();
            (
                f[0] as i64,
                (f[1] * 100.0).round() as i64,
                (f[2] * 100.0).round() as i64,
            )
        })
        .collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours.len(), theirs.len());
    let mismatches = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a.0 != b.0 || (a.1 - b.1).abs() > 1 || (a.2 - b.2).abs() > 1)
        .count();
    assert_eq!(
        mismatches, 0,
        "summaries differ from cdnow_customers_summary.csv"
    );
}
