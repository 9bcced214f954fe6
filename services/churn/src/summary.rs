//! What an event does to a user's summary, as state ops, and the summary
//! read back. Pure: the same envelope always gives the same ops.
//!
//! One hash per user, `u:<tenant>/<user>`, in the slot of the user's
//! partition:
//! - `first`, `last`: first and last order time (HMin / HMax, Unix ms);
//! - `orders`, `spend`: every order counted, totals summed;
//! - `d:<YYYY-MM-DD>`: spend of that UTC day (HIncrFloat). "Same-day
//!   purchases are one transaction" is the number of `d:` fields, so it is
//!   right whatever order the events come in;
//! - `q:<YYYY-MM-DD>`: items bought that day (HIncrFloat), so the
//!   supervised model sees the same per-day history `mesh train churn`
//!   trained on;
//! - behaviour per UTC day (HIncrFloat, from the user-event topic; see
//!   [`signal`]): `l:<day>` successful logins, `s:<day>` sessions started,
//!   `w:<day>` dwell seconds of page and product views, `m:<day>` support
//!   messages, `c:<day>` complaints (a review of 1 or 2 stars: the event
//!   stream has no complaint flag on support messages); `seen` the latest
//!   behavioural event (HMax, Unix ms). Sums and maxima, so the fold is
//!   order-independent like the purchase fields. Behaviour before a user's
//!   first order is kept (it is the user's history once they buy), but only
//!   users with an order are indexed and scored;
//! - hysteresis and retention fields written by [`crate::engine`]
//!   (`alerted`, `alert_n`, `sent_n`, `alerted_at`, `first_alert_at`, `arm`,
//!   `returned`).
//!
//! And one sorted set per partition, `idx`, member `<tenant>/<user>`, score
//! the time of the latest applied order: the list the sweep and
//! `ListAtRisk` iterate.
//!
//! Erasure: every record that changes a user starts with the erasure
//! guard, and `user_erased` deletes `u:<member>` and removes the member
//! from `idx` ([`erasure_ops`]), so the service answers for the user as
//! for one it never saw, and nothing is scored or alerted for them again.
//!
//! Duplicate event ids: the handler drops an event whose id is already
//! marked in the partition's `e:<day>` hash (field = event id, the day of
//! the event) or seen earlier in the same batch, and marks new ids in the
//! same atomic step as their ops ([`seen_key`]). Together with the
//! offset watermark, every event id is folded once.
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use mesh_churn::behaviour::{ActivityLog, Signal};
use mesh_churn::data::{CustomerHistory, Purchase, Rfm, DAYS_PER_WEEK};
use mesh_churn::gamma_gamma::Spend;
use mesh_churn::scoring::CustomerState;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_store::{erasure, Op};

/// Key of the per-partition user index.
pub const INDEX_KEY: &str = "idx";

/// Key of a user's summary hash within its partition slot.
pub fn user_key(member: &str) -> String {
    format!("u:{member}")
}

/// The index member (and partitioning key) of a user.
pub fn member(tenant: &str, user: &str) -> String {
    format!("{tenant}/{user}")
}

/// Splits an index member back into tenant and user (tenant ids have no `/`).
pub fn split_member(member: &str) -> (&str, &str) {
    member.split_once('/').unwrap_or(("", member))
}

/// Key of the per-partition hash marking the event ids of one UTC day as
/// folded (field = event id).
pub fn seen_key(e: &Envelope) -> String {
    format!("e:{}", day(e.occurred_at_ms))
}

/// Longest dwell one view may add (4 h): a client that never reports the
/// page closed must not outweigh everyone's real visits.
const MAX_DWELL_SECONDS: f64 = 4.0 * 3600.0;

/// The behavioural signal an event carries and its amount: a successful
/// login, a session start, a page or product view's dwell seconds
/// (clamped to [0, 4 h]), a support message, a complaint (a review of 1 or
/// 2 stars). `None` for every other event. Training
/// ([`activities`]) and the stored fold ([`ops`]) both use it.
pub fn signal(body: &Body) -> Option<(Signal, f64)> {
    let dwell = |s: f64| {
        if s.is_finite() {
            s.clamp(0.0, MAX_DWELL_SECONDS)
        } else {
            0.0
        }
    };
    match body {
        Body::Login(l) if l.success => Some((Signal::Login, 1.0)),
        Body::SessionStarted(_) => Some((Signal::Session, 1.0)),
        Body::PageView(v) => Some((Signal::Dwell, dwell(v.dwell_seconds))),
        Body::ProductView(v) => Some((Signal::Dwell, dwell(v.dwell_seconds))),
        Body::SupportMessage(_) => Some((Signal::Support, 1.0)),
        Body::ReviewSubmitted(r) if (1..=2).contains(&r.rating) => Some((Signal::Complaint, 1.0)),
        _ => None,
    }
}

