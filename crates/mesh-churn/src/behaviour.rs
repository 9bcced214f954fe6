//! Behavioural activity per customer and UTC day — logins, sessions, dwell time,
//! support messages and complaints — and the features built from it.
//!
//! The churn service folds these counts from the user-event stream into the user's
//! stored summary; `mesh train churn` rebuilds the same per-day log from the topic.
//! Both hand an [`ActivityLog`] to [`crate::features::features`], so a model is
//! scored on exactly the features it was trained on.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::data::weeks_between;

/// One kind of behavioural signal, as counted per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// A successful login.
    Login,
    /// A visit (session) began.
    Session,
    /// Seconds spent on page and product views.
    Dwell,
    /// A message to customer service.
    Support,
    /// A complaint (see the service's definition: a 1–2 star review).
    Complaint,
}

impl Signal {
    /// Every signal, in a fixed order.
    pub const ALL: [Signal; 5] = [
        Signal::Login,
        Signal::Session,
        Signal::Dwell,
        Signal::Support,
        Signal::Complaint,
    ];

    /// Short prefix of the stored per-day field (`<prefix>:<YYYY-MM-DD>`).
    pub fn prefix(self) -> &'static str {
        match self {
            Signal::Login => "l",
            Signal::Session => "s",
            Signal::Dwell => "w",
            Signal::Support => "m",
            Signal::Complaint => "c",
        }
    }

    /// The signal of a stored field prefix.
    pub fn from_prefix(p: &str) -> Option<Self> {
        Signal::ALL.into_iter().find(|s| s.prefix() == p)
    }
}

/// A customer's activity of one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DayActivity {
    /// Successful logins.
    pub logins: f64,
    /// Sessions started.
    pub sessions: f64,
    /// Seconds of dwell on page and product views.
    pub dwell_seconds: f64,
    /// Support messages sent.
    pub support: f64,
    /// Complaints.
    pub complaints: f64,
}

impl DayActivity {
    /// Adds `amount` of `signal`.
    pub fn add(&mut self, signal: Signal, amount: f64) {
        let slot = match signal {
            Signal::Login => &mut self.logins,
            Signal::Session => &mut self.sessions,
            Signal::Dwell => &mut self.dwell_seconds,
            Signal::Support => &mut self.support,
            Signal::Complaint => &mut self.complaints,
        };
        *slot += amount;
    }

    fn any(&self) -> bool {
        self.logins + self.sessions + self.dwell_seconds + self.support + self.complaints > 0.0
    }
}

/// Per-day activity of one customer (days without activity absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivityLog {
    /// Activity by UTC day.
    pub days: BTreeMap<NaiveDate, DayActivity>,
}

impl ActivityLog {
    /// Adds `amount` of `signal` on `day`.
    pub fn add(&mut self, day: NaiveDate, signal: Signal, amount: f64) {
        self.days.entry(day).or_default().add(signal, amount);
    }

    /// Sums of the days in `(cutoff - days, cutoff]`.
    pub fn window(&self, cutoff: NaiveDate, days: i64) -> DayActivity {
        let mut sum = DayActivity::default();
        for (_, a) in self
            .days
            .range((cutoff - Duration::days(days - 1))..=cutoff)
        {
            sum.logins += a.logins;
            sum.sessions += a.sessions;
            sum.dwell_seconds += a.dwell_seconds;
            sum.support += a.support;
            sum.complaints += a.complaints;
        }
        sum
    }

    /// Last day on or before `cutoff` with any activity.
    pub fn last_active(&self, cutoff: NaiveDate) -> Option<NaiveDate> {
        self.days
            .range(..=cutoff)
            .rev()
            .find(|(_, a)| a.any())
            .map(|(d, _)| *d)
    }
}

/// Days of the short and long behavioural windows.
pub const SHORT_WINDOW_DAYS: i64 = 28;
/// See [`SHORT_WINDOW_DAYS`].
pub const LONG_WINDOW_DAYS: i64 = 91;

/// Names of [`behaviour_features`], in order.
pub const BEHAVIOUR_FEATURES: [&str; 10] = [
    "logins_4w",
    "logins_13w",
    "sessions_4w",
    "sessions_13w",
    "dwell_minutes_4w",
    "dwell_minutes_13w",
    "weeks_since_last_activity",
    "support_messages_13w",
    "complaints_13w",
    "login_trend",
];

/// Behavioural features as of `cutoff`. `last_purchase` counts as activity for the
/// recency of the last activity (a buyer was active on the day they bought).
/// `login_trend` is the share of the 13-week logins that fell in the last 4 weeks
/// (4/13 ≈ 0.31 for a steady user, 0 for one who stopped logging in; 0 without logins).
pub fn behaviour_features(
    a: &ActivityLog,
    cutoff: NaiveDate,
    last_purchase: Option<NaiveDate>,
) -> Vec<f64> {
    let short = a.window(cutoff, SHORT_WINDOW_DAYS);
    let long = a.window(cutoff, LONG_WINDOW_DAYS);
    let last = match (
        a.last_active(cutoff),
        last_purchase.filter(|d| *d <= cutoff),
    ) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    // Never active: as silent as the long window (keeps the feature finite).
    let silent = last.map_or(LONG_WINDOW_DAYS as f64 / 7.0, |d| weeks_between(d, cutoff));
    let trend = if long.logins > 0.0 {
        short.logins / long.logins
    } else {
        0.0
    };
    vec![
        short.logins,
        long.logins,
        short.sessions,
        long.sessions,
        short.dwell_seconds / 60.0,
        long.dwell_seconds / 60.0,
        silent,
        long.support,
        long.complaints,
        trend,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_recency() {
        let d = |n: i64| NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Duration::days(n);
        let mut a = ActivityLog::default();
        a.add(d(0), Signal::Login, 1.0);
        a.add(d(70), Signal::Login, 2.0);
        a.add(d(70), Signal::Dwell, 120.0);
        a.add(d(80), Signal::Complaint, 1.0);
        a.add(d(200), Signal::Login, 5.0); // after the cut-off: unseen
        let f = behaviour_features(&a, d(90), Some(d(10)));
        assert_eq!(f.len(), BEHAVIOUR_FEATURES.len());
        assert_eq!((f[0], f[1]), (2.0, 3.0));
        assert_eq!((f[4], f[5]), (2.0, 2.0));
        assert!((f[6] - 10.0 / 7.0).abs() < 1e-12);
        assert_eq!(f[8], 1.0);
        assert!((f[9] - 2.0 / 3.0).abs() < 1e-12);
        let none = behaviour_features(&ActivityLog::default(), d(90), None);
        assert_eq!(none[6], 13.0);
        assert!(none.iter().all(|v| v.is_finite()));
        for s in Signal::ALL {
            assert_eq!(Signal::from_prefix(s.prefix()), Some(s));
        }
    }
}
