//! Learned implicit-feedback models over dense user/item indices, one enum to train, score
//! and serialize them all.

pub mod als;
pub mod artifact;
pub mod blend;
pub mod bpr;
pub mod ease;
pub mod gram;
pub mod knn;
pub mod popularity;

use serde::{Deserialize, Serialize};

pub use als::{Als, AlsParams};
pub use artifact::{ModelArtifact, FORMAT_VERSION};
pub use blend::{Blend, BlendParams};
pub use bpr::{Bpr, BprParams};
pub use ease::{Ease, EaseParams};
pub use knn::{ItemKnn, KnnParams};
pub use popularity::Popularity;

use crate::data::UserItems;
use crate::error::Result;

/// Which model to train, with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum ModelSpec {
    /// Most-popular baseline.
    Popularity,
    /// Item-kNN, cosine with shrinkage.
    ItemKnn(KnnParams),
    /// BPR-MF by SGD.
    Bpr(BprParams),
    /// Implicit ALS.
    Als(AlsParams),
    /// EASE^R closed form.
    Ease(EaseParams),
    /// Standardised mix of EASE^R and ALS.
    Blend(BlendParams),
}

impl ModelSpec {
    /// Short stable name (`popularity`, `item_knn`, `bpr`, `als`, `ease`).
    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Popularity => "popularity",
            ModelSpec::ItemKnn(_) => "item_knn",
            ModelSpec::Bpr(_) => "bpr",
            ModelSpec::Als(_) => "als",
            ModelSpec::Ease(_) => "ease",
            ModelSpec::Blend(_) => "blend",
        }
    }

    /// Trains this model on per-user item lists (deterministic for a seed).
    pub fn train(&self, train: &UserItems, n_items: usize, seed: u64) -> Result<Model> {
        Ok(match *self {
            ModelSpec::Popularity => Model::Popularity(Popularity::fit(train, n_items)),
            ModelSpec::ItemKnn(p) => Model::ItemKnn(ItemKnn::fit(train, n_items, p)),
            ModelSpec::Bpr(p) => Model::Bpr(Bpr::fit(train, n_items, p, seed)?),
            ModelSpec::Als(p) => Model::Als(Als::fit(train, n_items, p, seed)?),
            ModelSpec::Ease(p) => Model::Ease(Ease::fit(train, n_items, p)?),
            ModelSpec::Blend(p) => Model::Blend(Box::new(Blend::fit(train, n_items, p, seed)?)),
        })
    }
}

/// A trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Model {
    /// Most-popular baseline.
    Popularity(Popularity),
    /// Item-kNN.
    ItemKnn(ItemKnn),
    /// BPR-MF.
    Bpr(Bpr),
    /// Implicit ALS.
    Als(Als),
    /// EASE^R.
    Ease(Ease),
    /// EASE^R + ALS.
    Blend(Box<Blend>),
}

impl Model {
    /// Short stable name, as [`ModelSpec::name`].
    pub fn name(&self) -> &'static str {
        match self {
            Model::Popularity(_) => "popularity",
            Model::ItemKnn(_) => "item_knn",
            Model::Bpr(_) => "bpr",
            Model::Als(_) => "als",
            Model::Ease(_) => "ease",
            Model::Blend(_) => "blend",
        }
    }

    /// Writes a score for every item into `out` (`out.len()` = number of items).
    /// `user` is the training index of a known user, `None` for a user the model has not
    /// seen; `history` is the user's item indices (used by item-based models and fold-in).
    pub fn score(&self, user: Option<usize>, history: &[u32], out: &mut [f32]) -> Result<()> {
        match (self, user) {
            (Model::Popularity(m), _) => m.score(out),
            (Model::ItemKnn(m), _) => m.score(history, out),
            (Model::Ease(m), _) => m.score(history, out),
            (Model::Bpr(m), Some(u)) if u < m.user_factors.len() / m.params.dims => {
                m.score_user(u, out)
            }
            (Model::Bpr(m), _) => m.score_history(history, out),
            (Model::Als(m), Some(u)) if u < m.user_factors.len() / m.params.dims => {
                m.score_user(u, out)
            }
            (Model::Als(m), _) => m.score_history(history, out)?,
            (Model::Blend(m), u) => m.score(u, history, out)?,
        }
        Ok(())
    }
}
