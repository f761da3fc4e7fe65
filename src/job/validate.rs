//! Raw manifest → checked [`Job`](super::Job), with file/line/column errors.
//!
//! The second validation stage (DESIGN.md principle 5): everything that can
//! be checked without the network or a recipient row is checked here, and
//! every problem is reported at once. YAML and value errors come with the
//! line and column serde_yaml reports; problems involving several keys are
//! located by finding the key's line in the file text.

use std::path::{Path, PathBuf};

use super::manifest::{RawJob, RawSmtp, RawUserConfig};
use super::position::key_position;
use super::{
    provider, smtp_url, AttachmentSpec, DkimSpec, Job, PasswordSource, RecipientsSpec, SmtpSettings,
};
use crate::compose::address;
use crate::error::{Diagnostic, Error, Location, Result};

const PASSWORD_KEY_ADVICE: &str = "`password` is not accepted in a YAML file (it would sit in clear text \
next to the job); use password_env (an environment variable), password_file (a file only you can read) \
or password_command (e.g. \"pass show smtp\")";

/// Read and validate the job file at `path`; `vars` (from `--var KEY=VALUE`)
/// are added to the job's `vars`, overriding keys of the same name.
pub fn load(path: &Path, vars: &[(String, String)]) -> Result<Job> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => {
            Error::invalid(Location::file(path), "the job file is not valid UTF-8")
        }
        _ => Error::no_input(path, &e),
    })?;
    parse_job(&text, path, vars)
}

