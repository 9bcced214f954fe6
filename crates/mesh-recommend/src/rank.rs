//! Ranking: merge candidates from several sources, drop what business rules forbid, score
//! with user and item features, and diversify across categories.
//!
//! Score of a candidate = `Σ weight_f · feature_f`, every feature in `0..=1`:
//! relevance (candidate score divided by the best score of the same source, so sources with
//! different scales mix, times the source's weight in `source_weights`), category affinity,
//! log-sales, rating, listing recency
//! (exponential, `recency_half_life_secs`), margin, and price fit against the user's typical
//! price (`exp(-|ln(price / typical)|)`, 0.5 when unknown). At-risk users get
//! `retention_boost` on retention offers, and up to `max_injected_offers` retention offers
//! from the catalog are added as [`Source::Rule`] candidates. Selection is greedy:
//! each step takes the best `score - diversity_penalty · (already picked in its category)`
//! while at most `max_per_category` items per category are taken.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::feedback::SourceWeights;
use crate::types::{Category, ItemId, ItemMeta};

/// Where a candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A learned model (BPR, ALS, EASE, ...).
    Model,
    /// Live item-to-item co-occurrence.
    Cooccurrence,
    /// Popularity or trending (including cold start).
    Popularity,
    /// Injected by a business rule.
    Rule,
}

impl Source {
    fn phrase(self) -> &'static str {
        match self {
            Source::Model => "matches your taste profile",
            Source::Cooccurrence => "often bought or viewed with your recent items",
            Source::Popularity => "popular right now",
            Source::Rule => "selected offer",
        }
    }
}

/// One candidate item from a generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The item.
    pub item: ItemId,
    /// The generator's score (any scale; higher is better).
    pub score: f64,
    /// The generator.
    pub source: Source,
}

/// What the ranker knows about the user at request time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserContext {
    /// Request time, Unix seconds.
    pub now: f64,
    /// Affinity per category, 0..=1.
    pub category_affinity: HashMap<Category, f64>,
    /// The user's typical item price, if known.
    pub typical_price: Option<f64>,
    /// Items already purchased (never recommended again).
    pub purchased: HashSet<ItemId>,
    /// Items in the cart.
    pub in_cart: HashSet<ItemId>,
    /// Items shown recently (not shown again).
    pub recently_shown: HashSet<ItemId>,
    /// Flagged by the churn model as at risk.
    pub at_risk: bool,
    /// Flagged by the fraud model for promotion abuse.
    pub promo_abuse: bool,
}

/// Feature weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankWeights {
    /// Generator relevance.
    pub relevance: f64,
    /// Category affinity.
    pub affinity: f64,
    /// Log-sales.
    pub sales: f64,
    /// Rating.
    pub rating: f64,
    /// Listing recency.
    pub recency: f64,
    /// Margin.
    pub margin: f64,
    /// Price fit.
    pub price_fit: f64,
}

impl Default for RankWeights {
    fn default() -> Self {
        Self {
            relevance: 1.0,
            affinity: 0.4,
            sales: 0.2,
            rating: 0.2,
            recency: 0.1,
            margin: 0.15,
            price_fit: 0.15,
        }
    }
}

/// Ranking settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankConfig {
    /// How many results to return.
    pub n: usize,
    /// Feature weights.
    pub weights: RankWeights,
    /// Half-life of the listing-recency feature, seconds.
    pub recency_half_life_secs: f64,
    /// Added to retention offers for at-risk users.
    pub retention_boost: f64,
    /// Retention offers added from the catalog for at-risk users.
    pub max_injected_offers: usize,
    /// Subtracted per already-selected item of the same category.
    pub diversity_penalty: f64,
    /// Hard cap of items per category.
    pub max_per_category: usize,
    /// Multiplier of each source's relevance (all 1 unless the feedback bandit learned
    /// otherwise, see [`crate::feedback`]).
    #[serde(default)]
    pub source_weights: SourceWeights,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            n: 10,
            weights: RankWeights::default(),
            recency_half_life_secs: 30.0 * 86_400.0,
            retention_boost: 0.5,
            max_injected_offers: 2,
            diversity_penalty: 0.15,
            max_per_category: 3,
            source_weights: SourceWeights::default(),
        }
    }
}

/// Why a candidate was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not in the catalog (stock and flags cannot be checked).
    UnknownItem,
    /// Already purchased.
    Purchased,
    /// In the cart.
    InCart,
    /// Shown recently.
    RecentlyShown,
    /// Out of stock.
    OutOfStock,
    /// Promotional item for a user flagged for promotion abuse.
    PromoSuppressed,
}

/// One ranked result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    /// The item.
    pub item: ItemId,
    /// Final score (after diversity adjustment).
    pub score: f64,
    /// Where it came from (the best-scoring source when several proposed it).
    pub source: Source,
    /// Human-readable reason.
    pub reason: String,
}

/// The rule that removes `item` for this user, if any.
pub fn drop_reason(ctx: &UserContext, id: &str, meta: Option<&ItemMeta>) -> Option<DropReason> {
    let Some(meta) = meta else {
        return Some(DropReason::UnknownItem);
    };
    if ctx.purchased.contains(id) {
        Some(DropReason::Purchased)
    } else if ctx.in_cart.contains(id) {
        Some(DropReason::InCart)
    } else if ctx.recently_shown.contains(id) {
        Some(DropReason::RecentlyShown)
    } else if !meta.in_stock {
        Some(DropReason::OutOfStock)
    } else if ctx.promo_abuse && meta.promotional {
        Some(DropReason::PromoSuppressed)
    } else {
        None
    }
}

