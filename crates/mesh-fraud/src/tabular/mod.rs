//! Generic trainer for any labelled table: numeric and categorical columns (missing values
//! allowed anywhere), a binary label and a time column.
//!
//! Rows are ordered by time: the earliest 80% train, the latest 20% are the test split. The
//! latest [`TabularOptions::validation_fraction`] of the training period is the validation
//! slice: models are fitted on the rows before it, the GBDT stops early on it, and the
//! reported `best_model` is the one with the best validation PR-AUC. The test split is only
//! scored, after every choice is made.
//!
//! Models: gradient-boosted trees ([`crate::gbdt`]) on the raw typed columns; logistic
//! regression and random forest on a dense encoding ([`encode`]); an isolation forest score.
//!
//! # Layout
//! - [`load`] — CSV to typed columns ([`Table`]).
//! - [`encode`] — the baselines' dense encoding.
//! - [`synth`] — seeded wide synthetic tables.

pub mod encode;
pub mod load;
pub mod synth;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gbdt::{Column, Gbdt, GbdtParams};
use crate::iforest::IsolationForest;
use crate::metrics::Metrics;
use crate::model::{train_matrix, TrainParams};

pub use encode::ONE_HOT_MAX;
pub use load::{load_csv, Table};

/// A model of the tabular evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TabularModel {
    /// Gradient-boosted trees on the typed columns.
    Gbdt,
    /// Random forest on the dense encoding.
    Forest,
    /// Logistic regression on the dense encoding.
    Logistic,
    /// Isolation forest (unsupervised) on the dense encoding.
    Anomaly,
}

impl TabularModel {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            TabularModel::Gbdt => "gbdt",
            TabularModel::Forest => "forest",
            TabularModel::Logistic => "logistic",
            TabularModel::Anomaly => "anomaly",
        }
    }

    /// Every model, in the order reports list them.
    pub const ALL: [TabularModel; 4] = [
        TabularModel::Gbdt,
        TabularModel::Forest,
        TabularModel::Logistic,
        TabularModel::Anomaly,
    ];
}

/// What [`eval_table`] trains and how.
#[derive(Debug, Clone)]
pub struct TabularOptions {
    /// Models to train.
    pub models: Vec<TabularModel>,
    /// GBDT hyper-parameters.
    pub gbdt: GbdtParams,
    /// Baselines' hyper-parameters.
    pub baselines: TrainParams,
    /// Share of the training period (its latest rows) held out for validation.
    pub validation_fraction: f64,
    /// Most fit rows the baselines (forest, logistic, isolation forest) train on; 0 = all.
    /// Above it they get a seeded uniform sample of that many ([`baseline_rows`]): their dense encoding and smartcore's forest cost minutes and
    /// gigabytes on a few hundred thousand rows, while the GBDT always fits every row.
    pub baseline_max_rows: usize,
}

/// Default of [`TabularOptions::baseline_max_rows`].
pub const BASELINE_MAX_ROWS: usize = 50_000;

impl Default for TabularOptions {
    fn default() -> Self {
        Self {
            models: TabularModel::ALL.to_vec(),
            gbdt: GbdtParams::default(),
            baselines: TrainParams::default(),
            validation_fraction: 0.1,
            baseline_max_rows: BASELINE_MAX_ROWS,
        }
    }
}

