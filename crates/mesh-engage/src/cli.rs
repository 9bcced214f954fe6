//! `mesh eval engage`: every engagement model against its simulated truth,
//! with the figures the issue asks for at the top level of the JSON.
use std::path::PathBuf;

use crate::eval::{run, EngageReport, EvalConfig};

/// `mesh eval engage` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Master seed of every simulation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Smaller worlds and fewer replications (a smoke run of a few seconds).
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the bandit's regret curve (SVG) into this directory.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

/// Runs the evaluation and writes the plots asked for.
pub fn eval_with(args: &EvalArgs) -> Result<(EngageReport, Vec<PathBuf>), mesh_plot::Error> {
    let report = run(&EvalConfig {
        seed: args.seed,
        quick: args.quick,
    });
    let mut plots = Vec::new();
    if let Some(dir) = &args.plot {
        let chart = mesh_plot::Chart::new(
            "Offer bandit: cumulative regret",
            "round",
            "cumulative expected regret",
        )
        .line(
            "contextual Thompson sampling",
            report
                .bandit_regret_curve
                .iter()
                .map(|p| (p.round as f64, p.bandit))
                .collect(),
        )
        .reference(
            "uniform random offers",
            report
                .bandit_regret_curve
                .iter()
                .map(|p| (p.round as f64, p.random))
                .collect(),
        );
        plots = mesh_plot::write_all(dir, &[("engage-bandit-regret.svg".to_string(), chart)])?;
    }
    Ok((report, plots))
}

impl std::fmt::Display for EngageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "engage evaluation (seed {}{}) against simulated ground truth",
            self.seed,
            if self.quick { ", quick" } else { "" }
        )?;
        let item_only = format!(
            "item x segment; {:.3} with the item's for every segment",
            self.segment_elasticity_mape_item_only
        );
        let rows: [(&str, String, &str); 12] = [
            (
                "elasticity_mape",
                format!("{:.3}", self.elasticity_mape),
                "lower is better; unshrunk per-item estimates shown below",
            ),
            (
                "segment_elasticity_mape",
                format!("{:.3}", self.segment_elasticity_mape),
                item_only.as_str(),
            ),
            (
                "pricing_revenue_lift",
                format!("{:+.1}%", 100.0 * self.pricing_revenue_lift),
                "optimized vs fixed prices, simulated A/B",
            ),
            (
                "pricing_constraint_violations",
                self.pricing_constraint_violations.to_string(),
                "must be 0",
            ),
            (
                "bandit_regret_ratio",
                format!("{:.3}", self.bandit_regret_ratio),
                "bandit regret / uniform random regret",
            ),
            (
                "bandit_best_offer_share",
                format!("{:.3}", self.bandit_best_offer_share),
                "last 10% of rounds",
            ),
            (
                "ci_coverage",
                format!("{:.3}", self.ci_coverage),
                "nominal 0.95",
            ),
            (
                "aa_false_positive_rate",
                format!("{:.3}", self.aa_false_positive_rate),
                "nominal 0.05, continuous monitoring",
            ),
            (
                "cuped_variance_reduction",
                format!("{:.3}", self.cuped_variance_reduction),
                "share of variance removed",
            ),
            (
                "lookalike_precision",
                format!("{:.3}", self.lookalike_precision),
                "precision@k against hidden segments",
            ),
            (
                "ctr_auc",
                format!("{:.3}", self.ctr_auc),
                "held-out simulated impressions",
            ),
            (
                "budget_regret_ratio",
                format!("{:.3}", self.budget_regret_ratio),
                "budget bandit / uniform split",
            ),
        ];
        for (name, value, note) in rows {
            writeln!(f, "  {name:<30} {value:>10}  {note}")?;
        }
        writeln!(
            f,
            "  (unshrunk elasticity MAPE {:.3}; oracle pricing lift {:+.1}%; CTR ceiling {:.3}; sequential power {:.3})",
            self.elasticity_mape_unshrunk,
            100.0 * self.pricing_oracle_revenue_lift,
            self.ctr_auc_oracle,
            self.sequential_power
        )
    }
}
