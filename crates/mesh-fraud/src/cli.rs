//! Command-line surface for the `mesh` operator binary: clap argument structs and functions
//! returning reports that print as JSON (`serde`) or text (`Display`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::eval::{eval_simulated_with, SimEvalReport};
use crate::gbdt::GbdtParams;
use crate::metrics::Metrics;
use crate::model::{ModelKind, TrainParams};
use crate::rules::RuleSet;
use crate::sim::{self, SimParams};
use crate::tabular::{eval_table, TabularModel, TabularOptions, TabularReport};

/// `mesh fraud simulate`: generate a labelled event stream.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Simulator parameters.
    #[command(flatten)]
    pub sim: SimParams,
    /// Write the events as JSON lines to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What [`simulate`] produced.
#[derive(Debug, Clone, Serialize)]
pub struct SimulateReport {
    /// Events generated.
    pub events: usize,
    /// Orders generated.
    pub orders: usize,
    /// Events per pattern and kind: pattern → (orders, payments, account events).
    pub by_pattern: BTreeMap<String, (usize, usize, usize)>,
    /// File written, if any.
    pub out: Option<String>,
}

/// Generate the stream; write it to `--out` when given.
pub fn simulate(args: &SimulateArgs) -> Result<SimulateReport> {
    let events: Vec<sim::SimEvent> = sim::simulate(&args.sim)?.collect();
    let mut by_pattern: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for e in &events {
        let s = by_pattern.entry(e.pattern.clone()).or_default();
        match e.event {
            crate::event::Event::Order(_) => s.0 += 1,
            crate::event::Event::Payment(_) => s.1 += 1,
            crate::event::Event::Account(_) => s.2 += 1,
        }
    }
    let n = events.len();
    let orders = by_pattern.values().map(|v| v.0).sum();
    let out = match &args.out {
        Some(path) => {
            sim::write_jsonl(events.into_iter(), path)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    Ok(SimulateReport {
        events: n,
        orders,
        by_pattern,
        out,
    })
}

impl fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} events, {} orders", self.events, self.orders)?;
        writeln!(
            f,
            "{:<18} {:>8} {:>9} {:>9}",
            "pattern", "orders", "payments", "account"
        )?;
        for (p, (o, pay, a)) in &self.by_pattern {
            writeln!(f, "{p:<18} {o:>8} {pay:>9} {a:>9}")?;
        }
        if let Some(out) = &self.out {
            writeln!(f, "written to {out}")?;
        }
        Ok(())
    }
}

/// `mesh eval fraud --csv FILE --label COL --time COL`: the generic trainer.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalCsvArgs {
    /// Labelled table.
    #[arg(long)]
    pub csv: PathBuf,
    /// Binary label column (0/1, true/false, yes/no).
    #[arg(long)]
    pub label: String,
    /// Time column (number, RFC 3339 or `YYYY-MM-DD[ HH:MM:SS]`); earliest 80% train.
    #[arg(long)]
    pub time: String,
    /// Columns to ignore (ids), repeatable.
    #[arg(long)]
    pub drop: Vec<String>,
    /// Models and their settings.
    #[command(flatten)]
    pub tabular: TabularArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Models of the generic trainer and the GBDT's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct TabularArgs {
    /// Models to train on a table (comma separated); the best on the validation slice is
    /// reported at the top.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = TabularModel::ALL.to_vec())]
    pub models: Vec<TabularModel>,
    /// Share of the training period (its latest rows) used for early stopping and model choice.
    #[arg(long, default_value_t = 0.1)]
    pub validation_fraction: f64,
    /// GBDT shrinkage.
    #[arg(long, default_value_t = GbdtParams::default().learning_rate)]
    pub gbdt_learning_rate: f64,
    /// GBDT most boosting rounds (early stopping usually ends sooner).
    #[arg(long, default_value_t = GbdtParams::default().max_iter)]
    pub gbdt_max_iter: usize,
    /// GBDT most leaves per tree.
    #[arg(long, default_value_t = GbdtParams::default().max_leaves)]
    pub gbdt_max_leaves: usize,
    /// GBDT fewest rows per leaf.
    #[arg(long, default_value_t = GbdtParams::default().min_samples_leaf)]
    pub gbdt_min_samples_leaf: usize,
    /// GBDT L2 penalty on leaf weights.
    #[arg(long, default_value_t = GbdtParams::default().l2)]
    pub gbdt_l2: f64,
    /// Most fit rows for the forest, logistic and isolation-forest baselines (a seeded
    /// uniform sample above it; 0 = all rows). The GBDT always fits every row.
    #[arg(long, default_value_t = crate::tabular::BASELINE_MAX_ROWS)]
    pub baseline_max_rows: usize,
}

impl Default for TabularArgs {
    /// The command-line defaults.
    fn default() -> Self {
        let g = GbdtParams::default();
        Self {
            models: TabularModel::ALL.to_vec(),
            validation_fraction: 0.1,
            gbdt_learning_rate: g.learning_rate,
            gbdt_max_iter: g.max_iter,
            gbdt_max_leaves: g.max_leaves,
            gbdt_min_samples_leaf: g.min_samples_leaf,
            gbdt_l2: g.l2,
            baseline_max_rows: crate::tabular::BASELINE_MAX_ROWS,
        }
    }
}