/// The fit rows the baselines train on, in their time order: all of `fit` when it holds at
/// most `cap` rows (or `cap` is 0), else a seeded uniform sample of `cap` of them. Uniform, so
/// the cap changes only how much the baselines see, not the class balance they learn from
/// (a sample enriched in positives was tried: on the flights table it moved the choice on the
/// validation slice to a forest that was worse on the test split, ARCHITECTURE.md).
pub fn baseline_rows(fit: &[usize], cap: usize, seed: u64) -> Vec<usize> {
    use rand::SeedableRng;
    if cap == 0 || fit.len() <= cap {
        return fit.to_vec();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut keep = rand::seq::index::sample(&mut rng, fit.len(), cap).into_vec();
    keep.sort_unstable();
    keep.into_iter().map(|p| fit[p]).collect()
}

/// Result of [`eval_table`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TabularReport {
    /// Input file.
    pub csv: String,
    /// Label column.
    pub label: String,
    /// Time column.
    pub time: String,
    /// Model with the best validation PR-AUC.
    pub best_model: String,
    /// Test ROC-AUC of `best_model`.
    pub roc_auc: f64,
    /// Test PR-AUC (average precision) of `best_model`.
    pub pr_auc: f64,
    /// Data rows.
    pub rows: usize,
    /// Training period rows (earliest 80%): fit rows + validation rows.
    pub train_rows: usize,
    /// Latest rows of the training period, used for early stopping and model choice.
    pub validation_rows: usize,
    /// Test rows (latest 20%).
    pub test_rows: usize,
    /// Positives in the training period.
    pub train_positives: usize,
    /// Positives in the validation slice.
    pub validation_positives: usize,
    /// Positives in the test split.
    pub test_positives: usize,
    /// Numeric input columns.
    pub numeric_columns: Vec<String>,
    /// Categorical input columns.
    pub categorical_columns: Vec<String>,
    /// Input columns with at least one missing value.
    pub columns_with_missing: usize,
    /// Width of the baselines' encoded matrix (0 when no baseline ran).
    pub encoded_features: usize,
    /// Fit rows the baselines trained on (all, or the sample of
    /// [`TabularOptions::baseline_max_rows`]); 0 when no baseline ran.
    #[serde(default)]
    pub baseline_fit_rows: usize,
    /// Gradient-boosted trees on the test split.
    pub gbdt: Option<Metrics>,
    /// Logistic regression on the test split.
    pub logistic: Option<Metrics>,
    /// Random forest on the test split.
    pub forest: Option<Metrics>,
    /// Isolation forest (unsupervised) on the test split.
    pub anomaly: Option<Metrics>,
    /// Every model on the validation slice.
    pub validation: BTreeMap<String, Metrics>,
    /// Seconds to train (and bin / encode for) each model; `logistic+forest` are fitted
    /// together.
    pub train_secs: BTreeMap<String, f64>,
    /// CPU seconds (all threads) spent training the GBDT: on a shared machine a fairer figure
    /// than the wall clock of `train_secs`.
    pub gbdt_cpu_secs: Option<f64>,
    /// Seconds to read the CSV (0 for an in-memory table).
    pub load_secs: f64,
    /// GBDT rounds fitted / trees kept at the best validation round.
    pub gbdt_rounds: usize,
    /// Trees kept.
    pub gbdt_trees: usize,
    /// Columns with the most GBDT split gain (share of the total).
    pub gbdt_top_features: Vec<(String, f64)>,
    /// Peak resident memory (VmHWM, MiB) right after the GBDT was trained and scored.
    pub peak_rss_mib_after_gbdt: Option<f64>,
    /// Peak resident memory (VmHWM, MiB) of the whole evaluation.
    pub peak_rss_mib: Option<f64>,
}

/// CPU seconds (user + system, all threads) this process has used, from `/proc/self/stat`
/// (clock ticks of 1/100 s, the Linux `USER_HZ`).
pub fn cpu_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size of this process (VmHWM of `/proc/self/status`), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Train on the earliest 80% of `path` by `time`, report on the latest 20%.
pub fn eval_table(
    path: &Path,
    label: &str,
    time: &str,
    drop: &[String],
    opts: &TabularOptions,
) -> Result<TabularReport> {
    let t0 = Instant::now();
    let table = load_csv(path, label, time, drop)?;
    let load_secs = t0.elapsed().as_secs_f64();
    let mut r = eval_loaded(&table, opts)?;
    r.csv = path.display().to_string();
    r.label = label.to_string();
    r.time = time.to_string();
    r.load_secs = load_secs;
    Ok(r)
}

/// Row indices of a table split by time: fit, validation, test.
pub struct TimeSplit {
    /// Training period before the validation slice.
    pub fit: Vec<usize>,
    /// Latest rows of the training period.
    pub validation: Vec<usize>,
    /// Latest 20%.
    pub test: Vec<usize>,
}

/// Earliest 80% by time train (their latest `validation_fraction` validate), latest 20% test.
pub fn time_split(times: &[f64], validation_fraction: f64) -> Result<TimeSplit> {
    let n = times.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| times[*a].total_cmp(&times[*b]));
    let n_train = n * 4 / 5;
    let n_val = (n_train as f64 * validation_fraction.clamp(0.0, 0.5)).round() as usize;
    if n_train - n_val < 10 {
        return Err(Error::Invalid(format!(
            "{n} rows leave {} fit rows; need at least 10",
            n_train - n_val
        )));
    }
    Ok(TimeSplit {
        fit: order[..n_train - n_val].to_vec(),
        validation: order[n_train - n_val..n_train].to_vec(),
        test: order[n_train..].to_vec(),
    })
}

