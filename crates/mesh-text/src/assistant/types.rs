//! The assistant's serializable conversation types and the [`Backend`] trait.

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::Intent;

/// An error from the backend; its message goes into the handoff reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BackendError {
    #[error("order {0} not found")]
    NotFound(String),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Order facts the assistant can state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderInfo {
    pub order_id: String,
    /// e.g. "shipped", "delivered", "processing".
    pub status: String,
    pub eta: Option<String>,
}

/// The external calls the assistant makes. Futures are `Send` so a tokio service can hold
/// the assistant across `.await`; implement with `async fn` bodies.
pub trait Backend {
    fn order_status(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<OrderInfo, BackendError>> + Send;
    /// Starts a refund; returns a refund reference.
    fn refund(
        &self,
        order_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<String, BackendError>> + Send;
    fn change_address(
        &self,
        order_id: &str,
        address: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Customer,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// Where a multi-turn flow stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DialogueState {
    Idle,
    AwaitingOrderId { flow: Flow },
    AwaitingRefundReason { order_id: String },
    ConfirmRefund { order_id: String, reason: String },
    AwaitingAddress { order_id: String },
    ConfirmAddress { order_id: String, address: String },
    HandedOff,
}

/// The slot-filling flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    OrderStatus,
    Refund,
    AddressChange,
}

/// One conversation's whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub turns: Vec<Turn>,
    pub state: DialogueState,
    /// Consecutive turns in which an asked-for slot was not found.
    pub misses: u32,
    /// Language of the last customer message: "zh" or "en".
    pub language: String,
}

impl Conversation {
    pub fn new(id: impl Into<String>) -> Self {
        Conversation {
            id: id.into(),
            turns: Vec::new(),
            state: DialogueState::Idle,
            misses: 0,
            language: "zh".into(),
        }
    }
}

/// What the assistant does with a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// A final answer sent to the customer.
    Answer {
        text: String,
        intent: Intent,
        confidence: f32,
    },
    /// A question for a missing slot or a confirmation.
    Ask { text: String, slot: String },
    /// Send to the human queue, with everything said so far.
    Handoff {
        conversation: Conversation,
        reason: String,
    },
}
