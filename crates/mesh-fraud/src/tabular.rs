//! Generic trainer for any labelled table: numeric and categorical columns, a binary label and
//! a time column. Trains on the earliest 80% by time and scores the latest 20%.
//!
//! Categoricals with at most [`ONE_HOT_MAX`] train values are one-hot encoded; wider ones get a
//! frequency encoding and a smoothed target encoding. Every encoding is fitted on the train
//! part only; target encoding of train rows is out-of-fold so a row never sees its own label.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::iforest::IsolationForest;
use crate::metrics::Metrics;
use crate::model::{train_matrix, TrainParams};

/// Categorical columns with at most this many distinct train values are one-hot encoded.
pub const ONE_HOT_MAX: usize = 16;
const TARGET_SMOOTHING: f64 = 20.0;
const FOLDS: usize = 5;

/// Result of [`eval_table`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TabularReport {
    /// Input file.
    pub csv: String,
    /// Label column.
    pub label: String,
    /// Time column.
    pub time: String,
    /// Data rows.
    pub rows: usize,
    /// Train rows (earliest 80%).
    pub train_rows: usize,
    /// Holdout rows (latest 20%).
    pub test_rows: usize,
    /// Positives in train / holdout.
    pub train_positives: usize,
    /// Positives in the holdout.
    pub test_positives: usize,
    /// Numeric input columns.
    pub numeric_columns: Vec<String>,
    /// Categorical input columns.
    pub categorical_columns: Vec<String>,
    /// Width of the encoded matrix.
    pub encoded_features: usize,
    /// Logistic regression on the holdout.
    pub logistic: Metrics,
    /// Random forest on the holdout.
    pub forest: Metrics,
    /// Isolation forest (unsupervised) on the holdout.
    pub anomaly: Metrics,
}

fn parse_label(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "t" | "yes" | "y" => Some(true),
        "0" | "0.0" | "false" | "f" | "no" | "n" => Some(false),
        _ => None,
    }
}

fn parse_time(v: &str) -> Option<f64> {
    let v = v.trim();
    if let Ok(x) = v.parse::<f64>() {
        return Some(x);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp() as f64);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, fmt) {
            return Some(t.and_utc().timestamp() as f64);
        }
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp() as f64)
}

enum Encoder {
    Numeric {
        col: usize,
        median: f64,
        has_missing: bool,
    },
    OneHot {
        col: usize,
        values: Vec<String>,
    },
    Target {
        col: usize,
        freq: HashMap<String, f64>,
        sums: HashMap<String, (f64, f64)>,
        prior: f64,
    },
}

fn smoothed(sums: &HashMap<String, (f64, f64)>, v: &str, prior: f64, minus: (f64, f64)) -> f64 {
    let (s, c) = sums.get(v).copied().unwrap_or((0.0, 0.0));
    let (s, c) = (s - minus.0, c - minus.1);
    (s + TARGET_SMOOTHING * prior) / (c + TARGET_SMOOTHING)
}