/// [`eval_table`] on a table already in memory.
pub fn eval_loaded(table: &Table, opts: &TabularOptions) -> Result<TabularReport> {
    let split = time_split(&table.times, opts.validation_fraction)?;
    let labels_of =
        |rows: &[usize]| -> Vec<bool> { rows.iter().map(|i| table.labels[*i]).collect() };
    let (y_fit, y_val, y_test) = (
        labels_of(&split.fit),
        labels_of(&split.validation),
        labels_of(&split.test),
    );
    let count = |y: &[bool]| y.iter().filter(|l| **l).count();
    if count(&y_test) == 0 {
        return Err(Error::Invalid(
            "the latest 20% by time holds no positive label; cannot score".into(),
        ));
    }
    if count(&y_fit) == 0 {
        return Err(Error::Invalid(
            "the training period before the validation slice holds no positive label".into(),
        ));
    }
    let wants = |m: TabularModel| opts.models.contains(&m);
    let mut test: BTreeMap<&str, Metrics> = BTreeMap::new();
    let mut validation: BTreeMap<String, Metrics> = BTreeMap::new();
    let mut train_secs = BTreeMap::new();
    let (mut gbdt_rounds, mut gbdt_trees, mut gbdt_top_features) = (0, 0, Vec::new());
    let mut rss_after_gbdt = None;
    let mut gbdt_cpu = None;

    if wants(TabularModel::Gbdt) {
        let (t, cpu0) = (Instant::now(), cpu_secs());
        let model = Gbdt::fit(
            &table.columns,
            &table.labels,
            &split.fit,
            &split.validation,
            &opts.gbdt,
        )?;
        train_secs.insert("gbdt".to_string(), t.elapsed().as_secs_f64());
        gbdt_cpu = cpu_secs().zip(cpu0).map(|(b, a)| b - a);
        let pv = model.predict(&table.columns, &split.validation)?;
        let pt = model.predict(&table.columns, &split.test)?;
        validation.insert("gbdt".into(), Metrics::compute(&pv, &y_val));
        test.insert("gbdt", Metrics::compute(&pt, &y_test));
        gbdt_rounds = model.rounds_fitted;
        gbdt_trees = model.trees.len();
        let imp = model.importance();
        let total: f64 = imp.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let mut top: Vec<(String, f64)> = table
            .names
            .iter()
            .cloned()
            .zip(imp.iter().map(|g| g / total))
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(10);
        gbdt_top_features = top;
        rss_after_gbdt = peak_rss_mib();
    }
    let mut encoded_features = 0;
    let mut baseline_fit_rows = 0;
    if wants(TabularModel::Forest) || wants(TabularModel::Logistic) || wants(TabularModel::Anomaly)
    {
        let t = Instant::now();
        let base_fit = baseline_rows(&split.fit, opts.baseline_max_rows, opts.baselines.seed);
        baseline_fit_rows = base_fit.len();
        let y_fit = labels_of(&base_fit);
        let enc = encode::Encoding::fit(table, &base_fit);
        encoded_features = enc.names.len();
        let rows = |idx: &[usize], in_fit: bool| -> Vec<Vec<f64>> {
            idx.iter().map(|i| enc.row(table, *i, in_fit)).collect()
        };
        let (x_fit, x_val, x_test) = (
            rows(&base_fit, true),
            rows(&split.validation, false),
            rows(&split.test, false),
        );
        let encode_secs = t.elapsed().as_secs_f64();
        if wants(TabularModel::Forest) || wants(TabularModel::Logistic) {
            let t = Instant::now();
            let baselines = TrainParams {
                fit_gbdt: false,
                ..opts.baselines.clone()
            };
            let model = train_matrix(&x_fit, &y_fit, enc.names.clone(), &baselines)?;
            train_secs.insert(
                "logistic+forest".to_string(),
                encode_secs + t.elapsed().as_secs_f64(),
            );
            for (m, name) in [
                (TabularModel::Logistic, "logistic"),
                (TabularModel::Forest, "forest"),
            ] {
                if !wants(m) {
                    continue;
                }
                let score = |x: &[Vec<f64>]| -> Result<Vec<f64>> {
                    match m {
                        TabularModel::Logistic => x.iter().map(|r| model.score_lr(r)).collect(),
                        _ => model.score_rf_batch(x),
                    }
                };
                validation.insert(name.into(), Metrics::compute(&score(&x_val)?, &y_val));
                test.insert(name, Metrics::compute(&score(&x_test)?, &y_test));
            }
        }
        if wants(TabularModel::Anomaly) {
            let t = Instant::now();
            let iso = IsolationForest::fit(&x_fit, 100, 256, opts.baselines.seed)?;
            train_secs.insert("anomaly".to_string(), t.elapsed().as_secs_f64());
            let score = |x: &[Vec<f64>]| -> Vec<f64> { x.iter().map(|r| iso.score(r)).collect() };
            validation.insert("anomaly".into(), Metrics::compute(&score(&x_val), &y_val));
            test.insert("anomaly", Metrics::compute(&score(&x_test), &y_test));
        }
    }
    // best validation PR-AUC; ties and NaN (no validation positive) keep the earlier model
    let mut best: Option<(&str, f64)> = None;
    for m in TabularModel::ALL {
        if let Some(v) = validation.get(m.name()) {
            let s = if v.pr_auc.is_nan() {
                f64::NEG_INFINITY
            } else {
                v.pr_auc
            };
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((m.name(), s));
            }
        }
    }
    let Some((best_model, _)) = best else {
        return Err(Error::Invalid(
            "no model selected (--models is empty)".into(),
        ));
    };
    let best_test = test[best_model];
    let numeric_columns = table
        .names
        .iter()
        .zip(&table.columns)
        .filter(|(_, c)| matches!(c, Column::Numeric(_)))
        .map(|(n, _)| n.clone())
        .collect();
    let categorical_columns = table
        .names
        .iter()
        .zip(&table.columns)
        .filter(|(_, c)| matches!(c, Column::Categorical(_)))
        .map(|(n, _)| n.clone())
        .collect();
    let columns_with_missing = table
        .columns
        .iter()
        .filter(|c| match c {
            Column::Numeric(v) => v.iter().any(|x| x.is_nan()),
            Column::Categorical(k) => k.contains(&crate::gbdt::MISSING_CODE),
        })
        .count();
    Ok(TabularReport {
        csv: String::new(),
        label: String::new(),
        time: String::new(),
        best_model: best_model.to_string(),
        roc_auc: best_test.roc_auc,
        pr_auc: best_test.pr_auc,
        rows: table.rows(),
        train_rows: split.fit.len() + split.validation.len(),
        validation_rows: split.validation.len(),
        test_rows: split.test.len(),
        train_positives: count(&y_fit) + count(&y_val),
        validation_positives: count(&y_val),
        test_positives: count(&y_test),
        numeric_columns,
        categorical_columns,
        columns_with_missing,
        encoded_features,
        baseline_fit_rows,
        gbdt: test.get("gbdt").copied(),
        logistic: test.get("logistic").copied(),
        forest: test.get("forest").copied(),
        anomaly: test.get("anomaly").copied(),
        validation,
        train_secs,
        gbdt_cpu_secs: gbdt_cpu,
        load_secs: 0.0,
        gbdt_rounds,
        gbdt_trees,
        gbdt_top_features,
        peak_rss_mib_after_gbdt: rss_after_gbdt,
        peak_rss_mib: peak_rss_mib(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_rows_are_a_seeded_uniform_sample_in_time_order() {
        // 10,000 fit rows in time order (every third index)
        let fit: Vec<usize> = (0..10_000).map(|i| i * 3).collect();
        let rows = baseline_rows(&fit, 1_000, 7);
        assert_eq!(rows.len(), 1_000);
        assert!(rows.windows(2).all(|w| w[0] < w[1]), "time order kept");
        assert!(rows.iter().all(|i| i % 3 == 0), "only fit rows");
        // spread over the whole period, not its start
        let late = rows.iter().filter(|&&i| i >= 15_000).count();
        assert!((400..600).contains(&late), "{late}");
        assert_eq!(rows, baseline_rows(&fit, 1_000, 7), "seeded");
        assert_ne!(rows, baseline_rows(&fit, 1_000, 8));
        // at or under the cap, or no cap: every row
        assert_eq!(baseline_rows(&fit, 10_000, 7), fit);
        assert_eq!(baseline_rows(&fit, 0, 7), fit);
    }
}
