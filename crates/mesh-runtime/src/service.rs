//! The skeleton every stateful service is built from: what it needs from the
//! process ([`Deps`]), its consumers ([`start_consumer`]) and its periodic
//! work ([`spawn_periodic`]). The gRPC side is [`crate::grpc::GrpcServer`].
//!
//! A service crate composes these and keeps only its domain: its handler,
//! its engine, its RPCs.
//!
//! Every consumer built by [`Deps::consumer_config`] gets the bus's
//! [`PoisonPolicy`]: a record that keeps failing on its own while the
//! service's store answers is dead-lettered after
//! [`poison_attempts`] attempts (`MESH_POISON_ATTEMPTS`), so one bad record
//! cannot stop a partition; while the store does not answer, records are
//! retried without limit.
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::consumer::Assignment;
use mesh_bus::poison::DEFAULT_MAX_ATTEMPTS;
use mesh_bus::{ConsumerConfig, Handler, PoisonPolicy, Producer, TopicNames};
use mesh_store::StateStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Env;
use crate::peers::Peers;

/// The variable bounding the attempts of a record that fails on its own
/// before it is dead-lettered.
pub const POISON_ATTEMPTS_VAR: &str = "MESH_POISON_ATTEMPTS";

/// The process's attempts bound; one value for every consumer of the
/// process, like the log filter. Kept here rather than in [`Deps`] so that
/// every way of building a `Deps` gets it.
static POISON_ATTEMPTS: AtomicU32 = AtomicU32::new(DEFAULT_MAX_ATTEMPTS);

/// `MESH_POISON_ATTEMPTS` (default 5): a positive whole number; a bad value
/// is an error naming the variable.
pub fn poison_attempts_from(env: &Env) -> crate::Result<u32> {
    Ok(env.positive(POISON_ATTEMPTS_VAR, DEFAULT_MAX_ATTEMPTS as i32)? as u32)
}

/// Sets the attempts bound of the consumers built after this call (the
/// binary sets it once at start from its config).
pub fn set_poison_attempts(n: u32) {
    POISON_ATTEMPTS.store(n.max(1), Ordering::Relaxed);
}

/// The attempts bound consumers are built with now.
pub fn poison_attempts() -> u32 {
    POISON_ATTEMPTS.load(Ordering::Relaxed)
}

/// `MESH_CONSUMER_REJOIN_EMPTY_MS`, 0 (off) unless set.
static REJOIN_EMPTY_MS: AtomicU64 = AtomicU64::new(0);

/// `MESH_CONSUMER_REJOIN_EMPTY_MS` (default 0, off): a consumer that has
/// held no partition for this long leaves its group and joins it again
/// ([`ConsumerConfig::rejoin_when_empty`]); a bad value is an error naming
/// the variable.
pub fn rejoin_empty_from(env: &Env) -> crate::Result<Duration> {
    env.millis("MESH_CONSUMER_REJOIN_EMPTY_MS", Duration::ZERO)
}

/// Sets the rejoin bound of the consumers built after this call (0: off).
pub fn set_rejoin_empty(d: Duration) {
    REJOIN_EMPTY_MS.store(d.as_millis() as u64, Ordering::Relaxed);
}

/// The batch bound set by [`set_max_batch`]; 0 (before it is called): the
/// consumer's own default.
static MAX_BATCH: AtomicUsize = AtomicUsize::new(0);

/// The mesh's batch bound when `MESH_CONSUMER_MAX_BATCH` is unset: 100
/// records, not [`ConsumerConfig`]'s 500. A store step is one script that
/// holds Redis while it runs; at 500 records the reads under load (`mesh
/// bench all`, 5,000 events/s) had p99s of 0.07–1.5 s, at 100 of 28–166 ms,
/// for ~25% of profile's apply rate (README, "Batch size").
pub const DEFAULT_MAX_BATCH: usize = 100;

/// `MESH_CONSUMER_MAX_BATCH` (default [`DEFAULT_MAX_BATCH`]): the most
/// records of one partition a consumer hands its handler at once, and so
/// the size of one store step. Larger batches cost fewer round trips per
/// record; each store step holds Redis for longer (the atomic step is one
/// script), which every read waiting behind it feels. A value that is not a
/// positive whole number is an error naming the variable.
pub fn max_batch_from(env: &Env) -> crate::Result<usize> {
    Ok(env.positive("MESH_CONSUMER_MAX_BATCH", DEFAULT_MAX_BATCH as i32)? as usize)
}

