//! The work behind each RPC: candidate generation from the model, live
//! co-occurrence and popularity, then `rank::rank` with the business rules.
//! Time is a parameter (`now`, Unix seconds); the gRPC layer passes the
//! clock.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_recommend::cold::{ColdContext, ColdWeights};
use mesh_recommend::feedback::SourceWeights;
use mesh_recommend::rank::{rank, Candidate, RankConfig, Ranked, Source, UserContext};
use mesh_recommend::types::ItemMeta;
use mesh_recommend::ModelArtifact;

use crate::error::{Error, Result};
use crate::feedback::{Feedback, FeedbackConfig};
use crate::live::{LiveReader, UserState};
use crate::model::ModelHandle;

/// How many recent items seed co-occurrence candidates.
const COOC_SEEDS: usize = 10;

/// Who the model is asked about in place of an erased user: ingest refuses
/// empty user ids, so no model knows this one, and the answer is the one of
/// a user the model never saw (the artifact may still hold the erased
/// user's factors until the next training, which leaves them out).
const NOBODY: &str = "";

/// The user id to ask the model about.
fn model_user<'a>(q: &'a Query, state: &UserState) -> &'a str {
    if state.erased {
        NOBODY
    } else {
        &q.user
    }
}

/// How long a churn or fraud flag counts after its alert (30 days), unless
/// configured otherwise (`MESH_RECOMMEND_FLAG_TTL_MS`).
pub const FLAG_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// How long catalog entries are cached in process, unless configured
/// otherwise (`MESH_RECOMMEND_CATALOG_TTL_MS`).
pub const CATALOG_TTL: Duration = Duration::from_secs(1);

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
    /// Where the ranking's user features came from: `profile` or `history`.
    pub user_features: &'static str,
    /// Peers that did not answer, with the fallback used.
    pub degraded: Vec<String>,
    /// Id of a `Recommend` answer (its items' attributions start with it);
    /// empty for `RankItems`.
    pub recommendation_id: String,
}

/// User features profile keeps, used in ranking instead of recomputing
/// them from the service's own short history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileFeatures {
    /// Decayed category interest, scaled so the favourite is 1.
    pub category_affinity: HashMap<String, f64>,
    /// Stage is AT_RISK or DORMANT.
    pub at_risk: bool,
}

/// Recommendation engine shared by the gRPC handlers.
pub struct Engine {
    pub live: LiveReader,
    pub model: Arc<ModelHandle>,
    pub cold_weights: ColdWeights,
    pub rank: RankConfig,
    /// How long a churn or promotion-abuse flag counts after its alert.
    pub flag_ttl: std::time::Duration,
    /// Catalog entries read recently (see [`CatalogCache`]).
    pub catalog: CatalogCache,
    /// Profile, asked for the user features used in ranking.
    pub profile: Option<mesh_runtime::peers::Peer>,
    /// Impressions, clicks and the per-source weights they teach.
    pub feedback: Arc<Feedback>,
}

/// Catalog entries kept in process for `ttl` (`MESH_RECOMMEND_CATALOG_TTL_MS`,
/// default 1 s): a `Recommend` ranks ~100 candidates, and reading and
/// parsing their hashes was most of its cost. Entries this process upserts
/// are dropped at once; other replicas' upserts and event-fed changes show
/// within `ttl`. Items not in the catalog are not cached, so a new item
/// shows at once. A zero `ttl` turns the cache off.
#[derive(Default)]
pub struct CatalogCache {
    pub ttl: Duration,
    /// Per tenant, per item: when read and what. Nested so that a lookup
    /// borrows the tenant and item ids instead of building a key of two
    /// new strings per item (a `Recommend` looks up ~150 items).
    entries: Mutex<CatalogEntries>,
}

#[derive(Default)]
struct CatalogEntries {
    by_tenant: HashMap<String, HashMap<String, (Instant, ItemMeta)>>,
    len: usize,
}

/// Most entries kept; past it the cache starts over (a simple bound).
const CATALOG_CACHE_MAX: usize = 200_000;

