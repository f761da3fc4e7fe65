//! The `bounces:` section: URL, login, password source, trust anchor,
//! folder, what to do after reading, and the soft-bounce limit.

use std::path::Path;
use std::time::Duration;

use super::problems::Problems;
use crate::job::bounces::{
    mailbox_preset, parse_after, parse_url, After, BounceSettings, MailboxAuth, MailboxUrl,
    Protocol, DEFAULT_SOFT_BOUNCE_LIMIT,
};
use crate::job::manifest::{RawBounces, RawMailboxAuth};
use crate::job::PasswordSource;
use crate::job::Security;

/// The default wait for one whole server response.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) fn build_bounces(
    raw: &RawBounces,
    dir: &Path,
    p: &mut Problems,
) -> Option<BounceSettings> {
    let url = match (raw.url.as_deref().map(str::trim), raw.provider.as_deref()) {
        (Some(_), Some(_)) => {
            p.at(&["bounces"], "give either `url` or `provider`, not both");
            None
        }
        (Some(u), None) if !u.is_empty() => match parse_url(u) {
            Ok(url) => Some(url),
            Err(e) => {
                p.at(&["bounces", "url"], e);
                None
            }
        },
        (None, Some(name)) => preset_url(raw, name, p),
        _ => {
            p.at(
                &["bounces"],
                "missing required key `bounces.url` (e.g. imaps://user@imap.example.com) or `provider`",
            );
            None
        }
    };
    if raw.protocol.is_some() && raw.provider.is_none() {
        p.at(
            &["bounces", "protocol"],
            "`protocol` goes with `provider`; with `url`, the scheme says it",
        );
    }
    let sources = [
        raw.password_env
            .as_ref()
            .map(|v| PasswordSource::Env(v.clone())),
        raw.password_file
            .as_ref()
            .map(|f| PasswordSource::File(dir.join(f))),
        raw.password_command
            .as_ref()
            .map(|c| PasswordSource::Command(c.clone())),
    ];
    let mut given = sources.into_iter().flatten();
    let password = given.next().unwrap_or(PasswordSource::None);
    if given.next().is_some() {
        p.at(
            &["bounces"],
            "give only one of password_env, password_file and password_command",
        );
    }
    match &password {
        PasswordSource::None => p.at(
            &["bounces"],
            "the mailbox needs a password: password_env, password_file or password_command",
        ),
        PasswordSource::Env(name)
            if name.is_empty() || name.contains('=') || name.contains('\0') =>
        {
            p.at(
                &["bounces", "password_env"],
                "password_env must name an environment variable, e.g. BOUNCES_PASSWORD",
            )
        }
        PasswordSource::Command(cmd) if cmd.trim().is_empty() => p.at(
            &["bounces", "password_command"],
            "password_command is empty",
        ),
        _ => {}
    }
    let ca_file = raw
        .ca_file
        .as_deref()
        .map(|f| p.input_file(dir, &["bounces", "ca_file"], f));
    let after = match raw.after.as_deref() {
        None => After::Keep,
        Some(v) => parse_after(v).unwrap_or_else(|| {
            p.at(
                &["bounces", "after"],
                "after must be keep, delete or move:FOLDER",
            );
            After::Keep
        }),
    };
    let folder = raw.folder.clone().unwrap_or_else(|| "INBOX".into());
    if folder.trim().is_empty() {
        p.at(&["bounces", "folder"], "folder is empty");
    }
    let soft_bounce_limit = raw.soft_bounce_limit.unwrap_or(DEFAULT_SOFT_BOUNCE_LIMIT);
    if soft_bounce_limit == 0 {
        p.at(
            &["bounces", "soft_bounce_limit"],
            "soft_bounce_limit must be at least 1",
        );
    }
    let url = url?;
    if url.protocol == Protocol::Pop3 {
        if raw.folder.is_some() {
            p.at(
                &["bounces", "folder"],
                "POP3 has no folders; `folder` is for imaps:// and imap:// only",
            );
        }
        if matches!(after, After::Move(_)) {
            p.at(
                &["bounces", "after"],
                "POP3 cannot move messages; use keep or delete, or an IMAP URL",
            );
        }
    }
    let auth = raw.auth.map(|a| match a {
        RawMailboxAuth::Plain => MailboxAuth::Plain,
        RawMailboxAuth::Login => MailboxAuth::Login,
        RawMailboxAuth::Xoauth2 => MailboxAuth::XOAuth2,
        RawMailboxAuth::User => MailboxAuth::User,
    });
    if url.protocol == Protocol::Imap && auth == Some(MailboxAuth::User) {
        p.at(
            &["bounces", "auth"],
            "`user` (USER/PASS) is for POP3; over IMAP use login, plain or xoauth2",
        );
    }
    let Some(username) = raw.username.clone().or(url.username) else {
        p.at(
            &["bounces"],
            "the mailbox needs a user name: in the URL (imaps://user@host) or as `username`",
        );
        return None;
    };
    Some(BounceSettings {
        protocol: url.protocol,
        security: url.security,
        host: url.host,
        port: url.port,
        username,
        password,
        auth,
        ca_file,
        folder: folder.trim().to_string(),
        after,
        soft_bounce_limit,
        timeout: raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
    })
}

/// The URL a provider preset stands for (implicit TLS, the user from `username`).
fn preset_url(raw: &RawBounces, name: &str, p: &mut Problems) -> Option<MailboxUrl> {
    let protocol = match raw
        .protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("imap") => Protocol::Imap,
        Some("pop3") => Protocol::Pop3,
        Some(_) => {
            p.at(&["bounces", "protocol"], "protocol must be imap or pop3");
            return None;
        }
    };
    let Some(preset) = mailbox_preset(name, protocol) else {
        p.at(
            &["bounces", "provider"],
            "unknown mailbox provider; known: qq, 163, 126, gmail, outlook (or give `url`)",
        );
        return None;
    };
    Some(MailboxUrl {
        protocol,
        security: Security::Tls,
        host: preset.host.to_string(),
        port: preset.port,
        username: None,
    })
}
