//! The consumer side: a batch of records of one partition in; decisions and
//! alerts published, then one atomic store step out.
//!
//! Per batch: records at or below the partition's watermark were scored
//! (and their decisions published) before, so they are not scored again;
//! only their entity ops are handed on, for home slots that may have missed
//! them (see [`crate::state`]). Each order
//! is scored on the stored state plus the not-yet-applied ops of the
//! earlier records of the batch (the overlay), i.e. on exactly the state
//! before its own update. Decisions and alerts are published *before* the
//! batch is applied: a crash in between re-publishes the same decisions
//! (consumers dedupe on `event_id`), never loses one.
//!
//! **A store that went back.** The batch carries the consumer's
//! [`mesh_bus::expected_through`]: when the store applied less of the
//! partition than the consumer did before this batch (it was flushed or
//! restored from an older snapshot), nothing is scored, published or
//! written; the handler reports [`mesh_store::Error::Behind`] with what the
//! store applied ([`crate::state::applied`]), and the consumer re-reads the
//! partition from there. The same check runs atomically in the user slot's
//! step, for a store that goes back while the batch is being worked on;
//! each home slot's step expects what this process wrote there
//! ([`crate::state::HomeMarks`]). Re-read records above the user slot's
//! watermark are scored again and their decisions and alerts published
//! again, with the same `event_id`s (at least once, as after a crash); every
//! store effect lands once (see [`crate::state`]).
//!
//! Erasure ([`crate::erasure`]): a batch with orders, failed payments or
//! `user_erased` first reads which of its users are erased (one round
//! trip); an erased user's records are neither scored nor published nor
//! applied (they only move the watermark), and `user_erased` becomes the
//! deletions of [`crate::erasure::forget`].
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mesh_bus::headers::{self, HeaderList};
use mesh_bus::{Handler, HandlerError, Producer, Record, Watermark};
use mesh_fraud::{updates, Event, RiskAlert};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_proto::fraud::v1 as pb;
use mesh_store::{erasure as store_erasure, StateStore};
use prost::Message;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::Error;
use crate::metrics::{ALERTS, CHARGEBACKS, DECISIONS};
use crate::scoring::{alert_kind_name, Scorer};
use crate::state::BatchWrite;
use crate::{convert, erasure, review};

/// Applies fraud state and publishes decisions for one consumer group.
pub struct FraudHandler {
    pub scorer: Arc<Scorer>,
    pub store: StateStore,
    pub producer: Producer,
    pub decisions_topic: String,
    pub alerts_topic: String,
    pub dead_letter_topic: String,
    pub group: String,
    /// Profile, asked once per batch for the buyers of its orders.
    pub profile: Option<mesh_runtime::peers::Peer>,
    /// What this process applied in each home slot, per input partition.
    pub home_marks: crate::state::HomeMarks,
}

/// A record to publish once the batch is decided.
struct Outgoing {
    topic: String,
    key: String,
    /// `ce_type` header: the record's protobuf message type.
    ce_type: &'static str,
    payload: Vec<u8>,
}

/// `ce_type` of the decision and risk-alert records.
pub const DECISION_TYPE: &str = "mesh.fraud.v1.Decision";
pub const RISK_ALERT_TYPE: &str = "mesh.fraud.v1.RiskAlert";

fn alert_proto(a: &RiskAlert, env: &Envelope, order_id: &str) -> pb::RiskAlert {
    pb::RiskAlert {
        kind: alert_kind_name(a.kind).to_string(),
        entity: a.entity.clone(),
        reasons: a.reasons.clone(),
        tenant_id: env.tenant_id.clone(),
        user_id: env.user_id.clone(),
        event_id: env.event_id.clone(),
        order_id: order_id.to_string(),
        occurred_at_ms: env.occurred_at_ms,
    }
}

