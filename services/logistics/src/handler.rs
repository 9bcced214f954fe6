//! The consumer side: order records of one partition in, one atomic store
//! step out; then (outside the exactly-once step) touched waves go to the
//! planner and delivery exceptions to the alerts topic.
//!
//! Alerts are published after the state step and before the offsets are
//! stored, so they are at-least-once; each carries a stable `alert_id`
//! derived from the event id for readers to drop duplicates.
//!
//! **A store that went back** (flushed, restored from an older snapshot, a
//! failover to a replica that missed writes). Both inputs opt in to the
//! consumer's resume from the store ([`Handler::applied_through`]): the
//! batch that moves an input partition's watermark (the order batch, the
//! decisions batch) carries [`mesh_bus::expected_through`], and an order
//! batch checks it before anything else, so a batch the store would refuse
//! moves no stock and publishes nothing; the consumer re-reads the
//! partition from the store's watermark (see [`Handler::applied_through`]
//! below for why that watermark covers the stock slots too). Each stock
//! slot's batch carries the last offset of the partition this process
//! applied in that slot ([`crate::stock::StockMarks`]), so a store that
//! goes back after the check, before the stock moves, refuses them too.
//!
//! **Erasure.** Every record of a user starts with the erasure guard (the
//! decisions too: they are keyed by the buyer, in the same slot). Stock
//! moves land in other slots and alerts and planning happen outside the
//! store, so a batch with such effects reads the `erased` hash for its
//! users first, in the round trip that reads the order hashes for stock,
//! and drops erased users' records whole. `user_erased` applies
//! [`fold::forget`] to the orders of the user's index (and of the batch),
//! then the waves they left are planned again.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use mesh_bus::headers::{self, HeaderList};
use mesh_bus::{Handler, HandlerError, Producer, Record, Watermark};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_proto::logistics::v1::{AlertKind, LogisticsAlert};
use mesh_store::{erasure, HashRead, HashReply, PartitionBatch, Slot, StateStore};
use prost::Message;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{ALERTS, EVENTS};
use crate::planner::PlannerHandle;
use crate::{fold, stock, wave, SCOPE};

pub struct LogisticsHandler {
    pub store: StateStore,
    pub producer: Producer,
    pub partitions: i32,
    pub dead_letter_topic: String,
    pub alerts_topic: String,
    pub group: String,
    pub default_warehouse: String,
    pub planner: PlannerHandle,
    /// Fraud's decisions topic (consumed with the orders).
    pub decisions_topic: String,
    /// Stock alert settings and the time source.
    pub inventory: crate::forecasting::Inventory,
    pub clock: crate::Clock,
    pub stock_alerts: crate::stock::AlertState,
    /// What this process applied in each stock slot, per input partition.
    pub stock_marks: crate::stock::StockMarks,
}

/// Publishes one alert, keyed by `key`.
pub async fn publish_alert(
    producer: &Producer,
    topic: &str,
    key: &str,
    alert: &LogisticsAlert,
) -> Result<(), mesh_bus::Error> {
    let kind = alert.kind().as_str_name();
    let h = HeaderList::new()
        .with(headers::CE_SPECVERSION, "1.0")
        .with(headers::CE_ID, &alert.alert_id)
        .with(headers::CE_SOURCE, "mesh-logistics")
        .with(headers::CE_TYPE, "mesh.logistics.v1.LogisticsAlert")
        .with(headers::CONTENT_TYPE, "application/protobuf")
        .with(headers::TENANT, &alert.tenant_id)
        .with_current_trace();
    producer
        .send(topic, key, &alert.encode_to_vec(), &h)
        .await?;
    ALERTS.with_label_values(&[kind]).inc();
    Ok(())
}

impl LogisticsHandler {
    async fn dead_letter(&self, r: &Record, err: prost::DecodeError) -> Result<(), HandlerError> {
        let h = r.dead_letter_headers(&format!("undecodable event envelope: {err}"), &self.group);
        self.producer
            .send(&self.dead_letter_topic, "undecodable", &r.payload, &h)
            .await
            .map_err(|e| HandlerError(format!("dead-letter: {e}")))?;
        Ok(())
    }

