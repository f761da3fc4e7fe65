//! Best-effort reading of bounces that are not RFC 3464 reports: the plain
//! texts of qmail, classic Exim, and the webmail providers (QQ, NetEase
//! 163/126, Gmail's older form). Whether a message is a bounce at all is
//! read from its sender and subject; hard or soft from the RFC 3463 code or
//! the SMTP reply it quotes (RFC 5321 §4.2.1: 5yz permanent, 4yz transient),
//! else from well-known wordings.

use super::dsn::find_status_code;

/// Local parts that send bounces (RFC 5321 §4.5.1 postmaster, and the
/// customary MAILER-DAEMON).
const BOUNCE_SENDERS: &[&str] = &["mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"];

/// Subjects of bounce notices, lower case.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "delivery status notification",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "failure notice",
    "returned mail",
    "mail delivery failed",
    "could not be delivered",
    "delivery notification",
    "delayed mail",
    "warning: message",
    "系统退信",
    "退信",
    "投递失败",
    "无法投递",
    "未能送达",
];

/// Wordings of a delay notice: the server is still trying (soft).
const DELAYED: &[&str] = &[
    "delayed",
    "has not yet been delivered",
    "have not yet been delivered",
    "will continue trying",
    "will be retried",
    "still trying",
    "temporary failure",
    "temporarily deferred",
];

/// Wordings of a permanent recipient failure (hard).
const HARD: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "mailbox unavailable",
    "mailbox not found",
    "mailbox does not exist",
    "address not found",
    "address couldn't be found",
    "address could not be found",
    "does not exist",
    "recipient address rejected",
    "recipient not found",
    "invalid recipient",
    "invalid mailbox",
    "account has been disabled",
    "account is disabled",
    "user not found",
    "not a valid mailbox",
    "用户不存在",
    "收件人不存在",
    "帐户不存在",
    "账户不存在",
    "地址不存在",
];

/// Wordings of a transient recipient failure (soft).
const SOFT: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "over quota",
    "quota exceeded",
    "exceeded storage",
    "insufficient system storage",
    "try again later",
    "temporarily",
    "greylist",
    "邮箱已满",
    "空间不足",
];

/// The message looks like a bounce notice: from a bounce sender, or with
/// a bounce subject, or naming failed recipients (`X-Failed-Recipients`,
/// Exim and Gmail).
pub fn looks_like_bounce(from: Option<&str>, subject: &str, failed_header: bool) -> bool {
    let sender = from
        .and_then(|f| f.split('@').next())
        .map(str::to_ascii_lowercase)
        .is_some_and(|local| BOUNCE_SENDERS.contains(&local.as_str()));
    let subject = subject.to_lowercase();
    sender || failed_header || BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s))
}

/// Hard (`true`) or soft (`false`) for a bounce text, with the RFC 3463
/// status it quotes, if any.
pub fn severity(subject: &str, text: &str) -> (bool, Option<String>) {
    let lower_subject = subject.to_lowercase();
    let lower = text.to_lowercase();
    let status = find_status_code(text);
    // A delay notice is soft whatever codes it quotes from the last try.
    if DELAYED.iter().any(|d| lower_subject.contains(d)) {
        return (false, status);
    }
    if let Some(s) = &status {
        return (s.starts_with('5'), status);
    }
    if let Some(permanent) = basic_code(text) {
        return (permanent, None);
    }
    if HARD.iter().any(|h| lower.contains(h)) {
        return (true, None);
    }
    if SOFT.iter().any(|s| lower.contains(s)) || DELAYED.iter().any(|d| lower.contains(d)) {
        return (false, None);
    }
    // A bounce that says nothing usable is not evidence enough to stop
    // mailing an address for good.
    (false, None)
}