/// Validate job file text as if read from `path` (relative paths resolve
/// against `path`'s folder; template and CSV files must exist).
pub fn parse_job(text: &str, path: &Path, vars: &[(String, String)]) -> Result<Job> {
    if text.trim().is_empty() {
        return Err(Error::invalid(
            Location::file(path),
            "the job file is empty; it needs at least from, subject, a body (text, html or markdown) and recipients",
        ));
    }
    check_nesting(path, text)?;
    let raw: RawJob = serde_yaml::from_str(text).map_err(|e| yaml_error(path, &e))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut p = Problems::new(path, text);

    let smtp = raw.smtp.as_ref().and_then(|s| build_smtp(s, &dir, &mut p));

    let from = match raw.from.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            check_static_addresses(&mut p, "from", f, true);
            f.to_string()
        }
        _ => {
            p.at(
                &["from"],
                "missing required key `from` (the sender, e.g. \"Newsletter <me@example.com>\")",
            );
            String::new()
        }
    };
    for (key, value) in [
        ("reply_to", &raw.reply_to),
        ("to", &raw.to),
        ("cc", &raw.cc),
        ("bcc", &raw.bcc),
    ] {
        if let Some(v) = value {
            check_static_addresses(&mut p, key, v, false);
        }
    }
    let subject = raw.subject.clone().unwrap_or_else(|| {
        p.at(&["subject"], "missing required key `subject`");
        String::new()
    });

    if raw.text.is_none() && raw.html.is_none() && raw.markdown.is_none() {
        p.at(
            &[],
            "the job needs a body: `text` (plain-text template file), `html`, or `markdown`",
        );
    }
    if raw.markdown.is_some() && (raw.text.is_some() || raw.html.is_some()) {
        p.at(
            &["markdown"],
            "`markdown` renders both the text and the HTML part; remove `text` and `html`, or `markdown`",
        );
    }
    let text_path = raw
        .text
        .as_deref()
        .map(|f| p.input_file(&dir, &["text"], f));
    let html_path = raw
        .html
        .as_deref()
        .map(|f| p.input_file(&dir, &["html"], f));
    let markdown = raw
        .markdown
        .as_deref()
        .map(|f| p.input_file(&dir, &["markdown"], f));

    let mut attachments = Vec::with_capacity(raw.attachments.len());
    for a in &raw.attachments {
        if a.path.trim().is_empty() {
            p.at(&["attachments"], "an attachment has an empty `path`");
        }
        attachments.push(AttachmentSpec {
            path: a.path.clone(),
            name: a.name.clone(),
        });
    }

    let max_attachment_size = match &raw.max_attachment_size {
        None => super::manifest::DEFAULT_MAX_ATTACHMENT_SIZE,
        Some(value) => {
            let text = match value {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            super::manifest::parse_size(&text).unwrap_or_else(|e| {
                p.at(
                    &["max_attachment_size"],
                    format!("max_attachment_size: {e}"),
                );
                super::manifest::DEFAULT_MAX_ATTACHMENT_SIZE
            })
        }
    };

    let dkim = raw.dkim.as_ref().map(|d| {
        if d.domain.trim().is_empty() {
            p.at(&["dkim", "domain"], "dkim.domain is empty");
        }
        if d.selector.trim().is_empty() {
            p.at(&["dkim", "selector"], "dkim.selector is empty");
        }
        DkimSpec {
            domain: d.domain.trim().to_string(),
            selector: d.selector.trim().to_string(),
            key_file: p.input_file(&dir, &["dkim", "key_file"], &d.key_file),
        }
    });

    let recipients = match &raw.recipients {
        None => {
            p.at(
                &["recipients"],
                "missing required key `recipients` (at least `recipients: { file: recipients.csv }`)",
            );
            None
        }
        Some(r) => {
            let file = match r.file.as_deref() {
                Some(f) if !f.trim().is_empty() => {
                    Some(p.input_file(&dir, &["recipients", "file"], f))
                }
                _ => {
                    p.at(
                        &["recipients"],
                        "missing required key `recipients.file` (the CSV file)",
                    );
                    None
                }
            };
            let email_column = r.email_column.clone().unwrap_or_else(|| "email".into());
            if email_column.trim().is_empty() {
                p.at(&["recipients", "email_column"], "email_column is empty");
            }
            file.map(|file| RecipientsSpec {
                file,
                email_column: email_column.trim().to_string(),
                delimiter: r.delimiter.unwrap_or(b','),
                encoding: r.encoding.unwrap_or(encoding_rs::UTF_8),
                allow_duplicates: r.allow_duplicates.unwrap_or(false),
            })
        }
    };

    let mut job_vars = raw.vars.clone();
    if job_vars.keys().any(|k| !k.is_string()) {
        p.at(&["vars"], "every key in `vars` must be a string");
    }
    for (k, v) in vars {
        job_vars.insert(
            serde_yaml::Value::String(k.clone()),
            serde_yaml::Value::String(v.clone()),
        );
    }

    p.finish()?;
    Ok(Job {
        path: path.to_path_buf(),
        dir,
        smtp,
        from,
        reply_to: raw.reply_to,
        to: raw.to,
        cc: raw.cc,
        bcc: raw.bcc,
        subject,
        text: text_path,
        html: html_path,
        markdown,
        attachments,
        max_attachment_size,
        headers: raw.headers.0,
        list_unsubscribe: raw.list_unsubscribe,
        vars: job_vars,
        dkim,
        // `finish` returned early if recipients were missing.
        recipients: recipients.expect("recipients checked"),
    })
}

/// `$XDG_CONFIG_HOME/mailshot/config.yaml` (or `~/.config/...`).
pub fn user_config_path() -> Option<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|h| h.join(".config"))
        })?;
    Some(base.join("mailshot").join("config.yaml"))
}

/// The `smtp:` section of the user config, if that file exists.
pub fn load_user_smtp() -> Result<Option<SmtpSettings>> {
    match user_config_path() {
        Some(path) => load_user_smtp_from(&path),
        None => Ok(None),
    }
}

/// The `smtp:` section of the config file at `path`; `Ok(None)` if the file
/// does not exist or has no `smtp:` section. Paths in it resolve against its folder.
pub fn load_user_smtp_from(path: &Path) -> Result<Option<SmtpSettings>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::no_input(path, &e)),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    check_nesting(path, &text)?;
    let raw: RawUserConfig = serde_yaml::from_str(&text).map_err(|e| yaml_error(path, &e))?;
    let Some(raw_smtp) = raw.smtp else {
        return Ok(None);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut p = Problems::new(path, &text);
    let smtp = build_smtp(&raw_smtp, dir, &mut p);
    p.finish()?;
    Ok(smtp)
}