impl CatalogCache {
    pub fn new(ttl: Duration) -> Self {
        CatalogCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CatalogEntries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fresh entries of `items`, and the ids that must be read.
    fn get(&self, tenant: &str, items: &[String]) -> (HashMap<String, ItemMeta>, Vec<String>) {
        if self.ttl.is_zero() {
            return (HashMap::new(), items.to_vec());
        }
        let now = Instant::now();
        let entries = self.lock();
        let Some(cached) = entries.by_tenant.get(tenant) else {
            return (HashMap::new(), items.to_vec());
        };
        let mut hit = HashMap::with_capacity(items.len());
        let mut miss = Vec::new();
        for id in items {
            match cached.get(id.as_str()) {
                Some((at, m)) if now.duration_since(*at) < self.ttl => {
                    hit.insert(id.clone(), m.clone());
                }
                _ => miss.push(id.clone()),
            }
        }
        (hit, miss)
    }

    fn put(&self, tenant: &str, read: &HashMap<String, ItemMeta>) {
        if self.ttl.is_zero() || read.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut guard = self.lock();
        let entries = &mut *guard;
        if entries.len + read.len() > CATALOG_CACHE_MAX {
            entries.by_tenant.clear();
            entries.len = 0;
        }
        let cached = entries.by_tenant.entry(tenant.to_string()).or_default();
        for (id, m) in read {
            if cached.insert(id.clone(), (now, m.clone())).is_none() {
                entries.len += 1;
            }
        }
    }

    fn forget(&self, tenant: &str, items: &[ItemMeta]) {
        let mut guard = self.lock();
        let entries = &mut *guard;
        if let Some(cached) = entries.by_tenant.get_mut(tenant) {
            for m in items {
                if cached.remove(m.id.as_str()).is_some() {
                    entries.len -= 1;
                }
            }
        }
    }
}

impl Engine {
    pub fn new(live: LiveReader, model: Arc<ModelHandle>) -> Self {
        let feedback = Arc::new(Feedback::new(
            live.store.clone(),
            live.partitions,
            FeedbackConfig::default(),
        ));
        Engine {
            live,
            model,
            cold_weights: ColdWeights::default(),
            rank: RankConfig::default(),
            flag_ttl: FLAG_TTL,
            feedback,
            catalog: CatalogCache::new(CATALOG_TTL),
            profile: None,
        }
    }

    /// The user's features from profile: `Ok(None)` without a profile peer
    /// or for a user profile does not know, `Err(reason)` when profile did
    /// not answer.
    pub async fn profile_features(
        &self,
        tenant: &str,
        user: &str,
    ) -> std::result::Result<Option<ProfileFeatures>, String> {
        use mesh_proto::profile::v1 as ppb;
        use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
        let Some(peer) = &self.profile else {
            return Ok(None);
        };
        let req = ppb::BatchGetProfilesRequest {
            tenant_id: String::new(),
            users: vec![ppb::GetProfileRequest {
                tenant_id: tenant.to_string(),
                user_id: user.to_string(),
            }],
        };
        let res = peer
            .call("BatchGetProfiles", req, |ch, r| async move {
                ProfileServiceClient::new(ch).batch_get_profiles(r).await
            })
            .await
            .map_err(|e| e.reason())?;
        Ok(res.profiles.into_iter().next().map(|p| {
            let top = p
                .category_affinity
                .iter()
                .map(|a| a.score)
                .fold(0.0_f64, f64::max);
            ProfileFeatures {
                category_affinity: p
                    .category_affinity
                    .iter()
                    .filter(|a| top > 0.0 && a.score.is_finite())
                    .map(|a| (a.name.clone(), a.score / top))
                    .collect(),
                at_risk: matches!(p.stage(), ppb::Stage::AtRisk | ppb::Stage::Dormant),
            }
        }))
    }

    /// Catalog entries of `items`, from the cache where fresh.
    pub async fn catalog(
        &self,
        tenant: &str,
        items: &[String],
    ) -> Result<HashMap<String, ItemMeta>> {
        let (mut found, missing) = self.catalog.get(tenant, items);
        if !missing.is_empty() {
            let read = self.live.catalog(tenant, &missing).await?;
            self.catalog.put(tenant, &read);
            found.extend(read);
        }
        Ok(found)
    }

    /// Writes catalog entries (`UpsertItems`) and drops them from the cache.
    pub async fn upsert_items(
        &self,
        tenant: &str,
        items: &[ItemMeta],
        now_us: i64,
    ) -> Result<usize> {
        let n = self.live.upsert_items(tenant, items, now_us).await?;
        self.catalog.forget(tenant, items);
        Ok(n)
    }

