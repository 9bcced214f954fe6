//! The CDNOW evaluation protocol of Fader, Hardie & Lee (2005): fit on the calibration
//! period, forecast the holdout, compare with the published numbers, then run the
//! supervised and hybrid models under an honest time split (see [`crate::learned`]).

use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;

use crate::bgnbd::{self, BgNbdFit};
use crate::data::{weeks_between, PurchaseLog, Rfm};
use crate::error::{Error, Result};
use crate::gamma_gamma::{self, GammaGammaParams, Spend};
use crate::learned::{self, LearnedReport};
use crate::metrics::{calibration_bins, cumulative_gains, pearson, roc_auc, CalibrationBin};
use crate::pareto::{self, ParetoNbdFit};

/// Published values from Fader, Hardie & Lee (2005) for the CDNOW 1/10 sample.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// BG/NBD r.
    pub r: f64,
    /// BG/NBD alpha.
    pub alpha: f64,
    /// BG/NBD a.
    pub a: f64,
    /// BG/NBD b.
    pub b: f64,
    /// BG/NBD log-likelihood.
    pub log_likelihood: f64,
    /// Actual repeat transactions, weeks 1-78.
    pub cumulative_actual_week78: f64,
    /// BG/NBD forecast of the cumulative repeat transactions at week 78.
    pub cumulative_forecast_week78: f64,
    /// Actual repeat transactions in weeks 40-78.
    pub holdout_actual: f64,
    /// Correlation of the BG/NBD per-customer holdout forecast with the actual.
    pub holdout_corr: f64,
    /// Correlation for Pareto/NBD.
    pub pareto_holdout_corr: f64,
    /// Mean holdout transactions by calibration frequency 0..7+.
    pub by_frequency_actual: [f64; 8],
    /// Pareto/NBD r, alpha, s, beta.
    pub pareto: [f64; 4],
    /// Pareto/NBD log-likelihood.
    pub pareto_log_likelihood: f64,
    /// Gamma-Gamma p, q, gamma (Fader & Hardie's note on the same sample).
    pub gamma_gamma: [f64; 3],
}

/// The published numbers.
pub fn published() -> Published {
    Published {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
        log_likelihood: -9582.4,
        cumulative_actual_week78: 4339.0,
        cumulative_forecast_week78: 4166.0,
        holdout_actual: 1882.0,
        holdout_corr: 0.626,
        pareto_holdout_corr: 0.630,
        by_frequency_actual: [0.237, 0.697, 1.393, 1.560, 2.532, 2.947, 3.862, 6.359],
        pareto: [0.553, 10.578, 0.606, 11.669],
        pareto_log_likelihood: -9595.0,
        gamma_gamma: [6.25, 3.74, 15.44],
    }
}

/// One row of the by-frequency table.
#[derive(Debug, Clone, Serialize)]
pub struct FrequencyRow {
    /// Calibration frequency (7 means 7+).
    pub frequency: u32,
    /// Customers in the group.
    pub customers: usize,
    /// Mean actual holdout transactions.
    pub actual: f64,
    /// Mean BG/NBD conditional expectation.
    pub expected: f64,
}

/// Pareto/NBD results.
#[derive(Debug, Clone, Serialize)]
pub struct ParetoReport {
    /// The fit.
    pub fit: ParetoNbdFit,
    /// Sum of conditional expectations over the holdout.
    pub holdout_forecast: f64,
    /// Per-customer correlation with the actual holdout counts.
    pub holdout_corr: f64,
}

/// Calibration curve of one model's P(purchase in the holdout), by decile.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationCurve {
    /// Model (`supervised_*`, `hybrid_*`, `bgnbd_p_purchase`, `p_alive`).
    pub model: String,
    /// Ten bins, lowest predicted probability first.
    pub bins: Vec<CalibrationBin>,
}

/// Cumulative gains curve of one model for "any holdout purchase".
#[derive(Debug, Clone, Serialize)]
pub struct GainsCurve {
    /// Model, as in [`CalibrationCurve::model`].
    pub model: String,
    /// `(fraction of customers targeted, fraction of holdout buyers reached)`,
    /// 11 points from (0, 0) to (1, 1), customers taken by descending score.
    pub points: Vec<(f64, f64)>,
}