/// Train on the earliest 80% of `path` by `time`, report on the latest 20%.
pub fn eval_table(
    path: &Path,
    label: &str,
    time: &str,
    drop: &[String],
    params: &TrainParams,
) -> Result<TabularReport> {
    let p = path.display().to_string();
    let csv_err = |m: String| Error::Csv {
        path: p.clone(),
        message: m,
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| csv_err(e.to_string()))?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_err(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let find = |c: &str| {
        headers
            .iter()
            .position(|h| h == c)
            .ok_or_else(|| Error::MissingColumn {
                path: p.clone(),
                column: c.to_string(),
                available: headers.join(", "),
            })
    };
    let (li, ti) = (find(label)?, find(time)?);
    for d in drop {
        find(d)?;
    }
    let mut records: Vec<Vec<String>> = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| csv_err(format!("row {}: {e}", i + 2)))?;
        records.push(r.iter().map(str::to_string).collect());
    }
    if records.len() < 10 {
        return Err(csv_err(format!(
            "need at least 10 data rows, got {}",
            records.len()
        )));
    }
    let mut labels = Vec::with_capacity(records.len());
    let mut bad: BTreeSet<String> = BTreeSet::new();
    for r in &records {
        match parse_label(&r[li]) {
            Some(l) => labels.push(l),
            None => {
                bad.insert(r[li].clone());
            }
        }
    }
    if !bad.is_empty() {
        let shown: Vec<_> = bad.iter().take(5).map(|s| format!("{s:?}")).collect();
        return Err(Error::NonBinaryLabel {
            path: p,
            column: label.to_string(),
            message: format!(
                "values {} are not 0/1, true/false or yes/no",
                shown.join(", ")
            ),
        });
    }
    if labels.iter().all(|l| *l) || labels.iter().all(|l| !*l) {
        return Err(Error::NonBinaryLabel {
            path: p,
            column: label.to_string(),
            message: "only one class present".into(),
        });
    }
    let mut times = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        times.push(parse_time(&r[ti]).ok_or_else(|| {
            csv_err(format!(
                "row {}: time column `{time}` value {:?} is not a number or a date",
                i + 2,
                r[ti]
            ))
        })?);
    }
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|a, b| times[*a].total_cmp(&times[*b]));
    let n_train = records.len() * 4 / 5;
    let (train_idx, test_idx) = order.split_at(n_train);

    // fit encoders on train rows only
    let inputs: Vec<usize> = (0..headers.len())
        .filter(|c| *c != li && *c != ti && !drop.contains(&headers[*c]))
        .collect();
    let prior = train_idx.iter().filter(|i| labels[**i]).count() as f64 / n_train as f64;
    let (mut numeric_columns, mut categorical_columns, mut encoders) = (vec![], vec![], vec![]);
    for &c in &inputs {
        let is_numeric = records
            .iter()
            .all(|r| r[c].trim().is_empty() || r[c].trim().parse::<f64>().is_ok());
        if is_numeric {
            let mut vals: Vec<f64> = train_idx
                .iter()
                .filter_map(|i| records[*i][c].trim().parse().ok())
                .collect();
            vals.sort_by(f64::total_cmp);
            let median = vals.get(vals.len() / 2).copied().unwrap_or(0.0);
            let has_missing = records.iter().any(|r| r[c].trim().is_empty());
            numeric_columns.push(headers[c].clone());
            encoders.push(Encoder::Numeric {
                col: c,
                median,
                has_missing,
            });
        } else {
            categorical_columns.push(headers[c].clone());
            let mut counts: HashMap<String, (f64, f64)> = HashMap::new();
            for &i in train_idx {
                let e = counts.entry(records[i][c].clone()).or_default();
                e.0 += f64::from(u8::from(labels[i]));
                e.1 += 1.0;
            }
            if counts.len() <= ONE_HOT_MAX {
                let mut values: Vec<String> = counts.into_keys().collect();
                values.sort();
                encoders.push(Encoder::OneHot { col: c, values });
            } else {
                let freq = counts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.1 / n_train as f64))
                    .collect();
                encoders.push(Encoder::Target {
                    col: c,
                    freq,
                    sums: counts,
                    prior,
                });
            }
        }
    }
    let mut names = Vec::new();
    for e in &encoders {
        match e {
            Encoder::Numeric {
                col, has_missing, ..
            } => {
                names.push(headers[*col].clone());
                if *has_missing {
                    names.push(format!("{}_missing", headers[*col]));
                }
            }
            Encoder::OneHot { col, values } => {
                names.extend(values.iter().map(|v| format!("{}={v}", headers[*col])))
            }
            Encoder::Target { col, .. } => {
                names.push(format!("{}_freq", headers[*col]));
                names.push(format!("{}_target", headers[*col]));
            }
        }
    }
    if names.is_empty() {
        return Err(csv_err(
            "no input columns left after label, time and dropped columns".into(),
        ));
    }
    // out-of-fold target sums for train rows
    let fold_of: HashMap<usize, usize> = train_idx
        .iter()
        .enumerate()
        .map(|(k, i)| (*i, k % FOLDS))
        .collect();
    let fold_sums: Vec<Vec<HashMap<String, (f64, f64)>>> = encoders
        .iter()
        .map(|e| match e {
            Encoder::Target { col, .. } => {
                let mut per = vec![HashMap::new(); FOLDS];
                for &i in train_idx {
                    let s: &mut (f64, f64) = per[fold_of[&i]]
                        .entry(records[i][*col].clone())
                        .or_default();
                    s.0 += f64::from(u8::from(labels[i]));
                    s.1 += 1.0;
                }
                per
            }
            _ => Vec::new(),
        })
        .collect();
    let encode = |i: usize, in_train: bool| -> Vec<f64> {
        let r = &records[i];
        let mut out = Vec::with_capacity(names.len());
        for (ei, e) in encoders.iter().enumerate() {
            match e {
                Encoder::Numeric {
                    col,
                    median,
                    has_missing,
                } => {
                    let v = r[*col].trim().parse::<f64>().ok();
                    out.push(v.unwrap_or(*median));
                    if *has_missing {
                        out.push(f64::from(u8::from(v.is_none())));
                    }
                }
                Encoder::OneHot { col, values } => {
                    out.extend(values.iter().map(|v| f64::from(u8::from(*v == r[*col]))))
                }
                Encoder::Target {
                    col,
                    freq,
                    sums,
                    prior,
                } => {
                    let v = &r[*col];
                    let minus = if in_train {
                        fold_sums[ei][fold_of[&i]]
                            .get(v)
                            .copied()
                            .unwrap_or((0.0, 0.0))
                    } else {
                        (0.0, 0.0)
                    };
                    out.push(freq.get(v).copied().unwrap_or(0.0));
                    out.push(smoothed(sums, v, *prior, minus));
                }
            }
        }
        out
    };
    let x_train: Vec<Vec<f64>> = train_idx.iter().map(|i| encode(*i, true)).collect();
    let y_train: Vec<bool> = train_idx.iter().map(|i| labels[*i]).collect();
    let x_test: Vec<Vec<f64>> = test_idx.iter().map(|i| encode(*i, false)).collect();
    let y_test: Vec<bool> = test_idx.iter().map(|i| labels[*i]).collect();
    if !y_test.iter().any(|l| *l) {
        return Err(csv_err(
            "the latest 20% by time holds no positive label; cannot score".into(),
        ));
    }
    let model = train_matrix(&x_train, &y_train, names.clone(), params)?;
    let lr: Vec<f64> = x_test
        .iter()
        .map(|x| model.score_lr(x))
        .collect::<Result<_>>()?;
    let rf = model.score_rf_batch(&x_test)?;
    let iso = IsolationForest::fit(&x_train, 100, 256, params.seed)?;
    let an: Vec<f64> = x_test.iter().map(|x| iso.score(x)).collect();
    Ok(TabularReport {
        csv: p,
        label: label.to_string(),
        time: time.to_string(),
        rows: records.len(),
        train_rows: x_train.len(),
        test_rows: x_test.len(),
        train_positives: y_train.iter().filter(|l| **l).count(),
        test_positives: y_test.iter().filter(|l| **l).count(),
        numeric_columns,
        categorical_columns,
        encoded_features: names.len(),
        logistic: Metrics::compute(&lr, &y_test),
        forest: Metrics::compute(&rf, &y_test),
        anomaly: Metrics::compute(&an, &y_test),
    })
}
