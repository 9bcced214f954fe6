//! Key names in the store and the slot that owns each.
//!
//! A user's offer records and the campaign counters they feed live in the
//! user's slot (`partition_for("<tenant>/<user>")`, the partition that
//! consumes the user's events), so attributing an order is one atomic step
//! with the consumer's watermark; a campaign's counters are therefore kept
//! as one shard per partition and summed when read. Price observations are
//! sharded the same way. A campaign's definition and bandit, an item's quote
//! and bounds, and an offer's index entry live in their own home slot.
use mesh_bus::partition::partition_for;
use mesh_store::Slot;

/// Scope of every engage key.
pub const SCOPE: &str = "engage";

/// Keys that no topic can rebuild: campaigns and their bandits, offers and
/// their counters (from `ChooseOffer`), bounds (from `SetPriceBounds`), ad
/// deliveries and the CTR model (`RecordAdDeliveries`), ad returns
/// (`ReportAdSpend`).
pub const REPLAY_KEEPS: &[&str] = &[
    "tenants", "camp:", "camps:", "offers:", "offer:", "stats:", "bounds:", "adcnt:", "ctrm:",
    "roas:",
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

/// Where an offer went (fields `user`, `campaign`), in the offer's slot.
pub fn offer(tenant: &str, offer_id: &str) -> String {
    format!("offer:{tenant}/{offer_id}")
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
