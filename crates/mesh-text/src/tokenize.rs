//! Mixed Chinese/English tokenizing and hashed TF-IDF features.
//!
//! Han runs go to jieba (its default dictionary ships inside the crate); Latin and other
//! alphabetic runs become lowercase words; digits become numbers. English negators (not,
//! never, n't, ...) mark the words after them up to the next clause punctuation, so
//! "not good" and "good" are different features. Features are hashed (FNV-1a) into
//! `2^bits` buckets, so no vocabulary is stored and unseen words cost nothing.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// What kind of text a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    /// A lowercase alphabetic word (Latin or another alphabetic script).
    Word,
    /// A jieba word from a Han run.
    Cjk,
    /// A run of digits (with inner `.`/`,`).
    Number,
    /// `!` or `?` — kept because they carry tone.
    Mark,
}

/// One token; `negated` is set for English words inside a negation scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub kind: TokenKind,
    pub negated: bool,
}

/// Jieba is built once per process (loading the dictionary takes ~100 ms).
pub(crate) fn jieba() -> &'static jieba_rs::Jieba {
    static J: OnceLock<jieba_rs::Jieba> = OnceLock::new();
    J.get_or_init(jieba_rs::Jieba::new)
}

/// Han ideographs (incl. extension A, compatibility and extension B+ planes).
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

const NEGATORS: &[&str] = &[
    "not", "no", "never", "none", "nothing", "nobody", "neither", "nor", "cannot", "cant", "dont",
    "doesnt", "didnt", "isnt", "wasnt", "arent", "werent", "wont", "wouldnt", "shouldnt",
    "couldnt", "hasnt", "havent", "hadnt", "without", "hardly", "barely",
];

fn is_clause_end(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | ';' | ':' | '!' | '?' | '。' | '，' | '；' | '！' | '？' | '\n' | '(' | ')'
    )
}

/// Longest Han run handed to jieba at once; bounds work on pathological input.
const MAX_CJK_RUN: usize = 256;

/// Splits `text` into tokens. Never panics; linear in the input.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut negating = false;
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if is_han(c) {
            let mut end = start;
            let mut n = 0;
            while let Some(&(i, c2)) = chars.peek() {
                if !is_han(c2) || n >= MAX_CJK_RUN {
                    break;
                }
                end = i + c2.len_utf8();
                n += 1;
                chars.next();
            }
            for w in jieba().cut(&text[start..end], true) {
                out.push(Token {
                    text: w.word.to_string(),
                    kind: TokenKind::Cjk,
                    negated: false,
                });
            }
        } else if c.is_ascii_digit() {
            let mut s = String::new();
            while let Some(&(_, c2)) = chars.peek() {
                if c2.is_ascii_digit() || ((c2 == '.' || c2 == ',') && !s.is_empty()) {
                    s.push(c2);
                    chars.next();
                } else {
                    break;
                }
            }
            let s = s.trim_end_matches(['.', ',']).replace(',', "");
            out.push(Token {
                text: s,
                kind: TokenKind::Number,
                negated: false,
            });
        } else if c.is_alphabetic() {
            let mut w = String::new();
            while let Some(&(_, c2)) = chars.peek() {
                if c2.is_alphanumeric() && !is_han(c2) {
                    w.extend(c2.to_lowercase());
                    chars.next();
                } else if c2 == '\'' || c2 == '’' {
                    // Apostrophes join contractions: "don't" -> "dont".
                    chars.next();
                } else {
                    break;
                }
            }
            let is_neg = NEGATORS.contains(&w.as_str())
                || w.ends_with("nt") && w.len() > 3 && {
                    let stem = &w[..w.len() - 2];
                    matches!(
                        stem,
                        "do" | "does"
                            | "did"
                            | "is"
                            | "was"
                            | "are"
                            | "were"
                            | "wo"
                            | "would"
                            | "should"
                            | "could"
                            | "has"
                            | "have"
                            | "had"
                            | "ca"
                            | "ai"
                    )
                };
            out.push(Token {
                text: w,
                kind: TokenKind::Word,
                negated: negating && !is_neg,
            });
            if is_neg {
                negating = true;
            }
        } else {
            if is_clause_end(c) {
                negating = false;
            }
            if c == '!' || c == '?' || c == '！' || c == '？' {
                let m = if c == '!' || c == '！' { "!" } else { "?" };
                out.push(Token {
                    text: m.to_string(),
                    kind: TokenKind::Mark,
                    negated: false,
                });
            }
            chars.next();
        }
    }
    out
}

