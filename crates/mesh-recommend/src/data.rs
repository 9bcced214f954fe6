//! Interaction data for offline training and evaluation: RecBole `.inter` loading, dense
//! user/item indices, and the two seeded per-user random split protocols.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Implicit-feedback data with dense indices: `user_items[u]` lists the item indices of user
/// `u` (each once, in file order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// External user ids, indexed by dense user index.
    pub user_ids: Vec<String>,
    /// External item ids, indexed by dense item index.
    pub item_ids: Vec<String>,
    /// Items of each user.
    pub user_items: Vec<Vec<u32>>,
}

impl Dataset {
    /// Builds a dataset from `(user, item)` id pairs; repeated pairs count once.
    pub fn from_pairs<U: AsRef<str>, I: AsRef<str>>(
        pairs: impl IntoIterator<Item = (U, I)>,
    ) -> Self {
        let mut uidx: HashMap<String, u32> = HashMap::new();
        let mut iidx: HashMap<String, u32> = HashMap::new();
        let (mut user_ids, mut item_ids) = (Vec::new(), Vec::new());
        let mut user_items: Vec<Vec<u32>> = Vec::new();
        for (u, i) in pairs {
            let u = *uidx.entry(u.as_ref().to_string()).or_insert_with(|| {
                user_ids.push(u.as_ref().to_string());
                user_items.push(Vec::new());
                (user_ids.len() - 1) as u32
            });
            let i = *iidx.entry(i.as_ref().to_string()).or_insert_with(|| {
                item_ids.push(i.as_ref().to_string());
                (item_ids.len() - 1) as u32
            });
            let list = &mut user_items[u as usize];
            if !list.contains(&i) {
                list.push(i);
            }
        }
        Self {
            user_ids,
            item_ids,
            user_items,
        }
    }

    /// Reads a RecBole atomic `.inter` file (tab separated, typed header such as
    /// `user_id:token  item_id:token  rating:float  timestamp:float`). Every row is an
    /// implicit positive.
    pub fn load_inter(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parse_err = |line: usize, message: String| Error::Parse {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut lines = text.lines();
        let header = lines
            .next()
            .ok_or_else(|| parse_err(1, "empty file, expected a header line".into()))?;
        let cols: Vec<&str> = header
            .split('\t')
            .map(|c| c.split(':').next().unwrap_or(c))
            .collect();
        let find = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .ok_or_else(|| parse_err(1, format!("header {header:?} has no `{name}` column")))
        };
        let (uc, ic) = (find("user_id")?, find("item_id")?);
        let mut pairs = Vec::new();
        for (n, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() <= uc.max(ic) {
                return Err(parse_err(
                    n + 2,
                    format!(
                        "expected {} tab-separated fields, found {}",
                        cols.len(),
                        f.len()
                    ),
                ));
            }
            pairs.push((f[uc], f[ic]));
        }
        if pairs.is_empty() {
            return Err(parse_err(2, "no interaction rows".into()));
        }
        Ok(Self::from_pairs(pairs))
    }

    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }
    /// Number of items.
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
    /// Number of (distinct) interactions.
    pub fn n_interactions(&self) -> usize {
        self.user_items.iter().map(Vec::len).sum()
    }
}

/// Per-user item lists of one split (indexed like [`Dataset::user_items`]).
pub type UserItems = Vec<Vec<u32>>;

/// A train / valid / test split (valid may be empty for every user).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Training items per user.
    pub train: UserItems,
    /// Validation items per user.
    pub valid: UserItems,
    /// Test items per user.
    pub test: UserItems,
}

/// Python's `round` (half to even), used by Microsoft Recommenders' split.
fn round_half_even(x: f64) -> usize {
    let r = x.round();
    let out = if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - 1.0
    } else {
        r
    };
    out.max(0.0) as usize
}

fn shuffled(items: &[u32], rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut v = items.to_vec();
    v.shuffle(rng);
    v
}

