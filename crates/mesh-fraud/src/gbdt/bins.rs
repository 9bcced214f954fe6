//! Feature binning: every column becomes `u8` bins, [`MISSING_BIN`] for a missing value.
//!
//! Numeric columns get up to [`MAX_VALUE_BINS`] bins with quantile edges (midpoints between the
//! distinct values when there are fewer). Categorical columns give their most frequent
//! categories a bin each and pool the rest (rare, beyond the most frequent, or unseen in the fit
//! rows) into one `other` bin, so a column with thousands of values still fits in a byte.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Column, MISSING_CODE};

/// Bin of a missing value, in every column.
pub const MISSING_BIN: u8 = 255;
/// Most bins of non-missing values per column.
pub const MAX_VALUE_BINS: usize = 255;
/// Values sampled per column to place the quantile edges (as scikit-learn's HGB).
const EDGE_SAMPLE: usize = 200_000;

/// How one column maps to bins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BinMapper {
    /// `bin = number of edges < value`: value `<= edges[b]` falls in a bin `<= b`.
    Numeric {
        /// Increasing edges, at most `MAX_VALUE_BINS - 1`.
        edges: Vec<f64>,
    },
    /// `codes[b]` is the category code of bin `b`; other codes fall in bin `codes.len()`.
    Categorical {
        /// Codes of the categories with a bin of their own, most frequent first.
        codes: Vec<u32>,
        /// Same codes sorted, with their bins, for lookup.
        lookup: Vec<(u32, u8)>,
    },
}

impl BinMapper {
    /// Bins of non-missing values (including the `other` bin of a categorical).
    pub fn value_bins(&self) -> usize {
        match self {
            BinMapper::Numeric { edges } => edges.len() + 1,
            BinMapper::Categorical { codes, .. } => codes.len() + 1,
        }
    }

    /// Whether splits on this column are category sets.
    pub fn is_categorical(&self) -> bool {
        matches!(self, BinMapper::Categorical { .. })
    }

    /// Bin of a numeric value (NaN is missing).
    pub fn bin_value(&self, x: f64) -> u8 {
        match self {
            BinMapper::Numeric { edges } => {
                if x.is_nan() {
                    MISSING_BIN
                } else {
                    edges.partition_point(|e| *e < x) as u8
                }
            }
            BinMapper::Categorical { .. } => MISSING_BIN,
        }
    }

    /// Bin of a category code ([`MISSING_CODE`] is missing).
    pub fn bin_code(&self, code: u32) -> u8 {
        match self {
            BinMapper::Categorical { codes, lookup } => {
                if code == MISSING_CODE {
                    MISSING_BIN
                } else {
                    match lookup.binary_search_by_key(&code, |(c, _)| *c) {
                        Ok(i) => lookup[i].1,
                        Err(_) => codes.len() as u8,
                    }
                }
            }
            BinMapper::Numeric { .. } => MISSING_BIN,
        }
    }

    /// Fit on the values of `rows`.
    pub fn fit(column: &Column, rows: &[usize], min_category_count: usize, seed: u64) -> Self {
        match column {
            Column::Numeric(v) => {
                let mut vals: Vec<f64> = if rows.len() > EDGE_SAMPLE {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    sample(&mut rng, rows.len(), EDGE_SAMPLE)
                        .into_iter()
                        .map(|k| v[rows[k]])
                        .filter(|x| !x.is_nan())
                        .collect()
                } else {
                    rows.iter().map(|r| v[*r]).filter(|x| !x.is_nan()).collect()
                };
                vals.sort_by(f64::total_cmp);
                BinMapper::Numeric {
                    edges: numeric_edges(&vals),
                }
            }
            Column::Categorical(c) => {
                let mut counts: std::collections::HashMap<u32, usize> = Default::default();
                for r in rows {
                    if c[*r] != MISSING_CODE {
                        *counts.entry(c[*r]).or_default() += 1;
                    }
                }
                let mut by_count: Vec<(u32, usize)> = counts
                    .into_iter()
                    .filter(|(_, n)| *n >= min_category_count)
                    .collect();
                by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                // one bin is kept for the pooled `other` categories
                by_count.truncate(MAX_VALUE_BINS - 1);
                let codes: Vec<u32> = by_count.iter().map(|(c, _)| *c).collect();
                let mut lookup: Vec<(u32, u8)> = codes
                    .iter()
                    .enumerate()
                    .map(|(b, c)| (*c, b as u8))
                    .collect();
                lookup.sort_unstable();
                BinMapper::Categorical { codes, lookup }
            }
        }
    }
}

