//! A message submitted whole, as sendmail(8) receives it on stdin: the bytes
//! are kept as they came (so an existing DKIM signature still verifies),
//! only line ends are normalised to CRLF (RFC 5322 2.1), the Bcc header is
//! removed, and Date, Message-ID and From are added when missing (RFC 6409
//! 8.1–8.3). Headers are read with mail-parser.

use std::sync::Arc;

use mail_builder::headers::address::Address as HeaderAddress;
use mail_builder::headers::date::Date;
use mail_builder::headers::Header as _;
use mail_parser::{HeaderName, HeaderValue, MessageParser};

use crate::address::{parse_mailbox_list, Mailbox};
use crate::compose::message::{Envelope, Outgoing};
use crate::compose::mime;
use crate::error::{Error, Result};

/// How to turn the submitted bytes into an [`Outgoing`] message.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// Take recipients from the To, Cc and Bcc headers (`-t`).
    pub read_recipients: bool,
    /// Recipients given as arguments (they add to the headers' with `-t`).
    pub recipients: Vec<String>,
    /// The envelope sender (`-f`); default: the From header's address.
    pub envelope_from: Option<String>,
    /// The display name for a From header that has to be added (`-F`).
    pub full_name: Option<String>,
    /// The sender when neither `-f` nor a From header gives one (the
    /// configured account).
    pub default_from: Option<String>,
    /// Date to stamp if the message has none, seconds since the epoch.
    pub date: i64,
    /// Unique left part for a Message-ID that has to be added.
    pub run_id: String,
}

/// Line ends to CRLF (a bare LF becomes CRLF; CRLF stays). Unless
/// `ignore_dots`, a line holding a single dot ends the message, as it does
/// for sendmail without `-i`.
pub fn normalise(input: &[u8], ignore_dots: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32 + 2);
    for line in input.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if !ignore_dots && content == b"." {
            break;
        }
        out.extend_from_slice(content);
        if line.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The first address of the message's From header, if it has one.
pub fn header_from(data: &[u8]) -> Option<String> {
    let parsed = MessageParser::new().parse_headers(data)?;
    let from = parsed.from()?.first()?.address()?;
    Some(from.to_string())
}

/// Build the message to send from CRLF-normalised bytes (see [`normalise`]).
pub fn submit(data: &[u8], sub: &Submission) -> Result<Outgoing> {
    let parsed = MessageParser::new().parse_headers(data);
    let headers = parsed
        .as_ref()
        .and_then(|m| m.parts.first())
        .map(|p| p.headers.as_slice())
        .unwrap_or_default();

    let mut rcpts: Vec<String> = Vec::new();
    let mut header_from: Option<String> = None;
    let (mut has_date, mut message_id) = (false, None::<String>);
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for h in headers {
        match &h.name {
            HeaderName::To | HeaderName::Cc | HeaderName::Bcc if sub.read_recipients => {
                if let HeaderValue::Address(a) = &h.value {
                    rcpts.extend(a.iter().filter_map(|x| x.address().map(str::to_string)));
                }
            }
            HeaderName::From if header_from.is_none() => {
                if let HeaderValue::Address(a) = &h.value {
                    header_from = a.first().and_then(|x| x.address()).map(str::to_string);
                }
            }
            HeaderName::Date => has_date = true,
            HeaderName::MessageId => {
                message_id = h.value.as_text().map(|id| format!("<{id}>"));
            }
            _ => {}
        }
        if h.name == HeaderName::Bcc {
            cut.push((h.offset_field as usize, h.offset_end as usize));
        }
    }
    for arg in &sub.recipients {
        let list = parse_mailbox_list(arg)
            .map_err(|e| Error::Usage(format!("recipient {arg:?}: {}", e.reason)))?;
        rcpts.extend(list.into_iter().map(|m| m.addr));
    }
    let mut seen = std::collections::HashSet::new();
    rcpts.retain(|a| seen.insert(a.to_lowercase()));
    if rcpts.is_empty() {
        return Err(Error::Usage(
            "no recipients: name them as arguments, or pass -t to read To, Cc and Bcc".into(),
        ));
    }

    let has_from = headers.iter().any(|h| h.name == HeaderName::From);
    let sender = sub
        .envelope_from
        .clone()
        .or_else(|| header_from.clone())
        .or_else(|| sub.default_from.clone())
        .ok_or_else(|| {
            Error::Usage(
                "no sender: the message has no From, and neither -f ADDR nor a configured \
                 username names one"
                    .into(),
            )
        })?;
    let from_box = Mailbox {
        name: sub.full_name.clone(),
        addr: sub
            .envelope_from
            .clone()
            .or_else(|| sub.default_from.clone())
            .unwrap_or_else(|| sender.clone()),
    };

    let mut out = Vec::with_capacity(data.len() + 256);
    if !has_from {
        out.extend_from_slice(b"From: ");
        HeaderAddress::new_address(from_box.name.as_deref(), from_box.addr.as_str())
            .write_header(&mut out, 6)
            .expect("Vec write");
    }
    if !has_date {
        out.extend_from_slice(b"Date: ");
        Date::new(sub.date)
            .write_header(&mut out, 6)
            .expect("Vec write");
    }
    let message_id = match message_id {
        Some(id) => id,
        None => {
            let id = mime::message_id(&sub.run_id, 1, &from_box);
            out.extend_from_slice(b"Message-ID: ");
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"\r\n");
            id
        }
    };
    let mut pos = 0;
    for (start, end) in cut {
        out.extend_from_slice(&data[pos..start]);
        pos = end.max(pos);
    }
    out.extend_from_slice(&data[pos..]);

    let smtputf8 = !sender.is_ascii() || rcpts.iter().any(|a| !a.is_ascii());
    let eight_bit = !out.is_ascii();
    Ok(Outgoing {
        row: 1,
        email: rcpts[0].clone(),
        message_id,
        envelope: Envelope {
            mail_from: sender,
            rcpt_to: rcpts,
        },
        data: Arc::new(crate::smtp::bytes::MessageBytes::from(out)),
        eight_bit,
        smtputf8,
    })
}

#[cfg(test)]
mod tests;
