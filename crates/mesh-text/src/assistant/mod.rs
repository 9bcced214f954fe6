//! The customer-service assistant: intent classification, a BM25 knowledge base, and a
//! multi-turn slot-filling dialogue for order status, refunds and address changes.
//!
//! Every external effect goes through [`Backend`] (the support service implements it over
//! gRPC). Confident answers are returned directly; low confidence, unknown requests, repeated
//! failed slot filling and backend errors become [`Reply::Handoff`] carrying the whole
//! conversation for the human queue. [`Conversation`] is serde-serializable so the service
//! can keep it in Redis between turns.

mod intent;
mod kb;
mod slots;
mod types;

use serde::{Deserialize, Serialize};

pub use intent::{generate_intents, Intent, IntentClassifier};
pub use kb::{KbMatch, KnowledgeBase, QaPair};
pub use slots::{extract_address, extract_order_id, is_cancel, is_no, is_yes};
pub use types::{
    Backend, BackendError, Conversation, DialogueState, Flow, OrderInfo, Reply, Speaker, Turn,
};

use crate::sentiment::is_mostly_chinese;
use crate::Result;

/// Thresholds for answering automatically.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AssistantConfig {
    /// Below this intent probability the message is handed off (unless the KB is sure).
    pub min_intent_confidence: f32,
    /// Minimum BM25 score for a knowledge-base answer.
    pub min_kb_score: f32,
    /// Slot misses before handing off.
    pub max_misses: u32,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        AssistantConfig {
            min_intent_confidence: 0.5,
            min_kb_score: 3.0,
            max_misses: 2,
        }
    }
}

/// The assistant: stateless itself; all state lives in [`Conversation`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assistant {
    pub intents: IntentClassifier,
    pub kb: KnowledgeBase,
    pub config: AssistantConfig,
}

fn t(zh: bool, en: &str, cn: &str) -> String {
    if zh {
        cn.to_string()
    } else {
        en.to_string()
    }
}

impl Assistant {
    /// Intent model trained on generated messages, default FAQ, default thresholds.
    pub fn with_defaults(seed: u64) -> Result<Self> {
        Ok(Assistant {
            intents: IntentClassifier::train_generated(seed)?,
            kb: KnowledgeBase::default_faq(),
            config: AssistantConfig::default(),
        })
    }

    /// Handles one customer message, updating `conv`.
    pub async fn respond<B: Backend + Sync>(
        &self,
        conv: &mut Conversation,
        message: &str,
        backend: &B,
    ) -> Reply {
        let zh = is_mostly_chinese(message)
            || (!message.chars().any(|c| c.is_alphabetic()) && conv.language == "zh");
        conv.language = if zh { "zh" } else { "en" }.into();
        conv.turns.push(Turn {
            speaker: Speaker::Customer,
            text: message.to_string(),
        });
        let reply = self.step(conv, message, zh, backend).await;
        let said = match &reply {
            Reply::Answer { text, .. } | Reply::Ask { text, .. } => text.clone(),
            Reply::Handoff { .. } => t(
                zh,
                "Connecting you to a colleague.",
                "正在为您转接人工客服。",
            ),
        };
        conv.turns.push(Turn {
            speaker: Speaker::Assistant,
            text: said,
        });
        match reply {
            Reply::Handoff { reason, .. } => {
                conv.state = DialogueState::HandedOff;
                Reply::Handoff {
                    conversation: conv.clone(),
                    reason,
                }
            }
            other => other,
        }
    }

    fn handoff(&self, conv: &Conversation, reason: impl Into<String>) -> Reply {
        Reply::Handoff {
            conversation: conv.clone(),
            reason: reason.into(),
        }
    }

