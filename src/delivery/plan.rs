//! The session plan: where and how a run's sessions connect, built from a
//! resolved [`Target`]: one [`Route`] per relay (one for a single server),
//! each with its endpoints and their TLS roots (RFC 8314 implicit
//! TLS or RFC 3207 STARTTLS), the protocol core's settings with the
//! credentials (the password source is read only here), the parallel
//! sessions, the rate limit, the retry policy, and the in-process capture
//! server when the target is the outbox. It also says, once, what a session
//! that could not be opened means to the user.

use std::path::PathBuf;
use std::time::Duration;

use super::settle::Policy;
use crate::capture::{CaptureHandle, CaptureServer};
use crate::error::{Error, Result};
use crate::job::target::Target;
use crate::job::{self, DomainLimit, Rate, Security, SmtpSettings};
use crate::smtp::client::{CloseReason, Credentials, SessionConfig, SessionError, TlsMode};
use crate::smtp::net::session::{Endpoint, SessionFailure};
use crate::smtp::net::tls;
use crate::smtp::net::trace::Trace;

/// Messages in flight per session with BDAT (RFC 3030) pipelining: enough
/// for about 10,000 messages a second at 50 ms round trip (the window is
/// refilled when half of it is answered).
const WINDOW: usize = 1024;

/// How a run's sessions connect and send.
pub struct Plan {
    /// Where messages can go: one route per relay (one for a single server).
    pub routes: Vec<Route>,
    /// Rate limit across every route (`--rate`).
    pub rate: Option<Rate>,
    /// How transient failures are retried.
    pub retry: Policy,
    /// How long the run waits while every route is paused before it ends.
    pub patience: Duration,
    /// Limits per recipient domain (`domains:`), by lowercase domain or `"*"`.
    pub domains: Vec<(String, DomainLimit)>,
    /// Events and traces name the route each message took (a relay pool).
    pub named: bool,
    /// Where the relays' daily counts are kept across runs (`JOB.relays.json`).
    pub daily_state: Option<PathBuf>,
    /// SMTP trace sink.
    pub trace: Option<Trace>,
    /// The in-process capture server (stopped when dropped).
    pub capture: Option<CaptureHandle>,
    /// Where captured messages go.
    pub capture_dir: Option<PathBuf>,
    /// Direct delivery to each recipient domain's MX hosts: each domain
    /// gets a plan of its own, with one route, from this one.
    pub mx: Option<super::mx::MxPlan>,
}

/// One way out: a configured relay (or the single server), with its own
/// sessions, rate and daily limit; or an MX destination, with `domain` set
/// and its candidate endpoints in order.
#[derive(Clone)]
pub struct Route {
    /// The name events and traces use (`name`, else `host:port`).
    pub name: String,
    /// Where to connect, tried in order until one opens.
    pub endpoints: Vec<Endpoint>,
    /// Protocol core settings for every session (credentials included).
    pub core: SessionConfig,
    /// Parallel sessions.
    pub sessions: usize,
    /// QUIT and reconnect after this many messages.
    pub max_messages_per_session: usize,
    /// Rate limit across this route's sessions.
    pub rate: Option<Rate>,
    /// Messages this route may have accepted per local day, across runs.
    pub daily_limit: Option<u32>,
    /// Only mail for this recipient domain takes this route (`None`: any).
    pub domain: Option<String>,
    /// Advice appended to an authentication failure (provider specific).
    pub auth_advice: Option<String>,
}

impl Plan {
    /// The sessions a run to `target` uses in all: `cli` (`--sessions`, per
    /// relay) when given, else the settings' (one to the built-in capture server).
    pub fn sessions_for(target: &Target, cli: Option<usize>) -> usize {
        match target {
            Target::Smtp(s) => s
                .pool()
                .iter()
                .map(|r| cli.unwrap_or(r.sessions).max(1))
                .sum(),
            Target::Capture(_) => cli.unwrap_or(1).max(1),
        }
    }

    /// Build the plan for `target`; resolves the passwords (runs
    /// `password_command`) only here, when a session is about to be needed,
    /// and starts the capture server when the target is the outbox.
    pub fn open(target: &Target, trace: Option<Trace>) -> Result<Plan> {
        let (settings, capture, capture_dir) = match target {
            Target::Smtp(s) => ((**s).clone(), None, None),
            Target::Capture(dir) => {
                // Binding a loopback port does not fail in practice; creating the
                // outbox folder and its files can (exit 73 or 74).
                let server =
                    CaptureServer::bind("127.0.0.1:0".parse().expect("literal"), dir.clone())
                        .map_err(|e| crate::outputs::error("outbox", dir, &e))?;
                let addr = server.local_addr();
                let handle = server.spawn();
                let mut s = SmtpSettings::new("127.0.0.1", addr.port(), Security::None);
                s.sessions = 1;
                (s, Some(handle), Some(dir.clone()))
            }
        };
        let routes = settings
            .pool()
            .into_iter()
            .map(Route::open)
            .collect::<Result<Vec<_>>>()?;
        let mx = match &settings.mx {
            Some(m) => Some(super::mx::MxPlan::new(&settings, m.resolver, m.tls)?),
            None => None,
        };
        Ok(Plan {
            mx,
            routes,
            rate: None,
            retry: Policy {
                max_attempts: settings.max_attempts.max(1),
                retry_delay: settings.retry_delay,
            },
            patience: settings.patience,
            domains: Vec::new(),
            named: !settings.relays.is_empty(),
            daily_state: None,
            trace,
            capture,
            capture_dir,
        })
    }

