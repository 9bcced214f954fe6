//! Forward exponential decay: scores that an append-only store can keep without rewrites.
//!
//! # The math
//! A decayed score of events `(w_k, t_k)` read at time `t` is
//! `S(t) = Σ_k w_k · exp(-λ (t - t_k))`, with `λ = ln 2 / half_life`.
//! Factor out a reference time `r`:
//! `S(t) = exp(-λ (t - r)) · Σ_k w_k · exp(λ (t_k - r)) = exp(-λ (t - r)) · A`.
//! The store keeps only `A`. A new event adds `w · exp(λ (t_new - r))` to it — a plain
//! increment (`ZINCRBY`/`HINCRBYFLOAT` in Redis), never a read-modify-write of old values.
//! Reading multiplies by `exp(-λ (t - r))`, the same factor for every key of one half-life,
//! so ranking items by `A` equals ranking them by `S(t)` and needs no rescale at all.
//!
//! # Epochs
//! `exp` overflows `f64` near 709, about 1,024 half-lives after `r` (2.8 years for the
//! 1-day trending half-life), and underflows as far before it. So time is cut into
//! epochs of [`EPOCH_HALF_LIVES`] half-lives from `t_ref`, each with its own reference
//! time (its start) and its own stored values (its own keys: [`Decay::epoch`] names
//! them). An event adds to the values of its own epoch, and in the last
//! [`OVERLAP_HALF_LIVES`] half-lives of an epoch also to those of the next one, so the
//! next epoch starts with everything that still weighs: a read at `t` reads only the
//! values of `t`'s epoch and misses only events older than its start minus the overlap,
//! which have decayed by at least `2^-64`. Stored values stay below `w · 2^512`, and no
//! job ever rewrites them; an epoch's values are never read after it ends.

use serde::{Deserialize, Serialize};

/// Length of one epoch, in half-lives (`2^512 ≈ 1.3e154` is the largest factor stored).
pub const EPOCH_HALF_LIVES: f64 = 512.0;
/// The last this many half-lives of an epoch also add to the next one.
pub const OVERLAP_HALF_LIVES: f64 = 64.0;

/// One exponential decay: a rate and the time its epochs count from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decay {
    /// Decay rate per second, `ln 2 / half_life_secs`.
    pub lambda: f64,
    /// Start of epoch 0 (Unix seconds).
    pub t_ref: f64,
}

impl Decay {
    /// Decay with the given half-life (seconds), epochs counted from `t_ref`.
    /// A non-positive or non-finite half-life means "no decay" (and one epoch, 0).
    pub fn with_half_life(half_life_secs: f64, t_ref: f64) -> Self {
        let lambda = if half_life_secs.is_finite() && half_life_secs > 0.0 {
            std::f64::consts::LN_2 / half_life_secs
        } else {
            0.0
        };
        Self { lambda, t_ref }
    }

    /// Seconds in one epoch (infinite without decay).
    fn epoch_secs(&self) -> f64 {
        EPOCH_HALF_LIVES * std::f64::consts::LN_2 / self.lambda
    }

    /// The epoch holding time `t`: the stored values a read at `t` uses, and the ones an
    /// event at `t` adds to first. Epochs before `t_ref` are negative.
    pub fn epoch(&self, t: f64) -> i64 {
        if self.lambda == 0.0 || !t.is_finite() {
            return 0;
        }
        // `as` saturates: times beyond ±9e18 epochs share the last one.
        ((t - self.t_ref) / self.epoch_secs()).floor() as i64
    }

    /// Reference time of epoch `e`: its start.
    pub fn epoch_start(&self, e: i64) -> f64 {
        if self.lambda == 0.0 {
            return self.t_ref;
        }
        self.t_ref + e as f64 * self.epoch_secs()
    }

    /// The increments an event of weight `w` at time `t` adds: `(epoch, delta)` for its
    /// own epoch, then for the next one when `t` is in the overlap at the end of its own.
    pub fn forward(&self, w: f64, t: f64) -> impl Iterator<Item = (i64, f64)> {
        let e = self.epoch(t);
        let own = (e, w * (self.lambda * (t - self.epoch_start(e))).exp());
        let next_start = self.epoch_start(e.saturating_add(1));
        let next = (self.lambda > 0.0
            && self.lambda * (next_start - t) <= OVERLAP_HALF_LIVES * std::f64::consts::LN_2)
            .then(|| (e + 1, w * (self.lambda * (t - next_start)).exp()));
        std::iter::once(own).chain(next)
    }

