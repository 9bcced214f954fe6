//! The retention experiment's report as `mesh report retention` shows it:
//! return rates of alerted users, treated vs holdout, and the lift with its
//! confidence interval.
use std::fmt;

use mesh_proto::churn::v1::RetentionReportResponse;
use serde::Serialize;

/// One arm of the retention experiment.
#[derive(Debug, Clone, Serialize)]
pub struct ArmReport {
    /// Alerted users in the arm.
    pub users: u64,
    /// Of them, users who ordered again after their first alert.
    pub returned: u64,
    pub rate: f64,
}

/// `mesh report retention`: return rates of alerted users, treated vs
/// holdout, and the lift with its confidence interval.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub action: String,
    pub holdout_share: f64,
    pub treated: ArmReport,
    pub holdout: ArmReport,
    /// False until both arms have users; the lift fields are then absent.
    pub ready: bool,
    /// treated rate - holdout rate.
    pub difference: Option<f64>,
    /// difference / holdout rate (absent when the holdout rate is 0).
    pub relative_lift: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub confidence: f64,
    pub method: String,
}

impl From<RetentionReportResponse> for RetentionReport {
    fn from(r: RetentionReportResponse) -> Self {
        let arm = |a: Option<mesh_proto::churn::v1::ArmOutcome>| {
            let a = a.unwrap_or_default();
            ArmReport {
                users: a.users,
                returned: a.returned,
                rate: a.rate,
            }
        };
        let ready = r.ready;
        let when = |v: f64| (ready && v.is_finite()).then_some(v);
        RetentionReport {
            action: r.action,
            holdout_share: r.holdout_share,
            treated: arm(r.treated),
            holdout: arm(r.holdout),
            ready,
            difference: when(r.difference),
            relative_lift: when(r.relative_lift),
            ci_low: when(r.ci_low),
            ci_high: when(r.ci_high),
            confidence: r.confidence,
            method: r.method,
        }
    }
}

impl fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "retention experiment: action {:?}, holdout share {:.2}",
            self.action, self.holdout_share
        )?;
        for (name, a) in [("treated", &self.treated), ("holdout", &self.holdout)] {
            writeln!(
                f,
                "  {name:<8} {:>7} alerted users, {:>7} returned, return rate {:.4}",
                a.users, a.returned, a.rate
            )?;
        }
        match (self.difference, self.ci_low, self.ci_high) {
            (Some(d), Some(lo), Some(hi)) => {
                write!(
                    f,
                    "  lift {:+.4} ({:.0}% CI {:+.4} .. {:+.4}, {})",
                    d,
                    100.0 * self.confidence,
                    lo,
                    hi,
                    self.method
                )?;
                if let Some(rel) = self.relative_lift {
                    write!(f, ", relative {:+.1}%", 100.0 * rel)?;
                }
                Ok(())
            }
            _ => write!(
                f,
                "  no lift yet: both arms need alerted users (treated {}, holdout {})",
                self.treated.users, self.holdout.users
            ),
        }
    }
}
