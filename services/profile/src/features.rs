//! Per-user features: what each event adds to state (pure ops) and what is
//! derived from that state at a given instant (pure read-side functions).
//!
//! **Windows.** Orders and spend are kept in day buckets (`od:<day>`,
//! `sd:<day>`, day = Unix ms / 86,400,000, UTC) by event time. A window of
//! `W` days at `now` sums the buckets of the `W` UTC days ending with the day
//! of `now`, today included: `day(now) - W < d <= day(now)`.
//!
//! **Decay.** A decayed counter `Σ w·exp(-(now - t)/τ)` cannot be kept
//! exactly once with increments unless every increment is expressed against
//! a fixed reference time `t0`: add `w·exp((t - t0)/τ)`, and at read time
//! multiply by `exp(-(now - t0)/τ)`. To keep the stored numbers finite the
//! reference moves every [`ERA_TAUS`] time constants: an event at `t` is
//! added to era `e = floor(t / (ERA_TAUS·τ))` with `t0 = e·ERA_TAUS·τ`, so
//! a stored increment never exceeds `w·e^ERA_TAUS`. Reads sum the era of
//! `now` and the one before; anything older has decayed by more than
//! `e^-ERA_TAUS` and is ignored.
use std::collections::HashMap;

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_store::Op;

/// One day in ms.
pub const DAY_MS: i64 = 86_400_000;
/// Time constants per decay era (see the module doc).
pub const ERA_TAUS: f64 = 64.0;

/// Funnel steps, in order.
pub const FUNNEL: [&str; 4] = ["view", "cart", "checkout", "order"];

/// What the fold needs to know; must be the same on the write and the read
/// side (changing a time constant re-weights history already stored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureConfig {
    /// Time constant of category/brand affinity, ms.
    pub affinity_tau_ms: f64,
    /// Time constant of the activity score, ms.
    pub activity_tau_ms: f64,
    /// How long after an order the lifecycle clock first runs out
    /// (at-risk), ms: the deadline the fold writes to the due index.
    pub first_deadline_ms: i64,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            affinity_tau_ms: 30.0 * DAY_MS as f64,
            activity_tau_ms: 7.0 * DAY_MS as f64,
            first_deadline_ms: 30 * DAY_MS,
        }
    }
}

/// `<tenant>/<user>`: member of the partition's indexes.
pub fn member(tenant: &str, user: &str) -> String {
    format!("{tenant}/{user}")
}

/// Key of the user's counters hash.
pub fn user_key(tenant: &str, user: &str) -> String {
    format!("u:{tenant}/{user}")
}

/// Key of the user's sessions hash (`a:<session>` first, `b:<session>` last event ms).
pub fn sessions_key(member: &str) -> String {
    format!("s:{member}")
}

/// Key of a decayed-affinity sorted set (`what` = `ca` category, `br` brand).
pub fn affinity_key(what: &str, era: i64, member: &str) -> String {
    format!("{what}:{era}:{member}")
}

/// Sorted set of every user of the partition (score 0: ordered by member).
pub const USERS_KEY: &str = "users";
/// Sorted set of users by next lifecycle deadline (score = -deadline ms, so
/// [`mesh_store::StateStore::ztop`] returns the earliest first).
pub const DUE_KEY: &str = "due";

/// The UTC day of an instant.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Era of an instant for a time constant, and the era's reference time.
pub fn era_of(ms: i64, tau_ms: f64) -> (i64, f64) {
    let len = ERA_TAUS * tau_ms;
    let era = (ms as f64 / len).floor() as i64;
    (era, era as f64 * len)
}

/// The stored increment of weight `w` at `ms`.
pub fn decayed_increment(w: f64, ms: i64, tau_ms: f64) -> (i64, f64) {
    let (era, t0) = era_of(ms, tau_ms);
    (era, w * ((ms as f64 - t0) / tau_ms).exp())
}

/// The factor that turns an era's stored sum into its value at `now`.
pub fn era_factor(era: i64, now_ms: i64, tau_ms: f64) -> f64 {
    let t0 = era as f64 * ERA_TAUS * tau_ms;
    (-(now_ms as f64 - t0) / tau_ms).exp()
}

/// Funnel step of an event kind (1-based), if it is one.
fn funnel_step(body: &Body) -> Option<i64> {
    match body {
        Body::PageView(_) | Body::ProductView(_) => Some(1),
        Body::AddToCart(_) => Some(2),
        Body::CheckoutStarted(_) => Some(3),
        Body::OrderPlaced(_) => Some(4),
        _ => None,
    }
}