/// Settings from an SMTP URL alone (the `--smtp URL` option): a usage error
/// if the URL is malformed or carries a password.
pub fn parse_smtp_url_settings(url: &str) -> Result<SmtpSettings> {
    let u = smtp_url::parse(url).map_err(|e| Error::Usage(format!("--smtp: {e}")))?;
    let mut s = SmtpSettings::new(u.host, u.port, u.security);
    s.username = u.username;
    s.auth = u.auth;
    Ok(s)
}

/// Apply a `smtp:` section: preset, then URL, then explicit fields.
fn build_smtp(raw: &RawSmtp, dir: &Path, p: &mut Problems) -> Option<SmtpSettings> {
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
            let sec = super::Security::StartTls;
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
            s.port = super::Security::default_port(sec);
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
        && s.security == super::Security::None
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
    Some(s)
}

/// Addresses without template syntax can be checked now rather than per row.
fn check_static_addresses(p: &mut Problems, key: &str, value: &str, single: bool) {
    if value.contains("{{") || value.contains("{%") {
        return;
    }
    match address::parse_mailbox_list(value) {
        Ok(list) if single && list.len() != 1 => {
            p.at(&[key], format!("`{key}` must be exactly one address"))
        }
        Ok(_) => {}
        Err(e) => p.at(&[key], format!("`{key}`: {e}")),
    }
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

/// Deepest `[`/`{` nesting accepted in a YAML file; a job needs two or three.
pub const MAX_YAML_NESTING: usize = 64;

/// Refuse flow collections nested deeper than [`MAX_YAML_NESTING`] before
/// the YAML parser sees them: its scanner takes quadratic time in the
/// nesting (100,000 `[` take many seconds). Brackets inside quoted scalars
/// and comments do not count; in plain text they count only while open,
/// so ordinary text with brackets passes.
fn check_nesting(path: &Path, text: &str) -> Result<()> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut prev = b' ';
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(q) = quote {
                let escaped = (b == b'\\' && q == b'"')
                    || (b == q && q == b'\'' && bytes.get(i + 1) == Some(&b'\''));
                if escaped {
                    // The next byte belongs to the scalar.
                    i += 1;
                } else if b == q {
                    quote = None;
                }
                i += 1;
                prev = b;
                continue;
            }
            let token_start = prev.is_ascii_whitespace() || (depth > 0 && b"[{,:".contains(&prev));
            match b {
                b'#' if prev.is_ascii_whitespace() => break,
                b'"' | b'\'' if token_start => quote = Some(b),
                b'[' | b'{' if token_start || depth > 0 => {
                    depth += 1;
                    if depth > MAX_YAML_NESTING {
                        return Err(Error::invalid(
                            Location {
                                file: path.to_path_buf(),
                                line: Some(n as u64 + 1),
                                column: Some(line[..i].chars().count() as u64 + 1),
                                ..Default::default()
                            },
                            format!(
                                "YAML nested more than {MAX_YAML_NESTING} levels deep; \
                                 a job needs only a few"
                            ),
                        ));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = b;
            i += 1;
        }
    }
    Ok(())
}

/// serde_yaml error → Invalid with the file, line and column.
fn yaml_error(file: &Path, err: &serde_yaml::Error) -> Error {
    let mut message = err.to_string();
    // The location goes into `Location`; do not say it twice.
    if let Some(i) = message.rfind(" at line ") {
        let tail = &message[i + " at line ".len()..];
        if tail
            .split_once(" column ")
            .is_some_and(|(l, c)| l.parse::<u64>().is_ok() && c.parse::<u64>().is_ok())
        {
            message.truncate(i);
        }
    }
    if message.contains("unknown field `password`") {
        message = PASSWORD_KEY_ADVICE.to_string();
    }
    let loc = err.location();
    Error::invalid(
        Location {
            file: file.to_path_buf(),
            line: loc.as_ref().map(|l| l.line() as u64),
            column: loc.as_ref().map(|l| l.column() as u64),
            ..Default::default()
        },
        message,
    )
}

/// Problems found so far; all are reported together.
struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    diags: Vec<Diagnostic>,
    missing: Vec<PathBuf>,
}