impl FraudHandler {
    fn alerts_out(
        &self,
        alerts: &[RiskAlert],
        env: &Envelope,
        order_id: &str,
        out: &mut Vec<Outgoing>,
    ) {
        for a in alerts {
            ALERTS.with_label_values(&[alert_kind_name(a.kind)]).inc();
            out.push(Outgoing {
                topic: self.alerts_topic.clone(),
                key: env.user_key(),
                ce_type: RISK_ALERT_TYPE,
                payload: alert_proto(a, env, order_id).encode_to_vec(),
            });
        }
    }

    async fn dead_letter(
        &self,
        r: &Record,
        reason: String,
        field: Option<&str>,
    ) -> Result<(), HandlerError> {
        let mut h = r.dead_letter_headers(&reason, &self.group);
        if let Some(f) = field {
            h.push(headers::DLQ_FIELD, f);
        }
        let key = r
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_else(|| "undecodable".into());
        self.producer
            .send(&self.dead_letter_topic, &key, &r.payload, &h)
            .await
            .map_err(|e| HandlerError(format!("dead-letter: {e}")))?;
        Ok(())
    }
}

/// A record, decoded.
enum Parsed {
    /// Changes no fraud state (browsing, shipping, ...).
    Nothing,
    /// Undecodable or invalid: dead-lettered when first seen.
    Bad(String, Option<String>),
    /// A core event, with its user `<tenant>/<user>`.
    Event(Box<Envelope>, Box<Event>, String),
    /// `user_erased` of user `<tenant>/<user>`.
    Erased(Box<Envelope>, String),
}

fn parse(r: &Record) -> Parsed {
    let env = match Envelope::decode(r.payload.as_slice()) {
        Ok(env) => env,
        Err(e) => return Parsed::Bad(format!("undecodable event envelope: {e}"), None),
    };
    if let Some(Body::UserErased(_)) = &env.body {
        if env.tenant_id.trim().is_empty() || env.user_id.trim().is_empty() {
            return Parsed::Bad(
                "fraud: user_erased without tenant_id and user_id".into(),
                Some("user_id".into()),
            );
        }
        let member = store_erasure::member(&env.tenant_id, &env.user_id);
        return Parsed::Erased(Box::new(env), member);
    }
    match convert::event_from(&env) {
        Ok(Some(ev)) => {
            let member = env.user_key();
            Parsed::Event(Box::new(env), Box::new(ev), member)
        }
        Ok(None) => Parsed::Nothing,
        Err(e) => {
            let field = match &e {
                Error::InvalidArgument { field, .. } => Some(field.clone()),
                _ => None,
            };
            Parsed::Bad(format!("fraud: {e}"), field)
        }
    }
}

/// A handler error of `e`; a store error through
/// `HandlerError::from(mesh_store::Error)`, which keeps a store that went
/// back ([`mesh_store::Error::Behind`]) visible to the consumer.
fn handler_error(e: Error) -> HandlerError {
    match e {
        Error::Store(s) => HandlerError::from(s),
        other => HandlerError(other.to_string()),
    }
}

impl FraudHandler {
    /// The error of a failed [`BatchWrite::apply`]. A step refused as
    /// behind names its own slot's watermark: the user slot's may be above
    /// what the store applied of every step (the done watermark), a home
    /// slot's may be below it (that slot went back alone). The consumer
    /// re-reads from the lower of that and the done watermark, read now;
    /// the records it re-reads at or below the user slot's watermark hand
    /// only their entity ops on, which the home slots' watermarks skip
    /// where applied. When it cannot be read, a plain error: the retry
    /// checks again before anything else.
    async fn apply_error(&self, e: Error, topic: &str, partition: i32) -> HandlerError {
        let Error::Store(mesh_store::Error::Behind {
            source_topic,
            partition: p,
            watermark,
            expected,
        }) = e
        else {
            return handler_error(e);
        };
        self.home_marks.forget(topic, partition);
        match crate::state::applied(&self.store, topic, partition).await {
            Ok(applied) => HandlerError::from(mesh_store::Error::Behind {
                source_topic: topic.to_string(),
                partition,
                watermark: applied.all.min(watermark),
                expected,
            }),
            Err(read) => HandlerError(format!(
                "store went back: {source_topic}[{p}] is applied through {watermark:?} but \
                 {expected} was applied before; reading what it applied failed: {read}"
            )),
        }
    }
}

