//! The recommendation feedback loop: impressions and clicks of recommended items per
//! source and slot, position-debiased click-through per source, and a Beta-Bernoulli
//! Thompson-sampling bandit over the sources that sets the ranking's per-source relevance
//! weights ([`SourceWeights`]).
//!
//! **Model.** A position-based click model: an item of source `s` shown in slot `k` is
//! clicked with probability `e_k · θ_s`, where `e_k` is the examination propensity of the
//! slot (`e` is 1 at its maximum) and `θ_s` the attractiveness of the source.
//! [`FeedbackCounts::estimate`] fits both from the counters by alternating the two
//! closed-form updates (`e_k = C_k / Σ_s I_sk θ_s`, `θ_s = C_s / Σ_k I_sk e_k`), which
//! removes the confounding of "the better source is shown higher". A source's *examined
//! impressions* `Σ_k I_sk e_k` are its impressions weighted by how likely each one was
//! looked at; its posterior is `Beta(α0 + clicks, β0 + examined − clicks)` with a prior of
//! [`PRIOR_STRENGTH`] examined impressions at the tenant's mean debiased CTR, so a source
//! never shown starts at the average rather than at 0.5.
//!
//! **Policy.** Each request draws `θ̃_s` from every learned source's posterior (Thompson
//! sampling) and ranks with relevance weight `θ̃_s / max θ̃` ([`Bandit::sample`]); the
//! deterministic view ([`Bandit::mean_weights`]) uses posterior means. [`Source::Rule`]
//! candidates are business decisions and always keep weight 1.
//!
//! **Attribution.** Every recommended item carries an [`Attribution`]
//! (`<recommendation id>:<source>:<slot>`); a click event that carries it back is counted
//! for that source and slot with no lookup. At most one click counts per impression.
//!
//! [`sim`] measures the loop on users with known per-source click probabilities and a
//! known position bias.
use std::collections::HashMap;

use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use crate::rank::Source;

pub mod sim;

/// The sources the bandit learns weights for ([`Source::Rule`] is not one of them).
pub const LEARNED: [Source; 3] = [Source::Model, Source::Cooccurrence, Source::Popularity];

/// Every source, in reporting order.
pub const ALL: [Source; 4] = [
    Source::Model,
    Source::Cooccurrence,
    Source::Popularity,
    Source::Rule,
];

/// Pseudo examined impressions of the common prior.
pub const PRIOR_STRENGTH: f64 = 10.0;

/// Smallest relevance weight a learned source gets (it is never switched off entirely).
pub const MIN_WEIGHT: f64 = 0.05;

/// Longest recommendation id an [`Attribution`] accepts.
pub const MAX_ID_LEN: usize = 64;

/// Highest slot an [`Attribution`] accepts (answers hold at most 100 items).
pub const MAX_SLOT: u32 = 99;

/// Stable name of a source in counters, labels and attributions.
pub fn source_name(s: Source) -> &'static str {
    match s {
        Source::Model => "model",
        Source::Cooccurrence => "cooccurrence",
        Source::Popularity => "popularity",
        Source::Rule => "rule",
    }
}

/// The source of a [`source_name`].
pub fn parse_source(name: &str) -> Option<Source> {
    ALL.into_iter().find(|s| source_name(*s) == name)
}

/// Relevance weight per source, multiplied into the ranking's relevance feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceWeights {
    /// [`Source::Model`].
    pub model: f64,
    /// [`Source::Cooccurrence`].
    pub cooccurrence: f64,
    /// [`Source::Popularity`].
    pub popularity: f64,
    /// [`Source::Rule`].
    pub rule: f64,
}

impl Default for SourceWeights {
    fn default() -> Self {
        SourceWeights {
            model: 1.0,
            cooccurrence: 1.0,
            popularity: 1.0,
            rule: 1.0,
        }
    }
}

impl SourceWeights {
    /// The weight of `s`.
    pub fn of(&self, s: Source) -> f64 {
        match s {
            Source::Model => self.model,
            Source::Cooccurrence => self.cooccurrence,
            Source::Popularity => self.popularity,
            Source::Rule => self.rule,
        }
    }

    /// Sets the weight of `s`.
    pub fn set(&mut self, s: Source, w: f64) {
        match s {
            Source::Model => self.model = w,
            Source::Cooccurrence => self.cooccurrence = w,
            Source::Popularity => self.popularity = w,
            Source::Rule => self.rule = w,
        }
    }
}

/// Where a clicked item was shown: the answer, its source and its slot (0 = top).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribution {
    /// The answer's recommendation id.
    pub recommendation_id: String,
    /// The item's source.
    pub source: Source,
    /// The item's position in the answer, 0 = top.
    pub slot: u32,
}

