//! Supervised and hybrid models under an honest time split of the calibration period.
//!
//! Nothing here sees the holdout until prediction time:
//! - **Count models** learn "transactions in the next window" on a snapshot at the
//!   middle of the calibration period (features as of week ~20, target weeks ~20-39,
//!   BG/NBD refitted on weeks 1-20 for the hybrid features), then are applied to
//!   features as of the calibration end. The window is shorter than the holdout, so the
//!   learned count is carried to the holdout length either naively (constant rate,
//!   `*_rate`) or with BG/NBD's per-customer time profile. `bgnbd_rescaled` multiplies
//!   BG/NBD by its own in-calibration forecast error; `hybrid_poisson` is a Poisson
//!   regression with the BG/NBD forecast as offset; `hybrid_blend` averages
//!   `hybrid_forest` and `bgnbd_rescaled`; `pareto_nbd` is the Pareto/NBD conditional
//!   expectation; `bgnbd+<model>` are equal-weight combinations of BG/NBD with another
//!   model (no weights are fitted).
//! - **Model selection** never looks at the holdout: the whole protocol above is run
//!   again with the middle of the calibration period as cut-off and the calibration end
//!   as horizon (so every learned model is retrained on the first quarter), and the
//!   model with the lowest per-customer RMSE there is reported as best.
//! - **Customer split** ([`CustomerSplit`]): customers are split in two halves by a
//!   seeded hash of their id; the model is selected on half A's in-calibration backtest
//!   alone, and its holdout figures are reported on half B, beside plain BG/NBD's on the
//!   same customers, so the winner is measured on customers it was not chosen on.
//! - **Classifiers** learn "no purchase in the next N weeks" (N = a third of the
//!   calibration period) on a snapshot at 1/3 of the calibration period, get their
//!   Platt calibration on the snapshot at 2/3 (a later, time-based validation fold), and
//!   are applied at the calibration end. Their ROC-AUC is for "any purchase in the
//!   holdout", the same label P(alive) is scored on.

use chrono::{Duration, NaiveDate};
use serde::Serialize;
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::bgnbd::{self, BgNbdParams};
use crate::data::{weeks_between, CustomerHistory, Rfm};
use crate::error::{Error, Result};
use crate::features::{feature_names, hybrid_features, plain_features, FeatureMatrix};
use crate::metrics::{pearson, roc_auc};
use crate::supervised::{ChurnModel, ModelKind, TrainOptions};

/// Holdout result of one count model.
#[derive(Debug, Clone, Serialize)]
pub struct CountCandidate {
    /// Model name.
    pub name: String,
    /// Sum of per-customer holdout forecasts.
    pub holdout_forecast: f64,
    /// Per-customer correlation with the actual holdout counts.
    pub holdout_corr: f64,
    /// Mean absolute per-customer error.
    pub holdout_mae: f64,
    /// Per-customer RMSE of the same model in the in-calibration backtest (used to
    /// choose the best model without looking at the holdout).
    pub backtest_rmse: f64,
    /// Sum of the model's forecasts in the in-calibration backtest.
    pub backtest_forecast: f64,
    /// Per-customer correlation in the in-calibration backtest.
    pub backtest_corr: f64,
}

/// Holdout result of one classifier.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifierResult {
    /// Model name.
    pub name: String,
    /// AUC on the validation (calibration) fold, for its own label.
    pub validation_auc: f64,
    /// Brier score on the validation fold after Platt calibration.
    pub validation_brier: f64,
    /// ROC-AUC of 1 - P(churn) for "any purchase in the holdout".
    pub holdout_auc: f64,
}

/// Holdout figures of one model on one half of the customers.
#[derive(Debug, Clone, Serialize)]
pub struct SplitScore {
    /// Model name.
    pub model: String,
    /// Sum of its per-customer holdout forecasts.
    pub holdout_forecast: f64,
    /// `(forecast - actual) / actual` of the total, in percent.
    pub holdout_error_pct: f64,
    /// Per-customer correlation with the actual holdout counts.
    pub holdout_corr: f64,
    /// Per-customer mean absolute error.
    pub holdout_mae: f64,
    /// Per-customer RMSE.
    pub holdout_rmse: f64,
}

