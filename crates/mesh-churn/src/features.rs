//! Per-customer features as of a cut-off date, with names, for the supervised models.
//!
//! The plain features use only the purchase history up to the cut-off. The hybrid set
//! appends BG/NBD quantities for a forecast horizon; rates are divided by the horizon so
//! a model trained on one horizon can be applied to another.

use chrono::NaiveDate;

use crate::behaviour::{behaviour_features, ActivityLog, BEHAVIOUR_FEATURES};
use crate::bgnbd::BgNbdParams;
use crate::data::{weeks_between, CustomerHistory};
use crate::error::{Error, Result};

/// Names of [`plain_features`], in order.
pub const PLAIN_FEATURES: [&str; 9] = [
    "frequency",
    "recency_weeks",
    "age_weeks",
    "weeks_since_last",
    "mean_gap_weeks",
    "purchases_last_13w",
    "purchases_per_week",
    "mean_amount",
    "mean_quantity",
];

/// Names of the BG/NBD features appended by [`hybrid_features`].
pub const BGNBD_FEATURES: [&str; 3] = [
    "bgnbd_p_alive",
    "bgnbd_expected_per_week",
    "bgnbd_p_purchase",
];

/// A named feature matrix (row-major).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureMatrix {
    /// Column names.
    pub names: Vec<String>,
    /// One row per sample, each `names.len()` long.
    pub rows: Vec<Vec<f64>>,
}

impl FeatureMatrix {
    /// Builds a matrix, checking row widths and finiteness.
    pub fn new(names: Vec<String>, rows: Vec<Vec<f64>>) -> Result<Self> {
        for (i, r) in rows.iter().enumerate() {
            if r.len() != names.len() {
                return Err(Error::InvalidInput(format!(
                    "row {i} has {} values, expected {} ({:?})",
                    r.len(),
                    names.len(),
                    names
                )));
            }
            if let Some(j) = r.iter().position(|v| !v.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "row {i} feature {:?} is not finite",
                    names[j]
                )));
            }
        }
        Ok(Self { names, rows })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Plain features of one customer as of `cutoff` (`None` before the first purchase).
pub fn plain_features(c: &CustomerHistory, cutoff: NaiveDate) -> Option<Vec<f64>> {
    let rfm = c.rfm(cutoff)?;
    let seen = c.until(cutoff);
    let n = seen.len() as f64;
    let recent_start = cutoff - chrono::Duration::days(91);
    let recent = seen.iter().filter(|p| p.day > recent_start).count() as f64;
    let mean_gap = if rfm.frequency > 0.0 {
        rfm.recency / rfm.frequency
    } else {
        rfm.t
    };
    let last = seen.last()?.day;
    Some(vec![
        rfm.frequency,
        rfm.recency,
        rfm.t,
        weeks_between(last, cutoff),
        mean_gap,
        recent,
        rfm.frequency / rfm.t.max(1.0),
        seen.iter().map(|p| p.amount).sum::<f64>() / n,
        seen.iter().map(|p| p.quantity).sum::<f64>() / n,
    ])
}

/// Plain features plus BG/NBD P(alive), expected purchases per week over `horizon`
/// weeks, and P(any purchase within `horizon`).
pub fn hybrid_features(
    c: &CustomerHistory,
    cutoff: NaiveDate,
    params: &BgNbdParams,
    horizon: f64,
) -> Result<Option<Vec<f64>>> {
    let (Some(mut row), Some(rfm)) = (plain_features(c, cutoff), c.rfm(cutoff)) else {
        return Ok(None);
    };
    row.push(params.p_alive(&rfm));
    row.push(params.conditional_expected(horizon, &rfm)? / horizon);
    row.push(1.0 - params.p_no_purchase(horizon, &rfm));
    Ok(Some(row))
}

/// Which feature groups a model uses. Training and serving both build rows with
/// [`features`] and names with [`FeatureSet::names`], so they cannot drift apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSet {
    /// Append the BG/NBD features ([`BGNBD_FEATURES`]).
    pub hybrid: bool,
    /// Append the behavioural features ([`crate::behaviour::BEHAVIOUR_FEATURES`]).
    pub behaviour: bool,
}

impl FeatureSet {
    /// Column names, in row order.
    pub fn names(self) -> Vec<String> {
        let mut names = feature_names(self.hybrid);
        if self.behaviour {
            names.extend(BEHAVIOUR_FEATURES.iter().map(|s| s.to_string()));
        }
        names
    }
}

/// The feature row of one customer as of `cutoff` for `set` (`None` before the first
/// purchase): plain purchase features, then BG/NBD ones (with `params` over `horizon`
/// weeks) when `set.hybrid`, then behavioural ones from `activity` (an empty log when
/// `None`) when `set.behaviour`. The one function training and serving call.
pub fn features(
    c: &CustomerHistory,
    activity: Option<&ActivityLog>,
    cutoff: NaiveDate,
    set: FeatureSet,
    params: &BgNbdParams,
    horizon: f64,
) -> Result<Option<Vec<f64>>> {
    let row = if set.hybrid {
        hybrid_features(c, cutoff, params, horizon)?
    } else {
        plain_features(c, cutoff)
    };
    let Some(mut row) = row else { return Ok(None) };
    if set.behaviour {
        let empty = ActivityLog::default();
        let last_purchase = c.until(cutoff).last().map(|p| p.day);
        row.extend(behaviour_features(
            activity.unwrap_or(&empty),
            cutoff,
            last_purchase,
        ));
    }
    Ok(Some(row))
}

/// Column names for plain (`hybrid == false`) or hybrid features.
pub fn feature_names(hybrid: bool) -> Vec<String> {
    let mut names: Vec<String> = PLAIN_FEATURES.iter().map(|s| s.to_string()).collect();
    if hybrid {
        names.extend(BGNBD_FEATURES.iter().map(|s| s.to_string()));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::PurchaseLog;

    #[test]
    fn features_describe_history() {
        let log = PurchaseLog::parse("1 19970101 1 10\n1 19970115 3 30\n").unwrap();
        let c = &log.customers[0];
        let cutoff = NaiveDate::from_ymd_opt(1997, 1, 29).unwrap();
        let f = plain_features(c, cutoff).unwrap();
        assert_eq!(f.len(), PLAIN_FEATURES.len());
        assert_eq!(f[0], 1.0); // one repeat
        assert!((f[1] - 2.0).abs() < 1e-12); // recency 2 weeks
        assert!((f[2] - 4.0).abs() < 1e-12); // age 4 weeks
        assert!((f[3] - 2.0).abs() < 1e-12); // silent 2 weeks
        assert_eq!(f[5], 2.0);
        assert_eq!(f[7], 20.0);
        assert!(plain_features(c, NaiveDate::from_ymd_opt(1996, 1, 1).unwrap()).is_none());
        assert!(FeatureMatrix::new(feature_names(false), vec![vec![f64::NAN; 9]]).is_err());
    }
}
