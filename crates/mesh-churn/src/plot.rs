//! `mesh eval churn --plot DIR`: the calibration and cumulative gains curves of
//! the report as SVG (drawn by `mesh-plot`).

use std::path::{Path, PathBuf};

use mesh_plot::Chart;

use crate::error::Result;
use crate::eval::EvalReport;

/// Calibration chart: observed holdout purchase rate against the mean predicted
/// probability per decile, one line per model, beside the diagonal.
pub fn calibration_chart(r: &EvalReport) -> Chart {
    let mut c = Chart::new(
        "Calibration: any purchase in the holdout, by probability decile",
        "mean predicted probability",
        "observed purchase rate",
    )
    .x_range(0.0, 1.0)
    .y_range(0.0, 1.0)
    .reference("perfect calibration", vec![(0.0, 0.0), (1.0, 1.0)]);
    for curve in &r.calibration {
        let pts = curve
            .bins
            .iter()
            .map(|b| (b.predicted, b.observed))
            .collect();
        c = c.line(&curve.model, pts);
    }
    c
}

/// Cumulative gains chart: share of holdout buyers reached against the share
/// of customers targeted, one line per model, beside random targeting.
pub fn gains_chart(r: &EvalReport) -> Chart {
    let mut c = Chart::new(
        "Cumulative gains: holdout buyers reached by targeting the top customers",
        "fraction of customers targeted (by descending score)",
        "fraction of holdout buyers reached",
    )
    .x_range(0.0, 1.0)
    .y_range(0.0, 1.0)
    .reference("random", vec![(0.0, 0.0), (1.0, 1.0)]);
    for curve in &r.gains {
        c = c.line(&curve.model, curve.points.clone());
    }
    c
}

/// Writes `churn-calibration.svg` and `churn-gains.svg` into `dir`.
pub fn write(r: &EvalReport, dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(mesh_plot::write_all(
        dir,
        &[
            ("churn-calibration.svg".into(), calibration_chart(r)),
            ("churn-gains.svg".into(), gains_chart(r)),
        ],
    )?)
}
