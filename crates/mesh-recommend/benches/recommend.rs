//! `recommend` latency for one user with models trained on MovieLens 100k (943 users,
//! 1,682 items), plus the live-signal update and the ranker. Needs `ml-100k.inter` in
//! `MESH_ML100K_DIR` (default `<workspace>/target/ml-100k`; run
//! `bash ../shared/data/recsys/fetch-ml100k.sh target/ml-100k`).

use std::collections::{HashMap, HashSet};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mesh_recommend::cli::default_spec;
use mesh_recommend::data::{default_ml100k_dir, Dataset};
use mesh_recommend::rank::{rank, Candidate, RankConfig, Source, UserContext};
use mesh_recommend::types::{EventKind, Interaction, ItemId, ItemMeta};
use mesh_recommend::{cooccurrence_updates, LiveConfig, ModelArtifact};

fn load() -> Dataset {
    let path = default_ml100k_dir().join("ml-100k.inter");
    Dataset::load_inter(&path).unwrap_or_else(|e| panic!("benchmark needs MovieLens: {e}"))
}

fn bench_recommend(c: &mut Criterion) {
    let ds = load();
    let user = ds.user_ids[0].clone();
    let none = HashSet::new();
    let mut group = c.benchmark_group("recommend_top10_ml100k");
    for name in ["popularity", "item_knn", "bpr", "als", "ease"] {
        let spec = default_spec(name).expect("known model");
        let model = ModelArtifact::train(&ds, &spec, 42, "bench").expect("training failed");
        group.bench_function(name, |b| {
            b.iter(|| model.recommend(black_box(&user), &[], 10, &none).unwrap())
        });
        if name == "als" || name == "ease" {
            let recent: Vec<ItemId> = ds.user_items[1][..5]
                .iter()
                .map(|&i| ds.item_ids[i as usize].clone())
                .collect();
            group.bench_function(format!("{name}_fold_in_unknown_user"), |b| {
                b.iter(|| {
                    model
                        .recommend(black_box("new-user"), &recent, 10, &none)
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

fn bench_live_and_rank(c: &mut Criterion) {
    let cfg = LiveConfig::default();
    let t0 = cfg.t_ref;
    let history: Vec<Interaction> = (0..50)
        .map(|k| {
            Interaction::new(
                "u",
                format!("i{k}"),
                EventKind::ALL[k % 3],
                t0 + k as f64 * 60.0,
            )
        })
        .collect();
    let new = Interaction::new("u", "x", EventKind::Cart, t0 + 3_600.0);
    c.bench_function("cooccurrence_updates_history50", |b| {
        b.iter(|| cooccurrence_updates(black_box(&history), black_box(&new), &cfg))
    });
    let catalog: HashMap<ItemId, ItemMeta> = (0..1_000)
        .map(|k| {
            let mut m = ItemMeta::new(format!("i{k}"), format!("c{}", k % 20), 10.0 + k as f64);
            m.sales = (k % 97) as f64;
            m.rating = (k % 5) as f64 + 1.0;
            (m.id.clone(), m)
        })
        .collect();
    let cands: Vec<Candidate> = (0..200)
        .map(|k| Candidate {
            item: format!("i{}", k * 5),
            score: 1.0 / (k + 1) as f64,
            source: Source::Model,
        })
        .collect();
    let ctx = UserContext {
        now: 1e9,
        ..UserContext::default()
    };
    c.bench_function("rank_200_candidates", |b| {
        b.iter(|| rank(black_box(&ctx), &cands, &catalog, &RankConfig::default()))
    });
}

criterion_group!(benches, bench_recommend, bench_live_and_rank);
criterion_main!(benches);