impl Attribution {
    /// `<recommendation id>:<source>:<slot>`.
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}",
            self.recommendation_id,
            source_name(self.source),
            self.slot
        )
    }

    /// Parses [`Attribution::encode`]; `None` for anything else (an id that is empty,
    /// longer than [`MAX_ID_LEN`] or holds a `:`, an unknown source, a slot above
    /// [`MAX_SLOT`]).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.rsplitn(3, ':');
        let slot: u32 = parts.next()?.parse().ok()?;
        let source = parse_source(parts.next()?)?;
        let id = parts.next()?;
        if id.is_empty() || id.len() > MAX_ID_LEN || id.contains(':') || slot > MAX_SLOT {
            return None;
        }
        Some(Attribution {
            recommendation_id: id.to_string(),
            source,
            slot,
        })
    }
}

/// Field of one (source, slot) cell in the impression and click hashes: `<source>:<slot>`.
pub fn cell_field(source: Source, slot: u32) -> String {
    format!("{}:{slot}", source_name(source))
}

fn parse_cell(field: &str) -> Option<(Source, u32)> {
    let (s, k) = field.split_once(':')?;
    Some((parse_source(s)?, k.parse().ok()?))
}

/// Impressions and clicks of one (source, slot) cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Times an item of the source was returned in the slot.
    pub impressions: u64,
    /// Clicks attributed to those impressions.
    pub clicks: u64,
}

/// Impressions and clicks per (source, slot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackCounts {
    /// The cells that have any count.
    pub cells: HashMap<(Source, u32), Cell>,
}

impl FeedbackCounts {
    /// From the stored hashes (field [`cell_field`], value a count); unknown fields and
    /// values are skipped, negative values read as 0.
    pub fn from_hashes(
        impressions: &HashMap<String, String>,
        clicks: &HashMap<String, String>,
    ) -> Self {
        let mut out = FeedbackCounts::default();
        let count = |v: &String| v.parse::<i64>().map(|n| n.max(0) as u64).ok();
        for (f, v) in impressions {
            if let (Some(cell), Some(n)) = (parse_cell(f), count(v)) {
                out.cells.entry(cell).or_default().impressions += n;
            }
        }
        for (f, v) in clicks {
            if let (Some(cell), Some(n)) = (parse_cell(f), count(v)) {
                out.cells.entry(cell).or_default().clicks += n;
            }
        }
        out
    }

    /// Adds impressions of one cell.
    pub fn impress(&mut self, source: Source, slot: u32, n: u64) {
        self.cells.entry((source, slot)).or_default().impressions += n;
    }

    /// Adds clicks of one cell.
    pub fn click(&mut self, source: Source, slot: u32, n: u64) {
        self.cells.entry((source, slot)).or_default().clicks += n;
    }

    /// Cells sorted by source (reporting order) then slot.
    pub fn sorted(&self) -> Vec<((Source, u32), Cell)> {
        let mut v: Vec<_> = self.cells.iter().map(|(k, c)| (*k, *c)).collect();
        let order = |s: Source| ALL.iter().position(|x| *x == s).unwrap_or(ALL.len());
        v.sort_by_key(|((s, k), _)| (order(*s), *k));
        v
    }

    /// Totals of one source over all slots.
    pub fn source_total(&self, source: Source) -> Cell {
        self.cells
            .iter()
            .filter(|((s, _), _)| *s == source)
            .fold(Cell::default(), |a, (_, c)| Cell {
                impressions: a.impressions + c.impressions,
                clicks: a.clicks + c.clicks,
            })
    }

    /// Totals of every cell.
    pub fn total(&self) -> Cell {
        self.cells.values().fold(Cell::default(), |a, c| Cell {
            impressions: a.impressions + c.impressions,
            clicks: a.clicks + c.clicks,
        })
    }

