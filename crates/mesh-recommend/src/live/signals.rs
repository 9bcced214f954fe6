//! Pure update functions for the live signals. They say *what to add where*; the store
//! (Redis in the service, [`super::LiveIndex`] in memory) only applies the increments.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::decay::Decay;
use crate::types::{EventKind, Interaction, ItemId};

/// How much each event kind counts (view < cart < order).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EventWeights {
    /// Weight of a product view.
    pub view: f64,
    /// Weight of an add-to-cart.
    pub cart: f64,
    /// Weight of an order.
    pub order: f64,
}

impl Default for EventWeights {
    fn default() -> Self {
        Self {
            view: 1.0,
            cart: 3.0,
            order: 5.0,
        }
    }
}

impl EventWeights {
    /// Weight of one event kind.
    pub fn of(&self, kind: EventKind) -> f64 {
        match kind {
            EventKind::View => self.view,
            EventKind::Cart => self.cart,
            EventKind::Order => self.order,
        }
    }
}

/// Settings of the live layer. Defaults suit a shop with daily traffic cycles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveConfig {
    /// Start of epoch 0 of every stored decayed value (Unix seconds); see [`Decay`].
    pub t_ref: f64,
    /// Event weights.
    pub weights: EventWeights,
    /// Half-life of co-occurrence scores, seconds.
    pub cooc_half_life_secs: f64,
    /// Half-life of (long-term) popularity, seconds.
    pub popularity_half_life_secs: f64,
    /// Half-life of the short-term popularity used for trending, seconds.
    pub trending_half_life_secs: f64,
    /// How many recent interactions a user's history keeps.
    pub history_len: usize,
    /// A new event pairs with at most this many distinct recent items.
    pub cooc_window: usize,
    /// A new event pairs only with history at most this many seconds older.
    pub cooc_max_gap_secs: f64,
    /// Pseudo-count added to the long-term rate when computing trending ratios, so an item
    /// seen once is not "infinitely trending".
    pub trending_prior: f64,
    /// Most neighbours an item's co-occurrence row keeps (its highest-scored);
    /// 0 = no cap. A row is cut back to this many once it holds more than
    /// [`LiveConfig::cooc_cut_above`]. Reads use at most the top 101
    /// (`SimilarItems`' largest answer), seeds the top 20.
    #[serde(default = "default_cooc_keep")]
    pub cooc_keep: usize,
}

/// The default of [`LiveConfig::cooc_keep`].
pub const DEFAULT_COOC_KEEP: usize = 100;

fn default_cooc_keep() -> usize {
    DEFAULT_COOC_KEEP
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            // 2024-01-01T00:00:00Z. Any time works: stored values are kept per epoch.
            t_ref: 1_704_067_200.0,
            weights: EventWeights::default(),
            cooc_half_life_secs: 14.0 * 86_400.0,
            popularity_half_life_secs: 7.0 * 86_400.0,
            trending_half_life_secs: 86_400.0,
            history_len: 50,
            cooc_window: 20,
            cooc_max_gap_secs: 3.0 * 86_400.0,
            trending_prior: 1.0,
            cooc_keep: DEFAULT_COOC_KEEP,
        }
    }
}

impl LiveConfig {
    /// The row length above which a row is cut back to
    /// [`LiveConfig::cooc_keep`] (`None`: no cap): 128, Redis's
    /// `zset-max-listpack-entries`, for caps up to 128, so a row stays in the
    /// compact encoding between cuts; a quarter above the cap for larger
    /// caps, so a row is not rewritten at every new neighbour.
    pub fn cooc_cut_above(&self) -> Option<usize> {
        match self.cooc_keep {
            0 => None,
            k if k <= 128 => Some(128),
            k => Some(k + k / 4),
        }
    }

    /// The co-occurrence decay.
    pub fn cooc_decay(&self) -> Decay {
        Decay::with_half_life(self.cooc_half_life_secs, self.t_ref)
    }
    /// The long-term popularity decay.
    pub fn popularity_decay(&self) -> Decay {
        Decay::with_half_life(self.popularity_half_life_secs, self.t_ref)
    }
    /// The short-term (trending) popularity decay.
    pub fn trending_decay(&self) -> Decay {
        Decay::with_half_life(self.trending_half_life_secs, self.t_ref)
    }
}

/// Which population a popularity counter is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", content = "key", rename_all = "snake_case")]
pub enum Scope {
    /// All traffic.
    Global,
    /// Traffic on one category.
    Category(String),
    /// Traffic from one device type.
    Device(String),
    /// Traffic from one user segment.
    Segment(String),
}

/// Long-term popularity or the short-term counter behind trending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Horizon {
    /// Decays with `popularity_half_life_secs`.
    Long,
    /// Decays with `trending_half_life_secs`.
    Short,
}

/// One increment of a popularity counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopularityUpdate {
    /// The population.
    pub scope: Scope,
    /// Which decay.
    pub horizon: Horizon,
    /// The item whose counter grows.
    pub item: ItemId,
    /// The epoch of the stored value ([`Decay::epoch`]); each epoch is its own counter.
    pub epoch: i64,
    /// Forward-decayed increment (add it to the stored value).
    pub delta: f64,
}