    /// Waves touched by the batch and delivery exceptions, read after the
    /// state step so the order hashes include this batch.
    async fn after_apply(&self, partition: i32, events: &[Envelope]) -> Result<(), HandlerError> {
        let slot = Slot {
            scope: SCOPE,
            partition,
        };
        let order_of = |e: &Envelope| -> Option<String> {
            Some(match e.body.as_ref()? {
                Body::OrderPlaced(o) => o.order_id.clone(),
                Body::PaymentAuthorized(p) => p.order_id.clone(),
                Body::OrderCancelled(c) => c.order_id.clone(),
                Body::OrderDelivered(d) => d.order_id.clone(),
                _ => return None,
            })
        };
        let relevant: Vec<(&Envelope, String)> = events
            .iter()
            .filter_map(|e| Some((e, order_of(e)?)))
            .collect();
        if relevant.is_empty() {
            return Ok(());
        }
        let keys: Vec<_> = relevant
            .iter()
            .map(|(e, o)| (slot, fold::order_key(&e.tenant_id, o)))
            .collect();
        let hashes = self
            .store
            .hgetall_many(&keys)
            .await
            .map_err(|e| HandlerError(format!("reading orders: {e}")))?;
        let mut touched = BTreeSet::new();
        for ((e, order), h) in relevant.iter().zip(hashes) {
            let Some(wave_id) = h.get("wave") else {
                continue;
            };
            touched.insert(wave_id.clone());
            let Some(Body::OrderDelivered(d)) = &e.body else {
                continue;
            };
            let to_ms: i64 = h.get("to_ms").and_then(|v| v.parse().ok()).unwrap_or(0);
            let (kind, detail) = if !d.success {
                (
                    AlertKind::DeliveryFailed,
                    format!("delivery failed: {}", d.failure_reason),
                )
            } else if to_ms > 0 && e.occurred_at_ms > to_ms {
                (
                    AlertKind::LateDelivery,
                    format!(
                        "delivered {} min after the promised window",
                        (e.occurred_at_ms - to_ms) / 60_000
                    ),
                )
            } else {
                continue;
            };
            let stop = fold::stop_id(&e.tenant_id, order);
            let vehicle = wave::load_plan(&self.store, self.partitions, wave_id)
                .await
                .ok()
                .flatten()
                .and_then(|p| p.vehicle_of(&stop))
                .map(|v| v as i32)
                .unwrap_or(-1);
            let alert = LogisticsAlert {
                alert_id: format!("logistics:{}", e.event_id),
                kind: kind as i32,
                tenant_id: e.tenant_id.clone(),
                order_id: order.clone(),
                wave_id: wave_id.clone(),
                warehouse: fold::WaveParts::parse(wave_id).warehouse.to_string(),
                detail,
                occurred_at_ms: e.occurred_at_ms,
                vehicle,
                ..Default::default()
            };
            publish_alert(&self.producer, &self.alerts_topic, &stop, &alert)
                .await
                .map_err(|e| HandlerError(format!("alert: {e}")))?;
        }
        for w in touched {
            self.planner.touch(&w);
        }
        Ok(())
    }
}

impl LogisticsHandler {
    /// Fraud's decisions: the action lands in field `fraud` of the order's
    /// hash (the decision is keyed by the buyer like the order, so it is in
    /// the same partition slot); a held order's wave is re-planned.
    async fn apply_decisions(&self, records: &[Record]) -> Result<(), HandlerError> {
        use mesh_proto::fraud::v1::Decision;
        let first = &records[0];
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        // One atomic step: a store that went back refuses it whole.
        batch.expect_through = mesh_bus::expected_through();
        let mut held = Vec::new();
        for r in records {
            let Ok(d) = Decision::decode(r.payload.as_slice()) else {
                // Not ours to judge: fraud's own output; skipped, not
                // dead-lettered (the record stays on fraud's topic).
                batch.push(r.offset, Vec::new());
                continue;
            };
            let action = d.action().as_str_name().to_string();
            let key = fold::order_key(&d.tenant_id, &d.order_id);
            if wave::holds(&action) {
                held.push(key.clone());
            }
            batch.push(
                r.offset,
                vec![
                    // An erased buyer's order hash is gone and stays gone.
                    erasure::guard(&erasure::member(&d.tenant_id, &d.user_id)),
                    mesh_store::Op::HSet {
                        key,
                        field: "fraud".into(),
                        value: action,
                    },
                ],
            );
        }
        self.store.apply(SCOPE, &batch).await?;
        if held.is_empty() {
            return Ok(());
        }
        let slot = Slot {
            scope: SCOPE,
            partition: first.partition,
        };
        let keys: Vec<_> = held.into_iter().map(|k| (slot, k)).collect();
        let hashes = self
            .store
            .hgetall_many(&keys)
            .await
            .map_err(|e| HandlerError(format!("reading orders: {e}")))?;
        for h in hashes {
            if let Some(w) = h.get("wave") {
                self.planner.touch(w);
            }
        }
        Ok(())
    }
}

