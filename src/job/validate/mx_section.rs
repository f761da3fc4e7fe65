//! `smtp.mx: true` checked: direct delivery to each recipient domain's MX
//! hosts (RFC 5321 §5.1) instead of one server. Such a section names no
//! server and no account; `port` (default 25) is the port of every MX host;
//! `resolver` names the DNS server; `security` reads as the TLS policy
//! towards MX hosts; and a fully qualified `helo_name` is required, since
//! receivers check the EHLO name of a server that talks to them directly.

use std::net::{IpAddr, SocketAddr};

use super::problems::Problems;
use crate::job::manifest::{RawSecurity, RawSmtp};
use crate::job::{MxSettings, MxTls, Security, SmtpSettings};

/// The port MX hosts take mail on (RFC 5321 §4.5.4.2).
pub const MX_PORT: u16 = 25;

/// The settings of an `mx: true` section, before the keys every section
/// shares (sessions, timeouts, retries) are applied; problems go to `p`.
pub(super) fn base(raw: &RawSmtp, p: &mut Problems) -> SmtpSettings {
    for (key, given) in [
        ("provider", raw.provider.is_some()),
        ("url", raw.url.is_some()),
        ("host", raw.host.is_some()),
    ] {
        if given {
            p.at(
                &["smtp", key],
                format!(
                    "smtp.{key} names one server, but mx: true delivers to each recipient \
                     domain's MX hosts; remove {key}, or remove mx to send through that server"
                ),
            );
        }
    }
    for (key, given) in [
        ("username", raw.username.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("password_file", raw.password_file.is_some()),
        ("password_command", raw.password_command.is_some()),
        ("auth", raw.auth.is_some()),
    ] {
        if given {
            p.at(
                &["smtp", key],
                format!(
                    "smtp.{key}: MX hosts take mail for their own domains without a login; \
                     remove it (a login belongs to a relay)"
                ),
            );
        }
    }
    let tls = match raw.security {
        None => MxTls::Opportunistic,
        Some(RawSecurity::Starttls) => MxTls::Verified,
        Some(RawSecurity::None) => MxTls::None,
        Some(RawSecurity::Tls) => {
            p.at(
                &["smtp", "security"],
                "with mx: true, security is starttls (required, certificate verified) or none; \
                 leave it out for STARTTLS whenever a host offers it (MX hosts do not take \
                 implicit TLS)",
            );
            MxTls::Opportunistic
        }
    };
    match raw.helo.as_deref() {
        None => p.at(
            &["smtp", "mx"],
            "mx: true needs smtp.helo_name, this machine's fully qualified domain name \
             (e.g. mail.example.com): receiving servers check it",
        ),
        Some(name) if name.chars().all(|c| c.is_ascii_graphic()) && !is_fqdn(name) => p.at(
            &["smtp", "helo_name"],
            format!(
                "helo_name {name:?} is not a fully qualified domain name (e.g. \
                 mail.example.com), which mx: true needs: receiving servers check it"
            ),
        ),
        Some(_) => {}
    }
    let resolver = raw.resolver.as_deref().and_then(|text| {
        let parsed = parse_resolver(text);
        if parsed.is_none() {
            p.at(
                &["smtp", "resolver"],
                format!("resolver {text:?} is not IP:PORT or IP (e.g. 127.0.0.1:53, [::1]:53)"),
            );
        }
        parsed
    });
    let security = if tls == MxTls::None {
        Security::None
    } else {
        Security::StartTls
    };
    let mut s = SmtpSettings::new("", MX_PORT, security);
    s.mx = Some(MxSettings { resolver, tls });
    s
}

/// `resolver` without `mx: true` is a mistake worth naming.
pub(super) fn resolver_without_mx(raw: &RawSmtp, p: &mut Problems) {
    if raw.resolver.is_some() && raw.mx != Some(true) {
        p.at(
            &["smtp", "resolver"],
            "smtp.resolver is only used with mx: true (direct delivery to MX hosts)",
        );
    }
}

/// `mx` and `resolver` belong to a section without `relays` (direct
/// delivery has no relays), and to no relay of a pool.
pub(super) fn not_with_relays(raw: &RawSmtp, relays: &[RawSmtp], p: &mut Problems) {
    let in_relay = relays
        .iter()
        .any(|r| r.mx.is_some() || r.resolver.is_some());
    if raw.mx.is_some() || raw.resolver.is_some() || in_relay {
        p.at(
            &["smtp", "relays"],
            "mx: true delivers to each recipient domain's MX hosts and relays send through \
             servers you name: use one or the other (mx and resolver are not relay keys)",
        );
    }
}

fn parse_resolver(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            text.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .filter(|a| a.port() != 0)
}

/// At least two labels of letters, digits and hyphens (not at either end
/// of a label), a top label that is not all digits: a name, not an address.
fn is_fqdn(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && name.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !labels
            .last()
            .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fully_qualified_names() {
        for good in ["mail.example.com", "mx1.example.co.uk.", "a-b.example"] {
            assert!(is_fqdn(good), "{good}");
        }
        for bad in [
            "localhost",
            "mail",
            "192.168.1.10",
            "[127.0.0.1]",
            "-a.example.com",
            "a..example",
            "mail_1.example.com",
        ] {
            assert!(!is_fqdn(bad), "{bad}");
        }
    }

    #[test]
    fn resolver_addresses() {
        assert_eq!(
            parse_resolver("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(parse_resolver("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_resolver("dns.example:53"), None);
        assert_eq!(parse_resolver("127.0.0.1:0"), None);
    }
}