    async fn step<B: Backend + Sync>(
        &self,
        conv: &mut Conversation,
        msg: &str,
        zh: bool,
        backend: &B,
    ) -> Reply {
        let (intent, conf) = self.intents.classify(msg);
        if matches!(conv.state, DialogueState::HandedOff) {
            return self.handoff(conv, "conversation is already with a human");
        }
        if !matches!(conv.state, DialogueState::Idle) {
            if intent == Intent::Human && conf >= self.config.min_intent_confidence {
                return self.handoff(conv, "customer asked for a human");
            }
            if is_cancel(msg) {
                conv.state = DialogueState::Idle;
                conv.misses = 0;
                return Reply::Answer {
                    text: t(
                        zh,
                        "OK, cancelled. Anything else?",
                        "好的，已取消。还有什么可以帮您？",
                    ),
                    intent,
                    confidence: conf,
                };
            }
            return self.continue_flow(conv, msg, zh, backend).await;
        }
        let order_id = extract_order_id(msg);
        if conf < self.config.min_intent_confidence || intent == Intent::Unknown {
            return match self.kb.best(msg) {
                Some(m) if m.score >= self.config.min_kb_score * 1.5 => {
                    self.kb_answer(m, zh, intent, conf)
                }
                _ => self.handoff(
                    conv,
                    format!("low confidence ({:.2}) for {}", conf, intent.as_str()),
                ),
            };
        }
        match intent {
            Intent::Greeting => Reply::Answer {
                text: t(
                    zh,
                    "Hello! I can check orders, refunds and addresses, or answer questions.",
                    "您好！我可以帮您查订单、办理退款、修改地址或解答问题。",
                ),
                intent,
                confidence: conf,
            },
            Intent::Human => self.handoff(conv, "customer asked for a human"),
            Intent::ProductQuestion => match self.kb.best(msg) {
                Some(m) if m.score >= self.config.min_kb_score => {
                    self.kb_answer(m, zh, intent, conf)
                }
                _ => self.handoff(conv, "no knowledge-base answer"),
            },
            Intent::OrderStatus | Intent::Refund | Intent::AddressChange => {
                let flow = match intent {
                    Intent::OrderStatus => Flow::OrderStatus,
                    Intent::Refund => Flow::Refund,
                    _ => Flow::AddressChange,
                };
                match order_id {
                    Some(id) => self.with_order(conv, flow, id, msg, zh, backend).await,
                    None => {
                        conv.state = DialogueState::AwaitingOrderId { flow };
                        ask_order_id(zh)
                    }
                }
            }
            Intent::Unknown => self.handoff(conv, "unknown request"),
        }
    }

    fn kb_answer(&self, m: KbMatch, zh: bool, intent: Intent, conf: f32) -> Reply {
        Reply::Answer {
            text: if zh { m.answer_zh } else { m.answer_en },
            intent,
            confidence: conf,
        }
    }

    async fn with_order<B: Backend + Sync>(
        &self,
        conv: &mut Conversation,
        flow: Flow,
        order_id: String,
        msg: &str,
        zh: bool,
        backend: &B,
    ) -> Reply {
        conv.misses = 0;
        match flow {
            Flow::OrderStatus => {
                conv.state = DialogueState::Idle;
                match backend.order_status(&order_id).await {
                    Ok(info) => Reply::Answer {
                        text: match (&info.eta, zh) {
                            (Some(eta), true) => format!(
                                "订单{}状态：{}，预计{}送达。",
                                info.order_id, info.status, eta
                            ),
                            (None, true) => format!("订单{}状态：{}。", info.order_id, info.status),
                            (Some(eta), false) => format!(
                                "Order {} is {}; expected {}.",
                                info.order_id, info.status, eta
                            ),
                            (None, false) => format!("Order {} is {}.", info.order_id, info.status),
                        },
                        intent: Intent::OrderStatus,
                        confidence: 1.0,
                    },
                    Err(e) => self.handoff(conv, format!("order_status failed: {e}")),
                }
            }
            Flow::Refund => {
                conv.state = DialogueState::AwaitingRefundReason { order_id };
                Reply::Ask {
                    text: t(
                        zh,
                        "Sorry to hear that. What is the reason for the refund?",
                        "很抱歉给您带来不便，请问退款原因是什么？",
                    ),
                    slot: "refund_reason".into(),
                }
            }
            Flow::AddressChange => match extract_address(msg) {
                Some(address) => {
                    conv.state = DialogueState::ConfirmAddress {
                        order_id: order_id.clone(),
                        address: address.clone(),
                    };
                    confirm_address(zh, &order_id, &address)
                }
                None => {
                    conv.state = DialogueState::AwaitingAddress { order_id };
                    Reply::Ask {
                        text: t(
                            zh,
                            "What is the new delivery address?",
                            "请提供新的收货地址。",
                        ),
                        slot: "address".into(),
                    }
                }
            },
        }
    }

