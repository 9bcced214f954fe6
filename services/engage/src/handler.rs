//! The consumer: user and order events feed price observations (per
//! viewer lifecycle stage, [`crate::observe`]) and attribute orders to
//! offers; churn's retention actions on the alerts topic get an offer from
//! the retention campaign; profile's stage transitions and the platform's
//! market prices are kept for the pricer.
//!
//! **Erasure.** A `user_erased` event deletes the user's offer records and
//! stage, marks the user's offer index for the sweep and records the
//! erasure in the same step as the batch ([`keys::erasure_ops`]); once that
//! step is done the user's offer index entries are deleted
//! ([`keys::sweep_ops`], once per user, with the mark). A sweep that did not
//! happen (a crash in between, a store restored from a snapshot taken in
//! between) is done by the partition's next batch of events, which reads
//! the marks with its stages. Every other record of a user (views, orders,
//! stage transitions) starts with the erasure guard. What the guard cannot
//! stop is read first, once per batch and only in a batch that has it: a
//! batch with conversions reads the erasure of their users before
//! publishing responses or updating a bandit, and a batch of retention
//! actions reads it before choosing offers. An erasure earlier in the same
//! batch is remembered in memory.
//!
//! **A store that went back.** Every batch carries the consumer's
//! `expect_through`, so a store that lost applied writes (a flush, a restore
//! from an older snapshot, a failover to a lagging replica) refuses it and
//! the consumer re-reads the partition from what the store kept
//! ([`EngageHandler::applied_through`](Handler::applied_through)). A batch
//! with effects outside its own step (responses published, offers chosen)
//! makes the same check first with a read of the watermark
//! (`not_behind`): what the store forgot of the partition (an erasure
//! before a later order of the user, an earlier alert's offer before a
//! later alert's frequency cap) is applied again before a later record acts
//! on its absence.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mesh_bus::headers;
use mesh_bus::{Handler, HandlerError, Record, Watermark};
use mesh_proto::churn::v1::RetentionAction;
use mesh_proto::events::v1::{envelope::Body, Envelope};
use mesh_proto::profile::v1::{Stage, StageTransition};
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, Slot};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::engine::{attribution_ops, Engage, OfferRecord, RETENTION_CAMPAIGN};
use crate::keys::{self, SCOPE};
use crate::metrics::RESPONSES;
use crate::observe::{market_price, observation_ops};

const DAY_MS: i64 = 86_400_000;

pub struct EngageHandler {
    pub engage: Arc<Engage>,
    pub alerts_topic: String,
    pub lifecycle_topic: String,
    pub market_topic: String,
    pub dead_letter_topic: String,
    pub group: String,
}

/// Refuses `batch` as the store's apply would, before the effects that go
/// ahead of it, when the store holds less of the partition than the
/// consumer applied (`batch.expect_through`): it went back, and the
/// consumer must re-read from what it kept. One `HGET`, none when the
/// consumer expects nothing (the first batch after an assignment or a
/// re-read).
async fn not_behind(engage: &Engage, batch: &PartitionBatch) -> Result<(), crate::Error> {
    let Some(expected) = batch.expect_through else {
        return Ok(());
    };
    let slot = keys::shard(batch.partition);
    let watermark = engage.store.watermark(slot, &batch.source_topic).await?;
    if watermark.is_some_and(|w| w >= expected) {
        return Ok(());
    }
    Err(mesh_store::Error::Behind {
        source_topic: batch.source_topic.clone(),
        partition: batch.partition,
        watermark,
        expected,
    }
    .into())
}

impl EngageHandler {
    async fn dead_letter(&self, r: &Record, reason: String) -> Result<(), crate::Error> {
        let h = r.dead_letter_headers(&reason, &self.group);
        self.engage
            .producer
            .send(&self.dead_letter_topic, "undecodable", &r.payload, &h)
            .await?;
        Ok(())
    }

