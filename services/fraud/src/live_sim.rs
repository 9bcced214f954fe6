//! Labelled fraud traffic for a running mesh (`mesh up --simulate`), and the
//! two feedback loops a real shop has: a review team that resolves the
//! review queue, and chargebacks that arrive for fraud nobody stopped.
//!
//! The orders, payments and account events come from the fraud core's
//! seeded simulator ([`mesh_fraud::sim`]: legitimate users plus card
//! testing, account takeover, promotion abuse, reseller bots and friendly
//! fraud), converted to envelopes ([`envelope_of`], the inverse of
//! [`crate::convert`]) and published through ingest's gRPC API with their
//! simulated times moved so the last one is now. The driver keeps the
//! ground truth and plays the shop's side:
//! - every few seconds the review team takes the queue ([`GetReviewQueue`])
//!   and resolves each order with its true label ([`ResolveReview`]); orders
//!   that are not part of a fraud pattern (every order of other traffic
//!   included) are legitimate;
//! - some seconds after a fraud order was published, the driver asks its
//!   decision ([`GetDecision`]); an approved one comes back as a chargeback
//!   (`RefundIssued` with reason `chargeback`), which the fraud service
//!   counts as missed fraud ([`crate::metrics::CHARGEBACKS`]).
//!
//! Precision at the review budget is then the share of resolved reviews
//! labelled fraud, recall the confirmed fraud over confirmed fraud plus
//! chargebacks on approved orders: the figures the console shows.
//!
//! [`GetReviewQueue`]: mesh_proto::fraud::v1::GetReviewQueueRequest
//! [`ResolveReview`]: mesh_proto::fraud::v1::ResolveReviewRequest
//! [`GetDecision`]: mesh_proto::fraud::v1::GetDecisionRequest
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use mesh_fraud::sim::{simulate, SimEvent, SimParams};
use mesh_fraud::{AccountEventKind, Event};
use mesh_proto::events::v1 as ev;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::fraud::v1 as pb;
use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_runtime::auth::AuthChannel;
use tokio_util::sync::CancellationToken;

/// Reason of a chargeback refund.
pub const CHARGEBACK: &str = "chargeback";

/// Reviewer name the simulated review team signs with.
pub const REVIEWER: &str = "sim-review-team";

/// The envelope of one simulated event, `shift_ms` added to its time;
/// `None` for kinds without a wire form (account creation).
pub fn envelope_of(tenant: &str, id: &str, e: &Event, shift_ms: i64) -> Option<ev::Envelope> {
    let ms = |ts: i64| ts * 1000 + shift_ms;
    let ctx = |device: &str, ip: &str| ev::Context {
        device_type: "web".into(),
        device_hash: device.into(),
        ip_hash: ip.into(),
        ..Default::default()
    };
    let (user, at, context, body) = match e {
        Event::Order(o) => {
            let items = o
                .items
                .iter()
                .map(|it| ev::LineItem {
                    sku: format!("{}-{}", it.category, it.quantity),
                    category: it.category.clone(),
                    quantity: it.quantity.max(1),
                    unit_price: it.amount / f64::from(it.quantity.max(1)),
                    ..Default::default()
                })
                .collect();
            let ship = ev::Location {
                lat: o.shipping.lat,
                lon: o.shipping.lon,
                country: "DE".into(),
                region: o.shipping.region.clone(),
            };
            let bill = ev::Location {
                region: o.billing_region.clone(),
                ..ship.clone()
            };
            let body = Body::OrderPlaced(ev::OrderPlaced {
                order_id: o.order_id.clone(),
                items,
                subtotal: o.amount,
                total: o.amount,
                currency: "EUR".into(),
                payment_method: "card".into(),
                payment_hash: o.instrument_id.clone(),
                ship_to: Some(ship),
                bill_to: Some(bill),
                promo_code: o.promo_code.clone().unwrap_or_default(),
                // The simulated shop's warehouse: without one, logistics
                // planned these orders in waves of its default warehouse.
                warehouse_id: mesh_proto::sim::WAREHOUSE.into(),
                ..Default::default()
            });
            (&o.user_id, o.ts, ctx(&o.device_fp, &o.ip_fp), body)
        }
        Event::Payment(p) => {
            let body = if p.success {
                Body::PaymentAuthorized(ev::PaymentAuthorized {
                    order_id: p.order_id.clone(),
                    amount: p.amount,
                    currency: "EUR".into(),
                    payment_hash: p.instrument_id.clone(),
                })
            } else {
                Body::PaymentFailed(ev::PaymentFailed {
                    order_id: p.order_id.clone(),
                    amount: p.amount,
                    currency: "EUR".into(),
                    payment_hash: p.instrument_id.clone(),
                    ..Default::default()
                })
            };
            (&p.user_id, p.ts, ctx(&p.device_fp, &p.ip_fp), body)
        }
        Event::Account(a) => {
            let order = a.order_id.clone().unwrap_or_default();
            let body = match a.kind {
                AccountEventKind::Created => return None,
                AccountEventKind::Login => Body::Login(ev::Login {
                    success: true,
                    method: "password".into(),
                }),
                AccountEventKind::CredentialChange => {
                    Body::CredentialChanged(ev::CredentialChanged {
                        kind: "password".into(),
                    })
                }
                AccountEventKind::Refund => Body::RefundIssued(ev::RefundIssued {
                    order_id: order,
                    currency: "EUR".into(),
                    reason: "not_received".into(),
                    ..Default::default()
                }),
                AccountEventKind::Cancel => Body::OrderCancelled(ev::OrderCancelled {
                    order_id: order,
                    ..Default::default()
                }),
            };
            let device = a.device_fp.clone().unwrap_or_default();
            (&a.user_id, a.ts, ctx(&device, ""), body)
        }
    };
    Some(ev::Envelope {
        event_id: id.to_string(),
        tenant_id: tenant.to_string(),
        user_id: user.clone(),
        occurred_at_ms: ms(at),
        source: "fraud-sim".into(),
        context: Some(context),
        body: Some(body),
    })
}

