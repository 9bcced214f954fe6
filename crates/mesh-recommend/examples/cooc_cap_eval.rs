//! What capping co-occurrence rows (`LiveConfig::cooc_keep`) costs in
//! recommendation quality, on MovieLens 100k.
//!
//! Every user's last rating is held out; all other ratings go through a
//! [`LiveIndex`] in time order as views. Each user is then answered the way
//! the recommend service reads co-occurrence (`services/recommend/src/live.rs`,
//! `from_history`): the newest 10 distinct items of the history as seeds,
//! the top 20 neighbours of each seed, summed with decay, seen items left
//! out, top 10. Printed per cap: HR@10, NDCG@10, neighbours per row (mean
//! and max). The held-out ratings are never part of the stream.
//!
//! ```text
//! bash ../shared/data/recsys/fetch-ml100k.sh target/ml-100k
//! cargo run --release -p mesh-recommend --example cooc_cap_eval [-- 0,200,100,50,20]
//! ```
use std::collections::{HashMap, HashSet};

use mesh_recommend::data::default_ml100k_dir;
use mesh_recommend::{EventKind, Interaction, LiveConfig, LiveIndex};

const SEEDS: usize = 10;
const PER_SEED: usize = 20;
const N: usize = 10;

fn main() {
    let caps: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0,200,100,50,20".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("caps: comma-separated counts, 0 = no cap")
        })
        .collect();
    let path = default_ml100k_dir().join("ml-100k.inter");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash ../shared/data/recsys/fetch-ml100k.sh target/ml-100k` \
             (or set MESH_ML100K_DIR)",
            path.display()
        )
    });
    // user, item, rating, timestamp (after a header line).
    let mut rows: Vec<(String, String, f64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.to_string(),
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    rows.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
    // Each user's last rating (latest time; ties: the last row) is held out.
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        last.insert(r.0.as_str(), i);
    }
    let held: HashSet<usize> = last.values().copied().collect();
    println!(
        "MovieLens 100k: {} ratings, {} users, {} held out (each user's last)",
        rows.len(),
        last.len(),
        held.len()
    );
    println!("cap\tHR@10\tNDCG@10\tmean row\tmax row\tusers answered");
    for cap in caps {
        let cfg = LiveConfig {
            cooc_keep: cap,
            ..LiveConfig::default()
        };
        let mut ix = LiveIndex::new(cfg);
        for (i, (u, it, ts)) in rows.iter().enumerate() {
            if !held.contains(&i) {
                ix.record(Interaction {
                    user: u.clone(),
                    item: it.clone(),
                    kind: EventKind::View,
                    ts: *ts,
                    category: None,
                    device: None,
                    segment: None,
                });
            }
        }
        let (mut hits, mut ndcg, mut answered) = (0usize, 0.0f64, 0usize);
        let mut row_sizes: HashMap<String, usize> = HashMap::new();
        for &i in &held {
            let (u, target, now) = &rows[i];
            let hist = ix.history(u);
            let seen: HashSet<&str> = hist.iter().map(|h| h.item.as_str()).collect();
            let mut seeds: Vec<&str> = Vec::new();
            for h in hist.iter().rev() {
                if !seeds.contains(&h.item.as_str()) {
                    seeds.push(&h.item);
                }
                if seeds.len() == SEEDS {
                    break;
                }
            }
            let mut acc: HashMap<String, f64> = HashMap::new();
            for s in &seeds {
                let row = ix.similar_items(s, usize::MAX, *now);
                row_sizes.insert(s.to_string(), row.len());
                for (other, v) in row.into_iter().take(PER_SEED) {
                    if !seen.contains(other.as_str()) {
                        *acc.entry(other).or_insert(0.0) += v;
                    }
                }
            }
            let mut top: Vec<(String, f64)> = acc.into_iter().collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(N);
            if !top.is_empty() {
                answered += 1;
            }
            if let Some(rank) = top.iter().position(|(it, _)| it == target) {
                hits += 1;
                ndcg += 1.0 / ((rank + 2) as f64).log2();
            }
        }
        let n = held.len() as f64;
        let mean_row = row_sizes.values().sum::<usize>() as f64 / row_sizes.len().max(1) as f64;
        let max_row = row_sizes.values().max().copied().unwrap_or(0);
        let name = if cap == 0 {
            "none".to_string()
        } else {
            cap.to_string()
        };
        println!(
            "{name}\t{:.4}\t{:.4}\t{mean_row:.1}\t{max_row}\t{answered}",
            hits as f64 / n,
            ndcg / n
        );
    }
}
