//! The values passed between stages: a rendered draft and the
//! outgoing message (envelope + bytes) the SMTP engine carries.

use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::address::Mailbox;
use crate::smtp::bytes::{MessageBytes, SharedBlock};

/// A file to attach (or to embed inline when `content_id` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name shown to the recipient (may be non-ASCII).
    pub name: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The bytes, shared by every message that carries this file.
    pub data: Arc<FileBytes>,
    /// Content-ID for inline parts referenced as `cid:` from HTML.
    pub content_id: Option<String>,
}

impl Attachment {
    /// An attachment of the file at `path` holding `data`: shown as `name`
    /// when one is given and not blank, else as the file's name; typed by the
    /// path's extension, else by the name's, else `application/octet-stream`.
    pub fn from_file(path: &Path, name: Option<String>, data: Arc<FileBytes>) -> Attachment {
        let name = name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into())
        });
        let content_type = mime_guess::from_path(path)
            .first()
            .or_else(|| mime_guess::from_path(&name).first())
            .map(|m| m.essence_str().to_string())
            .unwrap_or_else(|| "application/octet-stream".into());
        Attachment {
            name,
            content_type,
            data,
            content_id: None,
        }
    }
}

/// A file's bytes, and their transfer encoding made at most once however
/// many messages carry the file.
#[derive(Debug, Default)]
pub struct FileBytes {
    bytes: Vec<u8>,
    encoded: OnceLock<Arc<SharedBlock>>,
}

impl FileBytes {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded form: made by `encode` the first time it is asked for,
    /// then shared by every message that carries the file.
    pub fn encoded(&self, encode: impl FnOnce(&[u8]) -> SharedBlock) -> &Arc<SharedBlock> {
        self.encoded.get_or_init(|| Arc::new(encode(&self.bytes)))
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(bytes: Vec<u8>) -> Self {
        FileBytes {
            bytes,
            encoded: OnceLock::new(),
        }
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq for FileBytes {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for FileBytes {}

/// Everything rendered for one recipient, before MIME encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Draft {
    /// 1-based CSV data row.
    pub row: u64,
    /// The row's email column value (the report key).
    pub email: String,
    /// From header, and envelope sender unless `return_path` is set.
    pub from: Option<Mailbox>,
    /// Envelope sender (MAIL FROM), e.g. a VERP address; `None`: From's.
    pub return_path: Option<String>,
    /// Reply-To.
    pub reply_to: Vec<Mailbox>,
    /// To.
    pub to: Vec<Mailbox>,
    /// Cc.
    pub cc: Vec<Mailbox>,
    /// Bcc: envelope only, never a header.
    pub bcc: Vec<Mailbox>,
    /// Subject, unencoded; never contains CR or LF.
    pub subject: String,
    /// Extra headers (name, unencoded value without CR/LF), in job order.
    pub headers: Vec<(String, String)>,
    /// List-Unsubscribe URIs (without angle brackets).
    pub list_unsubscribe: Vec<String>,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// Attachments (and inline images).
    pub attachments: Vec<Attachment>,
}

impl Draft {
    /// Every envelope recipient: To, Cc and Bcc addresses, deduplicated
    /// case-insensitively, in that order.
    pub fn envelope_recipients(&self) -> Vec<String> {
        if let ([one], [], []) = (self.to.as_slice(), self.cc.as_slice(), self.bcc.as_slice()) {
            return vec![one.addr.clone()];
        }
        let mut seen = std::collections::HashSet::new();
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .filter(|m| seen.insert(m.addr.to_lowercase()))
            .map(|m| m.addr.clone())
            .collect()
    }
}

/// The SMTP envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM address (may be empty for a null reverse-path).
    pub mail_from: String,
    /// RCPT TO addresses.
    pub rcpt_to: Vec<String>,
}

/// A rendered, encoded message ready for the SMTP engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// 1-based CSV data row this message belongs to.
    pub row: u64,
    /// The row's email (report key).
    pub email: String,
    /// The Message-ID header value, with angle brackets.
    pub message_id: String,
    /// Envelope.
    pub envelope: Envelope,
    /// RFC 5322 bytes, CRLF line endings, not dot-stuffed; an attachment's
    /// encoding shared with the other messages that carry the file.
    pub data: Arc<MessageBytes>,
    /// The body has 8-bit octets (needs BODY=8BITMIME).
    pub eight_bit: bool,
    /// Addresses or headers need SMTPUTF8.
    pub smtputf8: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_bytes_are_encoded_once() {
        let file = Arc::new(FileBytes::from(b"hello".to_vec()));
        let mut calls = 0;
        for _ in 0..3 {
            let shared = Arc::clone(&file);
            let out = shared.encoded(|b| {
                calls += 1;
                SharedBlock::new(b.to_ascii_uppercase())
            });
            assert_eq!(out.as_bytes(), b"HELLO");
        }
        assert_eq!(calls, 1);
        assert_eq!(&file[..], b"hello");
    }

    #[test]
    fn an_attachment_is_named_and_typed_by_its_file_or_given_name() {
        let data = Arc::new(FileBytes::from(b"%PDF".to_vec()));
        let a = Attachment::from_file(Path::new("docs/Invoice 7.pdf"), None, Arc::clone(&data));
        assert_eq!(
            (a.name.as_str(), a.content_type.as_str()),
            ("Invoice 7.pdf", "application/pdf")
        );
        assert_eq!(a.content_id, None);
        assert_eq!(&a.data[..], b"%PDF");

        let blank = Some("  ".to_string());
        let a = Attachment::from_file(Path::new("logo.png"), blank, Arc::clone(&data));
        assert_eq!(
            (a.name.as_str(), a.content_type.as_str()),
            ("logo.png", "image/png")
        );

        let named = Some("report.csv".to_string());
        let a = Attachment::from_file(Path::new("out/2024-11"), named, Arc::clone(&data));
        assert_eq!(
            (a.name.as_str(), a.content_type.as_str()),
            ("report.csv", "text/csv")
        );

        let a = Attachment::from_file(Path::new("blob.zzunknown"), None, data);
        assert_eq!(a.content_type, "application/octet-stream");
    }
}