impl LogisticsHandler {
    /// The error of a stock slot that refused a batch as behind what this
    /// process applied there. When the whole store went back (the order
    /// slot too, read now), the consumer re-reads from the order slot's
    /// watermark: the stock slots went back with it, and the moves this
    /// batch wrote before the refusal (in stock slots that lost nothing of
    /// this partition) are dropped by their watermarks on the re-read. A
    /// stock slot that went back alone lost moves no re-read
    /// can price again (a re-read placement finds its order placed, a
    /// cancellation its order restocked): that is logged, the marks are
    /// forgotten and the batch is retried without them.
    async fn stock_behind(
        &self,
        first: &Record,
        expect: Option<i64>,
        stock_slot: i32,
        stock_watermark: Option<i64>,
    ) -> HandlerError {
        self.stock_marks.forget(&first.topic, first.partition);
        let slot = Slot {
            scope: SCOPE,
            partition: first.partition,
        };
        let own = match self.store.watermark(slot, &first.topic).await {
            Ok(own) => own,
            Err(e) => return HandlerError(format!("stock slot {stock_slot} went back: {e}")),
        };
        match expect {
            Some(expected) if own < Some(expected) => {
                HandlerError::from(mesh_store::Error::Behind {
                    source_topic: first.topic.clone(),
                    partition: first.partition,
                    watermark: own,
                    expected,
                })
            }
            _ => {
                tracing::error!(topic = %first.topic, partition = first.partition, stock_slot,
                    ?stock_watermark, "a stock slot went back alone: stock moves of this partition \
                    after its watermark are lost; set the stock again");
                HandlerError(format!(
                    "stock slot {stock_slot} went back alone; retrying without its expectation"
                ))
            }
        }
    }

    /// Stock-out and reorder-point alerts of the stock this batch sold.
    async fn stock_alerts(
        &self,
        sold: &std::collections::BTreeMap<stock::StockKey, f64>,
    ) -> Result<(), HandlerError> {
        if sold.is_empty() {
            return Ok(());
        }
        let alerts = stock::alerts(
            &self.store,
            self.partitions,
            &self.inventory,
            &self.stock_alerts,
            sold,
            self.clock.now_ms(),
        )
        .await
        .map_err(|e| HandlerError(format!("stock alerts: {e}")))?;
        for a in alerts {
            let key = format!("{}/{}/{}", a.tenant_id, a.warehouse, a.sku);
            publish_alert(&self.producer, &self.alerts_topic, &key, &a)
                .await
                .map_err(|e| HandlerError(format!("alert: {e}")))?;
            self.stock_alerts.mark_sent(&a.alert_id);
        }
        Ok(())
    }
}

/// Stock needs these fields of an order hash read before the batch (see
/// [`stock::plan`]).
const STOCK_FIELDS: [&str; 5] = [
    "warehouse",
    "items",
    "shipped_at",
    stock::RESTOCKED,
    "placed_at",
];

/// Whether an event has effects outside its order batch (stock moves,
/// planner, alerts): only batches with one need the erasure read.
fn reaches_out(e: &Envelope) -> bool {
    matches!(
        e.body,
        Some(
            Body::OrderPlaced(_)
                | Body::PaymentAuthorized(_)
                | Body::OrderCancelled(_)
                | Body::OrderDelivered(_)
                | Body::UserErased(_)
        )
    )
}

