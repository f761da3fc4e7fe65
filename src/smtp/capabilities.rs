//! The service extensions a server announces in its EHLO reply (RFC 5321
//! §4.1.1.1): PIPELINING (RFC 2920), CHUNKING (RFC 3030), SIZE (RFC 1870),
//! 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), STARTTLS (RFC 3207), AUTH
//! (RFC 4954), DSN (RFC 3461) and ENHANCEDSTATUSCODES (RFC 2034).

use super::reply::Reply;

/// What the server offers, from one EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The greeting text of the EHLO reply's first line (server name etc.).
    pub greeting: String,
    /// PIPELINING.
    pub pipelining: bool,
    /// CHUNKING (BDAT).
    pub chunking: bool,
    /// SIZE limit in octets; `None` when absent, valueless or 0 (no limit).
    pub size: Option<u64>,
    /// The SIZE keyword is present (with or without a limit), so MAIL may
    /// carry `SIZE=<n>`.
    pub size_offered: bool,
    /// 8BITMIME.
    pub eight_bit_mime: bool,
    /// BINARYMIME.
    pub binary_mime: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// SASL mechanisms offered, upper case, without duplicates.
    pub auth: Vec<String>,
    /// DSN.
    pub dsn: bool,
    /// ENHANCEDSTATUSCODES.
    pub enhanced_status_codes: bool,
}

impl Capabilities {
    /// The extensions offered, as a short human-readable list
    /// (`PIPELINING CHUNKING SIZE=52428800 AUTH=PLAIN,LOGIN ...`).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let flags = [
            (self.pipelining, "PIPELINING"),
            (self.chunking, "CHUNKING"),
            (self.eight_bit_mime, "8BITMIME"),
            (self.smtputf8, "SMTPUTF8"),
            (self.starttls, "STARTTLS"),
            (self.dsn, "DSN"),
            (self.enhanced_status_codes, "ENHANCEDSTATUSCODES"),
        ];
        parts.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| n.to_string()),
        );
        if let Some(size) = self.size {
            parts.push(format!("SIZE={size}"));
        }
        if !self.auth.is_empty() {
            parts.push(format!("AUTH={}", self.auth.join(",")));
        }
        parts.join(" ")
    }

    /// Reads the keywords of an EHLO reply. Keywords are case-insensitive;
    /// unknown ones are ignored. The old `AUTH=LOGIN PLAIN` form some servers
    /// still send is understood like `AUTH LOGIN PLAIN`.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities {
            greeting: reply.lines.first().cloned().unwrap_or_default(),
            ..Default::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(first) = words.next() else { continue };
            let (keyword, glued) = match first.split_once('=') {
                Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
                None => (first.to_ascii_uppercase(), None),
            };
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "BINARYMIME" => caps.binary_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "DSN" => caps.dsn = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "SIZE" => {
                    caps.size_offered = true;
                    caps.size = words
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .filter(|&n| n > 0);
                }
                "AUTH" => {
                    for mech in glued.into_iter().chain(words) {
                        let mech = mech.to_ascii_uppercase();
                        if !mech.is_empty() && !caps.auth.contains(&mech) {
                            caps.auth.push(mech);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    /// Whether the server offers SASL mechanism `mech` (case-insensitive).
    pub fn offers_auth(&self, mech: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mech))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Reply {
        Reply {
            code: 250,
            enhanced: None,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn postfix_like_reply() {
        let caps = Capabilities::from_ehlo(&ehlo(&[
            "mx.example.com",
            "PIPELINING",
            "SIZE 10240000",
            "VRFY",
            "ETRN",
            "STARTTLS",
            "AUTH PLAIN LOGIN",
            "AUTH=PLAIN LOGIN",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ]));
        assert_eq!(
            caps,
            Capabilities {
                greeting: "mx.example.com".into(),
                pipelining: true,
                chunking: true,
                size: Some(10_240_000),
                size_offered: true,
                eight_bit_mime: true,
                binary_mime: false,
                smtputf8: true,
                starttls: true,
                auth: vec!["PLAIN".into(), "LOGIN".into()],
                dsn: true,
                enhanced_status_codes: true,
            }
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_greeting_is_not_a_keyword() {
        // A greeting line that happens to read like a keyword must not count.
        let caps = Capabilities::from_ehlo(&ehlo(&[
            "PIPELINING",
            "pipelining",
            "auth login xoauth2",
            "8bitmime",
        ]));
        assert!(caps.pipelining && caps.eight_bit_mime);
        assert_eq!(caps.auth, vec!["LOGIN", "XOAUTH2"]);
        assert!(caps.offers_auth("xoauth2") && caps.offers_auth("LOGIN"));
        assert!(!caps.offers_auth("PLAIN"));
        let only_greeting = Capabilities::from_ehlo(&ehlo(&["PIPELINING"]));
        assert!(!only_greeting.pipelining);
    }

    #[test]
    fn old_auth_form_alone() {
        let caps = Capabilities::from_ehlo(&ehlo(&["qq.com", "AUTH=LOGIN PLAIN"]));
        assert_eq!(caps.auth, vec!["LOGIN", "PLAIN"]);
    }

    #[test]
    fn size_without_value_or_zero_means_no_limit() {
        for line in ["SIZE", "SIZE 0", "SIZE junk"] {
            let caps = Capabilities::from_ehlo(&ehlo(&["h", line]));
            assert_eq!((caps.size, caps.size_offered), (None, true), "{line}");
        }
        assert_eq!(
            Capabilities::from_ehlo(&ehlo(&["h", "size 73400320"])).size,
            Some(73_400_320)
        );
    }

    #[test]
    fn single_line_reply_has_no_extensions() {
        assert_eq!(
            Capabilities::from_ehlo(&ehlo(&["h"])),
            Capabilities {
                greeting: "h".into(),
                ..Default::default()
            }
        );
    }
}
