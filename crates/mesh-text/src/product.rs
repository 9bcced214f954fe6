//! Product categories: title + description + tags → a category path such as
//! `electronics/phones`, with a confidence and a low-confidence review list.
//!
//! Trained and measured on the generated catalog ([`crate::catalog`]); about 15% of its
//! listings never name the product type, which is where the errors and the review list come
//! from. Real-catalog accuracy is unknown until labelled listings exist.

use serde::{Deserialize, Serialize};

use crate::catalog::{generate_catalog, Product};
use crate::pipeline::{train_with_cv, HyperParams, TextClassifier};
use crate::tokenize::FeatureConfig;
use crate::{Error, Result};

/// A category prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductPrediction {
    pub category: String,
    pub confidence: f32,
    /// The three most probable paths, best first.
    pub top: Vec<(String, f32)>,
    /// True when `confidence` is below the classifier's review threshold.
    pub needs_review: bool,
}

/// The trained product classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductClassifier {
    inner: TextClassifier,
    /// Predictions below this go to human review.
    pub review_threshold: f32,
}

fn product_text(title: &str, description: &str, tags: &[String]) -> String {
    format!("{title} {title} {description} {}", tags.join(" "))
}

fn product_features() -> FeatureConfig {
    FeatureConfig {
        bits: 18,
        word_bigrams: true,
        cjk_char_ngrams: 2,
        negation: false,
        latin_char_ngrams: 4,
        clause_position: false,
    }
}

impl ProductClassifier {
    /// Trains on labelled products; the label set is every distinct `category` seen.
    pub fn train(products: &[Product], seed: u64) -> Result<Self> {
        let mut labels: Vec<&str> = products.iter().map(|p| p.category.as_str()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 {
            return Err(Error::InvalidInput(
                "products must span at least two categories".into(),
            ));
        }
        let texts: Vec<String> = products
            .iter()
            .map(|p| product_text(&p.title, &p.description, &p.tags))
            .collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let y: Vec<usize> = products
            .iter()
            .map(|p| labels.binary_search(&p.category.as_str()).expect("label"))
            .collect();
        let grid: Vec<HyperParams> = [1e-5f32, 1e-4, 1e-3]
            .iter()
            .map(|&l2| HyperParams {
                l2,
                lexicon_weight: 0.0,
                balanced: false,
            })
            .collect();
        let (inner, _, _) = train_with_cv(product_features(), &labels, &texts, &y, &grid, 3, seed)?;
        Ok(ProductClassifier {
            inner,
            review_threshold: 0.6,
        })
    }

    /// Trains on 2,400 generated listings.
    pub fn train_generated(seed: u64) -> Result<Self> {
        Self::train(&generate_catalog(2400, seed), seed)
    }

    pub fn classify(&self, title: &str, description: &str, tags: &[String]) -> ProductPrediction {
        let p = self
            .inner
            .predict_proba(&product_text(title, description, tags));
        let mut ranked: Vec<(String, f32)> =
            self.inner.model.labels.iter().cloned().zip(p).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(3);
        let (category, confidence) = ranked[0].clone();
        ProductPrediction {
            category,
            confidence,
            needs_review: confidence < self.review_threshold,
            top: ranked,
        }
    }

    pub fn classify_product(&self, p: &Product) -> ProductPrediction {
        self.classify(&p.title, &p.description, &p.tags)
    }
}

/// The report of [`eval_product`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductEvalReport {
    pub seed: u64,
    pub n_train: usize,
    pub n_test: usize,
    pub accuracy: f64,
    /// Accuracy of the first path segment (`electronics`, `home`, ...).
    pub accuracy_top_level: f64,
    pub review_threshold: f32,
    /// Test items below the threshold: the human review list.
    pub n_low_confidence: usize,
    /// Accuracy on the items that were not sent to review.
    pub accuracy_confident: f64,
    /// Accuracy on the review list (how much review is worth).
    pub accuracy_low_confidence: f64,
}

/// [`eval_product_with`] at the default threshold 0.6.
pub fn eval_product(seed: u64) -> Result<ProductEvalReport> {
    eval_product_with(seed, 0.6)
}

/// Trains on 2,400 generated listings, tests on 600 fresh ones (another seed).
pub fn eval_product_with(seed: u64, threshold: f32) -> Result<ProductEvalReport> {
    let train = generate_catalog(2400, seed);
    let test = generate_catalog(600, seed.wrapping_add(1_000_003));
    let mut m = ProductClassifier::train(&train, seed)?;
    m.review_threshold = threshold;
    let preds: Vec<(bool, bool, bool)> = test
        .iter()
        .map(|p| {
            let r = m.classify_product(p);
            let top = |s: &str| s.split('/').next().unwrap_or("").to_string();
            (
                r.category == p.category,
                top(&r.category) == top(&p.category),
                r.needs_review,
            )
        })
        .collect();
    let share = |f: &dyn Fn(&(bool, bool, bool)) -> bool,
                 g: &dyn Fn(&(bool, bool, bool)) -> bool| {
        let sel: Vec<_> = preds.iter().filter(|p| f(p)).collect();
        sel.iter().filter(|p| g(p)).count() as f64 / sel.len().max(1) as f64
    };
    Ok(ProductEvalReport {
        seed,
        n_train: train.len(),
        n_test: test.len(),
        accuracy: share(&|_| true, &|p| p.0),
        accuracy_top_level: share(&|_| true, &|p| p.1),
        review_threshold: threshold,
        n_low_confidence: preds.iter().filter(|p| p.2).count(),
        accuracy_confident: share(&|p| !p.2, &|p| p.0),
        accuracy_low_confidence: share(&|p| p.2, &|p| p.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_eval_and_review_list() {
        let r = eval_product(42).unwrap();
        eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
        assert!(r.accuracy >= 0.85, "{}", r.accuracy);
        assert!(r.n_low_confidence > 0 && r.n_low_confidence < r.n_test / 4);
        assert!(r.accuracy_confident > r.accuracy_low_confidence);
        let strict = eval_product_with(42, 0.9).unwrap();
        assert!(strict.n_low_confidence > r.n_low_confidence);
    }

    #[test]
    fn classifies_both_languages() {
        let m = ProductClassifier::train_generated(1).unwrap();
        let zh = m.classify("华为 5G手机 全面屏", "华为手机，快充，大内存", &[]);
        assert_eq!(zh.category, "electronics/phones");
        let en = m.classify("Nike running shoes", "lightweight and breathable", &[]);
        assert_eq!(en.category, "clothing/shoes");
        assert!(en.confidence > 0.5 && en.top.len() == 3);
    }
}
