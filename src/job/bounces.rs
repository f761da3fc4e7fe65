//! The `bounces:` section: the mailbox that receives bounces, complaints
//! and unsubscribe requests, as checked settings, and its URL
//! (`imaps://`, `imap://` with STARTTLS, `pop3s://`, `pop3://` with STLS;
//! `imap+plain://` and `pop3+plain://` only when plain text is meant).

use std::path::PathBuf;
use std::time::Duration;

use super::smtp_url::{percent_decode, split_host_port};
use super::{PasswordSource, Security};

/// The mailbox protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// IMAP4rev1 (RFC 3501).
    Imap,
    /// POP3 (RFC 1939).
    Pop3,
}

/// What happens to a message once it is read and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Leave it (the default); it is remembered as read.
    Keep,
    /// Delete it.
    Delete,
    /// Move it to this folder (IMAP only).
    Move(String),
}

/// How to log in to the mailbox (`auth:`); without it, the best the
/// server offers: AUTHENTICATE PLAIN or LOGIN over IMAP, SASL PLAIN or
/// LOGIN or else USER/PASS over POP3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxAuth {
    /// SASL PLAIN (RFC 4616): IMAP AUTHENTICATE PLAIN, POP3 AUTH PLAIN.
    Plain,
    /// IMAP's LOGIN command (RFC 3501 §6.2.3); POP3 AUTH LOGIN.
    Login,
    /// XOAUTH2: the secret is an OAuth 2.0 access token.
    XOAuth2,
    /// POP3 USER and PASS (RFC 1939 §7).
    User,
}

impl MailboxAuth {
    /// The SASL mechanism forced, if any (`User` forces none).
    pub fn mechanism(self) -> Option<crate::smtp::auth::AuthMech> {
        use crate::smtp::auth::AuthMech;
        match self {
            MailboxAuth::Plain => Some(AuthMech::Plain),
            MailboxAuth::Login => Some(AuthMech::Login),
            MailboxAuth::XOAuth2 => Some(AuthMech::XOAuth2),
            MailboxAuth::User => None,
        }
    }
}

/// The checked `bounces:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceSettings {
    /// IMAP or POP3.
    pub protocol: Protocol,
    /// Implicit TLS, STARTTLS/STLS (required), or plain text.
    pub security: Security,
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Login name.
    pub username: String,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// The login mechanism, if the job chose one.
    pub auth: Option<MailboxAuth>,
    /// Extra trust anchor (PEM).
    pub ca_file: Option<PathBuf>,
    /// The IMAP folder read (default `INBOX`).
    pub folder: String,
    /// What to do with a message once read.
    pub after: After,
    /// Soft bounces of one address that suppress it.
    pub soft_bounce_limit: u32,
    /// The longest wait for one whole server response.
    pub timeout: Duration,
}

/// The default `soft_bounce_limit`.
pub const DEFAULT_SOFT_BOUNCE_LIMIT: u32 = 3;

/// A parsed mailbox URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxUrl {
    /// IMAP or POP3.
    pub protocol: Protocol,
    /// TLS mode from the scheme.
    pub security: Security,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, by default 993, 143, 995 or 110.
    pub port: u16,
    /// Percent-decoded user name.
    pub username: Option<String>,
}

/// Parse `scheme://[user@]host[:port][/]`. Error messages never repeat the
/// URL, so a password typed into it is not echoed.
pub fn parse_url(url: &str) -> Result<MailboxUrl, String> {
    let (scheme, rest) = url.trim().split_once("://").ok_or(
        "a mailbox URL must start with imaps://, imap://, pop3s:// or pop3:// (or imap+plain://, pop3+plain://)",
    )?;
    let (protocol, security, port) = match scheme.to_ascii_lowercase().as_str() {
        "imaps" => (Protocol::Imap, Security::Tls, 993),
        "imap" => (Protocol::Imap, Security::StartTls, 143),
        "imap+plain" => (Protocol::Imap, Security::None, 143),
        "pop3s" => (Protocol::Pop3, Security::Tls, 995),
        "pop3" => (Protocol::Pop3, Security::StartTls, 110),
        "pop3+plain" => (Protocol::Pop3, Security::None, 110),
        _ => {
            return Err("unknown mailbox URL scheme; use imaps://, imap:// (STARTTLS), pop3s:// or pop3:// (STLS)".into())
        }
    };
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let username = match userinfo {
        Some(info) if info.contains(':') => {
            return Err("the mailbox URL contains a password; remove it from the URL and use password_env, password_file or password_command instead".into())
        }
        Some("") => return Err("the mailbox URL has an empty user name before '@'".into()),
        Some(info) => Some(percent_decode(info)?),
        None => None,
    };
    let authority = match hostpart.split_once('/') {
        Some((a, "")) => a,
        Some(_) => {
            return Err("a mailbox URL takes no path; name an IMAP folder with `folder`".into())
        }
        None => hostpart,
    };
    if authority.contains('?') {
        return Err("a mailbox URL takes no parameters".into());
    }
    let (host, given_port) = split_host_port(authority)?;
    Ok(MailboxUrl {
        protocol,
        security,
        host,
        port: given_port.unwrap_or(port),
        username,
    })
}

