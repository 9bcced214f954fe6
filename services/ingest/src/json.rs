//! The HTTP JSON forms of an event: the mesh's own, and CloudEvents
//! structured mode. A request body is one event, an array of events, or
//! `{"events": [...]}`.
//!
//! Mesh form:
//! ```json
//! {"event_id": "e-1", "tenant_id": "shop", "user_id": "u-1",
//!  "occurred_at": "2026-11-28T10:00:00Z", "source": "checkout",
//!  "type": "order_placed", "context": {"device_type": "ios"},
//!  "data": {"order_id": "o-1", "items": [...], "total": 12.5, "currency": "EUR"}}
//! ```
//! `occurred_at` is RFC 3339 or Unix milliseconds (`occurred_at_ms`).
//!
//! CloudEvents form: `specversion`, `id`, `source`, `type` (the kind,
//! optionally prefixed `mesh.events.v1.`), `time`, `subject` (the user id),
//! the extension `tenantid`, optional extensions `devicetype`, `channel`,
//! `devicehash`, `iphash`, `sessionid`, and `data`.
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Context, Envelope, EventKind};
use serde_json::{Map, Value};

use crate::validate::Invalid;

/// One item of a request: its raw JSON (kept for the dead-letter topic) and
/// what it parsed to.
#[derive(Debug)]
pub struct Item {
    pub raw: Vec<u8>,
    pub parsed: Result<Envelope, Invalid>,
}

/// Splits a request body into items. Fails as a whole only when the body is
/// not JSON at all (or not UTF-8).
pub fn parse_body(body: &[u8]) -> Result<Vec<Item>, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let what = if std::str::from_utf8(body).is_err() {
            "body is not valid UTF-8 JSON"
        } else {
            "body is not valid JSON"
        };
        Invalid::new("", format!("{what}: {e}"))
    })?;
    let items = match value {
        Value::Array(v) => v,
        Value::Object(mut m)
            if m.get("events").is_some_and(Value::is_array) && !m.contains_key("type") =>
        {
            match m.remove("events") {
                Some(Value::Array(v)) => v,
                _ => unreachable!("checked to be an array"),
            }
        }
        v @ Value::Object(_) => vec![v],
        other => {
            return Err(Invalid::new(
                "",
                format!(
                    "expected an event object or an array of events, got {}",
                    kind_of(&other)
                ),
            ))
        }
    };
    Ok(items
        .into_iter()
        .map(|v| Item {
            raw: serde_json::to_vec(&v).unwrap_or_default(),
            parsed: parse_event(v),
        })
        .collect())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one event in either form.
pub fn parse_event(v: Value) -> Result<Envelope, Invalid> {
    let Value::Object(mut m) = v else {
        return Err(Invalid::new(
            "",
            format!("expected an event object, got {}", kind_of(&v)),
        ));
    };
    if m.contains_key("specversion") {
        parse_cloudevent(m)
    } else {
        let kind = kind_field(&mut m, "type")?;
        let occurred_at_ms = match (m.remove("occurred_at"), m.remove("occurred_at_ms")) {
            (Some(t), _) => time_value("occurred_at", t)?,
            (None, Some(t)) => time_value("occurred_at_ms", t)?,
            (None, None) => {
                return Err(Invalid::new(
                    "occurred_at",
                    "is required (RFC 3339 time or Unix ms)",
                ))
            }
        };
        let context = match m.remove("context") {
            None | Some(Value::Null) => None,
            Some(c) => Some(
                serde_json::from_value::<Context>(c)
                    .map_err(|e| Invalid::new("context", e.to_string()))?,
            ),
        };
        let data = m.remove("data").unwrap_or(Value::Object(Map::new()));
        let env = Envelope {
            event_id: string_field(&mut m, "event_id")?,
            tenant_id: string_field(&mut m, "tenant_id")?,
            user_id: string_field(&mut m, "user_id")?,
            occurred_at_ms,
            source: string_field(&mut m, "source")?,
            context,
            body: Some(body(kind, data)?),
        };
        if let Some(k) = m.keys().next() {
            return Err(Invalid::new(k.clone(), "unknown field; expected event_id, tenant_id, user_id, occurred_at, source, type, context, data"));
        }
        Ok(env)
    }
}

