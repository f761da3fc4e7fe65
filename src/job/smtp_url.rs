//! `smtps://`, `smtp://` and `smtp+plain://` URLs into SMTP settings.
//!
//! The URL form follows RFC 3986 (userinfo percent-encoded, IPv6 hosts in
//! brackets); the schemes map to RFC 8314 implicit TLS (`smtps`), RFC 3207
//! STARTTLS which is then required (`smtp`), and no TLS (`smtp+plain`).
//! A password in the URL is refused: URLs end up in shell history, process
//! lists and logs. Error messages never repeat the URL, so a password typed
//! into it is not echoed either.

use super::Security;
use crate::smtp::auth::AuthMech;

/// A parsed SMTP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// TLS mode from the scheme.
    pub security: Security,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, defaulting by security (465, 587, 25).
    pub port: u16,
    /// Percent-decoded user name.
    pub username: Option<String>,
    /// `?auth=plain|login|xoauth2`.
    pub auth: Option<AuthMech>,
}

const PASSWORD_ADVICE: &str = "the SMTP URL contains a password; remove it from the URL \
and use password_env, password_file or password_command instead";

/// Parse `scheme://[user@]host[:port][/][?auth=MECH]`.
pub fn parse(url: &str) -> Result<SmtpUrl, String> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("an SMTP URL must start with smtps://, smtp:// or smtp+plain://")?;
    let security = match scheme.to_ascii_lowercase().as_str() {
        "smtps" | "smtp+tls" => Security::Tls,
        "smtp" | "smtp+starttls" => Security::StartTls,
        "smtp+plain" => Security::None,
        _ => {
            return Err(
                "unknown SMTP URL scheme; use smtps:// (implicit TLS), smtp:// (STARTTLS) or smtp+plain:// (no TLS)"
                    .into(),
            )
        }
    };
    // '@' must be percent-encoded inside the user name, so the last one
    // ends the userinfo.
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let username = match userinfo {
        Some(info) if info.contains(':') => return Err(PASSWORD_ADVICE.into()),
        Some("") => return Err("the SMTP URL has an empty user name before '@'".into()),
        Some(info) => Some(percent_decode(info)?),
        None => None,
    };
    let (authority, query) = match hostpart.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (hostpart, None),
    };
    let authority = match authority.split_once('/') {
        Some((a, "")) => a,
        Some(_) => return Err("an SMTP URL takes no path".into()),
        None => authority,
    };
    let (host, port) = split_host_port(authority)?;
    let port = port.unwrap_or(security.default_port());
    let mut auth = None;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        match pair.split_once('=') {
            Some(("auth", value)) => {
                auth = Some(parse_auth(value).ok_or(
                    "unknown ?auth= mechanism in the SMTP URL; use plain, login or xoauth2",
                )?)
            }
            _ => {
                return Err(
                    "unknown SMTP URL parameter; the only one is ?auth=plain|login|xoauth2".into(),
                )
            }
        }
    }
    Ok(SmtpUrl {
        security,
        host,
        port,
        username,
        auth,
    })
}

/// `plain`, `login` or `xoauth2`, case-insensitively.
pub fn parse_auth(value: &str) -> Option<AuthMech> {
    match value.to_ascii_lowercase().as_str() {
        "plain" => Some(AuthMech::Plain),
        "login" => Some(AuthMech::Login),
        "xoauth2" => Some(AuthMech::XOAuth2),
        _ => None,
    }
}

pub(crate) fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (ip, after) = inner
            .split_once(']')
            .ok_or("unterminated '[' in the SMTP URL host")?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "the SMTP URL host in brackets is not an IPv6 address")?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("unexpected text after ']' in the SMTP URL")?,
            ),
        };
        (ip.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("the SMTP URL has no host".into());
    }
    if !host.contains(':')
        && host
            .chars()
            .any(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err("the SMTP URL host contains a character not allowed in a host name".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err("the SMTP URL port must be a number from 1 to 65535".into()),
        },
    };
    Ok((host, port))
}

/// RFC 3986 2.1 percent-decoding; the result must be UTF-8.
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape in the SMTP URL user name")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| "the SMTP URL user name is not UTF-8 after %-decoding".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtps_with_encoded_user() {
        let u = parse("smtps://user%40qq.com@smtp.qq.com:465").unwrap();
        assert_eq!(
            u,
            SmtpUrl {
                security: Security::Tls,
                host: "smtp.qq.com".into(),
                port: 465,
                username: Some("user@qq.com".into()),
                auth: None,
            }
        );
    }

    #[test]
    fn schemes_and_default_ports() {
        let u = parse("smtp://mail.example.com").unwrap();
        assert_eq!((u.security, u.port), (Security::StartTls, 587));
        let u = parse("smtps://mail.example.com/").unwrap();
        assert_eq!((u.security, u.port), (Security::Tls, 465));
        let u = parse("smtp+plain://127.0.0.1:2525").unwrap();
        assert_eq!(
            (u.security, u.host.as_str(), u.port),
            (Security::None, "127.0.0.1", 2525)
        );
        let u = parse("SMTP+PLAIN://localhost").unwrap();
        assert_eq!((u.security, u.port), (Security::None, 25));
    }

    #[test]
    fn ipv6_and_query() {
        let u = parse("smtp+plain://[::1]:2525?auth=login").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 2525);
        assert_eq!(u.auth, Some(AuthMech::Login));
        let u = parse("smtps://me@[2001:db8::25]/?auth=XOAUTH2").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.auth),
            ("2001:db8::25", 465, Some(AuthMech::XOAuth2))
        );
        assert_eq!(u.username.as_deref(), Some("me"));
    }

    #[test]
    fn password_is_refused_without_echo() {
        let err = parse("smtps://me%40qq.com:hunter2secret@smtp.qq.com:465").unwrap_err();
        assert!(err.contains("password_env"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        // A password with a '/' must not leak through a later error either.
        let err = parse("smtps://me:pa/ss@smtp.qq.com").unwrap_err();
        assert!(!err.contains("pa/ss") && !err.contains("ss@"), "{err}");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "smtp.qq.com:465",
            "http://smtp.qq.com",
            "smtps://",
            "smtps://host:0",
            "smtps://host:99999",
            "smtps://host:abc",
            "smtps://host/path",
            "smtps://[::1",
            "smtps://[nothex]:25",
            "smtps://host?auth=cram-md5",
            "smtps://host?tls=off",
            "smtps://@host",
            "smtps://us%zzer@host",
            "smtps://ho st",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
    }
}
