//! Identifiers and the interaction record shared by every module.

use serde::{Deserialize, Serialize};

/// Stable user id (the mesh's `Envelope.user_id`).
pub type UserId = String;
/// Stable item (product) id.
pub type ItemId = String;
/// Category name.
pub type Category = String;

/// What the user did with an item. Ordered by strength of intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The product page was shown.
    View,
    /// The item was added to the cart.
    Cart,
    /// The item was ordered.
    Order,
}

impl EventKind {
    /// All kinds, weakest first.
    pub const ALL: [EventKind; 3] = [EventKind::View, EventKind::Cart, EventKind::Order];
}

/// One user-item event, as the live layer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Who acted.
    pub user: UserId,
    /// On which item.
    pub item: ItemId,
    /// What they did.
    pub kind: EventKind,
    /// When, Unix epoch seconds (fractional allowed).
    pub ts: f64,
    /// The item's category, when the producer knows it (used for per-category popularity).
    pub category: Option<Category>,
    /// Device type of the request ("web", "ios", ...), when known (context popularity).
    pub device: Option<String>,
    /// The user's segment label, when known (context popularity).
    pub segment: Option<String>,
}

impl Interaction {
    /// Convenience constructor without a category.
    pub fn new(user: impl Into<UserId>, item: impl Into<ItemId>, kind: EventKind, ts: f64) -> Self {
        Self {
            user: user.into(),
            item: item.into(),
            kind,
            ts,
            category: None,
            device: None,
            segment: None,
        }
    }

    /// Same interaction with a category attached.
    pub fn with_category(mut self, category: impl Into<Category>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Same interaction with the request's device type attached.
    pub fn with_device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// Same interaction with the user's segment attached.
    pub fn with_segment(mut self, segment: impl Into<String>) -> Self {
        self.segment = Some(segment.into());
        self
    }
}

/// What the ranker and cold start know about an item (from the catalog service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemMeta {
    /// The item.
    pub id: ItemId,
    /// Its category.
    pub category: Category,
    /// Current price (any currency, > 0).
    pub price: f64,
    /// Units sold over the catalog's reporting window.
    pub sales: f64,
    /// Mean customer rating, 1..=5 (0 when unrated).
    pub rating: f64,
    /// When the item was listed, Unix seconds.
    pub listed_at: f64,
    /// Gross margin as a fraction of price, 0..=1.
    pub margin: f64,
    /// Whether it can be bought now.
    pub in_stock: bool,
    /// A promotional (discount / coupon) item.
    pub promotional: bool,
    /// An offer meant to retain customers who are about to churn.
    pub retention_offer: bool,
    /// Free-form attributes (brand, colour, material, ...), used for new-item neighbours.
    pub attributes: Vec<String>,
}

impl ItemMeta {
    /// An in-stock, non-promotional item with neutral numbers; adjust fields as needed.
    pub fn new(id: impl Into<ItemId>, category: impl Into<Category>, price: f64) -> Self {
        Self {
            id: id.into(),
            category: category.into(),
            price,
            sales: 0.0,
            rating: 0.0,
            listed_at: 0.0,
            margin: 0.0,
            in_stock: true,
            promotional: false,
            retention_offer: false,
            attributes: Vec::new(),
        }
    }
}
