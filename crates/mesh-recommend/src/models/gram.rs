//! The item-item co-occurrence (Gram) matrix `XᵀX` of a binary user-item matrix.

use crate::data::UserItems;

/// Dense row-major `n_items × n_items` matrix of co-occurrence counts; the diagonal holds
/// each item's user count. Dense on purpose: item-kNN and EASE^R need all of it, and at
/// catalog sizes where that fits (≲ 20k items) a dense array is the fastest layout.
pub fn gram(train: &UserItems, n_items: usize) -> Vec<f64> {
    let mut g = vec![0f64; n_items * n_items];
    for items in train {
        for &a in items {
            let row = &mut g[a as usize * n_items..(a as usize + 1) * n_items];
            for &b in items {
                row[b as usize] += 1.0;
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_pairs_and_diagonal() {
        let g = super::gram(&vec![vec![0, 1], vec![1, 2], vec![0, 1, 2]], 3);
        assert_eq!(g, vec![2.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 2.0]);
    }
}
