//! Where messages go: `--smtp URL` (RFC 8314 `smtps://`, `smtp://` with
//! STARTTLS), else the job's `smtp:`, else the user config, else (for jobs)
//! the built-in capture server. The [`Target`] says where; the delivery
//! engine's plan is built from it when a run is about to send.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::job::{self, Job, Security, SmtpSettings};

/// Where a job's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A real SMTP server.
    Smtp(Box<SmtpSettings>),
    /// The built-in capture server, in-process, storing `.eml` files in this folder.
    Capture(PathBuf),
}

/// Where a run sends, as its journal records it: `capture:DIR` for the
/// built-in capture server, else the server's URL with the user
/// (`smtps://me@smtp.example.com:465`; no secret). A relay pool is `relays`
/// whatever its members, so that a rerun may add or drop a relay (another
/// account when one is over its quota) and still resume.
pub fn destination(target: &Target) -> String {
    match target {
        Target::Capture(dir) => format!("capture:{}", dir.display()),
        Target::Smtp(s) if !s.relays.is_empty() => "relays".to_owned(),
        Target::Smtp(s) => {
            let scheme = match s.security {
                Security::Tls => "smtps",
                Security::StartTls => "smtp",
                Security::None => "smtp+plain",
            };
            let user = s
                .username
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default();
            format!("{scheme}://{user}{}:{}", s.host, s.port)
        }
    }
}

/// Pick the target by precedence.
pub fn resolve(job: Option<&Job>, url: Option<&str>) -> Result<Target> {
    // The job's section wins over the user config; `--smtp` over both, but
    // only for what a URL says (see `with_url`).
    let configured = match job.and_then(|j| j.smtp.clone()) {
        Some(smtp) => Some(smtp),
        None => job::load_user_smtp()?,
    };
    if let Some(url) = url {
        let from_url = job::validate::smtp_section::parse_smtp_url_settings(url)?;
        return Ok(Target::Smtp(Box::new(match configured {
            Some(base) => with_url(base, from_url),
            None => from_url,
        })));
    }
    if let Some(smtp) = configured {
        return Ok(Target::Smtp(Box::new(smtp)));
    }
    match job {
        Some(job) => Ok(Target::Capture(job.dir.join("outbox"))),
        None => Err(no_server()),
    }
}

/// The target of a submission without a job: the `configured` account
/// (already picked from the config), with `--smtp URL` over it as for a job.
pub fn for_account(configured: Option<SmtpSettings>, url: Option<&str>) -> Result<Target> {
    match (configured, url) {
        (base, Some(url)) => {
            let from_url = job::validate::smtp_section::parse_smtp_url_settings(url)?;
            Ok(Target::Smtp(Box::new(match base {
                Some(base) => with_url(base, from_url),
                None => from_url,
            })))
        }
        (Some(smtp), None) => Ok(Target::Smtp(Box::new(smtp))),
        (None, None) => Err(no_server()),
    }
}

fn no_server() -> Error {
    Error::Usage(format!(
        "no SMTP server configured: pass --smtp smtps://USER@HOST:465, or put an smtp: \
         section in {} (same keys as a job's smtp:, e.g. provider: qq, username: me@qq.com, \
         password_env: MAILSHOT_PASSWORD)",
        job::user_config_path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "$XDG_CONFIG_HOME/mailshot/config.yaml".into())
    ))
}

/// `--smtp URL` names the server and the account; the configured section
/// still supplies what a URL cannot say (a `ca_file` to trust, the password
/// source for the URL's user, timeouts, sessions, rate). Settings that only
/// make sense for the configured server (`allow_plaintext_auth`, the
/// provider's advice) carry over only when the URL names that same server.
fn with_url(base: SmtpSettings, url: SmtpSettings) -> SmtpSettings {
    let same_host = base.host == url.host && base.port == url.port;
    SmtpSettings {
        host: url.host,
        port: url.port,
        security: url.security,
        username: url.username,
        auth: url.auth.or(base.auth),
        allow_plaintext_auth: same_host && base.allow_plaintext_auth,
        provider: if same_host { base.provider } else { None },
        // The URL names one server: the pool and its names are left behind.
        relays: Vec::new(),
        name: None,
        ..base
    }
}
