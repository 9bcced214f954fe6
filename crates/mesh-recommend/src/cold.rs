//! Cold start. New users: context-aware popularity (the request's category, device and the
//! user's segment, backed off to global popularity). New items: neighbours by category,
//! attributes and price, so they can be recommended before anyone interacts with them.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::live::{LiveIndex, Scope};
use crate::rank::{Candidate, Source};
use crate::topn::top_n;
use crate::types::{ItemId, ItemMeta};

/// What is known about a user with no history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColdContext {
    /// Category being browsed, if any.
    pub category: Option<String>,
    /// Device type of the request.
    pub device: Option<String>,
    /// Segment (e.g. from acquisition channel or demographics).
    pub segment: Option<String>,
}

/// Weights of each scope in the cold-start blend; global always takes part as the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColdWeights {
    /// Category popularity.
    pub category: f64,
    /// Segment popularity.
    pub segment: f64,
    /// Device popularity.
    pub device: f64,
    /// Global popularity.
    pub global: f64,
}

impl Default for ColdWeights {
    fn default() -> Self {
        Self {
            category: 0.5,
            segment: 0.3,
            device: 0.2,
            global: 0.1,
        }
    }
}

/// Candidates for a user with no history: each known scope's decayed popularity, divided by
/// that scope's maximum, blended with [`ColdWeights`].
pub fn new_user_candidates(
    index: &LiveIndex,
    ctx: &ColdContext,
    weights: &ColdWeights,
    n: usize,
    now: f64,
    exclude: &HashSet<ItemId>,
) -> Vec<Candidate> {
    let mut scopes = vec![(Scope::Global, weights.global)];
    if let Some(c) = &ctx.category {
        scopes.push((Scope::Category(c.clone()), weights.category));
    }
    if let Some(s) = &ctx.segment {
        scopes.push((Scope::Segment(s.clone()), weights.segment));
    }
    if let Some(d) = &ctx.device {
        scopes.push((Scope::Device(d.clone()), weights.device));
    }
    let mut acc: HashMap<ItemId, f64> = HashMap::new();
    for (scope, w) in scopes {
        let pop = index.popularity_scores(&scope, now);
        let max = pop.values().copied().fold(0.0, f64::max);
        if max <= 0.0 {
            continue;
        }
        for (item, s) in pop {
            if !exclude.contains(&item) {
                *acc.entry(item).or_insert(0.0) += w * s / max;
            }
        }
    }
    top_n(acc, n)
        .into_iter()
        .map(|(item, score)| Candidate {
            item,
            score,
            source: Source::Popularity,
        })
        .collect()
}

/// Similarity of two items by metadata: `0.5·same category + 0.3·Jaccard(attributes) +
/// 0.2·exp(-|ln(price_a / price_b)|)`.
pub fn metadata_similarity(a: &ItemMeta, b: &ItemMeta) -> f64 {
    let same = if a.category == b.category { 1.0 } else { 0.0 };
    let sa: HashSet<&str> = a.attributes.iter().map(String::as_str).collect();
    let sb: HashSet<&str> = b.attributes.iter().map(String::as_str).collect();
    let union = sa.union(&sb).count();
    let jaccard = if union == 0 {
        0.0
    } else {
        sa.intersection(&sb).count() as f64 / union as f64
    };
    let price = if a.price > 0.0 && b.price > 0.0 {
        (-(a.price / b.price).ln().abs()).exp()
    } else {
        0.0
    };
    0.5 * same + 0.3 * jaccard + 0.2 * price
}

/// Nearest catalog items of a new item by [`metadata_similarity`] (the item itself excluded).
/// The service can seed the new item's co-occurrence with these, or show it next to them.
pub fn new_item_neighbours(
    item: &ItemMeta,
    catalog: &HashMap<ItemId, ItemMeta>,
    n: usize,
) -> Vec<(ItemId, f64)> {
    top_n(
        catalog
            .values()
            .filter(|m| m.id != item.id)
            .map(|m| (m.id.clone(), metadata_similarity(item, m))),
        n,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::LiveConfig;
    use crate::types::{EventKind, Interaction};

    #[test]
    fn context_changes_what_a_new_user_sees() {
        let mut ix = LiveIndex::new(LiveConfig {
            t_ref: 0.0,
            ..LiveConfig::default()
        });
        // "tv" is globally popular on web; "case" is what iOS users in phones buy.
        for k in 0..20 {
            ix.record(
                Interaction::new(format!("w{k}"), "tv", EventKind::Order, 10.0)
                    .with_category("tvs")
                    .with_device("web"),
            );
        }
        for k in 0..5 {
            ix.record(
                Interaction::new(format!("i{k}"), "case", EventKind::Order, 10.0)
                    .with_category("phones")
                    .with_device("ios"),
            );
        }
        let none = HashSet::new();
        let w = ColdWeights::default();
        let anon = new_user_candidates(&ix, &ColdContext::default(), &w, 2, 20.0, &none);
        assert_eq!(anon[0].item, "tv");
        let ios = ColdContext {
            category: Some("phones".into()),
            device: Some("ios".into()),
            segment: None,
        };
        let got = new_user_candidates(&ix, &ios, &w, 2, 20.0, &none);
        assert_eq!(got[0].item, "case");
        assert_eq!(got[0].source, Source::Popularity);
        let ex: HashSet<ItemId> = ["case".to_string()].into();
        assert!(new_user_candidates(&ix, &ios, &w, 2, 20.0, &ex)
            .iter()
            .all(|c| c.item != "case"));
    }

    #[test]
    fn new_item_neighbours_prefer_category_and_attributes() {
        let mut a = ItemMeta::new("new", "shoes", 50.0);
        a.attributes = vec!["red".into(), "leather".into()];
        let mut b = ItemMeta::new("b", "shoes", 55.0);
        b.attributes = vec!["red".into(), "leather".into()];
        let c = ItemMeta::new("c", "shoes", 50.0);
        let mut d = ItemMeta::new("d", "bags", 50.0);
        d.attributes = vec!["red".into(), "leather".into()];
        let cat: HashMap<ItemId, ItemMeta> = [a.clone(), b, c, d]
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        let got = new_item_neighbours(&a, &cat, 3);
        assert_eq!(
            got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
            vec!["b", "c", "d"]
        );
        assert!((metadata_similarity(&a, &a) - 1.0).abs() < 1e-12);
    }
}
