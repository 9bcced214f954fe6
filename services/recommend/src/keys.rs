//! Key names in the store, which slot owns each key, and the stored form of
//! one history entry.
//!
//! Keys of one user (history, purchases, cart, flags) live in the user's
//! slot (`partition_for("<tenant>/<user>")`), which is the partition that
//! consumes the user's events. Co-occurrence lists and catalog entries of an
//! item live in the item's home slot (`partition_for("<tenant>/<item>")`),
//! popularity sets in the slot of their key name: each is one merged key, so
//! a read is one command, not one per partition. The consumer writes them
//! there with a per-source watermark (see [`crate::handler`]).
use mesh_bus::partition::partition_for;
use mesh_recommend::live::{Horizon, Scope};
use mesh_recommend::EventKind;
use mesh_store::Op;
use serde::{Deserialize, Serialize};

/// Scope of every recommend key in the store.
pub const SCOPE: &str = "recommend";

/// Keys that no topic can rebuild: catalog entries carry `UpsertItems`
/// fields. `mesh replay --service recommend` keeps them (their event fields
/// are rewritten by the replay).
/// Impression counters (`imp:`) come from `Recommend` answers, not from a
/// topic, so they are kept too; the clicks are rebuilt from the events.
pub const REPLAY_KEEPS: &[&str] = &["item:", "imp:"];

/// Users seen in a slot (member `<tenant>/<user>`, score = last event ms),
/// so training can enumerate histories.
pub const USERS: &str = "users";

/// A user's bounded recent history, newest first (JSON [`HistEntry`]).
pub fn history(tenant: &str, user: &str) -> String {
    format!("hist:{tenant}/{user}")
}

/// Items a user purchased (field = item, value = order time ms).
pub fn bought(tenant: &str, user: &str) -> String {
    format!("bought:{tenant}/{user}")
}

/// Units of each item in the user's cart (field = item, value = units).
pub fn cart(tenant: &str, user: &str) -> String {
    format!("cart:{tenant}/{user}")
}

/// Co-occurrence of `item` with other items in one epoch of the decay
/// (sorted set, forward-decayed; see [`mesh_recommend::live::Decay`]).
pub fn cooc(tenant: &str, item: &str, epoch: i64) -> String {
    format!("co:{tenant}:{item}{}", epoch_suffix(epoch))
}

/// Whether `key` is a co-occurrence row (of any tenant and epoch).
pub fn is_cooc(key: &str) -> bool {
    key.starts_with("co:")
}

/// Epoch 0 keeps the key names from before epochs (no suffix), so its stored
/// values stay in use; other epochs end in `:e<epoch>`.
fn epoch_suffix(epoch: i64) -> String {
    if epoch == 0 {
        String::new()
    } else {
        format!(":e{epoch}")
    }
}

/// Popularity of items in one scope, horizon and epoch of the horizon's decay
/// (sorted set, forward-decayed).
pub fn popularity(tenant: &str, scope: &Scope, horizon: Horizon, epoch: i64) -> String {
    let s = match scope {
        Scope::Global => "all".to_string(),
        Scope::Category(c) => format!("cat={c}"),
        Scope::Device(d) => format!("dev={d}"),
        Scope::Segment(s) => format!("seg={s}"),
    };
    let h = match horizon {
        Horizon::Long => "long",
        Horizon::Short => "short",
    };
    format!("pop:{tenant}:{s}:{h}{}", epoch_suffix(epoch))
}

/// Catalog entry of an item (hash). Events write `category`, `price` and
/// `seen_ms`; `UpsertItems` writes the [`UPSERT_PREFIX`]ed fields, which win.
pub fn item(tenant: &str, item: &str) -> String {
    format!("item:{tenant}/{item}")
}

/// Flags other services raised about a user (hash): [`FLAG_AT_RISK`] and
/// [`FLAG_PROMO_ABUSE`], value = when the alert was raised, Unix ms.
pub fn flags(tenant: &str, user: &str) -> String {
    format!("flags:{tenant}/{user}")
}

/// Field of [`flags`]: the churn service flagged the user as at risk.
pub const FLAG_AT_RISK: &str = "at_risk_ms";

/// Field of [`flags`]: the fraud service flagged the user for promotion abuse.
pub const FLAG_PROMO_ABUSE: &str = "promo_abuse_ms";

/// Which slot owns the key an op writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// The user's slot: the partition that consumed the event.
    User,
    /// The home slot of an item (`<tenant>/<item>`): co-occurrence, catalog.
    Item(String),
    /// The slot of the key name itself (popularity sets).
    Key,
}

impl Home {
    /// The home of an item of a tenant.
    pub fn item(tenant: &str, item: &str) -> Self {
        Home::Item(format!("{tenant}/{item}"))
    }

