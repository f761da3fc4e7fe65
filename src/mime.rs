//! Draft → RFC 5322/MIME bytes (mail-builder). Date and Message-ID are inputs
//! so output is reproducible.

use crate::message::{Draft, Outgoing};

/// Per-message inputs that are not in the draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeOptions {
    /// Date header, seconds since the Unix epoch.
    pub date: i64,
    /// Message-ID with angle brackets.
    pub message_id: String,
}

/// Build the message bytes (CRLF, 7-bit-safe bodies, lines ≤ 998 octets).
pub fn build(draft: &Draft, opts: &MimeOptions) -> Vec<u8> {
    let _ = (draft, opts);
    todo!("mime helper")
}

/// Build the [`Outgoing`] message: envelope from the draft, bytes from [`build`].
pub fn compose(draft: &Draft, opts: &MimeOptions) -> Outgoing {
    let _ = (draft, opts);
    todo!("mime helper")
}
