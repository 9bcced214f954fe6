//! The JSON `mesh eval recommend --json` prints: the best model's metrics at the top level and
//! every model (popularity, item-kNN, BPR, ALS, EASE, blend) under `models`, each over three
//! seeds, for both protocols. A small seeded synthetic `.inter` file keeps this fast; the
//! MovieLens numbers are in `tests/movielens.rs` and the README.
use std::fmt::Write as _;

use mesh_recommend::cli::{eval, EvalArgs, Protocol};
use rand::{Rng, SeedableRng};

const METRICS: [&str; 5] = ["precision@10", "recall@10", "ndcg@10", "hit@10", "mrr@10"];

fn synthetic_inter(dir: &std::path::Path) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut text = String::from("user_id:token\titem_id:token\trating:float\ttimestamp:float\n");
    for u in 0..150 {
        let group = u % 5;
        let mut items = std::collections::BTreeSet::new();
        while items.len() < 20 {
            let i = if rng.random::<f64>() < 0.8 {
                group * 20 + rng.random_range(0..20)
            } else {
                rng.random_range(0..100)
            };
            items.insert(i);
        }
        for i in items {
            writeln!(text, "u{u}\ti{i}\t4\t{}", 1000 + i).unwrap();
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ml-100k.inter"), text).unwrap();
}

#[test]
fn eval_json_has_every_model_over_three_seeds_for_both_protocols() {
    let dir = std::env::temp_dir().join(format!("mesh-rec-eval-{}", std::process::id()));
    synthetic_inter(&dir);
    for protocol in [Protocol::Msrec, Protocol::Recbole] {
        let mut args = EvalArgs::new(dir.clone(), protocol);
        args.bpr_epochs = Some(5);
        assert_eq!(args.seeds, 3, "three seeds by default");
        let report = eval(&args).unwrap();
        let json = serde_json::to_value(&report).unwrap();
        for k in METRICS.iter().chain(&["train_seconds"]) {
            assert!(
                json[k].is_number(),
                "{protocol:?}: top-level {k} missing: {json}"
            );
        }
        let best = json["best_model"].as_str().unwrap();
        assert_eq!(json["ndcg@10"], json["models"][best]["ndcg@10"]);
        for model in ["popularity", "item_knn", "bpr", "als", "ease", "blend"] {
            let m = &json["models"][model];
            for k in METRICS.iter().chain(&["train_seconds"]) {
                assert!(m[k].is_number(), "{protocol:?}: models.{model}.{k} missing");
            }
            assert_eq!(m["per_seed"].as_array().unwrap().len(), 3, "{model}");
        }
        assert_eq!(json["seeds"], serde_json::json!([42, 43, 44]));
        // Learned models find the planted groups; popularity cannot.
        let ndcg = |m: &str| json["models"][m]["ndcg@10"].as_f64().unwrap();
        assert!(ndcg("als") > ndcg("popularity"), "{protocol:?}: {json}");
        assert!(
            ndcg("item_knn") > ndcg("popularity"),
            "{protocol:?}: {json}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