/// Whether an event has effects beyond its user slot (home-slot ops,
/// decisions, alerts): only those need the batch's erasure read.
fn reaches_out(ev: &Event) -> bool {
    matches!(ev, Event::Order(_)) || matches!(ev, Event::Payment(p) if !p.success)
}

impl Handler for FraudHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let err = handler_error;
        let expect = mesh_bus::expected_through();
        let stored = crate::state::applied(&self.store, &first.topic, first.partition)
            .await
            .map_err(err)?;
        let applied = stored.all;
        if let Some(expected) = expect.filter(|e| applied < Some(*e)) {
            // The store lost writes this consumer made: score, publish and
            // write nothing; the consumer re-reads from `applied`. The home
            // slots may have gone back too: what this process last wrote
            // there is no longer what they hold.
            self.home_marks.forget(&first.topic, first.partition);
            return Err(HandlerError::from(mesh_store::Error::Behind {
                source_topic: first.topic.clone(),
                partition: first.partition,
                watermark: applied,
                expected,
            }));
        }
        let wm = stored.own.unwrap_or(-1);
        let home = self
            .home_marks
            .of(&first.topic, first.partition, expect.is_some());
        let parsed: Vec<Parsed> = records.iter().map(parse).collect();
        // Erasures: who is erased already (one round trip, only for a batch
        // with effects outside the user slot), and what the erased users
        // left behind (see `erasure`).
        let mut checked: BTreeSet<&str> = BTreeSet::new();
        let mut erasing: BTreeSet<&str> = BTreeSet::new();
        for p in &parsed {
            match p {
                Parsed::Event(_, ev, m) if reaches_out(ev) => {
                    checked.insert(m);
                }
                Parsed::Erased(_, m) => {
                    checked.insert(m);
                    erasing.insert(m);
                }
                _ => {}
            }
        }
        let checked: Vec<String> = checked.into_iter().map(str::to_string).collect();
        let erasing: Vec<String> = erasing.into_iter().map(str::to_string).collect();
        // The stored features of the batch's new orders, read in the same
        // round trip time as the erasures; each order then adds the ops of
        // the records before it (the overlay) when it is scored.
        let new_orders: Vec<(i64, &mesh_fraud::Order)> = records
            .iter()
            .zip(&parsed)
            .filter_map(|(r, p)| match p {
                Parsed::Event(_, ev, _) if r.offset > wm => match ev.as_ref() {
                    Event::Order(o) => Some((r.offset, o)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let orders: Vec<&mesh_fraud::Order> = new_orders.iter().map(|(_, o)| *o).collect();
        let fetch_started = std::time::Instant::now();
        let (known, fetched) = tokio::join!(
            erasure::read(&self.store, first.partition, &checked, &erasing),
            async {
                if orders.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.scorer.fetch(&orders).await
                }
            }
        );
        let known = known.map_err(err)?;
        let mut fetched: HashMap<i64, crate::state::Fetched> = new_orders
            .iter()
            .map(|(offset, _)| *offset)
            .zip(fetched.map_err(err)?)
            .collect();
        let erased_orders: Vec<(String, String)> = known
            .links
            .iter()
            .flat_map(|(m, l)| {
                let t = crate::tenant::of_member(m);
                erasure::orders_of(l).map(move |o| (t.to_string(), o.to_string()))
            })
            .collect();
        let reviews = erasure::reviews_of(&self.store, first.partition, &erased_orders)
            .await
            .map_err(err)?;
        let mut erased = known.erased;
        // A redelivered range (at or below the user slot's watermark) may
        // hold the erasure the store already applied: the user's records
        // before it are not erased, and their entity ops must still reach
        // home slots that missed them (a store restored from a snapshot
        // taken before them). The erasure record re-marks the user below.
        for p in &parsed {
            if let Parsed::Erased(env, m) = p {
                if known.erased_at.get(m) == Some(&env.occurred_at_ms) {
                    erased.remove(m);
                }
            }
        }
        // Links of this batch's records not applied yet, per user.
        let mut pending_links: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut write =
            BatchWrite::new(&first.topic, first.partition, self.scorer.reader.partitions);
        write.expect_through(expect);
        let mut overlay = Vec::new();
        let mut out = Vec::new();
        // Decisions wait for the batch's one profile call before they are
        // encoded; the trace context of the first order parents that call.
        let mut decisions: Vec<pb::Decision> = Vec::new();
        let mut first_trace: Option<opentelemetry::Context> = None;
        // Chargebacks seen in this batch: counted by the decision their
        // order had, once the batch is applied.
        let mut chargebacks: Vec<pb::GetDecisionRequest> = Vec::new();
        for (r, p) in records.iter().zip(parsed) {
            let live = r.offset > wm;
            let (env, event, member) = match p {
                Parsed::Nothing => {
                    if live {
                        write.push(r.offset, &[], Vec::new());
                    }
                    continue;
                }
                Parsed::Bad(reason, field) => {
                    // Dead-lettered when first seen (above the watermark).
                    if live {
                        self.dead_letter(r, reason, field.as_deref()).await?;
                        write.push(r.offset, &[], Vec::new());
                    }
                    continue;
                }
                Parsed::Erased(env, member) => {
                    let mut links = known.links.get(&member).cloned().unwrap_or_default();
                    links.extend(pending_links.remove(&member).unwrap_or_default());
                    let f = erasure::forget(
                        &env.tenant_id,
                        &member,
                        env.occurred_at_ms,
                        &links,
                        &reviews,
                    );
                    write.push_erasure(r.offset, live.then_some(f.own), f.remote, f.cleanup);
                    erased.insert(member);
                    continue;
                }
                Parsed::Event(env, event, member) => (env, *event, member),
            };
            if erased.contains(&member) {
                // An erased user's record changes nothing and publishes
                // nothing; it still moves the watermark.
                if live {
                    write.push(r.offset, &[], Vec::new());
                }
                continue;
            }
            let core_ops = updates(&event);
            if !live {
                // Scored and its user slot applied before; its home slots
                // may not have been (see `state`).
                write.push_entity_only(r.offset, &core_ops);
                continue;
            }
            let mut extra = Vec::new();
            let mut links = erasure::set_links(&member, &core_ops);
            match &event {
                Event::Order(o) => {
                    links.push(format!("order:{}", o.order_id));
                    // One span per scored order, child of the publisher's
                    // span carried in the record's `traceparent` header.
                    let span = tracing::info_span!("fraud.apply", event_id = %env.event_id, offset = r.offset);
                    let _ = span.set_parent(r.headers.trace_context());
                    let scored = match fetched.remove(&r.offset) {
                        Some(f) => {
                            let _entered = span.enter();
                            self.scorer
                                .score_fetched(o, f, &overlay, "consumer", fetch_started)
                                .map_err(err)?
                        }
                        None => self
                            .scorer
                            .score(o, &overlay, "consumer")
                            .instrument(span)
                            .await
                            .map_err(err)?,
                    };
                    let decision = self.scorer.decision_proto(&env, o, &scored);
                    let action = pb::Action::try_from(decision.action).unwrap_or_default();
                    DECISIONS
                        .with_label_values(&["consumer", action.as_str_name()])
                        .inc();
                    if action == pb::Action::Review {
                        extra = review::enqueue_ops(&pb::ReviewItem {
                            decision: Some(decision.clone()),
                            features: scored.features.0.clone(),
                        });
                    }
                    extra.push(review::decided_op(&decision));
                    if first_trace.is_none() {
                        first_trace = Some(r.headers.trace_context());
                    }
                    decisions.push(decision);
                    self.alerts_out(&scored.alerts, &env, &o.order_id, &mut out);
                    overlay.extend(core_ops.iter().cloned());
                }
                Event::Payment(p) => {
                    overlay.extend(core_ops.iter().cloned());
                    if !p.success {
                        let alerts = self.scorer.payment_alerts(p, &overlay).await.map_err(err)?;
                        self.alerts_out(&alerts, &env, &p.order_id, &mut out);
                    }
                }
                Event::Account(_) => {
                    if let Some(Body::RefundIssued(rf)) = &env.body {
                        if rf.reason == crate::live_sim::CHARGEBACK {
                            chargebacks.push(pb::GetDecisionRequest {
                                tenant_id: env.tenant_id.clone(),
                                user_id: env.user_id.clone(),
                                order_id: rf.order_id.clone(),
                            });
                        }
                    }
                    overlay.extend(core_ops.iter().cloned())
                }
            }
            let link_ops = erasure::link_ops(&member, &links);
            pending_links
                .entry(member.clone())
                .or_default()
                .extend(links);
            write.push_user(r.offset, &member, link_ops, &core_ops, extra);
        }
        // Every record of the batch is handled once the done step moves
        // past the last one, whether it had ops or not.
        if let Some(last) = records.last() {
            write.through(last.offset);
        }
        write.expect_home(&home);
        if !decisions.is_empty() {
            let span = tracing::info_span!("fraud.buyer_context", orders = decisions.len());
            if let Some(cx) = first_trace {
                let _ = span.set_parent(cx);
            }
            let mut refs: Vec<&mut pb::Decision> = decisions.iter_mut().collect();
            crate::buyer::enrich(self.profile.as_ref(), &mut refs)
                .instrument(span)
                .await;
            for d in decisions {
                out.push(Outgoing {
                    topic: self.decisions_topic.clone(),
                    key: format!("{}/{}", d.tenant_id, d.user_id),
                    ce_type: DECISION_TYPE,
                    payload: d.encode_to_vec(),
                });
            }
        }
        let sends = out.iter().map(|o| {
            let h = HeaderList::new()
                .with(headers::CE_TYPE, o.ce_type)
                .with_current_trace();
            async move {
                self.producer
                    .send(&o.topic, &o.key, &o.payload, &h)
                    .await
                    .map_err(|e| HandlerError(format!("publish to {}: {e}", o.topic)))
            }
        });
        futures::future::try_join_all(sends).await?;
        if let Err(e) = write.apply(&self.store).await {
            return Err(self.apply_error(e, &first.topic, first.partition).await);
        }
        self.home_marks
            .applied(&first.topic, first.partition, write.home_marks());
        for req in chargebacks {
            let decided = review::decision_of(&self.store, self.scorer.reader.partitions, &req)
                .await
                .ok()
                .filter(|d| d.found)
                .and_then(|d| pb::Action::try_from(d.action).ok());
            let label = decided.map_or("UNKNOWN", |a| a.as_str_name());
            CHARGEBACKS.with_label_values(&[label]).inc();
        }
        Ok(())
    }

    /// What the store applied of `(topic, partition)`, every step of
    /// [`BatchWrite`] included: the done watermark of the user slot
    /// ([`crate::state::applied`]). Not the user slot's own
    /// watermark: that step runs first, and a store restored from a
    /// snapshot taken before the home slots had a batch must re-read that
    /// batch (its records then hand only their entity ops on, which the
    /// home slots' watermarks skip where applied). Not the home slots'
    /// watermarks either: a home slot's watermark of `T#P` is the last
    /// offset with ops for that slot, far behind the partition when it is
    /// rarely touched.
    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        Ok(
            match crate::state::applied(&self.store, topic, partition)
                .await
                .map_err(handler_error)?
                .all
            {
                Some(w) => Watermark::At(w),
                None => Watermark::Empty,
            },
        )
    }
}