/// RecBole's `RS` split with ratios 0.8/0.1/0.1 grouped by user: each user's interactions are
/// shuffled (seeded) and cut as `valid = test = int(0.1 n)`, `train = n - valid - test`
/// (RecBole's `_calcu_split_ids`).
pub fn split_recbole(user_items: &UserItems, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for items in user_items {
        let v = shuffled(items, &mut rng);
        let n = v.len();
        let mut cnt = [0usize, (0.1 * n as f64) as usize, (0.1 * n as f64) as usize];
        cnt[0] = n - cnt[1] - cnt[2];
        // RecBole gives a sliver of a ratio one interaction when train keeps more than one.
        for k in [2, 1] {
            if cnt[0] > 1 && cnt[k] == 0 && 0.1 * n as f64 > 0.0 {
                cnt[k] += 1;
                cnt[0] -= 1;
            }
        }
        train.push(v[..cnt[0]].to_vec());
        valid.push(v[cnt[0]..cnt[0] + cnt[1]].to_vec());
        test.push(v[cnt[0] + cnt[1]..].to_vec());
    }
    Split { train, valid, test }
}

/// Microsoft Recommenders' `python_stratified_split(ratio=0.75)`: each user's interactions are
/// shuffled (seeded) and the first `round(0.75 n)` (half to even) go to train, the rest to test.
pub fn split_stratified(user_items: &UserItems, ratio: f64, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for items in user_items {
        let v = shuffled(items, &mut rng);
        let cut = round_half_even(ratio * v.len() as f64).min(v.len());
        train.push(v[..cut].to_vec());
        test.push(v[cut..].to_vec());
    }
    let valid = vec![Vec::new(); user_items.len()];
    Split { train, valid, test }
}

/// Where the MovieLens file lives: `MESH_ML100K_DIR`, else `<workspace>/target/ml-100k`.
pub fn default_ml100k_dir() -> PathBuf {
    std::env::var_os("MESH_ML100K_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ml-100k"))
}

/// The shared data directory: `MESH_SHARED_DATA`, else `<workspace>/../shared/data`.
pub fn shared_data_dir() -> PathBuf {
    std::env::var_os("MESH_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> UserItems {
        vec![(0..20).collect(), (0..7).collect(), (0..22).collect()]
    }

    #[test]
    fn recbole_split_counts_match_recbole() {
        let s = split_recbole(&toy(), 1);
        assert_eq!(
            [s.train[0].len(), s.valid[0].len(), s.test[0].len()],
            [16, 2, 2]
        );
        // n = 7: int(0.7) = 0, so RecBole moves one interaction each to test and valid.
        assert_eq!(
            [s.train[1].len(), s.valid[1].len(), s.test[1].len()],
            [5, 1, 1]
        );
        let mut all: Vec<u32> = s.train[2]
            .iter()
            .chain(&s.valid[2])
            .chain(&s.test[2])
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, (0..22).collect::<Vec<_>>());
    }

    #[test]
    fn stratified_split_rounds_half_to_even_and_is_seeded() {
        let s = split_stratified(&toy(), 0.75, 7);
        assert_eq!(s.train[0].len(), 15);
        assert_eq!(s.train[1].len(), 5); // 5.25
        assert_eq!(s.train[2].len(), 16); // 16.5 -> 16 like Python
        assert_eq!(s, split_stratified(&toy(), 0.75, 7));
        assert_ne!(s.train, split_stratified(&toy(), 0.75, 8).train);
    }

    #[test]
    fn from_pairs_dedups() {
        let d = Dataset::from_pairs([("a", "x"), ("a", "x"), ("b", "y"), ("a", "y")]);
        assert_eq!(d.n_users(), 2);
        assert_eq!(d.n_items(), 2);
        assert_eq!(d.user_items, vec![vec![0, 1], vec![1]]);
    }
}