/// The ops one event applies, after the erasure guard: an
/// `order_placed`'s purchase fields, a behavioural event's day count
/// ([`signal`]), a `user_erased`'s deletions ([`erasure_ops`]); nothing
/// (not even the guard) for the rest.
pub fn ops(e: &Envelope) -> Vec<Op> {
    let Some(body) = &e.body else {
        return Vec::new();
    };
    if let Body::UserErased(_) = body {
        return erasure_ops(e);
    }
    let effects = effect_ops(e, body);
    if effects.is_empty() {
        return effects;
    }
    let mut ops = Vec::with_capacity(effects.len() + 1);
    ops.push(erasure::guard(&member(&e.tenant_id, &e.user_id)));
    ops.extend(effects);
    ops
}

/// Whether an event is a `user_erased`.
pub fn is_erasure(e: &Envelope) -> bool {
    matches!(e.body, Some(Body::UserErased(_)))
}

/// The ops of a `user_erased` event: the guard first (the erasure comes on
/// both event topics; the second changes nothing), the user's summary hash
/// deleted (purchases, behaviour, alert and experiment fields), the user
/// out of [`INDEX_KEY`], and the erasure recorded. The `e:<day>` marks of
/// the user's event ids stay: they are not keyed by user, and the erasure
/// cannot name them.
pub fn erasure_ops(e: &Envelope) -> Vec<Op> {
    let member = member(&e.tenant_id, &e.user_id);
    vec![
        erasure::guard(&member),
        Op::Del {
            key: user_key(&member),
        },
        Op::ZRem {
            key: INDEX_KEY.into(),
            member: member.clone(),
        },
        erasure::record(&member, e.occurred_at_ms),
    ]
}

/// What an event adds to the summary (without the guard).
fn effect_ops(e: &Envelope, body: &Body) -> Vec<Op> {
    let member = member(&e.tenant_id, &e.user_id);
    let key = user_key(&member);
    let t = e.occurred_at_ms;
    let o = match body {
        Body::OrderPlaced(o) => o,
        other => {
            let Some((sig, amount)) = signal(other) else {
                return Vec::new();
            };
            return vec![
                Op::HIncrFloat {
                    key: key.clone(),
                    field: format!("{}:{}", sig.prefix(), day(t)),
                    delta: amount,
                },
                Op::HMax {
                    key,
                    field: "seen".into(),
                    value: t,
                },
            ];
        }
    };
    vec![
        Op::HMin {
            key: key.clone(),
            field: "first".into(),
            value: t,
        },
        Op::HMax {
            key: key.clone(),
            field: "last".into(),
            value: t,
        },
        Op::HIncr {
            key: key.clone(),
            field: "orders".into(),
            delta: 1,
        },
        Op::HIncrFloat {
            key: key.clone(),
            field: "spend".into(),
            delta: o.total,
        },
        Op::HIncrFloat {
            key: key.clone(),
            field: format!("d:{}", day(t)),
            delta: o.total,
        },
        Op::HIncrFloat {
            key,
            field: format!("q:{}", day(t)),
            delta: order_quantity(o),
        },
        Op::ZSet {
            key: INDEX_KEY.into(),
            member,
            score: t as f64,
        },
    ]
}

/// Per-user purchase histories of the `order_placed` events among
/// `events` (any order, duplicates by `event_id` counted once): one
/// transaction per user and UTC day, as the stored summary keeps them. Ids
/// are index members (`<tenant>/<user>`), histories sorted by id.
pub fn histories(events: &[Envelope]) -> Vec<CustomerHistory> {
    let mut seen = std::collections::HashSet::new();
    let mut days: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<NaiveDate, (f64, f64)>,
    > = Default::default();
    for e in events {
        let Some(Body::OrderPlaced(o)) = &e.body else {
            continue;
        };
        if !e.event_id.is_empty() && !seen.insert(e.event_id.as_str()) {
            continue;
        }
        let Some(at) = DateTime::from_timestamp_millis(e.occurred_at_ms) else {
            continue;
        };
        let slot = days
            .entry(member(&e.tenant_id, &e.user_id))
            .or_default()
            .entry(at.date_naive())
            .or_insert((0.0, 0.0));
        slot.0 += order_quantity(o);
        slot.1 += o.total;
    }
    days.into_iter()
        .map(|(id, d)| CustomerHistory {
            id,
            purchases: d
                .into_iter()
                .map(|(day, (quantity, amount))| Purchase {
                    day,
                    quantity,
                    amount,
                })
                .collect(),
        })
        .collect()
}