impl LogisticsHandler {
    /// In one round trip: which of `members` are erased, and the stock
    /// fields of the orders in `keys`.
    async fn read_before(
        &self,
        partition: i32,
        members: &[String],
        keys: &[String],
    ) -> Result<(HashSet<String>, HashMap<String, HashMap<String, String>>), HandlerError> {
        let slot = Slot {
            scope: SCOPE,
            partition,
        };
        let mut reads = Vec::with_capacity(1 + keys.len());
        if !members.is_empty() {
            reads.push(HashRead::Fields {
                slot,
                key: erasure::KEY.into(),
                fields: members.to_vec(),
            });
        }
        reads.extend(keys.iter().map(|k| HashRead::Fields {
            slot,
            key: k.clone(),
            fields: STOCK_FIELDS.iter().map(|f| f.to_string()).collect(),
        }));
        let mut replies = self
            .store
            .hread_many(&reads)
            .await
            .map_err(|e| HandlerError(format!("reading orders: {e}")))?
            .into_iter()
            .map(|r| match r {
                HashReply::Fields(v) => v,
                HashReply::Keys(_) => Vec::new(),
            });
        let erased = if members.is_empty() {
            HashSet::new()
        } else {
            let v = replies.next().unwrap_or_default();
            members
                .iter()
                .zip(v)
                .filter(|(_, v)| v.is_some())
                .map(|(m, _)| m.clone())
                .collect()
        };
        let prior = keys
            .iter()
            .zip(replies)
            .map(|(k, v)| {
                let h = STOCK_FIELDS
                    .iter()
                    .zip(v)
                    .filter_map(|(f, v)| Some((f.to_string(), v?)))
                    .collect();
                (k.clone(), h)
            })
            .collect();
        Ok((erased, prior))
    }
}

