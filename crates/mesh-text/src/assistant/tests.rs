use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use super::*;

/// Polls a future that never waits on I/O (the fake backend is always ready).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(Default)]
struct FakeBackend {
    calls: Mutex<Vec<String>>,
    fail: bool,
}

impl Backend for FakeBackend {
    async fn order_status(&self, order_id: &str) -> Result<OrderInfo, BackendError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("status {order_id}"));
        if self.fail {
            return Err(BackendError::Unavailable("orders down".into()));
        }
        Ok(OrderInfo {
            order_id: order_id.into(),
            status: "shipped".into(),
            eta: Some("2026-06-03".into()),
        })
    }
    async fn refund(&self, order_id: &str, reason: &str) -> Result<String, BackendError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("refund {order_id} {reason}"));
        Ok("RF-1".into())
    }
    async fn change_address(&self, order_id: &str, address: &str) -> Result<(), BackendError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("address {order_id} {address}"));
        Ok(())
    }
}

fn assistant() -> &'static Assistant {
    static A: OnceLock<Assistant> = OnceLock::new();
    A.get_or_init(|| Assistant::with_defaults(7).unwrap())
}

fn say(conv: &mut Conversation, msg: &str, b: &FakeBackend) -> Reply {
    block_on(assistant().respond(conv, msg, b))
}

fn text(r: &Reply) -> &str {
    match r {
        Reply::Answer { text, .. } | Reply::Ask { text, .. } => text,
        Reply::Handoff { reason, .. } => panic!("unexpected handoff: {reason}"),
    }
}

#[test]
fn order_status_with_id_answers_at_once() {
    let b = FakeBackend::default();
    let mut c = Conversation::new("c1");
    let r = say(&mut c, "where is my order 88812345?", &b);
    assert!(
        text(&r).contains("88812345") && text(&r).contains("shipped"),
        "{r:?}"
    );
    assert_eq!(b.calls.lock().unwrap().as_slice(), ["status 88812345"]);
    assert_eq!(c.state, DialogueState::Idle);
}

#[test]
fn chinese_order_status_asks_for_the_number() {
    let b = FakeBackend::default();
    let mut c = Conversation::new("c2");
    let r = say(&mut c, "我的快递到哪了", &b);
    assert!(
        matches!(&r, Reply::Ask { slot, .. } if slot == "order_id"),
        "{r:?}"
    );
    let r = say(&mut c, "订单号 20240601", &b);
    assert!(
        text(&r).contains("20240601") && text(&r).contains("预计"),
        "{r:?}"
    );
}

#[test]
fn refund_flow_in_chinese_confirms_before_calling_backend() {
    let b = FakeBackend::default();
    let mut c = Conversation::new("c3");
    assert!(matches!(say(&mut c, "我要退款", &b), Reply::Ask { .. }));
    let r = say(&mut c, "123456789", &b);
    assert!(
        matches!(&r, Reply::Ask { slot, .. } if slot == "refund_reason"),
        "{r:?}"
    );
    let r = say(&mut c, "质量有问题，屏幕坏了", &b);
    assert!(
        matches!(&r, Reply::Ask { slot, .. } if slot == "confirm"),
        "{r:?}"
    );
    assert!(b.calls.lock().unwrap().is_empty());
    let r = say(&mut c, "是的", &b);
    assert!(text(&r).contains("RF-1"), "{r:?}");
    assert_eq!(
        b.calls.lock().unwrap().as_slice(),
        ["refund 123456789 质量有问题，屏幕坏了"]
    );
    assert_eq!(c.turns.len(), 8);
}

