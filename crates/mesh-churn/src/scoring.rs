//! Streaming churn scoring: per-customer (frequency, recency, T) state that updates on
//! each order and on the passage of time, a BG/NBD risk score, and an alert that fires
//! once per upward crossing of a threshold, re-armed only after the risk falls below a
//! lower threshold (hysteresis).
//!
//! Time comes from an injected [`Clock`]; nothing sleeps. Risk is the BG/NBD
//! probability of no purchase in the next `horizon_weeks` (the supervised label).

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bgnbd::BgNbdParams;
use crate::data::{Rfm, DAYS_PER_WEEK};
use crate::error::{Error, Result};

/// A source of "now".
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock moved by hand (tests, replays).
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            millis: AtomicI64::new(at.timestamp_millis()),
        }
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.millis.store(at.timestamp_millis(), Ordering::SeqCst);
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.millis
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.millis.load(Ordering::SeqCst))
            .expect("manual clock holds a valid instant")
    }
}

/// Alerting configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertConfig {
    /// Fire when risk rises to or above this.
    pub threshold: f64,
    /// Re-arm when risk falls to or below this (`<= threshold`).
    pub rearm_below: f64,
    /// Risk horizon in weeks ("no purchase in the next N weeks").
    pub horizon_weeks: f64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            threshold: 0.8,
            rearm_below: 0.6,
            horizon_weeks: 13.0,
        }
    }
}

/// One customer's streaming state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerState {
    /// First order time.
    pub first_order: Option<DateTime<Utc>>,
    /// Last order time.
    pub last_order: Option<DateTime<Utc>>,
    /// Repeat orders so far (orders - 1; same-day orders count once).
    pub frequency: u32,
    /// True while an alert is outstanding (between firing and re-arming).
    pub alerted: bool,
}

/// An alert emitted on a threshold crossing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnAlert {
    /// Risk at the crossing.
    pub risk: f64,
    /// When it was raised.
    pub at: DateTime<Utc>,
    /// Most informative reasons, strongest first.
    pub reasons: Vec<String>,
}

/// The result of one update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Probability of no purchase in the horizon.
    pub risk: f64,
    /// BG/NBD P(alive).
    pub p_alive: f64,
    /// Expected purchases in the horizon.
    pub expected_purchases: f64,
    /// An alert if this update crossed the threshold.
    pub alert: Option<ChurnAlert>,
}

/// Scores customers with fitted BG/NBD parameters.
pub struct ChurnScorer<C: Clock> {
    params: BgNbdParams,
    config: AlertConfig,
    clock: C,
}

fn weeks(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_seconds().max(0) as f64 / (86_400.0 * DAYS_PER_WEEK)
}