/// One simulated event on the wire, with the order's ground truth.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub envelope: ev::Envelope,
    /// `Some(fraud)` for orders, `None` for other events.
    pub fraud: Option<bool>,
}

/// The seeded simulator's stream as envelopes of `tenant`, shifted so the
/// last event happens at `end_ms`. Ids are `<prefix>-<i>`; order ids are
/// prefixed too, so repeated runs never collide.
pub fn labelled_stream(
    params: &SimParams,
    tenant: &str,
    prefix: &str,
    end_ms: i64,
) -> mesh_fraud::Result<Vec<Labelled>> {
    let events: Vec<SimEvent> = simulate(params)?.collect();
    let on_wire = |e: &SimEvent| !matches!(&e.event, Event::Account(a) if a.kind == AccountEventKind::Created);
    let last = events
        .iter()
        .filter(|e| on_wire(e))
        .map(|e| e.event.ts())
        .max()
        .unwrap_or(0);
    let shift = end_ms - last * 1000;
    let mut out = Vec::with_capacity(events.len());
    for (i, s) in events.into_iter().enumerate() {
        let mut event = s.event;
        match &mut event {
            Event::Order(o) => o.order_id = format!("{prefix}-{}", o.order_id),
            Event::Payment(p) => p.order_id = format!("{prefix}-{}", p.order_id),
            Event::Account(a) => {
                if let Some(o) = &mut a.order_id {
                    *o = format!("{prefix}-{o}");
                }
            }
        }
        let is_order = matches!(event, Event::Order(_));
        if let Some(envelope) = envelope_of(tenant, &format!("{prefix}-{i}"), &event, shift) {
            out.push(Labelled {
                envelope,
                fraud: is_order.then_some(s.fraud),
            });
        }
    }
    Ok(out)
}

/// What the driver did, for its log line and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DriveStats {
    pub orders: u64,
    pub fraud_orders: u64,
    pub resolved_fraud: u64,
    pub resolved_legit: u64,
    pub chargebacks: u64,
}

