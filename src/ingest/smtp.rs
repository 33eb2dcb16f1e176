//! Reading SMTP replies that providers pass along, and classifying why a message bounced.
//!
//! Providers send the basic code (`550`) as a number or a string, the enhanced code
//! (`5.1.1`, RFC 3463) in its own field or inside the reply text, and the reply text with
//! their own prefixes. [`Reply`] pulls the codes out; [`classify`] maps them to a
//! [`Reason`]: the enhanced code first (most specific), then well-known phrases.

use crate::event::{BounceClass, Reason};

/// The parts of an SMTP reply that rules care about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Basic reply code, 200–599.
    pub code: Option<u16>,
    /// Enhanced status code, `class.subject.detail`.
    pub enhanced: Option<String>,
}

impl Reply {
    /// Fills in whatever is missing from a free-text reply such as
    /// `550 5.5.0 Requested action not taken: mailbox unavailable.`
    pub fn complete_from_text(&mut self, text: &str) {
        if self.code.is_none() {
            self.code = leading_code(text);
        }
        if self.enhanced.is_none() {
            self.enhanced = find_enhanced(text);
        }
    }
}

/// Returns a basic reply code if `value` is one (`250`, `"550"`).
pub fn reply_code(value: i64) -> Option<u16> {
    u16::try_from(value)
        .ok()
        .filter(|code| (200..600).contains(code))
}

/// Returns `text` if it is an enhanced status code (`5.1.1`).
pub fn enhanced_code(text: &str) -> Option<String> {
    let text = text.trim();
    is_enhanced(text).then(|| text.to_owned())
}

fn leading_code(text: &str) -> Option<u16> {
    let text = text.trim_start();
    let digits = text.get(..3)?;
    let after = text[3..].chars().next();
    if digits.bytes().all(|b| b.is_ascii_digit()) && after.is_none_or(|c| c == ' ' || c == '-') {
        reply_code(digits.parse().ok()?)
    } else {
        None
    }
}

fn is_enhanced(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(class, "2" | "4" | "5")
        && (1..=3).contains(&subject.len())
        && (1..=3).contains(&detail.len())
        && subject
            .bytes()
            .chain(detail.bytes())
            .all(|b| b.is_ascii_digit())
}

/// Returns the first enhanced status code that stands as a word in `text`.
pub fn find_enhanced(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|token| token.trim_end_matches('.'))
        .find(|token| is_enhanced(token))
        .map(str::to_owned)
}

/// Phrases that name a policy or reputation block: the address itself may be fine.
const BLOCKED_PHRASES: &[&str] = &[
    "blocked",
    "blacklist",
    "blocklist",
    "block list",
    "spamhaus",
    "spamcop",
    "barracuda",
    "dnsbl",
    "rbl",
    "reputation",
    "policy",
    "listed",
    "not allowed",
    "access denied",
    "rejected for policy",
];

/// Phrases that say the address or domain does not exist.
const INVALID_PHRASES: &[&str] = &[
    "user unknown",
    "unknown user",
    "unknown recipient",
    "no such user",
    "no such recipient",
    "does not exist",
    "doesn't exist",
    "not exist",
    "invalid recipient",
    "invalid mailbox",
    "invalid address",
    "mailbox not found",
    "mailbox unavailable",
    "recipient not found",
    "address not found",
    "unrouteable",
    "unroutable",
    "no mailbox",
    "account disabled",
    "account has been disabled",
    "user not found",
    "recipient address rejected",
    "domain not found",
    "no mx",
    "host not found",
];

/// Phrases that say delivery gave up after trying for a while.
const TIMEOUT_PHRASES: &[&str] = &["timed out", "timeout", "time out", "expired", "too long"];

/// Returns why a message bounced, from its reply. `None` when nothing is known.
pub fn classify(reply: &Reply, text: Option<&str>) -> Option<Reason> {
    if let Some(reason) = reply.enhanced.as_deref().and_then(|e| by_enhanced(e, text)) {
        return Some(reason);
    }
    if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
        let lower = text.to_lowercase();
        let has = |phrases: &[&str]| phrases.iter().any(|p| lower.contains(p));
        if has(TIMEOUT_PHRASES) {
            return Some(Reason::TimedOut);
        }
        if has(BLOCKED_PHRASES) {
            return Some(Reason::Blocked);
        }
        if lower.contains("spam") || lower.contains("junk") {
            return Some(Reason::Spam);
        }
        if has(INVALID_PHRASES) {
            return Some(Reason::Invalid);
        }
        return Some(Reason::Bounced);
    }
    reply.code.map(|_| Reason::Bounced)
}

