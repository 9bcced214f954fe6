//! Click-through-rate model: logistic regression (smartcore) on hashed features.

use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use crate::error::{non_negative, EngageError, Result};
use crate::stats::{sigmoid, stable_hash};

/// Signed feature hashing (Weinberger et al. 2009) of string features into a fixed number
/// of buckets; the sign halves the bias collisions would add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureHasher {
    /// Number of buckets.
    pub buckets: usize,
}

impl FeatureHasher {
    /// Dense hashed vector of `features`.
    pub fn transform<S: AsRef<str>>(&self, features: &[S]) -> Vec<f64> {
        let mut v = vec![0.0; self.buckets];
        for f in features {
            let h = stable_hash(&[f.as_ref().as_bytes()]);
            let i = (h % self.buckets as u64) as usize;
            v[i] += if h >> 63 == 0 { 1.0 } else { -1.0 };
        }
        v
    }
}

/// The string features of an impression: each field and the creative x segment cross.
pub fn ctr_features(creative: u32, segment: u32, context: u32) -> Vec<String> {
    vec![
        format!("creative={creative}"),
        format!("segment={segment}"),
        format!("context={context}"),
        format!("creative_x_segment={creative}:{segment}"),
    ]
}

/// The string features of a served impression: creative, the viewer's segment, the
/// placement, and the creative x segment and creative x placement crosses (the crosses
/// let a creative win in one segment and lose in another).
pub fn ad_features(creative: &str, segment: &str, placement: &str) -> Vec<String> {
    vec![
        format!("creative={creative}"),
        format!("segment={segment}"),
        format!("placement={placement}"),
        format!("creative_x_segment={creative}:{segment}"),
        format!("creative_x_placement={creative}:{placement}"),
    ]
}

/// Aggregated deliveries of one feature cell: its features, impressions and clicks.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryCell {
    /// The cell's features ([`ad_features`]).
    pub features: Vec<String>,
    /// Impressions delivered.
    pub impressions: u64,
    /// Clicks among them, at most `impressions`.
    pub clicks: u64,
}

/// Logistic-regression click model on hashed features, fitted with smartcore and stored
/// as plain coefficients so it serializes small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtrModel {
    /// Hasher used at training and scoring.
    pub hasher: FeatureHasher,
    /// Coefficient per bucket.
    pub coefficients: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
}

impl CtrModel {
    /// Fits on impressions' features and click labels with L2 strength `l2`.
    pub fn fit<S: AsRef<str>>(
        hasher: FeatureHasher,
        features: &[Vec<S>],
        clicks: &[bool],
        l2: f64,
    ) -> Result<Self> {
        if hasher.buckets == 0 {
            return Err(EngageError::NotEnoughData {
                what: "hash buckets",
                needed: 1,
                got: 0,
            });
        }
        non_negative("ctr l2", l2)?;
        if features.len() != clicks.len() {
            return Err(EngageError::DimensionMismatch {
                what: "ctr labels",
                expected: features.len(),
                got: clicks.len(),
            });
        }
        let positives = clicks.iter().filter(|c| **c).count();
        let minority = positives.min(clicks.len() - positives);
        if minority == 0 {
            return Err(EngageError::NotEnoughData {
                what: "ctr training data needs clicks and non-clicks; minority class",
                needed: 1,
                got: 0,
            });
        }
        let rows: Vec<Vec<f64>> = features.iter().map(|f| hasher.transform(f)).collect();
        let x = DenseMatrix::from_2d_vec(&rows)?;
        let y: Vec<u32> = clicks.iter().map(|c| u32::from(*c)).collect();
        let lr = LogisticRegression::fit(
            &x,
            &y,
            LogisticRegressionParameters::default().with_alpha(l2),
        )?;
        Ok(Self {
            hasher,
            coefficients: lr.coefficients().iterator(0).copied().collect(),
            intercept: *lr.intercept().get((0, 0)),
        })
    }

