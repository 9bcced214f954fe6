//! Data-driven segments: k-means (smartcore) over standardized RFM and
//! engagement features, trained from the current state by
//! `mesh train segments`, stored with a version, assigned at read time.
//!
//! Features (see [`vector`]): days since the latest order (capped at
//! [`RECENCY_CAP_DAYS`], also the value for users without orders),
//! `ln(1+orders)`, `ln(1+spend)`, `ln(1+activity score)`. Each is
//! standardized with the training mean and standard deviation; the model
//! keeps centroids in that space, and a user's segment is the nearest
//! centroid (what smartcore's `predict` does; smartcore 0.7 does not expose
//! its centroids, so they are recomputed as the mean of each cluster's
//! members and applied with the same rule).
//!
//! Stored as JSON in the hash `{profile.model.0}:segments` (fields
//! `version`, `model`), replaced with a compare-and-set on `version`.
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use smartcore::cluster::kmeans::{KMeans, KMeansParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::error::{Error, Result};
use crate::features::Features;
use mesh_store::{Slot, StateStore};

/// Recency given to users without orders, and the cap of everyone's.
pub const RECENCY_CAP_DAYS: f64 = 365.0;
/// Names of the model's features, in vector order.
pub const FEATURES: [&str; 4] = ["recency_days", "ln_orders", "ln_spend", "ln_activity"];
/// Where the model is stored.
pub const MODEL_SLOT: Slot<'static> = Slot {
    scope: "profile.model",
    partition: 0,
};
pub const MODEL_KEY: &str = "segments";

/// The currently loaded model, shared by gRPC and the refresher.
pub type Current = Arc<RwLock<Option<Arc<SegmentModel>>>>;

/// One segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: i32,
    pub size: usize,
    /// Centroid in original units (`FEATURES` order; log features undone:
    /// orders, spend, activity).
    pub centroid: Vec<f64>,
    pub description: String,
}

/// A trained segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentModel {
    pub version: u64,
    pub trained_at_ms: i64,
    pub means: Vec<f64>,
    pub stds: Vec<f64>,
    /// Centroids in standardized space.
    pub centroids: Vec<Vec<f64>>,
    pub segments: Vec<Segment>,
}

/// The raw feature vector of a user.
pub fn vector(f: &Features) -> [f64; 4] {
    [
        f.recency_days
            .unwrap_or(RECENCY_CAP_DAYS)
            .clamp(0.0, RECENCY_CAP_DAYS),
        (f.frequency as f64).ln_1p(),
        f.monetary.max(0.0).ln_1p(),
        f.activity_score.max(0.0).ln_1p(),
    ]
}

/// Words for a centroid's standardized coordinates: five levels per
/// feature (z < -0.75, < -0.25, <= 0.25, <= 0.75, above), so segments that
/// differ in degree read differently.
pub fn describe(z: &[f64]) -> String {
    let level = |v: f64| match v {
        v if v < -0.75 => 0,
        v if v < -0.25 => 1,
        v if v <= 0.25 => 2,
        v if v <= 0.75 => 3,
        _ => 4,
    };
    const SPEND: [&str; 5] = [
        "low spend",
        "below-average spend",
        "average spend",
        "above-average spend",
        "high spend",
    ];
    const FREQ: [&str; 5] = [
        "one-off",
        "infrequent",
        "average frequency",
        "repeat buyer",
        "frequent",
    ];
    // High recency (days since the last order) is bad: reversed.
    const RECENCY: [&str; 5] = [
        "very recent",
        "recent",
        "average recency",
        "lapsing",
        "lapsed",
    ];
    const ACTIVITY: [&str; 5] = [
        "inactive",
        "low activity",
        "average activity",
        "active",
        "very active",
    ];
    [
        SPEND[level(z[2])],
        FREQ[level(z[1])],
        RECENCY[level(z[0])],
        ACTIVITY[level(z[3])],
    ]
    .join(", ")
}

