//! Slot extraction from customer messages: order numbers, addresses, yes/no/cancel.

use crate::tokenize::{tokenize, TokenKind};

/// The first 6–20 digit number (optionally after `#`), as written.
pub fn extract_order_id(text: &str) -> Option<String> {
    tokenize(text)
        .into_iter()
        .find(|t| {
            t.kind == TokenKind::Number
                && (6..=20).contains(&t.text.len())
                && t.text.chars().all(|c| c.is_ascii_digit())
        })
        .map(|t| t.text)
}

/// An address after a cue ("to ...", "address is ...", "改成...", "地址是/改为..."),
/// trimmed of trailing punctuation.
pub fn extract_address(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let cues_en = [
        "new address is ",
        "address is ",
        "address to ",
        "ship to ",
        "send it to ",
        "deliver to ",
    ];
    let cues_zh = [
        "地址改为",
        "地址改成",
        "改为",
        "改成",
        "地址是",
        "寄到",
        "送到",
    ];
    let mut found: Option<usize> = None;
    for c in cues_en.iter().chain(cues_zh.iter()) {
        if let Some(i) = lower.find(c) {
            let end = i + c.len();
            if found.is_none_or(|f| end > f) {
                found = Some(end);
            }
        }
    }
    // `lower` and `text` share byte offsets only when lowercasing kept lengths; fall back to
    // `lower` when it did not.
    let src = if lower.len() == text.len() {
        text
    } else {
        lower.as_str()
    };
    let addr = src[found?..]
        .trim()
        .trim_end_matches(['.', '!', '。', '！', '?', '？'])
        .trim();
    (addr.chars().count() >= 4).then(|| addr.to_string())
}

fn words(text: &str) -> Vec<String> {
    tokenize(text).into_iter().map(|t| t.text).collect()
}

pub fn is_yes(text: &str) -> bool {
    let w = words(text);
    let t = text.trim();
    w.iter().any(|w| {
        matches!(
            w.as_str(),
            "yes" | "y" | "yeah" | "yep" | "ok" | "okay" | "sure" | "confirm" | "correct"
        )
    }) || ["是", "是的", "好", "好的", "对", "确认", "可以", "嗯", "行"]
        .iter()
        .any(|y| t.starts_with(y))
}

pub fn is_no(text: &str) -> bool {
    let w = words(text);
    let t = text.trim();
    w.iter()
        .any(|w| matches!(w.as_str(), "no" | "n" | "nope" | "wrong" | "incorrect"))
        || ["不", "否", "不是", "不对", "错"]
            .iter()
            .any(|n| t.starts_with(n))
}

pub fn is_cancel(text: &str) -> bool {
    let w = words(text);
    w.iter()
        .any(|w| matches!(w.as_str(), "cancel" | "nevermind" | "stop"))
        || text.contains("never mind")
        || ["取消", "算了", "不用了"].iter().any(|c| text.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots() {
        assert_eq!(
            extract_order_id("where is order #1234567?").as_deref(),
            Some("1234567")
        );
        assert_eq!(
            extract_order_id("订单号是20240601123").as_deref(),
            Some("20240601123")
        );
        assert_eq!(extract_order_id("I waited 12 days"), None);
        assert_eq!(
            extract_address("please ship to 5 Main St, Springfield.").as_deref(),
            Some("5 Main St, Springfield")
        );
        assert_eq!(
            extract_address("地址改成上海市浦东新区世纪大道100号").as_deref(),
            Some("上海市浦东新区世纪大道100号")
        );
        assert!(is_yes("yes please") && is_yes("是的") && !is_yes("no"));
        assert!(is_no("不对") && is_no("no, wrong") && !is_no("好的"));
        assert!(is_cancel("算了") && is_cancel("cancel that"));
    }
}