/// Publishes labelled fraud traffic at about `orders_per_s` orders a second
/// (other events in between at the simulator's own mix) until `stop`,
/// resolves the review queue with the truth and files chargebacks for
/// approved fraud `chargeback_after` after the order. Each pass simulates
/// `params` with a new seed.
pub async fn drive(
    mut ingest: IngestServiceClient<AuthChannel>,
    mut fraud: FraudServiceClient<AuthChannel>,
    tenant: String,
    orders_per_s: f64,
    chargeback_after: Duration,
    stop: CancellationToken,
) -> DriveStats {
    let mut stats = DriveStats::default();
    let mut truth: HashMap<String, bool> = HashMap::new();
    // (due, user, order id, amount) of published fraud orders.
    let mut pending: VecDeque<(tokio::time::Instant, String, String, f64)> = VecDeque::new();
    let mut review_tick = tokio::time::interval(Duration::from_secs(3));
    let base_seed: u64 = rand::random();
    for pass in 0u64.. {
        let params = live_params(base_seed ^ pass);
        let now_ms = chrono_now_ms();
        let stream =
            match labelled_stream(&params, &tenant, &format!("fs{:x}", params.seed), now_ms) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%e, "fraud simulator failed");
                    return stats;
                }
            };
        let orders = stream.iter().filter(|l| l.fraud.is_some()).count().max(1);
        // Events per second that make `orders_per_s` orders a second.
        let rate = orders_per_s.max(0.1) * stream.len() as f64 / orders as f64;
        let chunk = ((rate / 5.0).ceil() as usize).clamp(1, 500);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(chunk as f64 / rate));
        for part in stream.chunks(chunk) {
            tokio::select! {
                _ = stop.cancelled() => return stats,
                _ = tick.tick() => {}
                // Not starved by a slow tick: reviews and chargebacks run here too.
            }
            let events: Vec<ev::Envelope> = part.iter().map(|l| l.envelope.clone()).collect();
            if let Err(e) = ingest.publish(PublishRequest { events }).await {
                tracing::debug!(%e, "fraud simulator publish failed");
                continue;
            }
            let due = tokio::time::Instant::now() + chargeback_after;
            for l in part {
                let (Some(f), Some(Body::OrderPlaced(o))) = (l.fraud, &l.envelope.body) else {
                    continue;
                };
                stats.orders += 1;
                truth.insert(o.order_id.clone(), f);
                if f {
                    stats.fraud_orders += 1;
                    pending.push_back((
                        due,
                        l.envelope.user_id.clone(),
                        o.order_id.clone(),
                        o.total,
                    ));
                }
            }
            if futures::FutureExt::now_or_never(review_tick.tick()).is_some() {
                resolve_queue(&mut fraud, &truth, &mut stats).await;
            }
            file_chargebacks(&mut ingest, &mut fraud, &tenant, &mut pending, &mut stats).await;
        }
        tracing::info!(
            orders = stats.orders,
            fraud_orders = stats.fraud_orders,
            resolved_fraud = stats.resolved_fraud,
            resolved_legit = stats.resolved_legit,
            chargebacks = stats.chargebacks,
            "fraud simulator pass done"
        );
        // Keep the truth of the last passes only.
        if truth.len() > 200_000 {
            truth.clear();
        }
    }
    stats
}