/// Sets the batch bound of the consumers built after this call (0: the
/// consumer's default).
pub fn set_max_batch(n: usize) {
    MAX_BATCH.store(n, Ordering::Relaxed);
}

/// The in-flight bound set by [`set_in_flight`]; 0 (before it is called):
/// the consumer's own default.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The mesh's in-flight bound when `MESH_CONSUMER_IN_FLIGHT` is unset: one
/// batch in the handler at a time (the loop still takes records while it
/// is applied). `mesh bench all`, same machine, 1 against 4: profile
/// applied 14.8k against 21.0k events/s, but the reads' p99 under load
/// were 42 / 273 / 94 ms against 136 / 1,444 / 228 ms (GetProfile,
/// Recommend, ScoreOrder; README, "Batches in flight").
pub const DEFAULT_IN_FLIGHT: usize = 1;

/// `MESH_CONSUMER_IN_FLIGHT` (default [`DEFAULT_IN_FLIGHT`]): how many
/// batches of different partitions a consumer has in its handler at once
/// ([`ConsumerConfig::max_in_flight`]). A value that is not a positive
/// whole number is an error naming the variable.
pub fn in_flight_from(env: &Env) -> crate::Result<usize> {
    Ok(env.positive("MESH_CONSUMER_IN_FLIGHT", DEFAULT_IN_FLIGHT as i32)? as usize)
}

/// Sets the in-flight bound of the consumers built after this call (0: the
/// consumer's default).
pub fn set_in_flight(n: usize) {
    IN_FLIGHT.store(n, Ordering::Relaxed);
}

/// What a service needs from the process: the broker, the topic names, the
/// store, the shared producer, its peers and "now". One value is built per
/// process and cloned into every service (each with its own peers).
#[derive(Clone)]
pub struct Deps {
    pub brokers: String,
    pub topics: TopicNames,
    /// Partitions of the input topics (the number of state slots).
    pub partitions: i32,
    pub store: StateStore,
    pub producer: Producer,
    /// librdkafka settings for the consumers (tests shorten timeouts).
    pub consumer_extra: Vec<(String, String)>,
    /// Peers asked at request time; unset ones are not asked.
    pub peers: Peers,
    /// "Now" for sweeps, windows and deadlines (the wall clock in production).
    pub clock: Arc<dyn Clock>,
}

impl Deps {
    /// The same dependencies with other peers.
    pub fn with_peers(&self, peers: Peers) -> Self {
        Deps {
            peers,
            ..self.clone()
        }
    }

    /// The same dependencies with another clock.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        Deps {
            clock,
            ..self.clone()
        }
    }

    /// A consumer of `topics` in `group`, with the process's extra settings
    /// and the poison policy ([`Deps::poison_policy`]).
    pub fn consumer_config(&self, group: &str, topics: &[&str]) -> ConsumerConfig {
        let mut cc = ConsumerConfig::new(&self.brokers, group, topics);
        cc.extra = self.consumer_extra.clone();
        cc.poison = Some(self.poison_policy());
        let rejoin = REJOIN_EMPTY_MS.load(Ordering::Relaxed);
        cc.rejoin_when_empty = (rejoin > 0).then(|| Duration::from_millis(rejoin));
        let max_batch = MAX_BATCH.load(Ordering::Relaxed);
        if max_batch > 0 {
            cc.max_batch = max_batch;
        }
        let in_flight = IN_FLIGHT.load(Ordering::Relaxed);
        if in_flight > 0 {
            cc.max_in_flight = in_flight;
        }
        cc
    }

    /// How a consumer gets past a record that keeps failing: dead-lettered
    /// to the mesh's dead-letter topic with the shared producer after
    /// [`poison_attempts`] attempts on its own, but only while the store
    /// answers a PING and the broker a metadata request for the
    /// dead-letter topic (otherwise the failure is an outage, such as a
    /// handler's publish refused by a broker that is restarting, and is
    /// retried without counting).
    pub fn poison_policy(&self) -> PoisonPolicy {
        let store = self.store.clone();
        let producer = self.producer.clone();
        let topic = self.topics.dead_letter.clone();
        PoisonPolicy::new(self.producer.clone(), &self.topics.dead_letter, move || {
            let (s, p, t) = (store.clone(), producer.clone(), topic.clone());
            async move {
                s.ping().await.is_ok() && p.broker_answers(&t, Duration::from_secs(2)).await
            }
        })
        .with_max_attempts(poison_attempts())
    }
}

