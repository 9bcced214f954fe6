//! Input from outside never panics the parser or the validator, and every
//! refusal names what was wrong.
use mesh_ingest::json::parse_body;
use mesh_ingest::validate::validate;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        match parse_body(&body) {
            Ok(items) => for it in items {
                if let Err(e) = it.parsed { prop_assert!(!e.reason.is_empty()); }
            },
            Err(e) => prop_assert!(!e.reason.is_empty()),
        }
    }

    #[test]
    fn mutated_events_are_parsed_or_refused_with_a_reason(
        user in "\\PC{0,20}",
        kind in prop_oneof![Just("order_placed"), Just("login"), Just("nope"), Just("review_submitted")],
        total in any::<f64>(),
        qty in any::<i64>(),
        rating in any::<i64>(),
        at in any::<i64>(),
    ) {
        let body = serde_json::json!({
            "event_id": "e", "tenant_id": "t", "user_id": user, "occurred_at_ms": at, "source": "s", "type": kind,
            "data": match kind {
                "order_placed" => serde_json::json!({"order_id": "o", "total": total, "currency": "USD",
                    "items": [{"sku": "a", "quantity": qty, "unit_price": 1.0}]}),
                "review_submitted" => serde_json::json!({"sku": "a", "rating": rating}),
                _ => serde_json::json!({}),
            }
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        for it in parse_body(&bytes).unwrap() {
            match it.parsed {
                Ok(e) => {
                    if let Err(v) = validate(&e, 1_800_000_000_000) {
                        prop_assert!(!v.reason.is_empty());
                    }
                }
                Err(e) => prop_assert!(!e.reason.is_empty()),
            }
        }
    }
}
