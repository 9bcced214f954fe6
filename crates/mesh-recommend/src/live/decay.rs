//! Forward exponential decay: scores that an append-only store can keep without rewrites.
//!
//! # The math
//! A decayed score of events `(w_k, t_k)` read at time `t` is
//! `S(t) = Σ_k w_k · exp(-λ (t - t_k))`, with `λ = ln 2 / half_life`.
//! Factor out a fixed reference time `t_ref`:
//! `S(t) = exp(-λ (t - t_ref)) · Σ_k w_k · exp(λ (t_k - t_ref)) = exp(-λ (t - t_ref)) · A`.
//! The store keeps only `A`. A new event adds `w · exp(λ (t_new - t_ref))` to it — a plain
//! increment (`ZINCRBY`/`HINCRBYFLOAT` in Redis), never a read-modify-write of old values.
//! Reading multiplies by `exp(-λ (t - t_ref))`, the same factor for every key of one half-life,
//! so ranking items by `A` equals ranking them by `S(t)` and needs no rescale at all.
//!
//! `exp` overflows `f64` near 709, i.e. about 1,000 half-lives after `t_ref` (≈ 19 years for
//! a 7-day half-life). Before that, [`Decay::rebase_factor`] gives the one factor to multiply
//! every stored `A` by when moving `t_ref` forward (a rare batch job).

use serde::{Deserialize, Serialize};

/// One exponential decay: a rate and the reference time its stored values are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decay {
    /// Decay rate per second, `ln 2 / half_life_secs`.
    pub lambda: f64,
    /// Reference time (Unix seconds) stored values are scaled to.
    pub t_ref: f64,
}

impl Decay {
    /// Decay with the given half-life (seconds) relative to `t_ref`.
    /// A non-positive or non-finite half-life means "no decay".
    pub fn with_half_life(half_life_secs: f64, t_ref: f64) -> Self {
        let lambda = if half_life_secs.is_finite() && half_life_secs > 0.0 {
            std::f64::consts::LN_2 / half_life_secs
        } else {
            0.0
        };
        Self { lambda, t_ref }
    }

    /// The increment to add to a stored value for an event of weight `w` at time `t`.
    pub fn forward(&self, w: f64, t: f64) -> f64 {
        w * (self.lambda * (t - self.t_ref)).exp()
    }

    /// The decayed score at time `now` of a stored value.
    pub fn read(&self, stored: f64, now: f64) -> f64 {
        stored * (-self.lambda * (now - self.t_ref)).exp()
    }

    /// Factor to multiply every stored value by when moving `t_ref` to `new_ref`.
    pub fn rebase_factor(&self, new_ref: f64) -> f64 {
        (-self.lambda * (new_ref - self.t_ref)).exp()
    }

    /// This decay moved to a new reference time (pair with [`Decay::rebase_factor`]).
    pub fn rebased(&self, new_ref: f64) -> Self {
        Self {
            lambda: self.lambda,
            t_ref: new_ref,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_half_life_halves_the_score() {
        let d = Decay::with_half_life(100.0, 1_000.0);
        let stored = d.forward(8.0, 1_050.0);
        assert!((d.read(stored, 1_050.0) - 8.0).abs() < 1e-12);
        assert!((d.read(stored, 1_150.0) - 4.0).abs() < 1e-12);
        assert!((d.read(stored, 1_250.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn forward_sum_equals_direct_decayed_sum() {
        let d = Decay::with_half_life(3_600.0, 0.0);
        let events = [(1.0, 10.0), (3.0, 2_000.0), (5.0, 7_000.0)];
        let stored: f64 = events.iter().map(|&(w, t)| d.forward(w, t)).sum();
        let now = 9_000.0;
        let direct: f64 = events
            .iter()
            .map(|&(w, t)| w * (-d.lambda * (now - t)).exp())
            .sum();
        assert!((d.read(stored, now) - direct).abs() < 1e-12 * direct.max(1.0));
    }

    #[test]
    fn rebase_keeps_scores() {
        let d = Decay::with_half_life(60.0, 0.0);
        let stored = d.forward(2.0, 600.0);
        let moved = d.rebased(500.0);
        let restored = stored * d.rebase_factor(500.0);
        assert!((moved.read(restored, 700.0) - d.read(stored, 700.0)).abs() < 1e-12);
    }

    #[test]
    fn zero_half_life_means_no_decay() {
        let d = Decay::with_half_life(0.0, 0.0);
        assert_eq!(d.read(d.forward(3.0, 1e9), 2e9), 3.0);
    }
}