/// Per-user behavioural activity of `events` (any order, duplicates by
/// `event_id` counted once), by index member: what the stored `l:`, `s:`,
/// `w:`, `m:`, `c:` fields hold.
pub fn activities(events: &[Envelope]) -> HashMap<String, ActivityLog> {
    let mut seen = std::collections::HashSet::new();
    let mut out: HashMap<String, ActivityLog> = HashMap::new();
    for e in events {
        let Some((sig, amount)) = e.body.as_ref().and_then(signal) else {
            continue;
        };
        if !e.event_id.is_empty() && !seen.insert(e.event_id.as_str()) {
            continue;
        }
        let Some(at) = DateTime::from_timestamp_millis(e.occurred_at_ms) else {
            continue;
        };
        out.entry(member(&e.tenant_id, &e.user_id))
            .or_default()
            .add(at.date_naive(), sig, amount);
    }
    out
}

/// Items in an order (sum of line quantities; 1 for an order without lines).
pub fn order_quantity(o: &mesh_proto::events::v1::OrderPlaced) -> f64 {
    if o.items.is_empty() {
        1.0
    } else {
        o.items.iter().map(|i| f64::from(i.quantity)).sum()
    }
}

fn day(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// A user's purchase summary and alert state, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub first_ms: i64,
    pub last_ms: i64,
    pub orders: u64,
    pub spend: f64,
    /// Distinct purchase days (transactions).
    pub days: u32,
    /// Spend of the first purchase day (excluded from the repeat mean).
    pub first_day_spend: f64,
    /// An alert is outstanding.
    pub alerted: bool,
    /// Alerts fired so far (crossings).
    pub alert_n: u64,
    /// Highest alert number published.
    pub sent_n: u64,
    pub first_alert_at_ms: Option<i64>,
    pub arm: String,
    pub returned: bool,
    /// Latest activity: the later of the last order and the last
    /// behavioural event (Unix ms).
    pub last_active_ms: i64,
    /// The raw fields, for compare-and-set guards.
    pub raw: HashMap<String, String>,
}

impl Summary {
    /// Parses the stored hash; `None` when the user has no order.
    pub fn from_hash(h: HashMap<String, String>) -> Option<Self> {
        let int = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
        let first_ms = int("first")?;
        let last_ms = int("last")?;
        let first_day = format!("d:{}", day(first_ms));
        let days = h.keys().filter(|k| k.starts_with("d:")).count() as u32;
        let float = |k: &str| h.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Some(Summary {
            first_ms,
            last_ms,
            orders: int("orders").unwrap_or(0) as u64,
            spend: float("spend"),
            days: days.max(1),
            first_day_spend: float(&first_day),
            alerted: h.get("alerted").is_some_and(|v| v == "1"),
            alert_n: int("alert_n").unwrap_or(0) as u64,
            sent_n: int("sent_n").unwrap_or(0) as u64,
            first_alert_at_ms: int("first_alert_at"),
            arm: h.get("arm").cloned().unwrap_or_default(),
            returned: h.contains_key("returned"),
            last_active_ms: int("seen").unwrap_or(last_ms).max(last_ms),
            raw: h,
        })
    }

    /// The per-day purchase history (`d:` spend and `q:` items per UTC day),
    /// as the model core's training sees it.
    pub fn history(&self, id: &str) -> CustomerHistory {
        let mut purchases: Vec<Purchase> = self
            .raw
            .iter()
            .filter_map(|(k, v)| {
                let d = k.strip_prefix("d:")?;
                let day = NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
                let quantity = self
                    .raw
                    .get(&format!("q:{d}"))
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(1.0);
                Some(Purchase {
                    day,
                    quantity,
                    amount: v.parse().unwrap_or(0.0),
                })
            })
            .collect();
        purchases.sort_by_key(|p| p.day);
        CustomerHistory {
            id: id.to_string(),
            purchases,
        }
    }

    /// The per-day behavioural activity (`l:`, `s:`, `w:`, `m:`, `c:`
    /// fields), as training rebuilds it with [`activities`].
    pub fn activity(&self) -> ActivityLog {
        let mut a = ActivityLog::default();
        for (k, v) in &self.raw {
            let Some((prefix, d)) = k.split_once(':') else {
                continue;
            };
            let Some(sig) = Signal::from_prefix(prefix) else {
                continue;
            };
            let (Ok(day), Ok(amount)) = (NaiveDate::parse_from_str(d, "%Y-%m-%d"), v.parse())
            else {
                continue;
            };
            a.add(day, sig, amount);
        }
        a
    }