#[test]
fn address_change_survives_serialization_between_turns() {
    let b = FakeBackend::default();
    let mut c = Conversation::new("c4");
    let r = say(
        &mut c,
        "I need to change the shipping address for order 5556667",
        &b,
    );
    assert!(
        matches!(&r, Reply::Ask { slot, .. } if slot == "address"),
        "{r:?}"
    );
    let json = serde_json::to_string(&c).unwrap();
    let mut c: Conversation = serde_json::from_str(&json).unwrap();
    let r = say(&mut c, "12 Harbour Road, Wan Chai, Hong Kong", &b);
    assert!(text(&r).contains("Harbour Road"));
    let r = say(&mut c, "no", &b);
    assert!(matches!(&r, Reply::Ask { slot, .. } if slot == "address"));
    say(&mut c, "14 Harbour Road, Wan Chai, Hong Kong", &b);
    let r = say(&mut c, "yes", &b);
    assert!(text(&r).contains("14 Harbour Road"), "{r:?}");
    assert_eq!(
        b.calls.lock().unwrap().as_slice(),
        ["address 5556667 14 Harbour Road, Wan Chai, Hong Kong"]
    );
}

#[test]
fn unknown_and_human_requests_hand_off_with_the_conversation() {
    let b = FakeBackend::default();
    let mut c = Conversation::new("c5");
    match say(&mut c, "明天天气怎么样", &b) {
        Reply::Handoff { conversation, .. } => {
            assert_eq!(conversation.turns.len(), 2);
            assert_eq!(conversation.state, DialogueState::HandedOff);
        }
        r => panic!("expected handoff, got {r:?}"),
    }
    let mut c = Conversation::new("c6");
    say(&mut c, "I want a refund", &b);
    assert!(matches!(
        say(&mut c, "let me talk to a real person", &b),
        Reply::Handoff { .. }
    ));
}

#[test]
fn repeated_missing_slot_and_backend_errors_hand_off() {
    let b = FakeBackend::default();
    let mut c = Conversation::new("c7");
    say(&mut c, "track my package", &b);
    assert!(matches!(
        say(&mut c, "I don't know it", &b),
        Reply::Ask { .. }
    ));
    assert!(matches!(
        say(&mut c, "somewhere in the email", &b),
        Reply::Ask { .. }
    ));
    assert!(matches!(say(&mut c, "no idea", &b), Reply::Handoff { .. }));

    let failing = FakeBackend {
        fail: true,
        ..Default::default()
    };
    let mut c = Conversation::new("c8");
    match say(&mut c, "order status for 99988877", &failing) {
        Reply::Handoff { reason, .. } => assert!(reason.contains("orders down")),
        r => panic!("{r:?}"),
    }
}

#[test]
fn cancel_returns_to_idle() {
    let b = FakeBackend::default();
    let mut c = Conversation::new("c9");
    say(&mut c, "修改收货地址", &b);
    let r = say(&mut c, "算了", &b);
    assert!(text(&r).contains("取消"));
    assert_eq!(c.state, DialogueState::Idle);
}

#[test]
fn knowledge_base_answers_questions_in_the_asked_language() {
    let b = FakeBackend::default();
    let mut c = Conversation::new("c10");
    let r = say(&mut c, "可以开发票吗", &b);
    assert!(text(&r).contains("发票"), "{r:?}");
    let r = say(&mut c, "what payment methods do you accept?", &b);
    assert!(text(&r).contains("Alipay"), "{r:?}");
}

#[test]
fn intent_accuracy_on_fresh_and_hand_written_messages() {
    let m = &assistant().intents;
    let fresh = generate_intents(700, 12345);
    let acc =
        fresh.iter().filter(|(t, i)| m.classify(t).0 == *i).count() as f64 / fresh.len() as f64;
    assert!(acc >= 0.95, "{acc}");
    let hand = [
        (
            "my parcel hasn't come yet, order 7654321",
            Intent::OrderStatus,
        ),
        ("订单怎么还没到啊", Intent::OrderStatus),
        (
            "I'd like to send this back and get my money returned",
            Intent::Refund,
        ),
        ("东西坏了，退钱", Intent::Refund),
        (
            "please deliver it to my new apartment instead",
            Intent::AddressChange,
        ),
        ("收货地址写错了要改", Intent::AddressChange),
        ("hello", Intent::Greeting),
        ("在吗在吗", Intent::Greeting),
        ("I want to speak with an agent", Intent::Human),
        ("转人工客服", Intent::Human),
    ];
    let ok = hand.iter().filter(|(t, i)| m.classify(t).0 == *i).count();
    assert!(ok >= 8, "{ok}/10");
}
