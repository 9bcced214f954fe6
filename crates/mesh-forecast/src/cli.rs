//! Command-line surface for `mesh eval forecast`: argument struct and report.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::data::{load_m3, shared_data_dir, Period};
use crate::error::{invalid, Result};
use crate::eval::{evaluate_with, GroupScore, MethodScore};
use crate::method::Method;

/// `mesh eval forecast` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Series file in the `m3_data.json` format [default: <shared data>/forecast/m3_data.json].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Method(s), comma separated; more than one prints a per-method table.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "auto")]
    pub method: Vec<Method>,
    /// Only series of this frequency class.
    #[arg(long, value_enum)]
    pub period: Option<Period>,
    /// Only the first N series (by name, after the period filter).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Development protocol: drop the last `h` values of each history and score on them
    /// instead of the test values, so methods can be compared without reading the test split.
    #[arg(long)]
    pub holdout: bool,
    /// Write forecast fans (SVG) of the first few series, made by the first
    /// method, into this directory.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

/// Result of `mesh eval forecast`; the headline numbers are those of the first method.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// The file evaluated.
    pub data: PathBuf,
    /// Number of series.
    pub series: usize,
    /// The first (headline) method.
    pub method: Method,
    /// Mean sMAPE (percent) of the headline method.
    pub smape: f64,
    /// Mean MASE of the headline method.
    pub mase: f64,
    /// Per frequency class, headline method.
    pub per_period: Vec<GroupScore>,
    /// Total wall-clock seconds.
    pub seconds: f64,
    /// Every method evaluated, when more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<MethodScore>,
}

/// Run the evaluation described by `args` (writing the plots when `--plot` is given).
pub fn eval(args: &EvalArgs) -> Result<EvalReport> {
    Ok(eval_with(args, &|_, _| {})?.0)
}

/// [`eval`] with `progress(done, total)` called after each series of each
/// method (from several threads); also returns the plot files written.
pub fn eval_with(
    args: &EvalArgs,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(EvalReport, Vec<PathBuf>)> {
    let path = args
        .data
        .clone()
        .unwrap_or_else(|| shared_data_dir().join("forecast/m3_data.json"));
    let mut series = load_m3(&path)?;
    if let Some(p) = args.period {
        series.retain(|s| s.period == p);
    }
    if let Some(limit) = args.limit {
        series.truncate(limit);
    }
    if args.holdout {
        series = series.into_iter().filter_map(|s| s.holdout()).collect();
    }
    let mut methods = args.method.clone();
    methods.dedup();
    let first = *methods
        .first()
        .ok_or_else(|| invalid("method", "at least one method is needed"))?;
    let total = (series.len() * methods.len()) as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let tick = || {
        let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(d, total);
    };
    let scores = methods
        .iter()
        .map(|m| evaluate_with(&series, *m, &tick))
        .collect::<Result<Vec<_>>>()?;
    let plots = match &args.plot {
        Some(dir) => crate::plot::write(&series, first, dir)?,
        None => Vec::new(),
    };
    let head = scores[0].clone();
    let report = EvalReport {
        data: path,
        series: series.len(),
        method: first,
        smape: head.smape,
        mase: head.mase,
        per_period: head.per_period,
        seconds: scores.iter().map(|s| s.seconds).sum(),
        methods: if scores.len() > 1 { scores } else { Vec::new() },
    };
    Ok((report, plots))
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} series from {} in {:.1}s",
            self.series,
            self.data.display(),
            self.seconds
        )?;
        writeln!(
            f,
            "{}: sMAPE {:.2}  MASE {:.3}",
            self.method, self.smape, self.mase
        )?;
        for g in &self.per_period {
            if let Some(p) = g.period {
                writeln!(
                    f,
                    "  {:<10} n={:<5} sMAPE {:>6.2}  MASE {:>6.3}",
                    p.to_string(),
                    g.series,
                    g.smape,
                    g.mase
                )?;
            }
        }
        if !self.methods.is_empty() {
            writeln!(
                f,
                "\n{:<12} {:>7} {:>7}  per period sMAPE  {:>7}",
                "method", "sMAPE", "MASE", "seconds"
            )?;
            for m in &self.methods {
                let per: Vec<String> = m
                    .per_period
                    .iter()
                    .map(|g| format!("{:.2}", g.smape))
                    .collect();
                writeln!(
                    f,
                    "{:<12} {:>7.2} {:>7.3}  [{}]  {:>7.1}",
                    m.method.name(),
                    m.smape,
                    m.mase,
                    per.join(" "),
                    m.seconds
                )?;
            }
        }
        Ok(())
    }
}