fn by_enhanced(enhanced: &str, text: Option<&str>) -> Option<Reason> {
    let mut parts = enhanced.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let permanent = class == "5";
    let content_spam = text.is_some_and(|t| {
        let lower = t.to_lowercase();
        (lower.contains("spam") || lower.contains("junk"))
            && !BLOCKED_PHRASES.iter().any(|p| lower.contains(p))
    });
    match (subject, detail) {
        ("1", "1" | "2" | "3" | "6" | "10") if permanent => Some(Reason::Invalid),
        ("2", "1") if permanent => Some(Reason::Invalid),
        ("4", "7" | "1" | "2") => Some(Reason::TimedOut),
        ("7", _) if content_spam => Some(Reason::Spam),
        ("7", _) => Some(Reason::Blocked),
        _ => None,
    }
}

/// Drops the type of a DSN diagnostic (`smtp; 550 ...`, `X-Postfix; unknown user`), which
/// several providers pass along as they got it.
pub fn strip_diagnostic_type(text: &str) -> &str {
    match text.split_once(';') {
        Some((kind, rest))
            if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            rest.trim()
        }
        _ => text.trim(),
    }
}

/// Returns the bounce class a reply implies when the provider does not say: an address
/// that does not exist is hard, a temporary failure is soft, anything else undetermined.
pub fn class_from_reply(reply: &Reply, reason: Option<Reason>) -> BounceClass {
    let temporary = reply.code.is_some_and(|c| (400..500).contains(&c))
        || reply
            .enhanced
            .as_deref()
            .is_some_and(|e| e.starts_with("4."));
    if temporary {
        BounceClass::Soft
    } else if reason == Some(Reason::Invalid) {
        BounceClass::Hard
    } else {
        BounceClass::Undetermined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Reply {
        let mut reply = Reply::default();
        reply.complete_from_text(text);
        reply
    }

    #[test]
    fn codes_come_out_of_reply_text() {
        let r = reply("550 5.5.0 Requested action not taken: mailbox unavailable.");
        assert_eq!(r.code, Some(550));
        assert_eq!(r.enhanced.as_deref(), Some("5.5.0"));
        let r = reply(
            " example@example.com MX: mx.dereck.cn.ua RESP: 5.1.1 <example@example.com>: Recipient address rejected",
        );
        assert_eq!(r.code, None);
        assert_eq!(r.enhanced.as_deref(), Some("5.1.1"));
        assert_eq!(reply("250-OK").code, Some(250));
        assert_eq!(reply("1234 nope").code, None);
        assert_eq!(reply("version 1.2.3.4").enhanced, None);
    }

    #[test]
    fn enhanced_codes_decide_first() {
        let classify_text = |text: &str| classify(&reply(text), Some(text));
        assert_eq!(
            classify_text("550 5.1.1 <a@b.c>: user unknown"),
            Some(Reason::Invalid)
        );
        assert_eq!(
            classify_text("554 5.7.1 Service unavailable; client host blocked using Spamhaus"),
            Some(Reason::Blocked)
        );
        assert_eq!(
            classify_text("554 5.7.1 Message rejected as spam by content filter"),
            Some(Reason::Spam)
        );
        assert_eq!(
            classify_text("451 4.4.7 Delivery time expired"),
            Some(Reason::TimedOut)
        );
        assert_eq!(
            classify_text("552 5.2.2 Mailbox full"),
            Some(Reason::Bounced)
        );
    }

    #[test]
    fn phrases_decide_without_codes() {
        let classify_text = |text: &str| classify(&Reply::default(), Some(text));
        assert_eq!(
            classify_text("RESP: Mailbox over quota"),
            Some(Reason::Bounced)
        );
        assert_eq!(
            classify_text("The email account that you tried to reach does not exist"),
            Some(Reason::Invalid)
        );
        assert_eq!(
            classify_text("Connection timed out"),
            Some(Reason::TimedOut)
        );
        assert_eq!(classify(&Reply::default(), None), None);
    }

    #[test]
    fn diagnostic_types_are_dropped() {
        assert_eq!(
            strip_diagnostic_type("smtp; 550 5.1.1 <jane@example.com>... User"),
            "550 5.1.1 <jane@example.com>... User"
        );
        assert_eq!(
            strip_diagnostic_type("X-Postfix; unknown user"),
            "unknown user"
        );
        assert_eq!(
            strip_diagnostic_type("550 no; such user"),
            "550 no; such user"
        );
    }

    #[test]
    fn class_follows_reply_when_provider_is_silent() {
        assert_eq!(
            class_from_reply(&reply("451 4.2.0 try later"), None),
            BounceClass::Soft
        );
        assert_eq!(
            class_from_reply(&reply("550 5.1.1 unknown"), Some(Reason::Invalid)),
            BounceClass::Hard
        );
        assert_eq!(
            class_from_reply(&reply("554 5.7.1 blocked"), Some(Reason::Blocked)),
            BounceClass::Undetermined
        );
    }
}