/// Search terms: lowercase words, numbers and jieba search-mode words (which also emits the
/// shorter words inside long ones, so "智能手机" matches "手机").
pub fn search_terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokenize(text) {
        match t.kind {
            TokenKind::Word | TokenKind::Number => out.push(t.text),
            TokenKind::Cjk => {
                let n = t.text.chars().count();
                if n > 2 {
                    for w in jieba().cut_for_search(&t.text, false) {
                        if w.word != t.text {
                            out.push(w.word.to_string());
                        }
                    }
                }
                if n > 1 || !is_stop_cjk(&t.text) {
                    out.push(t.text);
                }
            }
            TokenKind::Mark => {}
        }
    }
    out
}

fn is_stop_cjk(s: &str) -> bool {
    matches!(
        s,
        "的" | "了"
            | "是"
            | "在"
            | "和"
            | "有"
            | "我"
            | "也"
            | "就"
            | "都"
            | "吗"
            | "呢"
            | "吧"
            | "啊"
    )
}

/// Which features the extractor emits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// log2 of the number of hash buckets (18..=20 recommended).
    pub bits: u8,
    /// Emit word bigrams (English words and jieba words).
    pub word_bigrams: bool,
    /// Han character n-grams from 1 up to this length (0 = none).
    pub cjk_char_ngrams: usize,
    /// Prefix English words in a negation scope with `NOT_`.
    pub negation: bool,
    /// Character n-grams (3..=this) inside Latin words, for misspellings (0 = none).
    pub latin_char_ngrams: usize,
    /// Also emit the words of the first and last clause as position-marked features
    /// (reviews often open or close with the verdict).
    #[serde(default)]
    pub clause_position: bool,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            bits: 18,
            word_bigrams: true,
            cjk_char_ngrams: 2,
            negation: true,
            latin_char_ngrams: 0,
            clause_position: false,
        }
    }
}

/// FNV-1a 64-bit, stable across platforms and releases (unlike `DefaultHasher`).
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A sparse vector: parallel sorted indices and values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVec {
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
}

impl SparseVec {
    /// Builds from unsorted (index, value) pairs, summing duplicates.
    pub fn from_pairs(mut pairs: Vec<(u32, f32)>) -> Self {
        pairs.sort_unstable_by_key(|p| p.0);
        let mut v = SparseVec::default();
        for (i, x) in pairs {
            if v.idx.last() == Some(&i) {
                *v.val.last_mut().expect("parallel") += x;
            } else {
                v.idx.push(i);
                v.val.push(x);
            }
        }
        v
    }

    pub fn len(&self) -> usize {
        self.idx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    /// Scales to unit L2 norm (no-op for the zero vector).
    pub fn normalize(&mut self) {
        let n: f32 = self.val.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            self.val.iter_mut().for_each(|x| *x /= n);
        }
    }

    /// Appends dense features at indices `offset..`; indices must be above all existing ones.
    pub fn push_dense(&mut self, offset: u32, dense: &[f32]) {
        for (i, &x) in dense.iter().enumerate() {
            if x != 0.0 {
                self.idx.push(offset + i as u32);
                self.val.push(x);
            }
        }
    }
}

/// Raw term counts by bucket for `text`.
pub fn hashed_counts(text: &str, cfg: &FeatureConfig) -> HashMap<u32, f32> {
    let mask = (1u64 << cfg.bits) - 1;
    let mut counts: HashMap<u32, f32> = HashMap::new();
    let mut add = |parts: &[&str]| {
        *counts.entry((fnv1a(parts) & mask) as u32).or_insert(0.0) += 1.0;
    };
    let toks = tokenize(text);
    let mut prev: Option<String> = None;
    for t in &toks {
        let unit = if cfg.negation && t.negated {
            format!("NOT_{}", t.text)
        } else {
            t.text.clone()
        };
        add(&["w", &unit]);
        if cfg.word_bigrams {
            if let Some(p) = &prev {
                add(&["b", p, &unit]);
            }
        }
        prev = Some(unit);
        if t.kind == TokenKind::Word && cfg.latin_char_ngrams >= 3 {
            let cs: Vec<char> = format!("<{}>", t.text).chars().collect();
            for n in 3..=cfg.latin_char_ngrams {
                for w in cs.windows(n) {
                    let g: String = w.iter().collect();
                    add(&["l", &g]);
                }
            }
        }
    }
    if cfg.clause_position {
        let clauses: Vec<&str> = text
            .split(is_clause_end)
            .filter(|c| c.chars().any(char::is_alphanumeric))
            .collect();
        if clauses.len() > 1 {
            for (tag, c) in [("F", clauses[0]), ("L", clauses[clauses.len() - 1])] {
                for t in tokenize(c) {
                    add(&[tag, &t.text]);
                }
            }
        }
    }
    if cfg.cjk_char_ngrams > 0 {
        // Char n-grams across the jieba words of each Han run (jieba splits are imperfect on
        // review slang; overlapping n-grams recover "不好", "太差" whatever the segmentation).
        let mut run: Vec<char> = Vec::new();
        let mut flush = |run: &mut Vec<char>| {
            for n in 1..=cfg.cjk_char_ngrams {
                for w in run.windows(n) {
                    let g: String = w.iter().collect();
                    *counts
                        .entry((fnv1a(&["c", &g]) & mask) as u32)
                        .or_insert(0.0) += 1.0;
                }
            }
            run.clear();
        };
        for c in text.chars() {
            if is_han(c) {
                run.push(c);
            } else if !run.is_empty() {
                flush(&mut run);
            }
        }
        flush(&mut run);
    }
    counts
}