    /// The partition owning `op`'s key; `user_partition` for [`Home::User`].
    pub fn partition(&self, op: &Op, user_partition: i32, partitions: i32) -> i32 {
        match self {
            Home::User => user_partition,
            Home::Item(k) => partition_for(k, partitions),
            Home::Key => key_partition(op.key(), partitions),
        }
    }
}

/// Home partition of an item (`<tenant>/<item>`).
pub fn item_partition(tenant: &str, item: &str, partitions: i32) -> i32 {
    partition_for(&format!("{tenant}/{item}"), partitions)
}

/// Home partition of a key stored under its own name (popularity).
pub fn key_partition(key: &str, partitions: i32) -> i32 {
    partition_for(key, partitions)
}

/// Watermark source of ops written into another partition's slot by the
/// consumer of `topic`[`partition`]: offsets of one source partition only
/// grow, so each (slot, source partition) pair has its own watermark.
pub fn cross_source(topic: &str, partition: i32) -> String {
    format!("{topic}@{partition}")
}

/// Retention offers of a tenant (sorted set, score = sales), kept by
/// `UpsertItems` in the key's own slot: at-risk users get them as candidates.
pub fn offers(tenant: &str) -> String {
    format!("offers:{tenant}")
}

/// Impressions of recommended items of a tenant (hash, field
/// `<source>:<slot>`, value = count), written by `Recommend` in the key's
/// own slot.
pub fn impressions(tenant: &str) -> String {
    format!("imp:{tenant}")
}

/// Clicks on recommended items of a tenant (hash, field `<source>:<slot>`,
/// value = count), written by the consumer in the key's own slot.
pub fn clicks(tenant: &str) -> String {
    format!("clk:{tenant}")
}

/// Attributions a user's clicks were already counted for, newest first
/// (capped list in the user's slot): one click per impression.
pub fn clicked(tenant: &str, user: &str) -> String {
    format!("clicked:{tenant}/{user}")
}

/// Every key that holds one user's state, all in the user's slot: what an
/// erasure deletes (besides the user's member of [`USERS`]). A new per-user
/// key belongs here.
pub fn user_keys(tenant: &str, user: &str) -> [String; 5] {
    [
        history(tenant, user),
        bought(tenant, user),
        cart(tenant, user),
        flags(tenant, user),
        clicked(tenant, user),
    ]
}

/// How many counted attributions [`clicked`] keeps per user.
pub const CLICKED_LEN: usize = 200;

/// Prefix of catalog fields written by `UpsertItems`.
pub const UPSERT_PREFIX: &str = "u.";

/// One history entry as stored (compact JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistEntry {
    /// Item id.
    #[serde(rename = "i")]
    pub item: String,
    /// View, cart or order.
    #[serde(rename = "k")]
    pub kind: EventKind,
    /// Event time, Unix seconds.
    #[serde(rename = "t")]
    pub ts: f64,
    /// Category, when the event carried one.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Price, when the event carried one (> 0).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

impl HistEntry {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a history entry always serializes")
    }

    /// Parses a stored entry; `None` for a value this version cannot read
    /// (skipped rather than failing every read of the user).
    pub fn decode(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_entries_round_trip() {
        let e = HistEntry {
            item: "sku-1".into(),
            kind: EventKind::Cart,
            ts: 1_700_000_000.5,
            category: Some("shoes".into()),
            price: None,
        };
        assert_eq!(HistEntry::decode(&e.encode()), Some(e));
        assert_eq!(HistEntry::decode("not json"), None);
    }

    #[test]
    fn popularity_keys_separate_scopes_horizons_and_epochs() {
        let a = popularity("t", &Scope::Category("x".into()), Horizon::Long, 0);
        let b = popularity("t", &Scope::Device("x".into()), Horizon::Long, 0);
        let c = popularity("t", &Scope::Category("x".into()), Horizon::Short, 0);
        let d = popularity("t", &Scope::Category("x".into()), Horizon::Short, 2);
        let e = popularity("t", &Scope::Category("x".into()), Horizon::Short, -1);
        let keys: std::collections::HashSet<&String> = [&a, &b, &c, &d, &e].into();
        assert_eq!(keys.len(), 5);
        // Epoch 0 keeps the names stored before epochs.
        assert_eq!(a, "pop:t:cat=x:long");
        assert_eq!(d, "pop:t:cat=x:short:e2");
        assert_eq!(cooc("t", "i", 0), "co:t:i");
        assert_eq!(cooc("t", "i", 3), "co:t:i:e3");
        assert!(is_cooc(&cooc("t", "i", 3)) && !is_cooc(&history("t", "u")));
    }
}
