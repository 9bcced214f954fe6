//! The `tenant_id` of the review RPCs (`GetReviewQueue`, `ResolveReview`,
//! `ListLabels`): empty = every tenant's (admin, service, open mesh);
//! otherwise the RPC sees only that tenant's orders and labels, and another
//! tenant's order answers as one that does not exist.
//!
//! Order ids are the shop's own, so two tenants may use the same one: every
//! review field and queue member is `<tenant>/<order_id>`
//! ([`order_field`]), as the `decided` hash already was.
use crate::error::{Error, Result};

/// Longest tenant id (ingest accepts none longer).
pub const MAX_TENANT: usize = 64;

/// Checks a request's `tenant_id` by ingest's rule for the tenant of an
/// event (at most 64 bytes of letters, digits, `_`, `.`, `-`): a tenant no
/// event can carry owns nothing. Empty is valid (every tenant).
pub fn check(tenant: &str) -> Result<()> {
    let ok = tenant.len() <= MAX_TENANT
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        return Ok(());
    }
    Err(Error::invalid(
        "tenant_id",
        format!(
            "{} bytes; expected at most {MAX_TENANT} letters, digits, '_', '.', '-' (empty for every tenant)",
            tenant.len()
        ),
    ))
}

/// The field (and queue member) of an order: `<tenant>/<order_id>`. Tenant
/// ids hold no `/`, so the first one splits it back ([`split`]).
pub fn order_field(tenant: &str, order_id: &str) -> String {
    format!("{tenant}/{order_id}")
}

/// `(tenant, order_id)` of an [`order_field`]; `None` for a field written
/// before fields carried the tenant (a bare order id without `/`).
pub fn split(field: &str) -> Option<(&str, &str)> {
    field.split_once('/')
}

/// The tenant of an erasure member `<tenant>/<user>`.
pub fn of_member(member: &str) -> &str {
    member.split_once('/').map_or(member, |(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_the_ingest_rule() {
        assert!(check("").is_ok());
        assert!(check("shop-a_1.eu").is_ok());
        assert!(check(&"t".repeat(64)).is_ok());
        for bad in ["t".repeat(65), "a/b".into(), "shop a".into(), "é".into()] {
            let e = check(&bad).unwrap_err();
            assert!(e.to_string().starts_with("tenant_id:"), "{e}");
        }
    }

    #[test]
    fn order_fields_split_at_the_tenant() {
        assert_eq!(split(&order_field("shop", "o/1")), Some(("shop", "o/1")));
        assert_eq!(split("o1"), None);
        assert_eq!(of_member("shop/u/1"), "shop");
    }
}
