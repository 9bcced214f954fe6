//! Validation of one event: every rule names the field and says what was
//! expected, so a publisher can fix the event from the message alone.
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, Location};
use prost::Message;

/// Events may not claim to have happened further ahead than this.
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;
/// 2000-01-01T00:00:00Z: nothing in the mesh happened earlier.
pub const MIN_OCCURRED_AT_MS: i64 = 946_684_800_000;
/// Largest encoded event.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest short string (ids, skus, names).
pub const MAX_SHORT: usize = 256;
/// Longest free text (reviews, support messages, search queries).
pub const MAX_TEXT: usize = 10_000;
/// Most lines in one order.
pub const MAX_LINES: usize = 1000;

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Path of the offending field, e.g. `order_placed.items[2].quantity`.
    pub field: String,
    /// What was wrong and what was expected.
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

type V = Result<(), Invalid>;

/// Checks an envelope against every rule; `now_ms` is the mesh's clock.
pub fn validate(e: &Envelope, now_ms: i64) -> V {
    id(
        "event_id",
        &e.event_id,
        128,
        |c| c.is_ascii_graphic(),
        "printable ASCII without spaces",
    )?;
    id(
        "tenant_id",
        &e.tenant_id,
        64,
        |c| c.is_ascii_alphanumeric() || "_.-".contains(c),
        "letters, digits, '_', '.', '-'",
    )?;
    id(
        "user_id",
        &e.user_id,
        128,
        |c| !c.is_control(),
        "no control characters",
    )?;
    id(
        "source",
        &e.source,
        64,
        |c| !c.is_control(),
        "no control characters",
    )?;
    if e.occurred_at_ms < MIN_OCCURRED_AT_MS {
        return Err(Invalid::new(
            "occurred_at_ms",
            format!(
                "{} is before 2000-01-01; expected Unix epoch milliseconds",
                e.occurred_at_ms
            ),
        ));
    }
    if e.occurred_at_ms > now_ms + MAX_FUTURE_MS {
        return Err(Invalid::new(
            "occurred_at_ms",
            format!(
                "{} is {} s ahead of the mesh clock; at most {} s ahead is accepted",
                e.occurred_at_ms,
                (e.occurred_at_ms - now_ms) / 1000,
                MAX_FUTURE_MS / 1000
            ),
        ));
    }
    if let Some(c) = &e.context {
        for (name, v) in [
            ("device_type", &c.device_type),
            ("channel", &c.channel),
            ("device_hash", &c.device_hash),
            ("ip_hash", &c.ip_hash),
            ("session_id", &c.session_id),
            ("locale", &c.locale),
        ] {
            short(&format!("context.{name}"), v)?;
        }
    }
    let Some(body) = &e.body else {
        return Err(Invalid::new(
            "body",
            "no event body; set exactly one of the event kinds (e.g. order_placed)",
        ));
    };
    body_rules(body)?;
    let len = e.encoded_len();
    if len > MAX_EVENT_BYTES {
        return Err(Invalid::new(
            "",
            format!("event is {len} bytes encoded; at most {MAX_EVENT_BYTES} accepted"),
        ));
    }
    Ok(())
}