/// The feature ops of one event (beyond the backbone counters of
/// [`crate::fold::ops`]).
pub fn ops(e: &Envelope, cfg: &FeatureConfig) -> Vec<Op> {
    let m = member(&e.tenant_id, &e.user_id);
    let key = user_key(&e.tenant_id, &e.user_id);
    let t = e.occurred_at_ms;
    let day = day_of(t);
    let mut ops = Vec::with_capacity(12);
    let hincr = |field: String, delta: i64| Op::HIncr {
        key: key.clone(),
        field,
        delta,
    };
    let hfloat = |field: String, delta: f64| Op::HIncrFloat {
        key: key.clone(),
        field,
        delta,
    };
    ops.push(Op::ZSet {
        key: USERS_KEY.into(),
        member: m.clone(),
        score: 0.0,
    });
    ops.push(hincr(format!("ad:{day}"), 1));
    let (era, w) = decayed_increment(1.0, t, cfg.activity_tau_ms);
    ops.push(hfloat(format!("act:{era}"), w));
    if let Some(c) = &e.context {
        if !c.device_type.is_empty() {
            ops.push(hincr(format!("dev:{}", c.device_type), 1));
        }
        if !c.channel.is_empty() {
            ops.push(hincr(format!("ch:{}", c.channel), 1));
        }
        if !c.session_id.is_empty() {
            let sk = sessions_key(&m);
            ops.push(Op::HMin {
                key: sk.clone(),
                field: format!("a:{}", c.session_id),
                value: t,
            });
            ops.push(Op::HMax {
                key: sk,
                field: format!("b:{}", c.session_id),
                value: t,
            });
        }
    }
    let Some(body) = &e.body else {
        return ops;
    };
    if let Some(step) = funnel_step(body) {
        for field in ["funnel".to_string(), format!("fd:{day}")] {
            ops.push(Op::HMax {
                key: key.clone(),
                field,
                value: step,
            });
        }
    }
    let mut affinity = |what: &str, name: &str, w: f64| {
        if name.is_empty() {
            return;
        }
        let (era, v) = decayed_increment(w, t, cfg.affinity_tau_ms);
        ops.push(Op::ZIncr {
            key: affinity_key(what, era, &m),
            member: name.to_string(),
            delta: v,
        });
    };
    match body {
        Body::ProductView(v) => {
            affinity("ca", &v.category, 1.0);
            affinity("br", &v.brand, 1.0);
        }
        Body::AddToCart(a) => affinity("ca", &a.category, 3.0),
        Body::OrderPlaced(o) => {
            for l in &o.items {
                affinity("ca", &l.category, 5.0);
                affinity("br", &l.brand, 5.0);
            }
        }
        _ => {}
    }
    match body {
        Body::OrderPlaced(o) => {
            ops.push(Op::HMin {
                key: key.clone(),
                field: "first_order".into(),
                value: t,
            });
            ops.push(Op::HMax {
                key: key.clone(),
                field: "last_order".into(),
                value: t,
            });
            ops.push(hincr(format!("od:{day}"), 1));
            ops.push(hfloat(format!("sd:{day}"), o.total));
            let (mut all, mut disc) = (0.0, 0.0);
            for l in &o.items {
                let s = l.unit_price * l.quantity as f64;
                all += s;
                if l.unit_discount > 0.0 {
                    disc += s;
                }
            }
            ops.push(hfloat("item_spend".into(), all));
            ops.push(hfloat("disc_spend".into(), disc));
            // The first deadline after this order. A late (older) order can
            // pull it earlier; the sweep then finds nothing due and moves it.
            ops.push(Op::ZSet {
                key: DUE_KEY.into(),
                member: m.clone(),
                score: -((t + cfg.first_deadline_ms) as f64),
            });
        }
        Body::RefundIssued(r) => ops.push(hfloat("refund_amt".into(), r.amount)),
        Body::ReviewSubmitted(r) => ops.push(hincr("rating_sum".into(), r.rating as i64)),
        _ => {}
    }
    ops
}

