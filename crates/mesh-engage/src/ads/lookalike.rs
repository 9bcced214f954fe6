//! Lookalike audiences: rank candidates by similarity to seed users in standardized
//! feature space.

use serde::{Deserialize, Serialize};

use crate::error::{finite, EngageError, Result};

/// How candidates are compared with the seed users, in standardized feature space.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Similarity {
    /// Cosine similarity to the seed centroid: one pass, good when the seed is one tight
    /// group.
    Centroid,
    /// Minus the mean Euclidean distance to the `k` nearest seeds: handles seeds that form
    /// several clusters, at `O(seeds)` per candidate.
    Knn {
        /// Neighbours averaged.
        k: usize,
    },
}

/// A fitted lookalike scorer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lookalike {
    /// Population means used to standardize.
    pub means: Vec<f64>,
    /// Population standard deviations used to standardize.
    pub sds: Vec<f64>,
    /// Standardized seed vectors.
    pub seeds: Vec<Vec<f64>>,
    /// Mean of the standardized seeds.
    pub centroid: Vec<f64>,
    /// Scoring method.
    pub similarity: Similarity,
}

fn check_rows(what: &'static str, rows: &[Vec<f64>], dim: Option<usize>) -> Result<usize> {
    let first = rows.first().ok_or(EngageError::NotEnoughData {
        what,
        needed: 1,
        got: 0,
    })?;
    let d = dim.unwrap_or(first.len());
    for r in rows {
        if r.len() != d {
            return Err(EngageError::DimensionMismatch {
                what,
                expected: d,
                got: r.len(),
            });
        }
        for x in r {
            finite(what, *x)?;
        }
    }
    Ok(d)
}

impl Lookalike {
    /// Fits on `seeds` (e.g. a segment's best customers), standardizing every feature by
    /// the `population` mean and s.d. so that spend in currency and visit counts weigh the
    /// same.
    pub fn fit(
        seeds: &[Vec<f64>],
        population: &[Vec<f64>],
        similarity: Similarity,
    ) -> Result<Self> {
        let d = check_rows("lookalike population", population, None)?;
        check_rows("lookalike seeds", seeds, Some(d))?;
        if let Similarity::Knn { k } = similarity {
            if k == 0 {
                return Err(EngageError::NotEnoughData {
                    what: "lookalike k",
                    needed: 1,
                    got: 0,
                });
            }
        }
        let n = population.len() as f64;
        let means: Vec<f64> = (0..d)
            .map(|j| population.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let sds: Vec<f64> = (0..d)
            .map(|j| {
                let v = population
                    .iter()
                    .map(|r| (r[j] - means[j]).powi(2))
                    .sum::<f64>()
                    / n;
                // A constant feature carries no information; scale 1 keeps it harmless.
                if v > 0.0 && v.is_finite() {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let mut me = Self {
            means,
            sds,
            seeds: vec![],
            centroid: vec![0.0; d],
            similarity,
        };
        me.seeds = seeds.iter().map(|s| me.standardize(s)).collect();
        for s in &me.seeds {
            for (c, x) in me.centroid.iter_mut().zip(s) {
                *c += x / seeds.len() as f64;
            }
        }
        Ok(me)
    }

    fn standardize(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(self.means.iter().zip(&self.sds))
            .map(|(v, (m, s))| (v - m) / s)
            .collect()
    }

    /// Similarity of one candidate to the seeds; higher is more alike.
    pub fn score(&self, candidate: &[f64]) -> Result<f64> {
        if candidate.len() != self.means.len() {
            return Err(EngageError::DimensionMismatch {
                what: "lookalike candidate",
                expected: self.means.len(),
                got: candidate.len(),
            });
        }
        let z = self.standardize(candidate);
        Ok(match self.similarity {
            Similarity::Centroid => {
                let dot: f64 = z.iter().zip(&self.centroid).map(|(a, b)| a * b).sum();
                let nz = z.iter().map(|a| a * a).sum::<f64>().sqrt();
                let nc = self.centroid.iter().map(|a| a * a).sum::<f64>().sqrt();
                if nz > 0.0 && nc > 0.0 {
                    dot / (nz * nc)
                } else {
                    0.0
                }
            }
            Similarity::Knn { k } => {
                let mut d: Vec<f64> = self
                    .seeds
                    .iter()
                    .map(|s| {
                        s.iter()
                            .zip(&z)
                            .map(|(a, b)| (a - b).powi(2))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .collect();
                let k = k.min(d.len());
                d.select_nth_unstable_by(k - 1, f64::total_cmp);
                -d[..k].iter().sum::<f64>() / k as f64
            }
        })
    }

    /// The `top` most similar candidates as `(index, score)`, best first.
    pub fn rank(&self, candidates: &[Vec<f64>], top: usize) -> Result<Vec<(usize, f64)>> {
        let mut scored = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| Ok((i, self.score(c)?)))
            .collect::<Result<Vec<_>>>()?;
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(top);
        Ok(scored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::AudienceWorld;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn lookalike_finds_the_seed_segment() {
        let world = AudienceWorld::generate(1, 4, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let seeds: Vec<Vec<f64>> = world
            .sample(2000, &mut rng)
            .into_iter()
            .filter(|(s, _)| *s == 0)
            .map(|(_, x)| x)
            .take(100)
            .collect();
        let cands = world.sample(2000, &mut rng);
        let rows: Vec<Vec<f64>> = cands.iter().map(|c| c.1.clone()).collect();
        let positives = cands.iter().filter(|c| c.0 == 0).count();
        for sim in [Similarity::Centroid, Similarity::Knn { k: 10 }] {
            let la = Lookalike::fit(&seeds, &rows, sim).unwrap();
            let top = la.rank(&rows, positives).unwrap();
            let hits = top.iter().filter(|(i, _)| cands[*i].0 == 0).count();
            let precision = hits as f64 / positives as f64;
            assert!(precision > 0.6, "{sim:?} precision {precision}");
        }
        assert!(Lookalike::fit(&[], &rows, Similarity::Centroid).is_err());
        assert!(Lookalike::fit(&[vec![1.0]], &rows, Similarity::Centroid).is_err());
    }
}