fn body_rules(body: &Body) -> V {
    match body {
        Body::SessionStarted(b) => {
            short("session_started.referrer", &b.referrer)?;
            short("session_started.campaign_id", &b.campaign_id)
        }
        Body::PageView(b) => {
            short("page_view.path", &b.path)?;
            amount("page_view.dwell_seconds", b.dwell_seconds)
        }
        Body::ProductView(b) => {
            required("product_view.sku", &b.sku)?;
            short("product_view.category", &b.category)?;
            short("product_view.brand", &b.brand)?;
            amount("product_view.price", b.price)?;
            optional_currency("product_view.currency", &b.currency)?;
            amount("product_view.dwell_seconds", b.dwell_seconds)
        }
        Body::Search(b) => text("search.query", &b.query, 1024),
        Body::AddToCart(b) => {
            required("add_to_cart.sku", &b.sku)?;
            short("add_to_cart.category", &b.category)?;
            positive("add_to_cart.quantity", b.quantity)?;
            amount("add_to_cart.unit_price", b.unit_price)?;
            optional_currency("add_to_cart.currency", &b.currency)
        }
        Body::RemoveFromCart(b) => {
            required("remove_from_cart.sku", &b.sku)?;
            positive("remove_from_cart.quantity", b.quantity)
        }
        Body::CheckoutStarted(b) => {
            short("checkout_started.cart_id", &b.cart_id)?;
            amount("checkout_started.cart_total", b.cart_total)?;
            optional_currency("checkout_started.currency", &b.currency)
        }
        Body::OrderPlaced(b) => {
            required("order_placed.order_id", &b.order_id)?;
            if b.items.is_empty() {
                return Err(Invalid::new(
                    "order_placed.items",
                    "an order needs at least one line item",
                ));
            }
            if b.items.len() > MAX_LINES {
                return Err(Invalid::new(
                    "order_placed.items",
                    format!("{} lines; at most {MAX_LINES}", b.items.len()),
                ));
            }
            for (i, it) in b.items.iter().enumerate() {
                line(&format!("order_placed.items[{i}]"), it)?;
            }
            for (f, v) in [
                ("subtotal", b.subtotal),
                ("shipping_fee", b.shipping_fee),
                ("tax", b.tax),
                ("total", b.total),
            ] {
                amount(&format!("order_placed.{f}"), v)?;
            }
            currency("order_placed.currency", &b.currency)?;
            short("order_placed.payment_method", &b.payment_method)?;
            short("order_placed.payment_hash", &b.payment_hash)?;
            short("order_placed.promo_code", &b.promo_code)?;
            short("order_placed.warehouse_id", &b.warehouse_id)?;
            if let Some(l) = &b.ship_to {
                location("order_placed.ship_to", l)?;
            }
            if let Some(l) = &b.bill_to {
                location("order_placed.bill_to", l)?;
            }
            if b.promised_to_ms < b.promised_from_ms {
                return Err(Invalid::new(
                    "order_placed.promised_to_ms",
                    "the promised window ends before it starts",
                ));
            }
            Ok(())
        }
        Body::PaymentAuthorized(b) => {
            required("payment_authorized.order_id", &b.order_id)?;
            amount("payment_authorized.amount", b.amount)?;
            currency("payment_authorized.currency", &b.currency)?;
            short("payment_authorized.payment_hash", &b.payment_hash)
        }
        Body::PaymentFailed(b) => {
            required("payment_failed.order_id", &b.order_id)?;
            amount("payment_failed.amount", b.amount)?;
            currency("payment_failed.currency", &b.currency)?;
            short("payment_failed.payment_hash", &b.payment_hash)?;
            short("payment_failed.reason", &b.reason)
        }
        Body::OrderCancelled(b) => {
            required("order_cancelled.order_id", &b.order_id)?;
            short("order_cancelled.reason", &b.reason)
        }
        Body::OrderShipped(b) => {
            required("order_shipped.order_id", &b.order_id)?;
            short("order_shipped.carrier", &b.carrier)?;
            short("order_shipped.tracking_id", &b.tracking_id)?;
            short("order_shipped.warehouse_id", &b.warehouse_id)
        }
        Body::OrderDelivered(b) => {
            required("order_delivered.order_id", &b.order_id)?;
            short("order_delivered.failure_reason", &b.failure_reason)
        }
        Body::RefundIssued(b) => {
            required("refund_issued.order_id", &b.order_id)?;
            amount("refund_issued.amount", b.amount)?;
            currency("refund_issued.currency", &b.currency)?;
            short("refund_issued.reason", &b.reason)
        }
        Body::ReviewSubmitted(b) => {
            required("review_submitted.sku", &b.sku)?;
            if !(1..=5).contains(&b.rating) {
                return Err(Invalid::new(
                    "review_submitted.rating",
                    format!("{} is not a star rating; expected 1..=5", b.rating),
                ));
            }
            text("review_submitted.text", &b.text, MAX_TEXT)?;
            short("review_submitted.order_id", &b.order_id)
        }
        Body::SupportMessage(b) => {
            short("support_message.ticket_id", &b.ticket_id)?;
            if b.text.trim().is_empty() {
                return Err(Invalid::new(
                    "support_message.text",
                    "is empty; a support message needs text",
                ));
            }
            text("support_message.text", &b.text, MAX_TEXT)?;
            short("support_message.channel", &b.channel)
        }
        Body::Login(b) => short("login.method", &b.method),
        Body::CredentialChanged(b) => required("credential_changed.kind", &b.kind),
        Body::UserErased(b) => short("user_erased.reason", &b.reason),
    }
}

