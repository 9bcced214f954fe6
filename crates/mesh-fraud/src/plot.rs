//! `mesh eval fraud --simulate --plot DIR`: holdout precision–recall curves of
//! the rules, the policy's model and the policy, as SVG (drawn by `mesh-plot`).

use std::path::{Path, PathBuf};

use mesh_plot::Chart;

use crate::error::Result;
use crate::eval::{PrCurve, SimEvalReport};

/// One line per scorer, beside the base rate (the precision of flagging every order).
pub fn pr_chart(report: &SimEvalReport, curves: &[PrCurve]) -> Chart {
    let base = report.holdout_fraud as f64 / report.holdout_orders.max(1) as f64;
    let mut c = Chart::new(
        &format!(
            "Precision–recall on the holdout ({} orders, {} fraud)",
            report.holdout_orders, report.holdout_fraud
        ),
        "recall",
        "precision",
    )
    .x_range(0.0, 1.0)
    .y_range(0.0, 1.0)
    .reference("base rate", vec![(0.0, base), (1.0, base)]);
    for curve in curves {
        c = c.line(&curve.scorer, curve.points.clone());
    }
    c
}

/// Writes `fraud-pr.svg` into `dir`.
pub fn write(report: &SimEvalReport, curves: &[PrCurve], dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(mesh_plot::write_all(
        dir,
        &[("fraud-pr.svg".into(), pr_chart(report, curves))],
    )?)
}
