//! The consumer: user and order events feed price observations (per
//! viewer lifecycle stage) and attribute orders to offers; churn's retention
//! actions on the alerts topic get an offer from the retention campaign;
//! profile's stage transitions and the platform's market prices are kept for
//! the pricer.
//!
//! **Erasure.** A `user_erased` event deletes the user's offer records and
//! stage and records the erasure in the same step as the batch
//! ([`keys::erasure_ops`]); once that step is done the user's offer index
//! entries are deleted ([`keys::sweep_ops`], under its own watermark so a
//! crash in between is finished on redelivery). Every other record of a
//! user (views, orders, stage transitions) starts with the erasure guard.
//! What the guard cannot stop is read first, once per batch and only in a
//! batch that has it: a batch with conversions reads the erasure of their
//! users before publishing responses or updating a bandit, and a batch of
//! retention actions reads it before choosing offers. An erasure earlier in
//! the same batch is remembered in memory.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mesh_bus::headers;
use mesh_bus::{Handler, HandlerError, Record};
use mesh_proto::churn::v1::RetentionAction;
use mesh_proto::engage::v1::MarketPrice;
use mesh_proto::events::v1::{envelope::Body, Envelope};
use mesh_proto::profile::v1::{Stage, StageTransition};
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, Slot};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::engine::{attribution_ops, Engage, OfferRecord, RETENTION_CAMPAIGN};
use crate::keys::{self, SCOPE};
use crate::metrics::RESPONSES;

const DAY_MS: i64 = 86_400_000;

pub struct EngageHandler {
    pub engage: Arc<Engage>,
    pub alerts_topic: String,
    pub lifecycle_topic: String,
    pub market_topic: String,
    pub dead_letter_topic: String,
    pub group: String,
}

/// Price as a field name: cents, so float noise does not split a price;
/// the viewer's lifecycle stage last when known.
pub fn price_field(day: i64, price: f64, kind: char, stage: Option<&str>) -> String {
    let cents = (price * 100.0).round() as i64;
    match stage {
        Some(s) => format!("{day}|{cents}|{kind}|{s}"),
        None => format!("{day}|{cents}|{kind}"),
    }
}

/// A market price as the platform sent it, checked.
fn market_price(r: &Record) -> Result<MarketPrice, String> {
    let m = MarketPrice::decode(r.payload.as_slice())
        .map_err(|e| format!("undecodable MarketPrice: {e}"))?;
    if m.tenant_id.trim().is_empty() {
        return Err("MarketPrice.tenant_id is required".into());
    }
    if m.sku.trim().is_empty() || m.sku.len() > 256 {
        return Err("MarketPrice.sku is required, 1..=256 bytes".into());
    }
    if m.source.trim().is_empty() || m.source.len() > 64 || m.source.contains('|') {
        return Err("MarketPrice.source is required, 1..=64 bytes without '|'".into());
    }
    if !(m.price.is_finite() && m.price > 0.0) {
        return Err(format!(
            "MarketPrice.price {} must be finite and > 0",
            m.price
        ));
    }
    if m.observed_at_ms <= 0 {
        return Err("MarketPrice.observed_at_ms is required".into());
    }
    Ok(m)
}

