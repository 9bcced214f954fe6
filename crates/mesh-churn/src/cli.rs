//! Argument structs and entry points for the `mesh` operator binary.

use std::fmt;
use std::path::PathBuf;

use chrono::NaiveDate;

use crate::data::PurchaseLog;
use crate::error::Result;
use crate::eval::{self, EvalReport};

/// `mesh eval churn`: fit BG/NBD, Pareto/NBD and the learned models on CDNOW.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Purchase log in a CDNOW layout (4 or 5 whitespace-separated columns).
    #[arg(long, default_value_os_t = default_transactions())]
    pub transactions: PathBuf,
    /// Last day of the calibration period (inclusive).
    #[arg(long, default_value = "1997-09-30")]
    pub calibration_end: NaiveDate,
    /// Last day of the holdout period (inclusive).
    #[arg(long, default_value = "1998-06-30")]
    pub holdout_end: NaiveDate,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write calibration and cumulative gains charts (SVG) into this directory.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

/// The shared data directory: `$MESH_SHARED_DATA`, else `<workspace>/../shared/data`.
pub fn shared_data_dir() -> PathBuf {
    match std::env::var_os("MESH_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

/// The CDNOW sample in the shared data directory.
pub fn default_transactions() -> PathBuf {
    shared_data_dir().join("churn/CDNOW_sample.txt")
}

/// Runs `mesh eval churn` (writing the plots when `--plot` is given).
pub fn eval(args: &EvalArgs) -> Result<EvalReport> {
    Ok(eval_with(args, &|_, _| {})?.0)
}

/// [`eval`] with `progress(done, total)` called after each model fit; also
/// returns the plot files written.
pub fn eval_with(
    args: &EvalArgs,
    progress: &dyn Fn(u64, u64),
) -> Result<(EvalReport, Vec<PathBuf>)> {
    let log = PurchaseLog::read(&args.transactions)?;
    let report =
        eval::evaluate_with_progress(&log, args.calibration_end, args.holdout_end, progress)?;
    let plots = match &args.plot {
        Some(dir) => crate::plot::write(&report, dir)?,
        None => Vec::new(),
    };
    Ok((report, plots))
}

fn pct(measured: f64, published: f64) -> String {
    format!("{:+.1}%", 100.0 * (measured - published) / published)
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.published;
        writeln!(
            f,
            "CDNOW churn evaluation: {} customers, {} transactions, calibration to {}, holdout to {} ({:.1} weeks), {:.1}s",
            self.customers, self.transactions, self.calibration_end, self.holdout_end, self.holdout_weeks, self.seconds
        )?;
        writeln!(f, "BG/NBD              measured   published")?;
        for (name, m, pb) in [
            ("r", self.r, p.r),
            ("alpha", self.alpha, p.alpha),
            ("a", self.a, p.a),
            ("b", self.b, p.b),
        ] {
            writeln!(f, "  {name:<17} {m:>9.4}   {pb:>9.3}  ({})", pct(m, pb))?;
        }
        writeln!(
            f,
            "  log-likelihood    {:>9.1}   {:>9.1}  (with summary constants {:.1})",
            self.log_likelihood, p.log_likelihood, self.log_likelihood_with_constants
        )?;
        writeln!(
            f,
            "  cumulative wk78   actual {:.0} (published {:.0}), forecast {:.1} (published {:.0}, {})",
            self.cumulative_actual_week78,
            p.cumulative_actual_week78,
            self.cumulative_forecast_week78,
            p.cumulative_forecast_week78,
            pct(self.cumulative_forecast_week78, p.cumulative_forecast_week78)
        )?;
        writeln!(
            f,
            "  holdout           actual {:.0} (published {:.0}), forecast {:.1} ({} vs actual), corr {:.3} (published {:.3})",
            self.holdout_actual,
            p.holdout_actual,
            self.holdout_forecast,
            pct(self.holdout_forecast, self.holdout_actual),
            self.holdout_corr,
            p.holdout_corr
        )?;
        writeln!(
            f,
            "  by calibration frequency: x  n  actual (published)  expected"
        )?;
        for (row, pa) in self.by_frequency.iter().zip(p.by_frequency_actual) {
            let label = if row.frequency == 7 {
                "7+".to_string()
            } else {
                row.frequency.to_string()
            };
            writeln!(
                f,
                "    {label:>2} {:>5} {:>7.3} ({pa:.3}) {:>7.3}",
                row.customers, row.actual, row.expected
            )?;
        }
        let pf = &self.pareto.fit;
        writeln!(
            f,
            "Pareto/NBD r {:.3} ({}) alpha {:.3} ({}) s {:.3} ({}) beta {:.3} ({}), LL {:.1} (published {:.1}); holdout forecast {:.1}, corr {:.3} (published {:.3})",
            pf.params.r, p.pareto[0], pf.params.alpha, p.pareto[1], pf.params.s, p.pareto[2],
            pf.params.beta, p.pareto[3], pf.log_likelihood, p.pareto_log_likelihood,
            self.pareto.holdout_forecast, self.pareto.holdout_corr, p.pareto_holdout_corr
        )?;
        let g = &self.gamma_gamma;
        writeln!(
            f,
            "Gamma-Gamma p {:.3} q {:.3} gamma {:.3} (published {:?})",
            g.p, g.q, g.gamma, p.gamma_gamma
        )?;
        writeln!(
            f,
            "ROC-AUC for any holdout purchase ({} of {} customers): P(alive) {:.3}, BG/NBD P(purchase) {:.3}",
            self.holdout_active_customers, self.customers, self.auc_p_alive, self.auc_bgnbd_p_purchase
        )?;
        writeln!(
            f,
            "  supervised ({}) {:.3}, hybrid ({}) {:.3} (each the learner with the best validation AUC)",
            self.auc_supervised_model, self.auc_supervised, self.auc_hybrid_model, self.auc_hybrid
        )?;
        for c in &self.learned.classifiers {
            writeln!(
                f,
                "  {:<20} holdout AUC {:.3} (validation AUC {:.3}, Brier {:.3})",
                c.name, c.holdout_auc, c.validation_auc, c.validation_brier
            )?;
        }
        writeln!(
            f,
            "Holdout count models (trained on calibration weeks only); backtest: cut-off {}, {} actual transactions to the calibration end:",
            self.learned.backtest_cutoff, self.learned.backtest_actual
        )?;
        for c in &self.learned.count_models {
            writeln!(
                f,
                "  {:<22} forecast {:>7.1} ({} vs actual)  corr {:.3}  MAE {:.3} | backtest RMSE {:.4} forecast {:>7.1} ({}) corr {:.3}",
                c.name,
                c.holdout_forecast,
                pct(c.holdout_forecast, self.holdout_actual),
                c.holdout_corr,
                c.holdout_mae,
                c.backtest_rmse,
                c.backtest_forecast,
                pct(c.backtest_forecast, self.learned.backtest_actual),
                c.backtest_corr
            )?;
        }
        writeln!(
            f,
            "Best (chosen by in-calibration backtest RMSE): {} forecast {:.1} ({}), corr {:.3}",
            self.best_model,
            self.best_holdout_forecast,
            pct(self.best_holdout_forecast, self.holdout_actual),
            self.best_holdout_corr
        )?;
        let s = &self.customer_split;
        write!(
            f,
            "Customer split (seed {}): selected on half A ({} customers, in-calibration backtest only): {} \
             (half A's holdout would pick {}); holdout on half B ({} customers, actual {:.0}):",
            s.seed, s.customers_a, s.selected, s.selected_by_holdout_a, s.customers_b, s.holdout_actual_b
        )?;
        write!(
            f,
            "\n  {:<22} {:>17}  {:>5}  {:>6}  {:>6}",
            "model", "forecast", "corr", "MAE", "RMSE"
        )?;
        for c in &s.models_b {
            let mark = match (c.model == s.selected, c.model == "bgnbd") {
                (true, _) => " <- selected",
                (_, true) => " <- plain BG/NBD",
                _ => "",
            };
            write!(
                f,
                "\n  {:<22} {:>7.1} ({:>+6.1}%)  {:.3}  {:.4}  {:.4}{mark}",
                c.model,
                c.holdout_forecast,
                c.holdout_error_pct,
                c.holdout_corr,
                c.holdout_mae,
                c.holdout_rmse
            )?;
        }
        let w = &s.sweep;
        let picks: Vec<String> = w.selected.iter().map(|(m, k)| format!("{m} {k}")).collect();
        write!(
            f,
            "\n  over {} seeded splits (selected: {}), the selected model beats plain BG/NBD on half B in \
             total {}, corr {}, MAE {}, RMSE {} of {}; mean change corr {:+.4}, RMSE {:+.4}",
            w.seeds,
            picks.join(", "),
            w.better_total,
            w.better_corr,
            w.better_mae,
            w.better_rmse,
            w.seeds,
            w.mean_corr_gain,
            w.mean_rmse_change
        )?;
        Ok(())
    }
}
