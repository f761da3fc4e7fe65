//! The body of a message: its MIME tree, written straight into the
//! message buffer.
//!
//! mixed[ alternative[ text, related[ html, inline images ] ], attachments ],
//! with every level omitted when it would hold a single part. Multipart
//! framing and 7-bit text are written here; mail-builder encodes what needs a
//! transfer encoding (quoted-printable or base64 text, base64 attachments).
//! Building a tree of mail-builder parts first cost an allocation and a copy
//! of every body per message, a tenth of the time to build one.

use base64::Engine as _;
use mail_builder::encoders::quoted_printable::quoted_printable_encode;
use mail_builder::mime::{BodyPart, MimePart};

use super::BOUNDARY_PREFIX;
use super::{ascii_fallback_name, normalize_into, rfc2231_params, sanitize_mime_type};
use crate::compose::message::{Attachment, Draft};
use crate::smtp::bytes::{MessageWriter, SharedBlock};

/// One node of the tree.
enum Part<'a> {
    /// A text body (`text/plain` or `text/html`).
    Text { kind: &'static str, body: &'a str },
    /// An attachment or, with `inline`, an image the HTML refers to.
    File { file: &'a Attachment, inline: bool },
    /// A multipart whose boundary is the seed and `n`.
    Multi {
        kind: &'static str,
        n: u32,
        parts: Vec<Part<'a>>,
    },
}

/// Write the body of `draft` (its MIME headers and content) to `out`;
/// boundaries are `seed` and a counter.
pub(super) fn write(draft: &Draft, seed: &str, out: &mut MessageWriter) {
    let tree = tree(draft);
    write_part(&tree, seed, out);
}

fn tree(draft: &Draft) -> Part<'_> {
    let mut n = 0;
    let mut multi = |kind, parts| {
        n += 1;
        Part::Multi { kind, n, parts }
    };
    let (inline, attached): (Vec<&Attachment>, Vec<&Attachment>) = draft
        .attachments
        .iter()
        .partition(|a| a.content_id.is_some() && draft.html.is_some());

    let html = draft.html.as_deref().map(|body| {
        let html = Part::Text {
            kind: "text/html",
            body,
        };
        if inline.is_empty() {
            html
        } else {
            let mut parts = vec![html];
            parts.extend(inline.iter().map(|&file| Part::File { file, inline: true }));
            multi("multipart/related", parts)
        }
    });
    let text = draft.text.as_deref().map(|body| Part::Text {
        kind: "text/plain",
        body,
    });
    let body = match (text, html) {
        (Some(t), Some(h)) => multi("multipart/alternative", vec![t, h]),
        (Some(t), None) => t,
        (None, Some(h)) => h,
        // A message without bodies still gets an empty text part: clients
        // expect the first part to be the body, even next to attachments.
        (None, None) => Part::Text {
            kind: "text/plain",
            body: "",
        },
    };
    if attached.is_empty() {
        body
    } else {
        let mut parts = vec![body];
        parts.extend(attached.iter().map(|&file| Part::File {
            file,
            inline: false,
        }));
        multi("multipart/mixed", parts)
    }
}

fn write_part(part: &Part<'_>, seed: &str, out: &mut MessageWriter) {
    match part {
        Part::Text { kind, body } => write_text(kind, body, out),
        Part::File { file, inline } => write_file(file, *inline, out),
        Part::Multi { kind, n, parts } => {
            let boundary = |out: &mut Vec<u8>| {
                out.extend_from_slice(seed.as_bytes());
                out.push(b'_');
                out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
            };
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(kind.as_bytes());
            out.extend_from_slice(b";\r\n boundary=\"");
            boundary(out);
            out.extend_from_slice(b"\"\r\n\r\n");
            for part in parts {
                out.extend_from_slice(b"\r\n--");
                boundary(out);
                out.extend_from_slice(b"\r\n");
                write_part(part, seed, out);
            }
            out.extend_from_slice(b"\r\n--");
            boundary(out);
            out.extend_from_slice(b"--\r\n");
        }
    }
}