    /// Fits the position-based click model (see the module docs).
    pub fn estimate(&self) -> Estimate {
        let slots = self.cells.keys().map(|(_, k)| *k + 1).max().unwrap_or(0) as usize;
        let mut exam = vec![1.0; slots];
        let mut theta: HashMap<Source, f64> = ALL.iter().map(|s| (*s, 0.0)).collect();
        // Clicks per slot and per source do not change across iterations.
        let mut slot_clicks = vec![0.0; slots];
        for ((_, k), c) in &self.cells {
            slot_clicks[*k as usize] += c.clicks as f64;
        }
        let mut source_clicks: HashMap<Source, f64> = HashMap::new();
        for ((s, _), c) in &self.cells {
            *source_clicks.entry(*s).or_insert(0.0) += c.clicks as f64;
        }
        for _ in 0..30 {
            // θ_s = C_s / Σ_k I_sk e_k
            let mut examined: HashMap<Source, f64> = HashMap::new();
            for ((s, k), c) in &self.cells {
                *examined.entry(*s).or_insert(0.0) += c.impressions as f64 * exam[*k as usize];
            }
            for s in ALL {
                let e = examined.get(&s).copied().unwrap_or(0.0);
                let c = source_clicks.get(&s).copied().unwrap_or(0.0);
                theta.insert(s, if e > 0.0 { (c / e).min(1.0) } else { 0.0 });
            }
            // e_k = (C_k + m) / (Σ_s I_sk θ_s + m): shrunk towards 1 by one expected click.
            let mut expected = vec![0.0; slots];
            for ((s, k), c) in &self.cells {
                expected[*k as usize] += c.impressions as f64 * theta[s];
            }
            for ((e, c), x) in exam.iter_mut().zip(&slot_clicks).zip(&expected) {
                *e = (c + 1.0) / (x + 1.0);
            }
            let max = exam.iter().copied().fold(0.0, f64::max);
            if max > 0.0 {
                exam.iter_mut().for_each(|e| *e /= max);
            }
        }
        let mut examined: HashMap<Source, f64> = HashMap::new();
        for ((s, k), c) in &self.cells {
            *examined.entry(*s).or_insert(0.0) += c.impressions as f64 * exam[*k as usize];
        }
        let per_source = ALL
            .iter()
            .map(|s| {
                let t = self.source_total(*s);
                let ex = examined.get(s).copied().unwrap_or(0.0);
                SourceEstimate {
                    source: *s,
                    impressions: t.impressions,
                    clicks: t.clicks,
                    examined: ex,
                    debiased_ctr: if ex > 0.0 {
                        (t.clicks as f64 / ex).min(1.0)
                    } else {
                        0.0
                    },
                }
            })
            .collect();
        Estimate {
            examination: exam,
            sources: per_source,
        }
    }
}

/// One source's click-through, raw and position-debiased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEstimate {
    /// The source.
    pub source: Source,
    /// Impressions over all slots.
    pub impressions: u64,
    /// Clicks over all slots.
    pub clicks: u64,
    /// Impressions weighted by their slot's examination propensity.
    pub examined: f64,
    /// `clicks / examined` (0 without impressions).
    pub debiased_ctr: f64,
}

/// The fitted position-based click model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Examination propensity per slot (slot 0 first), 1 at the maximum.
    pub examination: Vec<f64>,
    /// Every source of [`ALL`], in that order.
    pub sources: Vec<SourceEstimate>,
}

/// Beta posterior of one learned source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Posterior {
    /// The source.
    pub source: Source,
    /// `α0 + clicks`.
    pub alpha: f64,
    /// `β0 + examined − clicks`.
    pub beta: f64,
}

impl Posterior {
    /// Posterior mean of the source's attractiveness.
    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }
}

/// The Thompson-sampling bandit over [`LEARNED`] sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bandit {
    /// One posterior per learned source.
    pub posteriors: Vec<Posterior>,
}

impl Bandit {
    /// Posteriors from a fitted model (see the module docs for the prior).
    pub fn from_estimate(est: &Estimate) -> Self {
        let learned: Vec<&SourceEstimate> = est
            .sources
            .iter()
            .filter(|s| LEARNED.contains(&s.source))
            .collect();
        let (c, e) = learned.iter().fold((0.0, 0.0), |(c, e), s| {
            (c + s.clicks as f64, e + s.examined)
        });
        // Tenant mean, itself shrunk towards 5% so no data gives a sane prior.
        let mean = ((c + 0.05 * PRIOR_STRENGTH) / (e + PRIOR_STRENGTH)).clamp(1e-4, 0.99);
        let (a0, b0) = (PRIOR_STRENGTH * mean, PRIOR_STRENGTH * (1.0 - mean));
        Bandit {
            posteriors: learned
                .iter()
                .map(|s| {
                    let clicks = s.clicks as f64;
                    Posterior {
                        source: s.source,
                        alpha: a0 + clicks,
                        beta: b0 + (s.examined - clicks).max(0.0),
                    }
                })
                .collect(),
        }
    }

    /// Posteriors straight from the counters.
    pub fn from_counts(counts: &FeedbackCounts) -> Self {
        Self::from_estimate(&counts.estimate())
    }

    fn weights_from(draws: impl Iterator<Item = (Source, f64)>) -> SourceWeights {
        let draws: Vec<(Source, f64)> = draws.collect();
        let max = draws.iter().map(|(_, d)| *d).fold(0.0, f64::max);
        let mut w = SourceWeights::default();
        if max > 0.0 {
            for (s, d) in draws {
                w.set(s, (d / max).max(MIN_WEIGHT));
            }
        }
        w
    }

