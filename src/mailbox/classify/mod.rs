//! Classification of one received RFC 5322 message: what it says about a
//! recipient of the job, and which row it belongs to.
//!
//! - RFC 3464 delivery status notifications (`multipart/report;
//!   report-type=delivery-status`, RFC 6522): Action `failed` with a 5.x.x
//!   Status is `hard`; `delayed`, or a 4.x.x Status, is `soft` (RFC 3464
//!   §2.3.3, RFC 3463 §3.1). The recipient is the Original-Recipient, else
//!   the Final-Recipient (§2.3.1-2.3.2); the envelope id is the
//!   Original-Envelope-Id (§2.2.1, RFC 3461 §4.4); the Message-ID comes
//!   from the returned message or headers (RFC 6522 §3, `text/rfc822-headers`).
//!   RFC 6533's `global-delivery-status` is read the same way.
//! - ARF feedback reports (RFC 5965, `report-type=feedback-report`):
//!   `complaint`, unless the feedback type is `not-spam` (RFC 6650 §8).
//! - Mail to the job's `list_unsubscribe` mailto: address (RFC 2369 §3.2):
//!   `unsubscribe`, the recipient being the sender (From).
//! - Bounce notices that are not RFC 3464 reports (qmail, classic Exim,
//!   webmail providers): best effort, see [`text`].
//! - RFC 3834 auto-replies (`Auto-Submitted: auto-replied`, §5) and the
//!   customary `X-Autoreply` headers and out-of-office subjects: `auto_reply`.
//! - Everything else: `unknown`.
//!
//! The row comes from a VERP return path ([`verp`]) the message was sent to.

pub mod dsn;
pub mod text;
pub mod verp;

use std::fmt;

use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use self::dsn::{parse_groups, status_code, typed_value, Fields};
pub use self::verp::{mailto_address, AddressPattern, PatternError};
use crate::smtp::reply::escape;

/// The longest diagnostic kept, in characters.
pub const MAX_DIAGNOSTIC: usize = 300;

/// What a received message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A permanent delivery failure: never mail the address again.
    Hard,
    /// A transient failure or a delay: count it.
    Soft,
    /// The recipient reported the message as spam (ARF).
    Complaint,
    /// The recipient asked to be removed.
    Unsubscribe,
    /// An automatic reply such as out-of-office.
    AutoReply,
    /// Anything else.
    Unknown,
}

impl Kind {
    /// The name in `JOB.bounces.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::Complaint => "complaint",
            Kind::Unsubscribe => "unsubscribe",
            Kind::AutoReply => "auto_reply",
            Kind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one received message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The kind.
    pub kind: Kind,
    /// The job's recipient it is about (for `unsubscribe`, `auto_reply`
    /// and `unknown`: the sender).
    pub email: Option<String>,
    /// The RFC 3463 status code, when there is one.
    pub status: Option<String>,
    /// The remote server's words (Diagnostic-Code, the quoted reply, the
    /// feedback type), one line, control characters escaped, capped.
    pub diagnostic: Option<String>,
    /// The Message-ID (with `<>`) of the message that bounced, from the
    /// returned message or headers.
    pub message_id: Option<String>,
    /// The envelope id (RFC 3461 ENVID) the report carries.
    pub envelope_id: Option<String>,
    /// The job row, from the VERP address the message was sent to.
    pub row: Option<u64>,
    /// The received message's own Message-ID (with `<>`), to recognise it
    /// again.
    pub received_message_id: Option<String>,
}

impl Classification {
    fn new(kind: Kind) -> Self {
        Classification {
            kind,
            email: None,
            status: None,
            diagnostic: None,
            message_id: None,
            envelope_id: None,
            row: None,
            received_message_id: None,
        }
    }
}

/// What the job tells the classifier.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The `return_path` template, to find the row from a VERP address.
    pub return_path: Option<AddressPattern>,
    /// The address of the `list_unsubscribe` mailto: URL (it may carry
    /// `{{ row }}` too).
    pub unsubscribe: Option<AddressPattern>,
}

