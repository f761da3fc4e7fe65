//! Draft → RFC 5322 / MIME bytes. Owns the header block and the MIME tree of
//! one message; Date and Message-ID are inputs so output is reproducible.
//!
//! Follows RFC 5322 (header syntax, 998-octet line limit, folding), RFC 2045–2047
//! (MIME structure, transfer encodings, encoded-words for non-ASCII text),
//! RFC 2231 (non-ASCII attachment file names), RFC 2369 / RFC 8058
//! (List-Unsubscribe and one-click List-Unsubscribe-Post) and RFC 2387
//! (multipart/related for inline images).
//!
//! mail-builder writes the bodies (quoted-printable or base64, so every body is
//! 7-bit clean), the Subject/extra header encoded-words and the Date. We write
//! the address headers and the attachment part headers ourselves because
//! mail-builder does not split a long display name into several encoded-words
//! (one huge word can exceed 998 octets) and only offers RFC 2047 inside a quoted
//! `filename=`, which RFC 2047 §5 forbids and several clients show verbatim.
//! Boundaries are derived from the Message-ID instead of the clock so the same
//! draft always gives the same bytes.

use std::sync::Arc;

use base64::Engine as _;
use mail_builder::headers::date::Date;
use mail_builder::headers::Header;

use crate::address::Mailbox;
use crate::compose::message::{Draft, Envelope, Outgoing};
use crate::smtp::bytes::{MessageBytes, MessageWriter};

mod body;

/// Per-message inputs that are not in the draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeOptions {
    /// Date header, seconds since the Unix epoch.
    pub date: i64,
    /// Message-ID with angle brackets.
    pub message_id: String,
}

/// Folding target for lines we fold ourselves (RFC 5322 §2.1.1 "SHOULD" limit).
const FOLD_AT: usize = 76;

/// The Message-ID for `row` of run `run_id`: `<{run_id}.{row}@{domain of from}>`.
///
/// A non-ASCII or missing domain falls back to `localhost` so the header stays
/// ASCII (Message-IDs are compared byte-wise; punycode is not worth it here).
pub fn message_id(run_id: &str, row: u64, from: &Mailbox) -> String {
    let domain = from
        .addr
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| {
            !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        })
        .unwrap_or("localhost");
    let mut id = String::with_capacity(run_id.len() + domain.len() + 24);
    id.push('<');
    // The run id is ours, but keep the left part a valid dot-atom whatever it is.
    id.extend(run_id.chars().map(|c| {
        if c.is_ascii_alphanumeric() || "-_.".contains(c) {
            c
        } else {
            '_'
        }
    }));
    id.push('.');
    id.push_str(itoa::Buffer::new().format(row));
    id.push('@');
    id.push_str(domain);
    id.push('>');
    id
}

/// Build the message bytes (CRLF, 7-bit-safe bodies, lines ≤ 998 octets).
pub fn build(draft: &Draft, opts: &MimeOptions) -> MessageBytes {
    // Sized for the message's own bytes up front (attached files are
    // shared, not copied in): growing a buffer by doubling copies it again
    // and again.
    let mut out = MessageWriter::with_buffer(Vec::with_capacity(
        4096 + draft.text.as_ref().map_or(0, |t| t.len() * 2)
            + draft.html.as_ref().map_or(0, |h| h.len() * 2),
    ));
    write_headers(draft, opts, &mut out);
    body::write(draft, &boundary_seed(&opts.message_id), &mut out);
    // A body without a final line break still ends the message with CRLF,
    // as SMTP DATA would make it anyway (BDAT sends the bytes as they are).
    if !out.ends_with_crlf() {
        out.extend_from_slice(b"\r\n");
    }
    out.finish()
}

/// Build the [`Outgoing`] message: envelope from the draft, bytes from [`build`].
pub fn compose(draft: &Draft, opts: &MimeOptions) -> Outgoing {
    let data = build(draft, opts);
    let rcpt_to = draft.envelope_recipients();
    let mail_from = match &draft.return_path {
        Some(verp) => verp.clone(),
        None => draft
            .from
            .as_ref()
            .map(|m| m.addr.clone())
            .unwrap_or_default(),
    };
    let smtputf8 = !mail_from.is_ascii() || rcpt_to.iter().any(|a| !a.is_ascii());
    let eight_bit = !data.is_ascii();
    Outgoing {
        row: draft.row,
        email: draft.email.clone(),
        message_id: opts.message_id.clone(),
        envelope: Envelope { mail_from, rcpt_to },
        data: Arc::new(data),
        eight_bit,
        smtputf8,
    }
}

