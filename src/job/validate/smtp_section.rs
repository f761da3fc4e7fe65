//! The `smtp:` section (job, user config or `--smtp URL`) checked into
//! [`SmtpSettings`]: provider preset, then URL, then explicit fields; the
//! session cap; password sources, never a password in the file.

use std::path::Path;

use super::problems::Problems;
use crate::error::{Error, Result};
use crate::job::manifest::RawSmtp;
use crate::job::{provider, smtp_url, PasswordSource, SmtpSettings};

/// Settings from an SMTP URL alone (the `--smtp URL` option): a usage error
/// if the URL is malformed or carries a password.
pub fn parse_smtp_url_settings(url: &str) -> Result<SmtpSettings> {
    let u = smtp_url::parse(url).map_err(|e| Error::Usage(format!("--smtp: {e}")))?;
    let mut s = SmtpSettings::new(u.host, u.port, u.security);
    s.username = u.username;
    s.auth = u.auth;
    Ok(s)
}

/// Apply a `smtp:` section: one server (preset, then URL, then explicit
/// fields), or the pool its `relays` list.
pub(super) fn build_smtp(raw: &RawSmtp, dir: &Path, p: &mut Problems) -> Option<SmtpSettings> {
    match &raw.relays {
        Some(relays) => super::pool::build_pool(raw, relays, dir, p),
        None => build_server(raw, dir, p),
    }
}

