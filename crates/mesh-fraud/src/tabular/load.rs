//! Reading a labelled CSV into typed columns, in two passes so no cell is kept as text: the
//! first decides which columns are numeric (every non-missing cell parses as a number) and
//! reads the label and time, the second stores numbers as `f64` (`NaN` when missing) and
//! everything else as category codes.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::error::{Error, Result};
use crate::gbdt::{Column, MISSING_CODE};

/// A labelled table with typed input columns.
#[derive(Debug, Clone)]
pub struct Table {
    /// Input column names.
    pub names: Vec<String>,
    /// Input columns.
    pub columns: Vec<Column>,
    /// Category names per column, by code (empty for numeric columns).
    pub categories: Vec<Vec<String>>,
    /// Binary labels.
    pub labels: Vec<bool>,
    /// Times (seconds or any increasing number).
    pub times: Vec<f64>,
}

impl Table {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }
}

/// Cells read as missing (case-insensitive), besides the empty one.
const MISSING: [&str; 7] = ["na", "nan", "null", "none", "n/a", "?", "-"];

fn is_missing(v: &str) -> bool {
    v.is_empty() || MISSING.iter().any(|m| v.eq_ignore_ascii_case(m))
}

pub(super) fn parse_label(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "t" | "yes" | "y" => Some(true),
        "0" | "0.0" | "false" | "f" | "no" | "n" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_time(v: &str) -> Option<f64> {
    let v = v.trim();
    if let Ok(x) = v.parse::<f64>() {
        return x.is_finite().then_some(x);
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

/// Read `path`: `label` and `time` columns, every other column but `drop` as input.
pub fn load_csv(path: &Path, label: &str, time: &str, drop: &[String]) -> Result<Table> {
    let p = path.display().to_string();
    let csv_err = |m: String| Error::Csv {
        path: p.clone(),
        message: m,
    };
    let open = || csv::Reader::from_path(path).map_err(|e| csv_err(e.to_string()));
    let mut rdr = open()?;
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
    let inputs: Vec<usize> = (0..headers.len())
        .filter(|c| *c != li && *c != ti && !drop.contains(&headers[*c]))
        .collect();
    if inputs.is_empty() {
        return Err(csv_err(
            "no input columns left after label, time and dropped columns".into(),
        ));
    }
    // pass 1: kinds, labels, times
    let mut numeric = vec![true; headers.len()];
    let (mut labels, mut times) = (Vec::new(), Vec::new());
    let mut bad: BTreeSet<String> = BTreeSet::new();
    let mut rec = csv::StringRecord::new();
    let mut row = 0usize;
    while rdr
        .read_record(&mut rec)
        .map_err(|e| csv_err(format!("row {}: {e}", row + 2)))?
    {
        row += 1;
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        match parse_label(get(li)) {
            Some(l) => labels.push(l),
            None => {
                bad.insert(get(li).to_string());
            }
        }
        times.push(parse_time(get(ti)).ok_or_else(|| {
            csv_err(format!(
                "row {}: time column `{time}` value {:?} is not a number or a date",
                row + 1,
                get(ti)
            ))
        })?);
        for &c in &inputs {
            if numeric[c] {
                let v = get(c);
                numeric[c] = is_missing(v) || v.parse::<f64>().is_ok();
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
    if row < 10 {
        return Err(csv_err(format!("need at least 10 data rows, got {row}")));
    }
    if labels.iter().all(|l| *l) || labels.iter().all(|l| !*l) {
        return Err(Error::NonBinaryLabel {
            path: p,
            column: label.to_string(),
            message: "only one class present".into(),
        });
    }
    // pass 2: values
    enum Builder {
        Num(Vec<f64>),
        Cat(Vec<u32>, HashMap<String, u32>, Vec<String>),
    }
    let mut builders: Vec<Builder> = inputs
        .iter()
        .map(|c| {
            if numeric[*c] {
                Builder::Num(Vec::with_capacity(row))
            } else {
                Builder::Cat(Vec::with_capacity(row), HashMap::new(), Vec::new())
            }
        })
        .collect();
    let mut rdr = open()?;
    let mut r = 0usize;
    while rdr
        .read_record(&mut rec)
        .map_err(|e| csv_err(format!("row {}: {e}", r + 2)))?
    {
        r += 1;
        for (b, &c) in builders.iter_mut().zip(&inputs) {
            let v = rec.get(c).unwrap_or("").trim();
            match b {
                Builder::Num(out) => out.push(if is_missing(v) {
                    f64::NAN
                } else {
                    v.parse().unwrap_or(f64::NAN)
                }),
                Builder::Cat(out, dict, names) => out.push(if is_missing(v) {
                    MISSING_CODE
                } else if let Some(k) = dict.get(v) {
                    *k
                } else {
                    let k = names.len() as u32;
                    dict.insert(v.to_string(), k);
                    names.push(v.to_string());
                    k
                }),
            }
        }
    }
    if r != row {
        return Err(csv_err(format!(
            "the file changed while read: {row} rows, then {r}"
        )));
    }
    let mut columns = Vec::with_capacity(inputs.len());
    let mut categories = Vec::with_capacity(inputs.len());
    for b in builders {
        match b {
            Builder::Num(v) => {
                columns.push(Column::Numeric(v));
                categories.push(Vec::new());
            }
            Builder::Cat(codes, _, names) => {
                columns.push(Column::Categorical(codes));
                categories.push(names);
            }
        }
    }
    Ok(Table {
        names: inputs.iter().map(|c| headers[*c].clone()).collect(),
        columns,
        categories,
        labels,
        times,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_with_missing_values_are_kept_with_their_kind() {
        let path = std::env::temp_dir().join(format!("mesh-fraud-load-{}.csv", std::process::id()));
        let mut text = String::from("id,ts,y,amount,card,email,v_all_missing\n");
        for i in 0..12 {
            let amount = ["", "NaN", "NA", "12.5", "-3", "1e9"][i % 6];
            let email = ["", "gmail.com", "null", "yahoo.com"][i % 4];
            text.push_str(&format!("{i},{i},{},{amount},{},{email},\n", i % 2, i % 3));
        }
        std::fs::write(&path, text).unwrap();
        let t = load_csv(&path, "y", "ts", &["id".to_string()]).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(t.names, ["amount", "card", "email", "v_all_missing"]);
        let Column::Numeric(a) = &t.columns[0] else {
            panic!("amount is numeric")
        };
        assert!(a[0].is_nan() && a[1].is_nan() && a[2].is_nan());
        assert_eq!((a[3], a[4], a[5]), (12.5, -3.0, 1e9));
        assert!(matches!(t.columns[1], Column::Numeric(_)));
        let Column::Categorical(e) = &t.columns[2] else {
            panic!("email is categorical")
        };
        assert_eq!(e[0], MISSING_CODE);
        assert_eq!(e[2], MISSING_CODE);
        assert_eq!(t.categories[2][e[1] as usize], "gmail.com");
        let Column::Numeric(v) = &t.columns[3] else {
            panic!("an all-missing column is numeric")
        };
        assert!(v.iter().all(|x| x.is_nan()));
    }
}