/// One provider's mailbox endpoint for a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxPreset {
    /// Server host.
    pub host: &'static str,
    /// Implicit-TLS port (993 for IMAP, 995 for POP3).
    pub port: u16,
    /// The provider's help page these settings come from.
    pub source: &'static str,
}

/// `(provider, IMAP host, POP3 host, source)`; every one serves IMAPS on
/// 993 and POP3S on 995.
static MAILBOX_PRESETS: &[(&str, &str, &str, &str)] = &[
    (
        "qq",
        "imap.qq.com",
        "pop.qq.com",
        "QQ邮箱帮助中心: 如何设置IMAP服务 / POP3服务",
    ),
    (
        "163",
        "imap.163.com",
        "pop.163.com",
        "网易邮箱帮助: 客户端设置 POP3/SMTP/IMAP",
    ),
    (
        "126",
        "imap.126.com",
        "pop.126.com",
        "网易邮箱帮助: 客户端设置 POP3/SMTP/IMAP",
    ),
    (
        "gmail",
        "imap.gmail.com",
        "pop.gmail.com",
        "Gmail Help: Read Gmail messages on other email clients using IMAP / POP",
    ),
    (
        "outlook",
        "outlook.office365.com",
        "outlook.office365.com",
        "Microsoft Support: POP, IMAP, and SMTP settings for Outlook.com",
    ),
];

/// The mailbox endpoint of a provider preset (`netease` is `163`,
/// `hotmail` is `outlook`), over implicit TLS.
pub fn mailbox_preset(name: &str, protocol: Protocol) -> Option<MailboxPreset> {
    let name = name.trim().to_ascii_lowercase();
    let name = match name.as_str() {
        "netease" => "163",
        "hotmail" => "outlook",
        other => other,
    };
    MAILBOX_PRESETS
        .iter()
        .find(|p| p.0 == name)
        .map(|&(_, imap, pop3, source)| match protocol {
            Protocol::Imap => MailboxPreset {
                host: imap,
                port: 993,
                source,
            },
            Protocol::Pop3 => MailboxPreset {
                host: pop3,
                port: 995,
                source,
            },
        })
}

/// Parse `keep`, `delete` or `move:FOLDER`.
pub fn parse_after(value: &str) -> Option<After> {
    let v = value.trim();
    match v.to_ascii_lowercase().as_str() {
        "keep" => Some(After::Keep),
        "delete" => Some(After::Delete),
        _ => {
            let (word, folder) = v.split_once(':')?;
            (word.eq_ignore_ascii_case("move") && !folder.trim().is_empty())
                .then(|| After::Move(folder.trim().to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_give_protocol_security_and_default_port() {
        let u = parse_url("imaps://bounces%40example.com@imap.example.com").unwrap();
        assert_eq!(
            (u.protocol, u.security, u.port),
            (Protocol::Imap, Security::Tls, 993)
        );
        assert_eq!(u.username.as_deref(), Some("bounces@example.com"));
        assert_eq!(u.host, "imap.example.com");
        let u = parse_url("imap://h").unwrap();
        assert_eq!((u.security, u.port), (Security::StartTls, 143));
        let u = parse_url("pop3s://h:1995").unwrap();
        assert_eq!(
            (u.protocol, u.security, u.port),
            (Protocol::Pop3, Security::Tls, 1995)
        );
        let u = parse_url("pop3://h").unwrap();
        assert_eq!((u.security, u.port), (Security::StartTls, 110));
        assert_eq!(
            parse_url("pop3+plain://h").unwrap().security,
            Security::None
        );
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_echo() {
        let e = parse_url("imaps://u:hunter2@h").unwrap_err();
        assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
        assert!(parse_url("smtps://h").is_err());
        assert!(parse_url("imaps://h/Folder").is_err());
    }

    #[test]
    fn presets_name_the_providers_mailbox_servers() {
        let p = mailbox_preset("163", Protocol::Pop3).unwrap();
        assert_eq!((p.host, p.port), ("pop.163.com", 995));
        let p = mailbox_preset("QQ", Protocol::Imap).unwrap();
        assert_eq!((p.host, p.port), ("imap.qq.com", 993));
        assert_eq!(
            mailbox_preset("hotmail", Protocol::Imap).unwrap().host,
            "outlook.office365.com"
        );
        assert!(mailbox_preset("nowhere", Protocol::Imap).is_none());
    }

    #[test]
    fn after_values() {
        assert_eq!(parse_after("keep"), Some(After::Keep));
        assert_eq!(parse_after("Delete"), Some(After::Delete));
        assert_eq!(
            parse_after("move:Processed"),
            Some(After::Move("Processed".into()))
        );
        assert_eq!(parse_after("move:"), None);
        assert_eq!(parse_after("archive"), None);
    }
}
