//! The one place server text is scrubbed of the session's secrets before
//! anything prints it.
//!
//! A server may echo what it was sent (a 535 quoting the AUTH payload, a 334
//! challenge repeating it). Every reply the protocol core parses goes
//! through [`Redactor::scrub`] first, so errors, the trace, the report and
//! `--json` only ever see the redacted text. Each form a secret travels in
//! is covered: the password or token itself, its base64, the PLAIN payload
//! (`\0user\0pass`), the LOGIN pieces and the XOAUTH2 payload.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::auth;
use super::reply::escape;

/// What replaces a secret in printed text.
pub const MASK: &str = "***";

/// The secret forms of one set of credentials, longest first.
#[derive(Clone, Default)]
pub struct Redactor {
    forms: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    /// The forms `secret` (a password or an OAuth token) takes on the wire
    /// for `username`.
    pub fn new(username: &str, secret: &str) -> Self {
        if secret.is_empty() {
            return Redactor::default();
        }
        let plain = format!("\0{username}\0{secret}");
        let mut forms = vec![
            secret.to_string(),
            B64.encode(secret),
            auth::plain_initial(username, secret),
            auth::xoauth2_initial(username, secret),
            // Echoed bytes may arrive escaped (as the trace shows them).
            escape(secret.as_bytes()),
            escape(plain.as_bytes()),
        ];
        if !username.is_empty() {
            // The LOGIN exchange's first piece.
            forms.push(B64.encode(username));
        }
        // Unpadded base64 too: a server may quote the payload without `=`.
        for f in forms.clone() {
            let trimmed = f.trim_end_matches('=');
            if trimmed.len() != f.len() && !trimmed.is_empty() {
                forms.push(trimmed.to_string());
            }
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Redactor { forms }
    }

    /// `text` with every secret form replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), MASK);
            }
        }
        out
    }

    /// Nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_the_secret_is_masked() {
        let r = Redactor::new("me@example.test", "hunter2-secret");
        let b64 = B64.encode("hunter2-secret");
        let plain = auth::plain_initial("me@example.test", "hunter2-secret");
        let xo = auth::xoauth2_initial("me@example.test", "hunter2-secret");
        for text in [
            "535 5.7.8 bad password hunter2-secret".to_string(),
            format!("535 5.7.8 {b64} rejected"),
            format!("535 5.7.8 AUTH PLAIN {plain} rejected"),
            format!("535 {}", plain.trim_end_matches('=')),
            format!("334 {xo}"),
        ] {
            let s = r.scrub(&text);
            assert!(!s.contains("hunter2"), "{s}");
            assert!(!s.contains(&b64), "{s}");
            assert!(!s.contains(plain.trim_end_matches('=')), "{s}");
            assert!(!s.contains(xo.trim_end_matches('=')), "{s}");
            assert!(s.contains(MASK), "{s}");
        }
        assert_eq!(r.scrub("250 2.0.0 Ok"), "250 2.0.0 Ok");
    }

    #[test]
    fn no_secret_no_change() {
        let r = Redactor::new("u", "");
        assert!(r.is_empty());
        assert_eq!(r.scrub("535 u"), "535 u");
    }
}
