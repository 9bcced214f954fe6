//! Event kinds: the stable names of the body variants and the topic each
//! kind travels on.
use super::envelope::Body;

/// Which of the two event topics a kind is published to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Browsing, account and feedback events.
    User,
    /// Checkout, payment, fulfilment and refund events.
    Order,
    /// Both topics, in the user's partition of each (erasure).
    Both,
}

macro_rules! kinds {
    ($($variant:ident => $name:literal, $topic:ident;)*) => {
        /// One variant per body kind of [`super::Envelope`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind { $($variant),* }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The wire name, as used in JSON `type` and metric labels.
            pub fn name(self) -> &'static str {
                match self { $(EventKind::$variant => $name),* }
            }

            /// Parses a wire name; `None` for an unknown kind.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(EventKind::$variant),)* _ => None }
            }

            /// The topic events of this kind are published to.
            pub fn topic(self) -> Topic {
                match self { $(EventKind::$variant => Topic::$topic),* }
            }

            /// The kind of a body.
            pub fn of(body: &Body) -> Self {
                match body { $(Body::$variant(_) => EventKind::$variant),* }
            }
        }
    };
}

kinds! {
    SessionStarted => "session_started", User;
    PageView => "page_view", User;
    ProductView => "product_view", User;
    Search => "search", User;
    AddToCart => "add_to_cart", User;
    RemoveFromCart => "remove_from_cart", User;
    CheckoutStarted => "checkout_started", Order;
    OrderPlaced => "order_placed", Order;
    PaymentAuthorized => "payment_authorized", Order;
    PaymentFailed => "payment_failed", Order;
    OrderCancelled => "order_cancelled", Order;
    OrderShipped => "order_shipped", Order;
    OrderDelivered => "order_delivered", Order;
    RefundIssued => "refund_issued", Order;
    ReviewSubmitted => "review_submitted", User;
    SupportMessage => "support_message", User;
    Login => "login", User;
    CredentialChanged => "credential_changed", User;
    UserErased => "user_erased", Both;
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl super::Envelope {
    /// The kind of this envelope's body, `None` when no body is set.
    pub fn kind(&self) -> Option<EventKind> {
        self.body.as_ref().map(EventKind::of)
    }

    /// The partitioning key: one user's events share it across topics.
    pub fn user_key(&self) -> String {
        format!("{}/{}", self.tenant_id, self.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(*k));
        }
        assert_eq!(EventKind::from_name("order-placed"), None);
    }
}
