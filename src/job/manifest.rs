//! Raw serde types of the job file (deny unknown keys), mirroring the keys
//! the README's "A job" section documents.
//!
//! Values whose syntax can be checked on their own (durations, rates,
//! enums, the CSV delimiter and encoding, header names) are parsed here,
//! inside serde, so that a bad value is reported with the YAML line and
//! column serde_yaml knows. Checks that involve several keys live in
//! `validate`. Every field is optional here so that `validate` can report
//! all missing keys at once instead of serde's first one.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{Rate, Security};
use crate::smtp::auth::AuthMech;

/// The whole job file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// Where to send.
    pub smtp: Option<RawSmtp>,
    /// From template.
    pub from: Option<String>,
    /// Reply-To template.
    pub reply_to: Option<String>,
    /// To template.
    pub to: Option<String>,
    /// Cc template.
    pub cc: Option<String>,
    /// Bcc template.
    pub bcc: Option<String>,
    /// Subject template.
    pub subject: Option<String>,
    /// Plain-text template file.
    pub text: Option<String>,
    /// HTML template file.
    pub html: Option<String>,
    /// Markdown template file.
    pub markdown: Option<String>,
    /// Attachments.
    #[serde(default)]
    pub attachments: Vec<RawAttachment>,
    /// Largest attachment or inline image (`25MB`, `500KB`, `1GB`).
    pub max_attachment_size: Option<serde_yaml::Value>,
    /// Extra headers, in file order.
    #[serde(default)]
    pub headers: Headers,
    /// List-Unsubscribe template.
    pub list_unsubscribe: Option<String>,
    /// Job variables.
    #[serde(default)]
    pub vars: serde_yaml::Mapping,
    /// DKIM signing.
    pub dkim: Option<RawDkim>,
    /// Recipients.
    pub recipients: Option<RawRecipients>,
    /// Suppression list file(s): one path or a list of paths.
    pub suppress: Option<RawSuppress>,
    /// Envelope sender (MAIL FROM) template.
    pub return_path: Option<String>,
    /// The mailbox of bounces, complaints and unsubscribe requests.
    pub bounces: Option<RawBounces>,
    /// Limits per recipient domain (`"*"`: every other domain).
    pub domains: Option<indexmap::IndexMap<String, RawDomain>>,
}

/// The `bounces:` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBounces {
    /// `imaps://`, `imap://`, `pop3s://` or `pop3://` with the user.
    pub url: Option<String>,
    /// A provider preset (qq, 163, 126, gmail, outlook) instead of `url`.
    pub provider: Option<String>,
    /// With `provider`: imap (default) or pop3.
    pub protocol: Option<String>,
    /// Login name, if not in the URL.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File whose first line is the password.
    pub password_file: Option<String>,
    /// Command whose first output line is the password.
    pub password_command: Option<String>,
    /// Login mechanism: plain | login | xoauth2 | user (POP3 USER/PASS).
    pub auth: Option<RawMailboxAuth>,
    /// Extra trust anchor (PEM).
    pub ca_file: Option<String>,
    /// IMAP folder (default INBOX).
    pub folder: Option<String>,
    /// keep | delete | move:FOLDER.
    pub after: Option<String>,
    /// Soft bounces of one address before it is suppressed.
    pub soft_bounce_limit: Option<u32>,
    /// The longest wait for one whole server response.
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
}

/// `bounces.auth:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMailboxAuth {
    /// SASL PLAIN.
    Plain,
    /// IMAP's LOGIN command; SASL LOGIN over POP3.
    Login,
    /// XOAUTH2 bearer token.
    Xoauth2,
    /// POP3 USER/PASS.
    User,
}

/// `suppress:` is one file or a list of files.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSuppress {
    /// One file.
    One(String),
    /// Several files; the first is the one `bounces` adds to.
    Many(Vec<String>),
}