/// Everything `mesh eval churn` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Customers in the calibration period.
    pub customers: usize,
    /// Purchase lines read / transactions after same-day merging.
    pub lines: usize,
    /// Transactions after same-day merging.
    pub transactions: usize,
    /// Calibration end (inclusive).
    pub calibration_end: NaiveDate,
    /// Holdout end (inclusive).
    pub holdout_end: NaiveDate,
    /// Holdout length in weeks.
    pub holdout_weeks: f64,
    /// BG/NBD r.
    pub r: f64,
    /// BG/NBD alpha.
    pub alpha: f64,
    /// BG/NBD a.
    pub a: f64,
    /// BG/NBD b.
    pub b: f64,
    /// BG/NBD log-likelihood, paper convention (no parameter-free terms).
    pub log_likelihood: f64,
    /// The same plus the parameter-free terms of the `(x, t_x)` summary density.
    pub log_likelihood_with_constants: f64,
    /// Optimizer iterations for the BG/NBD fit.
    pub bgnbd_iterations: u64,
    /// Actual repeat transactions from first purchase to holdout end.
    pub cumulative_actual_week78: f64,
    /// Sum over customers of E[X(t_i)], t_i from first purchase to holdout end.
    pub cumulative_forecast_week78: f64,
    /// Actual repeat transactions in the holdout.
    pub holdout_actual: f64,
    /// Sum of BG/NBD conditional expectations for the holdout.
    pub holdout_forecast: f64,
    /// Per-customer correlation of the BG/NBD forecast with the actual.
    pub holdout_corr: f64,
    /// Mean holdout transactions by calibration frequency 0..7+.
    pub by_frequency: Vec<FrequencyRow>,
    /// Pareto/NBD fit and forecasts.
    pub pareto: ParetoReport,
    /// Gamma-Gamma spend fit on customers with repeat purchases.
    pub gamma_gamma: GammaGammaParams,
    /// Customers with at least one holdout purchase.
    pub holdout_active_customers: usize,
    /// ROC-AUC of BG/NBD P(alive) for "any purchase in the holdout".
    pub auc_p_alive: f64,
    /// ROC-AUC of BG/NBD 1 - P(no purchase in holdout) for the same label.
    pub auc_bgnbd_p_purchase: f64,
    /// ROC-AUC of the supervised classifier (plain features) for the same label on the
    /// same customers: of the learners, the one with the best validation AUC.
    pub auc_supervised: f64,
    /// Which supervised classifier `auc_supervised` is.
    pub auc_supervised_model: String,
    /// ROC-AUC of the hybrid classifier (plain + BG/NBD features), chosen the same way.
    pub auc_hybrid: f64,
    /// Which hybrid classifier `auc_hybrid` is.
    pub auc_hybrid_model: String,
    /// Supervised and hybrid models trained on an earlier split of the calibration.
    pub learned: LearnedReport,
    /// Model chosen before looking at the holdout (see `learned`).
    pub best_model: String,
    /// Its holdout total.
    pub best_holdout_forecast: f64,
    /// Its per-customer correlation.
    pub best_holdout_corr: f64,
    /// Model selected on half A of the customers (in-calibration backtest only) and its
    /// holdout figures on half B beside plain BG/NBD's.
    pub customer_split: learned::CustomerSplit,
    /// Calibration by decile for the chosen supervised and hybrid classifiers,
    /// BG/NBD P(purchase in the holdout) and P(alive).
    pub calibration: Vec<CalibrationCurve>,
    /// Cumulative gains for the same models.
    pub gains: Vec<GainsCurve>,
    /// Published numbers for comparison.
    pub published: Published,
    /// Wall-clock seconds for the whole evaluation.
    pub seconds: f64,
}

/// Runs the full evaluation on a parsed purchase log.
pub fn evaluate(
    log: &PurchaseLog,
    calibration_end: NaiveDate,
    holdout_end: NaiveDate,
) -> Result<EvalReport> {
    evaluate_with_progress(log, calibration_end, holdout_end, &|_, _| {})
}

/// Steps reported by [`evaluate_with_progress`].
pub const EVAL_STEPS: u64 = 9;

