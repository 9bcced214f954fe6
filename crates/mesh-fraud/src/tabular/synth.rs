//! Seeded wide synthetic transaction tables to develop and test the tabular trainer on: hundreds
//! of columns, blocks of columns missing together (as in card-transaction exports where a
//! group of fields is only filled for some products), informative missingness, heavy-tailed
//! amounts, high-cardinality categoricals with per-category risk, a time column with a mild
//! drift, and 1–3% positives. The label is a known nonlinear function of a few latent
//! columns, so a model's ranking can be judged against the truth.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal, Zipf};
use rayon::prelude::*;

use super::load::Table;
use crate::error::{Error, Result};
use crate::gbdt::{Column, MISSING_CODE};

/// Shape of a synthetic table.
#[derive(Debug, Clone)]
pub struct SynthParams {
    /// Rows.
    pub rows: usize,
    /// Numeric columns (at least 10: amount and the latent ones come first).
    pub numeric: usize,
    /// Categorical columns (at least 4: product, email domain, merchant, device).
    pub categorical: usize,
    /// Target share of positives.
    pub positive_rate: f64,
    /// Distinct merchants (the high-cardinality categorical).
    pub merchants: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            rows: 20_000,
            numeric: 200,
            categorical: 10,
            positive_rate: 0.02,
            merchants: 3_000,
            seed: 1,
        }
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// Generate the table (columns first numeric, then categorical).
pub fn wide_table(p: &SynthParams) -> Result<Table> {
    if p.numeric < 10 || p.categorical < 4 || p.rows < 10 || p.merchants < 2 {
        return Err(Error::Invalid(
            "synthetic table needs >= 10 rows, >= 10 numeric and >= 4 categorical columns, >= 2 merchants"
                .into(),
        ));
    }
    let n = p.rows;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    // latent row state
    let z: Vec<[f64; 8]> = (0..n)
        .map(|_| std::array::from_fn(|_| normal(&mut rng)))
        .collect();
    let amount_d: LogNormal<f64> = LogNormal::new(3.5, 1.3).expect("valid lognormal");
    let amount: Vec<f64> = (0..n)
        .map(|_| (amount_d.sample(&mut rng) * 100.0).round() / 100.0)
        .collect();
    let product: Vec<u32> = (0..n)
        .map(|_| {
            let u: f64 = rng.random();
            if u < 0.6 {
                0
            } else if u < 0.8 {
                1
            } else if u < 0.9 {
                2
            } else if u < 0.97 {
                3
            } else {
                4
            }
        })
        .collect();
    let zipf_m = Zipf::new(p.merchants as f64, 1.1).expect("valid zipf");
    let merchant: Vec<u32> = (0..n).map(|_| zipf_m.sample(&mut rng) as u32 - 1).collect();
    let merchant_risk: Vec<f64> = (0..p.merchants)
        .map(|_| {
            let r = normal(&mut rng);
            // a few merchants carry most of the category risk
            if r > 1.5 {
                1.5 * r
            } else {
                0.3 * r
            }
        })
        .collect();
    let zipf_e = Zipf::new(60.0, 1.3).expect("valid zipf");
    let email: Vec<u32> = (0..n).map(|_| zipf_e.sample(&mut rng) as u32 - 1).collect();
    let email_risk: Vec<f64> = (0..60).map(|_| 0.5 * normal(&mut rng)).collect();
    let device: Vec<u32> = (0..n)
        .map(|_| {
            if rng.random::<f64>() < 0.4 {
                MISSING_CODE
            } else {
                rng.random_range(0..800)
            }
        })
        .collect();
    let z5_missing: Vec<bool> = (0..n)
        .map(|i| rng.random::<f64>() < if product[i] == 3 { 0.7 } else { 0.2 })
        .collect();
    let times: Vec<f64> = (0..n)
        .map(|i| 1_700_000_000.0 + i as f64 * 30.0 + rng.random_range(0.0..30.0))
        .collect();
    // the known function
    let logit: Vec<f64> = (0..n)
        .map(|i| {
            let z = &z[i];
            let mut s = 1.4 * f64::from(u8::from(z[0] > 1.0 && z[1] < 0.0))
                + 0.9 * (2.0 * z[2]).sin()
                + 0.5 * (z[3] * z[3] - 1.0)
                + merchant_risk[merchant[i] as usize]
                + email_risk[email[i] as usize]
                + 0.9 * f64::from(u8::from(amount[i] > 300.0 && product[i] == 3))
                + 0.4 * (amount[i].ln() - 3.5) / 1.3
                + 0.3 * (i as f64 / n as f64);
            s += if z5_missing[i] { 1.0 } else { 0.6 * z[4] };
            if device[i] == MISSING_CODE {
                s += 0.4;
            }
            s
        })
        .collect();
    let mut lo = -20.0;
    let mut hi = 10.0;
    for _ in 0..60 {
        let mid: f64 = (lo + hi) / 2.0;
        let rate = logit
            .iter()
            .map(|l| crate::gbdt::sigmoid(l + mid))
            .sum::<f64>()
            / n as f64;
        if rate < p.positive_rate {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let labels: Vec<bool> = logit
        .iter()
        .map(|l| rng.random::<f64>() < crate::gbdt::sigmoid(l + lo))
        .collect();

    let mut names = vec!["amount".to_string()];
    let mut columns = vec![Column::Numeric(amount.clone())];
    // k is the latent's position inside each row's array, not an index into `z`
    #[allow(clippy::needless_range_loop)]
    for k in 0..8 {
        names.push(format!("z{}", k + 1));
        let v = (0..n)
            .map(|i| {
                if (k == 4 && z5_missing[i]) || (k == 5 && i % 2 == 0) {
                    f64::NAN
                } else {
                    z[i][k]
                }
            })
            .collect();
        columns.push(Column::Numeric(v));
    }
    names.push("row_kind".to_string());
    columns.push(Column::Numeric(
        product.iter().map(|x| f64::from(*x)).collect(),
    ));
    // the V block: noisy transforms of the latents, counts, pure noise, a constant and an
    // all-missing column; blocks of 20 columns missing together by product
    let extra = p.numeric - names.len();
    let vcols: Vec<Vec<f64>> = (0..extra)
        .into_par_iter()
        .map(|j| {
            let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ (0x9e37_79b9 + j as u64 * 7919));
            let block = j / 20;
            let src = j % 8;
            let noise = 0.3 + (j % 5) as f64 * 0.4;
            (0..n)
                .map(|i| {
                    if j == 1 {
                        return 7.0;
                    }
                    if j == 2 || (block % 3 == 1 && product[i] != (block % 5) as u32) {
                        return f64::NAN;
                    }
                    let e = normal(&mut rng);
                    match j % 4 {
                        0 => z[i][src] + noise * e,
                        1 => ((z[i][src] + noise * e) * 3.0).exp().round(),
                        2 => {
                            (amount[i] * (1.0 + 0.1 * e)).round()
                                * if j % 8 == 2 { -1.0 } else { 1.0 }
                        }
                        _ => e * 1000.0,
                    }
                })
                .collect()
        })
        .collect();
    for (j, v) in vcols.into_iter().enumerate() {
        names.push(format!("V{}", j + 1));
        columns.push(Column::Numeric(v));
    }
    let mut categories: Vec<Vec<String>> = vec![Vec::new(); columns.len()];
    let mut cat = |name: &str, codes: Vec<u32>, card: usize, prefix: &str| {
        names.push(name.to_string());
        columns.push(Column::Categorical(codes));
        categories.push((0..card).map(|c| format!("{prefix}{c}")).collect());
    };
    cat("product", product, 5, "P");
    cat("email_domain", email, 60, "mail");
    cat("merchant", merchant, p.merchants, "m");
    cat("device", device, 800, "dev");
    for k in 4..p.categorical {
        let card = 3 + (k * 37) % 300;
        let codes = (0..n)
            .map(|_| {
                if rng.random::<f64>() < 0.1 {
                    MISSING_CODE
                } else {
                    rng.random_range(0..card as u32)
                }
            })
            .collect();
        cat(&format!("c{k}"), codes, card, "c");
    }
    Ok(Table {
        names,
        columns,
        categories,
        labels,
        times,
    })
}

/// Write `table` as CSV with `label` and `time` columns first; missing values are empty.
pub fn write_csv(table: &Table, path: &std::path::Path, label: &str, time: &str) -> Result<()> {
    let err = |e: csv::Error| Error::Csv {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    let mut header = vec![label.to_string(), time.to_string()];
    header.extend(table.names.iter().cloned());
    w.write_record(&header).map_err(err)?;
    let mut rec: Vec<String> = Vec::with_capacity(header.len());
    for i in 0..table.labels.len() {
        rec.clear();
        rec.push(u8::from(table.labels[i]).to_string());
        rec.push(format!("{}", table.times[i].round()));
        for (c, cats) in table.columns.iter().zip(&table.categories) {
            rec.push(match c {
                Column::Numeric(v) if v[i].is_nan() => String::new(),
                Column::Numeric(v) => format!("{}", (v[i] * 1e4).round() / 1e4),
                Column::Categorical(k) if k[i] == MISSING_CODE => String::new(),
                Column::Categorical(k) => cats[k[i] as usize].clone(),
            });
        }
        w.write_record(&rec).map_err(err)?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}
