//! The publishing core shared by the gRPC and HTTP front doors: validate,
//! dead-letter what is invalid, drop retried ids, produce the rest and wait
//! for the broker's acknowledgement.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::headers::{self, HeaderList};
use mesh_bus::producer::Outgoing;
use mesh_bus::{Producer, TopicNames};
use mesh_proto::events::v1::{Envelope, EventKind, Topic};
use mesh_proto::ingest::v1::{PublishResponse, Rejection};
use mesh_store::{Claim, IdLedger};
use prost::Message;
use tokio::sync::Semaphore;

use crate::metrics;
use crate::validate::{validate, Invalid};

/// The most raw bytes of a rejected input kept on the dead-letter topic.
pub const MAX_DLQ_BYTES: usize = 256 * 1024;

/// One event as received, before validation.
pub struct Candidate {
    /// The input as the publisher sent it (JSON or protobuf bytes).
    pub raw: Vec<u8>,
    pub parsed: Result<Envelope, Invalid>,
}

impl Candidate {
    /// Binds the event to the caller's tenant when its token has one
    /// ([`mesh_runtime::auth`]): an event without a tenant gets the
    /// caller's; an event of another tenant is rejected (and kept on the
    /// dead-letter topic like any invalid event) with the field named.
    pub fn scoped_to(mut self, caller: Option<&mesh_runtime::auth::Caller>) -> Candidate {
        let Some(caller) = caller else { return self };
        if let Ok(e) = &mut self.parsed {
            match caller.scope_tenant(&e.tenant_id) {
                Ok(Some(t)) => e.tenant_id = t.to_string(),
                Ok(None) => {}
                Err(why) => self.parsed = Err(Invalid::new("tenant_id", why)),
            }
        }
        self
    }
}

/// Why a whole publish call failed. Events acknowledged before the failure
/// stay published; a retry with the same ids does not publish them again.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    TooLarge(String),
}

/// Shared by every request.
#[derive(Clone)]
pub struct Publisher {
    pub(crate) producer: Producer,
    pub(crate) ledger: IdLedger,
    pub(crate) topics: TopicNames,
    limiter: Arc<Semaphore>,
    pub(crate) max_batch: usize,
    admit_timeout: Duration,
}

impl Publisher {
    pub fn new(
        producer: Producer,
        ledger: IdLedger,
        topics: TopicNames,
        max_in_flight: usize,
        max_batch: usize,
    ) -> Self {
        Publisher {
            producer,
            ledger,
            topics,
            limiter: Arc::new(Semaphore::new(max_in_flight)),
            max_batch,
            admit_timeout: Duration::from_secs(2),
        }
    }