fn id(field: &str, v: &str, max: usize, ok: impl Fn(char) -> bool, expected: &str) -> V {
    if v.is_empty() {
        return Err(Invalid::new(field, "is required"));
    }
    if v.len() > max {
        return Err(Invalid::new(
            field,
            format!("is {} bytes; at most {max}", v.len()),
        ));
    }
    if let Some(c) = v.chars().find(|c| !ok(*c)) {
        return Err(Invalid::new(
            field,
            format!("contains {c:?}; expected {expected}"),
        ));
    }
    Ok(())
}

fn required(field: &str, v: &str) -> V {
    if v.trim().is_empty() {
        return Err(Invalid::new(field, "is required"));
    }
    short(field, v)
}

fn short(field: &str, v: &str) -> V {
    text(field, v, MAX_SHORT)?;
    if v.chars().any(char::is_control) {
        return Err(Invalid::new(field, "contains control characters"));
    }
    Ok(())
}

fn text(field: &str, v: &str, max: usize) -> V {
    if v.len() > max {
        return Err(Invalid::new(
            field,
            format!("is {} bytes; at most {max}", v.len()),
        ));
    }
    Ok(())
}

fn amount(field: &str, v: f64) -> V {
    if !v.is_finite() {
        return Err(Invalid::new(field, "is not a finite number"));
    }
    if v < 0.0 {
        return Err(Invalid::new(field, format!("is {v}; amounts must be >= 0")));
    }
    Ok(())
}

fn positive(field: &str, v: u32) -> V {
    if v == 0 {
        return Err(Invalid::new(field, "is 0; expected at least 1"));
    }
    Ok(())
}

fn line(path: &str, it: &LineItem) -> V {
    required(&format!("{path}.sku"), &it.sku)?;
    short(&format!("{path}.category"), &it.category)?;
    short(&format!("{path}.brand"), &it.brand)?;
    positive(&format!("{path}.quantity"), it.quantity)?;
    amount(&format!("{path}.unit_price"), it.unit_price)?;
    amount(&format!("{path}.unit_discount"), it.unit_discount)
}

fn location(path: &str, l: &Location) -> V {
    if !(l.lat.is_finite() && (-90.0..=90.0).contains(&l.lat)) {
        return Err(Invalid::new(
            format!("{path}.lat"),
            format!("{} is not a latitude; expected -90..=90", l.lat),
        ));
    }
    if !(l.lon.is_finite() && (-180.0..=180.0).contains(&l.lon)) {
        return Err(Invalid::new(
            format!("{path}.lon"),
            format!("{} is not a longitude; expected -180..=180", l.lon),
        ));
    }
    let iso_alpha2 = l.country.len() == 2 && l.country.chars().all(|c| c.is_ascii_uppercase());
    if !l.country.is_empty() && !iso_alpha2 {
        return Err(Invalid::new(
            format!("{path}.country"),
            format!(
                "{:?} is not an ISO 3166-1 alpha-2 code like \"US\"",
                l.country
            ),
        ));
    }
    short(&format!("{path}.region"), &l.region)
}

