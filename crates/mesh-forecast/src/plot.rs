//! `mesh eval forecast --plot DIR`: forecast fans for the first few series —
//! history, the actual future, the point forecast and its 80% and 95%
//! prediction intervals — as SVG (drawn by `mesh-plot`).

use std::path::{Path, PathBuf};

use mesh_plot::Chart;

use crate::data::Series;
use crate::error::Result;
use crate::forecast::Forecast;
use crate::method::{forecast, Method};

/// Series drawn by [`write`].
pub const FAN_SERIES: usize = 4;

/// A forecast fan of one series, made by `method`.
pub fn fan_chart(s: &Series, method: Method, f: &Forecast) -> Result<Chart> {
    let n = s.x.len();
    let at = |i: usize, v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(k, y)| ((i + k + 1) as f64, *y))
            .collect()
    };
    let (i80, i95) = (f.interval(0.8)?, f.interval(0.95)?);
    let mut c = Chart::new(
        &format!("{} ({}, h = {}): {}", s.name, s.period, s.h, method.name()),
        "period",
        "value",
    )
    .band("95% interval", at(n, &i95.upper), at(n, &i95.lower))
    .colour("#56B4E9")
    .band("80% interval", at(n, &i80.upper), at(n, &i80.lower))
    .colour("#0072B2")
    .line("history", at(0, &s.x))
    .colour("#000000");
    if !s.xx.is_empty() {
        // Joined to the last observation so the line has no gap.
        let mut future = vec![(n as f64, s.x[n - 1])];
        future.extend(at(n, &s.xx));
        c = c.line("actual", future).colour("#777777");
    }
    let mut point = vec![(n as f64, s.x[n - 1])];
    point.extend(at(n, &f.mean));
    Ok(c.line("forecast", point).colour("#D55E00"))
}

/// Forecasts the first [`FAN_SERIES`] of `series` with `method` and writes
/// `forecast-<series>.svg` for each into `dir`.
pub fn write(series: &[Series], method: Method, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut charts = Vec::new();
    for s in series.iter().filter(|s| !s.x.is_empty()).take(FAN_SERIES) {
        let f = forecast(method, &s.x, s.period.seasonal_period(), s.h)?;
        charts.push((
            format!("forecast-{}.svg", mesh_plot::file_stem(&s.name)),
            fan_chart(s, method, &f)?,
        ));
    }
    Ok(mesh_plot::write_all(dir, &charts)?)
}
