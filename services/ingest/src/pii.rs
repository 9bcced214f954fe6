//! Personal data out of free text before it reaches a topic: email
//! addresses and phone numbers in search queries, reviews and support
//! messages become `[email]` and `[phone]`.
//!
//! The structured fields carry no personal data in clear by contract (IP,
//! device and payment instrument arrive as hashes, locations as
//! coordinates and regions); free text is where a customer types their
//! email or number. A phone number is recognised by its writing: a leading
//! `+` and 8–15 digits, or 9–15 digits in three or more groups split by
//! spaces, dots, dashes or parentheses (`555-123-4567`, `(0)6 12 34 56 78`).
//! A bare run of digits stays: it is as likely an order number, which the
//! assistant needs.
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;

/// What replaces an email address.
pub const EMAIL: &str = "[email]";
/// What replaces a phone number.
pub const PHONE: &str = "[phone]";

/// Redacts the free-text fields of `e`; returns how many spans it replaced.
pub fn redact_envelope(e: &mut Envelope) -> usize {
    let text = match e.body.as_mut() {
        Some(Body::Search(s)) => &mut s.query,
        Some(Body::ReviewSubmitted(r)) => &mut r.text,
        Some(Body::SupportMessage(m)) => &mut m.text,
        _ => return 0,
    };
    let (out, n) = redact(text);
    if n > 0 {
        *text = out;
    }
    n
}

/// `text` with every email address and phone number replaced, and the
/// number of replacements.
pub fn redact(text: &str) -> (String, usize) {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied, mut n) = (0, 0, 0);
    while i < b.len() {
        let found = if b[i] == b'@' {
            email_at(b, i).map(|(s, e)| (s, e, EMAIL))
        } else if (b[i] == b'+' || b[i] == b'(' || b[i].is_ascii_digit())
            && (i == 0 || !is_word(b[i - 1]))
        {
            phone_at(b, i).map(|e| (i, e, PHONE))
        } else {
            None
        };
        match found {
            // An email's start lies before the `@`, but never before what
            // was already copied (the scan only looks back over local-part
            // characters, which a replacement never ends in).
            Some((s, e, with)) if s >= copied => {
                out.push_str(&text[copied..s]);
                out.push_str(with);
                (copied, i, n) = (e, e, n + 1);
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    (out, n)
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// The span of an email address around the `@` at `at`: a local part, and
/// a domain of labels with a last label of two or more letters.
fn email_at(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut s = at;
    while s > 0 && is_local(b[s - 1]) {
        s -= 1;
    }
    if s == at {
        return None;
    }
    let mut e = at + 1;
    while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'-' || b[e] == b'.') {
        e += 1;
    }
    // A sentence's full stop is not part of the domain.
    while e > at + 1 && b[e - 1] == b'.' {
        e -= 1;
    }
    let domain = &b[at + 1..e];
    let last = domain.rsplit(|c| *c == b'.').next()?;
    let dotted = domain.contains(&b'.') && domain[0] != b'.';
    (dotted && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)).then_some((s, e))
}

/// The end of a phone number starting at `s`, if one starts there.
fn phone_at(b: &[u8], s: usize) -> Option<usize> {
    let plus = b[s] == b'+';
    let mut i = if plus { s + 1 } else { s };
    let (mut digits, mut groups, mut in_group, mut end) = (0, 0, false, s);
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            digits += 1;
            if !in_group {
                groups += 1;
                in_group = true;
            }
            end = i + 1;
        } else if matches!(c, b' ' | b'-' | b'.' | b'(' | b')') {
            in_group = false;
            // Two separators in a row other than ") " end the number.
            if i + 1 < b.len() && !b[i + 1].is_ascii_digit() && !matches!(b[i + 1], b' ' | b'(') {
                break;
            }
        } else {
            break;
        }
        i += 1;
        if digits > 15 {
            return None;
        }
    }
    if end < b.len() && is_word(b[end]) {
        return None;
    }
    let ok = if plus {
        (8..=15).contains(&digits)
    } else {
        (9..=15).contains(&digits) && groups >= 3
    };
    ok.then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_and_phone_numbers_are_replaced() {
        let cases = [
            (
                "mail me at jane.doe+shop@example.co.uk.",
                "mail me at [email].",
            ),
            ("call +33 6 12 34 56 78 today", "call [phone] today"),
            ("call (555) 123-4567", "call [phone]"),
            ("or 555.123.4567!", "or [phone]!"),
            ("两个: a@b.cn 和 +8613812345678", "两个: [email] 和 [phone]"),
            ("x@y.com,z@w.org", "[email],[email]"),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text).0, want, "{text}");
        }
        assert_eq!(redact("a@b.com +4915112345678").1, 2);
    }

    #[test]
    fn order_numbers_prices_and_handles_stay() {
        for text in [
            "where is order 2024112233445?",
            "order #123456 cost 19.99 on 2024-11-03",
            "twitter @shop and user@localhost",
            "rated 5 stars, 10 out of 10",
            "sku-123-456-7",
            "",
        ] {
            assert_eq!(redact(text), (text.to_string(), 0), "{text}");
        }
    }

    #[test]
    fn only_free_text_fields_change() {
        use mesh_proto::events::v1::{Login, SupportMessage};
        let mut e = Envelope {
            user_id: "a@b.com".into(),
            body: Some(Body::SupportMessage(SupportMessage {
                ticket_id: "t1".into(),
                text: "I am a@b.com".into(),
                channel: "chat".into(),
            })),
            ..Default::default()
        };
        assert_eq!(redact_envelope(&mut e), 1);
        assert_eq!(e.user_id, "a@b.com", "ids are the platform's business");
        let Some(Body::SupportMessage(m)) = &e.body else {
            unreachable!()
        };
        assert_eq!(m.text, "I am [email]");
        let mut login = Envelope {
            body: Some(Body::Login(Login::default())),
            ..Default::default()
        };
        assert_eq!(redact_envelope(&mut login), 0);
    }

    proptest! {
        /// Any text: no panic on any byte boundary, and the output never
        /// holds an `@` between an address's parts that redaction missed.
        #[test]
        fn never_panics_and_leaves_no_address(text in "\\PC{0,80}", local in "[a-z]{1,8}", dom in "[a-z]{1,8}") {
            let planted = format!("{text} {local}@{dom}.com {text}");
            let (out, n) = redact(&planted);
            prop_assert!(n >= 1);
            let needle = format!("{local}@{dom}.com");
            prop_assert!(!out.contains(&needle), "{}", out);
            let _ = redact(&text);
        }
    }
}