/// Ops of one product view or order line for pricing.
#[allow(clippy::too_many_arguments)]
fn observation_ops(
    tenant: &str,
    sku: &str,
    category: &str,
    price: f64,
    at_ms: i64,
    views: i64,
    units: i64,
    stage: Option<&str>,
) -> Vec<Op> {
    if sku.is_empty() || !(price.is_finite() && price > 0.0) {
        return Vec::new();
    }
    let day = at_ms.div_euclid(DAY_MS);
    let obs = keys::observations(tenant, sku);
    let item = keys::item(tenant, sku);
    let mut ops = Vec::new();
    if views > 0 {
        ops.push(Op::HIncr {
            key: obs.clone(),
            field: price_field(day, price, 'v', stage),
            delta: views,
        });
        // The latest price shown is the item's base price.
        ops.extend([
            Op::HMax {
                key: item.clone(),
                field: "seen_ms".into(),
                value: at_ms,
            },
            Op::HSet {
                key: item.clone(),
                field: "price".into(),
                value: price.to_string(),
            },
        ]);
    }
    if units > 0 {
        ops.push(Op::HIncr {
            key: obs,
            field: price_field(day, price, 'u', stage),
            delta: units,
        });
    }
    ops.push(Op::HSetNx {
        key: item.clone(),
        field: "list".into(),
        value: price.to_string(),
    });
    if !category.is_empty() {
        ops.push(Op::HSet {
            key: item,
            field: "category".into(),
            value: category.into(),
        });
    }
    ops.push(Op::ZSet {
        key: keys::ITEMS.into(),
        member: keys::member(tenant, sku),
        score: at_ms as f64,
    });
    ops
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
        let actions: Vec<_> = records
            .iter()
            .map(|r| {
                (r.headers.get(headers::CE_TYPE) == Some("mesh.churn.v1.RetentionAction"))
                    .then(|| RetentionAction::decode(r.payload.as_slice()))
            })
            .collect();
        let erased = self
            .engage
            .erased_among(actions.iter().filter_map(|a| match a {
                Some(Ok(a)) => Some(erasure::member(&a.tenant_id, &a.user_id)),
                _ => None,
            }))
            .await?;
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
        // The lifecycle stage of everyone who viewed or bought, one read.
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
        let stage_reads: Vec<_> = people
            .iter()
            .map(|(t, u)| {
                (
                    keys::slot(&keys::member(t, u), engage.partitions),
                    keys::stage(t, u),
                )
            })
            .collect();
        let mut stage_of: HashMap<(String, String), String> = HashMap::new();
        if !stage_reads.is_empty() {
            for (who, mut h) in people
                .into_iter()
                .zip(engage.store.hgetall_many(&stage_reads).await?)
            {
                if let Some(s) = h.remove("s") {
                    stage_of.insert(who, s);
                }
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
        let mut conversions = Vec::new();
        // Erasures of this batch: remembered for its later records, and
        // swept (offer index) once the batch is applied.
        let mut erased_here: HashSet<String> = HashSet::new();
        let mut erasures: Vec<(i64, String, String)> = Vec::new();
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
                erasures.push((r.offset, e.tenant_id, e.user_id));
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
        // and bandit updates are skipped here (one read, only with some).
        if !conversions.is_empty() {
            let gone = engage
                .erased_among(conversions.iter().map(|(t, u, ..)| erasure::member(t, u)))
                .await?;
            conversions.retain(|(t, u, ..)| !gone.contains(&erasure::member(t, u)));
        }
        // Responses go out before the state moves: a retry re-sends them with
        // the same ids, a crash never loses them.
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
        self.sweep(slot, &first.topic, &erasures).await?;
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
    /// Deletes the offer index of the users erased at `erasures` (offset,
    /// tenant, user), after the erasures are applied: the guard then stops
    /// any `ChooseOffer` from adding to the lists read here. One read and
    /// one step under the source `<topic>/erasure`, none without erasures.
    async fn sweep(
        &self,
        slot: Slot<'_>,
        topic: &str,
        erasures: &[(i64, String, String)],
    ) -> Result<(), crate::Error> {
        if erasures.is_empty() {
            return Ok(());
        }
        let reads: Vec<_> = erasures
            .iter()
            .map(|(_, t, u)| HashRead::Keys {
                slot,
                key: keys::offer_ids(t, u),
            })
            .collect();
        let lists = self.engage.store.hread_many(&reads).await?;
        let mut b = PartitionBatch::new(format!("{topic}/erasure"), slot.partition);
        for ((offset, t, u), list) in erasures.iter().zip(lists) {
            let ids = match list {
                HashReply::Keys(ids) => ids,
                HashReply::Fields(_) => Vec::new(),
            };
            b.push(*offset, keys::sweep_ops(t, u, &ids));
        }
        self.engage.store.apply(SCOPE, &b).await?;
        Ok(())
    }
}

impl Handler for EngageHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        self.apply(records)
            .await
            .map_err(|e| HandlerError(e.to_string()))
    }
}