    /// Repeat transactions `x`.
    pub fn frequency(&self) -> u32 {
        self.days - 1
    }

    /// The core's streaming state for this summary.
    pub fn customer_state(&self) -> CustomerState {
        CustomerState {
            first_order: DateTime::from_timestamp_millis(self.first_ms),
            last_order: DateTime::from_timestamp_millis(self.last_ms),
            frequency: self.frequency(),
            alerted: self.alerted,
        }
    }

    /// (x, t_x, T) in weeks at `now`, as the core's scorer computes it.
    pub fn rfm(&self, now: DateTime<Utc>) -> Rfm {
        // As the core's scorer: whole seconds between the instants.
        let weeks =
            |from: i64, to: i64| ((to - from) / 1000).max(0) as f64 / (86_400.0 * DAYS_PER_WEEK);
        let span = weeks(self.first_ms, self.last_ms);
        Rfm {
            frequency: f64::from(self.frequency()),
            recency: if self.frequency() > 0 { span } else { 0.0 },
            t: weeks(self.first_ms, now.timestamp_millis()).max(span),
        }
    }

    /// Mean value of repeat transactions, for Gamma-Gamma; `None` without
    /// a repeat transaction or with no repeat spend.
    pub fn repeat_spend(&self) -> Option<Spend> {
        let x = self.frequency();
        let repeat = self.spend - self.first_day_spend;
        (x > 0 && repeat > 0.0).then(|| Spend {
            frequency: f64::from(x),
            mean_value: repeat / f64::from(x),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::events::v1::OrderPlaced;

    fn order(ms: i64, total: f64) -> Envelope {
        Envelope {
            tenant_id: "shop".into(),
            user_id: "u1".into(),
            occurred_at_ms: ms,
            body: Some(Body::OrderPlaced(OrderPlaced {
                total,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    /// Applies ops to a hash the way the store does (hash fields only).
    fn fold(events: &[Envelope]) -> HashMap<String, String> {
        let mut h: HashMap<String, String> = HashMap::new();
        for e in events {
            for op in ops(e) {
                match op {
                    Op::HMin { field, value, .. } => {
                        let cur = h.get(&field).and_then(|v| v.parse::<i64>().ok());
                        h.insert(field, cur.map_or(value, |c| c.min(value)).to_string());
                    }
                    Op::HMax { field, value, .. } => {
                        let cur = h.get(&field).and_then(|v| v.parse::<i64>().ok());
                        h.insert(field, cur.map_or(value, |c| c.max(value)).to_string());
                    }
                    Op::HIncr { field, delta, .. } => {
                        let cur = h.get(&field).and_then(|v| v.parse::<i64>().ok());
                        h.insert(field, (cur.unwrap_or(0) + delta).to_string());
                    }
                    Op::HIncrFloat { field, delta, .. } => {
                        let cur = h.get(&field).and_then(|v| v.parse::<f64>().ok());
                        h.insert(field, (cur.unwrap_or(0.0) + delta).to_string());
                    }
                    _ => {}
                }
            }
        }
        h
    }

    #[test]
    fn same_day_orders_are_one_transaction_in_any_order() {
        let day = 86_400_000;
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % day + 3_600_000;
        let mut evs = vec![
            order(t0, 10.0),
            order(t0 + 60_000, 5.0),
            order(t0 + 7 * day, 20.0),
            order(t0 + 14 * day, 30.0),
        ];
        let a = Summary::from_hash(fold(&evs)).unwrap();
        evs.reverse();
        let b = Summary::from_hash(fold(&evs)).unwrap();
        assert_eq!(a.frequency(), 2);
        assert_eq!(a.orders, 4);
        assert_eq!((a.first_ms, a.last_ms), (t0, t0 + 14 * day));
        assert_eq!(a.first_day_spend, 15.0);
        let s = a.repeat_spend().unwrap();
        assert_eq!((s.frequency, s.mean_value), (2.0, 25.0));
        assert_eq!(
            (b.frequency(), b.first_ms, b.last_ms),
            (2, t0, t0 + 14 * day)
        );
        let h = a.history("shop/u1");
        assert_eq!(h.purchases.len(), 3);
        assert_eq!((h.purchases[0].amount, h.purchases[2].amount), (15.0, 30.0));
        assert!(h.purchases.windows(2).all(|w| w[0].day < w[1].day));
        let rfm = a.rfm(DateTime::from_timestamp_millis(t0 + 21 * day).unwrap());
        assert_eq!((rfm.frequency, rfm.recency, rfm.t), (2.0, 2.0, 3.0));
    }

    #[test]
    fn histories_merge_days_and_drop_duplicates() {
        let day = 86_400_000;
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % day + 3_600_000;
        let mut evs = vec![
            order(t0 + 7 * day, 20.0),
            order(t0, 10.0),
            order(t0 + 60_000, 5.0),
        ];
        for (i, e) in evs.iter_mut().enumerate() {
            e.event_id = format!("e{i}");
        }
        evs.push(evs[0].clone());
        let h = histories(&evs);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].id, "shop/u1");
        let amounts: Vec<f64> = h[0].purchases.iter().map(|p| p.amount).collect();
        assert_eq!(amounts, vec![15.0, 20.0]);
        // The same history the stored summary reconstructs.
        let stored = Summary::from_hash(fold(&evs[..3]))
            .unwrap()
            .history("shop/u1");
        assert_eq!(stored, h[0]);
    }

    #[test]
    fn behaviour_folds_per_day_in_any_order_as_training_rebuilds_it() {
        use mesh_proto::events::v1::{Login, PageView, ReviewSubmitted, SupportMessage};
        let day = 86_400_000;
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % day + 3_600_000;
        let ev = |i: usize, ms: i64, body: Body| Envelope {
            event_id: format!("b{i}"),
            occurred_at_ms: ms,
            body: Some(body),
            ..order(0, 0.0)
        };
        let login = || {
            Body::Login(Login {
                success: true,
                ..Default::default()
            })
        };
        let view = |s: f64| {
            Body::PageView(PageView {
                path: "/".into(),
                dwell_seconds: s,
            })
        };
        let review = |rating: u32| {
            Body::ReviewSubmitted(ReviewSubmitted {
                rating,
                ..Default::default()
            })
        };
        let mut evs = vec![
            order(t0, 10.0),
            ev(1, t0 + 1000, login()),
            ev(2, t0 + 2000, login()),
            ev(3, t0 + day, view(30.0)),
            ev(4, t0 + day, view(1e9)),
            ev(5, t0 + 2 * day, review(1)),
            ev(6, t0 + 2 * day, review(5)),
            ev(
                7,
                t0 + 3 * day,
                Body::SupportMessage(SupportMessage::default()),
            ),
            ev(8, t0 + 3 * day, Body::Login(Login::default())),
        ];
        let a = Summary::from_hash(fold(&evs)).unwrap();
        evs.reverse();
        let b = Summary::from_hash(fold(&evs)).unwrap();
        assert_eq!(a.activity(), b.activity());
        assert_eq!(a.last_active_ms, t0 + 3 * day);
        let log = a.activity();
        let d0 = DateTime::from_timestamp_millis(t0).unwrap().date_naive();
        let at = |n: i64| log.days[&(d0 + chrono::Duration::days(n))];
        assert_eq!(at(0).logins, 2.0);
        assert_eq!(at(1).dwell_seconds, 30.0 + MAX_DWELL_SECONDS);
        assert_eq!(
            (at(2).complaints, at(3).support, at(3).logins),
            (1.0, 1.0, 0.0)
        );
        // Training's rebuild from the log is the stored fold.
        assert_eq!(activities(&evs)["shop/u1"], log);
    }

    #[test]
    fn every_change_is_guarded_and_an_erasure_deletes_the_user() {
        let o = ops(&order(5, 10.0));
        assert!(
            matches!(&o[0], Op::Unless { key, field } if key == "erased" && field == "shop/u1")
        );
        assert!(o[1..].iter().all(|op| !matches!(op, Op::Unless { .. })));
        let e = Envelope {
            body: Some(Body::UserErased(Default::default())),
            ..order(7, 0.0)
        };
        assert!(is_erasure(&e));
        let o = ops(&e);
        assert!(matches!(&o[0], Op::Unless { field, .. } if field == "shop/u1"));
        assert!(matches!(&o[1], Op::Del { key } if key == "u:shop/u1"));
        assert!(
            matches!(&o[2], Op::ZRem { key, member } if key == INDEX_KEY && member == "shop/u1")
        );
        assert!(
            matches!(&o[3], Op::HSet { key, field, value } if key == "erased" && field == "shop/u1" && value == "7")
        );
        assert_eq!(o.len(), 4);
    }

    #[test]
    fn other_events_apply_nothing() {
        let e = Envelope {
            body: Some(Body::Login(Default::default())),
            ..order(0, 0.0)
        };
        assert!(ops(&e).is_empty());
        assert!(Summary::from_hash(HashMap::new()).is_none());
    }
}