fn write_headers(draft: &Draft, opts: &MimeOptions, out: &mut Vec<u8>) {
    write_date_header(out, opts.date);
    push_header_line(out, "Message-ID", &opts.message_id);
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    if let Some(from) = &draft.from {
        write_address_header(out, "From", std::slice::from_ref(from));
    }
    if !draft.to.is_empty() {
        write_address_header(out, "To", &draft.to);
    }
    if !draft.cc.is_empty() {
        write_address_header(out, "Cc", &draft.cc);
    }
    // Bcc is deliberately never written: it lives in the envelope only.
    if !draft.reply_to.is_empty() {
        write_address_header(out, "Reply-To", &draft.reply_to);
    }
    write_text_header(out, "Subject", &draft.subject);
    for (name, value) in &draft.headers {
        write_text_header(out, name, value);
    }
    if !draft.list_unsubscribe.is_empty() {
        let uris: Vec<String> = draft
            .list_unsubscribe
            .iter()
            .map(|u| angle_bracketed_uri(u))
            .collect();
        write_list_header(out, "List-Unsubscribe", &uris);
        // RFC 8058 one-click needs an https URI to POST to.
        if draft
            .list_unsubscribe
            .iter()
            .any(|u| u.len() >= 8 && u[..8].eq_ignore_ascii_case("https://"))
        {
            out.extend_from_slice(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
        }
    }
}

/// `Date: …` in RFC 5322 form. A run stamps every message with the same
/// date, so the last one formatted (per thread) is reused.
fn write_date_header(out: &mut Vec<u8>, date: i64) {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(i64, Vec<u8>)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if last.as_ref().is_none_or(|(d, _)| *d != date) {
            let mut line = b"Date: ".to_vec();
            Date::new(date)
                .write_header(&mut line, 6)
                .expect("Vec write");
            *last = Some((date, line));
        }
        if let Some((_, line)) = last {
            out.extend_from_slice(line);
        }
    });
}