impl Handler for LogisticsHandler {
    async fn handle(&self, records: &[Record]) -> Result<(), HandlerError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        if first.topic == self.decisions_topic {
            return self.apply_decisions(records).await;
        }
        // Before anything leaves the handler (dead letters, stock moves,
        // alerts): a store that lost what this consumer applied is re-read
        // from its watermark, not built on. The order batch checks again,
        // atomically, for a store that goes back meanwhile.
        let expect = mesh_bus::expected_through();
        if let Some(expected) = expect {
            let slot = Slot {
                scope: SCOPE,
                partition: first.partition,
            };
            let watermark = self.store.watermark(slot, &first.topic).await?;
            if watermark < Some(expected) {
                return Err(HandlerError::from(mesh_store::Error::Behind {
                    source_topic: first.topic.clone(),
                    partition: first.partition,
                    watermark,
                    expected,
                }));
            }
        }
        let mut decoded: Vec<(i64, Option<Envelope>)> = Vec::with_capacity(records.len());
        for r in records {
            match Envelope::decode(r.payload.as_slice()) {
                Ok(e) => decoded.push((r.offset, Some(e))),
                Err(err) => {
                    self.dead_letter(r, err).await?;
                    decoded.push((r.offset, None));
                }
            }
        }
        let events: Vec<(i64, Envelope)> = decoded
            .iter()
            .filter_map(|(o, e)| Some((*o, e.clone()?)))
            .collect();
        // Who is erased (already, or by an earlier record of this batch):
        // their records change nothing, here or in the stock slots, and
        // touch no wave. One round trip with the order hashes stock reads.
        let mut members: Vec<String> = events
            .iter()
            .filter(|(_, e)| reaches_out(e))
            .map(|(_, e)| e.user_key())
            .collect();
        members.sort();
        members.dedup();
        let keys = stock::keys_to_read(&events);
        let (mut erased, prior) = self.read_before(first.partition, &members, &keys).await?;
        let erasing: Vec<String> = events
            .iter()
            .filter(|(_, e)| matches!(e.body, Some(Body::UserErased(_))))
            .map(|(_, e)| e.user_key())
            .collect();
        let indexed = self
            .store
            .hgetall_many(
                &erasing
                    .iter()
                    .map(|m| {
                        let slot = Slot {
                            scope: SCOPE,
                            partition: first.partition,
                        };
                        (slot, fold::buyer_key(m))
                    })
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(|e| HandlerError(format!("reading erased users' orders: {e}")))?;
        // Per erased user, their orders (stop id → wave).
        let mut indexed: HashMap<String, BTreeMap<String, String>> = erasing
            .into_iter()
            .zip(indexed)
            .map(|(m, h)| (m, h.into_iter().collect()))
            .collect();
        // Per record: kept (an ordinary record of a user not erased), or
        // the orders of the user it erases.
        let mut forgets: HashMap<i64, (String, BTreeMap<String, String>)> = HashMap::new();
        let mut kept: Vec<(i64, Envelope)> = Vec::with_capacity(events.len());
        for (offset, e) in &events {
            let member = e.user_key();
            if let Some(Body::UserErased(_)) = e.body {
                let orders = indexed.remove(&member).unwrap_or_default();
                forgets.insert(*offset, (member.clone(), orders));
                erased.insert(member);
                continue;
            }
            if erased.contains(&member) {
                continue;
            }
            if let Some((stop, wave)) = fold::placement(e, &self.default_warehouse) {
                // Placed in this batch: the user's erasure later in the
                // batch deletes it with the stored ones.
                indexed
                    .entry(member.clone())
                    .or_default()
                    .insert(stop, wave);
            }
            kept.push((*offset, e.clone()));
        }
        // Stock first (see `stock`): its moves are priced from the order
        // hashes as they were before this batch.
        let mut moves = stock::plan(
            &first.topic,
            first.partition,
            self.partitions,
            &kept,
            &prior,
            &self.default_warehouse,
        );
        // Each stock slot expects what this process applied there for this
        // partition (see `stock::StockMarks`).
        let marks = self
            .stock_marks
            .of(&first.topic, first.partition, expect.is_some());
        for b in &mut moves.batches {
            b.expect_through = marks.get(&b.partition).copied();
        }
        for b in &moves.batches {
            match self.store.apply(SCOPE, b).await {
                Ok(_) => {}
                Err(mesh_store::Error::Behind { watermark, .. }) => {
                    return Err(self
                        .stock_behind(first, expect, b.partition, watermark)
                        .await);
                }
                Err(e) => return Err(HandlerError(format!("stock: {e}"))),
            }
        }
        self.stock_marks.applied(
            &first.topic,
            first.partition,
            moves
                .batches
                .iter()
                .filter_map(|b| Some((b.partition, b.last_offset()?))),
        );
        let mut batch = PartitionBatch::new(&first.topic, first.partition);
        batch.expect_through = expect;
        let mut by_offset: HashMap<i64, &Envelope> = kept.iter().map(|(o, e)| (*o, e)).collect();
        let mut forgotten_waves = BTreeSet::new();
        for r in records {
            if let Some((member, orders)) = forgets.get(&r.offset) {
                let at = events
                    .iter()
                    .find(|(o, _)| *o == r.offset)
                    .map_or(0, |(_, e)| e.occurred_at_ms);
                forgotten_waves.extend(orders.values().cloned());
                batch.push(r.offset, fold::forget(member, at, orders));
                continue;
            }
            let Some(e) = by_offset.remove(&r.offset) else {
                batch.push(r.offset, Vec::new());
                continue;
            };
            let span =
                tracing::info_span!("logistics.apply", event_id = %e.event_id, offset = r.offset);
            let _ = span.set_parent(r.headers.trace_context());
            let _g = span.enter();
            let mut ops = fold::ops(e, &self.default_warehouse);
            if !ops.is_empty() {
                let kind = e.kind().map(|k| k.name()).unwrap_or("unknown");
                EVENTS.with_label_values(&[kind]).inc();
            }
            ops.extend(moves.order_ops.remove(&r.offset).unwrap_or_default());
            if !ops.is_empty() {
                ops.insert(0, erasure::guard(&e.user_key()));
            }
            batch.push(r.offset, ops);
        }
        self.store.apply(SCOPE, &batch).await?;
        // The erased users' stops left their waves: plan them again.
        for w in forgotten_waves {
            self.planner.touch(&w);
        }
        let kept: Vec<Envelope> = kept.into_iter().map(|(_, e)| e).collect();
        self.after_apply(first.partition, &kept).await?;
        self.stock_alerts(&moves.sold).await
    }

    /// The store's watermark of `(topic, partition)` in the input
    /// partition's own slot: the order batch's, or the decisions batch's.
    ///
    /// For the order topic it covers every store effect of a record: the
    /// stock moves (batches per stock slot, pseudo source
    /// `stock<-<topic>[<partition>]`, see [`crate::stock`]) are applied
    /// *before* the order batch, so whatever the order batch applied, the
    /// stock slots applied too. A stock slot may be ahead of it (a snapshot
    /// taken between the two steps): the records are re-read, priced from
    /// the order hashes the snapshot holds (those before them, as the first
    /// time), and the stock slot's watermark, which went back with its
    /// counts, skips the moves it holds.
    /// A stock slot's own watermark could not stand in: it is the last
    /// offset that sold at that warehouse, behind the partition whenever
    /// the latest orders went elsewhere. Plans are derived state: the
    /// re-read touches the waves of its records and the planner plans them
    /// again from the store (a plan's version continues from the plan the
    /// store holds). Stock set over `SetStock` after the snapshot is not in
    /// any topic and stays lost.
    async fn applied_through(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Watermark, HandlerError> {
        Watermark::of(&self.store, SCOPE, topic, partition).await
    }
}
