//! The baselines' encoding (logistic regression and random forest need a dense numeric
//! matrix): numbers with the fit rows' median for a missing value plus a missing flag,
//! one-hot categoricals with at most [`ONE_HOT_MAX`] fit values, frequency and smoothed target
//! encodings for wider ones. Everything is fitted on the fit rows; target encoding of a fit
//! row is out-of-fold so a row never sees its own label.

use std::collections::HashMap;

use super::load::Table;
use crate::gbdt::{Column, MISSING_CODE};

/// Categorical columns with at most this many distinct fit values are one-hot encoded.
pub const ONE_HOT_MAX: usize = 16;
const TARGET_SMOOTHING: f64 = 20.0;
const FOLDS: usize = 5;

enum Encoder {
    Numeric {
        median: f64,
        has_missing: bool,
    },
    OneHot {
        values: Vec<u32>,
    },
    Target {
        freq: HashMap<u32, f64>,
        sums: HashMap<u32, (f64, f64)>,
        folds: Vec<HashMap<u32, (f64, f64)>>,
    },
}

/// Fitted encoders of every input column.
pub struct Encoding {
    encoders: Vec<Encoder>,
    /// Encoded feature names.
    pub names: Vec<String>,
    prior: f64,
    /// Fold of each fit row (by row index).
    fold_of: HashMap<usize, usize>,
}

impl Encoding {
    /// Fit on `fit` rows of `t`.
    pub fn fit(t: &Table, fit: &[usize]) -> Self {
        let prior = fit.iter().filter(|i| t.labels[**i]).count() as f64 / fit.len() as f64;
        let fold_of: HashMap<usize, usize> = fit
            .iter()
            .enumerate()
            .map(|(k, i)| (*i, k % FOLDS))
            .collect();
        let mut names = Vec::new();
        let mut encoders = Vec::new();
        for (c, (col, name)) in t.columns.iter().zip(&t.names).enumerate() {
            match col {
                Column::Numeric(v) => {
                    let mut vals: Vec<f64> = fit
                        .iter()
                        .map(|i| v[*i])
                        .filter(|x| x.is_finite())
                        .collect();
                    vals.sort_by(f64::total_cmp);
                    let median = vals.get(vals.len() / 2).copied().unwrap_or(0.0);
                    let has_missing = v.iter().any(|x| !x.is_finite());
                    names.push(name.clone());
                    if has_missing {
                        names.push(format!("{name}_missing"));
                    }
                    encoders.push(Encoder::Numeric {
                        median,
                        has_missing,
                    });
                }
                Column::Categorical(k) => {
                    let label_of = |code: u32| -> String {
                        if code == MISSING_CODE {
                            String::new()
                        } else {
                            t.categories[c][code as usize].clone()
                        }
                    };
                    let mut sums: HashMap<u32, (f64, f64)> = HashMap::new();
                    let mut folds = vec![HashMap::new(); FOLDS];
                    for &i in fit {
                        let y = f64::from(u8::from(t.labels[i]));
                        let e = sums.entry(k[i]).or_default();
                        e.0 += y;
                        e.1 += 1.0;
                        let e: &mut (f64, f64) = folds[fold_of[&i]].entry(k[i]).or_default();
                        e.0 += y;
                        e.1 += 1.0;
                    }
                    if sums.len() <= ONE_HOT_MAX {
                        let mut values: Vec<u32> = sums.into_keys().collect();
                        values.sort_by_key(|v| label_of(*v));
                        names.extend(values.iter().map(|v| format!("{name}={}", label_of(*v))));
                        encoders.push(Encoder::OneHot { values });
                    } else {
                        let freq = sums
                            .iter()
                            .map(|(k, v)| (*k, v.1 / fit.len() as f64))
                            .collect();
                        names.push(format!("{name}_freq"));
                        names.push(format!("{name}_target"));
                        encoders.push(Encoder::Target { freq, sums, folds });
                    }
                }
            }
        }
        Self {
            encoders,
            names,
            prior,
            fold_of,
        }
    }

    /// Encoded row `i`; `in_fit` rows get out-of-fold target encodings.
    pub fn row(&self, t: &Table, i: usize, in_fit: bool) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.names.len());
        for (e, col) in self.encoders.iter().zip(&t.columns) {
            match (e, col) {
                (
                    Encoder::Numeric {
                        median,
                        has_missing,
                    },
                    Column::Numeric(v),
                ) => {
                    let x = v[i];
                    out.push(if x.is_finite() { x } else { *median });
                    if *has_missing {
                        out.push(f64::from(u8::from(!x.is_finite())));
                    }
                }
                (Encoder::OneHot { values }, Column::Categorical(k)) => {
                    out.extend(values.iter().map(|v| f64::from(u8::from(*v == k[i]))))
                }
                (Encoder::Target { freq, sums, folds }, Column::Categorical(k)) => {
                    let v = k[i];
                    let minus = match (in_fit, self.fold_of.get(&i)) {
                        (true, Some(f)) => folds[*f].get(&v).copied().unwrap_or((0.0, 0.0)),
                        _ => (0.0, 0.0),
                    };
                    let (s, c) = sums.get(&v).copied().unwrap_or((0.0, 0.0));
                    let (s, c) = (s - minus.0, c - minus.1);
                    out.push(freq.get(&v).copied().unwrap_or(0.0));
                    out.push((s + TARGET_SMOOTHING * self.prior) / (c + TARGET_SMOOTHING));
                }
                _ => unreachable!("encoders are fitted column by column"),
            }
        }
        out
    }
}