struct Scored<'a> {
    meta: &'a ItemMeta,
    score: f64,
    source: Source,
    affinity: f64,
}

impl Scored<'_> {
    /// The reason shown with the item: built only for the items returned
    /// (the pool is several times the answer, and the text costs
    /// allocations per item).
    fn reason(&self, ctx: &UserContext) -> String {
        let mut notes = vec![self.source.phrase().to_string()];
        if self.affinity >= 0.5 {
            notes.push(format!("you like {}", self.meta.category));
        }
        if (self.meta.rating / 5.0).clamp(0.0, 1.0) >= 0.9 {
            notes.push("highly rated".into());
        }
        if ctx.at_risk && self.meta.retention_offer {
            notes.push("retention offer for you".into());
        }
        notes.join("; ")
    }
}

/// Ranks `candidates` for one user. See the module docs for the scoring.
pub fn rank(
    ctx: &UserContext,
    candidates: &[Candidate],
    catalog: &HashMap<ItemId, ItemMeta>,
    cfg: &RankConfig,
) -> Vec<Ranked> {
    // Best relevance per item across sources (relevance normalised per source).
    let mut max_by_source: HashMap<Source, f64> = HashMap::new();
    for c in candidates {
        let m = max_by_source.entry(c.source).or_insert(f64::MIN);
        *m = m.max(c.score);
    }
    let mut merged: HashMap<&str, (f64, Source)> = HashMap::new();
    for c in candidates {
        let max = max_by_source[&c.source];
        let rel = if max > 0.0 {
            (c.score / max).clamp(0.0, 1.0) * cfg.source_weights.of(c.source)
        } else {
            0.0
        };
        let e = merged.entry(c.item.as_str()).or_insert((rel, c.source));
        if rel > e.0 {
            *e = (rel, c.source);
        }
    }
    if ctx.at_risk {
        let mut offers: Vec<&ItemMeta> = catalog
            .values()
            .filter(|m| m.retention_offer && !merged.contains_key(m.id.as_str()))
            .filter(|m| drop_reason(ctx, &m.id, Some(m)).is_none())
            .collect();
        offers.sort_by(|a, b| b.sales.total_cmp(&a.sales).then_with(|| a.id.cmp(&b.id)));
        for m in offers.into_iter().take(cfg.max_injected_offers) {
            merged.insert(m.id.as_str(), (0.0, Source::Rule));
        }
    }
    let max_sales = catalog.values().map(|m| m.sales).fold(0.0, f64::max);
    let recency_lambda = std::f64::consts::LN_2 / cfg.recency_half_life_secs.max(1.0);
    let w = &cfg.weights;
    let mut pool: Vec<Scored> = Vec::new();
    for (id, (rel, source)) in merged {
        let meta = catalog.get(id);
        if drop_reason(ctx, id, meta).is_some() {
            continue;
        }
        let Some(meta) = meta else { continue };
        let affinity = ctx
            .category_affinity
            .get(&meta.category)
            .copied()
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        let sales = if max_sales > 0.0 {
            (1.0 + meta.sales.max(0.0)).ln() / (1.0 + max_sales).ln()
        } else {
            0.0
        };
        let rating = (meta.rating / 5.0).clamp(0.0, 1.0);
        let recency = (-recency_lambda * (ctx.now - meta.listed_at).max(0.0)).exp();
        let margin = meta.margin.clamp(0.0, 1.0);
        let price_fit = match ctx.typical_price {
            Some(t) if t > 0.0 && meta.price > 0.0 => (-(meta.price / t).ln().abs()).exp(),
            _ => 0.5,
        };
        let mut score = w.relevance * rel
            + w.affinity * affinity
            + w.sales * sales
            + w.rating * rating
            + w.recency * recency
            + w.margin * margin
            + w.price_fit * price_fit;
        if ctx.at_risk && meta.retention_offer {
            score += cfg.retention_boost;
        }
        pool.push(Scored {
            meta,
            score,
            source,
            affinity,
        });
    }
    // Deterministic order before the greedy pass.
    pool.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.meta.id.cmp(&b.meta.id))
    });
    // Categories as small numbers, so the greedy pass (the answer's size
    // times the pool's) counts in a vector instead of hashing names.
    let mut category_ids: HashMap<&str, usize> = HashMap::new();
    let category: Vec<usize> = pool
        .iter()
        .map(|s| {
            let next = category_ids.len();
            *category_ids.entry(s.meta.category.as_str()).or_insert(next)
        })
        .collect();
    let mut taken = vec![0usize; category_ids.len()];
    let mut left: Vec<usize> = (0..pool.len()).collect();
    let mut out = Vec::with_capacity(cfg.n);
    while out.len() < cfg.n {
        let best = left
            .iter()
            .enumerate()
            .filter(|&(_, &p)| taken[category[p]] < cfg.max_per_category)
            .map(|(i, &p)| {
                let same = taken[category[p]];
                (i, pool[p].score - cfg.diversity_penalty * same as f64)
            })
            .fold(None, |acc: Option<(usize, f64)>, x| match acc {
                Some(a) if a.1 >= x.1 => Some(a),
                _ => Some(x),
            });
        let Some((i, adjusted)) = best else { break };
        let p = left.remove(i);
        taken[category[p]] += 1;
        let s = &pool[p];
        out.push(Ranked {
            item: s.meta.id.clone(),
            score: adjusted,
            source: s.source,
            reason: s.reason(ctx),
        });
    }
    out
}

#[cfg(test)]
mod tests;
