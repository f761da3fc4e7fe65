//! Provider presets (qq, 163, 126, gmail, outlook, ...): host, port, security,
//! and what the provider wants as the SMTP password.
//!
//! The settings are the submission endpoints the providers document for
//! mail clients (RFC 8314 implicit TLS on 465 where offered, else RFC 6409
//! submission with STARTTLS on 587). The password advice is shown when a
//! server answers AUTH with 535: with Chinese providers in particular, the
//! login password never works and users need the 授权码 instead.

use super::Security;

/// One provider's submission settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// The name used in `smtp.provider`.
    pub name: &'static str,
    /// Submission host.
    pub host: &'static str,
    /// Submission port.
    pub port: u16,
    /// TLS mode on that port.
    pub security: Security,
    /// What the provider expects as the SMTP password.
    pub auth_hint: &'static str,
    /// The provider's help page these settings come from.
    pub source: &'static str,
}

const NETEASE_HINT: &str =
    "the password must be the authorization code (授权码) generated in the web mail settings \
(设置 → POP3/SMTP/IMAP: enable the SMTP service), not the login password";

static PRESETS: &[Preset] = &[
    Preset {
        name: "qq",
        host: "smtp.qq.com",
        port: 465,
        security: Security::Tls,
        auth_hint: "the password must be the authorization code (授权码) generated in QQ Mail's web settings \
(设置 → 账户 → POP3/IMAP/SMTP服务: enable it), not the QQ login password",
        source: "QQ邮箱帮助中心: 如何设置POP3/SMTP服务 / 什么是授权码",
    },
    Preset {
        name: "163",
        host: "smtp.163.com",
        port: 465,
        security: Security::Tls,
        auth_hint: NETEASE_HINT,
        source: "网易邮箱帮助: 客户端设置 POP3/SMTP/IMAP 与授权码",
    },
    Preset {
        name: "126",
        host: "smtp.126.com",
        port: 465,
        security: Security::Tls,
        auth_hint: NETEASE_HINT,
        source: "网易邮箱帮助: 客户端设置 POP3/SMTP/IMAP 与授权码",
    },
    Preset {
        name: "yeah",
        host: "smtp.yeah.net",
        port: 465,
        security: Security::Tls,
        auth_hint: NETEASE_HINT,
        source: "网易邮箱帮助: 客户端设置 POP3/SMTP/IMAP 与授权码",
    },
    Preset {
        name: "aliyun",
        host: "smtp.aliyun.com",
        port: 465,
        security: Security::Tls,
        auth_hint: "enable POP3/SMTP in the Aliyun Mail web settings; if a client-specific password \
(三方客户端安全密码) is set, use it instead of the login password",
        source: "阿里邮箱帮助中心: 客户端设置 (POP3/SMTP/IMAP)",
    },
    Preset {
        name: "exmail",
        host: "smtp.exmail.qq.com",
        port: 465,
        security: Security::Tls,
        auth_hint: "if WeChat secure login is on, the password must be a client-specific password \
(客户端专用密码) generated in the Tencent Exmail web settings",
        source: "腾讯企业邮箱帮助: 客户端设置 / 客户端专用密码",
    },
    Preset {
        name: "gmail",
        host: "smtp.gmail.com",
        port: 465,
        security: Security::Tls,
        auth_hint: "use an app password (Google Account → Security → 2-Step Verification → App passwords) \
or an OAuth2 token with auth: xoauth2; the account password is refused",
        source: "Google Workspace Admin Help / Gmail Help: Sign in with app passwords",
    },
    Preset {
        name: "outlook",
        host: "smtp-mail.outlook.com",
        port: 587,
        security: Security::StartTls,
        auth_hint: "Outlook.com is retiring basic authentication: use an OAuth2 token with auth: xoauth2, \
or an app password where your account still allows it",
        source: "Microsoft Support: POP, IMAP, and SMTP settings for Outlook.com",
    },
    Preset {
        name: "office365",
        host: "smtp.office365.com",
        port: 587,
        security: Security::StartTls,
        auth_hint: "SMTP AUTH must be enabled for the mailbox by the tenant admin; use an OAuth2 token \
with auth: xoauth2 (basic authentication is being retired) or an app password",
        source: "Microsoft Learn: How to set up a multifunction device or application to send email using Microsoft 365",
    },
    Preset {
        name: "yahoo",
        host: "smtp.mail.yahoo.com",
        port: 465,
        security: Security::Tls,
        auth_hint: "use an app password generated in Yahoo Account Security (or auth: xoauth2); \
the account password is refused",
        source: "Yahoo Help: IMAP server settings for Yahoo Mail / Generate and manage 3rd-party app passwords",
    },
    Preset {
        name: "icloud",
        host: "smtp.mail.me.com",
        port: 587,
        security: Security::StartTls,
        auth_hint: "use an app-specific password (appleid.apple.com → Sign-In and Security); \
the username is your full iCloud Mail address",
        source: "Apple Support: iCloud Mail server settings for other email client apps",
    },
    Preset {
        name: "fastmail",
        host: "smtp.fastmail.com",
        port: 465,
        security: Security::Tls,
        auth_hint: "use an app password (Settings → Privacy & Security → Manage app passwords)",
        source: "Fastmail Help: Server names and ports",
    },
];

