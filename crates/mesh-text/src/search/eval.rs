//! `eval_search`: NDCG@10 on judged queries over the generated catalog, with and without a
//! simulated user's category preference, and spelling-tolerant queries.

use std::collections::HashMap;
use std::time::Instant;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{CatalogIndex, Personalization, SearchRequest};
use crate::catalog::{generate_catalog, Product, CATEGORIES};
use crate::metrics::ndcg_at;

/// The report of [`eval_search`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchEvalReport {
    pub seed: u64,
    pub n_products: usize,
    pub n_judged_queries: usize,
    /// Mean NDCG@10 of BM25 on category/attribute/brand queries (both languages).
    pub ndcg10_bm25: f64,
    pub n_personal_queries: usize,
    /// The simulated user's preferred categories.
    pub preferred_categories: Vec<String>,
    /// Mean NDCG@10 under that user's judgments: BM25 alone, then with the rerank.
    pub ndcg10_personal_bm25_only: f64,
    pub ndcg10_personal_reranked: f64,
    pub personalization_weight: f32,
    pub n_typo_queries: usize,
    /// Share of misspelled queries with an intended item in the top 10.
    pub typo_success_rate: f64,
    pub zero_result_queries: usize,
    pub mean_query_micros: f64,
}

fn text_of(p: &Product) -> String {
    format!("{} {} {}", p.title, p.description, p.tags.join(" ")).to_lowercase()
}

fn typo(word: &str, rng: &mut ChaCha8Rng) -> String {
    let mut c: Vec<char> = word.chars().collect();
    let i = rng.random_range(1..c.len() - 1);
    match rng.random_range(0..3) {
        0 => c.swap(i, i + 1),
        1 => {
            c.remove(i);
        }
        _ => c[i] = if c[i] == 'x' { 'z' } else { 'x' },
    }
    c.into_iter().collect()
}