    /// Fits on aggregated deliveries, expanded into one row per impression; when there are
    /// more than `max_rows` impressions every cell is scaled down by the same factor, so
    /// the rates (what the model learns) are kept and the fit stays bounded.
    pub fn fit_cells(
        hasher: FeatureHasher,
        cells: &[DeliveryCell],
        l2: f64,
        max_rows: usize,
    ) -> Result<Self> {
        let total: u64 = cells.iter().map(|c| c.impressions).sum();
        let scale = if total as usize > max_rows.max(1) {
            max_rows.max(1) as f64 / total as f64
        } else {
            1.0
        };
        let (mut features, mut clicks) = (Vec::new(), Vec::new());
        for c in cells {
            if c.clicks > c.impressions {
                return Err(EngageError::OutOfRange {
                    what: "ctr cell clicks",
                    expected: "at most its impressions",
                    value: c.clicks as f64,
                });
            }
            let pos = (c.clicks as f64 * scale).round() as usize;
            let neg = ((c.impressions - c.clicks) as f64 * scale).round() as usize;
            for k in 0..pos + neg {
                features.push(c.features.clone());
                clicks.push(k < pos);
            }
        }
        Self::fit(hasher, &features, &clicks, l2)
    }

    /// Click probability for an impression's features.
    pub fn predict<S: AsRef<str>>(&self, features: &[S]) -> f64 {
        let x = self.hasher.transform(features);
        let z: f64 = x.iter().zip(&self.coefficients).map(|(a, b)| a * b).sum();
        sigmoid(z + self.intercept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::CtrWorld;
    use crate::stats::roc_auc;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn ctr_model_beats_chance_and_rejects_one_class_data() {
        let world = CtrWorld::generate(3, 10, 4, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let train = world.sample(4000, &mut rng);
        let test = world.sample(2000, &mut rng);
        let feats = |imps: &[crate::simulate::Impression]| -> Vec<Vec<String>> {
            imps.iter()
                .map(|i| ctr_features(i.creative, i.segment, i.context))
                .collect()
        };
        let clicks: Vec<bool> = train.iter().map(|i| i.clicked).collect();
        let m = CtrModel::fit(FeatureHasher { buckets: 64 }, &feats(&train), &clicks, 1.0).unwrap();
        let scores: Vec<f64> = feats(&test).iter().map(|f| m.predict(f)).collect();
        let labels: Vec<bool> = test.iter().map(|i| i.clicked).collect();
        let auc = roc_auc(&scores, &labels).unwrap();
        assert!(auc > 0.6, "auc {auc}");
        let none = vec![false; clicks.len()];
        assert!(CtrModel::fit(FeatureHasher { buckets: 64 }, &feats(&train), &none, 1.0).is_err());
    }

    #[test]
    fn fit_on_cells_ranks_the_better_creative_first_in_each_segment() {
        // "a" is better for segment x, "b" for segment y; scaled down 10x.
        let cell = |c: &str, s: &str, imps: u64, clicks: u64| DeliveryCell {
            features: ad_features(c, s, "feed"),
            impressions: imps,
            clicks,
        };
        let cells = [
            cell("a", "x", 20_000, 2_000),
            cell("b", "x", 20_000, 400),
            cell("a", "y", 20_000, 300),
            cell("b", "y", 20_000, 1_600),
        ];
        let m = CtrModel::fit_cells(FeatureHasher { buckets: 64 }, &cells, 0.1, 8000).unwrap();
        let p = |c: &str, s: &str| m.predict(&ad_features(c, s, "feed"));
        assert!(p("a", "x") > p("b", "x"), "{} {}", p("a", "x"), p("b", "x"));
        assert!(p("b", "y") > p("a", "y"), "{} {}", p("b", "y"), p("a", "y"));
        assert!((p("a", "x") - 0.1).abs() < 0.04, "{}", p("a", "x"));
        let bad = [cell("a", "x", 1, 2)];
        assert!(CtrModel::fit_cells(FeatureHasher { buckets: 64 }, &bad, 0.1, 10).is_err());
    }
}