/// Model selection on one half of the customers, scored on the other half.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerSplit {
    /// Seed of the customer hash (`retention::unit_hash(id, "churn-eval-split-<seed>")`
    /// below 0.5 is half A).
    pub seed: u64,
    /// Customers in half A (selection) and half B (report).
    pub customers_a: usize,
    /// Customers in half B.
    pub customers_b: usize,
    /// Count model with the lowest in-calibration backtest RMSE on half A.
    pub selected: String,
    /// Half-A backtest RMSE of every count model, in candidate order.
    pub backtest_rmse_a: Vec<(String, f64)>,
    /// The count model with the lowest holdout RMSE on half A (the other protocol the
    /// split allows: it reads half A's holdout, never half B's).
    pub selected_by_holdout_a: String,
    /// Actual holdout transactions of half B.
    pub holdout_actual_b: f64,
    /// The selected model's holdout figures on half B.
    pub selected_b: SplitScore,
    /// Plain BG/NBD's holdout figures on half B.
    pub bgnbd_b: SplitScore,
    /// Every count model's holdout figures on half B, in candidate order.
    pub models_b: Vec<SplitScore>,
    /// The same protocol over seeds `1..=SPLIT_SWEEP_SEEDS`: how often the selected
    /// model beats plain BG/NBD on the report half.
    pub sweep: SplitSweep,
}

/// Selected model vs plain BG/NBD on the report half, over many customer splits.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitSweep {
    /// Number of seeds (splits).
    pub seeds: usize,
    /// How often each model was selected on half A (only models selected at least once).
    pub selected: Vec<(String, usize)>,
    /// Splits where the selected model's total is closer to half B's actual total.
    pub better_total: usize,
    /// Splits where its per-customer correlation on half B is higher.
    pub better_corr: usize,
    /// Splits where its per-customer MAE on half B is lower.
    pub better_mae: usize,
    /// Splits where its per-customer RMSE on half B is lower.
    pub better_rmse: usize,
    /// Mean over splits of (selected - BG/NBD) half-B correlation.
    pub mean_corr_gain: f64,
    /// Mean over splits of (selected - BG/NBD) half-B RMSE.
    pub mean_rmse_change: f64,
}

impl SplitSweep {
    fn from_splits(splits: &[CustomerSplit]) -> Self {
        let mut out = SplitSweep {
            seeds: splits.len(),
            ..SplitSweep::default()
        };
        let n = splits.len().max(1) as f64;
        for s in splits {
            match out.selected.iter_mut().find(|(m, _)| *m == s.selected) {
                Some((_, k)) => *k += 1,
                None => out.selected.push((s.selected.clone(), 1)),
            }
            let (a, b) = (&s.selected_b, &s.bgnbd_b);
            out.better_total += usize::from(a.holdout_error_pct.abs() < b.holdout_error_pct.abs());
            out.better_corr += usize::from(a.holdout_corr > b.holdout_corr);
            out.better_mae += usize::from(a.holdout_mae < b.holdout_mae);
            out.better_rmse += usize::from(a.holdout_rmse < b.holdout_rmse);
            out.mean_corr_gain += (a.holdout_corr - b.holdout_corr) / n;
            out.mean_rmse_change += (a.holdout_rmse - b.holdout_rmse) / n;
        }
        out
    }
}

/// Seed of the customer split `mesh eval churn` reports.
pub const SPLIT_SEED: u64 = 16;

/// Number of seeds of the split sweep (seeds `1..=SPLIT_SWEEP_SEEDS`).
pub const SPLIT_SWEEP_SEEDS: u64 = 20;

/// Whether customer `id` is in half A of the split with `seed`.
pub fn in_half_a(id: &str, seed: u64) -> bool {
    crate::retention::unit_hash(id, &format!("churn-eval-split-{seed}")) < 0.5
}