/// Spawns the consumer loop of `handler` on the background runtime
/// ([`crate::background`]), away from the gRPC servers; the [`Assignment`]
/// tells readiness when partitions arrive. The task ends after the final
/// commit on `shutdown`; an error ending it early is logged with `what`.
pub fn start_consumer<H: Handler>(
    what: &'static str,
    cc: ConsumerConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> (Assignment, JoinHandle<()>) {
    let assigned = Assignment::default();
    let a = assigned.clone();
    let task = crate::background::spawn(async move {
        if let Err(e) = mesh_bus::run_consumer(cc, handler, a, shutdown).await {
            tracing::error!(consumer = what, %e, "consumer stopped");
        }
    });
    (assigned, task)
}

/// When the first run of a periodic task happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRun {
    /// At once, then every interval (reloads: serve the newest at start).
    AtStart,
    /// After one interval (sweeps: the start already saw the state).
    AfterInterval,
}

/// Runs `work(state)` every `every` until `shutdown`. A run that outlasts the
/// interval delays the next one (no burst of missed ticks); cancellation is
/// checked before each run. A failed run is logged with `what` and the next
/// tick tries again. The interval only paces the work: what a run sees as
/// "now" comes from its own clock.
pub fn spawn_periodic<S, F, Fut, E>(
    what: &'static str,
    every: Duration,
    first: FirstRun,
    shutdown: CancellationToken,
    state: S,
    work: F,
) -> JoinHandle<()>
where
    S: Clone + Send + 'static,
    F: Fn(S) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if first == FirstRun::AfterInterval {
            tick.tick().await;
        }
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => if let Err(e) = work(state.clone()).await {
                    tracing::warn!(task = what, %e, "periodic task failed; next tick retries");
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn runs_within(first: FirstRun, wait: Duration) -> usize {
        let n = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = spawn_periodic(
            "test",
            Duration::from_secs(60),
            first,
            stop.clone(),
            n.clone(),
            |m| async move {
                m.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(())
            },
        );
        tokio::time::sleep(wait).await;
        stop.cancel();
        task.await.unwrap();
        n.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_first_run_and_cancellation() {
        assert_eq!(
            runs_within(FirstRun::AtStart, Duration::from_secs(1)).await,
            1
        );
        assert_eq!(
            runs_within(FirstRun::AfterInterval, Duration::from_secs(1)).await,
            0
        );
        assert_eq!(
            runs_within(FirstRun::AfterInterval, Duration::from_secs(150)).await,
            2
        );
    }

    #[test]
    fn the_batch_bound_is_the_meshs_default_unless_set_and_must_be_positive() {
        assert_eq!(
            max_batch_from(&Env::from_pairs([])).unwrap(),
            DEFAULT_MAX_BATCH
        );
        let set = Env::from_pairs([("MESH_CONSUMER_MAX_BATCH", "200")]);
        assert_eq!(max_batch_from(&set).unwrap(), 200);
        for bad in ["0", "-3", "lots"] {
            let e = max_batch_from(&Env::from_pairs([("MESH_CONSUMER_MAX_BATCH", bad)]))
                .expect_err(bad)
                .to_string();
            assert!(e.contains("MESH_CONSUMER_MAX_BATCH"), "{e}");
        }
    }

    #[test]
    fn the_in_flight_bound_is_one_unless_set_and_must_be_positive() {
        assert_eq!(in_flight_from(&Env::from_pairs([])).unwrap(), 1);
        let set = Env::from_pairs([("MESH_CONSUMER_IN_FLIGHT", "4")]);
        assert_eq!(in_flight_from(&set).unwrap(), 4);
        for bad in ["0", "-1", "many"] {
            let e = in_flight_from(&Env::from_pairs([("MESH_CONSUMER_IN_FLIGHT", bad)]))
                .expect_err(bad)
                .to_string();
            assert!(e.contains("MESH_CONSUMER_IN_FLIGHT"), "{e}");
        }
    }
}
