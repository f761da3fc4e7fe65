//! The job: a YAML manifest read into serde types (`manifest`), checked into
//! a [`Job`] before any I/O (`validate`), with keys located in its text
//! (`position`), SMTP URLs (`smtp_url`), provider presets (`provider`) and
//! password sources (`secrets`).

pub mod bounces;
pub mod mailrc;
pub mod manifest;
pub mod position;
pub mod provider;
pub mod secrets;
pub mod shard;
pub mod smtp_url;
pub mod target;
pub mod validate;

use std::path::PathBuf;
use std::time::Duration;

use crate::smtp::auth::AuthMech;

pub use validate::user_config::{
    load_account, load_default_from, load_dkim, load_max_message_size, load_queue_dir,
    load_user_smtp, user_config_path,
};
pub use validate::{load, parse_vars};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Implicit TLS from the first byte (port 465, `smtps://`).
    Tls,
    /// Plain TCP upgraded with STARTTLS, which is required (`smtp://`).
    StartTls,
    /// No TLS at all (`smtp+plain://`).
    None,
}

impl Security {
    /// The default port for this security (465, 587, 25).
    pub fn default_port(self) -> u16 {
        match self {
            Security::Tls => 465,
            Security::StartTls => 587,
            Security::None => 25,
        }
    }
}

/// Where the password (or OAuth token) comes from. Never the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// No password configured.
    None,
    /// An environment variable's name.
    Env(String),
    /// A file whose first line is the password (must not be readable by others).
    File(PathBuf),
    /// A shell command whose first output line is the password, run only when needed.
    Command(String),
}

/// A sending rate: at most `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages allowed per window.
    pub count: u32,
    /// The window length (1 s, 1 min or 1 h).
    pub per: Duration,
}

/// A checked SMTP section (job, user config or `--smtp URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Server host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub security: Security,
    /// AUTH user, if any.
    pub username: Option<String>,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Extra trust anchor (PEM) besides the system/webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Forced SASL mechanism; `None` picks the best offered.
    pub auth: Option<AuthMech>,
    /// Parallel sessions.
    pub sessions: usize,
    /// QUIT and reconnect after this many messages.
    pub max_messages_per_session: usize,
    /// Rate limit across all sessions.
    pub rate: Option<Rate>,
    /// Per-command reply timeout (RFC 5321 4.5.3.2; default 5 min).
    pub timeout: Duration,
    /// Timeout for the reply to the end of data (default 10 min).
    pub data_timeout: Duration,
    /// Attempts per message before giving up on transient failures.
    pub max_attempts: u32,
    /// First retry delay after a transient failure; doubles per attempt (with jitter).
    pub retry_delay: Duration,
    /// Name sent in EHLO/HELO (default: the local host name).
    pub helo: Option<String>,
    /// Allow AUTH over a connection that is not TLS-protected (`allow_plaintext_auth: true`).
    pub allow_plaintext_auth: bool,
    /// The provider preset used, if any (for provider-specific advice on errors).
    pub provider: Option<String>,
    /// The relay's name in events and traces (`None`: `host:port`).
    pub name: Option<String>,
    /// Messages this server may accept per local day, across runs.
    pub daily_limit: Option<u32>,
    /// How long a run waits while every relay is paused (default 10 minutes).
    pub patience: Duration,
    /// `smtp.relays`: the servers messages are spread over (empty: this one).
    pub relays: Vec<SmtpSettings>,
}

impl SmtpSettings {
    /// Settings for `host:port` with everything else at its default.
    pub fn new(host: impl Into<String>, port: u16, security: Security) -> Self {
        SmtpSettings {
            host: host.into(),
            port,
            security,
            username: None,
            password: PasswordSource::None,
            ca_file: None,
            auth: None,
            sessions: 1,
            max_messages_per_session: 1000,
            rate: None,
            timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            max_attempts: 5,
            retry_delay: Duration::from_secs(2),
            helo: None,
            allow_plaintext_auth: false,
            provider: None,
            name: None,
            daily_limit: None,
            patience: DEFAULT_PATIENCE,
            relays: Vec::new(),
        }
    }