impl SegmentModel {
    /// Trains `k` segments on raw feature vectors (deterministic: fixed
    /// seed).
    pub fn train(rows: &[[f64; 4]], k: usize, version: u64, now_ms: i64) -> Result<Self> {
        if rows.len() < k.max(2) {
            return Err(Error::InvalidArgument {
                field: "k".into(),
                reason: format!("{} users are too few for {k} segments", rows.len()),
            });
        }
        let d = FEATURES.len();
        let n = rows.len() as f64;
        let means: Vec<f64> = (0..d)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let stds: Vec<f64> = (0..d)
            .map(|j| {
                let v = rows.iter().map(|r| (r[j] - means[j]).powi(2)).sum::<f64>() / n;
                if v > 1e-12 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let z: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| (0..d).map(|j| (r[j] - means[j]) / stds[j]).collect())
            .collect();
        let x = DenseMatrix::from_2d_vec(&z).map_err(|e| Error::Config(e.to_string()))?;
        let params = KMeansParameters {
            k,
            max_iter: 100,
            seed: Some(42),
        };
        let km: KMeans<f64, i32, DenseMatrix<f64>, Vec<i32>> =
            KMeans::fit(&x, params).map_err(|e| Error::Config(format!("k-means: {e}")))?;
        let labels = km
            .predict(&x)
            .map_err(|e| Error::Config(format!("k-means: {e}")))?;
        let mut sums = vec![vec![0.0; d]; k];
        let mut sizes = vec![0usize; k];
        for (row, &l) in z.iter().zip(&labels) {
            let l = l as usize;
            sizes[l] += 1;
            for j in 0..d {
                sums[l][j] += row[j];
            }
        }
        let centroids: Vec<Vec<f64>> = sums
            .iter()
            .zip(&sizes)
            .map(|(s, &c)| s.iter().map(|v| v / c.max(1) as f64).collect())
            .collect();
        let segments = centroids
            .iter()
            .zip(&sizes)
            .enumerate()
            .map(|(i, (c, &size))| {
                let raw: Vec<f64> = (0..d).map(|j| c[j] * stds[j] + means[j]).collect();
                Segment {
                    id: i as i32,
                    size,
                    centroid: vec![raw[0], raw[1].exp_m1(), raw[2].exp_m1(), raw[3].exp_m1()],
                    description: describe(c),
                }
            })
            .collect();
        Ok(SegmentModel {
            version,
            trained_at_ms: now_ms,
            means,
            stds,
            centroids,
            segments,
        })
    }

    /// The nearest centroid to a user's features.
    pub fn assign(&self, f: &Features) -> i32 {
        let v = vector(f);
        let z: Vec<f64> = (0..v.len())
            .map(|j| (v[j] - self.means[j]) / self.stds[j])
            .collect();
        self.centroids
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let d: f64 = c.iter().zip(&z).map(|(a, b)| (a - b).powi(2)).sum();
                (i as i32, d)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(-1, |(i, _)| i)
    }

    pub fn description(&self, id: i32) -> &str {
        self.segments
            .iter()
            .find(|s| s.id == id)
            .map_or("", |s| s.description.as_str())
    }
}

/// The stored model, if any.
pub async fn load(store: &StateStore) -> Result<Option<SegmentModel>> {
    let h = store.hgetall(MODEL_SLOT, MODEL_KEY).await?;
    let Some(json) = h.get("model") else {
        return Ok(None);
    };
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| Error::Config(format!("stored segment model: {e}")))
}

/// Stores a model as the next version; returns the version stored.
pub async fn store(store: &StateStore, mut model: SegmentModel) -> Result<SegmentModel> {
    for _ in 0..5 {
        let h = store.hgetall(MODEL_SLOT, MODEL_KEY).await?;
        let old = h.get("version").cloned();
        let next = old
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        model.version = next;
        let json = serde_json::to_string(&model).map_err(|e| Error::Config(e.to_string()))?;
        let v = next.to_string();
        if store
            .hset_if(
                MODEL_SLOT,
                MODEL_KEY,
                &[("version", old.as_deref())],
                &[("version", &v), ("model", &json)],
            )
            .await?
        {
            return Ok(model);
        }
    }
    Err(Error::Config(
        "segment model: another trainer kept replacing it".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_describes_two_obvious_groups() {
        let mut rows = Vec::new();
        for i in 0..50 {
            let j = i as f64 * 0.01;
            // Loyal: recent, many orders, high spend.
            rows.push([5.0 + j, (20.0f64 + j).ln_1p(), (2000.0f64).ln_1p(), 3.0]);
            // One-off: long ago, one order, low spend.
            rows.push([300.0 + j, 1f64.ln_1p(), (20.0f64 + j).ln_1p(), 0.0]);
        }
        let m = SegmentModel::train(&rows, 2, 1, 0).unwrap();
        assert_eq!(m.segments.iter().map(|s| s.size).sum::<usize>(), 100);
        let loyal = Features {
            recency_days: Some(4.0),
            frequency: 22,
            monetary: 1800.0,
            activity_score: 20.0,
            ..Default::default()
        };
        let s = m.assign(&loyal);
        assert_eq!(m.segments[s as usize].size, 50);
        assert_eq!(
            m.description(s),
            "high spend, frequent, very recent, very active"
        );
        let other = m.segments.iter().find(|x| x.id != s).unwrap();
        assert_eq!(other.description, "low spend, one-off, lapsed, inactive");
        assert!(
            (other.centroid[1] - 1.0).abs() < 1e-9,
            "{:?}",
            other.centroid
        );
    }

    #[test]
    fn too_few_users_is_a_clear_error() {
        let e = SegmentModel::train(&[[1.0; 4]], 3, 1, 0).unwrap_err();
        assert!(e.to_string().contains("too few"), "{e}");
    }
}