impl<C: Clock> ChurnScorer<C> {
    /// A scorer; errors if the thresholds are not `0 <= rearm_below <= threshold <= 1`.
    pub fn new(params: BgNbdParams, config: AlertConfig, clock: C) -> Result<Self> {
        let ok = (0.0..=1.0).contains(&config.threshold)
            && (0.0..=config.threshold).contains(&config.rearm_below)
            && config.horizon_weeks > 0.0;
        if !ok {
            return Err(Error::InvalidInput(format!(
                "alert config needs 0 <= rearm_below <= threshold <= 1 and horizon > 0, got {config:?}"
            )));
        }
        Ok(Self {
            params,
            config,
            clock,
        })
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Records an order placed at the clock's now, then scores.
    pub fn on_order(&self, state: &mut CustomerState) -> Result<Score> {
        let now = self.clock.now();
        match (state.first_order, state.last_order) {
            (None, _) | (_, None) => {
                state.first_order = Some(now);
                state.last_order = Some(now);
            }
            (Some(_), Some(last)) => {
                if now.date_naive() != last.date_naive() && now > last {
                    state.frequency += 1;
                }
                if now > last {
                    state.last_order = Some(now);
                }
            }
        }
        self.score(state)
    }

    /// Scores at the clock's now (call on a timer tick); may raise an alert.
    pub fn on_tick(&self, state: &mut CustomerState) -> Result<Score> {
        self.score(state)
    }

    fn rfm(&self, state: &CustomerState, now: DateTime<Utc>) -> Option<Rfm> {
        let (first, last) = (state.first_order?, state.last_order?);
        Some(Rfm {
            frequency: f64::from(state.frequency),
            recency: if state.frequency > 0 {
                weeks(first, last)
            } else {
                0.0
            },
            t: weeks(first, now).max(weeks(first, last)),
        })
    }

    fn score(&self, state: &mut CustomerState) -> Result<Score> {
        let now = self.clock.now();
        let Some(rfm) = self.rfm(state, now) else {
            return Err(Error::InvalidInput(
                "cannot score a customer without orders".into(),
            ));
        };
        let h = self.config.horizon_weeks;
        let risk = self.params.p_no_purchase(h, &rfm);
        let p_alive = self.params.p_alive(&rfm);
        let expected = self.params.conditional_expected(h, &rfm)?;
        let mut alert = None;
        if state.alerted {
            if risk <= self.config.rearm_below {
                state.alerted = false;
            }
        } else if risk >= self.config.threshold {
            state.alerted = true;
            alert = Some(ChurnAlert {
                risk,
                at: now,
                reasons: self.reasons(&rfm, p_alive, expected),
            });
        }
        Ok(Score {
            risk,
            p_alive,
            expected_purchases: expected,
            alert,
        })
    }

    fn reasons(&self, rfm: &Rfm, p_alive: f64, expected: f64) -> Vec<String> {
        let silent = rfm.t - rfm.recency;
        let mut reasons = Vec::new();
        if rfm.frequency > 0.0 {
            let usual = rfm.recency / rfm.frequency;
            reasons.push((
                silent / usual.max(1e-9),
                format!("no purchase for {silent:.0} weeks vs usual {usual:.0}"),
            ));
        } else {
            reasons.push((
                silent / self.config.horizon_weeks,
                format!("no repeat purchase in {silent:.0} weeks since the first order"),
            ));
        }
        reasons.push(((1.0 - p_alive) * 4.0, format!("P(alive) {p_alive:.2}")));
        reasons.push((
            1.0 / (expected + 0.25),
            format!(
                "expected purchases in the next {:.0} weeks {expected:.2}",
                self.config.horizon_weeks
            ),
        ));
        reasons.sort_by(|a, b| b.0.total_cmp(&a.0));
        reasons.into_iter().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    const P: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    fn scorer() -> ChurnScorer<ManualClock> {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
        ChurnScorer::new(
            P,
            AlertConfig {
                threshold: 0.8,
                rearm_below: 0.6,
                horizon_weeks: 13.0,
            },
            ManualClock::new(start),
        )
        .unwrap()
    }

    #[test]
    fn alert_fires_once_per_crossing() {
        let s = scorer();
        let mut st = CustomerState::default();
        // A regular buyer: an order every 3 weeks for 30 weeks.
        for _ in 0..10 {
            let score = s.on_order(&mut st).unwrap();
            assert!(score.alert.is_none(), "active buyer alerted: {score:?}");
            s.clock().advance(Duration::weeks(3));
        }
        // Then silence: tick daily for 30 weeks; exactly one alert.
        let mut alerts = Vec::new();
        for _ in 0..(30 * 7) {
            s.clock().advance(Duration::days(1));
            if let Some(a) = s.on_tick(&mut st).unwrap().alert {
                alerts.push(a);
            }
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(alerts[0].risk >= 0.8);
        assert!(
            alerts[0].reasons.iter().any(|r| r.contains("vs usual 3")),
            "{:?}",
            alerts[0].reasons
        );
        assert!(alerts[0].reasons.iter().any(|r| r.starts_with("P(alive)")));
        // The customer comes back: risk falls below the re-arm level, no alert.
        let back = s.on_order(&mut st).unwrap();
        assert!(back.alert.is_none() && back.risk < 0.6, "{back:?}");
        assert!(!st.alerted);
        // A second silence crosses again: a second alert, still only one.
        let mut second = 0;
        for _ in 0..(60 * 7) {
            s.clock().advance(Duration::days(1));
            second += usize::from(s.on_tick(&mut st).unwrap().alert.is_some());
        }
        assert_eq!(second, 1);
    }

    #[test]
    fn hovering_near_threshold_does_not_flap() {
        let s = scorer();
        let mut st = CustomerState::default();
        for _ in 0..6 {
            s.on_order(&mut st).unwrap();
            s.clock().advance(Duration::weeks(2));
        }
        let mut fired = 0;
        for _ in 0..2000 {
            s.clock().advance(Duration::hours(2));
            fired += usize::from(s.on_tick(&mut st).unwrap().alert.is_some());
        }
        assert_eq!(fired, 1);
        // Same-day orders count once.
        let f = st.frequency;
        s.on_order(&mut st).unwrap();
        s.on_order(&mut st).unwrap();
        assert_eq!(st.frequency, f + 1);
    }

    #[test]
    fn rejects_bad_config_and_empty_state() {
        let clock = ManualClock::new(Utc::now());
        let bad = AlertConfig {
            threshold: 0.5,
            rearm_below: 0.7,
            horizon_weeks: 13.0,
        };
        assert!(ChurnScorer::new(P, bad, clock).is_err());
        assert!(scorer().on_tick(&mut CustomerState::default()).is_err());
    }
}
