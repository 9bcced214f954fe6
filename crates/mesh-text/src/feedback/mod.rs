//! Feedback categories for reviews and support messages, Chinese and English.
//!
//! No labelled feedback ships with the project, so the classifier is trained on text from a
//! seeded template generator (templates × slot vocab × noise) plus weakly labelled seed
//! keywords per category. Its numbers measure how well
//! it learns the generator, checked on templates it never saw and on a small hand-written
//! set; treat real-traffic accuracy as unknown until labelled messages exist.

use serde::{Deserialize, Serialize};

use crate::metrics::{class_report, ClassScores};
use crate::pipeline::{train_with_cv, HyperParams, TextClassifier};
use crate::tokenize::FeatureConfig;
use crate::Result;

mod generate;
pub use generate::{generate_feedback, generate_keyword_examples, TemplateSplit, HAND_WRITTEN};

/// What a piece of feedback is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackCategory {
    Delivery,
    Quality,
    Price,
    Service,
    Refund,
    Account,
}

impl FeedbackCategory {
    pub const ALL: [FeedbackCategory; 6] = [
        FeedbackCategory::Delivery,
        FeedbackCategory::Quality,
        FeedbackCategory::Price,
        FeedbackCategory::Service,
        FeedbackCategory::Refund,
        FeedbackCategory::Account,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackCategory::Delivery => "delivery",
            FeedbackCategory::Quality => "quality",
            FeedbackCategory::Price => "price",
            FeedbackCategory::Service => "service",
            FeedbackCategory::Refund => "refund",
            FeedbackCategory::Account => "account",
        }
    }
}

/// A prediction with its confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackPrediction {
    pub category: FeedbackCategory,
    pub confidence: f32,
    pub probabilities: Vec<(FeedbackCategory, f32)>,
}

/// The trained feedback classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedbackClassifier {
    inner: TextClassifier,
}

fn feedback_features() -> FeatureConfig {
    FeatureConfig {
        bits: 18,
        word_bigrams: true,
        cjk_char_ngrams: 2,
        negation: false,
        latin_char_ngrams: 4,
        clause_position: false,
    }
}

fn grid() -> Vec<HyperParams> {
    [1e-5f32, 1e-4, 1e-3]
        .iter()
        .map(|&l2| HyperParams {
            l2,
            lexicon_weight: 0.0,
            balanced: false,
        })
        .collect()
}

impl FeedbackClassifier {
    /// Trains on labelled `(text, category)` pairs (e.g. real labels once they exist).
    pub fn train(data: &[(String, FeedbackCategory)], seed: u64) -> Result<Self> {
        let labels: Vec<&str> = FeedbackCategory::ALL.iter().map(|c| c.as_str()).collect();
        let texts: Vec<&str> = data.iter().map(|d| d.0.as_str()).collect();
        let y: Vec<usize> = data
            .iter()
            .map(|d| {
                FeedbackCategory::ALL
                    .iter()
                    .position(|c| *c == d.1)
                    .expect("known")
            })
            .collect();
        let (inner, _, _) =
            train_with_cv(feedback_features(), &labels, &texts, &y, &grid(), 3, seed)?;
        Ok(FeedbackClassifier { inner })
    }

    /// Trains on 3,000 generated messages from the training templates plus 1,200 weakly
    /// labelled keyword examples.
    pub fn train_generated(seed: u64) -> Result<Self> {
        Self::train(&generated_training_set(seed), seed)
    }

    pub fn classify(&self, text: &str) -> FeedbackPrediction {
        let p = self.inner.predict_proba(text);
        let (i, conf) = crate::classify::argmax(&p);
        FeedbackPrediction {
            category: FeedbackCategory::ALL[i],
            confidence: conf,
            probabilities: FeedbackCategory::ALL.iter().copied().zip(p).collect(),
        }
    }
}

/// The report of [`eval_feedback`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedbackEvalReport {
    pub seed: u64,
    pub n_train: usize,
    /// Fresh messages from the training templates (new slots and noise).
    pub n_test_seen_templates: usize,
    pub accuracy_seen_templates: f64,
    /// Messages from templates never used in training: the fairer number.
    pub n_test_unseen_templates: usize,
    pub accuracy_unseen_templates: f64,
    pub macro_f1_unseen_templates: f64,
    pub per_class_unseen_templates: Vec<ClassScores>,
    pub n_hand_written: usize,
    pub accuracy_hand_written: f64,
}

fn generated_training_set(seed: u64) -> Vec<(String, FeedbackCategory)> {
    let mut data = generate_feedback(3000, seed, TemplateSplit::Train);
    data.extend(generate_keyword_examples(1200, seed ^ 0x6b));
    data
}

/// Trains on generated text and reports held-out accuracy three ways.
pub fn eval_feedback(seed: u64) -> Result<FeedbackEvalReport> {
    let train = generated_training_set(seed);
    let m = FeedbackClassifier::train(&train, seed)?;
    let acc = |data: &[(String, FeedbackCategory)]| {
        data.iter()
            .filter(|(t, c)| m.classify(t).category == *c)
            .count() as f64
            / data.len().max(1) as f64
    };
    let seen = generate_feedback(600, seed.wrapping_add(1), TemplateSplit::Train);
    let unseen = generate_feedback(600, seed.wrapping_add(2), TemplateSplit::HeldOut);
    let hand: Vec<(String, FeedbackCategory)> = HAND_WRITTEN
        .iter()
        .map(|(t, c)| (t.to_string(), *c))
        .collect();
    let idx = |c: FeedbackCategory| {
        FeedbackCategory::ALL
            .iter()
            .position(|x| *x == c)
            .expect("known")
    };
    let labels: Vec<String> = FeedbackCategory::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    let truth: Vec<usize> = unseen.iter().map(|d| idx(d.1)).collect();
    let pred: Vec<usize> = unseen
        .iter()
        .map(|d| idx(m.classify(&d.0).category))
        .collect();
    let r = class_report(&labels, &truth, &pred);
    Ok(FeedbackEvalReport {
        seed,
        n_train: train.len(),
        n_test_seen_templates: seen.len(),
        accuracy_seen_templates: acc(&seen),
        n_test_unseen_templates: unseen.len(),
        accuracy_unseen_templates: r.accuracy,
        macro_f1_unseen_templates: r.macro_f1,
        per_class_unseen_templates: r.per_class,
        n_hand_written: hand.len(),
        accuracy_hand_written: acc(&hand),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_seeded_and_bilingual() {
        let a = generate_feedback(120, 5, TemplateSplit::All);
        assert_eq!(a, generate_feedback(120, 5, TemplateSplit::All));
        assert!(a
            .iter()
            .any(|(t, _)| crate::sentiment::is_mostly_chinese(t)));
        assert!(a
            .iter()
            .any(|(t, _)| !crate::sentiment::is_mostly_chinese(t)));
    }

    #[test]
    fn feedback_eval_generalises_beyond_templates() {
        let r = eval_feedback(42).unwrap();
        eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
        assert!(
            r.accuracy_seen_templates >= 0.95,
            "{}",
            r.accuracy_seen_templates
        );
        assert!(
            r.accuracy_unseen_templates >= 0.8,
            "{}",
            r.accuracy_unseen_templates
        );
        assert!(
            r.accuracy_hand_written >= 0.6,
            "{}",
            r.accuracy_hand_written
        );
    }
}
