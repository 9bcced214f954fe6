//! [`LiveIndex`]: the live signals held in memory (tests and the embedded mode). It applies
//! exactly the increments of [`super::signals`], so it behaves like the Redis-backed store.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::signals::{
    cooccurrence_updates, popularity_updates, push_history, trending_score, Horizon, LiveConfig,
    Scope,
};
use crate::topn::top_n;
use crate::types::{Interaction, ItemId, UserId};

/// In-memory co-occurrence, history, popularity and trending store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveIndex {
    cfg: LiveConfig,
    histories: HashMap<UserId, VecDeque<Interaction>>,
    /// Per epoch of the co-occurrence decay.
    cooc: HashMap<i64, HashMap<ItemId, HashMap<ItemId, f64>>>,
    /// Per scope, horizon and epoch of the horizon's decay.
    popularity: HashMap<(Scope, Horizon, i64), HashMap<ItemId, f64>>,
    categories: HashMap<ItemId, String>,
}

/// Keeps a row's `keep` highest-scored neighbours (ties: the greater id), as
/// the recommend service's store does (`StateStore::zcap`).
fn cut_row(row: &mut HashMap<ItemId, f64>, keep: usize) {
    let mut v: Vec<(ItemId, f64)> = row.drain().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    v.truncate(keep);
    row.extend(v);
}