/// Edges from sorted non-missing values: midpoints between distinct values when they are
/// few, quantiles otherwise.
fn numeric_edges(sorted: &[f64]) -> Vec<f64> {
    let mut distinct: Vec<f64> = sorted.to_vec();
    distinct.dedup();
    // halves first: the midpoint of two values near f64::MAX must not overflow
    let mid = |a: f64, b: f64| {
        let m = a / 2.0 + b / 2.0;
        if m.is_finite() {
            m
        } else {
            a
        }
    };
    if distinct.len() <= MAX_VALUE_BINS {
        return distinct.windows(2).map(|w| mid(w[0], w[1])).collect();
    }
    let n = sorted.len();
    let mut edges: Vec<f64> = (1..MAX_VALUE_BINS)
        .map(|k| {
            // midpoint percentile of the k-th of MAX_VALUE_BINS quantiles
            let pos = k as f64 / MAX_VALUE_BINS as f64 * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            mid(sorted[lo], sorted[hi])
        })
        .collect();
    edges.dedup();
    // an edge equal to the largest value would leave an empty last bin
    while edges.last().is_some_and(|e| *e >= sorted[n - 1]) {
        edges.pop();
    }
    edges
}

/// Column-major `u8` bins of some rows: `col(f)[i]` is row `i`'s bin of feature `f`.
#[derive(Debug, Clone)]
pub struct Binned {
    /// Rows.
    pub n_rows: usize,
    data: Vec<u8>,
}

impl Binned {
    /// Bin `rows` of `columns` (one rayon task per column).
    pub fn new(columns: &[Column], mappers: &[BinMapper], rows: &[usize]) -> Self {
        let n = rows.len();
        let mut data = vec![0u8; n * columns.len()];
        if n > 0 {
            data.par_chunks_mut(n)
                .zip(columns.par_iter().zip(mappers))
                .for_each(|(out, (col, m))| match col {
                    Column::Numeric(v) => {
                        for (o, r) in out.iter_mut().zip(rows) {
                            *o = m.bin_value(v[*r]);
                        }
                    }
                    Column::Categorical(c) => {
                        for (o, r) in out.iter_mut().zip(rows) {
                            *o = m.bin_code(c[*r]);
                        }
                    }
                });
        }
        Self { n_rows: n, data }
    }

    /// Bins of feature `f`.
    pub fn col(&self, f: usize) -> &[u8] {
        &self.data[f * self.n_rows..(f + 1) * self.n_rows]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_values_get_midpoints_and_many_get_quantiles() {
        let m = BinMapper::fit(
            &Column::Numeric(vec![1.0, 2.0, 2.0, 4.0]),
            &[0, 1, 2, 3],
            1,
            0,
        );
        let BinMapper::Numeric { edges } = &m else {
            panic!()
        };
        assert_eq!(edges, &vec![1.5, 3.0]);
        assert_eq!(m.bin_value(1.0), 0);
        assert_eq!(m.bin_value(2.0), 1);
        assert_eq!(m.bin_value(100.0), 2);
        assert_eq!(m.bin_value(f64::NAN), MISSING_BIN);
        let v: Vec<f64> = (0..10_000).map(|i| (i as f64).powi(3)).collect();
        let rows: Vec<usize> = (0..v.len()).collect();
        let m = BinMapper::fit(&Column::Numeric(v.clone()), &rows, 1, 0);
        assert_eq!(m.value_bins(), MAX_VALUE_BINS);
        let mut counts = [0usize; 256];
        for x in &v {
            counts[m.bin_value(*x) as usize] += 1;
        }
        assert!(counts[..MAX_VALUE_BINS]
            .iter()
            .all(|c| (35..=45).contains(c)));
    }

    #[test]
    fn rare_and_unseen_categories_share_the_other_bin() {
        let mut codes = vec![];
        for c in 0..300u32 {
            codes.extend(std::iter::repeat_n(c, if c < 10 { 50 } else { 2 }));
        }
        codes.push(MISSING_CODE);
        let rows: Vec<usize> = (0..codes.len()).collect();
        let m = BinMapper::fit(&Column::Categorical(codes), &rows, 5, 0);
        assert_eq!(m.value_bins(), 11);
        assert!(m.bin_code(3) < 10);
        assert_eq!(m.bin_code(200), 10);
        assert_eq!(m.bin_code(99_999), 10);
        assert_eq!(m.bin_code(MISSING_CODE), MISSING_BIN);
    }
}