/// Classifies one raw message.
pub fn classify(raw: &[u8], ctx: &Context) -> Classification {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Classification::new(Kind::Unknown);
    };
    let own = own_addresses(&msg);
    let row = ctx
        .return_path
        .as_ref()
        .and_then(|p| own.iter().find_map(|a| p.row(a)));
    let mut c = if let Some(c) = from_dsn(&msg) {
        c
    } else if let Some(c) = from_arf(&msg, ctx) {
        c
    } else if let Some(c) = from_unsubscribe(&msg, &own, ctx) {
        c
    } else if let Some(c) = from_text_bounce(&msg, &own) {
        c
    } else if is_auto_reply(&msg) {
        let mut c = Classification::new(Kind::AutoReply);
        c.email = sender(&msg);
        c
    } else {
        let mut c = Classification::new(Kind::Unknown);
        c.email = sender(&msg);
        c
    };
    c.row = c.row.or(row);
    c.received_message_id = msg.message_id().map(bracket);
    c
}

/// Reads an RFC 3464 report; `None` if there is no delivery-status part
/// with a recipient.
fn from_dsn(msg: &Message) -> Option<Classification> {
    let body = msg.parts.iter().find_map(|p| {
        let ct = p.content_type()?;
        let sub = ct.subtype()?.to_ascii_lowercase();
        (ct.ctype().eq_ignore_ascii_case("message")
            && (sub == "delivery-status" || sub == "global-delivery-status"))
            .then(|| String::from_utf8_lossy(p.contents()).into_owned())
    })?;
    let groups = parse_groups(&body);
    let (recipients, per_message): (Vec<&Fields>, Vec<&Fields>) = groups
        .iter()
        .partition(|g| g.get("final-recipient").is_some());
    // The recipient that matters most: a permanent failure, then any
    // failure, then a delay.
    let rank = |g: &Fields| {
        let action = action(g);
        let permanent = recipient_status(g).is_some_and(|s| s.starts_with('5'));
        match (action.as_str(), permanent) {
            ("failed", true) => 0,
            ("failed", false) => 1,
            ("delayed", _) => 2,
            _ => 3,
        }
    };
    let r = recipients.iter().min_by_key(|g| rank(g))?;
    let status = recipient_status(r);
    let kind = match action(r).as_str() {
        "failed" if status.as_deref().is_some_and(|s| s.starts_with('4')) => Kind::Soft,
        // Failed: given up for good (RFC 3464 §2.3.3).
        "failed" => Kind::Hard,
        "delayed" => Kind::Soft,
        // delivered, relayed, expanded: a success notice.
        _ => Kind::Unknown,
    };
    let mut c = Classification::new(kind);
    c.email = r
        .get("original-recipient")
        .or_else(|| r.get("final-recipient"))
        .map(typed_value)
        .and_then(clean_address);
    c.status = status;
    c.diagnostic = r.get("diagnostic-code").map(typed_value).map(one_line);
    c.envelope_id = per_message
        .iter()
        .find_map(|g| g.get("original-envelope-id"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    c.message_id = returned(msg).and_then(|m| m.message_id().map(bracket));
    Some(c)
}

/// The `Action` of a recipient group, lower case, first word.
fn action(g: &Fields) -> String {
    g.get("action")
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The `Status` of a recipient group, else a code in its Diagnostic-Code.
/// A bare class (`5.0.0`, `4.0.0`) gives way to the code of the reply in
/// the Diagnostic-Code: Exim writes `Status: 5.0.0` for every address it
/// gives up on, also after a 4xx retried past its retry timeout, which is a
/// temporary failure that lasted, not a permanent one.
fn recipient_status(g: &Fields) -> Option<String> {
    let diagnostic = || {
        g.get("diagnostic-code")
            .map(typed_value)
            .and_then(dsn::find_status_code)
    };
    match g.get("status").and_then(status_code) {
        Some(s) if s.ends_with(".0.0") => diagnostic().or(Some(s)),
        Some(s) => Some(s),
        None => diagnostic(),
    }
}

/// Reads an RFC 5965 feedback report; `None` without a feedback-report part.
fn from_arf(msg: &Message, ctx: &Context) -> Option<Classification> {
    let body = msg.parts.iter().find_map(|p| {
        let ct = p.content_type()?;
        (ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype()?.eq_ignore_ascii_case("feedback-report"))
        .then(|| String::from_utf8_lossy(p.contents()).into_owned())
    })?;
    let groups = parse_groups(&body);
    let fields = groups.first().cloned().unwrap_or_default();
    let feedback = fields
        .get("feedback-type")
        .unwrap_or("abuse")
        .to_ascii_lowercase();
    let kind = if feedback == "not-spam" {
        Kind::Unknown
    } else {
        Kind::Complaint
    };
    let mut c = Classification::new(kind);
    let original = returned(msg);
    c.email = fields
        .get("original-rcpt-to")
        .map(typed_value)
        .and_then(clean_address)
        .or_else(|| {
            let m = original.as_ref()?;
            first_address(m.to()?.iter().filter_map(|a| a.address()))
        });
    c.diagnostic = Some(format!("feedback-type: {}", one_line(&feedback)));
    c.message_id = original.as_ref().and_then(|m| m.message_id().map(bracket));
    // The envelope sender the complaining site saw: the VERP address.
    if let Some(p) = &ctx.return_path {
        let mut senders: Vec<String> = fields
            .get("original-mail-from")
            .map(str::to_string)
            .into_iter()
            .collect();
        if let Some(m) = &original {
            senders.extend(header_strings(m, "Return-Path"));
        }
        c.row = senders.iter().find_map(|s| p.row(s));
    }
    Some(c)
}

/// Mail sent to the unsubscribe address; the recipient is its sender.
fn from_unsubscribe(msg: &Message, own: &[String], ctx: &Context) -> Option<Classification> {
    let pattern = ctx.unsubscribe.as_ref()?;
    let row = own.iter().find_map(|a| pattern.matches(a))?;
    let mut c = Classification::new(Kind::Unsubscribe);
    c.email = sender(msg);
    c.row = row;
    c.diagnostic = msg.subject().map(one_line).filter(|s| !s.is_empty());
    Some(c)
}

/// A bounce notice in free text.
fn from_text_bounce(msg: &Message, own: &[String]) -> Option<Classification> {
    let from = sender(msg);
    let subject = msg.subject().unwrap_or_default();
    let failed = header_strings(msg, "X-Failed-Recipients");
    if !text::looks_like_bounce(from.as_deref(), subject, !failed.is_empty()) {
        return None;
    }
    let body = msg.body_text(0).unwrap_or_default();
    let (notice, copy) = split_returned_copy(&body);
    let (hard, status) = text::severity(subject, notice);
    let mut c = Classification::new(if hard { Kind::Hard } else { Kind::Soft });
    let mut ignore = own.to_vec();
    ignore.extend(from.clone());
    c.email = failed
        .iter()
        .flat_map(|f| f.split(','))
        .find_map(clean_address)
        .or_else(|| text::find_recipient(notice, &ignore));
    c.diagnostic = evidence_line(notice, status.as_deref()).map(one_line);
    c.status = status;
    c.message_id = returned(msg)
        .and_then(|m| m.message_id().map(bracket))
        .or_else(|| message_id_in_text(copy));
    Some(c)
}

/// RFC 3834 §5 `Auto-Submitted: auto-replied`, the customary
/// `X-Autoreply`/`X-Autorespond` headers and `Precedence: auto_reply`, or
/// an out-of-office subject.
fn is_auto_reply(msg: &Message) -> bool {
    let has = |name: &str| !header_strings(msg, name).is_empty();
    let auto_submitted = header_strings(msg, "Auto-Submitted")
        .iter()
        .any(|v| v.trim().to_ascii_lowercase().starts_with("auto-replied"));
    let precedence = header_strings(msg, "Precedence")
        .iter()
        .any(|v| v.trim().eq_ignore_ascii_case("auto_reply"));
    let subject = msg.subject().unwrap_or_default().to_lowercase();
    const SUBJECTS: &[&str] = &[
        "out of office",
        "out of the office",
        "automatic reply",
        "auto-reply",
        "autoreply",
        "auto reply",
        "auto:",
        "自动回复",
        "abwesenheitsnotiz",
        "réponse automatique",
    ];
    auto_submitted
        || precedence
        || has("X-Autoreply")
        || has("X-Autorespond")
        || SUBJECTS
            .iter()
            .any(|s| subject.starts_with(s) || subject.contains(&format!(": {s}")))
}

/// The returned original message or headers (RFC 6522 §3 third part).
fn returned<'a>(msg: &'a Message<'a>) -> Option<Message<'a>> {
    for p in msg.parts.iter().skip(1) {
        if let PartType::Message(m) = &p.body {
            return Some(m.clone());
        }
        let Some(ct) = p.content_type() else { continue };
        let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        let headers_only = (ct.ctype().eq_ignore_ascii_case("text") && sub == "rfc822-headers")
            || (ct.ctype().eq_ignore_ascii_case("message") && sub == "global-headers");
        if headers_only {
            let mut raw = p.contents().to_vec();
            raw.extend_from_slice(b"\r\n\r\n");
            return MessageParser::default()
                .parse(raw.as_slice())
                .map(Message::into_owned);
        }
    }
    None
}

/// The addresses the message was delivered to: To, Cc and the delivery
/// headers MTAs add (Delivered-To, X-Original-To, Envelope-To).
fn own_addresses(msg: &Message) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc"] {
        out.extend(header_strings(msg, name));
    }
    out.iter().filter_map(|a| clean_address(a)).collect()
}

/// Every value of a header as strings (addresses for address headers).
fn header_strings(msg: &Message, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in msg.headers() {
        if !h.name().eq_ignore_ascii_case(name) {
            continue;
        }
        match h.value() {
            HeaderValue::Text(t) => out.push(t.to_string()),
            HeaderValue::TextList(l) => out.extend(l.iter().map(|t| t.to_string())),
            HeaderValue::Address(a) => {
                out.extend(a.iter().filter_map(|a| a.address()).map(str::to_string))
            }
            _ => {}
        }
    }
    out
}

/// The From address.
fn sender(msg: &Message) -> Option<String> {
    first_address(msg.from()?.iter().filter_map(|a| a.address()))
}

fn first_address<'a>(mut it: impl Iterator<Item = &'a str>) -> Option<String> {
    it.find_map(clean_address)
}