/// One pass of live fraud traffic: 400 users over 3 days with five times
/// the default incident rates, so a few minutes of traffic hold every
/// pattern (the training simulator's 10 days at default rates hold about
/// three incidents a day).
pub fn live_params(seed: u64) -> SimParams {
    let d = SimParams::default();
    SimParams {
        seed,
        users: 400,
        days: 3,
        card_testing_rate: 5.0 * d.card_testing_rate,
        account_takeover_rate: 5.0 * d.account_takeover_rate,
        promo_abuse_rate: 5.0 * d.promo_abuse_rate,
        reseller_bot_rate: 5.0 * d.reseller_bot_rate,
        friendly_fraud_rate: 5.0 * d.friendly_fraud_rate,
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// The review team: takes the queue and labels every order with its truth.
async fn resolve_queue(
    fraud: &mut FraudServiceClient<AuthChannel>,
    truth: &HashMap<String, bool>,
    stats: &mut DriveStats,
) {
    let queue = match fraud
        .get_review_queue(pb::GetReviewQueueRequest {
            tenant_id: String::new(),
            page_size: 200,
            page_token: String::new(),
        })
        .await
    {
        Ok(q) => q.into_inner().items,
        Err(e) => {
            tracing::debug!(%e, "review team: queue unavailable");
            return;
        }
    };
    for item in queue {
        let Some(d) = item.decision else { continue };
        let is_fraud = truth.get(&d.order_id).copied().unwrap_or(false);
        let label = if is_fraud {
            pb::Label::Fraud
        } else {
            pb::Label::Legit
        };
        match fraud
            .resolve_review(pb::ResolveReviewRequest {
                // Naming the tenant spares the service a search for it.
                tenant_id: d.tenant_id.clone(),
                order_id: d.order_id.clone(),
                label: label as i32,
                reviewer: REVIEWER.into(),
            })
            .await
        {
            Ok(r) if !r.get_ref().already_resolved => {
                if is_fraud {
                    stats.resolved_fraud += 1;
                } else {
                    stats.resolved_legit += 1;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%e, order = %d.order_id, "review team: resolve failed"),
        }
    }
}

/// Chargebacks: every fraud order whose time came and that was approved.
async fn file_chargebacks(
    ingest: &mut IngestServiceClient<AuthChannel>,
    fraud: &mut FraudServiceClient<AuthChannel>,
    tenant: &str,
    pending: &mut VecDeque<(tokio::time::Instant, String, String, f64)>,
    stats: &mut DriveStats,
) {
    let now = tokio::time::Instant::now();
    let mut events = Vec::new();
    // Orders the fraud service has not decided yet (it lags): asked again
    // later, up to ten times.
    let mut later = Vec::new();
    while pending.front().is_some_and(|p| p.0 <= now) {
        let Some((due, user, order, amount)) = pending.pop_front() else {
            break;
        };
        let decision = fraud
            .get_decision(pb::GetDecisionRequest {
                tenant_id: tenant.into(),
                user_id: user.clone(),
                order_id: order.clone(),
            })
            .await;
        let approved = match decision {
            Ok(d) => {
                let d = d.into_inner();
                if !d.found {
                    let tries = (due.elapsed().as_secs() / 5) as usize;
                    if tries < 10 {
                        later.push((now + Duration::from_secs(5), user, order, amount));
                    }
                    continue;
                }
                d.action == pb::Action::Approve as i32
            }
            Err(_) => false,
        };
        if !approved {
            continue;
        }
        stats.chargebacks += 1;
        events.push(ev::Envelope {
            event_id: format!("cb-{order}"),
            tenant_id: tenant.into(),
            user_id: user,
            occurred_at_ms: chrono_now_ms(),
            source: "payments".into(),
            context: None,
            body: Some(Body::RefundIssued(ev::RefundIssued {
                order_id: order,
                amount,
                currency: "EUR".into(),
                reason: CHARGEBACK.into(),
            })),
        });
    }
    pending.extend(later);
    if !events.is_empty() {
        if let Err(e) = ingest.publish(PublishRequest { events }).await {
            tracing::debug!(%e, "fraud simulator: chargebacks not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_orders_survive_the_wire_unchanged() {
        let params = SimParams {
            users: 60,
            days: 3,
            ..crate::scoring::quick_sim_params()
        };
        let originals: Vec<SimEvent> = simulate(&params).unwrap().collect();
        let shift = 1_000_000;
        let mut orders = 0;
        for (i, s) in originals.iter().enumerate() {
            let Some(env) = envelope_of("t", &format!("e{i}"), &s.event, shift) else {
                continue;
            };
            let back = crate::convert::event_from(&env).unwrap();
            if let (Event::Order(a), Some(Event::Order(b))) = (&s.event, back) {
                orders += 1;
                assert_eq!(b.order_id, a.order_id);
                assert_eq!(b.user_id, format!("t/{}", a.user_id));
                assert_eq!(b.ts, a.ts + shift / 1000);
                assert!((b.amount - a.amount).abs() < 1e-9);
                assert_eq!(b.device_fp, format!("t/{}", a.device_fp));
                assert_eq!(b.ip_fp, format!("t/{}", a.ip_fp));
                assert_eq!(b.instrument_id, format!("t/{}", a.instrument_id));
                assert_eq!(b.billing_region, a.billing_region);
                assert_eq!(b.promo_code, a.promo_code);
                let qa: u32 = a.items.iter().map(|x| x.quantity.max(1)).sum();
                let qb: u32 = b.items.iter().map(|x| x.quantity).sum();
                assert_eq!(qa, qb);
            }
        }
        assert!(orders > 10, "{orders} orders");
    }

    #[test]
    fn the_stream_ends_now_and_labels_every_order() {
        let params = SimParams {
            users: 200,
            days: 5,
            ..crate::scoring::quick_sim_params()
        };
        let s = labelled_stream(&params, "t", "p", 5_000_000_000_000).unwrap();
        let last = s.iter().map(|l| l.envelope.occurred_at_ms).max().unwrap();
        assert_eq!(last, 5_000_000_000_000);
        let orders: Vec<&Labelled> = s
            .iter()
            .filter(|l| matches!(l.envelope.body, Some(Body::OrderPlaced(_))))
            .collect();
        assert!(orders.iter().all(|l| l.fraud.is_some()));
        // Shipped from the simulated shop's warehouse, so logistics plans
        // them in its waves, not in a default warehouse's.
        assert!(orders.iter().all(|l| matches!(
            &l.envelope.body,
            Some(Body::OrderPlaced(o)) if o.warehouse_id == mesh_proto::sim::WAREHOUSE
        )));
        assert!(orders.iter().any(|l| l.fraud == Some(true)));
        assert!(s
            .iter()
            .filter(|l| !matches!(l.envelope.body, Some(Body::OrderPlaced(_))))
            .all(|l| l.fraud.is_none()));
    }
}
