//! The lifecycle stage machine, as a pure function of a user's order times
//! and an instant.
//!
//! ```text
//!  new ──first order──▶ activated ──2nd order──▶ active
//!                          │                       │
//!                          └──── no order for at_risk days ────▶ at-risk ─▶ dormant ─▶ churned
//!                                                     (dormant days)  (churned days)
//!  at-risk / dormant / churned ──order──▶ reactivated ──order──▶ active
//!  reactivated ──no order for at_risk days──▶ at-risk ...
//! ```
//!
//! The whole path is recomputed from the order history ([`path`]) each time
//! a user is evaluated, so the same history and instant always give the same
//! transitions, whoever evaluates (the handler after an order, the sweep when
//! a deadline passes, a second instance). Time transitions carry the instant
//! the deadline ran out, not the instant the sweep noticed.
use mesh_proto::profile::v1::Stage;

use crate::features::DAY_MS;

/// Lapse thresholds, in ms since the latest order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub at_risk_ms: i64,
    pub dormant_ms: i64,
    pub churned_ms: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::from_days(30, 90, 180)
    }
}

impl Thresholds {
    pub fn from_days(at_risk: i64, dormant: i64, churned: i64) -> Self {
        Thresholds {
            at_risk_ms: at_risk * DAY_MS,
            dormant_ms: dormant * DAY_MS,
            churned_ms: churned * DAY_MS,
        }
    }

    /// The lapse stages with the time after the latest order each begins.
    fn lapses(&self) -> [(Stage, i64); 3] {
        [
            (Stage::AtRisk, self.at_risk_ms),
            (Stage::Dormant, self.dormant_ms),
            (Stage::Churned, self.churned_ms),
        ]
    }
}

/// One step of the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Stage,
    pub to: Stage,
    pub at_ms: i64,
    pub reason: String,
}

/// Rank of a lapse stage (0 for the others), to tell whether a deadline was
/// already passed.
fn lapse_rank(s: Stage) -> u8 {
    match s {
        Stage::AtRisk => 1,
        Stage::Dormant => 2,
        Stage::Churned => 3,
        _ => 0,
    }
}

fn days(ms: i64) -> i64 {
    ms / DAY_MS
}

/// Every transition of a user from the first event (`first_seen_ms`) with
/// `orders` (ascending) up to `now_ms`; the first one leaves
/// `Stage::Unspecified` for `New`.
pub fn path(first_seen_ms: i64, orders: &[i64], now_ms: i64, th: &Thresholds) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut stage = Stage::New;
    let start = orders
        .first()
        .map_or(first_seen_ms, |o| first_seen_ms.min(*o));
    out.push(Transition {
        from: Stage::Unspecified,
        to: Stage::New,
        at_ms: start,
        reason: "first event".into(),
    });
    let mut go = |out: &mut Vec<Transition>, stage: &mut Stage, to: Stage, at_ms, reason| {
        out.push(Transition {
            from: *stage,
            to,
            at_ms,
            reason,
        });
        *stage = to;
    };
    let mut last: Option<i64> = None;
    for &t in orders {
        if let Some(l) = last {
            lapse(&mut out, &mut stage, l, t - 1, th, &mut go);
        }
        match stage {
            Stage::New => go(
                &mut out,
                &mut stage,
                Stage::Activated,
                t,
                "first order".into(),
            ),
            Stage::Activated => go(
                &mut out,
                &mut stage,
                Stage::Active,
                t,
                "repeat order".into(),
            ),
            Stage::Reactivated => go(
                &mut out,
                &mut stage,
                Stage::Active,
                t,
                "repeat order after reactivation".into(),
            ),
            Stage::AtRisk | Stage::Dormant | Stage::Churned => {
                let gap = days(t - last.unwrap_or(t));
                go(
                    &mut out,
                    &mut stage,
                    Stage::Reactivated,
                    t,
                    format!("order after {gap} days without one"),
                )
            }
            Stage::Active | Stage::Unspecified => {}
        }
        last = Some(t);
    }
    if let Some(l) = last {
        lapse(&mut out, &mut stage, l, now_ms, th, &mut go);
    }
    out
}

type Go<'a> = dyn FnMut(&mut Vec<Transition>, &mut Stage, Stage, i64, String) + 'a;