    /// Weights from the posterior means (the deterministic, reported view).
    pub fn mean_weights(&self) -> SourceWeights {
        Self::weights_from(self.posteriors.iter().map(|p| (p.source, p.mean())))
    }

    /// Weights from one Thompson draw per source.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> SourceWeights {
        Self::weights_from(self.posteriors.iter().map(|p| {
            let d = Beta::new(p.alpha.max(1e-6), p.beta.max(1e-6))
                .map(|b| b.sample(rng))
                .unwrap_or_else(|_| p.mean());
            (p.source, d)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn attributions_round_trip_and_reject_junk() {
        let a = Attribution {
            recommendation_id: "r1a2".into(),
            source: Source::Cooccurrence,
            slot: 3,
        };
        assert_eq!(a.encode(), "r1a2:cooccurrence:3");
        assert_eq!(Attribution::parse(&a.encode()), Some(a));
        for bad in [
            "",
            "r1",
            ":model:1",
            "r:model:x",
            "r:nope:1",
            "r:model:100",
            "a:b:model:1",
        ] {
            assert_eq!(Attribution::parse(bad), None, "{bad}");
        }
        let long = format!("{}:model:1", "x".repeat(MAX_ID_LEN + 1));
        assert_eq!(Attribution::parse(&long), None);
    }

    #[test]
    fn counters_parse_from_hashes() {
        let imp: HashMap<String, String> = [
            ("model:0".to_string(), "10".to_string()),
            ("popularity:1".to_string(), "4".to_string()),
            ("junk".to_string(), "3".to_string()),
        ]
        .into();
        let clk: HashMap<String, String> = [("model:0".to_string(), "2".to_string())].into();
        let c = FeedbackCounts::from_hashes(&imp, &clk);
        assert_eq!(
            c.cells[&(Source::Model, 0)],
            Cell {
                impressions: 10,
                clicks: 2
            }
        );
        assert_eq!(c.total().impressions, 14);
        assert_eq!(c.cells.len(), 2);
    }

    /// Expected counts of a position-based world where the better source is always shown
    /// on top: raw CTR overstates the gap, the fit recovers the true ratio.
    #[test]
    fn the_fit_removes_position_bias() {
        let exam = [1.0, 0.6, 0.4, 0.3];
        let (good, bad) = (0.2, 0.1);
        let mut c = FeedbackCounts::default();
        for (k, e) in exam.iter().enumerate() {
            let k = k as u32;
            // Good source mostly on top, bad mostly below.
            let (ig, ib) = if k < 2 { (9000, 1000) } else { (1000, 9000) };
            c.impress(Source::Model, k, ig);
            c.impress(Source::Popularity, k, ib);
            c.click(Source::Model, k, (ig as f64 * e * good) as u64);
            c.click(Source::Popularity, k, (ib as f64 * e * bad) as u64);
        }
        let est = c.estimate();
        for (got, want) in est.examination.iter().zip(exam) {
            assert!((got - want).abs() < 0.02, "{got} vs {want}");
        }
        let ctr = |s| {
            est.sources
                .iter()
                .find(|e| e.source == s)
                .unwrap()
                .debiased_ctr
        };
        let ratio = ctr(Source::Model) / ctr(Source::Popularity);
        assert!((ratio - 2.0).abs() < 0.05, "{ratio}");
        let raw = |s| {
            let t = c.source_total(s);
            t.clicks as f64 / t.impressions as f64
        };
        assert!(raw(Source::Model) / raw(Source::Popularity) > 2.3);
    }

    #[test]
    fn no_feedback_means_equal_weights() {
        let b = Bandit::from_counts(&FeedbackCounts::default());
        assert_eq!(b.mean_weights(), SourceWeights::default());
        let mut c = FeedbackCounts::default();
        c.impress(Source::Model, 0, 100);
        c.impress(Source::Popularity, 0, 100);
        let w = Bandit::from_counts(&c).mean_weights();
        assert_eq!(w.model, w.popularity);
    }

    #[test]
    fn weights_follow_the_clicks_and_draws_concentrate() {
        let mut c = FeedbackCounts::default();
        for k in 0..5 {
            c.impress(Source::Model, k, 400);
            c.impress(Source::Cooccurrence, k, 400);
            c.impress(Source::Popularity, k, 400);
            c.click(Source::Model, k, 20);
            c.click(Source::Cooccurrence, k, 60);
            c.click(Source::Popularity, k, 8);
        }
        let b = Bandit::from_counts(&c);
        let w = b.mean_weights();
        assert_eq!(w.cooccurrence, 1.0);
        assert!(w.model < 0.5 && w.popularity < w.model, "{w:?}");
        assert_eq!(w.rule, 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let best = (0..200)
            .filter(|_| b.sample(&mut rng).cooccurrence == 1.0)
            .count();
        assert!(best > 190, "{best}");
    }
}
