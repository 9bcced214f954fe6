//! One regression tree on binned features, grown leaf-wise (best gain first) from gradient
//! and hessian histograms, with the subtraction trick: only the smaller child's histogram is
//! built from its rows, the larger one is the parent's minus it.
//!
//! A split is a set of bins going left (a 256-bit set), for numeric and categorical columns
//! alike: a numeric split `bin <= b` is the bins `0..=b`, plus [`MISSING_BIN`] when missing
//! values learned to go left; a categorical split is the categories whose gradient ratio sorts
//! before the cut. Prediction is one bit test per node.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::bins::{BinMapper, Binned, MISSING_BIN};
use super::GbdtParams;

const NBINS: usize = 256;
/// Added to the hessian when ordering categories by gradient ratio.
const CAT_SMOOTH: f64 = 10.0;
/// Smallest hessian sum a child may have.
const MIN_CHILD_HESSIAN: f64 = 1e-3;

/// Sums of one histogram bin or node.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sums {
    g: f64,
    h: f64,
    n: u32,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }
    fn minus(&self, o: &Sums) -> Sums {
        Sums {
            g: self.g - o.g,
            h: self.h - o.h,
            n: self.n - o.n,
        }
    }
}

/// Bins going left: bit `b` set means bin `b` goes left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinSet(pub [u64; 4]);

impl BinSet {
    fn insert(&mut self, b: usize) {
        self.0[b >> 6] |= 1 << (b & 63);
    }
    /// Whether bin `b` is in the set.
    #[inline]
    pub fn contains(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] >> (b & 63) & 1 == 1
    }
}

/// A node: a split (`left`, `right` children) or a leaf (`value`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    /// Split feature (unused in a leaf).
    pub feature: u32,
    /// Bins going left.
    pub left_bins: BinSet,
    /// Left child, 0 in a leaf.
    pub left: u32,
    /// Right child, 0 in a leaf.
    pub right: u32,
    /// Leaf output (raw score, learning rate applied).
    pub value: f64,
    /// Gain of the split (0 in a leaf).
    pub gain: f64,
}

/// A fitted tree; node 0 is the root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tree {
    /// Nodes.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Output for row `i` of `x`.
    #[inline]
    pub fn predict(&self, x: &Binned, i: usize) -> f64 {
        let mut k = 0;
        loop {
            let n = &self.nodes[k];
            if n.left == 0 {
                return n.value;
            }
            k = if n.left_bins.contains(x.col(n.feature as usize)[i]) {
                n.left
            } else {
                n.right
            } as usize;
        }
    }

    /// Output for one row given as its bins, feature by feature.
    #[inline]
    pub fn predict_bins(&self, bins: &[u8]) -> f64 {
        let mut k = 0;
        loop {
            let n = &self.nodes[k];
            if n.left == 0 {
                return n.value;
            }
            k = if n.left_bins.contains(bins[n.feature as usize]) {
                n.left
            } else {
                n.right
            } as usize;
        }
    }

    /// Leaves.
    pub fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.left == 0).count()
    }
}

#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    left_bins: BinSet,
    left: Sums,
    right: Sums,
}

/// A leaf that may still be split.
struct Open {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    hist: Vec<Sums>,
    split: Option<Split>,
}

/// What grows a tree: the binned fit rows and what is constant over a boosting run.
pub(crate) struct Grower<'a> {
    pub x: &'a Binned,
    pub mappers: &'a [BinMapper],
    /// Features that can split at all (more than one bin seen in the fit rows).
    pub active: Vec<bool>,
    pub params: &'a GbdtParams,
}

fn leaf_weight(s: &Sums, l2: f64) -> f64 {
    -s.g / (s.h + l2)
}

fn score(s: &Sums, l2: f64) -> f64 {
    s.g * s.g / (s.h + l2)
}