    /// Publishes a batch. `origin` (`grpc`, `http`) and `base_index` (the
    /// index of the first candidate within a stream) go into rejections and
    /// dead-letter headers.
    #[tracing::instrument(name = "ingest.publish", skip_all, fields(origin, events = items.len()))]
    pub async fn publish(
        &self,
        items: Vec<Candidate>,
        origin: &str,
        base_index: u32,
    ) -> Result<PublishResponse, PublishError> {
        if items.len() > self.max_batch {
            return Err(PublishError::TooLarge(format!(
                "{} events in one request; at most {} (split the batch)",
                items.len(),
                self.max_batch
            )));
        }
        let permits = items.len().max(1) as u32;
        let _permit = tokio::time::timeout(
            self.admit_timeout,
            self.limiter.clone().acquire_many_owned(permits),
        )
        .await
        .map_err(|_| {
            PublishError::Busy("ingest is at its in-flight limit; retry with backoff".into())
        })?
        .map_err(|_| PublishError::Unavailable("ingest is shutting down".into()))?;

        let now = now_ms();
        let mut resp = PublishResponse::default();
        let mut valid: Vec<(u32, Envelope)> = Vec::new();
        let mut dead: Vec<(u32, Vec<u8>, Invalid, Option<String>)> = Vec::new();
        let mut redacted = 0;
        for (i, c) in items.into_iter().enumerate() {
            let index = base_index + i as u32;
            // Personal data out of free text first (it may change a
            // text's length), then the rules.
            let parsed = c.parsed.map(|mut e| {
                redacted += crate::pii::redact_envelope(&mut e);
                e
            });
            match parsed.and_then(|e| validate(&e, now).map(|_| e)) {
                Ok(e) => valid.push((index, e)),
                Err(inv) => dead.push((index, redact_raw(c.raw, origin), inv, None)),
            }
        }
        metrics::REDACTED
            .with_label_values(&[origin])
            .inc_by(redacted as u64);
        // Keep every rejected input before anything is published: if the
        // dead-letter topic is down the caller retries the whole request.
        self.dead_letter(&dead, origin).await?;
        for (index, raw, inv, _) in &dead {
            resp.rejected.push(Rejection {
                index: *index,
                event_id: event_id_of(raw),
                field: inv.field.clone(),
                reason: inv.reason.clone(),
            });
        }
        metrics::REJECTED
            .with_label_values(&[origin])
            .inc_by(dead.len() as u64);
        dead.clear();

        // Within the request, the first copy of an id wins.
        let mut seen = HashSet::new();
        let mut fresh: Vec<(u32, Envelope)> = Vec::new();
        for (i, e) in valid {
            if seen.insert(ledger_key(&e)) {
                fresh.push((i, e));
            } else {
                resp.duplicates += 1;
            }
        }
        let keys: Vec<String> = fresh.iter().map(|(_, e)| ledger_key(e)).collect();
        let claims = self
            .ledger
            .claim(&keys)
            .await
            .map_err(|e| PublishError::Unavailable(format!("id ledger: {e}")))?;
        let mut mine: Vec<usize> = Vec::new();
        let mut pending: Vec<&str> = Vec::new();
        for (j, c) in claims.iter().enumerate() {
            match c {
                Claim::New => mine.push(j),
                Claim::Done => resp.duplicates += 1,
                Claim::Pending => pending.push(&fresh[j].1.event_id),
            }
        }
        if !pending.is_empty() {
            let ours: Vec<String> = mine.iter().map(|&j| keys[j].clone()).collect();
            let _ = self.ledger.release(&ours).await;
            return Err(PublishError::Unavailable(format!(
                "event ids {} are being published by another request; retry shortly",
                pending
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let events: Vec<&Envelope> = mine.iter().map(|&j| &fresh[j].1).collect();
        let results = self.send_all(&events).await;
        let (mut ok, mut failed, mut last_err) = (Vec::new(), Vec::new(), None);
        for (&j, r) in mine.iter().zip(results) {
            match r {
                Ok(()) => ok.push(keys[j].clone()),
                Err(e) => {
                    failed.push(keys[j].clone());
                    last_err = Some(e);
                }
            }
        }
        let mark = mark_done(&self.ledger, &ok).await;
        let _ = self.ledger.release(&failed).await;
        resp.accepted = ok.len() as u32;
        metrics::ACCEPTED
            .with_label_values(&[origin])
            .inc_by(ok.len() as u64);
        metrics::DUPLICATES
            .with_label_values(&[origin])
            .inc_by(resp.duplicates as u64);
        if let Some(e) = last_err {
            return Err(PublishError::Unavailable(format!(
                "{} of {} events were not acknowledged by the broker ({e}); retry the request — \
                 events already published are recognised by id and not published twice",
                failed.len(),
                mine.len()
            )));
        }
        if let Err(e) = mark {
            // Published but not recorded: a retry may publish again. Say so.
            tracing::warn!(%e, "published events could not be recorded in the id ledger");
        }
        Ok(resp)
    }

    /// Produces `events` as one batch ([`Producer::send_all`]): every
    /// record enqueued before any acknowledgement is awaited. An event is
    /// sent when all its records are (one per topic it belongs to).
    async fn send_all(&self, events: &[&Envelope]) -> Vec<Result<(), mesh_bus::Error>> {
        // The request's trace context, once for the batch.
        let trace = HeaderList::new().with_current_trace();
        let encoded: Vec<Encoded> = events.iter().map(|e| self.encode(e, &trace)).collect();
        let records: Vec<Outgoing> = encoded
            .iter()
            .flat_map(|enc| {
                enc.topics.iter().map(move |topic| Outgoing {
                    topic,
                    key: &enc.key,
                    payload: &enc.payload,
                    headers: &enc.headers,
                })
            })
            .collect();
        let mut results = self.producer.send_all(&records).await.into_iter();
        encoded
            .iter()
            .map(|enc| {
                let mut sent = Ok(());
                for r in results.by_ref().take(enc.topics.len()) {
                    if let (Err(e), Ok(())) = (r, &sent) {
                        sent = Err(e);
                    }
                }
                sent
            })
            .collect()
    }

    /// The record(s) of one event: payload, headers, key and topics.
    fn encode(&self, e: &Envelope, trace: &HeaderList) -> Encoded<'_> {
        let kind = e.kind().unwrap_or(EventKind::Login);
        let topics: &[&String] = match kind.topic() {
            Topic::User => &[&self.topics.user_events],
            Topic::Order => &[&self.topics.order_events],
            // In the user's partition of each topic, after what came before.
            Topic::Both => &[&self.topics.user_events, &self.topics.order_events],
        };
        let time = chrono::DateTime::from_timestamp_millis(e.occurred_at_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let mut headers = HeaderList::new()
            .with(headers::CE_SPECVERSION, "1.0")
            .with(headers::CE_ID, &e.event_id)
            .with(headers::CE_SOURCE, &e.source)
            .with(headers::CE_TYPE, format!("mesh.events.v1.{}", kind.name()))
            .with(headers::CE_TIME, time)
            .with(headers::CE_SUBJECT, &e.user_id)
            .with(headers::TENANT, &e.tenant_id)
            .with(headers::CONTENT_TYPE, "application/protobuf");
        headers.0.extend(trace.0.iter().cloned());
        Encoded {
            topics: topics.iter().map(|t| t.as_str()).collect(),
            key: e.user_key(),
            payload: e.encode_to_vec(),
            headers,
        }
    }

    /// Keeps every rejected input on the dead-letter topic, all enqueued
    /// at once ([`Producer::send_all`]); fails unless the broker
    /// acknowledged every one.
    async fn dead_letter(
        &self,
        dead: &[(u32, Vec<u8>, Invalid, Option<String>)],
        origin: &str,
    ) -> Result<(), PublishError> {
        if dead.is_empty() {
            return Ok(());
        }
        let trace = HeaderList::new().with_current_trace();
        let headers: Vec<HeaderList> = dead
            .iter()
            .map(|(index, raw, inv, _)| dead_letter_headers(inv, origin, *index, raw.len(), &trace))
            .collect();
        let records: Vec<Outgoing> = dead
            .iter()
            .zip(&headers)
            .map(|((_, raw, _, _), h)| Outgoing {
                topic: &self.topics.dead_letter,
                key: "rejected",
                payload: &raw[..raw.len().min(MAX_DLQ_BYTES)],
                headers: h,
            })
            .collect();
        let results = self.producer.send_all(&records).await;
        let kept = results.iter().filter(|r| r.is_ok()).count();
        metrics::DEAD_LETTERED
            .with_label_values(&[origin])
            .inc_by(kept as u64);
        match results.into_iter().find_map(Result::err) {
            Some(e) => Err(PublishError::Unavailable(format!(
                "dead-letter topic unavailable: {e}"
            ))),
            None => Ok(()),
        }
    }
}

/// Headers of one rejected input: why, which field, where from, and its
/// original size when the kept bytes are cut at [`MAX_DLQ_BYTES`].
fn dead_letter_headers(
    inv: &Invalid,
    origin: &str,
    index: u32,
    raw_len: usize,
    trace: &HeaderList,
) -> HeaderList {
    let mut h = HeaderList::new()
        .with(headers::DLQ_REASON, &inv.reason)
        .with(headers::DLQ_FIELD, &inv.field)
        .with(headers::DLQ_ORIGIN, origin)
        .with("mesh_dlq_index", index.to_string());
    h.0.extend(trace.0.iter().cloned());
    if raw_len > MAX_DLQ_BYTES {
        h.push("mesh_dlq_truncated_from", raw_len.to_string());
    }
    h
}

/// One event ready to produce.
struct Encoded<'t> {
    topics: Vec<&'t str>,
    key: String,
    payload: Vec<u8>,
    headers: HeaderList,
}

/// Records published ids as done, retried twice (after 50 and 250 ms):
/// marking is idempotent, and an id left pending makes a retry of its
/// request wait for the claim to expire, then publish it again.
async fn mark_done(ledger: &IdLedger, ids: &[String]) -> mesh_store::Result<()> {
    let mut result = ledger.mark_done(ids).await;
    for wait_ms in [50, 250] {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        metrics::LEDGER_RETRIES.inc();
        result = ledger.mark_done(ids).await;
    }
    result
}

fn ledger_key(e: &Envelope) -> String {
    format!("{}/{}", e.tenant_id, e.event_id)
}

/// Best effort: the id of a rejected input, for the response.
fn event_id_of(raw: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) {
        for k in ["event_id", "id"] {
            if let Some(s) = v.get(k).and_then(|x| x.as_str()) {
                return s.chars().take(128).collect();
            }
        }
    } else if let Ok(e) = Envelope::decode(raw) {
        return e.event_id.chars().take(128).collect();
    }
    String::new()
}

/// A rejected input as the dead-letter topic keeps it: JSON (the HTTP door)
/// is text, redacted like the events' free text; the gRPC door's bytes are
/// the envelope as parsed, whose free text was redacted before encoding.
fn redact_raw(raw: Vec<u8>, origin: &str) -> Vec<u8> {
    if origin != "http" {
        return raw;
    }
    match std::str::from_utf8(&raw) {
        Ok(text) => match crate::pii::redact(text) {
            (out, n) if n > 0 => out.into_bytes(),
            _ => raw,
        },
        Err(_) => raw,
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