/// Lapse transitions whose deadline (after the order at `last`) is at or
/// before `until`.
fn lapse(
    out: &mut Vec<Transition>,
    stage: &mut Stage,
    last: i64,
    until: i64,
    th: &Thresholds,
    go: &mut Go<'_>,
) {
    for (to, after) in th.lapses() {
        if last + after <= until && lapse_rank(*stage) < lapse_rank(to) {
            let reason = format!("no order for {} days", days(after));
            go(out, stage, to, last + after, reason);
        }
    }
}

/// The next instant a time transition can happen after `now` (the next
/// unpassed deadline after the latest order), `None` when the user has no
/// order or is churned.
pub fn next_deadline(last_order_ms: Option<i64>, now_ms: i64, th: &Thresholds) -> Option<i64> {
    let last = last_order_ms?;
    th.lapses()
        .iter()
        .map(|(_, after)| last + after)
        .find(|d| *d > now_ms)
}

/// Lower-case name of a stage, as shown in reports.
pub fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Unspecified => "unknown",
        Stage::New => "new",
        Stage::Activated => "activated",
        Stage::Active => "active",
        Stage::AtRisk => "at-risk",
        Stage::Dormant => "dormant",
        Stage::Churned => "churned",
        Stage::Reactivated => "reactivated",
    }
}

/// Every stage a user can be in, in lifecycle order.
pub const STAGES: [Stage; 7] = [
    Stage::New,
    Stage::Activated,
    Stage::Active,
    Stage::AtRisk,
    Stage::Dormant,
    Stage::Churned,
    Stage::Reactivated,
];

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = DAY_MS;

    fn stages(p: &[Transition]) -> Vec<(Stage, Stage, i64)> {
        p.iter().map(|t| (t.from, t.to, t.at_ms)).collect()
    }

    #[test]
    fn a_visitor_without_orders_stays_new() {
        let p = path(5, &[], 1000 * D, &Thresholds::default());
        assert_eq!(stages(&p), vec![(Stage::Unspecified, Stage::New, 5)]);
        assert_eq!(next_deadline(None, 1000 * D, &Thresholds::default()), None);
    }

    #[test]
    fn every_transition_with_its_deadline() {
        let th = Thresholds::from_days(30, 90, 180);
        // Orders on day 0 and day 10; nothing until day 400; then day 401.
        let orders = [0, 10 * D, 400 * D, 401 * D];
        let p = path(0, &orders, 450 * D, &th);
        assert_eq!(
            stages(&p),
            vec![
                (Stage::Unspecified, Stage::New, 0),
                (Stage::New, Stage::Activated, 0),
                (Stage::Activated, Stage::Active, 10 * D),
                (Stage::Active, Stage::AtRisk, 40 * D),
                (Stage::AtRisk, Stage::Dormant, 100 * D),
                (Stage::Dormant, Stage::Churned, 190 * D),
                (Stage::Churned, Stage::Reactivated, 400 * D),
                (Stage::Reactivated, Stage::Active, 401 * D),
                (Stage::Active, Stage::AtRisk, 431 * D),
            ]
        );
        assert_eq!(p[6].reason, "order after 390 days without one");
        assert_eq!(p[3].reason, "no order for 30 days");
        assert_eq!(next_deadline(Some(401 * D), 450 * D, &th), Some(491 * D));
        assert_eq!(next_deadline(Some(401 * D), 600 * D, &th), None);
    }

    #[test]
    fn deadlines_are_inclusive_and_checked_against_now() {
        let th = Thresholds::from_days(30, 90, 180);
        let before = path(0, &[0], 30 * D - 1, &th);
        assert_eq!(before.last().unwrap().to, Stage::Activated);
        let at = path(0, &[0], 30 * D, &th);
        assert_eq!(at.last().unwrap().to, Stage::AtRisk);
        // An order exactly at the deadline comes after the lapse.
        let p = path(0, &[0, 30 * D], 31 * D, &th);
        assert_eq!(p.last().unwrap().to, Stage::Active);
        let p = path(0, &[0, 30 * D + 1], 31 * D, &th);
        let tail: Vec<_> = p.iter().skip(2).map(|t| t.to).collect();
        assert_eq!(tail, vec![Stage::AtRisk, Stage::Reactivated]);
    }
}
