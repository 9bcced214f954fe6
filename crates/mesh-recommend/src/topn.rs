//! Top-n selection with a bounded min-heap: `O(m log n)` over `m` candidates.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Heap entry ordered so that the *worst* kept candidate is at the top of a max-heap:
/// lower score is "greater", and on equal scores the later key is "greater" (so earlier
/// keys win ties and results are deterministic).
struct Worst<K> {
    score: f64,
    key: K,
}

impl<K: Ord> PartialEq for Worst<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<K: Ord> Eq for Worst<K> {}
impl<K: Ord> PartialOrd for Worst<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord> Ord for Worst<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.key.cmp(&other.key))
    }
}

/// The `n` best `(key, score)` pairs, best first; ties go to the smaller key.
/// NaN scores are skipped.
pub fn top_n<K: Ord, I: IntoIterator<Item = (K, f64)>>(items: I, n: usize) -> Vec<(K, f64)> {
    if n == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Worst<K>> = BinaryHeap::with_capacity(n + 1);
    for (key, score) in items {
        if score.is_nan() {
            continue;
        }
        let cand = Worst { score, key };
        if heap.len() < n {
            heap.push(cand);
        } else if let Some(top) = heap.peek() {
            // `cand < top` means cand is better than the worst kept one.
            if cand < *top {
                heap.pop();
                heap.push(cand);
            }
        }
    }
    let mut out: Vec<(K, f64)> = heap.into_iter().map(|w| (w.key, w.score)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The `n` best indices of a dense score vector, skipping those for which `excluded` is true.
pub fn top_n_dense(
    scores: &[f32],
    n: usize,
    excluded: impl Fn(usize) -> bool,
) -> Vec<(usize, f64)> {
    top_n(
        scores
            .iter()
            .enumerate()
            .filter(|(i, _)| !excluded(*i))
            .map(|(i, &s)| (i, f64::from(s))),
        n,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_best_with_deterministic_ties() {
        let got = top_n(
            vec![(3, 1.0), (1, 5.0), (2, 5.0), (4, f64::NAN), (0, 2.0)],
            3,
        );
        assert_eq!(got, vec![(1, 5.0), (2, 5.0), (0, 2.0)]);
    }

    #[test]
    fn dense_respects_exclusion() {
        let got = top_n_dense(&[0.9, 0.8, 0.7, 0.1], 2, |i| i == 0);
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    proptest! {
        #[test]
        fn matches_full_sort(scores in proptest::collection::vec(-100i32..100, 0..60), n in 0usize..20) {
            let items: Vec<(usize, f64)> = scores.iter().enumerate().map(|(i, &s)| (i, f64::from(s))).collect();
            let mut sorted = items.clone();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            sorted.truncate(n);
            prop_assert_eq!(top_n(items, n), sorted);
        }
    }
}
