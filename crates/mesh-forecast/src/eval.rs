//! Competition-style evaluation: forecast `h` steps from each history, score against the
//! future with sMAPE and MASE, average over series, overall and per frequency class.
//! Series are processed in parallel with rayon.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::data::{Period, Series};
use crate::error::Result;
use crate::method::{forecast, Method};
use crate::metrics::{mase, smape};

/// Average scores over a group of series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupScore {
    /// Frequency class, `None` for all series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// Number of series.
    pub series: usize,
    /// Mean sMAPE (percent).
    pub smape: f64,
    /// Mean MASE.
    pub mase: f64,
}

/// Scores of one method.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MethodScore {
    /// The method.
    pub method: Method,
    /// Mean sMAPE over all series.
    pub smape: f64,
    /// Mean MASE over all series.
    pub mase: f64,
    /// Per frequency class.
    pub per_period: Vec<GroupScore>,
    /// Wall-clock seconds to fit, forecast and score every series.
    pub seconds: f64,
}

fn average(period: Option<Period>, rows: &[(Period, f64, f64)]) -> GroupScore {
    let sel: Vec<_> = rows
        .iter()
        .filter(|r| period.is_none_or(|p| r.0 == p))
        .collect();
    let n = sel.len().max(1) as f64;
    GroupScore {
        period,
        series: sel.len(),
        smape: sel.iter().map(|r| r.1).sum::<f64>() / n,
        mase: sel.iter().map(|r| r.2).sum::<f64>() / n,
    }
}

/// Evaluate one method on `series`.
pub fn evaluate(series: &[Series], method: Method) -> Result<MethodScore> {
    evaluate_with(series, method, &|| {})
}

/// [`evaluate`], calling `done()` after each series (from rayon's threads).
pub fn evaluate_with(
    series: &[Series],
    method: Method,
    done: &(dyn Fn() + Sync),
) -> Result<MethodScore> {
    let start = Instant::now();
    let rows: Vec<(Period, f64, f64)> = series
        .par_iter()
        .map(|s| {
            let m = s.period.seasonal_period();
            let f = forecast(method, &s.x, m, s.h)?;
            done();
            Ok((
                s.period,
                smape(&s.xx, &f.mean)?,
                mase(&s.x, &s.xx, &f.mean, m)?,
            ))
        })
        .collect::<Result<_>>()?;
    let seconds = start.elapsed().as_secs_f64();
    let overall = average(None, &rows);
    let mut periods: Vec<Period> = rows.iter().map(|r| r.0).collect();
    periods.sort();
    periods.dedup();
    Ok(MethodScore {
        method,
        smape: overall.smape,
        mase: overall.mase,
        per_period: periods
            .into_iter()
            .map(|p| average(Some(p), &rows))
            .collect(),
        seconds,
    })
}