fn push_header_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// An unstructured header (RFC 5322 §2.2.3). Printable ASCII is folded at
/// spaces so it stays readable (lines of at most [`FOLD_AT`] octets unless
/// one word is longer). Anything else goes out as RFC 2047 encoded-words, one
/// per folded line: non-ASCII or control characters, a word that would not
/// fit in a 998-octet line, and any `=?`, so that a value which merely looks
/// like an encoded-word is shown literally instead of being decoded by the
/// reader (possibly into a line break).
fn write_text_header(out: &mut Vec<u8>, name: &str, value: &str) {
    // One pass: printable ASCII, no "=?", and the longest run between blanks.
    let (mut printable, mut longest_word, mut word, mut prev) = (true, 0, 0, 0u8);
    for b in value.bytes() {
        printable &= (0x20..0x7f).contains(&b) || b == b'\t';
        printable &= !(prev == b'=' && b == b'?');
        word = if b == b' ' || b == b'\t' { 0 } else { word + 1 };
        longest_word = longest_word.max(word);
        prev = b;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b":");
    if printable && name.len() + 2 + longest_word <= MAX_LINE {
        let mut line_len = name.len() + 1;
        // Each word keeps its leading whitespace; folding inserts CRLF before it.
        for (i, word) in value.split(' ').enumerate() {
            if i > 0 && line_len + 1 + word.len() > FOLD_AT && line_len > name.len() + 1 {
                out.extend_from_slice(b"\r\n");
                line_len = 0;
            }
            out.push(b' ');
            out.extend_from_slice(word.as_bytes());
            line_len += 1 + word.len();
        }
    } else {
        // Whitespace between adjacent encoded-words is not part of the text
        // (RFC 2047 §6.2), so the words rebuild the value exactly.
        for (i, word) in encoded_words(value, TEXT_WORD).iter().enumerate() {
            if i > 0 || name.len() + 2 + word.len() > FOLD_AT {
                out.extend_from_slice(b"\r\n");
            }
            out.push(b' ');
            out.extend_from_slice(word.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 5322 §2.1.1: no line may be longer than this, CRLF excluded.
const MAX_LINE: usize = 998;

/// `<uri>` for List-Unsubscribe. A URI too long for one line is broken
/// inside the angle brackets, where RFC 2369 §2 says whitespace is ignored;
/// shorter ones stay whole, since not every receiver strips that whitespace
/// before following a one-click link.
fn angle_bracketed_uri(uri: &str) -> String {
    let longest_line = "List-Unsubscribe: <>,".len() + uri.len();
    if longest_line <= MAX_LINE {
        return format!("<{uri}>");
    }
    // List-Unsubscribe URIs are ASCII (checked when rendered), so any byte
    // is a character boundary; split anyway only where one is.
    let mut item = String::with_capacity(uri.len() + uri.len() / 24 + 2);
    item.push('<');
    let mut line_len = 1;
    for c in uri.chars() {
        if line_len + c.len_utf8() > FOLD_AT - 2 {
            item.push_str("\r\n ");
            line_len = 1;
        }
        item.push(c);
        line_len += c.len_utf8();
    }
    item.push('>');
    item
}

/// A comma-separated list of pre-formatted items, folded between items.
fn write_list_header(out: &mut Vec<u8>, name: &str, items: &[String]) {
    let mut line_len = start_list_header(out, name);
    for (i, item) in items.iter().enumerate() {
        line_len = push_list_item(out, i, item, line_len);
    }
    out.extend_from_slice(b"\r\n");
}

fn start_list_header(out: &mut Vec<u8>, name: &str) -> usize {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    name.len() + 1
}

/// Append item `i` (which may itself span folded lines) to a list header
/// whose current line is `line_len` octets long; returns the new length.
fn push_list_item(out: &mut Vec<u8>, i: usize, item: &str, mut line_len: usize) -> usize {
    if i > 0 {
        out.push(b',');
        line_len += 1;
    }
    // Items are folded only with CRLF, and hold no other CR or LF.
    let first_line = memchr::memchr(b'\r', item.as_bytes()).unwrap_or(item.len());
    if i > 0 && line_len + 1 + first_line > FOLD_AT {
        out.extend_from_slice(b"\r\n");
        line_len = 0;
    }
    out.push(b' ');
    out.extend_from_slice(item.as_bytes());
    match memchr::memrchr(b'\n', item.as_bytes()) {
        Some(p) => item.len() - p - 1,
        None => line_len + 1 + item.len(),
    }
}

fn write_address_header(out: &mut Vec<u8>, name: &str, list: &[Mailbox]) {
    let mut line_len = start_list_header(out, name);
    let mut item = String::with_capacity(128);
    for (i, m) in list.iter().enumerate() {
        item.clear();
        format_mailbox_into(m, &mut item);
        line_len = push_list_item(out, i, &item, line_len);
    }
    out.extend_from_slice(b"\r\n");
}

/// Append `"Name" <addr>` or `=?utf-8?B?...?= <addr>` to `out`, possibly
/// spanning folded lines.
fn format_mailbox_into(m: &Mailbox, out: &mut String) {
    let Some(name) = m.name.as_deref().filter(|n| !n.is_empty()) else {
        out.push_str(&m.addr);
        return;
    };
    let start = out.len();
    if name.bytes().all(|b| (0x20..0x7f).contains(&b)) && name.len() <= 60 && !name.contains("=?") {
        crate::address::push_quoted(out, name);
    } else {
        for (i, word) in encoded_words(name, PHRASE_WORD).iter().enumerate() {
            if i > 0 {
                out.push_str("\r\n ");
            }
            out.push_str(word);
        }
    }
    let phrase = &out.as_bytes()[start..];
    let last_line = memchr::memrchr(b'\n', phrase).map_or(phrase.len(), |p| phrase.len() - p - 1);
    if last_line + m.addr.len() + 3 > FOLD_AT {
        out.push_str("\r\n <");
    } else {
        out.push_str(" <");
    }
    out.push_str(&m.addr);
    out.push('>');
}

/// Input octets per encoded-word in unstructured headers: words of at most
/// 64 octets, so a word and a short header name fit in 78.
const TEXT_WORD: usize = 39;

/// Input octets per encoded-word in a display name: the most one word can
/// hold (72 octets, RFC 2047 allows 75), because some readers (Python's
/// `email`) keep the space between adjacent encoded-words of a phrase.
const PHRASE_WORD: usize = 45;

/// RFC 2047 B-encoded words of at most `chunk` input octets each, split
/// only at UTF-8 character boundaries as §5 requires.
fn encoded_words(text: &str, chunk: usize) -> Vec<String> {
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + chunk).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let chunk = &text.as_bytes()[start..end];
        words.push(format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(chunk)
        ));
        start = end;
    }
    words
}

/// A per-message seed for boundaries: `=_ms_` and 16 hex digits of an
/// FNV-1a hash of the Message-ID (deterministic; collisions with a body are
/// ruled out by the text part writer, not by the hash). `=_` cannot occur in base64
/// or quoted-printable output.
fn boundary_seed(message_id: &str) -> String {
    let hash = message_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{BOUNDARY_PREFIX}{hash:016x}")
}

/// How every boundary of ours starts.
const BOUNDARY_PREFIX: &str = "=_ms_";

/// Canonical form (RFC 2045 §6.8): every line break becomes CRLF before
/// encoding, so base64 bodies decode to CRLF text too, and a lone CR or LF
/// (which mail-builder would pass through in 7bit) cannot reach the wire.
/// One pass over the bytes into `out`, which also tells whether the result
/// is plain 7-bit text (ASCII without NUL, lines of at most
/// [`MAX_7BIT_LINE`] octets) that needs no transfer encoding.
fn normalize_into(s: &str, out: &mut Vec<u8>) -> bool {
    out.reserve(s.len() + s.len() / 32 + 2);
    let bytes = s.as_bytes();
    if bytes.is_ascii() && memchr::memchr2(0, b'\r', bytes).is_none() {
        // The usual template output: ASCII with LF line ends. Whole-text
        // scans instead of per-line ones; only line lengths are left to check.
        let mut plain = true;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', bytes) {
            plain &= end - start <= MAX_7BIT_LINE;
            out.extend_from_slice(&bytes[start..end]);
            out.extend_from_slice(b"\r\n");
            start = end + 1;
        }
        out.extend_from_slice(&bytes[start..]);
        return plain && bytes.len() - start <= MAX_7BIT_LINE;
    }
    let mut plain = true;
    let mut rest = s.as_bytes();
    loop {
        let end = memchr::memchr2(b'\r', b'\n', rest);
        let line = &rest[..end.unwrap_or(rest.len())];
        // RFC 2045 2.7: 7bit data is US-ASCII without NUL, in short lines.
        plain = plain
            && line.len() <= MAX_7BIT_LINE
            && line.is_ascii()
            && memchr::memchr(0, line).is_none();
        out.extend_from_slice(line);
        let Some(end) = end else { break };
        out.extend_from_slice(b"\r\n");
        let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
        rest = &rest[end + if crlf { 2 } else { 1 }..];
    }
    plain
}

