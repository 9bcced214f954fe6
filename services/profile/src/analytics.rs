//! Conversion and activity analytics over every user's state: funnel
//! conversion per step per day (optionally per group: segment, stage),
//! daily/weekly/monthly active users, cohort retention by first-order
//! month. Pure functions over parsed states, so the service, the CDNOW
//! report and the tests share them.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};

use crate::features::{day_of, UserState, FUNNEL};

/// Users reaching each funnel step on one day (within one group).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FunnelDay {
    pub day: i64,
    pub group: String,
    /// Users whose deepest step that day was at least `view`, `cart`,
    /// `checkout`, `order`.
    pub reached: [u64; 4],
}

impl FunnelDay {
    /// Conversion from each step to the next (`cart/view`, `checkout/cart`,
    /// `order/checkout`); 0 when the earlier step has no users.
    pub fn conversion(&self) -> [f64; 3] {
        let r = |a: u64, b: u64| if a == 0 { 0.0 } else { b as f64 / a as f64 };
        [
            r(self.reached[0], self.reached[1]),
            r(self.reached[1], self.reached[2]),
            r(self.reached[2], self.reached[3]),
        ]
    }
}

/// Funnel per day in `[from_day, to_day]` and per group (`group` of each
/// user; "" for no grouping), ordered by day then group.
pub fn funnel<'a>(
    users: impl Iterator<Item = (&'a UserState, String)>,
    from_day: i64,
    to_day: i64,
) -> Vec<FunnelDay> {
    let mut acc: BTreeMap<(i64, String), [u64; 4]> = BTreeMap::new();
    for (s, group) in users {
        for &(day, step) in &s.funnel_days {
            if day < from_day || day > to_day || step < 1 {
                continue;
            }
            let e = acc.entry((day, group.clone())).or_default();
            for r in e.iter_mut().take((step as usize).min(FUNNEL.len())) {
                *r += 1;
            }
        }
    }
    acc.into_iter()
        .map(|((day, group), reached)| FunnelDay {
            day,
            group,
            reached,
        })
        .collect()
}

/// Active users at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Active {
    /// Users with an event on the UTC day of `now`.
    pub dau: u64,
    /// ... in the 7 days ending today.
    pub wau: u64,
    /// ... in the 30 days ending today.
    pub mau: u64,
}

/// DAU/WAU/MAU at `now`.
pub fn active<'a>(users: impl Iterator<Item = &'a UserState>, now_ms: i64) -> Active {
    let today = day_of(now_ms);
    let mut a = Active::default();
    for s in users {
        let last = s
            .active_days
            .iter()
            .map(|(d, _)| *d)
            .filter(|d| *d <= today)
            .max();
        let Some(last) = last else { continue };
        a.dau += (last == today) as u64;
        a.wau += (last > today - 7) as u64;
        a.mau += (last > today - 30) as u64;
    }
    a
}

/// One cohort: users whose first order fell in `month` (`YYYY-MM`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    pub month: String,
    pub users: u64,
    /// Share of the cohort with an order in month 0, 1, 2, ... after the
    /// first (month 0 is always 1), up to the month of `now`.
    pub retention: Vec<f64>,
}

fn month_index(day: i64) -> i64 {
    let d = NaiveDate::from_num_days_from_ce_opt((day + 719_163) as i32).unwrap_or_default();
    d.year() as i64 * 12 + d.month0() as i64
}

/// Cohort retention by first-order month, months up to the one of `now`.
pub fn cohorts<'a>(users: impl Iterator<Item = &'a UserState>, now_ms: i64) -> Vec<Cohort> {
    let last_month = month_index(day_of(now_ms));
    let mut acc: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
    for s in users {
        let months: BTreeSet<i64> = s
            .order_days
            .iter()
            .filter(|(_, n, _)| *n > 0)
            .map(|(d, _, _)| month_index(*d))
            .filter(|m| *m <= last_month)
            .collect();
        let Some(&first) = months.first() else {
            continue;
        };
        let e = acc
            .entry(first)
            .or_insert_with(|| (0, vec![0; (last_month - first + 1) as usize]));
        e.0 += 1;
        for m in months {
            e.1[(m - first) as usize] += 1;
        }
    }
    acc.into_iter()
        .map(|(m, (n, active))| Cohort {
            month: format!("{}-{:02}", m / 12, m % 12 + 1),
            users: n,
            retention: active.iter().map(|a| *a as f64 / n as f64).collect(),
        })
        .collect()
}

/// Start of a `YYYY-MM-DD` day in Unix ms (UTC).
pub fn parse_date_ms(s: &str) -> Option<i64> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// `YYYY-MM-DD` of an instant (UTC).
pub fn date_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.date_naive().to_string())
        .unwrap_or_default()
}