impl<'a> Problems<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        Problems {
            file,
            text,
            diags: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// Record a problem at the key `path` (e.g. `["smtp", "rate"]`).
    fn at(&mut self, path: &[&str], message: impl Into<String>) {
        let (line, column) = key_position(self.text, path);
        self.diags.push(Diagnostic::new(
            Location {
                file: self.file.to_path_buf(),
                line,
                column,
                // `field` is shown as a CSV "column"; the messages name the key instead.
                ..Default::default()
            },
            message,
        ));
    }

    /// Resolve `value` against `dir`; record it if it is not a readable file.
    fn input_file(&mut self, dir: &Path, key: &[&str], value: &str) -> PathBuf {
        let path = dir.join(value.trim());
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => self.at(key, format!("{} is not a file", path.display())),
            Err(_) => self.missing.push(path.clone()),
        }
        path
    }

    /// Invalid if any diagnostic (missing files listed too); else NoInput if a
    /// file is missing.
    fn finish(self) -> Result<()> {
        if !self.diags.is_empty() {
            let mut diags = self.diags;
            diags.extend(
                self.missing
                    .iter()
                    .map(|m| Diagnostic::new(Location::file(m), "file not found")),
            );
            return Err(Error::Invalid(diags));
        }
        if let Some(first) = self.missing.first() {
            let mut message = "file not found".to_string();
            if self.missing.len() > 1 {
                let others: Vec<String> = self.missing[1..]
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect();
                message.push_str(&format!(" (also missing: {})", others.join(", ")));
            }
            return Err(Error::NoInput {
                path: first.clone(),
                message,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{AuthMech, Security};
    use std::time::Duration;

    /// A job folder with the files a minimal job refers to.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("body.txt"), "Hi {{ name }}").unwrap();
            std::fs::write(dir.path().join("list.csv"), "email\na@example.com\n").unwrap();
            Fixture { dir }
        }

        fn job(&self, yaml: &str) -> Result<Job> {
            let path = self.dir.path().join("job.yaml");
            std::fs::write(&path, yaml).unwrap();
            load(&path, &[])
        }
    }

    const MINIMAL: &str =
        "from: Me <me@example.com>\nsubject: Hello\ntext: body.txt\nrecipients:\n  file: list.csv\n";

    fn diags(err: Error) -> Vec<Diagnostic> {
        match err {
            Error::Invalid(d) => d,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn minimal_job() {
        let f = Fixture::new();
        let job = f.job(MINIMAL).unwrap();
        assert_eq!(job.from, "Me <me@example.com>");
        assert_eq!(job.subject, "Hello");
        assert_eq!(job.text, Some(f.dir.path().join("body.txt")));
        assert_eq!(job.recipients.file, f.dir.path().join("list.csv"));
        assert_eq!(job.recipients.email_column, "email");
        assert_eq!(job.recipients.delimiter, b',');
        assert_eq!(job.recipients.encoding, encoding_rs::UTF_8);
        assert!(job.smtp.is_none());
        assert_eq!(job.dir, f.dir.path());
    }

    #[test]
    fn full_job() {
        let f = Fixture::new();
        std::fs::write(f.dir.path().join("page.html"), "<p>hi</p>").unwrap();
        std::fs::write(f.dir.path().join("ca.pem"), "x").unwrap();
        std::fs::write(f.dir.path().join("dkim.pem"), "x").unwrap();
        let job = f
            .job(
                r#"
smtp:
  provider: qq
  username: me@qq.com
  password_env: MAILSHOT_PASSWORD
  ca_file: ca.pem
  auth: login
  sessions: 2
  max_messages_per_session: 500
  rate: 300/min
  timeout: 30s
  data_timeout: 15m
from: "Newsletter <me@qq.com>"
to: "{{ name }} <{{ email }}>"
subject: "Hello {{ name }}"
text: body.txt
html: page.html
attachments:
  - path: "reports/{{ id }}.pdf"
    name: "report-{{ id }}.pdf"
headers:
  X-Campaign: "2026-11"
  X-A: b
list_unsubscribe: "https://example.com/u"
vars: { campaign: "November" }
dkim: { domain: example.com, selector: s1, key_file: dkim.pem }
recipients:
  file: list.csv
  email_column: mail
  delimiter: ";"
  encoding: gbk
  allow_duplicates: true
"#,
            )
            .unwrap();
        let s = job.smtp.unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("smtp.qq.com", 465, Security::Tls)
        );
        assert_eq!(s.provider.as_deref(), Some("qq"));
        assert_eq!(s.username.as_deref(), Some("me@qq.com"));
        assert_eq!(s.password, PasswordSource::Env("MAILSHOT_PASSWORD".into()));
        assert_eq!(s.ca_file, Some(f.dir.path().join("ca.pem")));
        assert_eq!(s.auth, Some(AuthMech::Login));
        assert_eq!((s.sessions, s.max_messages_per_session), (2, 500));
        assert_eq!(s.rate.unwrap().count, 300);
        assert_eq!(s.rate.unwrap().per, Duration::from_secs(60));
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.data_timeout, Duration::from_secs(900));
        assert_eq!(job.attachments.len(), 1);
        assert_eq!(
            job.attachments[0].name.as_deref(),
            Some("report-{{ id }}.pdf")
        );
        assert_eq!(
            job.headers,
            vec![
                ("X-Campaign".to_string(), "2026-11".to_string()),
                ("X-A".to_string(), "b".to_string())
            ]
        );
        assert_eq!(job.dkim.unwrap().key_file, f.dir.path().join("dkim.pem"));
        assert_eq!(job.recipients.email_column, "mail");
        assert_eq!(job.recipients.delimiter, b';');
        assert_eq!(job.recipients.encoding, encoding_rs::GBK);
        assert!(job.recipients.allow_duplicates);
        assert_eq!(
            job.vars.get("campaign").and_then(|v| v.as_str()),
            Some("November")
        );
    }

    #[test]
    fn unknown_key_has_line_column_and_valid_keys() {
        let f = Fixture::new();
        let yaml = format!("{MINIMAL}smtp:\n  host: h.example\n  sesions: 2\n");
        let d = diags(f.job(&yaml).unwrap_err());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].location.line, Some(8), "{}", d[0]);
        assert_eq!(d[0].location.column, Some(3), "{}", d[0]);
        assert!(d[0].message.contains("sesions"), "{}", d[0].message);
        assert!(d[0].message.contains("sessions"), "{}", d[0].message);
        assert!(!d[0].message.contains(" at line "), "{}", d[0].message);
    }

    #[test]
    fn password_key_is_rejected_with_advice_and_no_echo() {
        let f = Fixture::new();
        let yaml = format!("{MINIMAL}smtp:\n  host: h.example\n  password: hunter2\n");
        let err = f.job(&yaml).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("password_env"), "{msg}");
        assert!(msg.contains("password_command"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert_eq!(diags(err)[0].location.line, Some(8));
    }

    #[test]
    fn reports_every_problem() {
        let f = Fixture::new();
        let err = f
            .job("text: body.txt\nmarkdown: body.txt\nrecipients:\n  email_column: mail\n")
            .unwrap_err();
        let d = diags(err);
        let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        let joined = all.join("\n");
        assert!(joined.contains("`from`"), "{joined}");
        assert!(joined.contains("`subject`"), "{joined}");
        assert!(joined.contains("remove `text`"), "{joined}");
        assert!(joined.contains("recipients.file"), "{joined}");
        // `markdown:` is on line 2.
        let md = d.iter().find(|d| d.message.contains("markdown")).unwrap();
        assert_eq!(md.location.line, Some(2));
    }

    #[test]
    fn missing_body() {
        let f = Fixture::new();
        let err = f
            .job("from: a@b.example\nsubject: s\nrecipients: { file: list.csv }\n")
            .unwrap_err();
        assert!(err.to_string().contains("needs a body"), "{err}");
    }

    #[test]
    fn missing_files_are_no_input() {
        let f = Fixture::new();
        let err = f
            .job("from: a@b.example\nsubject: s\ntext: nope.txt\nrecipients: { file: gone.csv }\n")
            .unwrap_err();
        match &err {
            Error::NoInput { path, message } => {
                assert_eq!(path, &f.dir.path().join("nope.txt"));
                assert!(message.contains("gone.csv"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.exit_code(), crate::error::ExitCode::NoInput);
        let missing_job = f.dir.path().join("absent.yaml");
        assert!(matches!(
            load(&missing_job, &[]).unwrap_err(),
            Error::NoInput { .. }
        ));
    }

    #[test]
    fn bad_values_have_positions() {
        let f = Fixture::new();
        for (extra, line) in [
            ("smtp:\n  host: h\n  rate: fast\n", 8),
            ("smtp:\n  host: h\n  timeout: 5 fortnights\n", 8),
            ("smtp:\n  host: h\n  security: ssl\n", 8),
            ("smtp:\n  host: h\n  auth: cram-md5\n", 8),
            ("smtp:\n  host: h\n  port: 70000\n", 8),
        ] {
            let d = diags(f.job(&format!("{MINIMAL}{extra}")).unwrap_err());
            assert_eq!(d[0].location.line, Some(line), "{extra}: {}", d[0]);
        }
        let d = diags(
            f.job(
                "from: a@b.example\nsubject: s\ntext: body.txt\nrecipients:\n  file: list.csv\n  encoding: klingon\n",
            )
            .unwrap_err(),
        );
        assert_eq!(d[0].location.line, Some(6));
        assert!(d[0].message.contains("klingon"));
    }

    #[test]
    fn smtp_resolution_rules() {
        let f = Fixture::new();
        let smtp = |s: &str| {
            f.job(&format!("{MINIMAL}smtp:\n{s}"))
                .unwrap()
                .smtp
                .unwrap()
        };
        // A bare host defaults to STARTTLS on 587.
        let s = smtp("  host: mail.example.com\n");
        assert_eq!((s.security, s.port), (Security::StartTls, 587));
        // Security picks the port unless one is given.
        let s = smtp("  host: mail.example.com\n  security: tls\n");
        assert_eq!((s.security, s.port), (Security::Tls, 465));
        let s = smtp("  host: mail.example.com\n  security: none\n  port: 2525\n");
        assert_eq!((s.security, s.port), (Security::None, 2525));
        // Explicit fields override the URL, which overrides the preset.
        let s = smtp(
            "  provider: gmail\n  url: smtps://u%40x.org@relay.example:2465?auth=plain\n  port: 1465\n  password_env: P\n",
        );
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("relay.example", 1465, Security::Tls)
        );
        assert_eq!(s.username.as_deref(), Some("u@x.org"));
        assert_eq!(s.auth, Some(AuthMech::Plain));
        assert_eq!(s.provider.as_deref(), Some("gmail"));
        let s = smtp("  provider: 163\n  security: starttls\n");
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("smtp.163.com", 587, Security::StartTls)
        );
        let s = smtp("  host: h.example\n  username: u\n  password_file: secret/pw\n");
        assert_eq!(
            s.password,
            PasswordSource::File(f.dir.path().join("secret/pw"))
        );
    }

    #[test]
    fn smtp_problems() {
        let f = Fixture::new();
        let msg = |s: &str| {
            f.job(&format!("{MINIMAL}smtp:\n{s}"))
                .unwrap_err()
                .to_string()
        };
        let m = msg("  provider: nosuch\n");
        assert!(m.contains("qq") && m.contains("gmail"), "{m}");
        let m = msg("  url: smtps://me:topsecret@h.example\n");
        assert!(
            m.contains("password_env") && !m.contains("topsecret"),
            "{m}"
        );
        assert!(
            msg("  host: h\n  username: u\n  password_env: A\n  password_command: b\n")
                .contains("only one")
        );
        assert!(msg("  host: h\n  username: u\n").contains("no password_env"));
        assert!(
            msg("  host: h\n  security: none\n  username: u\n  password_env: A\n")
                .contains("allow_plaintext_auth")
        );
        assert!(msg("  sessions: 2\n").contains("`url`, `provider` or `host`"));
        assert!(msg("  host: h\n  sessions: 0\n").contains("sessions must be at least 1"));
        // Allowed when asked for explicitly.
        let s = f
            .job(&format!(
                "{MINIMAL}smtp:\n  host: h\n  security: none\n  username: u\n  password_env: A\n  allow_plaintext_auth: true\n"
            ))
            .unwrap()
            .smtp
            .unwrap();
        assert!(s.allow_plaintext_auth);
    }

    #[test]
    fn static_addresses_checked_early() {
        let f = Fixture::new();
        let yaml = MINIMAL.replace("Me <me@example.com>", "not an address");
        let d = diags(f.job(&yaml).unwrap_err());
        assert_eq!(d[0].location.line, Some(1));
        assert!(d[0].message.contains("`from`"), "{}", d[0]);
        // Templates are left for the renderer.
        let yaml = MINIMAL.replace("Me <me@example.com>", "\"{{ sender }}\"");
        assert!(f.job(&yaml).is_ok());
    }

    #[test]
    fn var_overrides() {
        let f = Fixture::new();
        let path = f.dir.path().join("job.yaml");
        std::fs::write(&path, format!("{MINIMAL}vars:\n  a: one\n  b: two\n")).unwrap();
        let job = load(
            &path,
            &[("b".into(), "TWO".into()), ("c".into(), "three".into())],
        )
        .unwrap();
        let get = |k: &str| job.vars.get(k).and_then(|v| v.as_str()).map(str::to_string);
        assert_eq!(get("a").as_deref(), Some("one"));
        assert_eq!(get("b").as_deref(), Some("TWO"));
        assert_eq!(get("c").as_deref(), Some("three"));
    }

    #[test]
    fn user_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        assert_eq!(load_user_smtp_from(&path).unwrap(), None);
        std::fs::write(
            &path,
            "smtp:\n  url: smtps://me%40163.com@smtp.163.com\n  password_file: pw\n",
        )
        .unwrap();
        let s = load_user_smtp_from(&path).unwrap().unwrap();
        assert_eq!(s.host, "smtp.163.com");
        assert_eq!(s.password, PasswordSource::File(dir.path().join("pw")));
        std::fs::write(&path, "from: x@y.z\n").unwrap();
        let d = diags(load_user_smtp_from(&path).unwrap_err());
        assert_eq!(d[0].location.line, Some(1));
    }

    #[test]
    fn sessions_are_capped_and_the_cap_is_named() {
        let f = Fixture::new();
        let job = |n: &str| f.job(&format!("{MINIMAL}smtp:\n  host: h\n  sessions: {n}\n"));
        assert_eq!(job("100").unwrap().smtp.unwrap().sessions, 100);
        for n in ["101", "4294967296"] {
            let d = diags(job(n).unwrap_err());
            assert_eq!(d.len(), 1, "{d:?}");
            assert_eq!(d[0].location.line, Some(8), "{}", d[0]);
            assert!(
                d[0].message.contains(n) && d[0].message.contains("maximum of 100"),
                "{}",
                d[0]
            );
        }
    }

    #[test]
    fn deep_yaml_nesting_is_refused_at_once() {
        let f = Fixture::new();
        for (open, close) in [("[", "]"), ("{a: ", "}")] {
            let yaml = format!(
                "{MINIMAL}vars:\n  x: {}1{}\n",
                open.repeat(100_000),
                close.repeat(100_000)
            );
            let started = std::time::Instant::now();
            let d = diags(f.job(&yaml).unwrap_err());
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(d[0].location.line, Some(7), "{}", d[0]);
            assert!(d[0].message.contains("nested more than 64"), "{}", d[0]);
        }
        // Nesting up to the limit, and brackets in text, quotes and comments, pass.
        let ok = format!(
            "{MINIMAL}vars:\n  x: {}1{}\n  t: \"{}\"\n  u: '{}' # {}\n  v: a {} b\n",
            "[".repeat(64),
            "]".repeat(64),
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100),
            "[x] ".repeat(100),
        );
        f.job(&ok).unwrap();
    }

    #[test]
    fn smtp_url_option() {
        let s = parse_smtp_url_settings("smtp+plain://[::1]:2525").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("::1", 2525, Security::None)
        );
        let err = parse_smtp_url_settings("smtps://u:pw123@h").unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert!(!err.to_string().contains("pw123"));
    }

    #[test]
    fn yaml_syntax_error_has_line() {
        let f = Fixture::new();
        let d = diags(
            f.job("from: a@b.example\nsubject: [unclosed\ntext: body.txt\n")
                .unwrap_err(),
        );
        assert!(d[0].location.line.is_some(), "{}", d[0]);
        let d = diags(
            f.job("from: a@b.example\nsubject: s\nattachments: nope\n")
                .unwrap_err(),
        );
        assert_eq!(d[0].location.line, Some(3), "{}", d[0]);
    }
}