    /// Every route opens `n` parallel sessions (`--sessions`).
    pub fn set_sessions(&mut self, n: usize) {
        for r in &mut self.routes {
            r.sessions = n.max(1);
        }
    }

    /// At most `rate` messages across every route (`--rate`, which wins over
    /// the configured rates).
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = Some(rate);
        for r in &mut self.routes {
            r.rate = None;
        }
    }

    /// The first route (the single server of a plan without relays).
    pub fn first(&self) -> &Route {
        &self.routes[0]
    }

    /// Parallel sessions over every route.
    pub fn sessions(&self) -> usize {
        self.routes.iter().map(|r| r.sessions.max(1)).sum()
    }
}

impl Route {
    /// The route for one configured server.
    pub fn open(settings: &SmtpSettings) -> Result<Route> {
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
                        "smtp.username is {user} but no password source is set: add \
                         password_env, password_file or password_command"
                    ))
                })?;
                Some(Credentials {
                    username: user.clone(),
                    secret: secret.expose().to_string(),
                    mechanism: settings.auth,
                })
            }
        };
        let core = SessionConfig {
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
            address: None,
            port: settings.port,
            implicit_tls: settings.security == Security::Tls,
            tls,
            connect_timeout: settings.timeout.min(Duration::from_secs(30)),
        };
        Ok(Route {
            name: settings.relay_name(),
            endpoints: vec![endpoint],
            core,
            sessions: settings.sessions.max(1),
            max_messages_per_session: settings.max_messages_per_session.max(1),
            rate: settings.rate,
            daily_limit: settings.daily_limit,
            domain: None,
            auth_advice: job::provider::auth_advice(settings.provider.as_deref()),
        })
    }

    /// `host:port` of the first endpoint, as messages name the server.
    pub fn server(&self) -> String {
        let e = &self.endpoints[0];
        format!("{}:{}", e.host, e.port)
    }

    /// The error the user sees for a session that could not be opened: an
    /// authentication failure carries the provider's advice.
    pub fn open_error(&self, failure: &SessionFailure) -> Error {
        let server = self.server();
        match failure {
            SessionFailure::Closed(CloseReason::Error(SessionError::AuthFailed(reply))) => {
                let mut msg = format!("{server}: authentication failed: {reply}");
                if let Some(advice) = &self.auth_advice {
                    msg.push_str("\n  ");
                    msg.push_str(advice);
                }
                Error::Auth(msg)
            }
            SessionFailure::Closed(CloseReason::Error(
                e @ (SessionError::AuthRequiresTls | SessionError::AuthUnsupported),
            )) => Error::Auth(format!("{server}: {e}")),
            other => Error::Unavailable(format!("{server}: {other}")),
        }
    }
}

/// Whether a session that could not be opened may open on a later try (a
/// network error, a 421 or a 4xx greeting); anything else stops the run.
pub fn worth_retrying(failure: &SessionFailure) -> bool {
    match failure {
        SessionFailure::Io(_) => true,
        SessionFailure::Tls(_) => false,
        SessionFailure::Closed(CloseReason::ServiceClosing(_) | CloseReason::Quit) => true,
        SessionFailure::Closed(CloseReason::Error(SessionError::Greeting(reply))) => {
            reply.is_transient()
        }
        SessionFailure::Closed(CloseReason::Error(_)) => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::Reply;

    fn plan(advice: Option<&str>) -> Route {
        let mut s = SmtpSettings::new("smtp.example.com", 465, Security::Tls);
        s.provider = None;
        let mut p = Plan::open(&Target::Smtp(Box::new(s)), None).expect("no secrets needed");
        let mut r = p.routes.remove(0);
        r.auth_advice = advice.map(str::to_owned);
        r
    }

    #[test]
    fn an_authentication_failure_names_the_server_and_carries_the_advice() {
        let p = plan(Some("use an app password"));
        let failure = SessionFailure::Closed(CloseReason::Error(SessionError::AuthFailed(
            Reply::new(535, "bad credentials"),
        )));
        assert!(!worth_retrying(&failure));
        let err = p.open_error(&failure);
        assert_eq!(err.exit_code() as i32, 77);
        let msg = err.to_string();
        assert!(
            msg.contains("smtp.example.com:465: authentication failed"),
            "{msg}"
        );
        assert!(msg.contains("\n  use an app password"), "{msg}");
    }

    #[test]
    fn network_errors_and_busy_greetings_are_retried_tls_failures_are_not() {
        let io = SessionFailure::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(worth_retrying(&io));
        let busy = SessionFailure::Closed(CloseReason::Error(SessionError::Greeting(Reply::new(
            421, "busy",
        ))));
        assert!(worth_retrying(&busy));
        let tls = SessionFailure::Tls("unknown issuer".into());
        assert!(!worth_retrying(&tls));
        let msg = plan(None).open_error(&tls).to_string();
        assert!(
            msg.contains("smtp.example.com:465: TLS handshake failed: unknown issuer"),
            "{msg}"
        );
    }
}