/// The user (or system) config file: the default `smtp:` section and
/// named `accounts:` with the same keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserConfig {
    /// Default SMTP settings.
    pub smtp: Option<RawSmtp>,
    /// Suppression files `send` checks its recipients against.
    pub suppress: Option<RawSuppress>,
    /// Named accounts, in file order (`sendmail -a NAME`, or picked by the
    /// sender's domain).
    #[serde(default)]
    pub accounts: indexmap::IndexMap<String, RawSmtp>,
    /// The sendmail queue folder (relative to the config's folder).
    pub queue: Option<String>,
    /// The sender for `sendmail` when neither `-f` nor the message names one.
    pub from: Option<String>,
    /// DKIM signing of `send` and `sendmail` messages.
    pub dkim: Option<RawDkim>,
    /// The largest message `sendmail` reads from stdin (`64MB`, `1GB`, ...).
    pub max_message_size: Option<serde_yaml::Value>,
}

/// The `smtp:` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// Provider preset name.
    pub provider: Option<String>,
    /// `smtps://…`, `smtp://…` or `smtp+plain://…`.
    pub url: Option<String>,
    /// Server host.
    pub host: Option<String>,
    /// Server port.
    pub port: Option<u16>,
    /// tls | starttls | none.
    pub security: Option<RawSecurity>,
    /// AUTH user.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File whose first line is the password.
    pub password_file: Option<String>,
    /// Command whose first output line is the password.
    pub password_command: Option<String>,
    /// Extra trust anchor (PEM).
    pub ca_file: Option<String>,
    /// plain | login | xoauth2.
    pub auth: Option<RawAuth>,
    /// Parallel sessions (1 to `validate::smtp_section::MAX_SESSIONS`, checked in validation).
    pub sessions: Option<usize>,
    /// Messages per session before reconnecting.
    pub max_messages_per_session: Option<usize>,
    /// `20/s`, `300/min`, `1000/h`.
    #[serde(default, deserialize_with = "de_rate")]
    pub rate: Option<Rate>,
    /// Per-command timeout.
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// Timeout for the reply to the end of data.
    #[serde(default, deserialize_with = "de_duration")]
    pub data_timeout: Option<Duration>,
    /// Attempts per message.
    pub max_attempts: Option<u32>,
    /// First retry delay after a transient failure (doubles per attempt).
    #[serde(default, deserialize_with = "de_duration")]
    pub retry_delay: Option<Duration>,
    /// EHLO name (`helo_name`; `helo` is accepted too).
    #[serde(rename = "helo_name", alias = "helo")]
    pub helo: Option<String>,
    /// Allow AUTH without TLS.
    pub allow_plaintext_auth: Option<bool>,
    /// A relay's name in events, traces and messages (default `host:port`).
    pub name: Option<String>,
    /// Messages accepted per relay per local day, across runs.
    pub daily_limit: Option<u32>,
    /// How long a run waits while every relay is paused before it ends (exit 75).
    #[serde(default, deserialize_with = "de_duration")]
    pub patience: Option<Duration>,
    /// Several servers to spread the messages over (each item: these keys).
    pub relays: Option<Vec<RawSmtp>>,
}

/// One `domains:` entry: limits for one recipient domain (or `"*"`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    /// `30/min`, `5/s`: messages for this domain.
    #[serde(default, deserialize_with = "de_rate")]
    pub rate: Option<Rate>,
    /// Sessions that may carry this domain's mail at once.
    pub sessions: Option<usize>,
}

/// `security:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSecurity {
    /// Implicit TLS.
    Tls,
    /// STARTTLS, required.
    Starttls,
    /// No TLS.
    None,
}

impl From<RawSecurity> for Security {
    fn from(raw: RawSecurity) -> Self {
        match raw {
            RawSecurity::Tls => Security::Tls,
            RawSecurity::Starttls => Security::StartTls,
            RawSecurity::None => Security::None,
        }
    }
}

/// `auth:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAuth {
    /// SASL PLAIN.
    Plain,
    /// LOGIN.
    Login,
    /// XOAUTH2.
    Xoauth2,
}