/// Co-occurrence increments caused by `new`, given the user's recent `history`.
///
/// Returns `(a, b, epoch, delta)` in both directions for each distinct recent item `b != new.item`
/// whose latest event is at most `cooc_max_gap_secs` before `new` (at most `cooc_window`
/// items, most recent first). The pair weight is the geometric mean of the two event weights
/// (the strongest event per history item counts), stored forward-decayed at `new.ts` in
/// each epoch [`Decay::forward`] names.
pub fn cooccurrence_updates(
    history: &[Interaction],
    new: &Interaction,
    cfg: &LiveConfig,
) -> Vec<(ItemId, ItemId, i64, f64)> {
    // Strongest weight and latest time per distinct history item.
    let mut per_item: HashMap<&str, (f64, f64)> = HashMap::new();
    for h in history {
        if h.item == new.item || h.ts > new.ts || new.ts - h.ts > cfg.cooc_max_gap_secs {
            continue;
        }
        let w = cfg.weights.of(h.kind);
        let e = per_item.entry(h.item.as_str()).or_insert((w, h.ts));
        e.0 = e.0.max(w);
        e.1 = e.1.max(h.ts);
    }
    let mut items: Vec<(&str, f64, f64)> =
        per_item.into_iter().map(|(i, (w, t))| (i, w, t)).collect();
    // Most recent first; ties by id so the output is deterministic.
    items.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(b.0)));
    items.truncate(cfg.cooc_window);
    let decay = cfg.cooc_decay();
    let w_new = cfg.weights.of(new.kind);
    let mut out = Vec::with_capacity(items.len() * 2);
    for (other, w_other, _) in items {
        for (epoch, delta) in decay.forward((w_new * w_other).sqrt(), new.ts) {
            out.push((new.item.clone(), other.to_string(), epoch, delta));
            out.push((other.to_string(), new.item.clone(), epoch, delta));
        }
    }
    out
}

/// Popularity increments caused by `new`: global, plus its category, device and segment when
/// known, each for the long and the short horizon.
pub fn popularity_updates(new: &Interaction, cfg: &LiveConfig) -> Vec<PopularityUpdate> {
    let w = cfg.weights.of(new.kind);
    let mut scopes = vec![Scope::Global];
    if let Some(c) = &new.category {
        scopes.push(Scope::Category(c.clone()));
    }
    if let Some(d) = &new.device {
        scopes.push(Scope::Device(d.clone()));
    }
    if let Some(s) = &new.segment {
        scopes.push(Scope::Segment(s.clone()));
    }
    let long = cfg
        .popularity_decay()
        .forward(w, new.ts)
        .map(|u| (Horizon::Long, u));
    let short = cfg
        .trending_decay()
        .forward(w, new.ts)
        .map(|u| (Horizon::Short, u));
    let ups: Vec<(Horizon, (i64, f64))> = long.chain(short).collect();
    let mut out = Vec::with_capacity(scopes.len() * ups.len());
    for scope in scopes {
        for &(horizon, (epoch, delta)) in &ups {
            out.push(PopularityUpdate {
                scope: scope.clone(),
                horizon,
                item: new.item.clone(),
                epoch,
                delta,
            });
        }
    }
    out
}

/// Trending score from the stored long- and short-horizon values of one item, each read
/// from the epoch of `now` ([`LiveConfig::popularity_decay`] and
/// [`LiveConfig::trending_decay`] name them).
///
/// Each decayed sum is turned into a rate (`λ · S(t)`, which equals the event rate when it
/// is steady), and the score is `rate_short / (rate_long + prior·λ_long)`: about 1 for steady
/// items, above 1 for items whose traffic is rising.
pub fn trending_score(stored_long: f64, stored_short: f64, now: f64, cfg: &LiveConfig) -> f64 {
    let (dl, ds) = (cfg.popularity_decay(), cfg.trending_decay());
    let rate_long = dl.lambda * dl.read(stored_long, now);
    let rate_short = ds.lambda * ds.read(stored_short, now);
    rate_short / (rate_long + cfg.trending_prior * dl.lambda).max(f64::MIN_POSITIVE)
}