    /// Top `q.n` items for a user, blended with the weights the feedback
    /// bandit draws for the tenant; the answer's items are counted as
    /// impressions under a fresh recommendation id.
    pub async fn recommend(&self, q: &Query, now: f64) -> Result<Answer> {
        let (state, weights) = futures::future::join(
            self.live.user_state(&q.tenant, &q.user),
            self.feedback.weights(&q.tenant),
        )
        .await;
        let state = state?;
        let exclude = excluded(&state, q);
        let pool = (q.n * 4).max(50);
        let model = self.model.current();
        let recent = state.recent_items();
        let user = model_user(q, &state);
        let known = model.as_ref().is_some_and(|m| m.knows_user(user));
        let cold_start = recent.is_empty() && !known;
        // The three generators run together: the model on a blocking
        // thread, co-occurrence and popularity as one batch of reads.
        let from_model = async {
            match model.as_ref().filter(|_| !cold_start) {
                Some(m) => model_scores(m, user, &recent, pool, &exclude).await,
                None => Ok(Vec::new()),
            }
        };
        let from_cooc = async {
            if recent.is_empty() {
                return Ok(Vec::new());
            }
            self.live
                .from_history(&q.tenant, &state, COOC_SEEDS, pool, now, &exclude)
                .await
        };
        // Popularity always takes part: the whole answer for a new user, the
        // backfill for everyone else.
        let from_pop = self.live.cold_candidates(
            &q.tenant,
            &q.context,
            &self.cold_weights,
            pool,
            now,
            &exclude,
        );
        // Profile's features depend on the user only, so they are asked for
        // while the generators run rather than after them.
        let (generated, from_profile) = futures::future::join(
            futures::future::try_join3(from_model, from_cooc, from_pop),
            self.features_for(q, &state),
        )
        .await;
        let (mut candidates, co, pop) = generated?;
        candidates.extend(co.into_iter().map(|(item, score)| Candidate {
            item,
            score,
            source: Source::Cooccurrence,
        }));
        candidates.extend(pop);
        if self.flagged(state.at_risk_ms, now) {
            // Retention offers enter as rule candidates; the ranking boosts
            // them (RankItems only orders what the caller sent).
            let offers = self
                .live
                .retention_offers(&q.tenant, self.rank.max_injected_offers * 4)
                .await?;
            candidates.extend(offers.into_iter().map(|item| Candidate {
                item,
                score: 0.0,
                source: Source::Rule,
            }));
        }
        let (items, user_features, degraded) = self
            .rank_candidates(
                q,
                &state,
                candidates,
                q.n,
                now,
                weights,
                futures::future::ready(from_profile),
            )
            .await?;
        let shown: Vec<(Source, u32)> = items
            .iter()
            .enumerate()
            .map(|(k, r)| (r.source, k as u32))
            .collect();
        self.feedback.record(&q.tenant, &shown);
        Ok(Answer {
            items,
            model_version: model.map(|m| m.version.clone()).unwrap_or_default(),
            cold_start,
            user_features,
            degraded,
            recommendation_id: format!("{:016x}", rand::random::<u64>()),
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
                model_scores(m, model_user(q, &state), &recent, all, &exclude)
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
        let (mut ranked, user_features, degraded) = self
            .rank_candidates(
                q,
                &state,
                candidates,
                items.len(),
                now,
                SourceWeights::default(),
                self.features_for(q, &state),
            )
            .await?;
        for r in ranked.iter_mut().filter(|r| r.source == Source::Rule) {
            r.reason = r.reason.replacen("selected offer", "ranked on request", 1);
        }
        Ok(Answer {
            items: ranked,
            model_version: model.map(|m| m.version.clone()).unwrap_or_default(),
            cold_start: recent.is_empty(),
            user_features,
            degraded,
            recommendation_id: String::new(),
        })
    }

    /// Profile's features of the query's user. Profile is not asked about
    /// an erased user (it may not have applied the erasure yet): the answer
    /// is the one for a user profile does not know.
    async fn features_for(
        &self,
        q: &Query,
        state: &UserState,
    ) -> std::result::Result<Option<ProfileFeatures>, String> {
        if state.erased {
            return Ok(None);
        }
        self.profile_features(&q.tenant, &q.user).await
    }

    /// Ranks `candidates` with the catalog entries they need and the user's
    /// features from profile (`from_profile`, read together with the
    /// catalog when not already done).
    #[allow(clippy::too_many_arguments)]
    async fn rank_candidates(
        &self,
        q: &Query,
        state: &UserState,
        candidates: Vec<Candidate>,
        n: usize,
        now: f64,
        source_weights: SourceWeights,
        from_profile: impl std::future::Future<
            Output = std::result::Result<Option<ProfileFeatures>, String>,
        >,
    ) -> Result<(Vec<Ranked>, &'static str, Vec<String>)> {
        let mut ids: Vec<String> = candidates.iter().map(|c| c.item.clone()).collect();
        ids.sort();
        ids.dedup();
        let (catalog, from_profile) =
            futures::future::join(self.catalog(&q.tenant, &ids), from_profile).await;
        let catalog = catalog?;
        let mut degraded = Vec::new();
        let (category_affinity, profile_at_risk, user_features) = match from_profile {
            Ok(Some(p)) => (p.category_affinity, p.at_risk, "profile"),
            Ok(None) => (affinity(state), false, "history"),
            Err(reason) => {
                mesh_runtime::peers::degraded("recommend", "profile");
                degraded.push(format!("{reason} (features from recent history)"));
                (affinity(state), false, "history")
            }
        };
        let at_risk = self.flagged(state.at_risk_ms, now) || profile_at_risk;
        let ctx = UserContext {
            now,
            category_affinity,
            typical_price: typical_price(state),
            purchased: state.purchased.clone(),
            in_cart: state.in_cart.clone(),
            recently_shown: q.recently_shown.clone(),
            at_risk,
            promo_abuse: self.flagged(state.promo_abuse_ms, now),
        };
        let cfg = RankConfig {
            n,
            source_weights,
            ..self.rank.clone()
        };
        Ok((
            rank(&ctx, &candidates, &catalog, &cfg),
            user_features,
            degraded,
        ))
    }
}

impl Engine {
    /// Whether a flag raised at `at_ms` still counts at `now` (seconds).
    fn flagged(&self, at_ms: Option<i64>, now: f64) -> bool {
        at_ms.is_some_and(|ms| now - ms as f64 / 1000.0 <= self.flag_ttl.as_secs_f64())
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
    fn catalog_cache_keeps_tenants_apart_expires_forgets_and_stays_bounded() {
        let meta = |id: &str| ItemMeta::new(id, "c", 1.0);
        let read = |ids: &[&str]| -> HashMap<String, ItemMeta> {
            ids.iter().map(|i| (i.to_string(), meta(i))).collect()
        };
        let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        let cache = CatalogCache::new(Duration::from_secs(60));
        cache.put("shop", &read(&["a", "b"]));
        let (hit, miss) = cache.get("shop", &ids(&["a", "b", "c"]));
        assert_eq!(hit.len(), 2);
        assert_eq!(hit["a"], meta("a"));
        assert_eq!(miss, ids(&["c"]));
        // Another tenant's same ids are not this tenant's.
        let (hit, miss) = cache.get("mall", &ids(&["a"]));
        assert!(hit.is_empty());
        assert_eq!(miss, ids(&["a"]));
        // Putting an id again does not count it twice; forgetting drops it.
        cache.put("shop", &read(&["a"]));
        assert_eq!(cache.lock().len, 2);
        cache.forget("shop", &[meta("a"), meta("zz")]);
        assert_eq!(cache.lock().len, 1);
        assert_eq!(cache.get("shop", &ids(&["a", "b"])).1, ids(&["a"]));
        // Past the bound the cache starts over.
        let many: Vec<String> = (0..CATALOG_CACHE_MAX).map(|k| format!("i{k}")).collect();
        let big: HashMap<String, ItemMeta> = many.iter().map(|i| (i.clone(), meta(i))).collect();
        cache.put("mall", &big);
        assert_eq!(cache.lock().len, CATALOG_CACHE_MAX);
        assert!(cache.get("shop", &ids(&["b"])).0.is_empty());
        // A zero TTL caches nothing; an expired entry is read again.
        let off = CatalogCache::new(Duration::ZERO);
        off.put("shop", &read(&["a"]));
        assert_eq!(off.get("shop", &ids(&["a"])).1, ids(&["a"]));
        let short = CatalogCache::new(Duration::from_millis(1));
        short.put("shop", &read(&["a"]));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.get("shop", &ids(&["a"])).1, ids(&["a"]));
    }

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