/// Builds a 1,200-item catalog from `seed` and measures search on it.
pub fn eval_search(seed: u64) -> SearchEvalReport {
    let products = generate_catalog(1200, seed);
    let ix = CatalogIndex::build(products.clone());
    let texts: Vec<String> = products.iter().map(text_of).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ea);
    let mut n_queries = 0usize;
    let mut query_time = 0f64;
    let mut zero = 0usize;
    let mut run = |q: &SearchRequest| {
        let t = Instant::now();
        let r = ix.search(q);
        query_time += t.elapsed().as_secs_f64();
        n_queries += 1;
        if r.zero_result {
            zero += 1;
        }
        r
    };
    let req = |q: String| SearchRequest {
        query: q,
        limit: 10,
        ..Default::default()
    };

    // Judged queries: category nouns, attribute + noun, brand + noun, in both languages.
    // Gain 1 for the right category, +1 when the item also has the asked attribute/brand.
    let mut ndcgs = Vec::new();
    for spec in CATEGORIES {
        let mut queries: Vec<(String, Option<String>)> = Vec::new();
        for n in spec
            .nouns_en
            .iter()
            .take(2)
            .chain(spec.nouns_zh.iter().take(2))
        {
            queries.push((n.to_string(), None));
        }
        for _ in 0..2 {
            let a = spec.attrs_en.choose(&mut rng).expect("attrs");
            let n = spec.nouns_en.choose(&mut rng).expect("nouns");
            queries.push((format!("{a} {n}"), Some(a.to_string())));
            let a = spec.attrs_zh.choose(&mut rng).expect("attrs");
            let n = spec.nouns_zh.choose(&mut rng).expect("nouns");
            queries.push((format!("{a}{n}"), Some(a.to_string())));
            let b = spec.brands.choose(&mut rng).expect("brands");
            let n = spec.nouns_zh.choose(&mut rng).expect("nouns");
            queries.push((format!("{b} {n}"), Some(b.to_lowercase())));
        }
        for (q, must) in queries {
            let gains: Vec<f64> = products
                .iter()
                .zip(&texts)
                .map(|(p, t)| {
                    if p.category != spec.path {
                        0.0
                    } else if must.as_ref().is_some_and(|m| t.contains(m.as_str())) {
                        2.0
                    } else {
                        1.0
                    }
                })
                .collect();
            let r = run(&req(q));
            let ranked: Vec<f64> = r.hits.iter().map(|h| gains[sku_index(&h.sku)]).collect();
            ndcgs.push(ndcg_at(&ranked, &gains, 10));
        }
    }
    let n_judged = ndcgs.len();
    let ndcg10_bm25 = mean(&ndcgs);

    // Personalisation: a user who buys outdoor gear, shoes and headphones issues queries that
    // match several categories. Their judgment: 1 for a match, +1 in a preferred category.
    let preferred = ["sports/outdoor", "clothing/shoes", "electronics/headphones"];
    let ambiguous = [
        "waterproof",
        "防水",
        "wireless",
        "无线",
        "lightweight",
        "black",
        "黑色",
        "透气",
        "breathable",
        "长续航",
        "long battery",
        "large capacity",
        "大容量",
        "Nike",
        "Apple",
        "Xiaomi",
        "Huawei",
    ];
    let mut sku_scores = HashMap::new();
    for p in &products {
        // History is noisy and overlaps: preferred categories score 0.3–1.0, others 0–0.6.
        let s = if preferred.contains(&p.category.as_str()) {
            rng.random_range(0.3..1.0)
        } else {
            rng.random_range(0.0..0.6)
        };
        sku_scores.insert(p.sku.clone(), s);
    }
    let weight = 0.4;
    let (mut base, mut pers) = (Vec::new(), Vec::new());
    for q in ambiguous {
        let ql = q.to_lowercase();
        let gains: Vec<f64> = products
            .iter()
            .zip(&texts)
            .map(|(p, t)| {
                if !t.contains(&ql) {
                    0.0
                } else if preferred.contains(&p.category.as_str()) {
                    2.0
                } else {
                    1.0
                }
            })
            .collect();
        let score = |hits: &[super::Hit]| {
            let ranked: Vec<f64> = hits.iter().map(|h| gains[sku_index(&h.sku)]).collect();
            ndcg_at(&ranked, &gains, 10)
        };
        base.push(score(&run(&req(q.to_string())).hits));
        let mut r = req(q.to_string());
        r.personalization = Some(Personalization {
            sku_scores: sku_scores.clone(),
            weight,
        });
        pers.push(score(&run(&r).hits));
    }

    // Misspelled English nouns and brands (one edit) must still find their items.
    let mut typo_ok = 0;
    let mut n_typo = 0;
    for spec in CATEGORIES {
        let words: Vec<&str> = spec
            .nouns_en
            .iter()
            .chain(spec.brands.iter())
            .flat_map(|s| s.split(' '))
            .filter(|w| w.len() >= 5 && w.chars().all(|c| c.is_ascii_alphabetic()))
            .collect();
        for w in words.iter().take(4) {
            let q = typo(w, &mut rng);
            n_typo += 1;
            let r = run(&req(q));
            let wl = w.to_lowercase();
            if r.hits.iter().any(|h| {
                let i = sku_index(&h.sku);
                products[i].category == spec.path && texts[i].contains(&wl)
            }) {
                typo_ok += 1;
            }
        }
    }

    SearchEvalReport {
        seed,
        n_products: products.len(),
        n_judged_queries: n_judged,
        ndcg10_bm25,
        n_personal_queries: base.len(),
        preferred_categories: preferred.iter().map(|s| s.to_string()).collect(),
        ndcg10_personal_bm25_only: mean(&base),
        ndcg10_personal_reranked: mean(&pers),
        personalization_weight: weight,
        n_typo_queries: n_typo,
        typo_success_rate: typo_ok as f64 / n_typo.max(1) as f64,
        zero_result_queries: zero,
        mean_query_micros: query_time * 1e6 / n_queries.max(1) as f64,
    }
}

/// Generated skus are `SKU-{index:05}`.
fn sku_index(sku: &str) -> usize {
    sku[4..].parse().expect("generated sku")
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_eval_meets_goals() {
        let r = eval_search(42);
        eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
        assert!(r.ndcg10_bm25 >= 0.8, "{}", r.ndcg10_bm25);
        assert!(r.ndcg10_personal_reranked > r.ndcg10_personal_bm25_only + 0.05);
        assert!(r.typo_success_rate >= 0.85, "{}", r.typo_success_rate);
        assert_eq!(r.zero_result_queries, 0);
    }
}