impl From<RawAuth> for AuthMech {
    fn from(raw: RawAuth) -> Self {
        match raw {
            RawAuth::Plain => AuthMech::Plain,
            RawAuth::Login => AuthMech::Login,
            RawAuth::Xoauth2 => AuthMech::XOAuth2,
        }
    }
}

/// One `attachments:` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttachment {
    /// Path template.
    pub path: String,
    /// File name template.
    pub name: Option<String>,
}

/// The `dkim:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDkim {
    /// `d=` domain.
    pub domain: String,
    /// `s=` selector.
    pub selector: String,
    /// PEM private key file.
    pub key_file: String,
}

/// The `recipients:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipients {
    /// The CSV file.
    pub file: Option<String>,
    /// Address column (default `email`).
    pub email_column: Option<String>,
    /// One-byte delimiter (default `,`).
    #[serde(default, deserialize_with = "de_delimiter")]
    pub delimiter: Option<u8>,
    /// Encoding label (default UTF-8).
    #[serde(default, deserialize_with = "de_encoding")]
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// Send to duplicate addresses too.
    pub allow_duplicates: Option<bool>,
}

/// `headers:` as (name, value template) pairs in file order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

/// Headers mailshot writes itself (and every `Content-*`); a job may not set
/// them through `headers:`, since overriding them would break the message.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "dkim-signature",
    "return-path",
    "received",
];

/// Why `name` cannot be an extra header of a job, if it cannot: RFC 5322 2.2
/// field names are printable ASCII except ':'; and mailshot's own headers
/// come from the job's own keys.
pub fn header_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Some(format!(
            "header name {name:?} is not valid (printable ASCII without ':' or spaces)"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("content-") {
        return Some(format!(
            "header {name} is set by mailshot; use the job's own key for it \
             (from, to, cc, bcc, reply_to, subject, list_unsubscribe, dkim)"
        ));
    }
    None
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of header names to value templates")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if let Some(problem) = header_name_problem(&name) {
                        return Err(de::Error::custom(problem));
                    }
                    if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                        return Err(de::Error::custom(format!("header {name} is given twice")));
                    }
                    let value = map.next_value::<Scalar>()?.0;
                    out.push((name, value));
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string, number or boolean taken as its text (a header value `2026`).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `30s`, `5m`, `1h`, `250ms` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid duration {s:?}; use e.g. 30s, 5m, 1h or a number of seconds")
    })?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => n,
        "m" | "min" | "mins" | "minute" | "minutes" => n.saturating_mul(60),
        "h" | "hour" | "hours" => n.saturating_mul(3600),
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(format!(
                "invalid duration {s:?}; use e.g. 30s, 5m, 1h or a number of seconds"
            ))
        }
    };
    Ok(Duration::from_secs(secs))
}

/// Default `max_attachment_size`: 25 MB.
pub const DEFAULT_MAX_ATTACHMENT_SIZE: u64 = 25_000_000;

/// Default `max_message_size` of `sendmail`: 64 MB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64_000_000;

/// `25MB`, `500KB`, `1GB`, `100B` or a plain number of bytes (decimal units;
/// `KiB`, `MiB`, `GiB` for binary ones).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?}; use e.g. 500KB, 25MB or 1GB");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

/// `20/s`, `300/min`, `1000/h` (also `sec`, `second`, `m`, `minute`, `hour`).
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("invalid rate {s:?}; use e.g. 20/s, 300/min or 1000/h");
    let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("invalid rate {s:?}: the count must be at least 1"));
    }
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(bad()),
    };
    Ok(Rate {
        count,
        per: Duration::from_secs(per),
    })
}

/// `","`, `";"`, `"\t"`, `tab`, `"|"`: exactly one ASCII byte.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        s if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(format!(
            "invalid delimiter {s:?}; use one ASCII character such as \",\", \";\", \"|\" or tab"
        )),
    }
}