/// Results of the learned models.
#[derive(Debug, Clone, Serialize)]
pub struct LearnedReport {
    /// Snapshot date of the count-model training features.
    pub count_train_cutoff: NaiveDate,
    /// Count model with the lowest backtest RMSE: the one reported as best.
    pub chosen: String,
    /// Cut-off of the model-selection backtest (middle of the calibration period).
    pub backtest_cutoff: NaiveDate,
    /// Actual transactions from the backtest cut-off to the calibration end.
    pub backtest_actual: f64,
    /// Snapshot date of the classifier training features.
    pub classifier_train_cutoff: NaiveDate,
    /// Snapshot date of the classifier validation (Platt) fold.
    pub classifier_validation_cutoff: NaiveDate,
    /// Classifier label horizon N in weeks.
    pub classifier_horizon_weeks: f64,
    /// Count models on the holdout.
    pub count_models: Vec<CountCandidate>,
    /// Classifiers on the holdout.
    pub classifiers: Vec<ClassifierResult>,
    /// Selection on half of the customers, holdout figures on the other half
    /// (serialised once, as `customer_split` at the top of the eval report).
    #[serde(skip)]
    pub customer_split: CustomerSplit,
}

impl LearnedReport {
    /// The count model chosen by backtest.
    pub fn best(&self) -> &CountCandidate {
        self.count_models
            .iter()
            .find(|c| c.name == self.chosen)
            .unwrap_or(&self.count_models[0])
    }

    /// `(name, holdout AUC)` of the classifier whose name starts with `prefix` and
    /// has the best validation AUC (chosen without the holdout).
    pub fn classifier_by_validation(&self, prefix: &str) -> Result<(String, f64)> {
        self.classifiers
            .iter()
            .filter(|c| c.name.starts_with(prefix))
            .max_by(|a, b| a.validation_auc.total_cmp(&b.validation_auc))
            .map(|c| (c.name.clone(), c.holdout_auc))
            .ok_or_else(|| Error::InvalidInput(format!("no classifier named {prefix}*")))
    }
}

fn add_days(d: NaiveDate, days: i64) -> NaiveDate {
    d + Duration::days(days)
}

/// Customers alive in the data at `cutoff`, with their summaries.
fn snapshot<'a>(
    cohort: &[&'a CustomerHistory],
    cutoff: NaiveDate,
) -> (Vec<&'a CustomerHistory>, Vec<Rfm>) {
    cohort
        .iter()
        .filter_map(|c| c.rfm(cutoff).map(|r| (*c, r)))
        .unzip()
}

fn matrix(
    customers: &[&CustomerHistory],
    cutoff: NaiveDate,
    bg: Option<(&BgNbdParams, f64)>,
) -> Result<FeatureMatrix> {
    let rows = customers
        .iter()
        .map(|c| {
            let row = match bg {
                Some((p, h)) => hybrid_features(c, cutoff, p, h)?,
                None => plain_features(c, cutoff),
            };
            row.ok_or_else(|| Error::InvalidInput(format!("customer {} has no history", c.id)))
        })
        .collect::<Result<Vec<_>>>()?;
    FeatureMatrix::new(feature_names(bg.is_some()), rows)
}

fn forest(
    x: &FeatureMatrix,
    y: &[f64],
) -> Result<RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>> {
    let params = RandomForestRegressorParameters::default()
        .with_n_trees(200)
        .with_min_samples_leaf(20)
        .with_seed(11);
    Ok(RandomForestRegressor::fit(
        &DenseMatrix::from_2d_vec(&x.rows)?,
        &y.to_vec(),
        params,
    )?)
}

fn candidate(name: &str, forecast: &[f64], actual: &[f64]) -> Result<CountCandidate> {
    Ok(CountCandidate {
        name: name.into(),
        holdout_forecast: forecast.iter().sum(),
        holdout_corr: pearson(forecast, actual)?,
        holdout_mae: forecast
            .iter()
            .zip(actual)
            .map(|(f, a)| (f - a).abs())
            .sum::<f64>()
            / actual.len() as f64,
        backtest_rmse: f64::NAN,
        backtest_forecast: f64::NAN,
        backtest_corr: f64::NAN,
    })
}