    /// Churn's retention actions: one offer each from the retention
    /// campaign (idempotent per alert), then the watermark moves. Actions
    /// about erased users are dropped (one read of their erasures).
    async fn retention(&self, records: &[Record]) -> Result<(), crate::Error> {
        let first = &records[0];
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = mesh_bus::expected_through();
        let actions: Vec<_> = records
            .iter()
            .map(|r| {
                (r.headers.get(headers::CE_TYPE) == Some("mesh.churn.v1.RetentionAction"))
                    .then(|| RetentionAction::decode(r.payload.as_slice()))
            })
            .collect();
        let members: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Some(Ok(a)) => Some(erasure::member(&a.tenant_id, &a.user_id)),
                _ => None,
            })
            .collect();
        // Offers are made before the watermark moves (each once per alert,
        // see `choose_offer`), and never on a store that forgot earlier
        // alerts' offers: the re-read makes those first.
        let (erased, ()) =
            tokio::try_join!(self.engage.erased_among(members.iter().cloned()), async {
                match members.is_empty() {
                    true => Ok(()),
                    false => not_behind(&self.engage, &batch).await,
                }
            })?;
        for (r, action) in records.iter().zip(actions) {
            if let Some(action) = action {
                match action {
                    Ok(a) if erased.contains(&erasure::member(&a.tenant_id, &a.user_id)) => {}
                    Ok(a) => {
                        let d = self
                            .engage
                            .choose_offer(
                                &a.tenant_id,
                                RETENTION_CAMPAIGN,
                                &a.user_id,
                                Some(&a.alert_id),
                            )
                            .await;
                        match d {
                            // Erased since the read: nothing to keep.
                            Ok(_) | Err(crate::Error::Erased(_)) => {}
                            // Refused input is kept with the reason; store and
                            // broker failures retry the batch.
                            Err(
                                e @ (crate::Error::InvalidArgument { .. }
                                | crate::Error::NotFound(_)),
                            ) => {
                                self.dead_letter(r, format!("retention action refused: {e}"))
                                    .await?
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) => {
                        self.dead_letter(r, format!("undecodable RetentionAction: {e}"))
                            .await?
                    }
                }
            }
            batch.push(r.offset, Vec::new());
        }
        self.engage.store.apply(SCOPE, &batch).await?;
        Ok(())
    }

    /// Profile's stage transitions: each user's current stage, for the
    /// observations of what they view and buy.
    async fn stages(&self, records: &[Record]) -> Result<(), crate::Error> {
        let first = &records[0];
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = mesh_bus::expected_through();
        for r in records {
            let mut ops = Vec::new();
            match StageTransition::decode(r.payload.as_slice()) {
                Ok(t) if !t.tenant_id.is_empty() && !t.user_id.is_empty() => {
                    if let Ok(stage) = Stage::try_from(t.new_stage) {
                        ops.push(erasure::guard(&erasure::member(&t.tenant_id, &t.user_id)));
                        ops.push(Op::HSet {
                            key: keys::stage(&t.tenant_id, &t.user_id),
                            field: "s".into(),
                            value: stage.as_str_name().into(),
                        });
                    }
                }
                // Profile's own output: a record we cannot read is its bug,
                // kept on the dead-letter topic with the reason.
                Ok(_) => {
                    self.dead_letter(r, "StageTransition without tenant or user".into())
                        .await?
                }
                Err(e) => {
                    self.dead_letter(r, format!("undecodable StageTransition: {e}"))
                        .await?
                }
            }
            batch.push(r.offset, ops);
        }
        self.engage.store.apply(SCOPE, &batch).await?;
        Ok(())
    }

    /// Market prices: the latest per item and source.
    async fn market(&self, records: &[Record]) -> Result<(), crate::Error> {
        let first = &records[0];
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = mesh_bus::expected_through();
        for r in records {
            let mut ops = Vec::new();
            match market_price(r) {
                Ok(m) => ops.push(Op::HSet {
                    key: keys::market(&m.tenant_id, &m.sku),
                    field: m.source.clone(),
                    value: format!("{}|{}", m.price, m.observed_at_ms),
                }),
                Err(reason) => self.dead_letter(r, reason).await?,
            }
            batch.push(r.offset, ops);
        }
        self.engage.store.apply(SCOPE, &batch).await?;
        Ok(())
    }

    /// Events: pricing observations, and orders attributed to offers.
    pub async fn apply(&self, records: &[Record]) -> Result<(), crate::Error> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        if first.topic == self.alerts_topic {
            return self.retention(records).await;
        }
        if first.topic == self.lifecycle_topic {
            return self.stages(records).await;
        }
        if first.topic == self.market_topic {
            return self.market(records).await;
        }
        let engage = &self.engage;
        let slot = Slot {
            scope: SCOPE,
            partition: first.partition,
        };
        let mut events = Vec::with_capacity(records.len());
        for r in records {
            match Envelope::decode(r.payload.as_slice()) {
                Ok(e) => events.push((r, Some(e))),
                Err(err) => {
                    self.dead_letter(r, format!("undecodable event envelope: {err}"))
                        .await?;
                    events.push((r, None));
                }
            }
        }
        // The offer records of every user who ordered in this batch, read
        // once and updated in memory as the batch goes.
        let mut buyers: Vec<(String, String)> = events
            .iter()
            .filter_map(|(_, e)| match e {
                Some(
                    e @ Envelope {
                        body: Some(Body::OrderPlaced(_)),
                        ..
                    },
                ) => Some((e.tenant_id.clone(), e.user_id.clone())),
                _ => None,
            })
            .collect();
        buyers.sort();
        buyers.dedup();
        // The lifecycle stage of everyone who viewed or bought, and the
        // slot's pending sweeps, one read.
        let mut people: Vec<(String, String)> = events
            .iter()
            .filter_map(|(_, e)| match e {
                Some(
                    e @ Envelope {
                        body: Some(Body::ProductView(_) | Body::OrderPlaced(_)),
                        ..
                    },
                ) => Some((e.tenant_id.clone(), e.user_id.clone())),
                _ => None,
            })
            .collect();
        people.sort();
        people.dedup();
        let mut reads: Vec<_> = people
            .iter()
            .map(|(t, u)| {
                (
                    keys::slot(&keys::member(t, u), engage.partitions),
                    keys::stage(t, u),
                )
            })
            .collect();
        reads.push((slot, keys::SWEEPS.to_string()));
        let mut hashes = engage.store.hgetall_many(&reads).await?;
        let mut sweeps = keys::pending_sweeps(hashes.pop().unwrap_or_default());
        let mut stage_of: HashMap<(String, String), String> = HashMap::new();
        for (who, mut h) in people.into_iter().zip(hashes) {
            if let Some(s) = h.remove("s") {
                stage_of.insert(who, s);
            }
        }
        let reads: Vec<_> = buyers
            .iter()
            .map(|(t, u)| (slot, keys::offers(t, u)))
            .collect();
        let mut offers: HashMap<(String, String), HashMap<String, OfferRecord>> = HashMap::new();
        if !reads.is_empty() {
            for (who, h) in buyers.iter().zip(engage.store.hgetall_many(&reads).await?) {
                let recs = h
                    .into_iter()
                    .filter_map(|(c, raw)| Some((c, serde_json::from_str(&raw).ok()?)))
                    .collect();
                offers.insert(who.clone(), recs);
            }
        }
        let mut windows: HashMap<(String, String), i64> = HashMap::new();
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = mesh_bus::expected_through();
        let mut conversions = Vec::new();
        // Erasures of this batch: remembered for its later records, and
        // swept (offer index) once the batch is applied.
        let mut erased_here: HashSet<String> = HashSet::new();
        for (r, e) in events {
            let Some(e) = e else {
                batch.push(r.offset, Vec::new());
                continue;
            };
            let span =
                tracing::debug_span!("engage.apply", event_id = %e.event_id, offset = r.offset);
            let _ = span.set_parent(r.headers.trace_context());
            let member = erasure::member(&e.tenant_id, &e.user_id);
            if matches!(e.body, Some(Body::UserErased(_))) {
                let who = (e.tenant_id.clone(), e.user_id.clone());
                offers.remove(&who);
                stage_of.remove(&who);
                erased_here.insert(member);
                batch.push(
                    r.offset,
                    keys::erasure_ops(&e.tenant_id, &e.user_id, e.occurred_at_ms),
                );
                sweeps.push((e.tenant_id, e.user_id));
                continue;
            }
            if erased_here.contains(&member) {
                batch.push(r.offset, Vec::new());
                continue;
            }
            let mut ops = Vec::new();
            let stage = stage_of
                .get(&(e.tenant_id.clone(), e.user_id.clone()))
                .map(String::as_str);
            match &e.body {
                Some(Body::ProductView(v)) => ops.extend(observation_ops(
                    &e.tenant_id,
                    &v.sku,
                    &v.category,
                    v.price,
                    e.occurred_at_ms,
                    1,
                    0,
                    stage,
                )),
                Some(Body::OrderPlaced(o)) => {
                    for l in &o.items {
                        ops.extend(observation_ops(
                            &e.tenant_id,
                            &l.sku,
                            &l.category,
                            l.unit_price,
                            e.occurred_at_ms,
                            0,
                            i64::from(l.quantity),
                            stage,
                        ));
                    }
                    let who = (e.tenant_id.clone(), e.user_id.clone());
                    if let Some(recs) = offers.get_mut(&who) {
                        for (campaign, rec) in recs.iter_mut() {
                            if r.offset <= rec.last_offset {
                                continue;
                            }
                            let key = (e.tenant_id.clone(), campaign.clone());
                            let window = match windows.get(&key) {
                                Some(w) => *w,
                                None => {
                                    let w = engage
                                        .campaign(&e.tenant_id, campaign)
                                        .await?
                                        .map_or(7 * DAY_MS, |c| {
                                            (c.attribution_days * DAY_MS as f64) as i64
                                        });
                                    windows.insert(key, w);
                                    w
                                }
                            };
                            if !rec.attributes(e.occurred_at_ms, window) {
                                continue;
                            }
                            let was = rec.converted;
                            let revenue = if o.total.is_finite() {
                                o.total.max(0.0)
                            } else {
                                0.0
                            };
                            ops.extend(attribution_ops(&e.tenant_id, rec, revenue));
                            rec.last_offset = r.offset;
                            ops.push(Op::HSet {
                                key: keys::offers(&e.tenant_id, &e.user_id),
                                field: campaign.clone(),
                                value: serde_json::to_string(&*rec).expect("record serializes"),
                            });
                            conversions.push((
                                e.tenant_id.clone(),
                                e.user_id.clone(),
                                campaign.clone(),
                                rec.clone(),
                                was,
                                revenue,
                                o.order_id.clone(),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if !ops.is_empty() {
                ops.insert(0, erasure::guard(&member));
            }
            batch.push(r.offset, ops);
        }
        // The guard keeps an erased user's ops out of the store; responses
        // and bandit updates are skipped here (one read, only with some),
        // and none goes out from a store that went back: it may have
        // forgotten the erasure.
        if !conversions.is_empty() {
            let (gone, ()) = tokio::try_join!(
                engage.erased_among(conversions.iter().map(|(t, u, ..)| erasure::member(t, u))),
                not_behind(engage, &batch)
            )?;
            conversions.retain(|(t, u, ..)| !gone.contains(&erasure::member(t, u)));
        }
        // Responses go out before the state moves: a retry, or a re-read
        // after the store went back, re-sends them with the same ids; a
        // crash never loses them.
        for (tenant, user, campaign, rec, _, revenue, order_id) in &conversions {
            engage
                .publish_response(
                    tenant,
                    campaign,
                    user,
                    rec,
                    "conversion",
                    *revenue,
                    order_id,
                )
                .await?;
        }
        let applied = engage.store.apply(SCOPE, &batch).await?;
        self.sweep(slot, sweeps).await?;
        // Bandit rewards are compare-and-sets outside the batch's step, made
        // after it (a crash in between loses one reward, as a lost race
        // does): a store that went back took the bandit back with it, and
        // the re-read rewards again what it re-attributes.
        if applied.applied > 0 {
            for (tenant, _, campaign, rec, was, _, _) in &conversions {
                RESPONSES.with_label_values(&["conversion", "stream"]).inc();
                if !was && !rec.offer.is_empty() {
                    engage
                        .bandit_update(tenant, campaign, &rec.offer, &rec.context, 1.0, false)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

impl EngageHandler {
    /// Deletes the offer index of erased users (`(tenant, user)`: this
    /// batch's erasures and the sweeps found pending), after their erasures
    /// are applied: the guard then stops any `ChooseOffer` from adding to
    /// the lists read here. One read, then one step per user under its own
    /// source at offset 0 ([`keys::sweep_source`]), which also clears the
    /// user's pending mark; none without users.
    async fn sweep(
        &self,
        slot: Slot<'_>,
        mut users: Vec<(String, String)>,
    ) -> Result<(), crate::Error> {
        if users.is_empty() {
            return Ok(());
        }
        users.sort();
        users.dedup();
        let reads: Vec<_> = users
            .iter()
            .map(|(t, u)| HashRead::Keys {
                slot,
                key: keys::offer_ids(t, u),
            })
            .collect();
        let lists = self.engage.store.hread_many(&reads).await?;
        for ((t, u), list) in users.iter().zip(lists) {
            let ids = match list {
                HashReply::Keys(ids) => ids,
                HashReply::Fields(_) => Vec::new(),
            };
            let mut b = PartitionBatch::new(keys::sweep_source(t, u), slot.partition);
            b.push(0, keys::sweep_ops(t, u, &ids));
            self.engage.store.apply(SCOPE, &b).await?;
        }
        Ok(())
    }
}

impl Handler for EngageHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        self.apply(records).await.map_err(|e| match e {
            // Keeps a store that went back visible to the consumer.
            crate::Error::Store(s) => HandlerError::from(s),
            other => HandlerError(other.to_string()),
        })
    }

    /// The watermark of the partition's batches, for every topic: a
    /// partition's records are applied by one batch named after the topic
    /// in the partition's slot, which moves the watermark after (or with)
    /// every effect of its records.
    ///
    /// - Events: observations, attributions and erasures are in the batch.
    ///   The erasure's follow-up sweep is not, but it does not need a
    ///   re-read: the erasure's step marks it pending and the partition's
    ///   next batch finishes it ([`keys::SWEEPS`]).
    /// - Retention actions: each offer is written by `choose_offer` in the
    ///   user's slot (the alert's partition: churn keys alerts by user)
    ///   before the watermark moves, under a source of its own applied
    ///   once per alert. A store that went back may hold some offers of
    ///   alerts above its watermark (a snapshot taken mid-batch): the
    ///   re-read finds them and makes no second one; the others are made
    ///   again.
    /// - Stage transitions and market prices: the batch is their only
    ///   effect.
    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        Watermark::of(&self.engage.store, SCOPE, topic, partition).await
    }
}
