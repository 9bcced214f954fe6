//! The work behind each RPC: candidate generation from the model, live
//! co-occurrence and popularity, then `rank::rank` with the business rules.
//! Time is a parameter (`now`, Unix seconds); the gRPC layer passes the
//! clock.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mesh_recommend::cold::{ColdContext, ColdWeights};
use mesh_recommend::rank::{rank, Candidate, RankConfig, Ranked, Source, UserContext};
use mesh_recommend::ModelArtifact;

use crate::error::{Error, Result};
use crate::live::{LiveReader, UserState};
use crate::model::ModelHandle;

/// How many recent items seed co-occurrence candidates.
const COOC_SEEDS: usize = 10;

/// A Recommend or RankItems request, validated.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub tenant: String,
    pub user: String,
    pub n: usize,
    pub context: ColdContext,
    pub recently_shown: HashSet<String>,
}

/// A ranked answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub items: Vec<Ranked>,
    /// Version of the model used; empty without one.
    pub model_version: String,
    /// The user had no history and no model entry.
    pub cold_start: bool,
}

/// Recommendation engine shared by the gRPC handlers.
pub struct Engine {
    pub live: LiveReader,
    pub model: Arc<ModelHandle>,
    pub cold_weights: ColdWeights,
    pub rank: RankConfig,
}

impl Engine {
    pub fn new(live: LiveReader, model: Arc<ModelHandle>) -> Self {
        Engine {
            live,
            model,
            cold_weights: ColdWeights::default(),
            rank: RankConfig::default(),
        }
    }

    /// Top `q.n` items for a user.
    pub async fn recommend(&self, q: &Query, now: f64) -> Result<Answer> {
        let state = self.live.user_state(&q.tenant, &q.user).await?;
        let exclude = excluded(&state, q);
        let pool = (q.n * 4).max(50);
        let model = self.model.current();
        let recent = state.recent_items();
        let known = model.as_ref().is_some_and(|m| m.knows_user(&q.user));
        let cold_start = recent.is_empty() && !known;
        let mut candidates = Vec::new();
        if let Some(m) = model.as_ref().filter(|_| !cold_start) {
            candidates.extend(model_scores(m, &q.user, &recent, pool, &exclude).await?);
        }
        if !recent.is_empty() {
            let co = self
                .live
                .from_history(&q.tenant, &state, COOC_SEEDS, pool, now, &exclude)
                .await?;
            candidates.extend(co.into_iter().map(|(item, score)| Candidate {
                item,
                score,
                source: Source::Cooccurrence,
            }));
        }
        // Popularity always takes part: the whole answer for a new user, the
        // backfill for everyone else.
        candidates.extend(
            self.live
                .cold_candidates(&q.tenant, &q.context, &self.cold_weights, pool, &exclude)
                .await?,
        );
        let items = self
            .rank_candidates(q, &state, candidates, q.n, now)
            .await?;
        Ok(Answer {
            items,
            model_version: model.map(|m| m.version.clone()).unwrap_or_default(),
            cold_start,
        })
    }

    /// Orders caller-supplied items for a user. Each item keeps its best
    /// generator score; items no generator proposes enter with relevance 0
    /// as [`Source::Rule`] and are ordered by their catalog features.
    pub async fn rank_items(&self, q: &Query, items: &[String], now: f64) -> Result<Answer> {
        let state = self.live.user_state(&q.tenant, &q.user).await?;
        let exclude = excluded(&state, q);
        let wanted: HashSet<&str> = items.iter().map(String::as_str).collect();
        let model = self.model.current();
        let recent = state.recent_items();
        let mut candidates: Vec<Candidate> = Vec::new();
        if let Some(m) = &model {
            let all = m.item_ids.len();
            candidates.extend(
                model_scores(m, &q.user, &recent, all, &exclude)
                    .await?
                    .into_iter()
                    .filter(|c| wanted.contains(c.item.as_str())),
            );
        }
        if !recent.is_empty() {
            let co = self
                .live
                .from_history(&q.tenant, &state, COOC_SEEDS, 1000, now, &exclude)
                .await?;
            candidates.extend(
                co.into_iter()
                    .filter(|(i, _)| wanted.contains(i.as_str()))
                    .map(|(item, score)| Candidate {
                        item,
                        score,
                        source: Source::Cooccurrence,
                    }),
            );
        }
        let proposed: HashSet<String> = candidates.iter().map(|c| c.item.clone()).collect();
        candidates.extend(
            items
                .iter()
                .filter(|i| !proposed.contains(*i))
                .map(|item| Candidate {
                    item: item.clone(),
                    score: 0.0,
                    source: Source::Rule,
                }),
        );
        let mut ranked = self
            .rank_candidates(q, &state, candidates, items.len(), now)
            .await?;
        for r in ranked.iter_mut().filter(|r| r.source == Source::Rule) {
            r.reason = r.reason.replacen("selected offer", "ranked on request", 1);
        }
        Ok(Answer {
            items: ranked,
            model_version: model.map(|m| m.version.clone()).unwrap_or_default(),
            cold_start: recent.is_empty(),
        })
    }