impl Grower<'_> {
    fn build_hist(&self, rows: &[u32], g: &[f32], h: &[f32]) -> Vec<Sums> {
        // gradients in node order, read once for every feature
        let og: Vec<(f32, f32)> = rows
            .iter()
            .map(|r| (g[*r as usize], h[*r as usize]))
            .collect();
        let mut hist = vec![Sums::default(); self.active.len() * NBINS];
        hist.par_chunks_mut(NBINS)
            .enumerate()
            .filter(|(f, _)| self.active[*f])
            .for_each(|(f, out)| {
                let out: &mut [Sums; NBINS] = out.try_into().expect("NBINS bins");
                let col = self.x.col(f);
                for (r, (gi, hi)) in rows.iter().zip(&og) {
                    let s = &mut out[col[*r as usize] as usize];
                    s.g += f64::from(*gi);
                    s.h += f64::from(*hi);
                    s.n += 1;
                }
            });
        hist
    }

    fn feasible(&self, l: &Sums, r: &Sums) -> bool {
        let m = self.params.min_samples_leaf as u32;
        l.n >= m && r.n >= m && l.h >= MIN_CHILD_HESSIAN && r.h >= MIN_CHILD_HESSIAN
    }

    fn best_numeric(&self, f: usize, hist: &[Sums], total: &Sums) -> Option<Split> {
        let l2 = self.params.l2;
        let nb = self.mappers[f].value_bins();
        let miss = hist[MISSING_BIN as usize];
        let parent = score(total, l2);
        let mut best: Option<Split> = None;
        let mut consider = |left: Sums, last_bin: usize, missing_left: bool| {
            let right = total.minus(&left);
            if !self.feasible(&left, &right) {
                return;
            }
            let gain = score(&left, l2) + score(&right, l2) - parent;
            if best.is_none_or(|b| gain > b.gain) {
                let mut set = BinSet::default();
                for b in 0..=last_bin {
                    set.insert(b);
                }
                if missing_left {
                    set.insert(MISSING_BIN as usize);
                }
                best = Some(Split {
                    gain,
                    feature: f,
                    left_bins: set,
                    left,
                    right,
                });
            }
        };
        let mut acc = Sums::default();
        for (b, s) in hist.iter().enumerate().take(nb) {
            acc.add(s);
            if b + 1 < nb {
                consider(acc, b, false);
                if miss.n > 0 {
                    let mut with_missing = acc;
                    with_missing.add(&miss);
                    consider(with_missing, b, true);
                }
            } else if miss.n > 0 {
                // every value left, missing right
                consider(acc, b, false);
            }
        }
        // with no missing value in this node, unseen missing values follow the larger child
        best.map(|mut s| {
            if miss.n == 0 && s.left.n > s.right.n {
                s.left_bins.insert(MISSING_BIN as usize);
            }
            s
        })
    }

    fn best_categorical(&self, f: usize, hist: &[Sums], total: &Sums) -> Option<Split> {
        // category sets fit noise easily: more L2 and enough rows per category (as LightGBM's
        // cat_l2 and min_data_per_group); categories with fewer rows in the node go right
        let l2 = self.params.l2 + self.params.cat_l2;
        let nb = self.mappers[f].value_bins();
        let support = self.params.min_category_rows as u32;
        let mut cats: Vec<(usize, f64)> = (0..nb)
            .chain(std::iter::once(MISSING_BIN as usize))
            .filter(|b| hist[*b].n >= support)
            .map(|b| (b, hist[b].g / (hist[b].h + CAT_SMOOTH)))
            .collect();
        if cats.len() < 2 {
            return None;
        }
        cats.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let parent = score(total, l2);
        let max_cut = cats.len().div_ceil(2).min(self.params.max_cat_set);
        let mut best: Option<Split> = None;
        for forward in [true, false] {
            let mut acc = Sums::default();
            let mut set = BinSet::default();
            for k in 0..max_cut.min(cats.len() - 1) {
                let b = if forward {
                    cats[k].0
                } else {
                    cats[cats.len() - 1 - k].0
                };
                acc.add(&hist[b]);
                set.insert(b);
                let right = total.minus(&acc);
                if !self.feasible(&acc, &right) {
                    continue;
                }
                let gain = score(&acc, l2) + score(&right, l2) - parent;
                if best.is_none_or(|s| gain > s.gain) {
                    best = Some(Split {
                        gain,
                        feature: f,
                        left_bins: set,
                        left: acc,
                        right,
                    });
                }
            }
        }
        best
    }

    fn find_split(&self, hist: &[Sums], total: &Sums, depth: usize) -> Option<Split> {
        let p = self.params;
        if (p.max_depth > 0 && depth >= p.max_depth) || (total.n as usize) < 2 * p.min_samples_leaf
        {
            return None;
        }
        (0..self.active.len())
            .into_par_iter()
            .filter(|f| self.active[*f])
            .filter_map(|f| {
                let h = &hist[f * NBINS..(f + 1) * NBINS];
                if self.mappers[f].is_categorical() {
                    self.best_categorical(f, h, total)
                } else {
                    self.best_numeric(f, h, total)
                }
            })
            .filter(|s| s.gain > p.min_gain)
            // highest gain, then lowest feature: the same tree on any thread count
            .reduce_with(|a, b| {
                if b.gain > a.gain || (b.gain == a.gain && b.feature < a.feature) {
                    b
                } else {
                    a
                }
            })
    }

    /// Grow one tree on `rows` (fit-row indices; reordered in place) and add its leaf
    /// outputs to `raw` for those rows.
    pub fn grow(&self, rows: &mut [u32], g: &[f32], h: &[f32], raw: &mut [f64]) -> Tree {
        let p = self.params;
        let mut sums = Sums::default();
        for r in rows.iter() {
            sums.g += f64::from(g[*r as usize]);
            sums.h += f64::from(h[*r as usize]);
        }
        sums.n = rows.len() as u32;
        let mut nodes = vec![Node {
            feature: 0,
            left_bins: BinSet::default(),
            left: 0,
            right: 0,
            value: p.learning_rate * leaf_weight(&sums, p.l2),
            gain: 0.0,
        }];
        let hist = self.build_hist(rows, g, h);
        let split = self.find_split(&hist, &sums, 0);
        let mut open = vec![Open {
            node: 0,
            start: 0,
            end: rows.len(),
            depth: 0,
            hist,
            split,
        }];
        let mut leaves = 1;
        let mut done: Vec<(usize, usize, usize)> = Vec::new(); // (node, start, end)
        let mut scratch: Vec<u32> = Vec::with_capacity(rows.len());
        while leaves < p.max_leaves {
            let Some(k) = open
                .iter()
                .enumerate()
                .filter_map(|(k, o)| o.split.map(|s| (k, s.gain)))
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(k, _)| k)
            else {
                break;
            };
            let parent = open.swap_remove(k);
            let s = parent.split.expect("chosen for its split");
            // stable partition of the node's rows: left first
            let col = self.x.col(s.feature);
            let seg = &mut rows[parent.start..parent.end];
            scratch.clear();
            let mut nl = 0;
            for i in 0..seg.len() {
                let r = seg[i];
                if s.left_bins.contains(col[r as usize]) {
                    seg[nl] = r;
                    nl += 1;
                } else {
                    scratch.push(r);
                }
            }
            seg[nl..].copy_from_slice(&scratch);
            let mid = parent.start + nl;
            let (l_id, r_id) = (nodes.len(), nodes.len() + 1);
            for ss in [&s.left, &s.right] {
                nodes.push(Node {
                    feature: 0,
                    left_bins: BinSet::default(),
                    left: 0,
                    right: 0,
                    value: p.learning_rate * leaf_weight(ss, p.l2),
                    gain: 0.0,
                });
            }
            let pn = &mut nodes[parent.node];
            pn.feature = s.feature as u32;
            pn.left_bins = s.left_bins;
            pn.left = l_id as u32;
            pn.right = r_id as u32;
            pn.gain = s.gain;
            leaves += 1;
            let depth = parent.depth + 1;
            let can_split = |n: u32| {
                (n as usize) >= 2 * p.min_samples_leaf && (p.max_depth == 0 || depth < p.max_depth)
            };
            let (ls, rs) = (s.left, s.right);
            let ranges = [(l_id, parent.start, mid, ls), (r_id, mid, parent.end, rs)];
            if !can_split(ls.n) && !can_split(rs.n) {
                for (id, a, b, _) in ranges {
                    done.push((id, a, b));
                }
                continue;
            }
            // smaller child from its rows, larger one by subtraction
            let small_left = ls.n <= rs.n;
            let (sa, sb) = if small_left {
                (parent.start, mid)
            } else {
                (mid, parent.end)
            };
            let small = self.build_hist(&rows[sa..sb], g, h);
            let mut large = parent.hist;
            large
                .par_chunks_mut(NBINS)
                .zip(small.par_chunks(NBINS))
                .for_each(|(l, s)| {
                    for (a, b) in l.iter_mut().zip(s) {
                        *a = a.minus(b);
                    }
                });
            let (lh, rh) = if small_left {
                (small, large)
            } else {
                (large, small)
            };
            for ((id, a, b, ss), hist) in ranges.into_iter().zip([lh, rh]) {
                let split = if can_split(ss.n) {
                    self.find_split(&hist, &ss, depth)
                } else {
                    None
                };
                if split.is_some() {
                    open.push(Open {
                        node: id,
                        start: a,
                        end: b,
                        depth,
                        hist,
                        split,
                    });
                } else {
                    done.push((id, a, b));
                }
            }
        }
        for o in open {
            done.push((o.node, o.start, o.end));
        }
        for (id, a, b) in done {
            let v = nodes[id].value;
            for r in &rows[a..b] {
                raw[*r as usize] += v;
            }
        }
        Tree { nodes }
    }
}
