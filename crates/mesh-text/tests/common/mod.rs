//! Shared by the sentence-encoder tests: a seeded Amazon subset small enough for a test.

use mesh_text::data::{read_vader_format, reviews_file, RatedText};
use mesh_text::metrics::class_report;
use mesh_text::sentiment::{split_indices, EnglishModel, Polarity};

/// Two paraphrase pairs: [0] ~ [1] about a battery, [2] ~ [3] about a scarf.
pub const PARAPHRASES: [&str; 4] = [
    "The battery died after two days.",
    "After two days the battery stopped working.",
    "I love the colour of this scarf.",
    "This scarf has a beautiful color.",
];

/// 640 rows to train on and 320 held out (texts, three-class truth), seed 7.
pub struct HeldOut {
    pub train: Vec<RatedText>,
    pub texts: Vec<String>,
    pub truth: Vec<usize>,
}

impl HeldOut {
    pub fn amazon() -> Self {
        let rows =
            read_vader_format(&reviews_file("amazonReviewSnippets_GroundTruth.txt").unwrap())
                .unwrap();
        let (a, b) = split_indices(rows.len(), 7);
        let test: Vec<usize> = b.iter().take(320).copied().collect();
        HeldOut {
            train: a.iter().take(640).map(|&i| rows[i].clone()).collect(),
            texts: test.iter().map(|&i| rows[i].text.clone()).collect(),
            truth: test
                .iter()
                .map(|&i| Polarity::from_rating(rows[i].rating) as usize)
                .collect(),
        }
    }

    pub fn texts(&self) -> Vec<&str> {
        self.texts.iter().map(String::as_str).collect()
    }

    /// Held-out macro F1 of `m`.
    pub fn macro_f1(&self, m: &EnglishModel) -> f64 {
        let labels: Vec<String> = ["negative", "neutral", "positive"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pred: Vec<usize> = m
            .predict_many(&self.texts())
            .iter()
            .map(|p| p.0 as usize)
            .collect();
        class_report(&labels, &self.truth, &pred).macro_f1
    }
}