    async fn rank_candidates(
        &self,
        q: &Query,
        state: &UserState,
        candidates: Vec<Candidate>,
        n: usize,
        now: f64,
    ) -> Result<Vec<Ranked>> {
        let mut ids: Vec<String> = candidates.iter().map(|c| c.item.clone()).collect();
        ids.sort();
        ids.dedup();
        let catalog = self.live.catalog(&q.tenant, &ids).await?;
        let ctx = UserContext {
            now,
            category_affinity: affinity(state),
            typical_price: typical_price(state),
            purchased: state.purchased.clone(),
            in_cart: state.in_cart.clone(),
            recently_shown: q.recently_shown.clone(),
            at_risk: false,
            promo_abuse: false,
        };
        let cfg = RankConfig {
            n,
            ..self.rank.clone()
        };
        Ok(rank(&ctx, &candidates, &catalog, &cfg))
    }
}

fn excluded(state: &UserState, q: &Query) -> HashSet<String> {
    state
        .purchased
        .iter()
        .chain(&state.in_cart)
        .chain(&q.recently_shown)
        .cloned()
        .collect()
}

/// Model candidates, scored off the async runtime (scoring is CPU work
/// proportional to the number of items).
async fn model_scores(
    m: &Arc<ModelArtifact>,
    user: &str,
    recent: &[String],
    n: usize,
    exclude: &HashSet<String>,
) -> Result<Vec<Candidate>> {
    let (m, user, recent, exclude) = (
        m.clone(),
        user.to_string(),
        recent.to_vec(),
        exclude.clone(),
    );
    let scored = tokio::task::spawn_blocking(move || m.recommend(&user, &recent, n, &exclude))
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    Ok(scored
        .into_iter()
        .map(|(item, score)| Candidate {
            item,
            score,
            source: Source::Model,
        })
        .collect())
}

/// Share of the user's recent interactions per category, scaled so the
/// favourite category is 1.
fn affinity(state: &UserState) -> HashMap<String, f64> {
    let mut counts: HashMap<String, f64> = HashMap::new();
    for h in &state.history {
        if let Some(c) = &h.category {
            *counts.entry(c.clone()).or_insert(0.0) += 1.0;
        }
    }
    let max = counts.values().copied().fold(0.0, f64::max);
    if max > 0.0 {
        counts.values_mut().for_each(|v| *v /= max);
    }
    counts
}

/// Median price of the user's recent interactions.
fn typical_price(state: &UserState) -> Option<f64> {
    let mut p: Vec<f64> = state.history.iter().filter_map(|h| h.price).collect();
    if p.is_empty() {
        return None;
    }
    p.sort_by(f64::total_cmp);
    Some(p[p.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::HistEntry;
    use mesh_recommend::EventKind;

    #[test]
    fn affinity_and_price_come_from_history() {
        let h = |c: &str, p: f64| HistEntry {
            item: "i".into(),
            kind: EventKind::View,
            ts: 0.0,
            category: Some(c.into()),
            price: Some(p),
        };
        let s = UserState {
            history: vec![h("a", 10.0), h("a", 30.0), h("b", 20.0)],
            ..UserState::default()
        };
        let a = affinity(&s);
        assert_eq!((a["a"], a["b"]), (1.0, 0.5));
        assert_eq!(typical_price(&s), Some(20.0));
    }
}
