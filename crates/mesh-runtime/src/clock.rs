//! The one notion of "now" every service takes as a parameter, so that
//! time-dependent logic (sweeps, windows, deadlines) is tested by moving a
//! clock instead of sleeping.
//!
//! Model crates (`mesh-churn`) keep their own small clock trait because
//! they must not depend on the runtime; services adapt at the call site.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of "now".
pub trait Clock: Send + Sync {
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;

    /// The same instant as a UTC date-time.
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }
}

/// Any `Fn() -> i64` (Unix ms) is a clock: tests pass `Arc::new(|| T0)`.
impl<F: Fn() -> i64 + Send + Sync> Clock for F {
    fn now_ms(&self) -> i64 {
        self()
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

/// The wall clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock moved by hand (tests, replays, offline reports).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `ms` (Unix ms).
    pub fn new(ms: i64) -> Self {
        ManualClock(AtomicI64::new(ms))
    }

    /// A clock at `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self::new(at.timestamp_millis())
    }

    /// Moves the clock to `ms`.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock to `at`.
    pub fn set_at(&self, at: DateTime<Utc>) {
        self.set(at.timestamp_millis());
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        self.0.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(chrono::Duration::seconds(2));
        assert_eq!(c.now_ms(), 3_000);
        let at = DateTime::from_timestamp_millis(86_400_000).unwrap();
        c.set_at(at);
        assert_eq!(c.now(), at);
        assert_eq!(ManualClock::at(at).now_ms(), 86_400_000);
    }

    #[test]
    fn closures_and_the_system_clock_are_clocks() {
        let fixed: Arc<dyn Clock> = Arc::new(|| 42_i64);
        assert_eq!(fixed.now_ms(), 42);
        let before = Utc::now().timestamp_millis();
        assert!(system().now_ms() >= before);
    }
}
