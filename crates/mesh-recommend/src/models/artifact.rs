//! [`ModelArtifact`]: a trained model with its id maps and training histories, versioned and
//! serializable so the service can load a new one and swap it in atomically.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Model, ModelSpec};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::topn::top_n_dense;
use crate::types::{Interaction, ItemId};

/// Serialization format version written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// A trained, self-contained model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// Serialization format ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Caller-chosen model version label (e.g. a timestamp or build id).
    pub version: String,
    /// Seed the model was trained with.
    pub seed: u64,
    /// What was trained.
    pub spec: ModelSpec,
    /// External user ids by training index.
    pub user_ids: Vec<String>,
    /// External item ids by index.
    pub item_ids: Vec<ItemId>,
    /// Training items of each user (excluded from that user's recommendations).
    pub user_history: Vec<Vec<u32>>,
    /// The model.
    pub model: Model,
    #[serde(skip)]
    user_index: HashMap<String, usize>,
    #[serde(skip)]
    item_index: HashMap<ItemId, u32>,
}

impl ModelArtifact {
    /// Trains `spec` on every interaction of `data`.
    pub fn train(
        data: &Dataset,
        spec: &ModelSpec,
        seed: u64,
        version: impl Into<String>,
    ) -> Result<Self> {
        let model = spec.train(&data.user_items, data.n_items(), seed)?;
        let mut a = Self {
            format_version: FORMAT_VERSION,
            version: version.into(),
            seed,
            spec: *spec,
            user_ids: data.user_ids.clone(),
            item_ids: data.item_ids.clone(),
            user_history: data.user_items.clone(),
            model,
            user_index: HashMap::new(),
            item_index: HashMap::new(),
        };
        a.build_indices();
        Ok(a)
    }

    /// Trains `spec` on live interactions: every `(user, item)` pair counts once as an
    /// implicit positive, whatever its event kind.
    pub fn train_from_interactions(
        interactions: &[Interaction],
        spec: &ModelSpec,
        seed: u64,
        version: impl Into<String>,
    ) -> Result<Self> {
        let data = Dataset::from_pairs(
            interactions
                .iter()
                .map(|i| (i.user.as_str(), i.item.as_str())),
        );
        Self::train(&data, spec, seed, version)
    }

    fn build_indices(&mut self) {
        self.user_index = self
            .user_ids
            .iter()
            .enumerate()
            .map(|(i, u)| (u.clone(), i))
            .collect();
        self.item_index = self
            .item_ids
            .iter()
            .enumerate()
            .map(|(i, u)| (u.clone(), i as u32))
            .collect();
    }

    /// Encodes as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Decodes JSON written by [`ModelArtifact::to_json`], refusing other format versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let mut a: Self = serde_json::from_slice(bytes)?;
        if a.format_version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: a.format_version,
                expected: FORMAT_VERSION,
            });
        }
        a.build_indices();
        Ok(a)
    }

    /// Whether the model knows this user.
    pub fn knows_user(&self, user: &str) -> bool {
        self.user_index.contains_key(user)
    }

    /// Dense index of an item id.
    pub fn item_index(&self, item: &str) -> Option<u32> {
        self.item_index.get(item).copied()
    }

    /// Top-`n` candidates by model score for `user`, given their `recent` items (unknown ids
    /// ignored). Training history, `recent` and `exclude` are never returned. An unknown user
    /// with no known recent item gets an empty list: use cold start instead.
    pub fn recommend(
        &self,
        user: &str,
        recent: &[ItemId],
        n: usize,
        exclude: &HashSet<ItemId>,
    ) -> Result<Vec<(ItemId, f64)>> {
        let uidx = self.user_index.get(user).copied();
        let mut history: Vec<u32> = uidx
            .map(|u| self.user_history[u].clone())
            .unwrap_or_default();
        let known_before = history.len();
        for r in recent {
            if let Some(i) = self.item_index(r) {
                if !history.contains(&i) {
                    history.push(i);
                }
            }
        }
        if history.is_empty() && !matches!(self.model, Model::Popularity(_)) {
            return Ok(Vec::new());
        }
        // A known user with new recent items is folded in from the full history, so the
        // recommendation reacts to the session.
        let user_arg = if history.len() == known_before {
            uidx
        } else {
            None
        };
        let mut scores = vec![0f32; self.item_ids.len()];
        self.model.score(user_arg, &history, &mut scores)?;
        let mut banned = vec![false; self.item_ids.len()];
        for &i in &history {
            banned[i as usize] = true;
        }
        for e in exclude {
            if let Some(i) = self.item_index(e) {
                banned[i as usize] = true;
            }
        }
        Ok(top_n_dense(&scores, n, |i| banned[i])
            .into_iter()
            .map(|(i, s)| (self.item_ids[i].clone(), s))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{EaseParams, ModelSpec};

    fn data() -> Dataset {
        Dataset::from_pairs([
            ("u1", "a"),
            ("u1", "b"),
            ("u2", "a"),
            ("u2", "b"),
            ("u2", "c"),
            ("u3", "c"),
            ("u3", "d"),
            ("u4", "c"),
            ("u4", "d"),
        ])
    }

    #[test]
    fn recommend_excludes_history_and_roundtrips() {
        let a = ModelArtifact::train(
            &data(),
            &ModelSpec::Ease(EaseParams { lambda: 0.5 }),
            1,
            "v1",
        )
        .unwrap();
        let recs = a.recommend("u1", &[], 3, &HashSet::new()).unwrap();
        assert!(recs.iter().all(|r| r.0 != "a" && r.0 != "b"));
        assert_eq!(recs[0].0, "c");
        let ex: HashSet<ItemId> = ["c".to_string()].into();
        assert_eq!(a.recommend("u1", &[], 1, &ex).unwrap()[0].0, "d");
        // Unknown user folded in from the session.
        assert_eq!(
            a.recommend("new", &["d".into()], 1, &HashSet::new())
                .unwrap()[0]
                .0,
            "c"
        );
        assert!(a
            .recommend("new", &[], 1, &HashSet::new())
            .unwrap()
            .is_empty());
        let b = ModelArtifact::from_json(&a.to_json().unwrap()).unwrap();
        assert_eq!(b.recommend("u1", &[], 3, &HashSet::new()).unwrap(), recs);
    }

    #[test]
    fn trains_from_live_interactions() {
        use crate::types::EventKind;
        let ev: Vec<Interaction> = [
            ("u1", "a"),
            ("u1", "b"),
            ("u2", "a"),
            ("u2", "b"),
            ("u3", "a"),
        ]
        .iter()
        .map(|(u, i)| Interaction::new(*u, *i, EventKind::Order, 0.0))
        .collect();
        let a =
            ModelArtifact::train_from_interactions(&ev, &ModelSpec::Popularity, 1, "v").unwrap();
        assert!(a.knows_user("u3"));
        assert_eq!(
            a.recommend("u3", &[], 5, &HashSet::new()).unwrap()[0].0,
            "b"
        );
    }

    #[test]
    fn rejects_other_format_versions() {
        let a = ModelArtifact::train(&data(), &ModelSpec::Popularity, 1, "v1").unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&a.to_json().unwrap()).unwrap();
        v["format_version"] = 99.into();
        let err = ModelArtifact::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 99, .. }));
    }
}
