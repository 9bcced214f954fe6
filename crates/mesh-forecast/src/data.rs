//! Reading the shared public data: M3 series (`m3_data.json` format) and `Airline.csv`.
//!
//! The data directory is `$MESH_SHARED_DATA` if set, else `../shared/data` beside the
//! workspace root. Nothing is ever copied into the repository.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The shared data directory (`MESH_SHARED_DATA` or `<workspace>/../shared/data`).
pub fn shared_data_dir() -> PathBuf {
    match std::env::var_os("MESH_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

/// M3 frequency class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "UPPERCASE")]
pub enum Period {
    /// Yearly, h = 6.
    Yearly,
    /// Quarterly, h = 8.
    Quarterly,
    /// Monthly, h = 18.
    Monthly,
    /// Other, h = 8.
    Other,
}

impl Period {
    /// Seasonal period used for models and for MASE scaling (1, 4, 12, 1).
    pub fn seasonal_period(self) -> usize {
        match self {
            Period::Quarterly => 4,
            Period::Monthly => 12,
            Period::Yearly | Period::Other => 1,
        }
    }

    fn parse(s: &str) -> Option<Period> {
        match s.to_ascii_uppercase().as_str() {
            "YEARLY" => Some(Period::Yearly),
            "QUARTERLY" => Some(Period::Quarterly),
            "MONTHLY" => Some(Period::Monthly),
            "OTHER" => Some(Period::Other),
            _ => None,
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Period::Yearly => "YEARLY",
            Period::Quarterly => "QUARTERLY",
            Period::Monthly => "MONTHLY",
            Period::Other => "OTHER",
        };
        f.write_str(s)
    }
}

/// One competition series: history `x`, future `xx` of length `h`.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// Series name, e.g. `N1402`.
    pub name: String,
    /// Frequency class.
    pub period: Period,
    /// Domain, e.g. `MICRO`.
    pub kind: String,
    /// History.
    pub x: Vec<f64>,
    /// Values to forecast.
    pub xx: Vec<f64>,
    /// Horizon.
    pub h: usize,
}

impl Series {
    /// The series with its last `h` history values as the values to forecast and the test
    /// values dropped; `None` when the shortened history could not scale MASE (too short
    /// for a seasonal difference, or all such differences zero).
    pub fn holdout(&self) -> Option<Series> {
        let m = self.period.seasonal_period();
        let cut = self.x.len().checked_sub(self.h).filter(|c| *c > m)?;
        if (m..cut).all(|t| self.x[t] == self.x[t - m]) {
            return None;
        }
        Some(Series {
            name: self.name.clone(),
            period: self.period,
            kind: self.kind.clone(),
            x: self.x[..cut].to_vec(),
            xx: self.x[cut..].to_vec(),
            h: self.h,
        })
    }
}

/// R's JSON export wraps scalars in one-element arrays; accept both forms.
fn scalar(v: &Value) -> &Value {
    match v {
        Value::Array(a) if a.len() == 1 => &a[0],
        other => other,
    }
}

fn numbers(v: Option<&Value>) -> Option<Vec<f64>> {
    match v? {
        Value::Array(a) => a.iter().map(Value::as_f64).collect(),
        other => other.as_f64().map(|x| vec![x]),
    }
}

/// Load every series from a file in the `m3_data.json` format, sorted by name.
pub fn load_m3(path: &Path) -> Result<Vec<Series>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    let root: serde_json::Map<String, Value> = serde_json::from_str(&text)
        .map_err(|e| bad(format!("not a JSON object of series: {e}")))?;
    let mut out = Vec::with_capacity(root.len());
    for (name, s) in &root {
        let field = |k: &str| s.get(k).map(scalar);
        let x = numbers(s.get("x")).ok_or_else(|| bad(format!("{name}: `x` must be numbers")))?;
        let xx =
            numbers(s.get("xx")).ok_or_else(|| bad(format!("{name}: `xx` must be numbers")))?;
        let period = field("period")
            .and_then(Value::as_str)
            .and_then(Period::parse)
            .ok_or_else(|| {
                bad(format!(
                    "{name}: `period` must be YEARLY/QUARTERLY/MONTHLY/OTHER"
                ))
            })?;
        let h = field("h")
            .and_then(Value::as_u64)
            .map(|h| h as usize)
            .unwrap_or(xx.len());
        if x.is_empty() || xx.len() != h {
            return Err(bad(format!(
                "{name}: needs non-empty `x` and `xx` of length h = {h} (got {} / {})",
                x.len(),
                xx.len()
            )));
        }
        let kind = field("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        out.push(Series {
            name: name.clone(),
            period,
            kind,
            x,
            xx,
            h,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Load the second column of a `Date,Value` CSV such as `Airline.csv`.
pub fn load_csv_column(path: &Path) -> Result<Vec<f64>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    reader
        .records()
        .enumerate()
        .map(|(i, rec)| {
            let rec = rec.map_err(|e| Error::Data {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            rec.get(1)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or_else(|| Error::Data {
                    path: path.to_path_buf(),
                    reason: format!("row {}: second column must be a number", i + 1),
                })
        })
        .collect()
}