/// A text part. The common case — ASCII text in short lines — needs no
/// transfer encoding and is copied once, line by line, with CRLF line ends.
fn write_text(kind: &str, body: &str, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"; charset=\"utf-8\"\r\nContent-Transfer-Encoding: ");
    let encoding = out.len();
    out.extend_from_slice(b"7bit\r\n\r\n");
    let head = out.len();
    if normalize_into(body, out) {
        if memchr::memmem::find(&out[head..], BOUNDARY_PREFIX.as_bytes()).is_none() {
            return;
        }
        // Text that could contain one of our boundaries (a CSV value can put
        // anything in a body) goes quoted-printable, which writes every '='
        // as "=3D": no body line can then close a part early.
        let text = out.split_off(head);
        out.truncate(encoding);
        out.extend_from_slice(b"quoted-printable\r\n\r\n");
        quoted_printable_encode(&text, &mut *out, true).expect("Vec write");
        return;
    }
    // Only ASCII bytes were replaced by ASCII bytes, so the text is still
    // UTF-8; mail-builder picks quoted-printable or base64 for it.
    let text = String::from_utf8(out.split_off(head)).expect("CR/LF replacement keeps UTF-8");
    out.truncate(start);
    MimePart::new(kind.to_string(), BodyPart::Text(text.into()))
        .write_part(&mut *out)
        .expect("Vec write");
}

/// An attachment or inline image, always base64, with our own part headers:
/// RFC 2231 `filename*` first (mail-parser and modern clients take the first
/// `filename`), then an ASCII `filename=` fallback for clients that ignore
/// RFC 2231.
fn write_file(a: &Attachment, inline: bool, out: &mut MessageWriter) {
    let fallback = ascii_fallback_name(&a.name);
    let mut head = format!(
        "Content-Type: {};\r\n name=\"{}\"\r\n",
        sanitize_mime_type(&a.content_type),
        fallback
    );
    let disposition = if inline { "inline" } else { "attachment" };
    head.push_str("Content-Disposition: ");
    head.push_str(disposition);
    // A name that is its own fallback is written plainly; any other (non-ASCII,
    // or too long for one line) as RFC 2231 sections, fallback after them.
    if a.name.bytes().all(|b| (0x20..0x7f).contains(&b)) && a.name == fallback {
        head.push_str(&format!(";\r\n filename=\"{fallback}\""));
    } else {
        for param in rfc2231_params("filename", &a.name) {
            head.push_str(";\r\n ");
            head.push_str(&param);
        }
        head.push_str(&format!(";\r\n filename=\"{fallback}\""));
    }
    head.push_str("\r\n");
    if let Some(cid) = &a.content_id {
        head.push_str(&format!("Content-ID: <{cid}>\r\n"));
    }
    head.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    out.extend_from_slice(head.as_bytes());
    // Encoded once per file and run, and shared, not copied, by every
    // message that carries it.
    out.push_shared(
        a.data
            .encoded(|bytes| SharedBlock::base64_lines(base64_lines(bytes))),
    );
}

/// Input octets of one base64 line: 76 characters (RFC 2045 §6.8).
const LINE_INPUT: usize = 57;

/// `bytes` in base64, in lines of 76 characters, each ending with CRLF.
fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let lines = bytes.len().div_ceil(LINE_INPUT);
    let mut out = vec![0; bytes.len().div_ceil(3) * 4 + lines * 2];
    let mut at = 0;
    for line in bytes.chunks(LINE_INPUT) {
        at += base64::engine::general_purpose::STANDARD
            .encode_slice(line, &mut out[at..])
            .expect("sized for every line");
        out[at..at + 2].copy_from_slice(b"\r\n");
        at += 2;
    }
    debug_assert_eq!(at, out.len());
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn base64_lines_are_what_mail_builder_writes(
            bytes in proptest::collection::vec(any::<u8>(), 0..400)
        ) {
            let mut expected = Vec::new();
            mail_builder::encoders::base64::base64_encode_mime(&bytes, &mut expected, false)
                .unwrap();
            prop_assert_eq!(super::base64_lines(&bytes), expected);
        }
    }
}
