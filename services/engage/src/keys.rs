//! Key names in the store and the slot that owns each.
//!
//! A user's offer records and the campaign counters they feed live in the
//! user's slot (`partition_for("<tenant>/<user>")`, the partition that
//! consumes the user's events), so attributing an order is one atomic step
//! with the consumer's watermark; a campaign's counters are therefore kept
//! as one shard per partition and summed when read. Price observations are
//! sharded the same way. A campaign's definition and bandit, an item's quote
//! and bounds live in their own home slot.
//!
//! # Erasure
//! Everything that names a user lives in the user's slot: the offer records
//! ([`offers`]), the stage ([`stage`]), the offer index entries ([`offer`],
//! written in the same step as the record they point to) and the list of
//! those entries ([`offer_ids`]). A `user_erased` event deletes the first
//! two with the erasure record ([`erasure_ops`]); the index entries are
//! then deleted from the list ([`sweep_ops`]), which no write of the user
//! can grow once the erasure is recorded. The erasure leaves a marker in
//! the slot's [`SWEEPS`] hash that only the sweep removes, so a sweep that
//! did not happen (a crash after the erasure's step, or a store restored
//! from a snapshot taken in between) is found and done by the partition's
//! next batch. Campaign counters ([`stats`]), price observations and the
//! bandits stay: they are sums over users.
use mesh_bus::partition::partition_for;
use mesh_store::{erasure, Op, Slot};

/// Scope of every engage key.
pub const SCOPE: &str = "engage";

/// Keys that no topic can rebuild: campaigns and their bandits, offers,
/// their index and counters (from `ChooseOffer`), bounds (from
/// `SetPriceBounds`), ad deliveries and the CTR model
/// (`RecordAdDeliveries`), ad returns (`ReportAdSpend`), and the sweeps an
/// erasure left pending (a replayed erasure is skipped by its own guard, so
/// it cannot mark them again).
pub const REPLAY_KEEPS: &[&str] = &[
    "tenants",
    "camp:",
    "camps:",
    "offers:",
    "offer:",
    "offer-ids:",
    "stats:",
    "bounds:",
    "adcnt:",
    "ctrm:",
    "roas:",
    SWEEPS,
];

/// The slot that owns `home` (e.g. `<tenant>/<user>`).
pub fn slot(home: &str, partitions: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition: partition_for(home, partitions),
    }
}

/// Slot of partition `p`.
pub fn shard(partition: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition,
    }
}

