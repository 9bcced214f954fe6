//! The shop's customers answering retention offers, for `mesh up
//! --simulate`.
//!
//! Engage answers churn's alerts with the retention campaign: an offer for
//! the treated, nothing for the control group, and an `OfferSent` on the
//! engagement topic either way. The simulated shop's own orders come at
//! real rates (a lapsed customer orders again in weeks, if ever), so in a
//! demo's minutes no offer would convert and the console's campaign would
//! show 0 conversions in both arms. This reader plays the customers: each
//! `OfferSent` of the shop's tenant converts with a known probability (the
//! control group's rate, or the rate of the offer the bandit chose) after a
//! short delay, as an order published through ingest, which engage
//! attributes from the order stream like any other. The rates are the
//! truth the campaign report should find.
//!
//! The reader assigns every partition without a consumer group, from the
//! beginning, and answers offers sent since shortly before it started;
//! each offer is answered once (by `offer_id`), its order id derived from
//! it, so a republished offer adds nothing.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mesh_bus::headers::{HeaderList, CE_TYPE};
use mesh_proto::engage::v1::OfferSent;
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_runtime::auth::AuthChannel;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

/// The cloud-event type engage publishes offers under.
const OFFER_SENT: &str = "mesh.engage.v1.OfferSent";

/// How the simulated customers answer: conversion probabilities and the
/// delay between the offer and the order.
#[derive(Debug, Clone)]
pub struct Responses {
    /// Probability that a control-group customer orders anyway.
    pub control: f64,
    /// Probability per offer name for treated customers.
    pub offers: HashMap<String, f64>,
    /// For an offer not in `offers`.
    pub other_offer: f64,
    /// The order comes uniformly between these after the offer.
    pub delay: (Duration, Duration),
}

impl Default for Responses {
    /// Engage's default retention offers: a bundle converts best, then a
    /// coupon, then a recommendation push; 5% of the control group order
    /// anyway.
    fn default() -> Self {
        Self {
            control: 0.05,
            offers: [
                ("bundle".to_string(), 0.30),
                ("coupon".to_string(), 0.20),
                ("recommendation_push".to_string(), 0.12),
            ]
            .into(),
            other_offer: 0.10,
            delay: (Duration::from_secs(5), Duration::from_secs(90)),
        }
    }
}

impl Responses {
    /// Whether the customer of `sent` orders, and after how long: `None`
    /// for no order, or for a decision without an arm (not eligible,
    /// capped).
    pub fn answer(&self, sent: &OfferSent, rng: &mut StdRng) -> Option<Duration> {
        let d = sent.decision.as_ref()?;
        let p = match d.arm.as_str() {
            "control" => self.control,
            "treatment" => self
                .offers
                .get(&d.offer)
                .copied()
                .unwrap_or(self.other_offer),
            _ => return None,
        };
        if !rng.random_bool(p.clamp(0.0, 1.0)) {
            return None;
        }
        let (lo, hi) = (self.delay.0.as_secs_f64(), self.delay.1.as_secs_f64());
        Some(Duration::from_secs_f64(if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        }))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Reads `topic` (engage's engagement topic, `partitions` of them) at
/// `brokers` and answers every `OfferSent` of `tenant` with
/// [`Responses::answer`], publishing the orders through `ingest`, until
/// `stop`. Returns the orders published.
pub async fn drive(
    brokers: &str,
    topic: &str,
    partitions: i32,
    mut ingest: IngestServiceClient<AuthChannel>,
    tenant: &str,
    responses: Responses,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let c =
        crate::console_stages::read_from_start(brokers, "mesh-sim-retention", topic, partitions)?;
    // Offers sent before this run (a broker kept from an earlier one) are
    // not answered.
    let since_ms = now_ms() - 60_000;
    let mut rng = StdRng::from_os_rng();
    let mut answered: HashSet<String> = HashSet::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<mesh_proto::events::v1::Envelope>();
    let mut published = 0u64;
    loop {
        let m = tokio::select! {
            _ = stop.cancelled() => return Ok(published),
            order = rx.recv() => {
                if let Some(order) = order {
                    match ingest.publish(PublishRequest { events: vec![order] }).await {
                        Ok(_) => published += 1,
                        Err(_) if stop.is_cancelled() => return Ok(published),
                        Err(e) => tracing::warn!(%e, "retention simulator publish failed"),
                    }
                }
                continue;
            }
            m = c.recv() => m,
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%e, "retention simulator read failed");
                continue;
            }
        };
        let headers = HeaderList::from_kafka(m.headers());
        if headers.get(CE_TYPE) != Some(OFFER_SENT)
            || m.timestamp().to_millis().is_some_and(|t| t < since_ms)
        {
            continue;
        }
        let Some(Ok(sent)) = m.payload().map(OfferSent::decode) else {
            continue;
        };
        if sent.tenant_id != tenant || !answered.insert(sent.offer_id.clone()) {
            continue;
        }
        let Some(after) = responses.answer(&sent, &mut rng) else {
            continue;
        };
        let order_rng = StdRng::seed_from_u64(rng.random());
        let (tx, stop) = (tx.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(after) => {
                    let mut r = order_rng;
                    let tag = sent.offer_id.replace('/', "-");
                    let order = mesh_proto::sim::answer_order(
                        &sent.tenant_id, &sent.user_id, &tag, now_ms(), &mut r,
                    );
                    let _ = tx.send(order);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::engage::v1::OfferDecision;

    fn sent(arm: &str, offer: &str) -> OfferSent {
        OfferSent {
            tenant_id: "demo".into(),
            user_id: "u".into(),
            offer_id: "a/offer".into(),
            decision: Some(OfferDecision {
                arm: arm.into(),
                offer: offer.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Over 20,000 draws each arm converts at its rate (±0.015, about 4.5
    /// standard errors), delays stay in range, and a decision without an
    /// arm never converts.
    #[test]
    fn customers_convert_at_the_rate_of_their_arm() {
        let r = Responses::default();
        let mut rng = StdRng::seed_from_u64(7);
        for (arm, offer, want) in [
            ("control", "", 0.05),
            ("treatment", "bundle", 0.30),
            ("treatment", "coupon", 0.20),
            ("treatment", "something-new", 0.10),
            ("", "", 0.0),
        ] {
            let s = sent(arm, offer);
            let mut n = 0;
            for _ in 0..20_000 {
                if let Some(d) = r.answer(&s, &mut rng) {
                    assert!(d >= r.delay.0 && d < r.delay.1, "{d:?}");
                    n += 1;
                }
            }
            let rate = n as f64 / 20_000.0;
            assert!(
                (rate - want).abs() < 0.015,
                "{arm}/{offer}: {rate} vs {want}"
            );
        }
        assert!(r.answer(&OfferSent::default(), &mut rng).is_none());
    }
}