/// Order history and counters parsed from the user's hash: everything the
/// lifecycle and the window features need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserState {
    pub counters: crate::fold::Counters,
    pub first_order_ms: Option<i64>,
    pub last_order_ms: Option<i64>,
    /// `(day, orders, spend)` by day, ascending.
    pub order_days: Vec<(i64, u64, f64)>,
    /// `(day, events)`, ascending.
    pub active_days: Vec<(i64, u64)>,
    /// `(day, deepest step)`, ascending.
    pub funnel_days: Vec<(i64, i64)>,
    pub funnel: i64,
    pub devices: HashMap<String, u64>,
    pub channels: HashMap<String, u64>,
    /// `(era, stored sum)` of the activity counter.
    pub activity: Vec<(i64, f64)>,
    pub item_spend: f64,
    pub disc_spend: f64,
    pub refund_amount: f64,
    pub rating_sum: u64,
    /// Lifecycle fields written by the stage machine.
    pub stage: i32,
    pub stage_at_ms: i64,
    pub stage_n: u32,
    pub sent_n: u32,
    pub raw: HashMap<String, String>,
}

impl UserState {
    /// Parses the hash; `None` for an unknown user.
    pub fn from_hash(h: HashMap<String, String>) -> Option<Self> {
        let counters = crate::fold::Counters::from_hash(&h)?;
        let f = |k: &str| h.get(k).and_then(|v| v.parse::<f64>().ok());
        let i = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
        let mut s = UserState {
            counters,
            first_order_ms: i("first_order"),
            last_order_ms: i("last_order"),
            funnel: i("funnel").unwrap_or(0),
            item_spend: f("item_spend").unwrap_or(0.0),
            disc_spend: f("disc_spend").unwrap_or(0.0),
            refund_amount: f("refund_amt").unwrap_or(0.0),
            rating_sum: i("rating_sum").unwrap_or(0).max(0) as u64,
            stage: i("stage").unwrap_or(0) as i32,
            stage_at_ms: i("stage_at").unwrap_or(0),
            stage_n: i("stage_n").unwrap_or(0) as u32,
            sent_n: i("sent_n").unwrap_or(0) as u32,
            ..Default::default()
        };
        let mut orders: HashMap<i64, (u64, f64)> = HashMap::new();
        for (k, v) in &h {
            let Some((tag, rest)) = k.split_once(':') else {
                continue;
            };
            match tag {
                "od" | "sd" | "ad" | "fd" | "act" => {
                    let Ok(n) = rest.parse::<i64>() else { continue };
                    match tag {
                        "od" => orders.entry(n).or_default().0 = v.parse().unwrap_or(0),
                        "sd" => orders.entry(n).or_default().1 = v.parse().unwrap_or(0.0),
                        "ad" => s.active_days.push((n, v.parse().unwrap_or(0))),
                        "fd" => s.funnel_days.push((n, v.parse().unwrap_or(0))),
                        _ => s.activity.push((n, v.parse().unwrap_or(0.0))),
                    }
                }
                "dev" => {
                    s.devices.insert(rest.to_string(), v.parse().unwrap_or(0));
                }
                "ch" => {
                    s.channels.insert(rest.to_string(), v.parse().unwrap_or(0));
                }
                _ => {}
            }
        }
        s.order_days = orders.into_iter().map(|(d, (n, x))| (d, n, x)).collect();
        s.order_days.sort_by_key(|d| d.0);
        s.active_days.sort_unstable();
        s.funnel_days.sort_unstable();
        s.activity.sort_by_key(|a| a.0);
        s.raw = h;
        Some(s)
    }

    /// Order times in ascending order: day starts for every order of the
    /// day buckets, except the latest, which is exact.
    pub fn order_times(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.counters.orders as usize);
        for &(d, n, _) in &self.order_days {
            out.extend(std::iter::repeat_n(d * DAY_MS, n as usize));
        }
        if let (Some(last), Some(t)) = (out.last_mut(), self.last_order_ms) {
            *last = t.max(*last);
        }
        out
    }
}

/// Orders and spend over the last `days` UTC days at `now`.
pub fn window(order_days: &[(i64, u64, f64)], now_ms: i64, days: i64) -> (u64, f64) {
    let today = day_of(now_ms);
    order_days
        .iter()
        .filter(|(d, _, _)| *d <= today && *d > today - days)
        .fold((0, 0.0), |(n, s), (_, dn, ds)| (n + dn, s + ds))
}

/// Value at `now` of a decayed counter stored by era.
pub fn decayed_value(eras: &[(i64, f64)], now_ms: i64, tau_ms: f64) -> f64 {
    let (current, _) = era_of(now_ms, tau_ms);
    eras.iter()
        .filter(|(e, _)| *e == current || *e == current - 1)
        .map(|(e, v)| v * era_factor(*e, now_ms, tau_ms))
        .sum()
}