    /// The name that events and traces give this server: `name`, else `host:port`.
    pub fn relay_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.host, self.port))
    }

    /// The servers a run spreads its messages over: the relays, or this one.
    pub fn pool(&self) -> Vec<&SmtpSettings> {
        if self.relays.is_empty() {
            vec![self]
        } else {
            self.relays.iter().collect()
        }
    }
}

/// How long a run waits, by default, while every relay is paused.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(600);

/// Limits for one recipient domain (`domains:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DomainLimit {
    /// Messages for the domain, across every session.
    pub rate: Option<Rate>,
    /// Sessions that may carry the domain's mail at once.
    pub sessions: Option<usize>,
}

/// One attachment entry; both fields are templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentSpec {
    /// Path template, relative to the job's folder once rendered.
    pub path: String,
    /// File name template (default: the rendered path's file name).
    pub name: Option<String>,
}

/// DKIM signing settings (RFC 6376).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimSpec {
    /// `d=` domain.
    pub domain: String,
    /// `s=` selector.
    pub selector: String,
    /// PEM private key (RSA or Ed25519), resolved against the job's folder.
    pub key_file: PathBuf,
}

/// The recipients section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientsSpec {
    /// The CSV file, resolved against the job's folder.
    pub file: PathBuf,
    /// The column holding the address (default `email`).
    pub email_column: String,
    /// Field delimiter byte (default `,`).
    pub delimiter: u8,
    /// Text encoding (default UTF-8, BOM tolerated).
    pub encoding: &'static encoding_rs::Encoding,
    /// Send to duplicate addresses too (default: skip and report them).
    pub allow_duplicates: bool,
}

/// A validated job: every path resolved, every template still source text.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job file.
    pub path: PathBuf,
    /// The job file's folder; relative paths resolve against it.
    pub dir: PathBuf,
    /// Where messages go (`None`: not configured in the job; the caller decides
    /// between the user config and the capture server).
    pub smtp: Option<SmtpSettings>,
    /// From template.
    pub from: String,
    /// Reply-To template.
    pub reply_to: Option<String>,
    /// To template; `None` means the row's email column.
    pub to: Option<String>,
    /// Cc template (comma-separated list).
    pub cc: Option<String>,
    /// Bcc template (comma-separated list; envelope only).
    pub bcc: Option<String>,
    /// Subject template.
    pub subject: String,
    /// Plain-text template file.
    pub text: Option<PathBuf>,
    /// HTML template file.
    pub html: Option<PathBuf>,
    /// Markdown template file (renders to both parts).
    pub markdown: Option<PathBuf>,
    /// Attachments.
    pub attachments: Vec<AttachmentSpec>,
    /// Largest attachment or inline image, in bytes.
    pub max_attachment_size: u64,
    /// Extra headers (name, value template), in file order.
    pub headers: Vec<(String, String)>,
    /// List-Unsubscribe template (one or more URIs, comma-separated).
    pub list_unsubscribe: Option<String>,
    /// The job's `vars` plus `--var` overrides, as a YAML mapping.
    pub vars: serde_yaml::Mapping,
    /// DKIM signing.
    pub dkim: Option<DkimSpec>,
    /// Recipients.
    pub recipients: RecipientsSpec,
    /// Suppression list files, resolved against the job's folder; the first
    /// may be missing (it is the one `bounces` creates), the others must exist.
    pub suppress: Vec<PathBuf>,
    /// Envelope sender (MAIL FROM) template; `None`: the From address.
    pub return_path: Option<String>,
    /// The mailbox `mailshot bounces` reads.
    pub bounces: Option<bounces::BounceSettings>,
    /// `domains:` limits, by lowercase recipient domain or `"*"`, in file order.
    pub domains: Vec<(String, DomainLimit)>,
}
