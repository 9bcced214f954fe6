//! The work behind the handler, the sweep and the gRPC methods: reading a
//! user's state, deciding lifecycle transitions and publishing them.
//!
//! **Transitions once.** The stage the mesh last announced lives in the
//! user's hash (`stage`, `stage_at`, `stage_prev`, `stage_reason`,
//! `stage_n`). An evaluation recomputes the user's whole path
//! ([`lifecycle::path`]) at the clock's now and announces the steps past
//! `stage_n`, one at a time, each with a compare-and-set
//! ([`StateStore::hset_if`]) guarded by `stage_n`: whoever evaluates — the
//! handler after a batch, the sweep, a second instance — one writer wins
//! each step and only the winner publishes. `sent_n` follows after the
//! broker acknowledged; a step won but not published (crash, broker error)
//! is republished with the same `transition_id` by the next evaluation.
//!
//! **The due index.** `due` (one sorted set per partition) holds users by
//! the next instant a time transition can happen. The fold sets it on every
//! order (order time + at-risk days); the sweep evaluates users whose
//! deadline passed and moves them to their next deadline (or removes
//! churned users) with a store step whose source is `profile.sweep` and
//! whose "offset" is the sweep's now, so an older sweep cannot undo a newer
//! one.
//!
//! **Erased users.** An erasure deletes the user's hash and takes them out
//! of `due` ([`crate::erasure`]); nothing here writes them back: an
//! evaluation finds no state, every claim is guarded by fields of the hash
//! (`first_seen` as read, `stage_n`), and a sweep that read the user before
//! the erasure takes them out of `due` again right after its own step
//! ([`Profiles::unschedule_erased`]).
use std::collections::HashMap;
use std::sync::Arc;

use mesh_bus::headers;
use mesh_bus::Producer;
use mesh_proto::profile::v1::{Stage, StageTransition};
use mesh_runtime::announce::Announcement;
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};
use prost::Message;

use crate::error::Result;
use crate::features::{self, FeatureConfig, Features, UserState, DUE_KEY};
use crate::handler::SCOPE;
use crate::lifecycle::{self, Thresholds};

/// "Now" for derivations, lifecycle and sweeps: the runtime's one clock.
pub use mesh_runtime::clock::{Clock, ManualClock, SystemClock};

/// Users evaluated at once (each waits for the broker's acknowledgement
/// of its transitions).
pub const EVAL_CONCURRENCY: usize = 64;

/// Source name of the sweep's store steps (see the module doc).
pub const SWEEP_SOURCE: &str = "profile.sweep";
/// Source name of the sweep's second step, which takes users erased
/// meanwhile out of the due index ([`Profiles::unschedule_erased`]).
pub const SWEEP_ERASED_SOURCE: &str = "profile.sweep.erased";

/// What evaluations did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// Users evaluated.
    pub evaluated: u64,
    /// Transitions won and published.
    pub published: u64,
    /// Transitions published again after a failed publish.
    pub republished: u64,
}

impl std::ops::AddAssign for Effects {
    fn add_assign(&mut self, o: Self) {
        self.evaluated += o.evaluated;
        self.published += o.published;
        self.republished += o.republished;
    }
}

/// Everything one user's profile is derived from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub state: UserState,
    pub features: Features,
}

/// The service's working parts, shared by handler, sweep and gRPC.
pub struct Profiles {
    pub store: StateStore,
    /// `None` for a read-only engine (no transitions are announced).
    pub producer: Option<Producer>,
    pub lifecycle_topic: String,
    pub partitions: i32,
    pub features: FeatureConfig,
    pub thresholds: Thresholds,
    pub clock: Arc<dyn Clock>,
    pub tags: crate::tags::TagRules,
    pub segments: crate::segments::Current,
}

/// Splits `<tenant>/<user>`.
pub fn split_member(m: &str) -> (&str, &str) {
    m.split_once('/').unwrap_or(("", m))
}

impl Profiles {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A read-only engine with the default settings on the system clock.
    pub fn read_only(store: StateStore, partitions: i32) -> Self {
        let cfg = crate::ProfileConfig::from_env(&mesh_runtime::config::Env::default())
            .expect("defaults are valid");
        Profiles {
            store,
            producer: None,
            lifecycle_topic: String::new(),
            partitions,
            features: cfg.features,
            thresholds: cfg.thresholds,
            clock: Arc::new(SystemClock),
            tags: cfg.tags,
            segments: Default::default(),
        }
    }