    /// The decayed score at time `now` of a stored value of `now`'s epoch
    /// ([`Decay::epoch`]`(now)`).
    pub fn read(&self, stored: f64, now: f64) -> f64 {
        stored * (-self.lambda * (now - self.epoch_start(self.epoch(now)))).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86_400.0;
    /// 2024-01-01T00:00:00Z, the service's default `t_ref`.
    const T_REF: f64 = 1_704_067_200.0;

    /// Stored values per epoch after `events`, as a store keyed by epoch keeps them.
    fn store(d: &Decay, events: &[(f64, f64)]) -> std::collections::HashMap<i64, f64> {
        let mut out = std::collections::HashMap::new();
        for &(w, t) in events {
            for (e, delta) in d.forward(w, t) {
                assert!(delta.is_finite(), "delta {delta} at t={t} epoch {e}");
                *out.entry(e).or_insert(0.0) += delta;
            }
        }
        out
    }

    fn read(d: &Decay, events: &[(f64, f64)], now: f64) -> f64 {
        let stored = store(d, events).get(&d.epoch(now)).copied().unwrap_or(0.0);
        d.read(stored, now)
    }

    fn direct(d: &Decay, events: &[(f64, f64)], now: f64) -> f64 {
        events
            .iter()
            .map(|&(w, t)| w * (-d.lambda * (now - t)).exp())
            .sum()
    }

    #[test]
    fn one_half_life_halves_the_score() {
        let d = Decay::with_half_life(100.0, 1_000.0);
        let ev = [(8.0, 1_050.0)];
        assert!((read(&d, &ev, 1_050.0) - 8.0).abs() < 1e-12);
        assert!((read(&d, &ev, 1_150.0) - 4.0).abs() < 1e-12);
        assert!((read(&d, &ev, 1_250.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn forward_sum_equals_direct_decayed_sum() {
        let d = Decay::with_half_life(3_600.0, 0.0);
        let events = [(1.0, 10.0), (3.0, 2_000.0), (5.0, 7_000.0)];
        let now = 9_000.0;
        let want = direct(&d, &events, now);
        assert!((read(&d, &events, now) - want).abs() < 1e-12 * want);
    }

    /// The fault this replaces: with one reference time at 2024-01-01 a 1-day half-life
    /// overflowed `f64` from 2026-10-21 on. Reads decades after (and before) `t_ref`
    /// equal the direct sum.
    #[test]
    fn scores_stay_exact_decades_from_t_ref() {
        let d = Decay::with_half_life(DAY, T_REF);
        for years in [-30.0, -1.0, 0.0, 2.8, 2.93, 10.0, 100.0, 1_000.0] {
            let t0 = T_REF + years * 365.25 * DAY;
            let events: Vec<(f64, f64)> = (0..200)
                .map(|k| (1.0 + (k % 5) as f64, t0 + k as f64 * 1_800.0))
                .collect();
            for now in [t0 + 100.0 * 1_800.0, t0 + 200.0 * 1_800.0, t0 + 5.0 * DAY] {
                let (got, want) = (read(&d, &events, now), direct(&d, &events, now));
                assert!(
                    got.is_finite() && (got - want).abs() <= 1e-12 * want,
                    "{years} years after t_ref, now {now}: got {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn the_overlap_carries_recent_events_into_the_next_epoch() {
        let d = Decay::with_half_life(DAY, T_REF);
        let boundary = d.epoch_start(3);
        // 10 half-lives before the boundary: in the overlap, so written twice.
        let t = boundary - 10.0 * DAY;
        let ups: Vec<(i64, f64)> = d.forward(2.0, t).collect();
        assert_eq!(ups.iter().map(|u| u.0).collect::<Vec<_>>(), vec![2, 3]);
        // Read one hour into the next epoch, it counts in full.
        let ev = [(2.0, t)];
        let now = boundary + 3_600.0;
        assert_eq!(d.epoch(now), 3);
        let want = direct(&d, &ev, now);
        assert!((read(&d, &ev, now) - want).abs() < 1e-12 * want);
        // Before the overlap an event adds to its own epoch only.
        let early = boundary - (OVERLAP_HALF_LIVES + 1.0) * DAY;
        assert_eq!(d.forward(1.0, early).count(), 1);
        // What a read misses (older than the overlap) has decayed below 2^-64.
        let missed = direct(&d, &[(1.0, early)], boundary);
        assert!(missed < 2f64.powi(-64));
    }

    #[test]
    fn zero_half_life_means_no_decay() {
        let d = Decay::with_half_life(0.0, 0.0);
        let ups: Vec<(i64, f64)> = d.forward(3.0, 1e9).collect();
        assert_eq!(ups, vec![(0, 3.0)]);
        assert_eq!(d.read(3.0, 2e9), 3.0);
    }

    proptest::proptest! {
        /// Any events up to `now` (offsets of up to 3,000 half-lives, across many
        /// epochs, far before and after `t_ref`): the read equals the direct sum, except
        /// for events older than the overlap, which weigh below 2^-64 of their weight.
        #[test]
        fn reads_equal_direct_sums_anywhere_in_time(
            half_life in 60.0f64..(30.0 * DAY),
            now_hl in -5_000.0f64..5_000.0,
            events in proptest::collection::vec((0.1f64..10.0, 0.0f64..3_000.0), 1..40),
        ) {
            let d = Decay::with_half_life(half_life, T_REF);
            let now = T_REF + now_hl * half_life;
            let ev: Vec<(f64, f64)> = events.iter().map(|&(w, ago)| (w, now - ago * half_life)).collect();
            let want = direct(&d, &ev, now);
            let bound: f64 = ev.iter().map(|e| e.0).sum::<f64>() * 2f64.powi(-64);
            let got = read(&d, &ev, now);
            proptest::prop_assert!(got.is_finite());
            proptest::prop_assert!((got - want).abs() <= 1e-9 * want + bound, "got {} want {}", got, want);
        }
    }
}