/// Appends `new` to a bounded history (oldest dropped first).
pub fn push_history(history: &mut VecDeque<Interaction>, new: Interaction, cap: usize) {
    history.push_back(new);
    while history.len() > cap {
        history.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LiveConfig {
        LiveConfig {
            t_ref: 0.0,
            ..LiveConfig::default()
        }
    }

    #[test]
    fn pairs_are_symmetric_and_weighted_by_kind() {
        let c = cfg();
        let hist = vec![
            Interaction::new("u", "a", EventKind::View, 10.0),
            Interaction::new("u", "b", EventKind::Order, 20.0),
            Interaction::new("u", "a", EventKind::Cart, 30.0),
        ];
        let new = Interaction::new("u", "c", EventKind::Order, 40.0);
        let ups = cooccurrence_updates(&hist, &new, &c);
        assert_eq!(ups.len(), 4);
        let f = c.cooc_decay().forward(1.0, 40.0).next().unwrap().1;
        let get = |a: &str, b: &str| ups.iter().find(|u| u.0 == a && u.1 == b).unwrap().3;
        // a's strongest event is Cart (3), new is Order (5).
        assert!((get("c", "a") - (15.0f64).sqrt() * f).abs() < 1e-12);
        assert!((get("a", "c") - get("c", "a")).abs() < 1e-15);
        assert!((get("c", "b") - 5.0 * f).abs() < 1e-12);
        assert!(get("c", "b") > get("c", "a"));
    }

    #[test]
    fn old_and_same_item_history_is_ignored_and_window_bounds_pairs() {
        let mut c = cfg();
        c.cooc_max_gap_secs = 100.0;
        c.cooc_window = 2;
        let hist = vec![
            Interaction::new("u", "old", EventKind::Order, 0.0),
            Interaction::new("u", "x", EventKind::View, 950.0),
            Interaction::new("u", "y", EventKind::View, 960.0),
            Interaction::new("u", "z", EventKind::View, 970.0),
            Interaction::new("u", "new", EventKind::View, 980.0),
        ];
        let new = Interaction::new("u", "new", EventKind::View, 1_000.0);
        let ups = cooccurrence_updates(&hist, &new, &c);
        let partners: Vec<&str> = ups
            .iter()
            .filter(|u| u.0 == "new")
            .map(|u| u.1.as_str())
            .collect();
        assert_eq!(partners, vec!["z", "y"]);
    }

    #[test]
    fn popularity_covers_known_scopes_and_both_horizons() {
        let c = cfg();
        let e = Interaction::new("u", "i", EventKind::Cart, 500.0)
            .with_category("shoes")
            .with_device("ios");
        let ups = popularity_updates(&e, &c);
        assert_eq!(ups.len(), 6);
        assert!(ups
            .iter()
            .any(|u| u.scope == Scope::Category("shoes".into()) && u.horizon == Horizon::Short));
        let long = ups
            .iter()
            .find(|u| u.scope == Scope::Global && u.horizon == Horizon::Long)
            .unwrap();
        assert!((c.popularity_decay().read(long.delta, 500.0) - 3.0).abs() < 1e-9);
    }

    /// What a store keyed by epoch holds for `now`'s epoch after events `(w, t)`.
    fn stored_at(d: &Decay, events: impl Iterator<Item = (f64, f64)>, now: f64) -> f64 {
        let e = d.epoch(now);
        events
            .flat_map(|(w, t)| d.forward(w, t))
            .filter(|u| u.0 == e)
            .map(|u| u.1)
            .sum()
    }

    /// Steady traffic trends near 1, a burst high: with `t_ref` at 0 and, with the
    /// default `t_ref` (2024-01-01), in 2026-12 (after the date a single reference time
    /// overflowed the 1-day half-life), at an epoch boundary, and decades later.
    #[test]
    fn steady_traffic_trends_near_one_and_a_burst_trends_high() {
        let day = 86_400.0;
        let defaults = LiveConfig::default();
        let boundary = defaults.trending_decay().epoch_start(3);
        for (c, start) in [
            (cfg(), 0.0),
            (defaults.clone(), 1_796_083_200.0 - 60.0 * day), // up to 2026-12-01
            (defaults.clone(), boundary - 30.0 * day),
            (defaults.clone(), defaults.t_ref + 40.0 * 365.25 * day),
        ] {
            let (dl, ds) = (c.popularity_decay(), c.trending_decay());
            // One event per hour for 60 days: steady.
            let hours = || (0..(60 * 24)).map(|h| (1.0, start + h as f64 * 3_600.0));
            let now = start + 60.0 * day;
            let (l, s) = (stored_at(&dl, hours(), now), stored_at(&ds, hours(), now));
            let steady = trending_score(l, s, now, &c);
            assert!(
                (0.8..1.2).contains(&steady),
                "steady trend {steady} from {start}"
            );
            // 50 events in the last hour only.
            let burst = || (0..50).map(|k| (1.0, now - 3_600.0 + k as f64 * 60.0));
            let (l2, s2) = (stored_at(&dl, burst(), now), stored_at(&ds, burst(), now));
            let hot = trending_score(l2, s2, now, &c);
            assert!(
                hot.is_finite() && hot > 3.0,
                "burst trend {hot} from {start}"
            );
        }
    }

    #[test]
    fn history_is_bounded() {
        let mut h = VecDeque::new();
        for k in 0..10 {
            push_history(
                &mut h,
                Interaction::new("u", format!("i{k}"), EventKind::View, k as f64),
                3,
            );
        }
        let items: Vec<&str> = h.iter().map(|i| i.item.as_str()).collect();
        assert_eq!(items, vec!["i7", "i8", "i9"]);
    }
}
