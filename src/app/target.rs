//! Where messages go: `--smtp URL`, else the job's `smtp:`, else the user
//! config, else (for jobs) the built-in capture server; and the session plan
//! (endpoint, TLS roots, credentials) built from it.

use std::path::PathBuf;
use std::time::Duration;

use crate::capture::{CaptureHandle, CaptureServer};
use crate::delivery::scheduler::Plan;
use crate::error::{Error, Result};
use crate::job::{self, Job, Security, SmtpSettings, Target};
use crate::smtp::client::{ClientConfig, Credentials, TlsMode};
use crate::smtp::connection::{Endpoint, Session, Trace};
use crate::smtp::tls;

/// Messages in flight per session with BDAT (RFC 3030) pipelining: enough
/// for about 10,000 messages a second at 50 ms round trip (the window is
/// refilled when half of it is answered).
const WINDOW: usize = 1024;

/// Where a run sends, as its journal records it: `capture:DIR` for the
/// built-in capture server, else the server's URL with the user
/// (`smtps://me@smtp.example.com:465`; no secret).
pub fn destination(target: &Target) -> String {
    match target {
        Target::Capture(dir) => format!("capture:{}", dir.display()),
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
        let from_url = job::validate::parse_smtp_url_settings(url)?;
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
        None => Err(Error::Usage(format!(
            "no SMTP server configured: pass --smtp smtps://USER@HOST:465, or put an smtp: \
             section in {} (same keys as a job's smtp:, e.g. provider: qq, username: me@qq.com, \
             password_env: MAILSHOT_PASSWORD)",
            job::user_config_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "$XDG_CONFIG_HOME/mailshot/config.yaml".into())
        ))),
    }
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
        ..base
    }
}

/// A plan ready to send, and the capture server behind it if any.
pub struct Live {
    /// The session plan.
    pub plan: Plan,
    /// The SMTP settings in force.
    pub settings: SmtpSettings,
    /// The in-process capture server (stopped when dropped).
    pub capture: Option<CaptureHandle>,
    /// Where captured messages go.
    pub capture_dir: Option<PathBuf>,
}

/// The local host name for EHLO.
fn helo_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Open the trace sink for `--trace FILE|-`.
pub fn open_trace(spec: Option<&str>) -> Result<Option<Trace>> {
    match spec {
        None => Ok(None),
        Some("-") => Ok(Some(Trace::new(Box::new(std::io::stderr())))),
        Some(path) => {
            let f = std::fs::File::create(path)
                .map_err(|e| Error::Software(format!("--trace {path}: {e}")))?;
            Ok(Some(Trace::new(Box::new(std::io::BufWriter::new(f)))))
        }
    }
}

/// Build the plan; resolves the password (runs `password_command`) only here,
/// when a session is about to be needed.
pub fn live(target: &Target, trace: Option<Trace>) -> Result<Live> {
    let (settings, capture, capture_dir) = match target {
        Target::Smtp(s) => ((**s).clone(), None, None),
        Target::Capture(dir) => {
            // Binding a loopback port does not fail in practice; creating the
            // outbox folder and its files can (exit 73 or 74).
            let server = CaptureServer::bind("127.0.0.1:0".parse().expect("literal"), dir.clone())
                .map_err(|e| crate::outputs::error("outbox", dir, &e))?;
            let addr = server.local_addr();
            let handle = server.spawn();
            let mut s = SmtpSettings::new("127.0.0.1", addr.port(), Security::None);
            s.sessions = 1;
            (s, Some(handle), Some(dir.clone()))
        }
    };
    let tls = match settings.security {
        Security::None => tls::plain_text_config()?,
        Security::Tls | Security::StartTls => tls::client_config(settings.ca_file.as_deref())?,
    };
    let credentials = match &settings.username {
        None => None,
        Some(user) => {
            let (source, limit) = (&settings.password, settings.timeout);
            let secret = job::secrets::resolve_within(source, limit)?.ok_or_else(|| {
                Error::Auth(format!(
                    "smtp.username is {user} but no password source is set: add password_env, \
                     password_file or password_command"
                ))
            })?;
            Some(Credentials {
                username: user.clone(),
                secret: secret.expose().to_string(),
                mechanism: settings.auth,
            })
        }
    };
    let core = ClientConfig {
        helo_name: settings.helo.clone().unwrap_or_else(helo_name),
        tls: match settings.security {
            Security::Tls => TlsMode::Implicit,
            Security::StartTls => TlsMode::StartTls,
            Security::None => TlsMode::None,
        },
        credentials,
        allow_plaintext_auth: settings.allow_plaintext_auth,
        window: WINDOW,
        use_pipelining: true,
        use_chunking: true,
        command_timeout: settings.timeout,
        data_timeout: settings.data_timeout,
        no_pipelining_after_dot: Default::default(),
    };
    let endpoint = Endpoint {
        host: settings.host.clone(),
        port: settings.port,
        implicit_tls: settings.security == Security::Tls,
        tls,
        connect_timeout: settings.timeout.min(Duration::from_secs(30)),
    };
    let plan = Plan {
        endpoint,
        core,
        sessions: settings.sessions.max(1),
        max_messages_per_session: settings.max_messages_per_session.max(1),
        rate: settings.rate,
        max_attempts: settings.max_attempts.max(1),
        retry_delay: settings.retry_delay,
        trace,
        auth_advice: job::provider::auth_advice(settings.provider.as_deref()),
    };
    Ok(Live {
        plan,
        settings,
        capture,
        capture_dir,
    })
}

/// `check --connect`: open one session (TLS, AUTH) and QUIT.
pub fn check_connect(target: &Target, trace: Option<&str>) -> Result<()> {
    let live = live(target, open_trace(trace)?)?;
    let p = &live.plan;
    let mut session = Session::open(&p.endpoint, p.core.clone(), p.trace.clone(), 1)
        .map_err(|f| super::run::open_failure(&live, f))?;
    let secure = session.client().is_tls();
    let caps = session
        .client()
        .capabilities()
        .map(|c| c.summary())
        .unwrap_or_default();
    session.quit();
    eprintln!(
        "{}:{}: session ok ({}{}){}",
        p.endpoint.host,
        p.endpoint.port,
        if secure { "TLS" } else { "no TLS" },
        if p.core.credentials.is_some() {
            ", authenticated"
        } else {
            ""
        },
        if caps.is_empty() {
            String::new()
        } else {
            format!("; server offers {caps}")
        }
    );
    Ok(())
}