fn parse_cloudevent(mut m: Map<String, Value>) -> Result<Envelope, Invalid> {
    let spec = string_field(&mut m, "specversion")?;
    if spec != "1.0" {
        return Err(Invalid::new(
            "specversion",
            format!("{spec:?} is not supported; expected \"1.0\""),
        ));
    }
    let kind = kind_field(&mut m, "type")?;
    let occurred_at_ms = match m.remove("time") {
        Some(t) => time_value("time", t)?,
        None => {
            return Err(Invalid::new(
                "time",
                "is required for mesh events (RFC 3339)",
            ))
        }
    };
    if let Some(ct) = m.remove("datacontenttype") {
        if !ct
            .as_str()
            .is_some_and(|s| s.starts_with("application/json"))
        {
            return Err(Invalid::new(
                "datacontenttype",
                "only application/json data is accepted in structured mode",
            ));
        }
    }
    m.remove("dataschema");
    let mut ctx = Context::default();
    let mut any_ctx = false;
    for (ext, slot) in [
        ("devicetype", &mut ctx.device_type),
        ("channel", &mut ctx.channel),
        ("devicehash", &mut ctx.device_hash),
        ("iphash", &mut ctx.ip_hash),
        ("sessionid", &mut ctx.session_id),
        ("locale", &mut ctx.locale),
    ] {
        if m.contains_key(ext) {
            *slot = string_field(&mut m, ext)?;
            any_ctx = true;
        }
    }
    let data = m.remove("data").unwrap_or(Value::Object(Map::new()));
    let env = Envelope {
        event_id: string_field(&mut m, "id")?,
        tenant_id: string_field(&mut m, "tenantid")?,
        user_id: string_field(&mut m, "subject")?,
        occurred_at_ms,
        source: string_field(&mut m, "source")?,
        context: any_ctx.then_some(ctx),
        body: Some(body(kind, data)?),
    };
    if let Some(k) = m.keys().next() {
        return Err(Invalid::new(
            k.clone(),
            "unknown CloudEvents attribute for mesh events",
        ));
    }
    Ok(env)
}

fn string_field(m: &mut Map<String, Value>, name: &str) -> Result<String, Invalid> {
    match m.remove(name) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Number(n)) if name.ends_with("id") => Ok(n.to_string()),
        Some(other) => Err(Invalid::new(
            name,
            format!("expected a string, got {}", kind_of(&other)),
        )),
        None => Err(Invalid::new(name, "is required")),
    }
}

fn kind_field(m: &mut Map<String, Value>, name: &str) -> Result<EventKind, Invalid> {
    let t = string_field(m, name)?;
    let bare = t.strip_prefix("mesh.events.v1.").unwrap_or(&t);
    EventKind::from_name(bare).ok_or_else(|| {
        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
        Invalid::new(
            name,
            format!(
                "unknown event type {t:?}; expected one of {}",
                known.join(", ")
            ),
        )
    })
}

fn time_value(field: &str, v: Value) -> Result<i64, Invalid> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| Invalid::new(field, "expected whole Unix milliseconds")),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| Invalid::new(field, format!("{s:?} is not an RFC 3339 time ({e})"))),
        other => Err(Invalid::new(
            field,
            format!(
                "expected an RFC 3339 string or Unix ms, got {}",
                kind_of(&other)
            ),
        )),
    }
}

fn body(kind: EventKind, data: Value) -> Result<Body, Invalid> {
    fn de<T: serde::de::DeserializeOwned>(kind: EventKind, data: Value) -> Result<T, Invalid> {
        serde_json::from_value(data)
            .map_err(|e| Invalid::new(format!("data ({kind})"), e.to_string()))
    }
    Ok(match kind {
        EventKind::SessionStarted => Body::SessionStarted(de(kind, data)?),
        EventKind::PageView => Body::PageView(de(kind, data)?),
        EventKind::ProductView => Body::ProductView(de(kind, data)?),
        EventKind::Search => Body::Search(de(kind, data)?),
        EventKind::AddToCart => Body::AddToCart(de(kind, data)?),
        EventKind::RemoveFromCart => Body::RemoveFromCart(de(kind, data)?),
        EventKind::CheckoutStarted => Body::CheckoutStarted(de(kind, data)?),
        EventKind::OrderPlaced => Body::OrderPlaced(de(kind, data)?),
        EventKind::PaymentAuthorized => Body::PaymentAuthorized(de(kind, data)?),
        EventKind::PaymentFailed => Body::PaymentFailed(de(kind, data)?),
        EventKind::OrderCancelled => Body::OrderCancelled(de(kind, data)?),
        EventKind::OrderShipped => Body::OrderShipped(de(kind, data)?),
        EventKind::OrderDelivered => Body::OrderDelivered(de(kind, data)?),
        EventKind::RefundIssued => Body::RefundIssued(de(kind, data)?),
        EventKind::ReviewSubmitted => Body::ReviewSubmitted(de(kind, data)?),
        EventKind::SupportMessage => Body::SupportMessage(de(kind, data)?),
        EventKind::Login => Body::Login(de(kind, data)?),
        EventKind::CredentialChanged => Body::CredentialChanged(de(kind, data)?),
        EventKind::UserErased => Body::UserErased(de(kind, data)?),
    })
}