impl LiveIndex {
    /// Empty index with the given settings.
    pub fn new(cfg: LiveConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// The settings.
    pub fn config(&self) -> &LiveConfig {
        &self.cfg
    }

    /// Applies one event: co-occurrence with the user's history, popularity counters, then
    /// appends it to the (bounded) history.
    pub fn record(&mut self, event: Interaction) {
        let history: Vec<Interaction> = self
            .histories
            .get(&event.user)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        let cut_above = self.cfg.cooc_cut_above();
        for (a, b, epoch, delta) in cooccurrence_updates(&history, &event, &self.cfg) {
            let row = self.cooc.entry(epoch).or_default().entry(a).or_default();
            *row.entry(b).or_insert(0.0) += delta;
            if cut_above.is_some_and(|above| row.len() > above) {
                cut_row(row, self.cfg.cooc_keep);
            }
        }
        for up in popularity_updates(&event, &self.cfg) {
            *self
                .popularity
                .entry((up.scope, up.horizon, up.epoch))
                .or_default()
                .entry(up.item)
                .or_insert(0.0) += up.delta;
        }
        if let Some(c) = &event.category {
            self.categories.insert(event.item.clone(), c.clone());
        }
        let cap = self.cfg.history_len;
        push_history(
            self.histories.entry(event.user.clone()).or_default(),
            event,
            cap,
        );
    }

    /// A user's recent interactions, oldest first.
    pub fn history(&self, user: &str) -> Vec<Interaction> {
        self.histories
            .get(user)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The last category seen for an item.
    pub fn category_of(&self, item: &str) -> Option<&str> {
        self.categories.get(item).map(String::as_str)
    }

    /// Stored co-occurrences of `item` in `now`'s epoch.
    fn cooc_of(&self, item: &str, now: f64) -> Option<&HashMap<ItemId, f64>> {
        let e = self.cfg.cooc_decay().epoch(now);
        self.cooc.get(&e).and_then(|m| m.get(item))
    }

    /// Decayed co-occurrence score of an ordered pair at `now`.
    pub fn cooccurrence(&self, a: &str, b: &str, now: f64) -> f64 {
        let stored = self
            .cooc_of(a, now)
            .and_then(|m| m.get(b))
            .copied()
            .unwrap_or(0.0);
        self.cfg.cooc_decay().read(stored, now)
    }

    /// Items most co-occurring with `item`, decayed to `now`.
    pub fn similar_items(&self, item: &str, n: usize, now: f64) -> Vec<(ItemId, f64)> {
        let d = self.cfg.cooc_decay();
        match self.cooc_of(item, now) {
            Some(m) => top_n(m.iter().map(|(k, &v)| (k.clone(), d.read(v, now))), n),
            None => Vec::new(),
        }
    }

    /// Items co-occurring with the user's recent history (each history item weighted by its
    /// event weight), excluding the history itself and `exclude`.
    pub fn recommend_from_history(
        &self,
        user: &str,
        n: usize,
        now: f64,
        exclude: &HashSet<ItemId>,
    ) -> Vec<(ItemId, f64)> {
        let d = self.cfg.cooc_decay();
        let hist = self.history(user);
        let seen: HashSet<&str> = hist.iter().map(|h| h.item.as_str()).collect();
        let mut acc: HashMap<&str, f64> = HashMap::new();
        for h in &hist {
            let w = self.cfg.weights.of(h.kind);
            if let Some(m) = self.cooc_of(&h.item, now) {
                for (other, &v) in m {
                    if !seen.contains(other.as_str()) && !exclude.contains(other) {
                        *acc.entry(other.as_str()).or_insert(0.0) += w * d.read(v, now);
                    }
                }
            }
        }
        top_n(acc.into_iter().map(|(k, v)| (k.to_string(), v)), n)
    }

    /// Decayed popularity (long horizon) of every item in `scope`.
    pub fn popularity_scores(&self, scope: &Scope, now: f64) -> HashMap<ItemId, f64> {
        let d = self.cfg.popularity_decay();
        self.popularity
            .get(&(scope.clone(), Horizon::Long, d.epoch(now)))
            .map(|m| {
                m.iter()
                    .map(|(k, &v)| (k.clone(), d.read(v, now)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Most popular items in `scope` at `now`.
    pub fn popular(&self, scope: &Scope, n: usize, now: f64) -> Vec<(ItemId, f64)> {
        top_n(self.popularity_scores(scope, now), n)
    }

    /// Items whose short-term traffic most exceeds their long-term rate in `scope`.
    pub fn trending(&self, scope: &Scope, n: usize, now: f64) -> Vec<(ItemId, f64)> {
        let el = self.cfg.popularity_decay().epoch(now);
        let es = self.cfg.trending_decay().epoch(now);
        let long = self.popularity.get(&(scope.clone(), Horizon::Long, el));
        let Some(short) = self.popularity.get(&(scope.clone(), Horizon::Short, es)) else {
            return Vec::new();
        };
        top_n(
            short.iter().map(|(k, &s)| {
                let l = long.and_then(|m| m.get(k)).copied().unwrap_or(0.0);
                (k.clone(), trending_score(l, s, now, &self.cfg))
            }),
            n,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EventKind;

    fn idx() -> LiveIndex {
        LiveIndex::new(LiveConfig {
            t_ref: 0.0,
            ..LiveConfig::default()
        })
    }

    #[test]
    fn bought_together_beats_viewed_together() {
        let mut ix = idx();
        // u1 views a then b; u2 orders a then c.
        ix.record(Interaction::new("u1", "a", EventKind::View, 10.0));
        ix.record(Interaction::new("u1", "b", EventKind::View, 20.0));
        ix.record(Interaction::new("u2", "a", EventKind::Order, 30.0));
        ix.record(Interaction::new("u2", "c", EventKind::Order, 40.0));
        let sim = ix.similar_items("a", 5, 50.0);
        assert_eq!(
            sim.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            vec!["c", "b"]
        );
        assert!((ix.cooccurrence("a", "c", 50.0) - ix.cooccurrence("c", "a", 50.0)).abs() < 1e-12);
    }

    /// A hub viewed between 150 new items: the first time its row passes
    /// 128 neighbours it is cut to exactly the uncapped row's 100 strongest
    /// (same scores), and it never holds more than 128.
    #[test]
    fn rows_are_cut_back_to_the_cap_past_128() {
        let mut whole = LiveIndex::new(LiveConfig {
            t_ref: 0.0,
            cooc_keep: 0,
            ..LiveConfig::default()
        });
        let mut cut = idx();
        let mut compared = false;
        for k in 0..150 {
            let t = 10.0 * k as f64;
            for (item, at) in [(format!("x{k}"), t), ("hub".to_string(), t + 5.0)] {
                for ix in [&mut whole, &mut cut] {
                    ix.record(Interaction::new("u", item.clone(), EventKind::View, at));
                }
                let (w, c) = (
                    whole.similar_items("hub", 1000, 2000.0),
                    cut.similar_items("hub", 1000, 2000.0),
                );
                assert!(c.len() <= 128, "{} neighbours", c.len());
                if w.len() == 129 && !compared {
                    assert_eq!(c, w[..100], "the first cut keeps the 100 strongest");
                    compared = true;
                }
            }
        }
        assert!(compared);
        assert_eq!(whole.similar_items("hub", 1000, 2000.0).len(), 150);
    }

    #[test]
    fn history_recommendations_exclude_seen_and_excluded() {
        let mut ix = idx();
        for (u, items) in [("u1", ["a", "b", "c"]), ("u2", ["a", "b", "d"])] {
            for (k, i) in items.iter().enumerate() {
                ix.record(Interaction::new(u, *i, EventKind::Cart, k as f64));
            }
        }
        ix.record(Interaction::new("u3", "a", EventKind::View, 100.0));
        let none = HashSet::new();
        let recs = ix.recommend_from_history("u3", 10, 100.0, &none);
        let ids: Vec<&str> = recs.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids[0], "b");
        assert!(!ids.contains(&"a"));
        let ex: HashSet<ItemId> = ["b".to_string()].into();
        let recs = ix.recommend_from_history("u3", 10, 100.0, &ex);
        assert!(recs.iter().all(|r| r.0 != "b"));
    }

    #[test]
    fn old_popularity_decays_below_recent() {
        let mut ix = idx();
        let day = 86_400.0;
        for k in 0..10 {
            ix.record(
                Interaction::new(format!("o{k}"), "old", EventKind::View, k as f64)
                    .with_category("x"),
            );
        }
        for k in 0..4 {
            ix.record(
                Interaction::new(format!("n{k}"), "new", EventKind::View, 30.0 * day)
                    .with_category("x"),
            );
        }
        let top = ix.popular(&Scope::Category("x".into()), 2, 30.0 * day);
        assert_eq!(top[0].0, "new");
        assert_eq!(ix.trending(&Scope::Global, 1, 30.0 * day)[0].0, "new");
        assert_eq!(ix.category_of("old"), Some("x"));
    }

    /// With the default `t_ref` (2024-01-01), across a boundary of the trending
    /// epochs: a burst an hour before the boundary still trends right after it, and
    /// scores are finite and close to the ones just before.
    #[test]
    fn trending_crosses_an_epoch_boundary() {
        let mut ix = LiveIndex::new(LiveConfig::default());
        let d = ix.config().trending_decay();
        let boundary = d.epoch_start(d.epoch(1_796_083_200.0) + 1);
        let day = 86_400.0;
        // Steady traffic on "steady" for 10 days, a burst on "hot" in the last hour.
        for h in 0..240 {
            let t = boundary - 10.0 * day + h as f64 * 3_600.0;
            ix.record(Interaction::new("s", "steady", EventKind::View, t));
        }
        for k in 0..30 {
            let t = boundary - 3_600.0 + k as f64 * 60.0;
            ix.record(Interaction::new(format!("h{k}"), "hot", EventKind::View, t));
        }
        let before = ix.trending(&Scope::Global, 2, boundary - 1.0);
        let after = ix.trending(&Scope::Global, 2, boundary + 1.0);
        assert_eq!(before[0].0, "hot");
        assert_eq!(after[0].0, "hot");
        // The two seconds between the reads move a ratio by (λ_short − λ_long)·2 s
        // ≈ 1.4e-5 of itself; a lost or doubled epoch would move it by far more.
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b.0, a.0);
            assert!(
                a.1.is_finite() && (a.1 - b.1).abs() < 3e-5 * b.1,
                "{b:?} {a:?}"
            );
        }
        assert_eq!(ix.popular(&Scope::Global, 1, boundary + 1.0)[0].0, "steady");
    }
}
