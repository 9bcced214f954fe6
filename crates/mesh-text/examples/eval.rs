//! Runs the crate's evals and prints JSON.
//!
//! ```text
//! cargo run --release --example eval -- sentiment --data FILE [--e5-model PATH] [--seed N]
//! cargo run --release --example eval -- sentiment --pos FILE --neg FILE [--seed N]
//! cargo run --release --example eval -- search [--seed N]
//! cargo run --release --example eval -- product [--seed N] [--threshold T]
//! cargo run --release --example eval -- feedback [--seed N]
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{json, Value};

fn usage() -> ExitCode {
    eprintln!(
        "usage: eval sentiment --data FILE [--e5-model PATH] [--model-dir DIR] | sentiment --pos FILE --neg FILE | search | product [--threshold T] | feedback   [--seed N]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        return usage();
    };
    let mut flags: HashMap<&str, &str> = HashMap::new();
    let mut rest = args[1..].iter();
    while let Some(k) = rest.next() {
        let Some(v) = rest.next() else {
            eprintln!("flag {k} needs a value");
            return usage();
        };
        flags.insert(k.as_str(), v.as_str());
    }
    let seed: u64 = match flags.get("--seed").map(|s| s.parse()) {
        None => 42,
        Some(Ok(s)) => s,
        Some(Err(_)) => {
            eprintln!("--seed must be an unsigned integer");
            return usage();
        }
    };
    let start = Instant::now();
    let report: Result<Value, String> = match (
        cmd.as_str(),
        flags.get("--data"),
        flags.get("--pos"),
        flags.get("--neg"),
    ) {
        ("sentiment", Some(data), None, None) => {
            let dir = flags
                .get("--model-dir")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("MESH_EMBED_MODEL_DIR")
                        .filter(|v| !v.is_empty())
                        .map(Into::into)
                });
            let e5 = flags
                .get("--e5-model")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("MESH_E5_MODEL")
                        .filter(|v| !v.is_empty())
                        .map(Into::into)
                });
            let spec = mesh_text::sentiment::EncoderSpec {
                e5_model: e5,
                minilm_dir: dir,
            };
            mesh_text::sentiment::eval_vader_format_encoders(Path::new(data), seed, &spec)
                .map(|r| json!(r))
                .map_err(|e| e.to_string())
        }
        ("sentiment", None, Some(pos), Some(neg)) => {
            mesh_text::sentiment::eval_pos_neg(Path::new(pos), Path::new(neg), seed)
                .map(|r| json!(r))
                .map_err(|e| e.to_string())
        }
        ("search", None, None, None) => Ok(json!(mesh_text::search::eval_search(seed))),
        ("product", None, None, None) => {
            let threshold: f32 = match flags.get("--threshold").map(|s| s.parse()) {
                None => 0.6,
                Some(Ok(t)) => t,
                Some(Err(_)) => {
                    eprintln!("--threshold must be a number");
                    return usage();
                }
            };
            mesh_text::product::eval_product_with(seed, threshold)
                .map(|r| json!(r))
                .map_err(|e| e.to_string())
        }
        ("feedback", None, None, None) => mesh_text::feedback::eval_feedback(seed)
            .map(|r| json!(r))
            .map_err(|e| e.to_string()),
        _ => return usage(),
    };
    match report {
        Ok(mut v) => {
            v["elapsed_ms"] = json!(start.elapsed().as_millis() as u64);
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