/// Per-customer holdout forecasts of every count model, trained on data up to
/// `calibration_end` only, for the customers of `cohort` seen by `calibration_end` (in
/// cohort order).
fn count_forecasts(
    cohort: &[&CustomerHistory],
    calibration_end: NaiveDate,
    holdout_end: NaiveDate,
) -> Result<(NaiveDate, Forecasts)> {
    let (customers, full_rfm) = snapshot(cohort, calibration_end);
    let start = customers
        .iter()
        .filter_map(|c| c.first_day())
        .min()
        .ok_or_else(|| Error::InvalidInput("empty cohort".into()))?;
    let span = (calibration_end - start).num_days();
    if span < 21 {
        return Err(Error::InvalidInput(format!(
            "calibration period of {span} days is too short for a time split"
        )));
    }
    let horizon = weeks_between(calibration_end, holdout_end);
    let full_bg = bgnbd::fit(&full_rfm)?.params;
    let mid = add_days(start, span / 2);
    let h_mid = weeks_between(mid, calibration_end);
    let (train_customers, mid_rfm) = snapshot(&customers, mid);
    let mid_bg = bgnbd::fit(&mid_rfm)?.params;
    let target: Vec<f64> = train_customers
        .iter()
        .map(|c| c.count_between(mid, calibration_end) as f64)
        .collect();
    let mut out: Forecasts = Vec::new();

    let bg_expected = |h: f64| -> Result<Vec<f64>> {
        full_rfm
            .iter()
            .map(|c| full_bg.conditional_expected(h, c))
            .collect()
    };
    let bg_forecast = bg_expected(horizon)?;
    let bg_short = bg_expected(h_mid)?;
    out.push(("bgnbd", bg_forecast.clone()));

    // BG/NBD rescaled by its own forecast error inside the calibration period.
    let mid_expected: f64 = mid_rfm
        .iter()
        .map(|c| mid_bg.conditional_expected(h_mid, c))
        .sum::<Result<f64>>()?;
    let scale = target.iter().sum::<f64>() / mid_expected;
    let rescaled: Vec<f64> = bg_forecast.iter().map(|f| f * scale).collect();
    out.push(("bgnbd_rescaled", rescaled.clone()));

    for (rate_name, extended_name, hybrid) in [
        ("forest_rate", "forest", false),
        ("hybrid_forest_rate", "hybrid_forest", true),
    ] {
        // The forest learns the count in a window of h_mid weeks after a snapshot.
        let x_train = matrix(&train_customers, mid, hybrid.then_some((&mid_bg, h_mid)))?;
        let model = forest(&x_train, &target)?;
        let x_apply = matrix(
            &customers,
            calibration_end,
            hybrid.then_some((&full_bg, h_mid)),
        )?;
        let short = model.predict(&DenseMatrix::from_2d_vec(&x_apply.rows)?)?;
        // Naive: treat the learned count as a constant rate over the holdout.
        out.push((
            rate_name,
            short.iter().map(|s| s * horizon / h_mid).collect(),
        ));
        // Extended: BG/NBD's own per-customer time profile carries the h_mid-week
        // forecast to the holdout length (dropout makes the rate fall with time).
        let extended: Vec<f64> = short
            .iter()
            .zip(bg_forecast.iter().zip(&bg_short))
            .map(|(s, (long, brief))| s * long / brief.max(1e-12))
            .collect();
        if hybrid {
            let blend = extended
                .iter()
                .zip(&rescaled)
                .map(|(a, b)| 0.5 * (a + b))
                .collect();
            out.push(("hybrid_blend", blend));
        }
        out.push((extended_name, extended));
    }

    // Poisson regression with the BG/NBD forecast as offset: the offset carries the
    // horizon, the learned factor corrects BG/NBD where its shape is wrong.
    let train_offsets: Vec<f64> = mid_rfm
        .iter()
        .map(|c| mid_bg.conditional_expected(h_mid, c))
        .collect::<Result<_>>()?;
    let z_train: Vec<Vec<f64>> = train_customers
        .iter()
        .zip(&mid_rfm)
        .map(|(c, r)| correction_features(c, r, mid))
        .collect();
    let beta = fit_poisson_offset(&z_train, &train_offsets, &target)?;
    let corrected: Vec<f64> = customers
        .iter()
        .zip(&full_rfm)
        .zip(&bg_forecast)
        .map(|((c, r), e)| e * linear(&beta, &correction_features(c, r, calibration_end)).exp())
        .collect();
    out.push(("hybrid_poisson", corrected));

    let pareto = crate::pareto::fit(&full_rfm)?.params;
    let pareto_forecast: Vec<f64> = full_rfm
        .iter()
        .map(|c| pareto.conditional_expected(horizon, c))
        .collect::<Result<_>>()?;
    out.push(("pareto_nbd", pareto_forecast));

    // Equal-weight forecast combinations (Bates & Granger 1969) of BG/NBD with each
    // other model: the errors of a likelihood model and a learned one are only partly
    // correlated, so their mean is usually closer than either. Equal weights need no
    // fitting, so nothing more is learned from the (short) calibration period.
    let combined: Forecasts = COMBINED_WITH_BGNBD
        .iter()
        .filter_map(|(combo, other)| {
            let (_, f) = out.iter().find(|(n, _)| n == other)?;
            let mean = bg_forecast
                .iter()
                .zip(f)
                .map(|(a, b)| 0.5 * (a + b))
                .collect();
            Some((*combo, mean))
        })
        .collect();
    out.extend(combined);
    Ok((mid, out))
}