    /// The slot that owns a user.
    pub fn slot_of(&self, member: &str) -> Slot<'static> {
        Slot {
            scope: SCOPE,
            partition: mesh_bus::partition::partition_for(member, self.partitions),
        }
    }

    /// Parsed states of several users of one slot, in one round trip.
    pub async fn states(
        &self,
        slot: Slot<'_>,
        members: &[String],
    ) -> Result<Vec<Option<UserState>>> {
        let keys: Vec<_> = members.iter().map(|m| (slot, format!("u:{m}"))).collect();
        let hashes = self.store.hgetall_many(&keys).await?;
        Ok(hashes.into_iter().map(UserState::from_hash).collect())
    }

    /// Every feature of one user at `now` (`None`: unknown user). The
    /// hashes and the four affinity tops are asked at once: on the store's
    /// multiplexed connection they travel as one pipeline, one round trip
    /// instead of five in a row.
    pub async fn snapshot(&self, member: &str, now_ms: i64) -> Result<Option<Snapshot>> {
        let slot = self.slot_of(member);
        let keys = [
            (slot, format!("u:{member}")),
            (slot, features::sessions_key(member)),
        ];
        let (era, _) = features::era_of(now_ms, self.features.affinity_tau_ms);
        let tops = [(era - 1, "ca"), (era - 1, "br"), (era, "ca"), (era, "br")].map(
            |(e, what)| async move {
                let top = self
                    .store
                    .ztop(slot, &features::affinity_key(what, e, member), 50)
                    .await;
                top.map(|m| (e, what, m))
            },
        );
        let (hashes, tops) = futures::future::join(
            self.store.hgetall_many(&keys),
            futures::future::try_join_all(tops),
        )
        .await;
        let mut hashes = hashes?;
        let sessions = hashes.pop().unwrap_or_default();
        let Some(state) = UserState::from_hash(hashes.pop().unwrap_or_default()) else {
            return Ok(None);
        };
        let (mut cats, mut brands) = (Vec::new(), Vec::new());
        for (e, what, m) in tops? {
            if !m.is_empty() {
                let out = if what == "ca" { &mut cats } else { &mut brands };
                out.push((e, m));
            }
        }
        let f = features::derive(&state, &sessions, &cats, &brands, &self.features, now_ms);
        Ok(Some(Snapshot { state, features: f }))
    }

    /// Evaluates the users of one slot after a batch was applied.
    pub async fn evaluate_members(&self, slot: Slot<'_>, members: &[String]) -> Result<Effects> {
        self.evaluate_members_at(slot, members, self.now_ms()).await
    }

    /// Evaluates the users of one slot at `now`.
    pub async fn evaluate_members_at(
        &self,
        slot: Slot<'_>,
        members: &[String],
        now: i64,
    ) -> Result<Effects> {
        let mut fx = Effects::default();
        for chunk in members.chunks(500) {
            let states = self.states(slot, chunk).await?;
            let users: Vec<(&String, UserState)> = chunk
                .iter()
                .zip(states)
                .filter_map(|(m, s)| Some((m, s?)))
                .collect();
            // Users are independent: evaluate (and publish) a group at a
            // time concurrently; one user's steps stay in order inside
            // `evaluate`.
            for group in users.chunks(EVAL_CONCURRENCY) {
                let mut futs = Vec::with_capacity(group.len());
                for (m, s) in group {
                    futs.push(self.evaluate(slot, m, s, now));
                }
                for e in futures::future::try_join_all(futs).await? {
                    fx += e;
                }
            }
        }
        Ok(fx)
    }

    /// Announces the user's transitions up to `now` that nobody announced
    /// yet (see the module doc). When another evaluation wins a step, the
    /// state is read again and the rest is retried, so concurrent
    /// evaluations of one user never leave a step unannounced.
    pub async fn evaluate(
        &self,
        slot: Slot<'_>,
        member: &str,
        s: &UserState,
        now_ms: i64,
    ) -> Result<Effects> {
        let (mut fx, mut lost) = self.evaluate_once(slot, member, s, now_ms).await?;
        for _ in 0..8 {
            if !lost {
                break;
            }
            let Some(fresh) = self
                .states(slot, &[member.to_string()])
                .await?
                .pop()
                .flatten()
            else {
                break;
            };
            let (more, l) = self.evaluate_once(slot, member, &fresh, now_ms).await?;
            fx += more;
            lost = l;
        }
        Ok(fx)
    }

    /// One pass of [`Profiles::evaluate`]; true when a compare-and-set was
    /// lost to another evaluation.
    async fn evaluate_once(
        &self,
        slot: Slot<'_>,
        member: &str,
        s: &UserState,
        now_ms: i64,
    ) -> Result<(Effects, bool)> {
        let mut fx = Effects {
            evaluated: 1,
            ..Default::default()
        };
        let key = format!("u:{member}");
        let announce = Announcement {
            store: &self.store,
            slot,
            key: &key,
            counter: "stage_n",
        };
        if s.sent_n < s.stage_n {
            let raw = |f: &str| s.raw.get(f).cloned().unwrap_or_default();
            let t = lifecycle::Transition {
                from: Stage::try_from(raw("stage_prev").parse::<i32>().unwrap_or(0))
                    .unwrap_or(Stage::Unspecified),
                to: Stage::try_from(s.stage).unwrap_or(Stage::Unspecified),
                at_ms: s.stage_at_ms,
                reason: raw("stage_reason"),
            };
            announce
                .send(s.stage_n.into(), || {
                    self.publish(member, s.stage_n, &t, now_ms)
                })
                .await?;
            fx.republished += 1;
        }
        let times = s.order_times();
        let path = lifecycle::path(s.counters.first_seen_ms, &times, now_ms, &self.thresholds);
        let mut current = Stage::try_from(s.stage).unwrap_or(Stage::Unspecified);
        let last = path.last().expect("a path has its first step");
        let tail: Vec<lifecycle::Transition> = if path.len() > s.stage_n as usize {
            path[s.stage_n as usize..].to_vec()
        } else if last.to != current {
            vec![lifecycle::Transition {
                reason: "history corrected by a late event".into(),
                ..last.clone()
            }]
        } else {
            Vec::new()
        };
        let mut n = s.stage_n;
        for t in tail {
            let t = lifecycle::Transition { from: current, ..t };
            let (n_old, n_new) = (n.to_string(), (n + 1).to_string());
            let (to, from, at) = (
                (t.to as i32).to_string(),
                (t.from as i32).to_string(),
                t.at_ms.to_string(),
            );
            // `first_seen` as read: the hash still holds the user. An
            // erasure deletes it; a claim must not write a fresh hash of
            // stage fields for a user who is gone.
            let guard = [
                ("stage_n", (n > 0).then_some(n_old.as_str())),
                ("first_seen", s.raw.get("first_seen").map(String::as_str)),
            ];
            let set = [
                ("stage", to.as_str()),
                ("stage_prev", from.as_str()),
                ("stage_at", at.as_str()),
                ("stage_reason", t.reason.as_str()),
                ("stage_n", n_new.as_str()),
            ];
            if !announce.claim(&guard, &set).await? {
                return Ok((fx, true)); // someone else announced it
            }
            n += 1;
            announce
                .send(u64::from(n), || self.publish(member, n, &t, now_ms))
                .await?;
            crate::metrics::TRANSITIONS
                .with_label_values(&[lifecycle::stage_name(t.to)])
                .inc();
            fx.published += 1;
            current = t.to;
        }
        Ok((fx, false))
    }

    async fn publish(
        &self,
        member: &str,
        seq: u32,
        t: &lifecycle::Transition,
        now_ms: i64,
    ) -> Result<()> {
        let (tenant, user) = split_member(member);
        let id = format!("{member}/{seq}");
        let msg = StageTransition {
            transition_id: id.clone(),
            tenant_id: tenant.into(),
            user_id: user.into(),
            old_stage: t.from as i32,
            new_stage: t.to as i32,
            reason: t.reason.clone(),
            at_ms: t.at_ms,
            seq,
            decided_at_ms: now_ms,
        };
        let h = headers::cloud_event(
            "mesh.profile.v1.StageTransition",
            &id,
            "mesh-profile",
            tenant,
            user,
            now_ms,
        );
        let Some(producer) = &self.producer else {
            return Err(crate::error::Error::Config(
                "read-only profile engine cannot publish transitions".into(),
            ));
        };
        producer
            .send(&self.lifecycle_topic, member, &msg.encode_to_vec(), &h)
            .await?;
        Ok(())
    }

    /// Evaluates every user whose deadline passed, in every partition, and
    /// moves each to its next deadline.
    pub async fn sweep_once(&self) -> Result<Effects> {
        let now = self.now_ms();
        let mut fx = Effects::default();
        for p in 0..self.partitions {
            fx += self.sweep_partition(p, now).await?;
        }
        Ok(fx)
    }

    async fn sweep_partition(&self, partition: i32, now_ms: i64) -> Result<Effects> {
        let slot = Slot {
            scope: SCOPE,
            partition,
        };
        let mut fx = Effects::default();
        let mut want = 256usize;
        let due: Vec<String> = loop {
            let top = self.store.ztop(slot, DUE_KEY, want).await?;
            let n = top.len();
            let due: Vec<String> = top
                .into_iter()
                .take_while(|(_, score)| -score <= now_ms as f64)
                .map(|(m, _)| m)
                .collect();
            if due.len() < want || n < want {
                break due;
            }
            want *= 4;
        };
        if due.is_empty() {
            return Ok(fx);
        }
        fx += self.evaluate_members_at(slot, &due, now_ms).await?;
        let states = self.states(slot, &due).await?;
        let mut ops = Vec::with_capacity(due.len());
        let mut rescheduled = Vec::new();
        for (m, s) in due.iter().zip(states) {
            // A user without state (erased) has no deadline.
            let next =
                s.and_then(|s| lifecycle::next_deadline(s.last_order_ms, now_ms, &self.thresholds));
            ops.push(match next {
                Some(d) => {
                    rescheduled.push(m.clone());
                    Op::ZSet {
                        key: DUE_KEY.into(),
                        member: m.clone(),
                        score: -(d as f64),
                    }
                }
                None => Op::ZRem {
                    key: DUE_KEY.into(),
                    member: m.clone(),
                },
            });
        }
        let mut batch = PartitionBatch::new(SWEEP_SOURCE, partition);
        batch.push(now_ms, ops);
        self.store.apply(SCOPE, &batch).await?;
        self.unschedule_erased(slot, &rescheduled, now_ms).await?;
        Ok(fx)
    }

    /// Takes the erased users among `members` out of the due index. The
    /// sweep reschedules users from state it read before its store step;
    /// an erasure applied in between would see its removal undone. Read
    /// after that step, the erasure record tells: either it came later (and
    /// removed the user itself) or it shows here. One `HMGET`, none without
    /// members.
    pub async fn unschedule_erased(
        &self,
        slot: Slot<'_>,
        members: &[String],
        now_ms: i64,
    ) -> Result<usize> {
        if members.is_empty() {
            return Ok(0);
        }
        let read = HashRead::Fields {
            slot,
            key: erasure::KEY.into(),
            fields: members.to_vec(),
        };
        let Some(HashReply::Fields(at)) = self.store.hread_many(&[read]).await?.pop() else {
            return Ok(0);
        };
        let ops: Vec<Op> = members
            .iter()
            .zip(at)
            .filter(|(_, at)| at.is_some())
            .map(|(m, _)| Op::ZRem {
                key: DUE_KEY.into(),
                member: m.clone(),
            })
            .collect();
        let n = ops.len();
        if n > 0 {
            let mut batch = PartitionBatch::new(SWEEP_ERASED_SOURCE, slot.partition);
            batch.push(now_ms, ops);
            self.store.apply(slot.scope, &batch).await?;
        }
        Ok(n)
    }

    /// Every user member of one partition, ascending.
    pub async fn partition_members(&self, partition: i32) -> Result<Vec<String>> {
        let slot = Slot {
            scope: SCOPE,
            partition,
        };
        let mut m: Vec<String> = self
            .store
            .ztop(slot, features::USERS_KEY, i64::MAX as usize)
            .await?
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        m.sort_unstable();
        Ok(m)
    }

    /// Every user of every partition with their state, ascending by member.
    pub async fn all_states(&self) -> Result<Vec<(String, UserState)>> {
        let mut out = Vec::new();
        for p in 0..self.partitions {
            let slot = Slot {
                scope: SCOPE,
                partition: p,
            };
            let members = self.partition_members(p).await?;
            for chunk in members.chunks(1000) {
                for (m, s) in chunk.iter().zip(self.states(slot, chunk).await?) {
                    if let Some(s) = s {
                        out.push((m.clone(), s));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Distinct members of a batch's events, in first-seen order.
pub fn distinct_members<'a>(members: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut out = Vec::new();
    for m in members {
        if seen.insert(m, ()).is_none() {
            out.push(m.to_string());
        }
    }
    out
}