/// Longest line sent as plain 7bit (RFC 5322 2.1.1's hard limit); longer
/// ones are left to mail-builder, which picks quoted-printable or base64.
const MAX_7BIT_LINE: usize = 998;

/// Keep a MIME type token-safe; anything odd becomes application/octet-stream.
fn sanitize_mime_type(t: &str) -> &str {
    let ok = t.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"/.+-_".contains(&c))
    });
    if ok {
        t
    } else {
        "application/octet-stream"
    }
}

/// An ASCII file name for clients that ignore RFC 2231: unsafe characters
/// become `_`, the extension is kept.
fn ascii_fallback_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let keep = c.is_ascii_alphanumeric() || " -_.()+".contains(c);
        if keep {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let stem_empty = out
        .rsplit_once('.')
        .map_or(out.trim_matches('_').is_empty(), |(s, _)| {
            s.trim_matches('_').is_empty()
        });
    if stem_empty {
        let ext = out.rsplit_once('.').map(|(_, e)| e.to_string());
        out = match ext {
            Some(e) if !e.is_empty() && e != "_" => format!("attachment.{e}"),
            _ => "attachment".to_string(),
        };
    }
    shorten_name(out)
}

/// Longest fallback file name (a quoted parameter on one header line).
const MAX_FALLBACK_NAME: usize = 60;

/// Keep an ASCII file name within [`MAX_FALLBACK_NAME`], extension kept
/// when it is short.
fn shorten_name(name: String) -> String {
    if name.len() <= MAX_FALLBACK_NAME {
        return name;
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 10);
    match ext {
        Some(ext) => {
            let stem = &name[..MAX_FALLBACK_NAME - ext.len() - 1];
            format!("{stem}.{ext}")
        }
        None => name[..MAX_FALLBACK_NAME].to_string(),
    }
}

