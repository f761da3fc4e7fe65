//! Mailbox names on the wire: modified UTF-7 (RFC 3501 §5.1.3), so that a
//! folder such as `已处理` reaches servers that predate UTF8=ACCEPT.
//!
//! Printable US-ASCII stands for itself, `&` is written `&-`, and every
//! other run of characters is `&`, the modified BASE64 (RFC 2152 with `,`
//! for `/` and no padding) of its UTF-16BE form, and `-`.

use base64::alphabet::Alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

const MODIFIED_BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a mailbox name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let alphabet = Alphabet::new(MODIFIED_BASE64).expect("64 distinct printable characters");
    let engine = GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new().with_encode_padding(false),
    );
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, out: &mut String| {
        if !run.is_empty() {
            out.push('&');
            out.push_str(&engine.encode(&run));
            out.push('-');
            run.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                run.extend_from_slice(&u.to_be_bytes());
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn rfc3501_examples_and_edges() {
        // RFC 3501 §5.1.3.
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(encode("INBOX"), "INBOX");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        // RFC 2152's "Hi Mom -☺-!" in the modified form.
        assert_eq!(encode("Hi Mom -☺-!"), "Hi Mom -&Jjo--!");
        // A character outside the BMP is a surrogate pair.
        assert_eq!(encode("😀"), "&2D3eAA-");
        // DEL and controls are not printable: encoded.
        assert_eq!(encode("a\u{7f}"), "a&AH8-");
        assert_eq!(encode(""), "");
    }
}
