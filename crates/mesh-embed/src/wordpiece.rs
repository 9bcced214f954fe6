//! Uncased BERT WordPiece, as the `tokenizer.json` of (all-)MiniLM / bert-base-uncased
//! describes it: BertNormalizer (clean text, pad CJK chars, strip accents, lowercase),
//! BertPreTokenizer (split on whitespace, isolate punctuation), greedy longest-match
//! WordPiece with `##` continuations and `[UNK]` for words it cannot cover, then
//! `[CLS] … [SEP]`.

use std::collections::HashMap;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

const MAX_WORD_CHARS: usize = 100;

/// A WordPiece vocabulary and its special token ids.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32,
            0x00A1..=0x00BF | 0x2010..=0x2027 | 0x2030..=0x205E | 0x3001..=0x3003
            | 0x3008..=0x3011 | 0x3014..=0x301F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20
            | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

fn is_control(c: char) -> bool {
    if c == '\t' || c == '\n' || c == '\r' {
        return false;
    }
    c.is_control() || matches!(c as u32, 0x200B..=0x200F | 0x202A..=0x202E | 0xFEFF)
}

impl WordPiece {
    /// Builds from `vocab.txt` (one token per line, id = line number).
    pub fn from_vocab(vocab_txt: &str) -> Result<Self, String> {
        let vocab: HashMap<String, u32> = vocab_txt
            .lines()
            .enumerate()
            .map(|(i, t)| (t.trim_end_matches('\r').to_string(), i as u32))
            .collect();
        let get = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("vocabulary has no {t}"))
        };
        Ok(WordPiece {
            unk: get("[UNK]")?,
            cls: get("[CLS]")?,
            sep: get("[SEP]")?,
            vocab,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Normalised, pre-tokenized words.
    pub fn words(&self, text: &str) -> Vec<String> {
        let mut norm = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if c == '\0' || c == '\u{FFFD}' || is_control(c) {
                continue;
            }
            if c.is_whitespace() {
                norm.push(' ');
            } else if is_cjk(c) {
                norm.push(' ');
                norm.push(c);
                norm.push(' ');
            } else {
                norm.push(c);
            }
        }
        let folded: String = norm
            .nfd()
            .filter(|&c| !is_combining_mark(c))
            .flat_map(char::to_lowercase)
            .collect();
        let mut words = Vec::new();
        for chunk in folded.split_whitespace() {
            let mut cur = String::new();
            for c in chunk.chars() {
                if is_punct(c) {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                    words.push(c.to_string());
                } else {
                    cur.push(c);
                }
            }
            if !cur.is_empty() {
                words.push(cur);
            }
        }
        words
    }

    fn push_word(&self, word: &str, out: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            out.push(self.unk);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        let mut piece = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while end > start {
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                piece.extend(&chars[start..end]);
                if let Some(&id) = self.vocab.get(piece.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(mark);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }

    /// Token ids `[CLS] pieces… [SEP]`, truncated to `max_len` ids in all (at least 2).
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = vec![self.cls];
        for w in self.words(text) {
            self.push_word(&w, &mut ids);
            if ids.len() >= max_len.max(2) - 1 {
                break;
            }
        }
        ids.truncate(max_len.max(2) - 1);
        ids.push(self.sep);
        ids
    }

    /// The token strings of `ids` (for tests and debugging).
    pub fn tokens(&self, ids: &[u32]) -> Vec<String> {
        let mut rev = vec![String::new(); self.vocab.len()];
        for (t, &i) in &self.vocab {
            if let Some(slot) = rev.get_mut(i as usize) {
                *slot = t.clone();
            }
        }
        ids.iter()
            .map(|&i| rev.get(i as usize).cloned().unwrap_or_default())
            .collect()
    }
}