/// Turns text into L2-normalised, sublinear-TF × IDF hashed vectors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vectorizer {
    pub config: FeatureConfig,
    /// IDF per bucket, only for buckets seen in fitting; unseen buckets get `default_idf`.
    idf: HashMap<u32, f32>,
    default_idf: f32,
}

impl Vectorizer {
    /// Fits IDF on `docs`.
    pub fn fit<S: AsRef<str>>(config: FeatureConfig, docs: &[S]) -> Self {
        let mut df: HashMap<u32, u32> = HashMap::new();
        for d in docs {
            for k in hashed_counts(d.as_ref(), &config).into_keys() {
                *df.entry(k).or_insert(0) += 1;
            }
        }
        let n = docs.len() as f32;
        let idf = df
            .into_iter()
            .map(|(k, d)| (k, ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0))
            .collect();
        Vectorizer {
            config,
            idf,
            default_idf: (1.0 + n).ln() + 1.0,
        }
    }

    /// Number of dimensions of the hashed part.
    pub fn dim(&self) -> usize {
        1usize << self.config.bits
    }

    /// The normalised TF-IDF vector of `text`.
    pub fn transform(&self, text: &str) -> SparseVec {
        let pairs = hashed_counts(text, &self.config)
            .into_iter()
            .map(|(k, c)| {
                let idf = self.idf.get(&k).copied().unwrap_or(self.default_idf);
                (k, (1.0 + c.ln()) * idf)
            })
            .collect();
        let mut v = SparseVec::from_pairs(pairs);
        v.normalize();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mixed_text_splits_by_script() {
        let t = tokenize("这个手机很好用, iPhone 15 Pro costs 999.50!");
        let texts: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
        assert!(texts.contains(&"手机"), "{texts:?}");
        assert!(texts.contains(&"iphone"));
        assert!(texts.contains(&"999.50"));
        assert!(texts.contains(&"!"));
        assert!(t.iter().any(|t| t.kind == TokenKind::Cjk));
    }

    #[test]
    fn negation_scope_ends_at_punctuation() {
        let t = tokenize("I don't like this phone, but the case is good");
        let neg: Vec<&str> = t
            .iter()
            .filter(|t| t.negated)
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(neg, vec!["like", "this", "phone"]);
    }

    #[test]
    fn negated_and_plain_words_hash_apart() {
        let v = Vectorizer::fit(FeatureConfig::default(), &["good", "not good"]);
        let a = v.transform("good");
        let b = v.transform("not good");
        assert!(a.idx.iter().all(|i| !b.idx.contains(i) || b.idx.len() > 1));
        assert_ne!(a, b);
        assert!((a.val.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn search_terms_include_sub_words() {
        let t = search_terms("智能手机");
        assert!(t.contains(&"手机".to_string()), "{t:?}");
    }

    proptest! {
        #[test]
        fn tokenize_never_panics(s in "\\PC*") {
            let _ = tokenize(&s);
            let _ = search_terms(&s);
            let _ = hashed_counts(&s, &FeatureConfig { latin_char_ngrams: 5, ..Default::default() });
        }

        #[test]
        fn tokenize_never_panics_on_any_chars(s in proptest::collection::vec(any::<char>(), 0..400)) {
            let s: String = s.into_iter().collect();
            let _ = tokenize(&s);
        }
    }

    #[test]
    fn huge_input_is_fine() {
        let s = "好".repeat(200_000) + &"word ".repeat(50_000) + &"9".repeat(100_000);
        let t = tokenize(&s);
        assert!(t.len() > 50_000);
        let _ = hashed_counts(&s, &FeatureConfig::default());
    }
}
