//! Key names in the store and the stored form of one history entry.
//!
//! Keys of one user (history, purchases, cart) live in the user's slot
//! (`partition_for("<tenant>/<user>")`). Co-occurrence, popularity and the
//! event-fed catalog are written in the slot of the partition that consumed
//! the event, so readers sum them over every partition.
use mesh_recommend::live::{Horizon, Scope};
use mesh_recommend::EventKind;
use serde::{Deserialize, Serialize};

/// Scope of every recommend key in the store.
pub const SCOPE: &str = "recommend";

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

/// Co-occurrence of `item` with other items (sorted set, forward-decayed).
pub fn cooc(tenant: &str, item: &str) -> String {
    format!("co:{tenant}:{item}")
}

/// Popularity of items in one scope and horizon (sorted set, forward-decayed).
pub fn popularity(tenant: &str, scope: &Scope, horizon: Horizon) -> String {
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
    format!("pop:{tenant}:{s}:{h}")
}

/// Catalog entry of an item (hash). Events write `category`, `price` and
/// `seen_ms`; `UpsertItems` writes the [`UPSERT_PREFIX`]ed fields, which win.
pub fn item(tenant: &str, item: &str) -> String {
    format!("item:{tenant}/{item}")
}

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
    fn popularity_keys_separate_scopes_and_horizons() {
        let a = popularity("t", &Scope::Category("x".into()), Horizon::Long);
        let b = popularity("t", &Scope::Device("x".into()), Horizon::Long);
        let c = popularity("t", &Scope::Category("x".into()), Horizon::Short);
        assert!(a != b && a != c && b != c);
    }
}