impl TabularArgs {
    fn options(&self, baselines: TrainParams) -> TabularOptions {
        TabularOptions {
            models: self.models.clone(),
            gbdt: GbdtParams {
                learning_rate: self.gbdt_learning_rate,
                max_iter: self.gbdt_max_iter,
                max_leaves: self.gbdt_max_leaves,
                min_samples_leaf: self.gbdt_min_samples_leaf,
                l2: self.gbdt_l2,
                seed: baselines.seed,
                ..GbdtParams::default()
            },
            baselines,
            validation_fraction: self.validation_fraction,
            baseline_max_rows: self.baseline_max_rows,
        }
    }
}

/// Run the generic trainer.
pub fn eval_csv(args: &EvalCsvArgs) -> Result<TabularReport> {
    eval_table(
        &args.csv,
        &args.label,
        &args.time,
        &args.drop,
        &args.tabular.options(TrainParams::default()),
    )
}

/// `mesh eval fraud`: `--simulate` (with simulator flags) or `--csv` (generic trainer).
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Evaluate on a simulated stream.
    #[arg(long, conflicts_with = "csv")]
    pub simulate: bool,
    /// Simulator parameters (with `--simulate`).
    #[command(flatten)]
    pub sim: SimParams,
    /// Rules file (default: the rules shipped with the crate).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Model used by the policy.
    #[arg(long, value_enum, default_value_t = ModelKind::Auto)]
    pub model: ModelKind,
    /// Trees in the random forest.
    #[arg(long, default_value_t = 60)]
    pub trees: usize,
    /// Maximum tree depth.
    #[arg(long, default_value_t = 10)]
    pub max_depth: u16,
    /// Write the trained models (JSON, `policy::PolicyModels`) here (with `--simulate`).
    #[arg(long)]
    pub save_models: Option<PathBuf>,
    /// Labelled table for the generic trainer.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Label column (with `--csv`).
    #[arg(long, requires = "csv")]
    pub label: Option<String>,
    /// Time column (with `--csv`).
    #[arg(long, requires = "csv")]
    pub time: Option<String>,
    /// Columns to ignore (with `--csv`), repeatable.
    #[arg(long, requires = "csv")]
    pub drop: Vec<String>,
    /// Models of the generic trainer (with `--csv`).
    #[command(flatten)]
    pub tabular: TabularArgs,
    /// Largest share of orders sent to manual review (with `--simulate`):
    /// the report gives precision and recall at this budget.
    #[arg(long, default_value_t = crate::DEFAULT_REVIEW_BUDGET)]
    pub review_budget: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write precision–recall curves (SVG) into this directory (with `--simulate`).
    #[arg(long, value_name = "DIR", conflicts_with = "csv")]
    pub plot: Option<PathBuf>,
}

/// Report of [`eval`]: one of the two modes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum EvalReport {
    /// `--simulate`.
    Simulate(Box<SimEvalReport>),
    /// `--csv`.
    Csv(Box<TabularReport>),
}

/// Run the evaluation selected by the arguments (writing the plots when
/// `--plot` is given).
pub fn eval(args: &EvalArgs) -> Result<EvalReport> {
    Ok(eval_with(args, &|_, _| {})?.0)
}

/// [`eval`] with `progress(done, total)` called after each step
/// (`--simulate`: features, training, scoring); also returns the plot files written.
pub fn eval_with(
    args: &EvalArgs,
    progress: &dyn Fn(u64, u64),
) -> Result<(EvalReport, Vec<PathBuf>)> {
    let params = TrainParams {
        n_trees: args.trees,
        max_depth: args.max_depth,
        primary: args.model,
        ..TrainParams::default()
    };
    if let Some(csv) = &args.csv {
        let need = |v: &Option<String>, flag: &str| {
            v.clone()
                .ok_or_else(|| Error::Invalid(format!("--{flag} COLUMN is required with --csv")))
        };
        let report = eval_table(
            csv,
            &need(&args.label, "label")?,
            &need(&args.time, "time")?,
            &args.drop,
            &args.tabular.options(params),
        )?;
        return Ok((EvalReport::Csv(Box::new(report)), Vec::new()));
    }
    if !args.simulate {
        return Err(Error::Invalid("choose --simulate or --csv FILE".into()));
    }
    let rules = match &args.rules {
        Some(p) => RuleSet::from_file(p)?,
        None => RuleSet::default_rules(),
    };
    let (report, curves) = eval_simulated_with(
        &args.sim,
        &rules,
        &params,
        args.save_models.as_deref(),
        args.review_budget,
        progress,
    )?;
    let plots = match &args.plot {
        Some(dir) => crate::plot::write(&report, &curves, dir)?,
        None => Vec::new(),
    };
    Ok((EvalReport::Simulate(Box::new(report)), plots))
}