/// One server's settings from a section without `relays`.
pub(super) fn build_server(raw: &RawSmtp, dir: &Path, p: &mut Problems) -> Option<SmtpSettings> {
    let before = p.diags.len();
    let mut settings: Option<SmtpSettings> = None;
    let mut provider_name = None;
    if let Some(name) = &raw.provider {
        match provider::lookup(name) {
            Some(preset) => {
                settings = Some(SmtpSettings::new(preset.host, preset.port, preset.security));
                provider_name = Some(preset.name.to_string());
            }
            None => p.at(
                &["smtp", "provider"],
                format!(
                    "unknown provider {name:?}; known providers: {}",
                    provider::names().join(", ")
                ),
            ),
        }
    }
    let (mut url_user, mut url_auth) = (None, None);
    if let Some(url) = &raw.url {
        match smtp_url::parse(url) {
            Ok(u) => {
                let s = settings.get_or_insert_with(|| SmtpSettings::new("", u.port, u.security));
                s.host = u.host;
                s.port = u.port;
                s.security = u.security;
                url_user = u.username;
                url_auth = u.auth;
            }
            Err(e) => p.at(&["smtp", "url"], e),
        }
    }
    if let Some(host) = raw.host.as_deref().map(str::trim) {
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            p.at(&["smtp", "host"], format!("invalid smtp.host {host:?}"));
        }
        // A bare host defaults to STARTTLS: never silently plain text.
        let s = settings.get_or_insert_with(|| {
            let sec = crate::job::Security::StartTls;
            SmtpSettings::new("", sec.default_port(), sec)
        });
        s.host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
    }
    let Some(mut s) = settings else {
        if p.diags.len() == before {
            p.at(
                &["smtp"],
                "the smtp section needs `url`, `provider` or `host` (or remove it to use the user config)",
            );
        }
        return None;
    };
    if let Some(sec) = raw.security {
        let sec = sec.into();
        if sec != s.security && raw.port.is_none() {
            s.port = crate::job::Security::default_port(sec);
        }
        s.security = sec;
    }
    if let Some(port) = raw.port {
        if port == 0 {
            p.at(&["smtp", "port"], "port must be from 1 to 65535");
        }
        s.port = port;
    }
    s.provider = provider_name;
    s.username = raw.username.clone().or(url_user);
    s.auth = raw.auth.map(Into::into).or(url_auth);

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
    s.password = given.next().unwrap_or(PasswordSource::None);
    if given.next().is_some() {
        p.at(
            &["smtp"],
            "give only one of password_env, password_file and password_command",
        );
    }
    match &s.password {
        PasswordSource::Env(name)
            if name.is_empty() || name.contains('=') || name.contains('\0') =>
        {
            p.at(
                &["smtp", "password_env"],
                "password_env must name an environment variable, e.g. MAILSHOT_PASSWORD",
            )
        }
        PasswordSource::Command(cmd) if cmd.trim().is_empty() => {
            p.at(&["smtp", "password_command"], "password_command is empty")
        }
        _ => {}
    }
    let has_password = s.password != PasswordSource::None;
    if has_password && s.username.is_none() {
        p.at(
            &["smtp"],
            "a password source is set but no `username` (or user in the URL)",
        );
    }
    if s.username.is_some() && !has_password {
        p.at(
            &["smtp"],
            "`username` is set but no password_env, password_file or password_command",
        );
    }
    if has_password
        && s.security == crate::job::Security::None
        && !raw.allow_plaintext_auth.unwrap_or(false)
    {
        p.at(
            &["smtp"],
            "AUTH without TLS would send the password in clear text; use security tls or starttls, \
             or set allow_plaintext_auth: true (e.g. for a local relay)",
        );
    }
    s.allow_plaintext_auth = raw.allow_plaintext_auth.unwrap_or(false);
    s.ca_file = raw
        .ca_file
        .as_deref()
        .map(|f| p.input_file(dir, &["smtp", "ca_file"], f));
    for (key, value) in [
        ("sessions", raw.sessions),
        ("max_messages_per_session", raw.max_messages_per_session),
        ("max_attempts", raw.max_attempts.map(|n| n as usize)),
    ] {
        if value == Some(0) {
            p.at(&["smtp", key], format!("{key} must be at least 1"));
        }
    }
    if let Some(n) = raw.sessions.filter(|&n| n > MAX_SESSIONS) {
        p.at(&["smtp", "sessions"], sessions_problem(n));
    }
    if let Some(n) = raw.sessions {
        s.sessions = n;
    }
    if let Some(n) = raw.max_messages_per_session {
        s.max_messages_per_session = n;
    }
    if let Some(n) = raw.max_attempts {
        s.max_attempts = n;
    }
    s.rate = raw.rate.or(s.rate);
    for (key, value) in [("timeout", raw.timeout), ("data_timeout", raw.data_timeout)] {
        if value.is_some_and(|d| d.is_zero()) {
            p.at(&["smtp", key], format!("{key} must be longer than zero"));
        }
    }
    if let Some(t) = raw.timeout {
        s.timeout = t;
    }
    if let Some(t) = raw.data_timeout {
        s.data_timeout = t;
    }
    if let Some(t) = raw.retry_delay {
        s.retry_delay = t;
    }
    if let Some(helo) = &raw.helo {
        if helo.is_empty() || !helo.chars().all(|c| c.is_ascii_graphic()) {
            p.at(
                &["smtp", "helo_name"],
                "helo_name must be a host name or address literal without spaces",
            );
        }
        s.helo = Some(helo.clone());
    }
    if let Some(name) = &raw.name {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            p.at(&["smtp", "name"], "name must be a non-empty line of text");
        }
        s.name = Some(name.trim().to_string());
    }
    if raw.daily_limit == Some(0) {
        p.at(&["smtp", "daily_limit"], "daily_limit must be at least 1");
    }
    s.daily_limit = raw.daily_limit;
    if let Some(t) = raw.patience {
        s.patience = t;
    }
    Some(s)
}

/// The most parallel SMTP sessions a job (or `--sessions`) may ask for.
/// Each session is a thread and a connection, and servers allow one client
/// far fewer connections than this.
pub const MAX_SESSIONS: usize = 100;

/// Why `n` sessions are refused (`n` is over [`MAX_SESSIONS`]).
pub fn sessions_problem(n: usize) -> String {
    format!(
        "sessions is {n}, more than the maximum of {MAX_SESSIONS}: each session is a thread \
         and a connection, and servers allow one client only a few (2 to 10 is usual)"
    )
}