/// Horizon-free features for the Poisson correction (ratios and logs, no ages, so the
/// model transfers from a young snapshot to an older one).
fn correction_features(c: &CustomerHistory, r: &Rfm, cutoff: NaiveDate) -> Vec<f64> {
    let seen = c.until(cutoff);
    let n = seen.len().max(1) as f64;
    let amount = seen.iter().map(|p| p.amount).sum::<f64>() / n;
    let quantity = seen.iter().map(|p| p.quantity).sum::<f64>() / n;
    let repeat = r.frequency > 0.0;
    vec![
        1.0,
        f64::from(u8::from(!repeat)),
        (1.0 + r.frequency).ln(),
        if repeat && r.t > 0.0 {
            r.recency / r.t
        } else {
            0.0
        },
        (1.0 + amount.max(0.0)).ln(),
        (1.0 + quantity.max(0.0)).ln(),
    ]
}

fn linear(beta: &[f64], z: &[f64]) -> f64 {
    beta.iter().zip(z).map(|(b, v)| b * v).sum()
}

/// Maximum-likelihood Poisson regression `y ~ Poisson(offset * exp(beta . z))`.
fn fit_poisson_offset(z: &[Vec<f64>], offsets: &[f64], y: &[f64]) -> Result<Vec<f64>> {
    let k = z.first().map_or(0, Vec::len);
    let n = y.len() as f64;
    let objective = |beta: &[f64]| {
        let mut nll = 0.0;
        for ((zi, oi), yi) in z.iter().zip(offsets).zip(y) {
            let eta = oi.max(1e-12).ln() + linear(beta, zi);
            nll += eta.exp() - yi * eta;
        }
        // A light ridge keeps the fit stable when a feature is nearly constant.
        nll / n + 1e-4 * beta.iter().skip(1).map(|b| b * b).sum::<f64>()
    };
    Ok(crate::optimize::minimize(&objective, &vec![0.0; k])?.x)
}

/// `(combination name, model averaged with BG/NBD)`.
const COMBINED_WITH_BGNBD: [(&str, &str); 4] = [
    ("bgnbd+pareto_nbd", "pareto_nbd"),
    ("bgnbd+forest", "forest"),
    ("bgnbd+hybrid_forest", "hybrid_forest"),
    ("bgnbd+hybrid_poisson", "hybrid_poisson"),
];