    async fn continue_flow<B: Backend + Sync>(
        &self,
        conv: &mut Conversation,
        msg: &str,
        zh: bool,
        backend: &B,
    ) -> Reply {
        match conv.state.clone() {
            DialogueState::AwaitingOrderId { flow } => match extract_order_id(msg) {
                Some(id) => self.with_order(conv, flow, id, msg, zh, backend).await,
                None => self.miss(conv, zh, ask_order_id(zh)),
            },
            DialogueState::AwaitingRefundReason { order_id } => {
                let reason = msg.trim().to_string();
                if reason.chars().count() < 2 {
                    return self.miss(
                        conv,
                        zh,
                        Reply::Ask {
                            text: t(
                                zh,
                                "Could you tell me a bit more about the reason?",
                                "能具体说一下退款原因吗？",
                            ),
                            slot: "refund_reason".into(),
                        },
                    );
                }
                conv.misses = 0;
                conv.state = DialogueState::ConfirmRefund {
                    order_id: order_id.clone(),
                    reason,
                };
                Reply::Ask {
                    text: if zh {
                        format!("确认为订单{order_id}申请退款吗？（是/否）")
                    } else {
                        format!("Shall I request a refund for order {order_id}? (yes/no)")
                    },
                    slot: "confirm".into(),
                }
            }
            DialogueState::ConfirmRefund { order_id, reason } => {
                if is_yes(msg) {
                    conv.state = DialogueState::Idle;
                    match backend.refund(&order_id, &reason).await {
                        Ok(reference) => Reply::Answer {
                            text: if zh {
                                format!("已提交退款申请，编号{reference}，1–3个工作日内原路退回。")
                            } else {
                                format!("Refund requested (ref {reference}); it will reach your original payment method in 1–3 business days.")
                            },
                            intent: Intent::Refund,
                            confidence: 1.0,
                        },
                        Err(e) => self.handoff(conv, format!("refund failed: {e}")),
                    }
                } else if is_no(msg) {
                    conv.state = DialogueState::Idle;
                    Reply::Answer {
                        text: t(zh, "OK, no refund requested.", "好的，未提交退款。"),
                        intent: Intent::Refund,
                        confidence: 1.0,
                    }
                } else {
                    self.miss(
                        conv,
                        zh,
                        Reply::Ask {
                            text: t(zh, "Please answer yes or no.", "请回复“是”或“否”。"),
                            slot: "confirm".into(),
                        },
                    )
                }
            }
            DialogueState::AwaitingAddress { order_id } => {
                match extract_address(msg).or_else(|| {
                    let m = msg.trim();
                    (m.chars().count() >= 6).then(|| m.to_string())
                }) {
                    Some(address) => {
                        conv.misses = 0;
                        conv.state = DialogueState::ConfirmAddress {
                            order_id: order_id.clone(),
                            address: address.clone(),
                        };
                        confirm_address(zh, &order_id, &address)
                    }
                    None => self.miss(
                        conv,
                        zh,
                        Reply::Ask {
                            text: t(
                                zh,
                                "What is the new delivery address?",
                                "请提供新的收货地址。",
                            ),
                            slot: "address".into(),
                        },
                    ),
                }
            }
            DialogueState::ConfirmAddress { order_id, address } => {
                if is_yes(msg) {
                    conv.state = DialogueState::Idle;
                    match backend.change_address(&order_id, &address).await {
                        Ok(()) => Reply::Answer {
                            text: if zh {
                                format!("订单{order_id}的收货地址已改为：{address}")
                            } else {
                                format!("Order {order_id} will now ship to: {address}")
                            },
                            intent: Intent::AddressChange,
                            confidence: 1.0,
                        },
                        Err(e) => self.handoff(conv, format!("change_address failed: {e}")),
                    }
                } else if is_no(msg) {
                    conv.state = DialogueState::AwaitingAddress { order_id };
                    Reply::Ask {
                        text: t(
                            zh,
                            "OK — what is the correct address?",
                            "好的，请提供正确的地址。",
                        ),
                        slot: "address".into(),
                    }
                } else {
                    self.miss(
                        conv,
                        zh,
                        Reply::Ask {
                            text: t(zh, "Please answer yes or no.", "请回复“是”或“否”。"),
                            slot: "confirm".into(),
                        },
                    )
                }
            }
            DialogueState::Idle | DialogueState::HandedOff => {
                self.handoff(conv, "unexpected state")
            }
        }
    }

    fn miss(&self, conv: &mut Conversation, _zh: bool, ask: Reply) -> Reply {
        conv.misses += 1;
        if conv.misses > self.config.max_misses {
            self.handoff(
                conv,
                format!("slot not understood after {} tries", conv.misses),
            )
        } else {
            ask
        }
    }
}

fn ask_order_id(zh: bool) -> Reply {
    Reply::Ask {
        text: t(
            zh,
            "Could you give me the order number?",
            "请提供您的订单号。",
        ),
        slot: "order_id".into(),
    }
}

fn confirm_address(zh: bool, order_id: &str, address: &str) -> Reply {
    Reply::Ask {
        text: if zh {
            format!("确认将订单{order_id}的地址改为“{address}”吗？（是/否）")
        } else {
            format!("Change the address of order {order_id} to \"{address}\"? (yes/no)")
        },
        slot: "confirm".into(),
    }
}

#[cfg(test)]
mod tests;