fn optional_currency(field: &str, v: &str) -> V {
    if v.is_empty() {
        Ok(())
    } else {
        currency(field, v)
    }
}

fn currency(field: &str, v: &str) -> V {
    if v.is_empty() {
        return Err(Invalid::new(
            field,
            "is required; expected an ISO 4217 code like \"USD\"",
        ));
    }
    if ISO_4217.binary_search(&v).is_err() {
        return Err(Invalid::new(
            field,
            format!("{v:?} is not an ISO 4217 currency code (e.g. \"USD\", \"EUR\", \"CNY\")"),
        ));
    }
    Ok(())
}

/// Active ISO 4217 codes, sorted for binary search.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::events::v1::{OrderPlaced, ReviewSubmitted};

    const NOW: i64 = 1_800_000_000_000;

    fn order(items: Vec<LineItem>, total: f64, currency: &str) -> Envelope {
        Envelope {
            event_id: "e-1".into(),
            tenant_id: "shop".into(),
            user_id: "u1".into(),
            occurred_at_ms: NOW - 1000,
            source: "checkout".into(),
            context: None,
            body: Some(Body::OrderPlaced(OrderPlaced {
                order_id: "o1".into(),
                items,
                total,
                currency: currency.into(),
                ..Default::default()
            })),
        }
    }

    fn item(q: u32, p: f64) -> LineItem {
        LineItem {
            sku: "s1".into(),
            quantity: q,
            unit_price: p,
            ..Default::default()
        }
    }

    #[test]
    fn iso_table_is_sorted() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_good_order_passes() {
        assert_eq!(
            validate(&order(vec![item(1, 9.5)], 9.5, "USD"), NOW),
            Ok(())
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            (
                order(vec![item(1, -1.0)], 1.0, "USD"),
                "order_placed.items[0].unit_price",
            ),
            (
                order(vec![item(0, 1.0)], 1.0, "USD"),
                "order_placed.items[0].quantity",
            ),
            (order(vec![item(1, 1.0)], -5.0, "USD"), "order_placed.total"),
            (
                order(vec![item(1, 1.0)], 1.0, "usd"),
                "order_placed.currency",
            ),
            (
                order(vec![item(1, 1.0)], 1.0, "XXX"),
                "order_placed.currency",
            ),
            (order(vec![], 1.0, "USD"), "order_placed.items"),
            (
                order(vec![item(1, f64::NAN)], 1.0, "USD"),
                "order_placed.items[0].unit_price",
            ),
        ];
        for (e, field) in cases {
            assert_eq!(validate(&e, NOW).unwrap_err().field, field);
        }
        let mut e = order(vec![item(1, 1.0)], 1.0, "USD");
        e.user_id.clear();
        assert_eq!(validate(&e, NOW).unwrap_err().field, "user_id");
        e.user_id = "u".into();
        e.occurred_at_ms = NOW + 365 * 86_400_000;
        let err = validate(&e, NOW).unwrap_err();
        assert_eq!(err.field, "occurred_at_ms");
        assert!(err.reason.contains("ahead"), "{err}");
        e.occurred_at_ms = NOW;
        e.body = None;
        assert_eq!(validate(&e, NOW).unwrap_err().field, "body");
        e.body = Some(Body::ReviewSubmitted(ReviewSubmitted {
            sku: "s".into(),
            rating: 6,
            ..Default::default()
        }));
        assert_eq!(
            validate(&e, NOW).unwrap_err().field,
            "review_submitted.rating"
        );
        e.body = Some(Body::ReviewSubmitted(ReviewSubmitted {
            sku: "s".into(),
            rating: 4,
            text: "x".repeat(20_000),
            ..Default::default()
        }));
        assert_eq!(
            validate(&e, NOW).unwrap_err().field,
            "review_submitted.text"
        );
    }
}