fn metrics_row(f: &mut fmt::Formatter<'_>, name: &str, m: &Metrics) -> fmt::Result {
    writeln!(
        f,
        "  {name:<18} roc_auc {:.4}  pr_auc {:.4}  p@1% {:.4}  r@1%fpr {:.4}  (n {}, pos {})",
        m.roc_auc, m.pr_auc, m.precision_at_1pct, m.recall_at_1pct_fpr, m.n, m.positives
    )
}

impl fmt::Display for SimEvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulated {} events, {} orders (seed {}, {} users, {} days); train {} / holdout {} orders, {} fraud in holdout",
            self.events, self.orders, self.params.seed, self.params.users, self.params.days,
            self.train_orders, self.holdout_orders, self.holdout_fraud
        )?;
        writeln!(f, "fraud orders by pattern: {:?}", self.fraud_orders)?;
        write!(f, "policy model: {}", self.policy_model)?;
        if !self.model_selection.is_empty() {
            let picks: Vec<String> = self
                .model_selection
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
            write!(
                f,
                " (validation PR-AUC, latest tenth of training: {})",
                picks.join(", ")
            )?;
        }
        writeln!(f)?;
        for s in &self.scorers {
            writeln!(f, "{}:", s.scorer)?;
            metrics_row(f, "overall", &s.overall)?;
            for (p, m) in &s.per_pattern {
                metrics_row(f, p, m)?;
            }
        }
        writeln!(
            f,
            "policy actions on holdout (orders, fraud): {:?}",
            self.policy_actions
        )?;
        let b = &self.budget;
        writeln!(
            f,
            "at a {:.1}% review budget: review rate {:.2}%, reject rate {:.2}%, precision {:.3} (reviewed) / {:.3} (reviewed+rejected), recall {:.3} (reviewed+rejected) / {:.3} (reviewed), threshold {:.3}",
            100.0 * b.share, 100.0 * b.review_rate, 100.0 * b.reject_rate, b.precision,
            b.precision_flagged, b.recall, b.recall_reviewed, b.final_threshold
        )?;
        for (k, s) in &self.detectors {
            writeln!(
                f,
                "detector {k}: {} alerts, {} on fraud events, {} on the matching pattern",
                s.alerts, s.on_fraud, s.on_matching_pattern
            )?;
        }
        write!(
            f,
            "features {:.2}s, training {:.2}s",
            self.feature_secs, self.train_secs
        )
    }
}

impl fmt::Display for TabularReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} rows, train {} ({} pos; last {} rows validate, {} pos) / test {} ({} pos); {} numeric, {} categorical columns ({} with missing values)",
            self.csv, self.rows, self.train_rows, self.train_positives, self.validation_rows,
            self.validation_positives, self.test_rows, self.test_positives,
            self.numeric_columns.len(), self.categorical_columns.len(), self.columns_with_missing
        )?;
        writeln!(
            f,
            "best on validation: {} (test roc_auc {:.4}, pr_auc {:.4})",
            self.best_model, self.roc_auc, self.pr_auc
        )?;
        for (name, m) in [
            ("gbdt", &self.gbdt),
            ("logistic", &self.logistic),
            ("forest", &self.forest),
            ("anomaly", &self.anomaly),
        ] {
            if let Some(m) = m {
                metrics_row(f, name, m)?;
            }
        }
        let secs: Vec<String> = self
            .train_secs
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}s"))
            .collect();
        write!(
            f,
            "load {:.1}s, train {} (gbdt cpu {:.1}s); gbdt {} trees ({} rounds); peak memory {:.0} MiB ({:.0} after gbdt)",
            self.load_secs,
            secs.join(", "),
            self.gbdt_cpu_secs.unwrap_or(f64::NAN),
            self.gbdt_trees,
            self.gbdt_rounds,
            self.peak_rss_mib.unwrap_or(f64::NAN),
            self.peak_rss_mib_after_gbdt.unwrap_or(f64::NAN)
        )
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalReport::Simulate(r) => r.fmt(f),
            EvalReport::Csv(r) => r.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Eval {
        #[command(flatten)]
        args: EvalArgs,
    }

    #[derive(Parser)]
    struct Csv {
        #[command(flatten)]
        args: EvalCsvArgs,
    }

    #[test]
    fn flags_are_unique_and_models_parse_as_a_list() {
        Eval::command().debug_assert();
        Csv::command().debug_assert();
        let e = Eval::try_parse_from([
            "eval",
            "--csv",
            "t.csv",
            "--label",
            "y",
            "--time",
            "ts",
            "--models",
            "gbdt,forest",
            "--gbdt-max-leaves",
            "15",
        ])
        .unwrap();
        assert_eq!(
            e.args.tabular.models,
            [TabularModel::Gbdt, TabularModel::Forest]
        );
        let o = e.args.tabular.options(TrainParams::default());
        assert_eq!(o.gbdt.max_leaves, 15);
        let c =
            Csv::try_parse_from(["csv", "--csv", "t.csv", "--label", "y", "--time", "ts"]).unwrap();
        assert_eq!(c.args.tabular.models, TabularModel::ALL);
    }
}