/// Merges the sorted sets of the current and previous era into scores at
/// `now`, highest first.
pub fn merge_affinity(
    eras: &[(i64, Vec<(String, f64)>)],
    now_ms: i64,
    tau_ms: f64,
    top: usize,
) -> Vec<(String, f64)> {
    let mut acc: HashMap<&str, f64> = HashMap::new();
    for (era, members) in eras {
        let f = era_factor(*era, now_ms, tau_ms);
        for (m, v) in members {
            *acc.entry(m.as_str()).or_default() += v * f;
        }
    }
    let mut out: Vec<(String, f64)> = acc.into_iter().map(|(m, v)| (m.to_string(), v)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(top);
    out
}

/// Argmax of a count map (ties: the smaller name), "" when empty.
pub fn preferred(counts: &HashMap<String, u64>) -> String {
    counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(k, _)| k.clone())
        .unwrap_or_default()
}

/// Distinct sessions and mean length in seconds from the sessions hash.
pub fn sessions(h: &HashMap<String, String>) -> (u64, f64) {
    let mut n = 0u64;
    let mut total = 0.0;
    for (k, v) in h {
        let Some(sid) = k.strip_prefix("a:") else {
            continue;
        };
        let (Ok(a), Some(Ok(b))) = (
            v.parse::<i64>(),
            h.get(&format!("b:{sid}")).map(|b| b.parse::<i64>()),
        ) else {
            continue;
        };
        n += 1;
        total += (b - a).max(0) as f64 / 1000.0;
    }
    (n, if n == 0 { 0.0 } else { total / n as f64 })
}

/// Every derived feature of one user at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub as_of_ms: i64,
    /// Days since the latest order (`None` without orders).
    pub recency_days: Option<f64>,
    pub frequency: u64,
    pub monetary: f64,
    pub aov: f64,
    pub orders_7d: u64,
    pub orders_30d: u64,
    pub orders_90d: u64,
    pub spend_7d: f64,
    pub spend_30d: f64,
    pub spend_90d: f64,
    pub categories: Vec<(String, f64)>,
    pub brands: Vec<(String, f64)>,
    pub price_sensitivity: f64,
    pub preferred_device: String,
    pub preferred_channel: String,
    pub sessions: u64,
    pub mean_session_seconds: f64,
    /// 0 (none) ..= 4 (order).
    pub funnel_step: i64,
    pub activity_score: f64,
    pub refund_rate: f64,
    pub cancellation_rate: f64,
    pub reviews: u64,
    pub mean_rating: f64,
}

/// Derives the features at `now` from the parsed state, the sessions hash
/// and the affinity sets of the current and previous era.
pub fn derive(
    s: &UserState,
    sessions_hash: &HashMap<String, String>,
    categories: &[(i64, Vec<(String, f64)>)],
    brands: &[(i64, Vec<(String, f64)>)],
    cfg: &FeatureConfig,
    now_ms: i64,
) -> Features {
    let c = &s.counters;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let (orders_7d, spend_7d) = window(&s.order_days, now_ms, 7);
    let (orders_30d, spend_30d) = window(&s.order_days, now_ms, 30);
    let (orders_90d, spend_90d) = window(&s.order_days, now_ms, 90);
    let (n_sessions, mean_len) = sessions(sessions_hash);
    let ev = |k: &str| c.by_type.get(k).copied().unwrap_or(0);
    let reviews = ev("review_submitted");
    Features {
        as_of_ms: now_ms,
        recency_days: s.last_order_ms.map(|t| (now_ms - t) as f64 / DAY_MS as f64),
        frequency: c.orders,
        monetary: c.spend,
        aov: ratio(c.spend, c.orders as f64),
        orders_7d,
        orders_30d,
        orders_90d,
        spend_7d,
        spend_30d,
        spend_90d,
        categories: merge_affinity(categories, now_ms, cfg.affinity_tau_ms, 5),
        brands: merge_affinity(brands, now_ms, cfg.affinity_tau_ms, 5),
        price_sensitivity: ratio(s.disc_spend, s.item_spend),
        preferred_device: preferred(&s.devices),
        preferred_channel: preferred(&s.channels),
        sessions: n_sessions,
        mean_session_seconds: mean_len,
        funnel_step: s.funnel,
        activity_score: decayed_value(&s.activity, now_ms, cfg.activity_tau_ms),
        refund_rate: ratio(ev("refund_issued") as f64, c.orders as f64),
        cancellation_rate: ratio(ev("order_cancelled") as f64, c.orders as f64),
        reviews,
        mean_rating: ratio(s.rating_sum as f64, reviews as f64),
    }
}
