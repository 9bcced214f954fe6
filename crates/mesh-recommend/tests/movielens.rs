//! MovieLens 100k, Microsoft Recommenders protocol, one seed: the best model must beat the
//! published BPR NDCG@10 (0.442) and every matrix-factorisation model must beat popularity.
//!
//! Data: `MESH_ML100K_DIR` (default `<workspace>/target/ml-100k`); when `ml-100k.inter` is
//! missing the shared fetch script is run into that directory. If it still is missing the
//! test fails. Runs item-kNN too, and uses the crate's default hyper-parameters (chosen on a
//! validation split carved from training data, see README), at full epochs.

use std::path::Path;
use std::process::Command;

use mesh_recommend::cli::{eval, EvalArgs, Protocol};
use mesh_recommend::data::{default_ml100k_dir, shared_data_dir};

fn ensure_data(dir: &Path) {
    let file = dir.join("ml-100k.inter");
    if !file.exists() {
        let script = shared_data_dir().join("recsys/fetch-ml100k.sh");
        assert!(
            script.exists(),
            "fetch script {} not found; set MESH_SHARED_DATA",
            script.display()
        );
        let status = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .status()
            .expect("could not run bash");
        assert!(
            status.success(),
            "{} {} failed: {status}",
            script.display(),
            dir.display()
        );
    }
    assert!(
        file.exists(),
        "{} missing after running the fetch script",
        file.display()
    );
}

#[test]
fn msrec_best_model_beats_published_bpr_and_mf_beats_popularity() {
    let dir = default_ml100k_dir();
    ensure_data(&dir);
    let mut args = EvalArgs::new(dir, Protocol::Msrec);
    args.seeds = 1;
    // The EASE+ALS blend is left out to keep the debug-mode runtime down (it retrains both).
    args.models = ["popularity", "item_knn", "bpr", "als", "ease"]
        .map(String::from)
        .to_vec();
    let report = eval(&args).expect("evaluation failed");
    println!("{report}");
    assert_eq!(report.data["interactions"], 100_000);
    assert_eq!(report.data["users"], 943);
    assert!(
        report.metrics.ndcg > 0.442,
        "best model {} NDCG@10 {:.4} does not beat published BPR 0.442",
        report.best_model,
        report.metrics.ndcg
    );
    let pop = report.models["popularity"].mean.ndcg;
    for mf in ["bpr", "als"] {
        let m = report.models[mf].mean.ndcg;
        assert!(
            m > pop,
            "{mf} NDCG@10 {m:.4} does not beat popularity {pop:.4}"
        );
    }
    // Sanity of the metric plumbing: precision@10 and recall@10 are within the possible range.
    for m in report.models.values() {
        assert!(m.mean.precision > 0.0 && m.mean.precision <= 1.0);
        assert!(m.mean.hit >= m.mean.precision);
    }
}