/// RFC 2231 extended parameter, split into `name*0*=`, `name*1*=` … sections
/// so that no header line grows past the folding target.
fn rfc2231_params(param: &str, value: &str) -> Vec<String> {
    let mut encoded = Vec::new(); // one entry per character, never split inside one
    for c in value.chars() {
        let mut buf = [0u8; 4];
        let mut piece = String::new();
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                piece.push(b as char);
            } else {
                piece.push_str(&format!("%{b:02X}"));
            }
        }
        encoded.push(piece);
    }
    let joined: String = encoded.concat();
    if joined.len() + param.len() + 10 <= 70 {
        return vec![format!("{param}*=UTF-8''{joined}")];
    }
    let mut sections = Vec::new();
    let mut current = String::from("UTF-8''");
    for piece in encoded {
        if current.len() + piece.len() > 60 {
            sections.push(std::mem::take(&mut current));
        }
        current.push_str(&piece);
    }
    sections.push(current);
    sections
        .into_iter()
        .enumerate()
        .map(|(i, s)| format!("{param}*{i}*={s}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::message::{Attachment, FileBytes};
    use mail_parser::{MessageParser, MimeHeaders, PartType};

    /// The message's bytes in one vector.
    fn build(draft: &Draft, opts: &MimeOptions) -> Vec<u8> {
        super::build(draft, opts).to_vec()
    }

    fn mb(name: Option<&str>, addr: &str) -> Mailbox {
        Mailbox {
            name: name.map(str::to_string),
            addr: addr.to_string(),
        }
    }

    fn opts() -> MimeOptions {
        MimeOptions {
            // 2026-11-02 09:30:00 UTC
            date: 1_793_611_800,
            message_id: "<run1.1@example.com>".to_string(),
        }
    }

    fn base_draft() -> Draft {
        Draft {
            row: 1,
            email: "li@example.com".into(),
            from: Some(mb(Some("新闻通讯 Newsletter"), "news@example.com")),
            to: vec![mb(Some("李雷"), "li@example.com")],
            cc: vec![mb(None, "boss@example.com")],
            bcc: vec![mb(None, "hidden@example.com")],
            reply_to: vec![mb(Some("Support, Team"), "help@example.com")],
            return_path: None,
            subject: "十一月新闻 – November news".into(),
            headers: vec![("X-Campaign".into(), "2026-11".into())],
            list_unsubscribe: vec![
                "https://example.com/u?e=li%40example.com".into(),
                "mailto:unsub@example.com".into(),
            ],
            text: Some("你好 李雷,\nline two\n".into()),
            html: Some("<p>你好 <b>李雷</b></p>\n".into()),
            attachments: vec![],
        }
    }

    /// Every line ends in CRLF, there is no bare CR or LF, no line is over 998.
    fn assert_wire_clean(bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}");
            }
            if b == b'\r' {
                assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        for line in bytes.split(|&b| b == b'\n') {
            assert!(line.len() <= 999, "line of {} octets", line.len());
        }
    }

    fn header_block(bytes: &[u8]) -> String {
        let s = String::from_utf8_lossy(bytes);
        s.split("\r\n\r\n").next().unwrap().to_string()
    }

    #[test]
    fn headers_round_trip_through_an_independent_parser() {
        let d = base_draft();
        let bytes = build(&d, &opts());
        assert_wire_clean(&bytes);
        let m = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(m.subject(), Some("十一月新闻 – November news"));
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("新闻通讯 Newsletter"));
        assert_eq!(from.address(), Some("news@example.com"));
        let to = m.to().unwrap().first().unwrap();
        assert_eq!(to.name(), Some("李雷"));
        assert_eq!(to.address(), Some("li@example.com"));
        assert_eq!(
            m.cc().unwrap().first().unwrap().address(),
            Some("boss@example.com")
        );
        let rt = m.reply_to().unwrap().first().unwrap();
        assert_eq!(rt.name(), Some("Support, Team"));
        assert_eq!(m.message_id(), Some("run1.1@example.com"));
        assert_eq!(m.date().unwrap().to_timestamp(), 1_793_611_800);
        assert_eq!(m.header_raw("X-Campaign").map(str::trim), Some("2026-11"));
        let head = header_block(&bytes);
        assert!(head.contains("MIME-Version: 1.0\r\n"));
        assert!(!head.to_ascii_lowercase().contains("bcc"), "{head}");
        assert!(!String::from_utf8_lossy(&bytes).contains("hidden@example.com"));
        assert!(head.contains("List-Unsubscribe: <https://example.com/u?e=li%40example.com>,"));
        assert!(head.contains("<mailto:unsub@example.com>"));
        assert!(head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        // 7-bit clean: every non-ASCII character went into an encoded form.
        assert!(bytes.is_ascii());
    }

    #[test]
    fn text_and_html_make_multipart_alternative() {
        let bytes = build(&base_draft(), &opts());
        let m = MessageParser::new().parse(&bytes).unwrap();
        let ct = m.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("alternative"));
        assert_eq!(m.body_text(0).unwrap(), "你好 李雷,\r\nline two\r\n");
        assert_eq!(m.body_html(0).unwrap(), "<p>你好 <b>李雷</b></p>\r\n");
    }

    #[test]
    fn a_body_line_equal_to_the_boundary_cannot_end_the_part() {
        let mut d = base_draft();
        let boundary = format!("{}_1", boundary_seed(&opts().message_id));
        let text = format!(
            "before\n--{boundary}--\nContent-Type: text/html\n\n<b>x</b>\n--{boundary}\nafter\n"
        );
        d.text = Some(text.clone());
        let bytes = build(&d, &opts());
        let m = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(m.text_body.len(), 1);
        assert_eq!(m.html_body.len(), 1);
        assert_eq!(m.body_text(0).unwrap(), text.replace('\n', "\r\n"));
        assert_eq!(m.body_html(0).unwrap(), "<p>你好 <b>李雷</b></p>\r\n");
        // The alternative's own delimiter lines are the only ones on the wire.
        let wire = String::from_utf8(bytes).unwrap();
        assert_eq!(wire.matches(&format!("\r\n--{boundary}\r\n")).count(), 2);
    }

    #[test]
    fn single_bodies_are_not_wrapped() {
        let mut d = base_draft();
        d.html = None;
        let m_bytes = build(&d, &opts());
        let m = MessageParser::new().parse(&m_bytes).unwrap();
        assert_eq!(m.content_type().unwrap().subtype(), Some("plain"));
        let mut d = base_draft();
        d.text = None;
        let m_bytes = build(&d, &opts());
        let m = MessageParser::new().parse(&m_bytes).unwrap();
        assert_eq!(m.content_type().unwrap().subtype(), Some("html"));
    }

    #[test]
    fn no_list_unsubscribe_post_without_https() {
        let mut d = base_draft();
        d.list_unsubscribe = vec!["mailto:unsub@example.com".into()];
        let head = header_block(&build(&d, &opts()));
        assert!(head.contains("List-Unsubscribe: <mailto:unsub@example.com>\r\n"));
        assert!(!head.contains("List-Unsubscribe-Post"));
    }

    #[test]
    fn a_file_attached_to_many_messages_is_held_once_not_copied_into_each() {
        let pdf: Arc<FileBytes> =
            Arc::new((0..=255u8).cycle().take(100_000).collect::<Vec<_>>().into());
        let messages: Vec<MessageBytes> = (1..=3)
            .map(|row| {
                let mut d = base_draft();
                d.row = row;
                d.attachments = vec![Attachment {
                    name: "report.pdf".into(),
                    content_type: "application/pdf".into(),
                    data: Arc::clone(&pdf),
                    content_id: None,
                }];
                super::build(&d, &opts())
            })
            .collect();
        let shared = |m: &MessageBytes| {
            m.pieces()
                .find_map(|p| match p {
                    crate::smtp::bytes::Piece::Shared(s) => Some(Arc::clone(s)),
                    crate::smtp::bytes::Piece::Own(_) => None,
                })
                .expect("the file's encoding is a shared piece")
        };
        let first = shared(&messages[0]);
        for m in &messages {
            assert!(Arc::ptr_eq(&first, &shared(m)));
            assert!(
                m.own_capacity() < 20_000,
                "{} bytes of its own",
                m.own_capacity()
            );
            let parsed = MessageParser::new()
                .parse(&m.to_vec())
                .unwrap()
                .into_owned();
            assert_eq!(parsed.attachment(0).unwrap().contents(), &pdf[..]);
        }
    }

    #[test]
    fn attachments_go_into_multipart_mixed_with_rfc2231_names() {
        let mut d = base_draft();
        let pdf: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        d.attachments = vec![
            Attachment {
                name: "月度报告-2026年11月-非常长的文件名称用于测试续行.pdf".into(),
                content_type: "application/pdf".into(),
                data: Arc::new(pdf.clone().into()),
                content_id: None,
            },
            Attachment {
                name: "plain \"quoted\".txt".into(),
                content_type: "text/plain".into(),
                data: Arc::new(b"hello\n".to_vec().into()),
                content_id: None,
            },
        ];
        let bytes = build(&d, &opts());
        assert_wire_clean(&bytes);
        assert!(bytes.is_ascii());
        let m = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(m.content_type().unwrap().subtype(), Some("mixed"));
        assert_eq!(m.attachment_count(), 2);
        let a = m.attachment(0).unwrap();
        assert_eq!(
            a.attachment_name(),
            Some("月度报告-2026年11月-非常长的文件名称用于测试续行.pdf")
        );
        assert_eq!(a.contents(), &pdf[..]);
        assert_eq!(a.content_transfer_encoding(), Some("base64"));
        let b = m.attachment(1).unwrap();
        assert_eq!(b.contents(), b"hello\n");
        // Text and HTML still reachable through the alternative part.
        assert_eq!(m.body_html(0).unwrap(), "<p>你好 <b>李雷</b></p>\r\n");
        // ASCII fallback for clients without RFC 2231 keeps the extension.
        let s = String::from_utf8_lossy(&bytes);
        assert!(s.contains("filename=\"_-2026_11_-_.pdf\""), "{s}");
    }

    #[test]
    fn inline_images_go_into_multipart_related() {
        let mut d = base_draft();
        d.html = Some("<img src=\"cid:logo.1@mailshot\">".into());
        d.attachments = vec![Attachment {
            name: "logo.png".into(),
            content_type: "image/png".into(),
            data: Arc::new(vec![0x89, b'P', b'N', b'G', 0, 1, 2].into()),
            content_id: Some("logo.1@mailshot".into()),
        }];
        let bytes = build(&d, &opts());
        let m = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(m.content_type().unwrap().subtype(), Some("alternative"));
        let related = m
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("related"))
            })
            .expect("a multipart/related part");
        assert!(matches!(related.body, PartType::Multipart(ref v) if v.len() == 2));
        let img = m
            .parts
            .iter()
            .find(|p| p.content_id() == Some("logo.1@mailshot"))
            .expect("the inline image");
        assert_eq!(img.contents(), &[0x89, b'P', b'N', b'G', 0, 1, 2]);
    }

    #[test]
    fn long_subject_and_long_body_lines_stay_under_998() {
        let mut d = base_draft();
        d.subject = "word ".repeat(400); // 2000 chars with spaces
        d.text = Some(format!("{}\n{}\n", "a".repeat(5000), "é".repeat(3000)));
        d.html = Some("<p>".to_string() + &"x".repeat(5000) + "</p>");
        d.headers = vec![("X-Long".into(), "y".repeat(2000))];
        let bytes = build(&d, &opts());
        assert_wire_clean(&bytes);
        let m = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(
            m.subject().unwrap().trim_end(),
            "word ".repeat(400).trim_end()
        );
        assert_eq!(
            m.body_text(0).unwrap(),
            format!("{}\r\n{}\r\n", "a".repeat(5000), "é".repeat(3000))
        );
        assert_eq!(
            m.header_raw("X-Long").map(|v| !v.trim().is_empty()),
            Some(true)
        );

        let mut d = base_draft();
        d.subject = "中".repeat(700);
        d.to = vec![mb(Some(&"名".repeat(500)), "li@example.com")];
        let bytes = build(&d, &opts());
        assert_wire_clean(&bytes);
        let m = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(m.subject(), Some("中".repeat(700).as_str()));
        assert_eq!(
            m.to().unwrap().first().unwrap().name(),
            Some("名".repeat(500).as_str())
        );
    }

    /// The longest line of the header section.
    fn longest_header_line(bytes: &[u8]) -> usize {
        header_block(bytes)
            .split("\r\n")
            .map(str::len)
            .max()
            .unwrap_or(0)
    }

    /// mail-parser, decoding the named extra headers as unstructured text.
    fn text_parser(names: &[&'static str]) -> MessageParser {
        let base = MessageParser::new()
            .with_minimal_headers()
            .header_address(mail_parser::HeaderName::ListUnsubscribe);
        names.iter().fold(base, |p, &n| {
            p.header_text(mail_parser::HeaderName::Other(n.into()))
        })
    }

    #[test]
    fn huge_header_values_are_folded_and_decode_to_the_input() {
        let long_word = "w".repeat(200_000);
        let spaced = "word ".repeat(40_000).trim_end().to_string();
        let uri = format!("https://example.com/u?t={}", "a".repeat(200_000));
        let mut d = base_draft();
        d.subject = long_word.clone();
        d.headers = vec![
            ("X-Spaced".into(), spaced.clone()),
            ("X-Wide".into(), "字".repeat(50_000)),
        ];
        d.list_unsubscribe = vec![uri.clone(), "mailto:u@example.com".into()];
        let ascii_name = format!("{}.pdf", "n".repeat(200_000));
        let wide_name = format!("{}.pdf", "名".repeat(30_000));
        d.attachments = [&ascii_name, &wide_name]
            .into_iter()
            .map(|name| Attachment {
                name: name.clone(),
                content_type: "application/pdf".into(),
                data: Arc::new(b"%PDF".to_vec().into()),
                content_id: None,
            })
            .collect();
        let bytes = build(&d, &opts());
        assert_wire_clean(&bytes);
        let longest = String::from_utf8_lossy(&bytes)
            .split("\r\n")
            .filter(|l| !l.starts_with(" <") && !l.starts_with("List-Unsubscribe:"))
            .map(str::len)
            .max()
            .unwrap();
        // Where folding is possible (everything but the inside of a URI)
        // lines keep to the recommended 78.
        assert!(longest <= 78, "a line of {longest} octets");
        let m = text_parser(&["X-Spaced", "X-Wide"]).parse(&bytes).unwrap();
        assert!(m.subject() == Some(long_word.as_str()), "subject differs");
        let text = |name| m.header(name).and_then(|h| h.as_text());
        assert!(
            text("X-Spaced") == Some(spaced.as_str()),
            "X-Spaced differs"
        );
        assert!(
            text("X-Wide") == Some("字".repeat(50_000).as_str()),
            "X-Wide differs"
        );
        let unsub: String = m
            .header_raw("List-Unsubscribe")
            .unwrap()
            .split_whitespace()
            .collect();
        assert!(
            unsub == format!("<{uri}>,<mailto:u@example.com>"),
            "URI differs"
        );
        let name = |i| m.attachment(i).unwrap().attachment_name();
        assert!(name(0) == Some(ascii_name.as_str()), "ASCII name differs");
        assert!(name(1) == Some(wide_name.as_str()), "wide name differs");
    }

    #[test]
    fn an_ordinary_unsubscribe_uri_stays_whole() {
        let mut d = base_draft();
        let uri = format!("https://example.com/u?t={}", "a".repeat(300));
        d.list_unsubscribe = vec![uri.clone()];
        let head = header_block(&build(&d, &opts()));
        assert!(
            head.contains(&format!("List-Unsubscribe: <{uri}>\r\n")),
            "{head}"
        );
    }

    #[test]
    fn text_that_looks_like_an_encoded_word_is_shown_literally() {
        let lookalikes = [
            "=?utf-8?q?Hi=0D=0ABcc:_victim@example.com?=",
            "=?UTF-8?B?SGkNCkJjYzogdmljdGltQGV4YW1wbGUuY29t?=",
            "Re: =?utf-8?q?x?= and more",
        ];
        for text in lookalikes {
            let mut d = base_draft();
            d.subject = text.into();
            d.to = vec![mb(Some(text), "li@example.com")];
            d.headers = vec![("X-Note".into(), text.into())];
            let bytes = build(&d, &opts());
            assert_wire_clean(&bytes);
            let m = text_parser(&["X-Note"]).parse(&bytes).unwrap();
            assert_eq!(m.subject(), Some(text));
            assert_eq!(m.to().unwrap().first().unwrap().name(), Some(text));
            assert_eq!(m.header("X-Note").and_then(|h| h.as_text()), Some(text));
            assert!(m.header("Bcc").is_none());
            assert!(!header_block(&bytes).contains(text), "sent as is");
        }
        // Ordinary ASCII stays readable.
        let mut d = base_draft();
        d.subject = "Your invoice = 42? Yes".into();
        assert!(header_block(&build(&d, &opts())).contains("Subject: Your invoice = 42? Yes\r\n"));
        assert!(longest_header_line(&build(&d, &opts())) <= 78);
    }

    #[test]
    fn a_message_always_ends_with_crlf() {
        for text in [
            "no final newline",
            "final newline\n",
            "é sans fin de ligne",
            "",
        ] {
            let mut d = base_draft();
            d.html = None;
            d.text = Some(text.into());
            let bytes = build(&d, &opts());
            assert!(
                bytes.ends_with(b"\r\n"),
                "{text:?}: {:?}",
                &bytes[bytes.len() - 10..]
            );
            assert!(!bytes.ends_with(b"\r\n\r\n\r\n"), "{text:?}");
        }
        let mut d = base_draft();
        d.html = None;
        d.text = Some("kept\n".into());
        assert!(build(&d, &opts()).ends_with(b"\r\n\r\nkept\r\n"));
    }

    #[test]
    fn mixed_line_endings_become_crlf() {
        let mut d = base_draft();
        d.text = Some("a\rb\r\n\r\nc\n\nd".into());
        d.html = None;
        let bytes = build(&d, &opts());
        assert_wire_clean(&bytes);
        let m = MessageParser::new().parse(&bytes).unwrap();
        // The message ends with CRLF even where the text did not.
        assert_eq!(m.body_text(0).unwrap(), "a\r\nb\r\n\r\nc\r\n\r\nd\r\n");
    }

    #[test]
    fn output_is_deterministic() {
        let mut d = base_draft();
        d.attachments = vec![Attachment {
            name: "a.bin".into(),
            content_type: "application/octet-stream".into(),
            data: Arc::new(vec![1, 2, 3].into()),
            content_id: None,
        }];
        assert_eq!(build(&d, &opts()), build(&d, &opts()));
    }

    #[test]
    fn compose_fills_envelope_and_flags() {
        let d = base_draft();
        let o = compose(&d, &opts());
        assert_eq!(o.envelope.mail_from, "news@example.com");
        assert_eq!(
            o.envelope.rcpt_to,
            vec!["li@example.com", "boss@example.com", "hidden@example.com"]
        );
        assert!(!o.eight_bit);
        assert!(!o.smtputf8);
        assert_eq!(o.message_id, "<run1.1@example.com>");
        assert_eq!(o.row, 1);

        let mut d = base_draft();
        d.to = vec![mb(None, "用户@例子.中国")];
        let o = compose(&d, &opts());
        assert!(o.smtputf8);
        assert!(o.eight_bit, "a UTF-8 address in To is 8-bit data");
    }

    #[test]
    fn message_id_uses_the_from_domain() {
        assert_eq!(
            message_id("r7", 12, &mb(None, "news@mail.example.com")),
            "<r7.12@mail.example.com>"
        );
        assert_eq!(
            message_id("r7", 3, &mb(None, "news@例子.中国")),
            "<r7.3@localhost>"
        );
    }

    #[test]
    fn quoted_names_escape_quotes_and_backslashes() {
        let mut d = base_draft();
        d.to = vec![mb(Some("A \"B\" \\ C"), "abc@example.com")];
        let bytes = build(&d, &opts());
        let m = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(
            m.to().unwrap().first().unwrap().name(),
            Some("A \"B\" \\ C")
        );
    }
}