/// The mesh JSON form of an envelope (used by the simulator and tests).
pub fn to_json(e: &Envelope) -> Value {
    let (kind, data) = match &e.body {
        Some(b) => (EventKind::of(b).name(), body_json(b)),
        None => ("", Value::Null),
    };
    let mut m = Map::new();
    m.insert("event_id".into(), e.event_id.clone().into());
    m.insert("tenant_id".into(), e.tenant_id.clone().into());
    m.insert("user_id".into(), e.user_id.clone().into());
    m.insert("occurred_at_ms".into(), e.occurred_at_ms.into());
    m.insert("source".into(), e.source.clone().into());
    m.insert("type".into(), kind.into());
    if let Some(c) = &e.context {
        m.insert(
            "context".into(),
            serde_json::to_value(c).unwrap_or_default(),
        );
    }
    m.insert("data".into(), data);
    Value::Object(m)
}

fn body_json(b: &Body) -> Value {
    let v = match b {
        Body::SessionStarted(x) => serde_json::to_value(x),
        Body::PageView(x) => serde_json::to_value(x),
        Body::ProductView(x) => serde_json::to_value(x),
        Body::Search(x) => serde_json::to_value(x),
        Body::AddToCart(x) => serde_json::to_value(x),
        Body::RemoveFromCart(x) => serde_json::to_value(x),
        Body::CheckoutStarted(x) => serde_json::to_value(x),
        Body::OrderPlaced(x) => serde_json::to_value(x),
        Body::PaymentAuthorized(x) => serde_json::to_value(x),
        Body::PaymentFailed(x) => serde_json::to_value(x),
        Body::OrderCancelled(x) => serde_json::to_value(x),
        Body::OrderShipped(x) => serde_json::to_value(x),
        Body::OrderDelivered(x) => serde_json::to_value(x),
        Body::RefundIssued(x) => serde_json::to_value(x),
        Body::ReviewSubmitted(x) => serde_json::to_value(x),
        Body::SupportMessage(x) => serde_json::to_value(x),
        Body::Login(x) => serde_json::to_value(x),
        Body::CredentialChanged(x) => serde_json::to_value(x),
        Body::UserErased(x) => serde_json::to_value(x),
    };
    v.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_to_the_same_envelope() {
        let mesh = r#"{"event_id":"e1","tenant_id":"t","user_id":"u","occurred_at":"2026-01-01T00:00:00Z",
            "source":"web","type":"product_view","context":{"device_type":"ios"},"data":{"sku":"s1","price":3.5}}"#;
        let ce = r#"{"specversion":"1.0","id":"e1","tenantid":"t","subject":"u","time":"2026-01-01T00:00:00Z",
            "source":"web","type":"mesh.events.v1.product_view","devicetype":"ios","data":{"sku":"s1","price":3.5}}"#;
        let a = parse_body(mesh.as_bytes())
            .unwrap()
            .remove(0)
            .parsed
            .unwrap();
        let b = parse_body(ce.as_bytes()).unwrap().remove(0).parsed.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.occurred_at_ms, 1_767_225_600_000);
        // Round trip through the mesh form.
        let back = parse_event(to_json(&a)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn batches_are_split_and_bad_items_named() {
        let body = r#"[{"event_id":"a"},{"event_id":"b","tenant_id":"t","user_id":"u","occurred_at_ms":1,"source":"s","type":"teleport"},
            {"event_id":"c","tenant_id":"t","user_id":"u","occurred_at_ms":1,"source":"s","type":"login","data":{"bogus":1}}]"#;
        let items = parse_body(body.as_bytes()).unwrap();
        assert_eq!(items.len(), 3);
        let errs: Vec<Invalid> = items.into_iter().map(|i| i.parsed.unwrap_err()).collect();
        assert_eq!(errs[0].field, "type");
        assert!(
            errs[1].reason.contains("unknown event type \"teleport\""),
            "{}",
            errs[1]
        );
        assert!(errs[2].reason.contains("bogus"), "{}", errs[2]);
    }

    #[test]
    fn invalid_utf8_and_malformed_json_are_named() {
        assert!(parse_body(b"{\"event_id\": \"\xff\"}")
            .unwrap_err()
            .reason
            .contains("UTF-8"));
        assert!(parse_body(b"{not json")
            .unwrap_err()
            .reason
            .contains("not valid JSON"));
        assert!(parse_body(b"42").unwrap_err().reason.contains("a number"));
    }
}