/// Named per-customer forecasts.
type Forecasts = Vec<(&'static str, Vec<f64>)>;

fn rmse(forecast: &[f64], actual: &[f64]) -> f64 {
    (forecast
        .iter()
        .zip(actual)
        .map(|(f, a)| (f - a).powi(2))
        .sum::<f64>()
        / actual.len() as f64)
        .sqrt()
}

/// Trains the learned models on the calibration period only and scores the holdout.
/// `cohort` are the customers whose first purchase is on or before `calibration_end`;
/// `actual` their holdout transaction counts (used only for scoring). Beside the
/// report: each classifier's per-customer P(purchase in the holdout), in the
/// order of `LearnedReport::classifiers`. `progress(done, total)` is called
/// after each model.
pub fn evaluate(
    cohort: &[&CustomerHistory],
    calibration_end: NaiveDate,
    holdout_end: NaiveDate,
    actual: &[f64],
    progress: &dyn Fn(u64, u64),
) -> Result<(LearnedReport, Vec<Vec<f64>>)> {
    let active: Vec<bool> = actual.iter().map(|a| *a > 0.0).collect();
    let start = cohort
        .iter()
        .filter_map(|c| c.first_day())
        .min()
        .ok_or_else(|| Error::InvalidInput("empty cohort".into()))?;
    let span = (calibration_end - start).num_days();

    // Model selection by backtest: run the same protocol with the first half of the
    // calibration period as "calibration" and the second half as "holdout".
    let mid = add_days(start, span / 2);
    let (backtest_customers, _) = snapshot(cohort, mid);
    let backtest_actual: Vec<f64> = backtest_customers
        .iter()
        .map(|c| c.count_between(mid, calibration_end) as f64)
        .collect();
    let (_, backtest) = count_forecasts(cohort, mid, calibration_end)?;
    let backtest_rmse: Vec<(&str, f64)> = backtest
        .iter()
        .map(|(name, f)| (*name, rmse(f, &backtest_actual)))
        .collect();
    let backtest_scores: Vec<(f64, f64)> = backtest
        .iter()
        .map(|(_, f)| Ok((f.iter().sum(), pearson(f, &backtest_actual)?)))
        .collect::<Result<_>>()?;
    let chosen = backtest_rmse
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| "bgnbd".into());

    progress(1, 6);
    let (count_train_cutoff, forecasts) = count_forecasts(cohort, calibration_end, holdout_end)?;
    progress(2, 6);
    let mut count_models = Vec::new();
    for (((name, f), (_, bt)), (bf, bc)) in
        forecasts.iter().zip(&backtest_rmse).zip(&backtest_scores)
    {
        let mut c = candidate(name, f, actual)?;
        c.backtest_rmse = *bt;
        c.backtest_forecast = *bf;
        c.backtest_corr = *bc;
        count_models.push(c);
    }
    let split = |seed: u64| {
        customer_split(
            seed,
            &backtest_customers,
            &backtest,
            &backtest_actual,
            cohort,
            &forecasts,
            actual,
        )
    };
    let sweep = (1..=SPLIT_SWEEP_SEEDS)
        .map(split)
        .collect::<Result<Vec<_>>>()?;
    let customer_split = CustomerSplit {
        sweep: SplitSweep::from_splits(&sweep),
        ..split(SPLIT_SEED)?
    };
    let full_bg = bgnbd::fit(&snapshot(cohort, calibration_end).1)?.params;

    // ---- classifiers: fit at 1/3, Platt on 2/3, apply at the end ----
    let k_a = add_days(start, span / 3);
    let k_b = add_days(start, 2 * span / 3);
    let horizon = weeks_between(k_b, calibration_end);
    let churn_label =
        |customers: &[&CustomerHistory], from: NaiveDate, to: NaiveDate| -> Vec<bool> {
            customers
                .iter()
                .map(|c| c.count_between(from, to) == 0)
                .collect()
        };
    let (cust_a, rfm_a) = snapshot(cohort, k_a);
    let (cust_b, rfm_b) = snapshot(cohort, k_b);
    let y_a = churn_label(&cust_a, k_a, k_b);
    let y_b = churn_label(&cust_b, k_b, calibration_end);
    let bg_a = bgnbd::fit(&rfm_a)?.params;
    let bg_b = bgnbd::fit(&rfm_b)?.params;
    let mut classifiers = Vec::new();
    let mut holdout_p_buy = Vec::new();
    for (kind, kind_name) in [
        (ModelKind::LogisticRegression, "logistic"),
        (ModelKind::RandomForest, "forest"),
    ] {
        for hybrid in [false, true] {
            let name = if hybrid {
                format!("hybrid_{kind_name}")
            } else {
                format!("supervised_{kind_name}")
            };
            let (ba, bb, bf) = if hybrid {
                (
                    Some((&bg_a, horizon)),
                    Some((&bg_b, horizon)),
                    Some((&full_bg, horizon)),
                )
            } else {
                (None, None, None)
            };
            let options = TrainOptions {
                kind,
                version: format!("cdnow-eval-{name}"),
                label: format!("no purchase in the next {horizon:.1} weeks"),
                ..TrainOptions::default()
            };
            let model = ChurnModel::train(
                &matrix(&cust_a, k_a, ba)?,
                &y_a,
                &matrix(&cust_b, k_b, bb)?,
                &y_b,
                &options,
            )?;
            let p_churn = model.predict_proba(&matrix(cohort, calibration_end, bf)?)?;
            let p_buy: Vec<f64> = p_churn.iter().map(|p| 1.0 - p).collect();
            classifiers.push(ClassifierResult {
                name,
                validation_auc: model.metrics.validation_auc,
                validation_brier: model.metrics.validation_brier,
                holdout_auc: roc_auc(&p_buy, &active)?,
            });
            holdout_p_buy.push(p_buy);
            progress(2 + classifiers.len() as u64, 6);
        }
    }

    let report = LearnedReport {
        count_train_cutoff,
        chosen,
        backtest_cutoff: mid,
        backtest_actual: backtest_actual.iter().sum(),
        classifier_train_cutoff: k_a,
        classifier_validation_cutoff: k_b,
        classifier_horizon_weeks: horizon,
        count_models,
        classifiers,
        customer_split,
    };
    Ok((report, holdout_p_buy))
}