/// `<tenant>/<id>`: the home of a user, item, campaign or offer.
pub fn member(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

/// A campaign: fields `def` (hex protobuf), `bandit` (JSON), `bver`.
pub fn campaign(tenant: &str, id: &str) -> String {
    format!("camp:{tenant}/{id}")
}

/// A tenant's campaign ids (field = id, value = created ms), in the
/// tenant's slot.
pub fn campaigns(tenant: &str) -> String {
    format!("camps:{tenant}")
}

/// Tenants with a campaign (field = tenant), in slot 0.
pub const TENANTS: &str = "tenants";

/// A user's offer records: field = campaign id, value = JSON
/// [`crate::engine::OfferRecord`].
pub fn offers(tenant: &str, user: &str) -> String {
    format!("offers:{tenant}/{user}")
}

/// Where an offer went (fields `user`, `campaign`), in the user's slot
/// (entries written before erasure existed are in the offer's slot):
/// `RecordResponse` knows only the offer id, so it reads every shard.
pub fn offer(tenant: &str, offer_id: &str) -> String {
    format!("offer:{tenant}/{offer_id}")
}

/// The user's [`offer`] index entries (field = offer id, value = campaign
/// id), in the user's slot: what an erasure deletes them from.
pub fn offer_ids(tenant: &str, user: &str) -> String {
    format!("offer-ids:{tenant}/{user}")
}

/// Watermark source of a one-off write about an offer (`kind` `offer` or
/// `response/<kind>`): a 128-bit hash of the offer id, not the id itself,
/// because retention offer ids name the user (`<tenant>/<user>/<n>/offer`)
/// and a watermark field outlives the user's erasure.
pub fn offer_source(kind: &str, offer_id: &str) -> String {
    use mesh_engage::stats::stable_hash;
    let id = offer_id.as_bytes();
    format!(
        "{kind}/{:016x}{:016x}",
        stable_hash(&[b"offer-source-a", id]),
        stable_hash(&[b"offer-source-b", id])
    )
}

/// Erased users of one slot whose offer index is not swept yet (hash,
/// field = `<tenant>/<user>`, value = JSON `[tenant, user]`): set in the
/// erasure's step ([`erasure_ops`]), removed in the sweep's ([`sweep_ops`]).
pub const SWEEPS: &str = "sweeps";

/// Watermark source of the sweep of one erased user's offer index, at
/// offset 0: the sweep is applied once (hashed like [`offer_source`]; the
/// user is erased).
pub fn sweep_source(tenant: &str, user: &str) -> String {
    offer_source("sweep", &erasure::member(tenant, user))
}

/// One partition's shard of a campaign's counters.
pub fn stats(tenant: &str, campaign: &str) -> String {
    format!("stats:{tenant}/{campaign}")
}

/// One partition's shard of an item's price observations: fields
/// `<day>|<price>|v` (views) and `<day>|<price>|u` (units sold), with
/// `|<stage>` appended when the viewer's lifecycle stage is known.
pub fn observations(tenant: &str, sku: &str) -> String {
    format!("obs:{tenant}/{sku}")
}

/// Items seen in a partition (member `<tenant>/<sku>`, score = last seen ms).
pub const ITEMS: &str = "items";

/// One partition's view of an item: `price` and `seen_ms` of the latest
/// price seen, `list` (the first price seen), `category`.
pub fn item(tenant: &str, sku: &str) -> String {
    format!("item:{tenant}/{sku}")
}

/// An item's quote (fields `price`, `base`, `source`, `day`, `day_price`,
/// `explanation` JSON, `at_ms`), in the item's slot.
pub fn quote(tenant: &str, sku: &str) -> String {
    format!("quote:{tenant}/{sku}")
}

/// Market prices of an item (field = source, value `<price>|<observed ms>`),
/// in the item's slot (the market-prices topic is keyed by `<tenant>/<sku>`).
pub fn market(tenant: &str, sku: &str) -> String {
    format!("mkt:{tenant}/{sku}")
}

/// A user's lifecycle stage (field `s`, the stage name), from profile's
/// transitions, in the user's slot (the lifecycle topic is keyed by
/// `<tenant>/<user>`).
pub fn stage(tenant: &str, user: &str) -> String {
    format!("stage:{tenant}/{user}")
}

/// An item's pricing bounds (JSON field `json`), in the item's slot.
pub fn bounds(tenant: &str, sku: &str) -> String {
    format!("bounds:{tenant}/{sku}")
}

/// A tenant's ad deliveries, in the tenant's slot: fields
/// `i|<creative>|<segment>|<placement>` (impressions) and `c|...` (clicks).
pub fn ad_counts(tenant: &str) -> String {
    format!("adcnt:{tenant}")
}

/// A tenant's CTR model, in the tenant's slot: fields `model` (JSON),
/// `impressions` (fitted on) and `ver` (compare-and-set version).
pub fn ctr_model(tenant: &str) -> String {
    format!("ctrm:{tenant}")
}

/// A tenant's ad returns, in the tenant's slot: fields `<campaign>|s`
/// (spend), `|r` (revenue), `|q` (Σ revenue²/spend), `|n` (reports).
pub fn roas(tenant: &str) -> String {
    format!("roas:{tenant}")
}

/// The ops of a `user_erased` event, in the user's slot: the guard first (a
/// second erasure changes nothing), the user's offer records (campaign and
/// arm, offers sent, frequency-cap times, context, CUPED pre-period spend,
/// attributed orders) and stage deleted, the sweep marked pending
/// ([`SWEEPS`]) and the erasure recorded. The offer index is left to
/// [`sweep_ops`], which must run after these.
pub fn erasure_ops(tenant: &str, user: &str, at_ms: i64) -> Vec<Op> {
    let member = erasure::member(tenant, user);
    vec![
        erasure::guard(&member),
        Op::Del {
            key: offers(tenant, user),
        },
        Op::Del {
            key: stage(tenant, user),
        },
        Op::HSet {
            key: SWEEPS.into(),
            field: member.clone(),
            value: serde_json::json!([tenant, user]).to_string(),
        },
        erasure::record(&member, at_ms),
    ]
}

/// Deletes the user's offer index entries (`offer_ids`, the fields of the
/// user's [`offer_ids`] read after the erasure was recorded), the list and
/// the pending mark. Idempotent: a retry or a second erasure finds nothing
/// left.
pub fn sweep_ops(tenant: &str, user: &str, offer_ids_: &[String]) -> Vec<Op> {
    offer_ids_
        .iter()
        .map(|id| Op::Del {
            key: offer(tenant, id),
        })
        .chain([
            Op::Del {
                key: offer_ids(tenant, user),
            },
            Op::HDel {
                key: SWEEPS.into(),
                field: erasure::member(tenant, user),
            },
        ])
        .collect()
}

/// The users of a [`SWEEPS`] hash, `(tenant, user)`; a value that is not
/// the JSON pair the erasure wrote is left out.
pub fn pending_sweeps(hash: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    hash.into_iter()
        .filter_map(|(_, v)| serde_json::from_str(&v).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_sources_do_not_name_the_user_and_differ_per_offer() {
        let a = offer_source("offer", "shop/u1/3/offer");
        assert!(a.starts_with("offer/") && !a.contains("u1"), "{a}");
        assert_eq!(a, offer_source("offer", "shop/u1/3/offer"));
        assert_ne!(a, offer_source("offer", "shop/u1/4/offer"));
        assert_ne!(a, offer_source("response/click", "shop/u1/3/offer"));
    }

    #[test]
    fn erasure_guards_first_and_records_last() {
        let ops = erasure_ops("t", "u", 5);
        assert!(matches!(ops.first(), Some(Op::Unless { .. })));
        assert!(matches!(ops.last(), Some(Op::HSet { key, .. }) if key == erasure::KEY));
        let sweep = sweep_ops("t", "u", &["o1".into()]);
        let deleted: Vec<&str> = sweep.iter().map(Op::key).collect();
        assert_eq!(deleted, ["offer:t/o1", "offer-ids:t/u", SWEEPS]);
    }

    #[test]
    fn the_erasure_marks_the_sweep_that_clears_the_mark() {
        let ops = erasure_ops("t/x", "u", 5);
        let Some(Op::HSet { field, value, .. }) = ops.iter().find(|o| o.key() == SWEEPS) else {
            panic!("no sweep mark: {ops:?}");
        };
        assert_eq!(
            pending_sweeps([(field.clone(), value.clone())]),
            [("t/x".to_string(), "u".to_string())]
        );
        assert!(matches!(sweep_ops("t/x", "u", &[]).last(),
            Some(Op::HDel { key, field: f }) if key == SWEEPS && f == field));
        let s = sweep_source("t", "u1");
        assert!(s.starts_with("sweep/") && !s.contains("u1"), "{s}");
    }
}
