//! Catalog search: BM25 over title/tags/category/description in Chinese and English,
//! spelling tolerance for Latin words, filters, and a personalised rerank hook.
//!
//! Own BM25 rather than tantivy: see NOTES.md (build cost on the shared 2-core machine, and
//! a catalog of this size fits an in-memory index whose fuzzy and rerank logic we control).

mod bm25;
mod eval;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use bm25::{bounded_edit_distance, Bm25Index, Bm25Params, Correction};
pub use eval::{eval_search, SearchEvalReport};

use crate::catalog::Product;

/// Filters applied after scoring.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Category path prefix, e.g. `electronics` or `electronics/phones`.
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// Only items in stock.
    pub in_stock_only: bool,
}

impl Filters {
    fn accepts(&self, p: &Product) -> bool {
        let cat_ok = self.category.as_deref().is_none_or(|c| {
            p.category == c
                || p.category
                    .starts_with(&format!("{}/", c.trim_end_matches('/')))
        });
        cat_ok
            && self.min_price.is_none_or(|m| p.price >= m)
            && self.max_price.is_none_or(|m| p.price <= m)
            && (!self.in_stock_only || p.in_stock)
    }
}

/// Per-user scores for a personalised rerank: `final = (1-w)·bm25/max_bm25 + w·score[sku]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Personalization {
    /// Per-sku preference in [0, 1] (missing = 0).
    pub sku_scores: HashMap<String, f32>,
    /// Blend weight in [0, 1]; 0 = BM25 only.
    pub weight: f32,
}

/// One search request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    pub filters: Filters,
    pub limit: usize,
    pub personalization: Option<Personalization>,
}

/// One hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub sku: String,
    /// Final score (blended when personalised).
    pub score: f32,
    pub bm25: f32,
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub hits: Vec<Hit>,
    /// Matching items before `limit`.
    pub total: usize,
    /// True when nothing matched the query and filters — the caller logs these.
    pub zero_result: bool,
    pub corrections: Vec<Correction>,
}

/// The searchable catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogIndex {
    products: Vec<Product>,
    index: Bm25Index,
}

impl CatalogIndex {
    /// Indexes `products` (title ×3, tags ×2, category ×1, description ×1).
    pub fn build(products: Vec<Product>) -> Self {
        let mut index = Bm25Index::new(Bm25Params::default());
        for p in &products {
            let tags = p.tags.join(" ");
            let cat = p.category.replace(['/', '_'], " ");
            index.add(&[
                (&p.title, 3.0),
                (&tags, 2.0),
                (&cat, 1.0),
                (&p.description, 1.0),
            ]);
        }
        CatalogIndex { products, index }
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn get(&self, sku: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.sku == sku)
    }

    /// Runs a search. An empty query with filters lists matching items by sku order.
    pub fn search(&self, req: &SearchRequest) -> SearchResult {
        let limit = if req.limit == 0 { 10 } else { req.limit };
        let (scores, corrections) = if req.query.trim().is_empty() {
            (
                (0..self.products.len() as u32).map(|i| (i, 0.0)).collect(),
                Vec::new(),
            )
        } else {
            self.index.score(&req.query)
        };
        let mut hits: Vec<(u32, f32)> = scores
            .into_iter()
            .filter(|(d, _)| req.filters.accepts(&self.products[*d as usize]))
            .collect();
        let max = hits.iter().map(|h| h.1).fold(0f32, f32::max);
        let mut out: Vec<Hit> = hits
            .drain(..)
            .map(|(d, s)| {
                let p = &self.products[d as usize];
                let score = match &req.personalization {
                    Some(pz) if max > 0.0 => {
                        let w = pz.weight.clamp(0.0, 1.0);
                        let u = pz.sku_scores.get(&p.sku).copied().unwrap_or(0.0);
                        (1.0 - w) * s / max + w * u
                    }
                    _ => s,
                };
                Hit {
                    sku: p.sku.clone(),
                    score,
                    bm25: s,
                }
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.sku.cmp(&b.sku)));
        let total = out.len();
        out.truncate(limit);
        SearchResult {
            zero_result: total == 0,
            hits: out,
            total,
            corrections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::generate_catalog;

    fn index() -> CatalogIndex {
        CatalogIndex::build(generate_catalog(600, 11))
    }

    fn req(q: &str) -> SearchRequest {
        SearchRequest {
            query: q.into(),
            limit: 10,
            ..Default::default()
        }
    }

    #[test]
    fn finds_both_languages() {
        let ix = index();
        for (q, cat) in [
            ("蓝牙耳机", "electronics/headphones"),
            ("laptop", "electronics/laptops"),
            ("电饭煲", "home/kitchen"),
        ] {
            let r = ix.search(&req(q));
            assert!(!r.zero_result, "{q}");
            assert_eq!(ix.get(&r.hits[0].sku).unwrap().category, cat, "{q}");
        }
    }

    #[test]
    fn typo_is_corrected() {
        let ix = index();
        let r = ix.search(&req("lapotp"));
        assert_eq!(r.corrections[0].to, "laptop");
        assert_eq!(
            ix.get(&r.hits[0].sku).unwrap().category,
            "electronics/laptops"
        );
    }

    #[test]
    fn filters_and_zero_results() {
        let ix = index();
        let mut r = req("waterproof");
        r.filters = Filters {
            category: Some("clothing".into()),
            max_price: Some(500.0),
            in_stock_only: true,
            ..Default::default()
        };
        let res = ix.search(&r);
        assert!(res.total > 0);
        for h in &res.hits {
            let p = ix.get(&h.sku).unwrap();
            assert!(p.category.starts_with("clothing/") && p.price <= 500.0 && p.in_stock);
        }
        let none = ix.search(&req("qqqqqqqqqq"));
        assert!(none.zero_result && none.hits.is_empty());
    }

    #[test]
    fn personalization_moves_preferred_items_up() {
        let ix = index();
        let base = ix.search(&req("waterproof"));
        let prefer: HashMap<String, f32> = ix
            .products()
            .iter()
            .filter(|p| p.category == "sports/outdoor")
            .map(|p| (p.sku.clone(), 1.0))
            .collect();
        let mut r = req("waterproof");
        r.personalization = Some(Personalization {
            sku_scores: prefer,
            weight: 0.5,
        });
        let pers = ix.search(&r);
        let count = |res: &SearchResult| {
            res.hits
                .iter()
                .filter(|h| ix.get(&h.sku).unwrap().category == "sports/outdoor")
                .count()
        };
        assert!(
            count(&pers) > count(&base),
            "{} vs {}",
            count(&pers),
            count(&base)
        );
        assert!(count(&pers) >= 7, "{}", count(&pers));
    }
}