/// An SMTP reply code quoted in the text (`550 `, `552-`, `(#5.1.1)` is
/// handled by the enhanced-code search): `true` for 5yz, `false` for 4yz.
fn basic_code(text: &str) -> Option<bool> {
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(3) {
        let (c0, c1, c2, c3) = (b[i], b[i + 1], b[i + 2], b[i + 3]);
        let before_ok = i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b':' | b'(' | b'"');
        if before_ok
            && matches!(c0, b'4' | b'5')
            && (b'0'..=b'5').contains(&c1)
            && c2.is_ascii_digit()
            && matches!(c3, b' ' | b'-')
        {
            return Some(c0 == b'5');
        }
    }
    None
}

/// The failed recipient named in a bounce text: the first address that is
/// not a bounce sender and not one of `ignore` (the mailbox's own
/// addresses).
pub fn find_recipient(text: &str, ignore: &[String]) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || "<>()[]\"',;".contains(c))
        .map(|t| t.trim_end_matches(['.', ':']).trim_start_matches("mailto:"))
        .filter(|t| is_address(t))
        .find(|t| {
            let local = t.split('@').next().unwrap_or_default().to_ascii_lowercase();
            !BOUNCE_SENDERS.contains(&local.as_str())
                && !ignore.iter().any(|i| i.eq_ignore_ascii_case(t))
        })
        .map(str::to_string)
}

/// Plausibly one address: `local@domain.tld`.
fn is_address(t: &str) -> bool {
    let Some((local, domain)) = t.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_senders_and_subjects() {
        assert!(looks_like_bounce(
            Some("MAILER-DAEMON@mx.example.net"),
            "",
            false
        ));
        assert!(looks_like_bounce(Some("postmaster@163.com"), "", false));
        assert!(looks_like_bounce(
            None,
            "Undelivered Mail Returned to Sender",
            false
        ));
        assert!(looks_like_bounce(None, "failure notice", false));
        assert!(looks_like_bounce(None, "系统退信", false));
        assert!(looks_like_bounce(None, "anything", true));
        assert!(!looks_like_bounce(
            Some("alice@example.org"),
            "Re: November",
            false
        ));
    }

    #[test]
    fn severity_from_codes_and_wordings() {
        let hard = |s: &str, t: &str| severity(s, t);
        // Enhanced code wins.
        assert_eq!(
            hard("", "550 5.1.1 <a@b.org>: Recipient address rejected"),
            (true, Some("5.1.1".into()))
        );
        assert_eq!(
            hard("", "452 4.2.2 mailbox full"),
            (false, Some("4.2.2".into()))
        );
        // qmail quotes codes as (#5.1.1).
        assert_eq!(
            hard("", "Sorry, no mailbox here by that name. (#5.1.1)"),
            (true, Some("5.1.1".into()))
        );
        // Only the basic reply code.
        assert_eq!(hard("", "Remote said: 550 Mailbox not found"), (true, None));
        assert_eq!(hard("", "said: 421 too busy"), (false, None));
        // Only words.
        assert_eq!(hard("", "The user does not exist"), (true, None));
        assert_eq!(hard("", "收件人不存在"), (true, None));
        assert_eq!(hard("", "Mailbox is full"), (false, None));
        assert_eq!(hard("", "邮箱已满"), (false, None));
        // A delay notice is soft even when it quotes a 5xx it got once.
        assert_eq!(
            hard("Warning: message 1abc delayed 24 hours", "550 5.1.1 x"),
            (false, Some("5.1.1".into()))
        );
        // Nothing usable: soft.
        assert_eq!(
            hard("", "Your message could not be delivered."),
            (false, None)
        );
        // A year or a count is not a reply code.
        assert_eq!(hard("", "In 2026 we sent 500messages"), (false, None));
    }

    #[test]
    fn recipients_skip_bounce_senders_and_own_addresses() {
        let own = vec!["bounces+3@example.com".to_string()];
        assert_eq!(
            find_recipient(
                "From MAILER-DAEMON@mx.x.org to <bounces+3@example.com>: <nobody@example.org>: user unknown.",
                &own
            )
            .as_deref(),
            Some("nobody@example.org")
        );
        assert_eq!(find_recipient("no address here @ all", &own), None);
        assert_eq!(
            find_recipient("mailto:x@y.org.", &own).as_deref(),
            Some("x@y.org")
        );
    }
}
