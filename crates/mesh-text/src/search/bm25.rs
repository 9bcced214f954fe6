//! An in-memory BM25 index over weighted text fields, with edit-distance expansion of
//! unknown Latin query terms.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::tokenize::{is_han, search_terms};

/// BM25 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
    /// Score multiplier for a term matched through a spelling correction.
    pub fuzzy_penalty: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params {
            k1: 1.2,
            b: 0.75,
            fuzzy_penalty: 0.7,
        }
    }
}

/// A query term replaced by a close vocabulary term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub from: String,
    pub to: String,
    pub distance: usize,
}

/// BM25 over documents made of `(text, boost)` fields; a field's terms count `boost` times.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bm25Index {
    params: Bm25Params,
    postings: HashMap<String, Vec<(u32, f32)>>,
    doc_len: Vec<f32>,
    avg_len: f32,
}

impl Bm25Index {
    pub fn new(params: Bm25Params) -> Self {
        Bm25Index {
            params,
            ..Default::default()
        }
    }

    /// Adds a document; returns its id (ids are dense, in insertion order).
    pub fn add(&mut self, fields: &[(&str, f32)]) -> u32 {
        let id = self.doc_len.len() as u32;
        let mut tf: HashMap<String, f32> = HashMap::new();
        let mut len = 0.0;
        for (text, boost) in fields {
            for t in search_terms(text) {
                *tf.entry(t).or_insert(0.0) += boost;
                len += boost;
            }
        }
        for (t, f) in tf {
            self.postings.entry(t).or_default().push((id, f));
        }
        self.doc_len.push(len);
        let n = self.doc_len.len() as f32;
        self.avg_len += (len - self.avg_len) / n;
        id
    }

    pub fn len(&self) -> usize {
        self.doc_len.len()
    }

    pub fn is_empty(&self) -> bool {
        self.doc_len.is_empty()
    }

    fn idf(&self, df: usize) -> f32 {
        let n = self.doc_len.len() as f32;
        (1.0 + (n - df as f32 + 0.5) / (df as f32 + 0.5)).ln()
    }

    /// Closest vocabulary term within edit distance 1 (terms ≤ 5 chars) or 2 (longer);
    /// ties go to the more frequent term. Only for Latin words: Han terms are not corrected.
    pub fn correct(&self, term: &str) -> Option<Correction> {
        let n = term.chars().count();
        if n < 3 || term.chars().any(is_han) || term.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let max = if n <= 5 { 1 } else { 2 };
        let mut best: Option<(usize, usize, &String)> = None;
        for (v, post) in &self.postings {
            let vn = v.chars().count();
            if vn.abs_diff(n) > max || v.chars().any(is_han) {
                continue;
            }
            if let Some(d) = bounded_edit_distance(term, v, max) {
                let better = match best {
                    None => true,
                    Some((bd, bdf, _)) => d < bd || (d == bd && post.len() > bdf),
                };
                if better {
                    best = Some((d, post.len(), v));
                }
            }
        }
        best.map(|(d, _, v)| Correction {
            from: term.to_string(),
            to: v.clone(),
            distance: d,
        })
    }

    /// Scores all matching documents for `query`; returns `(doc id, score)` unsorted and the
    /// spelling corrections applied.
    pub fn score(&self, query: &str) -> (HashMap<u32, f32>, Vec<Correction>) {
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let mut corrections = Vec::new();
        let mut terms = search_terms(query);
        terms.sort();
        terms.dedup();
        for t in terms {
            let (post, weight) = match self.postings.get(&t) {
                Some(p) => (p, 1.0),
                None => match self.correct(&t) {
                    Some(c) => {
                        let p = &self.postings[&c.to];
                        corrections.push(c);
                        (p, self.params.fuzzy_penalty)
                    }
                    None => continue,
                },
            };
            let idf = self.idf(post.len()) * weight;
            let (k1, b) = (self.params.k1, self.params.b);
            for &(d, tf) in post {
                let norm = k1 * (1.0 - b + b * self.doc_len[d as usize] / self.avg_len.max(1e-6));
                *scores.entry(d).or_insert(0.0) += idf * tf * (k1 + 1.0) / (tf + norm);
            }
        }
        (scores, corrections)
    }
}

/// Optimal-string-alignment distance if it is ≤ `max`, else `None`.
pub fn bounded_edit_distance(a: &str, b: &str, max: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for (j, v) in d.iter_mut().take(w).enumerate() {
        *v = j;
    }
    for i in 1..=a.len() {
        d[i * w] = i;
        let mut row_min = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return None;
        }
    }
    let v = d[a.len() * w + b.len()];
    (v <= max).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(bounded_edit_distance("phone", "phone", 2), Some(0));
        assert_eq!(bounded_edit_distance("phnoe", "phone", 2), Some(1));
        assert_eq!(bounded_edit_distance("laptpo", "laptop", 1), Some(1));
        assert_eq!(bounded_edit_distance("kitten", "sitting", 2), None);
        assert_eq!(bounded_edit_distance("耳机", "耳麦", 1), Some(1));
    }

    #[test]
    fn ranks_and_corrects() {
        let mut ix = Bm25Index::new(Bm25Params::default());
        ix.add(&[("wireless headphones", 2.0), ("bass and bluetooth", 1.0)]);
        ix.add(&[("frying pan", 2.0), ("non stick", 1.0)]);
        ix.add(&[("蓝牙耳机 无线", 2.0)]);
        let (s, c) = ix.score("headphnes");
        assert_eq!(c[0].to, "headphones");
        assert!(s.contains_key(&0) && !s.contains_key(&1));
        let (s, _) = ix.score("耳机");
        assert!(s.contains_key(&2), "{s:?}");
        let (s, c) = ix.score("zzzzzz");
        assert!(s.is_empty() && c.is_empty());
    }
}