/// Other names accepted for a preset.
static ALIASES: &[(&str, &str)] = &[
    ("qq-exmail", "exmail"),
    ("netease", "163"),
    ("hotmail", "outlook"),
    ("microsoft365", "office365"),
];

/// The preset called `name` (case-insensitive; aliases such as `qq-exmail` accepted).
pub fn lookup(name: &str) -> Option<&'static Preset> {
    let name = name.trim().to_ascii_lowercase();
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name.as_str(), |(_, target)| target);
    PRESETS.iter().find(|p| p.name == name)
}

/// Every preset, in a stable order.
pub fn all() -> &'static [Preset] {
    PRESETS
}

/// Every accepted name (presets, then aliases), for "unknown provider" errors.
pub fn names() -> Vec<&'static str> {
    PRESETS
        .iter()
        .map(|p| p.name)
        .chain(ALIASES.iter().map(|(alias, _)| *alias))
        .collect()
}

/// Advice to append to an authentication failure (535) for `provider`, if known.
pub fn auth_advice(provider: Option<&str>) -> Option<String> {
    let preset = lookup(provider?)?;
    Some(format!(
        "{} ({}): {} (see {})",
        preset.name, preset.host, preset.auth_hint, preset.source
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_presets() {
        let qq = lookup("qq").unwrap();
        assert_eq!(
            (qq.host, qq.port, qq.security),
            ("smtp.qq.com", 465, Security::Tls)
        );
        let ol = lookup("Outlook").unwrap();
        assert_eq!(
            (ol.host, ol.port, ol.security),
            ("smtp-mail.outlook.com", 587, Security::StartTls)
        );
        assert_eq!(lookup("qq-exmail").unwrap().host, "smtp.exmail.qq.com");
        assert_eq!(lookup("163").unwrap().host, "smtp.163.com");
        assert!(lookup("nosuch").is_none());
    }

    #[test]
    fn every_required_preset_exists_with_consistent_security() {
        for name in [
            "qq",
            "163",
            "126",
            "yeah",
            "aliyun",
            "exmail",
            "qq-exmail",
            "gmail",
            "outlook",
            "office365",
            "yahoo",
            "icloud",
            "fastmail",
        ] {
            let p = lookup(name).unwrap_or_else(|| panic!("missing {name}"));
            // Port and TLS mode must agree, or the first byte would be wrong.
            assert_eq!(p.port, p.security.default_port(), "{name}");
            assert!(!p.auth_hint.is_empty() && !p.source.is_empty());
        }
        assert!(names().contains(&"qq-exmail"));
    }

    #[test]
    fn advice_mentions_authorization_code_for_chinese_providers() {
        for name in ["qq", "163", "126", "yeah"] {
            let advice = auth_advice(Some(name)).unwrap();
            assert!(advice.contains("授权码"), "{advice}");
        }
        assert!(auth_advice(Some("gmail")).unwrap().contains("app password"));
        assert_eq!(auth_advice(None), None);
        assert_eq!(auth_advice(Some("nosuch")), None);
    }
}