/// Selects the count model on half A's backtest (`backtest` forecasts for
/// `backtest_customers`, scored against `backtest_actual`: all inside the calibration
/// period) and scores every model on half B's holdout (`forecasts` for `cohort`,
/// `actual` its holdout counts). Also names the model half A's own holdout would pick.
fn customer_split(
    seed: u64,
    backtest_customers: &[&CustomerHistory],
    backtest: &Forecasts,
    backtest_actual: &[f64],
    cohort: &[&CustomerHistory],
    forecasts: &Forecasts,
    actual: &[f64],
) -> Result<CustomerSplit> {
    let pick = |v: &[f64], keep: &[bool]| -> Vec<f64> {
        v.iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(x, _)| *x)
            .collect()
    };
    let bt_a: Vec<bool> = backtest_customers
        .iter()
        .map(|c| in_half_a(&c.id, seed))
        .collect();
    let actual_bt_a = pick(backtest_actual, &bt_a);
    let backtest_rmse_a: Vec<(String, f64)> = backtest
        .iter()
        .map(|(name, f)| (name.to_string(), rmse(&pick(f, &bt_a), &actual_bt_a)))
        .collect();
    let selected = backtest_rmse_a
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| "bgnbd".into());

    let in_b: Vec<bool> = cohort.iter().map(|c| !in_half_a(&c.id, seed)).collect();
    let in_a: Vec<bool> = in_b.iter().map(|b| !b).collect();
    let actual_a = pick(actual, &in_a);
    let selected_by_holdout_a = forecasts
        .iter()
        .map(|(name, f)| (*name, rmse(&pick(f, &in_a), &actual_a)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| "bgnbd".into());
    let actual_b = pick(actual, &in_b);
    let total_b: f64 = actual_b.iter().sum();
    let models_b = forecasts
        .iter()
        .map(|(model, f)| {
            let f_b = pick(f, &in_b);
            let total: f64 = f_b.iter().sum();
            Ok(SplitScore {
                model: model.to_string(),
                holdout_forecast: total,
                holdout_error_pct: 100.0 * (total - total_b) / total_b,
                holdout_corr: pearson(&f_b, &actual_b)?,
                holdout_mae: f_b
                    .iter()
                    .zip(&actual_b)
                    .map(|(f, a)| (f - a).abs())
                    .sum::<f64>()
                    / f_b.len().max(1) as f64,
                holdout_rmse: rmse(&f_b, &actual_b),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let score = |model: &str| -> Result<SplitScore> {
        models_b
            .iter()
            .find(|s| s.model == model)
            .cloned()
            .ok_or_else(|| Error::InvalidInput(format!("no count model {model}")))
    };
    Ok(CustomerSplit {
        seed,
        customers_a: in_a.iter().filter(|a| **a).count(),
        customers_b: actual_b.len(),
        selected_b: score(&selected)?,
        bgnbd_b: score("bgnbd")?,
        selected,
        backtest_rmse_a,
        selected_by_holdout_a,
        holdout_actual_b: total_b,
        models_b,
        sweep: SplitSweep::default(),
    })
}
