//! Dense English lexicon features from the `vader_sentiment` crate (MIT; VADER's lexicon and
//! rules compiled in) plus a few cues for the neutral class.
//!
//! VADER's rules (boosters, negation, "but", caps) run inside `polarity_scores`; on top we
//! count lexicon hits inside and outside our own negation scopes, so the model can learn how
//! far to trust VADER on a domain. The neutral cues (questions, digits, length, no lexicon
//! word at all) are what separates "repost from january 13, 2004" from an opinion.

use std::sync::OnceLock;

use crate::tokenize::{tokenize, TokenKind};

fn vader() -> &'static vader_sentiment::SentimentIntensityAnalyzer<'static> {
    static V: OnceLock<vader_sentiment::SentimentIntensityAnalyzer<'static>> = OnceLock::new();
    V.get_or_init(vader_sentiment::SentimentIntensityAnalyzer::new)
}

/// VADER's compound score of `text` in [-1, 1].
pub(crate) fn vader_compound(text: &str) -> f32 {
    vader()
        .polarity_scores(text)
        .get("compound")
        .copied()
        .unwrap_or(0.0) as f32
}

/// Number of dense lexicon features appended after the hashed buckets.
pub const N_LEXICON_FEATURES: usize = 41;

/// Words that turn a sentence towards its second half ("good screen, but the battery...").
const CONTRAST: &[&str] = &["but", "however", "although", "though", "yet", "except"];

/// VADER-derived dense features for `text` (all zero for text without English words).
///
/// Layout: 0 compound, 1–3 pos/neg/neu, 4–11 compound one-hot bins, 12–15 log valence sums
/// (positive, negative, negated positive, negated negative), 16 contrast word, 17–32 valence
/// bins × negated, 33 question, 34 exclamation, 35 digits, 36 log length, 37 no lexicon word,
/// 38 |compound|, 39 compound of the clause after the last contrast word, 40 first person.
pub fn lexicon_features(text: &str) -> [f32; N_LEXICON_FEATURES] {
    let mut f = [0f32; N_LEXICON_FEATURES];
    let toks = tokenize(text);
    let n_words = toks.iter().filter(|t| t.kind == TokenKind::Word).count();
    if n_words == 0 {
        return f;
    }
    let s = vader().polarity_scores(text);
    let compound = s.get("compound").copied().unwrap_or(0.0) as f32;
    f[0] = compound;
    f[1] = s.get("pos").copied().unwrap_or(0.0) as f32;
    f[2] = s.get("neg").copied().unwrap_or(0.0) as f32;
    f[3] = s.get("neu").copied().unwrap_or(0.0) as f32;
    // One-hot compound bins let a linear model learn a non-linear response to compound.
    const EDGES: [f32; 7] = [-0.6, -0.3, -0.05, 0.05, 0.3, 0.6, 0.85];
    let bin = EDGES.iter().filter(|&&e| compound > e).count();
    f[4 + bin] = 1.0;
    // Lexicon hits with our negation scopes: counts saturate via ln(1+x).
    let (mut pos, mut neg, mut npos, mut nneg) = (0f32, 0f32, 0f32, 0f32);
    let mut hits = 0;
    for t in toks.iter().filter(|t| t.kind == TokenKind::Word) {
        if let Some(&v) = vader_sentiment::LEXICON.get(&unicase::UniCase::new(t.text.as_str())) {
            hits += 1;
            // Valence bins (8 by value × negated) generalise to words unseen in training.
            let bin = ((v.clamp(-3.99, 3.99) + 4.0) as usize).min(7);
            f[17 + bin + if t.negated { 8 } else { 0 }] += 1.0;
            match (v > 0.0, t.negated) {
                (true, false) => pos += v as f32,
                (false, false) => neg -= v as f32,
                (true, true) => npos += 1.0,
                (false, true) => nneg += 1.0,
            }
        }
    }
    f[12] = (1.0 + pos).ln();
    f[13] = (1.0 + neg).ln();
    f[14] = (1.0 + npos).ln();
    f[15] = (1.0 + nneg).ln();
    let contrast = toks
        .iter()
        .rposition(|t| CONTRAST.contains(&t.text.as_str()));
    f[16] = if contrast.is_some() { 1.0 } else { 0.0 };
    f[33] = if text.contains('?') { 1.0 } else { 0.0 };
    f[34] = if text.contains('!') { 1.0 } else { 0.0 };
    f[35] = if text.chars().any(|c| c.is_ascii_digit()) {
        1.0
    } else {
        0.0
    };
    f[36] = (1.0 + n_words as f32).ln() / 4.0;
    f[37] = if hits == 0 { 1.0 } else { 0.0 };
    f[38] = compound.abs();
    if let Some(i) = contrast {
        let tail: Vec<&str> = toks[i + 1..]
            .iter()
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| t.text.as_str())
            .collect();
        if !tail.is_empty() {
            f[39] = vader_compound(&tail.join(" "));
        }
    }
    f[40] = if toks
        .iter()
        .any(|t| matches!(t.text.as_str(), "i" | "me" | "my" | "we" | "our"))
    {
        1.0
    } else {
        0.0
    };
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negation_and_chinese() {
        let good = lexicon_features("this is good");
        let not_good = lexicon_features("this is not good");
        assert!(good[0] > 0.3 && not_good[0] < 0.0);
        assert!(not_good[14] > 0.0, "negated positive counted");
        assert_eq!(good[14], 0.0);
        assert_eq!(lexicon_features("很好"), [0.0; N_LEXICON_FEATURES]);
    }

    #[test]
    fn neutral_cues() {
        let q = lexicon_features("does it play dvd audio without video?");
        assert_eq!(q[33], 1.0);
        let fact = lexicon_features("repost from january 13, 2004 with a title");
        assert_eq!((fact[35], fact[37]), (1.0, 1.0), "digits, no lexicon word");
        assert_eq!(fact[38], 0.0);
        let opinion = lexicon_features("I love it!");
        assert_eq!((opinion[34], opinion[37], opinion[40]), (1.0, 0.0, 1.0));
    }

    #[test]
    fn contrast_clause_is_scored_alone() {
        let f = lexicon_features("the screen is great, but the battery is terrible");
        assert_eq!(f[16], 1.0);
        assert!(f[39] < -0.3, "tail clause {}", f[39]);
        assert_eq!(lexicon_features("the screen is great")[39], 0.0);
    }
}