/// [`evaluate`], calling `progress(done, EVAL_STEPS)` after each fit.
pub fn evaluate_with_progress(
    log: &PurchaseLog,
    calibration_end: NaiveDate,
    holdout_end: NaiveDate,
    progress: &dyn Fn(u64, u64),
) -> Result<EvalReport> {
    let started = Instant::now();
    if holdout_end <= calibration_end {
        return Err(Error::InvalidInput(format!(
            "holdout end {holdout_end} must be after calibration end {calibration_end}"
        )));
    }
    let cohort: Vec<_> = log
        .customers
        .iter()
        .filter(|c| c.first_day().is_some_and(|d| d <= calibration_end))
        .collect();
    if cohort.len() < 10 {
        return Err(Error::InvalidInput(format!(
            "only {} customers bought before {calibration_end}",
            cohort.len()
        )));
    }
    let rfm: Vec<Rfm> = cohort
        .iter()
        .filter_map(|c| c.rfm(calibration_end))
        .collect();
    let holdout_weeks = weeks_between(calibration_end, holdout_end);
    let actual: Vec<f64> = cohort
        .iter()
        .map(|c| c.count_between(calibration_end, holdout_end) as f64)
        .collect();

    let fit: BgNbdFit = bgnbd::fit(&rfm)?;
    progress(1, EVAL_STEPS);
    let p = fit.params;
    let forecast: Vec<f64> = rfm
        .iter()
        .map(|c| p.conditional_expected(holdout_weeks, c))
        .collect::<Result<_>>()?;

    let mut cumulative_actual = 0.0;
    let mut cumulative_forecast = 0.0;
    for c in &cohort {
        let first = c.first_day().expect("cohort members have purchases");
        cumulative_actual += c.until(holdout_end).len().saturating_sub(1) as f64;
        cumulative_forecast += p.expected_repeat(weeks_between(first, holdout_end))?;
    }

    let by_frequency = (0..8u32)
        .map(|f| {
            let members: Vec<usize> = (0..rfm.len())
                .filter(|&i| {
                    let x = rfm[i].frequency as u32;
                    if f == 7 {
                        x >= 7
                    } else {
                        x == f
                    }
                })
                .collect();
            let n = members.len().max(1) as f64;
            FrequencyRow {
                frequency: f,
                customers: members.len(),
                actual: members.iter().map(|&i| actual[i]).sum::<f64>() / n,
                expected: members.iter().map(|&i| forecast[i]).sum::<f64>() / n,
            }
        })
        .collect();

    let pareto_fit = pareto::fit(&rfm)?;
    progress(2, EVAL_STEPS);
    let pareto_forecast: Vec<f64> = rfm
        .iter()
        .map(|c| pareto_fit.params.conditional_expected(holdout_weeks, c))
        .collect::<Result<_>>()?;
    let pareto = ParetoReport {
        holdout_forecast: pareto_forecast.iter().sum(),
        holdout_corr: pearson(&pareto_forecast, &actual)?,
        fit: pareto_fit,
    };

    let spend: Vec<Spend> = cohort
        .iter()
        .zip(&rfm)
        .filter_map(|(c, r)| {
            c.mean_repeat_amount(calibration_end)
                .filter(|m| *m > 0.0)
                .map(|m| Spend {
                    frequency: r.frequency,
                    mean_value: m,
                })
        })
        .collect();
    let gamma_gamma = gamma_gamma::fit(&spend)?.params;
    progress(3, EVAL_STEPS);

    let active: Vec<bool> = actual.iter().map(|a| *a > 0.0).collect();
    let p_alive: Vec<f64> = rfm.iter().map(|c| p.p_alive(c)).collect();
    let p_purchase: Vec<f64> = rfm
        .iter()
        .map(|c| 1.0 - p.p_no_purchase(holdout_weeks, c))
        .collect();

    let (learned, p_buy) = learned::evaluate(
        &cohort,
        calibration_end,
        holdout_end,
        &actual,
        &|done, _| progress(3 + done, EVAL_STEPS),
    )?;
    let best = learned.best();
    let (auc_supervised_model, auc_supervised) = learned.classifier_by_validation("supervised_")?;
    let (auc_hybrid_model, auc_hybrid) = learned.classifier_by_validation("hybrid_")?;
    let scores_of = |name: &str| {
        learned
            .classifiers
            .iter()
            .position(|c| c.name == name)
            .map(|i| p_buy[i].as_slice())
            .unwrap_or(&[])
    };
    let curves: Vec<(&str, &[f64])> = vec![
        (&auc_supervised_model, scores_of(&auc_supervised_model)),
        (&auc_hybrid_model, scores_of(&auc_hybrid_model)),
        ("bgnbd_p_purchase", &p_purchase),
        ("p_alive", &p_alive),
    ];
    let calibration = curves
        .iter()
        .map(|(model, p)| CalibrationCurve {
            model: model.to_string(),
            bins: calibration_bins(p, &active, 10),
        })
        .collect();
    let gains = curves
        .iter()
        .map(|(model, p)| GainsCurve {
            model: model.to_string(),
            points: cumulative_gains(p, &active, 10),
        })
        .collect();

    Ok(EvalReport {
        customers: rfm.len(),
        lines: log.lines,
        transactions: log.customers.iter().map(|c| c.purchases.len()).sum(),
        calibration_end,
        holdout_end,
        holdout_weeks,
        r: p.r,
        alpha: p.alpha,
        a: p.a,
        b: p.b,
        log_likelihood: fit.log_likelihood,
        log_likelihood_with_constants: fit.log_likelihood + bgnbd::summary_constant(&rfm),
        bgnbd_iterations: fit.iterations,
        cumulative_actual_week78: cumulative_actual,
        cumulative_forecast_week78: cumulative_forecast,
        holdout_actual: actual.iter().sum(),
        holdout_forecast: forecast.iter().sum(),
        holdout_corr: pearson(&forecast, &actual)?,
        by_frequency,
        pareto,
        gamma_gamma,
        holdout_active_customers: active.iter().filter(|a| **a).count(),
        auc_p_alive: roc_auc(&p_alive, &active)?,
        auc_bgnbd_p_purchase: roc_auc(&p_purchase, &active)?,
        auc_supervised,
        auc_supervised_model,
        auc_hybrid,
        auc_hybrid_model,
        best_model: best.name.clone(),
        best_holdout_forecast: best.holdout_forecast,
        best_holdout_corr: best.holdout_corr,
        customer_split: learned.customer_split.clone(),
        learned,
        calibration,
        gains,
        published: published(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