/// An `encoding_rs` label (utf-8, gbk, gb18030, big5, shift_jis, ...).
pub fn parse_encoding(s: &str) -> Result<&'static encoding_rs::Encoding, String> {
    encoding_rs::Encoding::for_label(s.trim().as_bytes()).ok_or_else(|| {
        format!(
            "unknown encoding {s:?}; use a WHATWG label such as utf-8, gbk, gb18030, big5, shift_jis, euc-kr or windows-1252"
        )
    })
}

/// Deserialize a scalar's text through `parse`. The parse runs inside the
/// visitor so that serde_yaml attaches the value's own line and column.
fn de_with<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T>(fn(&str) -> Result<T, String>);
    impl<'de, T> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            (self.0)(&v.to_string()).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            (self.0)(&v.to_string()).map_err(E::custom)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            (self.0)(&v.to_string()).map_err(E::custom)
        }
    }
    d.deserialize_any(V(parse)).map(Some)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_with(d, parse_duration)
}

fn de_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    de_with(d, parse_rate)
}

fn de_delimiter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    de_with(d, parse_delimiter)
}

fn de_encoding<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<&'static encoding_rs::Encoding>, D::Error> {
    de_with(d, parse_encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("25MB"), Ok(25_000_000));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999GB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2 minutes"), Ok(Duration::from_secs(120)));
        for bad in ["", "m", "5x", "-5s", "1.5s", "5 m s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        let r = parse_rate("20/s").unwrap();
        assert_eq!((r.count, r.per), (20, Duration::from_secs(1)));
        let r = parse_rate("300/min").unwrap();
        assert_eq!((r.count, r.per), (300, Duration::from_secs(60)));
        let r = parse_rate("1000/h").unwrap();
        assert_eq!((r.count, r.per), (1000, Duration::from_secs(3600)));
        for (s, per) in [
            ("5/sec", 1),
            ("5/second", 1),
            ("5/m", 60),
            ("5/minute", 60),
            ("5/hour", 3600),
        ] {
            assert_eq!(parse_rate(s).unwrap().per, Duration::from_secs(per), "{s}");
        }
        for bad in ["20", "0/s", "x/s", "20/d", "/s", "-1/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn delimiters_and_encodings() {
        assert_eq!(parse_delimiter(","), Ok(b','));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("\t"), Ok(b'\t'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter(",,").is_err());
        assert!(parse_delimiter("").is_err());
        assert!(parse_delimiter("，").is_err());
        assert_eq!(parse_encoding("GBK").unwrap(), encoding_rs::GBK);
        assert_eq!(parse_encoding("gb18030").unwrap(), encoding_rs::GB18030);
        assert_eq!(parse_encoding("utf-8").unwrap(), encoding_rs::UTF_8);
        assert_eq!(parse_encoding("shift_jis").unwrap(), encoding_rs::SHIFT_JIS);
        assert!(parse_encoding("klingon").is_err());
    }

    #[test]
    fn headers_keep_order_and_reject_reserved() {
        let job: RawJob =
            serde_yaml::from_str("headers:\n  X-Zeta: a\n  X-Alpha: 2026\n  X-Mid: \"{{ x }}\"\n")
                .unwrap();
        assert_eq!(
            job.headers.0,
            vec![
                ("X-Zeta".to_string(), "a".to_string()),
                ("X-Alpha".to_string(), "2026".to_string()),
                ("X-Mid".to_string(), "{{ x }}".to_string()),
            ]
        );
        for bad in [
            "headers:\n  Bcc: x@y.z\n",
            "headers:\n  \"X Bad\": v\n",
            "headers:\n  X-A: v\n  x-a: w\n",
            "headers:\n  X-A: [1, 2]\n",
        ] {
            assert!(serde_yaml::from_str::<RawJob>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_carry_location() {
        let err = serde_yaml::from_str::<RawJob>("subject: hi\nsmtp:\n  host: h\n  rate: 20/day\n")
            .unwrap_err();
        let loc = err.location().expect("location");
        assert_eq!(loc.line(), 4, "{err}");
        assert!(err.to_string().contains("20/day"), "{err}");
    }
}
