//! What an event does to a user's profile, as state ops. Pure: the same
//! envelope always gives the same ops, which is what makes replay and
//! redelivery safe.
use std::collections::{HashMap, HashSet};

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_store::Op;

/// Key of a user's counters hash within its partition slot.
pub fn user_key(tenant: &str, user: &str) -> String {
    format!("u:{tenant}/{user}")
}

/// The ops one event applies.
pub fn ops(e: &Envelope) -> Vec<Op> {
    let key = user_key(&e.tenant_id, &e.user_id);
    let kind = e.kind().map(|k| k.name()).unwrap_or("unknown");
    let mut ops = vec![
        Op::HIncr {
            key: key.clone(),
            field: "events".into(),
            delta: 1,
        },
        Op::HIncr {
            key: key.clone(),
            field: format!("ev:{kind}"),
            delta: 1,
        },
        Op::HMin {
            key: key.clone(),
            field: "first_seen".into(),
            value: e.occurred_at_ms,
        },
        Op::HMax {
            key: key.clone(),
            field: "last_seen".into(),
            value: e.occurred_at_ms,
        },
    ];
    if let Some(Body::OrderPlaced(o)) = &e.body {
        ops.push(Op::HIncr {
            key: key.clone(),
            field: "orders".into(),
            delta: 1,
        });
        ops.push(Op::HIncrFloat {
            key,
            field: "spend".into(),
            delta: o.total,
        });
    }
    ops
}

/// A user's counters, read back from the store or folded offline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub events: u64,
    pub by_type: HashMap<String, u64>,
    pub orders: u64,
    pub spend: f64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

impl Counters {
    /// Parses the stored hash; `None` when the user is unknown.
    pub fn from_hash(h: &HashMap<String, String>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let int = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Some(Counters {
            events: int("events") as u64,
            by_type: h
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("ev:")?.to_string(), v.parse().ok()?)))
                .collect(),
            orders: int("orders") as u64,
            spend: h.get("spend").and_then(|v| v.parse().ok()).unwrap_or(0.0),
            first_seen_ms: int("first_seen"),
            last_seen_ms: int("last_seen"),
        })
    }

    /// Applies one event in memory: the reference the tests compare the
    /// store against. An erasure empties the counters (the service then
    /// answers for the user as for one it never saw); to also drop the
    /// user's later events, as the service does, fold with [`fold_users`].
    pub fn fold(&mut self, e: &Envelope) {
        if let Some(Body::UserErased(_)) = &e.body {
            *self = Counters::default();
            return;
        }
        self.events += 1;
        let kind = e.kind().map(|k| k.name()).unwrap_or("unknown");
        *self.by_type.entry(kind.to_string()).or_default() += 1;
        self.first_seen_ms = if self.events == 1 {
            e.occurred_at_ms
        } else {
            self.first_seen_ms.min(e.occurred_at_ms)
        };
        self.last_seen_ms = self.last_seen_ms.max(e.occurred_at_ms);
        if let Some(Body::OrderPlaced(o)) = &e.body {
            self.orders += 1;
            self.spend += o.total;
        }
    }
}

/// Folds a stream of events in memory, by member (`<tenant>/<user>`), as
/// the service applies it: a `user_erased` event removes its user, and
/// every later event of that user is ignored (the erasure guard).
pub fn fold_users<'a>(events: impl IntoIterator<Item = &'a Envelope>) -> HashMap<String, Counters> {
    let mut users: HashMap<String, Counters> = HashMap::new();
    let mut erased = HashSet::new();
    for e in events {
        let member = mesh_store::erasure::member(&e.tenant_id, &e.user_id);
        if erased.contains(&member) {
            continue;
        }
        if let Some(Body::UserErased(_)) = &e.body {
            users.remove(&member);
            erased.insert(member);
            continue;
        }
        users.entry(member).or_default().fold(e);
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::events::v1::{PageView, UserErased};

    fn ev(user: &str, at: i64, body: Body) -> Envelope {
        Envelope {
            tenant_id: "shop".into(),
            user_id: user.into(),
            occurred_at_ms: at,
            body: Some(body),
            ..Default::default()
        }
    }

    #[test]
    fn an_erasure_removes_the_user_and_their_later_events() {
        let view = || Body::PageView(PageView::default());
        let erase = || Body::UserErased(UserErased::default());
        let events = [
            ev("a", 1, view()),
            ev("b", 2, view()),
            ev("a", 3, erase()),
            ev("a", 4, view()),
            ev("b", 5, view()),
        ];
        let users = fold_users(&events);
        assert_eq!(users.keys().collect::<Vec<_>>(), vec!["shop/b"]);
        assert_eq!(
            (users["shop/b"].events, users["shop/b"].last_seen_ms),
            (2, 5)
        );
        let mut a = Counters::default();
        for e in &events[..3] {
            if e.user_id == "a" {
                a.fold(e);
            }
        }
        assert_eq!(a, Counters::default());
    }
}
