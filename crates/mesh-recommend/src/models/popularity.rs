//! Most-popular baseline: an item's score is its number of training users.

use serde::{Deserialize, Serialize};

use crate::data::UserItems;

/// Item counts from the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Popularity {
    /// Training users per item.
    pub counts: Vec<f32>,
}

impl Popularity {
    /// Counts item occurrences.
    pub fn fit(train: &UserItems, n_items: usize) -> Self {
        let mut counts = vec![0f32; n_items];
        for items in train {
            for &i in items {
                counts[i as usize] += 1.0;
            }
        }
        Self { counts }
    }

    /// Writes scores (independent of the user).
    pub fn score(&self, out: &mut [f32]) {
        out.copy_from_slice(&self.counts);
    }
}