/// An address without `<>`, space or a display name; `None` if it has no `@`.
fn clean_address(s: &str) -> Option<String> {
    let s = s.trim();
    let s = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let s = s.trim();
    (s.contains('@') && !s.contains(char::is_whitespace) && !s.chars().any(|c| c.is_control()))
        .then(|| s.to_string())
}

/// A Message-ID with angle brackets.
fn bracket(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{id}>")
}

/// Whitespace collapsed, control characters escaped, capped at
/// [`MAX_DIAGNOSTIC`] characters.
fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let escaped = escape(joined.as_bytes());
    match escaped.char_indices().nth(MAX_DIAGNOSTIC) {
        Some((i, _)) => format!("{}...", &escaped[..i]),
        None => escaped,
    }
}

/// The notice and the copy of the returned message that qmail, Exim and
/// most webmail bounces append after a marker line.
fn split_returned_copy(body: &str) -> (&str, &str) {
    let mut at = 0;
    for line in body.split_inclusive('\n') {
        let l = line.trim().to_lowercase();
        let marker = (l.starts_with("--") || l.starts_with("=="))
            && (l.contains("copy") || l.contains("original") || l.contains("returned"))
            || l.starts_with("----- original message")
            || l.contains("原邮件");
        if marker && at > 0 {
            return body.split_at(at);
        }
        at += line.len();
    }
    (body, "")
}

/// The line that shows why: the one with the status code, else one with a
/// reply code or a known wording.
fn evidence_line<'a>(notice: &'a str, status: Option<&str>) -> Option<&'a str> {
    let lines = || notice.lines().map(str::trim).filter(|l| !l.is_empty());
    if let Some(s) = status {
        if let Some(l) = lines().find(|l| l.contains(s)) {
            return Some(l);
        }
    }
    lines().find(|l| {
        let (hard, _) = text::severity("", l);
        hard || l.to_lowercase().contains("quota") || l.to_lowercase().contains("full")
    })
}

/// A `Message-ID:` line in a returned copy given as plain text.
fn message_id_in_text(copy: &str) -> Option<String> {
    copy.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        (name.trim().eq_ignore_ascii_case("message-id") && value.contains('@'))
            .then(|| bracket(value))
    })
}

#[cfg(test)]
mod tests;
