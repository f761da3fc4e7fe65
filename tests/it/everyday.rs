//! Integration tests: everyday use — `mailshot send`, the user
//! config, provider presets, password sources, XOAUTH2, List-Unsubscribe,
//! DKIM (checked by dkimpy), Markdown with inline images, and the scheduled
//! status-mail sample.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders};

use crate::support::aiosmtpd::{AuthServer, TlsMode};
use crate::support::cmd::{self, Output};
use crate::support::fault::{FaultServer, Message};
use crate::support::{free_port, python, TestDir};

/// `mailshot ARGS` in `dir` (a user config may be written to `dir/xdg`) with
/// extra `env` and `stdin`.
fn mailshot(dir: &TestDir, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    cmd::mailshot(dir.path(), args).envs(env).stdin(stdin).run()
}

/// `mailshot run job.yaml --quiet` in `dir`.
fn run_quiet(dir: &TestDir) -> Output {
    mailshot(dir, &["run", "job.yaml", "--quiet"], &[], b"")
}

/// `mailshot check job.yaml` in `dir`.
fn check(dir: &TestDir) -> Output {
    mailshot(dir, &["check", "job.yaml"], &[], b"")
}

/// `mailshot run job.yaml --quiet` in `dir` with the password variable `var`
/// set to `password`.
fn run_with(dir: &TestDir, var: &str, password: &str) -> Output {
    mailshot(
        dir,
        &["run", "job.yaml", "--quiet"],
        &[(var, password)],
        b"",
    )
}

/// `mailshot check job.yaml --connect` in `dir` with the password variable
/// `var` set to `password`.
fn connect_with(dir: &TestDir, var: &str, password: &str) -> Output {
    mailshot(
        dir,
        &["check", "job.yaml", "--connect"],
        &[(var, password)],
        b"",
    )
}

/// An `smtp:` section for a plain-text test server, with small timeouts.
fn plain_smtp(port: u16) -> String {
    format!(
        "smtp:\n  url: \"smtp+plain://127.0.0.1:{port}\"\n  timeout: 2s\n  retry_delay: 50ms\n  max_attempts: 2\n"
    )
}

/// An `smtp:` section with AUTH over plain TCP to 127.0.0.1 (the fault
/// server has no TLS here); `extra` adds keys (password source, auth, ...).
fn auth_smtp(port: u16, user: &str, extra: &str) -> String {
    format!(
        "smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: none\n  allow_plaintext_auth: true\n  \
         username: {user}\n  timeout: 2s\n  retry_delay: 50ms\n  max_attempts: 2\n{extra}"
    )
}

/// Writes `job.yaml` (with `smtp` first), a one-row CSV and a text body.
fn simple_job(dir: &TestDir, smtp: &str, extra: &str) -> PathBuf {
    dir.write("recipients.csv", "email,name\nann@example.org,Ann\n");
    dir.write("body.txt", "Hello {{ name }}\n");
    dir.write(
        "job.yaml",
        format!(
            "{smtp}from: \"Sender <sender@example.com>\"\nsubject: \"Hi {{{{ name }}}}\"\ntext: body.txt\n\
             recipients:\n  file: recipients.csv\n{extra}"
        ),
    )
}

fn parse(data: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(data)
        .expect("mail-parser parses the message")
}

/// The header block of a message, as text.
fn head(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

fn one_message(server_msgs: Vec<Message>) -> Message {
    assert_eq!(server_msgs.len(), 1, "exactly one message expected");
    server_msgs.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------
// 1. mailshot send

/// Bytes no text encoder would leave alone: every octet value.
fn pdf_bytes() -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend(0u8..=255);
    pdf
}

#[test]
fn send_delivers_one_message_with_bcc_only_in_the_envelope() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    dir.write("report.pdf", pdf_bytes());
    dir.write("page.html", "<p>Quarterly <b>report</b></p>\n");
    let url = format!("smtp+plain://127.0.0.1:{}", server.port());
    let out = mailshot(
        &dir,
        &[
            "send",
            "--to",
            "a@x.example",
            "--cc",
            "b@y.example",
            "--bcc",
            "c@z.example",
            "--subject",
            "标题",
            "--attach",
            "report.pdf",
            "--html",
            "page.html",
            "--from",
            "me@example.com",
            "--smtp",
            &url,
        ],
        &[],
        b"body line\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = one_message(server.wait_for_messages(1, Duration::from_secs(5)));
    assert_eq!(m.from, "me@example.com");
    assert_eq!(m.rcpts, ["a@x.example", "b@y.example", "c@z.example"]);
    let h = head(&m.data);
    assert!(!h.to_ascii_lowercase().contains("bcc"), "{h}");
    assert!(!h.contains("c@z.example"), "{h}");
    let msg = parse(&m.data);
    assert_eq!(msg.subject(), Some("标题"));
    assert_eq!(
        msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("a@x.example")
    );
    assert_eq!(
        msg.cc().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("b@y.example")
    );
    assert_eq!(msg.body_text(0).unwrap().trim_end(), "body line");
    assert!(msg
        .body_html(0)
        .unwrap()
        .contains("Quarterly <b>report</b>"));
    let att = msg.attachments().next().expect("an attachment");
    assert_eq!(att.attachment_name(), Some("report.pdf"));
    assert_eq!(att.contents(), pdf_bytes().as_slice());
    assert_eq!(
        att.content_type().map(|c| (c.ctype(), c.subtype())),
        Some(("application", Some("pdf")))
    );
}

#[test]
fn send_takes_the_server_from_the_user_config() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    dir.write(
        "xdg/mailshot/config.yaml",
        format!("# mailshot's mail.rc\n{}", plain_smtp(server.port())),
    );
    let out = mailshot(
        &dir,
        &[
            "send",
            "--to",
            "a@x.example",
            "-s",
            "from config",
            "--from",
            "me@example.com",
        ],
        &[],
        b"hi\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = one_message(server.wait_for_messages(1, Duration::from_secs(5)));
    assert_eq!(m.rcpts, ["a@x.example"]);
    assert_eq!(parse(&m.data).subject(), Some("from config"));
}

#[test]
fn send_smtp_flag_overrides_the_user_config() {
    let used = FaultServer::start();
    let ignored = FaultServer::start();
    let dir = TestDir::new();
    dir.write("xdg/mailshot/config.yaml", plain_smtp(ignored.port()));
    let url = format!("smtp+plain://127.0.0.1:{}", used.port());
    let out = mailshot(
        &dir,
        &[
            "send",
            "--to",
            "a@x.example",
            "-s",
            "s",
            "--from",
            "me@example.com",
            "--smtp",
            &url,
        ],
        &[],
        b"hi\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(used.messages().len(), 1);
    assert_eq!(ignored.connections(), 0, "the config's server was not used");
}

#[test]
fn send_logs_in_with_the_config_account_and_sends_from_it() {
    let server = FaultServer::builder()
        .credentials("me@example.com", "app-pw")
        .start();
    let dir = TestDir::new();
    dir.write(
        "xdg/mailshot/config.yaml",
        auth_smtp(
            server.port(),
            "me@example.com",
            "  password_env: MAILSHOT_PASSWORD\n",
        ),
    );
    let out = mailshot(
        &dir,
        &["send", "--to", "a@x.example", "-s", "no --from"],
        &[("MAILSHOT_PASSWORD", "app-pw")],
        b"hi\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = one_message(server.messages());
    assert_eq!(m.from, "me@example.com");
    let msg = parse(&m.data);
    assert_eq!(
        msg.from().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("me@example.com")
    );
    assert_eq!(
        plain_password(&server.commands()).as_deref(),
        Some("app-pw")
    );
}

#[test]
fn send_without_any_configuration_says_how_to_configure() {
    let dir = TestDir::new();
    let out = mailshot(
        &dir,
        &[
            "send",
            "--to",
            "a@x.example",
            "-s",
            "s",
            "--from",
            "me@example.com",
        ],
        &[],
        b"hi\n",
    );
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(out.stderr.contains("--smtp"), "{}", out.stderr);
    let config = dir.join("xdg/mailshot/config.yaml");
    assert!(
        out.stderr.contains(&config.display().to_string()),
        "names the config file: {}",
        out.stderr
    );
    assert!(out.stderr.contains("smtp:"), "{}", out.stderr);
}

#[test]
fn send_dry_run_prints_the_message_and_contacts_nobody() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    dir.write("xdg/mailshot/config.yaml", plain_smtp(server.port()));
    let out = mailshot(
        &dir,
        &[
            "send",
            "--dry-run",
            "--to",
            "a@x.example",
            "--bcc",
            "hidden@z.example",
            "-s",
            "Grüße",
            "--from",
            "me@example.com",
        ],
        &[],
        b"dry body\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let msg = parse(&out.raw_stdout);
    assert_eq!(msg.subject(), Some("Grüße"));
    assert_eq!(msg.body_text(0).unwrap().trim_end(), "dry body");
    assert!(!out.stdout.contains("hidden@z.example"));
    assert!(out.stdout.contains("\r\n"), "CRLF message on stdout");
    assert_eq!(server.connections(), 0);
}

#[test]
fn send_exit_codes_follow_sysexits() {
    // 5xx for the only recipient → 67.
    let server = FaultServer::builder()
        .rcpt_hook(|_, _| Some("550 5.1.1 No such user".into()))
        .start();
    let dir = TestDir::new();
    let url = format!("smtp+plain://127.0.0.1:{}", server.port());
    let args = |url: &str| {
        vec![
            "send".to_string(),
            "--to".into(),
            "nobody@x.example".into(),
            "-s".into(),
            "s".into(),
            "--from".into(),
            "me@example.com".into(),
            "--smtp".into(),
            url.to_string(),
        ]
    };
    let a = args(&url);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = mailshot(&dir, &a, &[], b"x\n");
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert!(out.stderr.contains("550"), "{}", out.stderr);
    assert!(server.messages().is_empty());

    // Nobody listening → 69.
    let url = format!("smtp+plain://127.0.0.1:{}", free_port());
    let a = args(&url);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = mailshot(&dir, &a, &[], b"x\n");
    assert_eq!(out.code, 69, "{}", out.stderr);

    // A missing attachment → 66, before any connection.
    let server = FaultServer::start();
    let url = format!("smtp+plain://127.0.0.1:{}", server.port());
    let mut a = args(&url);
    a.extend(["--attach".into(), "missing.pdf".into()]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = mailshot(&dir, &a, &[], b"x\n");
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert!(out.stderr.contains("missing.pdf"), "{}", out.stderr);
    assert_eq!(server.connections(), 0);
}

// ---------------------------------------------------------------------------
// 2. Provider presets

#[test]
fn provider_presets_fill_host_port_and_security() {
    use mailshot::job::Security;
    // The providers' published submission settings (see docs/providers.md).
    let expected = [
        ("qq", "smtp.qq.com", 465, Security::Tls),
        ("163", "smtp.163.com", 465, Security::Tls),
        ("126", "smtp.126.com", 465, Security::Tls),
        ("gmail", "smtp.gmail.com", 465, Security::Tls),
        ("outlook", "smtp-mail.outlook.com", 587, Security::StartTls),
    ];
    let dir = TestDir::new();
    for (name, host, port, security) in expected {
        let path = dir.write(
            format!("{name}.yaml"),
            format!(
                "smtp:\n  provider: {name}\n  username: me@example.com\n  password_env: MAILSHOT_PASSWORD\n"
            ),
        );
        let s = mailshot::job::validate::user_config::load_user_smtp_from(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .expect("smtp section");
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            (host, port, security),
            "{name}"
        );
        assert_eq!(s.provider.as_deref(), Some(name));
    }
}

#[test]
fn providers_doc_lists_every_preset_with_its_source() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/providers.md"))
            .expect("docs/providers.md");
    for p in mailshot::job::provider::all() {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", p.name)))
            .unwrap_or_else(|| panic!("no row for {}", p.name));
        assert!(row.contains(p.host), "{row}");
        assert!(row.contains(&p.port.to_string()), "{row}");
        assert!(row.contains(p.source), "{row}");
    }
}

/// A qq-preset job pointed at the fault server (host/port overridden).
fn qq_job(dir: &TestDir, port: u16) -> PathBuf {
    let path = simple_job(
        dir,
        &format!(
            "smtp:\n  provider: qq\n  host: 127.0.0.1\n  port: {port}\n  security: none\n  \
             allow_plaintext_auth: true\n  username: 12345@qq.com\n  password_env: MAILSHOT_PW\n  \
             timeout: 2s\n  retry_delay: 50ms\n  max_attempts: 2\n"
        ),
        "",
    );
    // QQ sends only as the login, so the job's From must be it.
    let yaml = dir
        .read("job.yaml")
        .replace("sender@example.com", "12345@qq.com");
    dir.write("job.yaml", yaml);
    path
}

#[test]
fn a_535_from_a_qq_preset_server_asks_for_the_authorization_code() {
    let server = FaultServer::builder()
        .credentials("12345@qq.com", "auth-code")
        .start();
    let dir = TestDir::new();
    qq_job(&dir, server.port());
    let out = run_with(&dir, "MAILSHOT_PW", "login-password");
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(out.stderr.contains("535"), "{}", out.stderr);
    assert!(out.stderr.contains("授权码"), "{}", out.stderr);
    assert!(!out.stderr.contains("login-password"), "secret leaked");
    assert!(server.messages().is_empty());

    let out = connect_with(&dir, "MAILSHOT_PW", "login-password");
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(out.stderr.contains("授权码"), "{}", out.stderr);

    // With the authorization code it goes through.
    let out = run_with(&dir, "MAILSHOT_PW", "auth-code");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.messages().len(), 1);
}

// ---------------------------------------------------------------------------
// 3. Password sources

/// The password the client sent in AUTH PLAIN, decoded from the server's log.
fn plain_password(commands: &[String]) -> Option<String> {
    let line = commands.iter().find(|c| c.starts_with("AUTH PLAIN "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line.trim_start_matches("AUTH PLAIN "))
        .ok()?;
    let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    Some(String::from_utf8_lossy(parts.get(2)?).into_owned())
}

#[test]
fn password_env_is_read_from_the_environment() {
    let server = FaultServer::builder()
        .credentials("u@example.com", "env-pw")
        .start();
    let dir = TestDir::new();
    simple_job(
        &dir,
        &auth_smtp(
            server.port(),
            "u@example.com",
            "  password_env: MY_SMTP_PW\n",
        ),
        "",
    );
    let out = run_with(&dir, "MY_SMTP_PW", "env-pw");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        plain_password(&server.commands()).as_deref(),
        Some("env-pw")
    );
    assert_eq!(server.messages().len(), 1);

    // Unset: an authentication error naming the variable, nothing sent.
    let dir = TestDir::new();
    simple_job(
        &dir,
        &auth_smtp(
            server.port(),
            "u@example.com",
            "  password_env: MY_SMTP_PW\n",
        ),
        "",
    );
    let out = run_quiet(&dir);
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(out.stderr.contains("MY_SMTP_PW"), "{}", out.stderr);
    assert_eq!(server.messages().len(), 1);
}

#[cfg(unix)]
#[test]
fn password_file_readable_by_others_is_refused_and_0600_is_accepted() {
    use std::os::unix::fs::PermissionsExt;
    let server = FaultServer::builder()
        .credentials("u@example.com", "file-pw")
        .start();
    let dir = TestDir::new();
    let pw = dir.write("smtp.pw", "file-pw\n");
    simple_job(
        &dir,
        &auth_smtp(server.port(), "u@example.com", "  password_file: smtp.pw\n"),
        "",
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_quiet(&dir);
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert!(out.stderr.contains("smtp.pw"), "{}", out.stderr);
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
    assert!(!out.stderr.contains("file-pw"), "secret leaked");
    assert_eq!(server.connections(), 0, "refused before connecting");

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_quiet(&dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        plain_password(&server.commands()).as_deref(),
        Some("file-pw")
    );
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn password_command_runs_only_when_a_session_is_needed() {
    let server = FaultServer::builder()
        .credentials("u@example.com", "cmd-pw")
        .start();
    let dir = TestDir::new();
    let marker = dir.join("password-command-ran");
    simple_job(
        &dir,
        &auth_smtp(
            server.port(),
            "u@example.com",
            &format!(
                "  password_command: \"touch '{}' && echo cmd-pw\"\n",
                marker.display()
            ),
        ),
        "",
    );
    for args in [
        &["check", "job.yaml"][..],
        &["preview", "job.yaml"],
        &["run", "job.yaml", "--dry-run", "--out", "eml"],
    ] {
        let out = mailshot(&dir, args, &[], b"");
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(!marker.exists(), "{args:?} ran password_command");
    }
    assert_eq!(server.connections(), 0);

    // check --connect logs in, and sends nothing.
    let out = mailshot(&dir, &["check", "job.yaml", "--connect"], &[], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(marker.exists(), "check --connect needs the password");
    assert_eq!(
        plain_password(&server.commands()).as_deref(),
        Some("cmd-pw")
    );
    assert!(server.messages().is_empty());
    assert!(!server.commands().iter().any(|c| c.starts_with("MAIL")));

    std::fs::remove_file(&marker).unwrap();
    let out = run_quiet(&dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(marker.exists());
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn check_connect_proves_the_login_against_aiosmtpd() {
    let server = AuthServer::start(TlsMode::Starttls, "user@example.com", "s3cret");
    let dir = TestDir::new();
    let ca = server.ca_file();
    simple_job(
        &dir,
        &format!(
            "smtp:\n  url: \"smtp://127.0.0.1:{}\"\n  ca_file: \"{}\"\n  username: user@example.com\n  \
             password_env: PW\n  timeout: 5s\n",
            server.port(),
            ca.display()
        ),
        "",
    );
    let out = connect_with(&dir, "PW", "s3cret");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("authenticated"), "{}", out.stderr);

    let out = connect_with(&dir, "PW", "wrong");
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(
        !out.stderr.contains("wrong"),
        "secret leaked: {}",
        out.stderr
    );

    std::thread::sleep(Duration::from_millis(200));
    assert!(server.messages().is_empty(), "check --connect sent nothing");
}

// ---------------------------------------------------------------------------
// 4. XOAUTH2

#[test]
fn xoauth2_sends_the_token_from_password_command() {
    let server = FaultServer::builder()
        .xoauth2(true)
        .credentials("me@gmail.example", "ya29.token-123")
        .start();
    let dir = TestDir::new();
    simple_job(
        &dir,
        &auth_smtp(
            server.port(),
            "me@gmail.example",
            "  auth: xoauth2\n  password_command: \"printf 'ya29.token-123\\\\n'\"\n",
        ),
        "",
    );
    let out = run_quiet(&dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.messages().len(), 1);
    let auth = server
        .commands()
        .into_iter()
        .find(|c| c.starts_with("AUTH "))
        .expect("an AUTH command");
    let b64 = auth
        .strip_prefix("AUTH XOAUTH2 ")
        .expect("XOAUTH2, not PLAIN");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(
        decoded,
        b"user=me@gmail.example\x01auth=Bearer ya29.token-123\x01\x01"
    );

    // An expired token: 535 → 77, no message.
    let dir = TestDir::new();
    simple_job(
        &dir,
        &auth_smtp(
            server.port(),
            "me@gmail.example",
            "  auth: xoauth2\n  password_command: \"echo expired\"\n",
        ),
        "",
    );
    let out = run_quiet(&dir);
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert_eq!(server.messages().len(), 1);
}

// ---------------------------------------------------------------------------
// 5. List-Unsubscribe

#[test]
fn list_unsubscribe_with_https_gets_one_click_post() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    simple_job(
        &dir,
        &plain_smtp(server.port()),
        "list_unsubscribe: \"https://example.com/u?e={{ email | urlencode }}, mailto:unsub@example.com?subject=unsubscribe\"\n",
    );
    let out = run_quiet(&dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = one_message(server.messages());
    let msg = parse(&m.data);
    let lu = msg
        .header_raw("List-Unsubscribe")
        .expect("List-Unsubscribe");
    let lu: String = lu.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        lu,
        "<https://example.com/u?e=ann%40example.org>, <mailto:unsub@example.com?subject=unsubscribe>"
    );
    assert_eq!(
        msg.header_raw("List-Unsubscribe-Post").map(str::trim),
        Some("List-Unsubscribe=One-Click")
    );

    // mailto only: RFC 8058 one-click needs https, so no Post header.
    let server = FaultServer::start();
    let dir = TestDir::new();
    simple_job(
        &dir,
        &plain_smtp(server.port()),
        "list_unsubscribe: \"mailto:unsub@example.com\"\n",
    );
    let out = run_quiet(&dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = one_message(server.messages());
    let msg = parse(&m.data);
    assert!(msg.header_raw("List-Unsubscribe").is_some());
    assert!(msg.header_raw("List-Unsubscribe-Post").is_none());
}

#[test]
fn check_warns_about_bulk_jobs_without_list_unsubscribe() {
    let csv = |n: usize| {
        let mut s = String::from("email\n");
        for i in 0..n {
            s.push_str(&format!("r{i}@example.org\n"));
        }
        s
    };
    let job = |dir: &TestDir, n: usize, extra: &str| {
        dir.write("recipients.csv", csv(n));
        dir.write("body.txt", "Hi\n");
        dir.write(
            "job.yaml",
            format!("from: a@example.com\nsubject: s\ntext: body.txt\nrecipients:\n  file: recipients.csv\n{extra}"),
        );
    };
    let dir = TestDir::new();
    job(&dir, 301, "");
    let out = check(&dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("warning"), "{}", out.stderr);
    assert!(out.stderr.contains("list_unsubscribe"), "{}", out.stderr);

    job(&dir, 300, "");
    let out = check(&dir);
    assert_eq!(out.code, 0);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    job(
        &dir,
        301,
        "list_unsubscribe: \"https://example.com/u?e={{ email }}\"\n",
    );
    let out = check(&dir);
    assert_eq!(out.code, 0);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// 6. DKIM

/// A fresh key with the openssl CLI: (PEM path, the DNS TXT record for it),
/// the record built from openssl's own public key output.
pub(crate) fn dkim_key(dir: &TestDir, kind: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{kind}.pem"));
    let mut gen = Command::new("openssl");
    gen.arg("genpkey");
    match kind {
        "rsa" => gen.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        _ => gen.args(["-algorithm", "ed25519"]),
    };
    let ok = gen
        .arg("-out")
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (scripts/test installs it)");
    assert!(ok.success());
    let spki = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let b64 = base64::engine::general_purpose::STANDARD;
    let record = match kind {
        "rsa" => format!("v=DKIM1; k=rsa; p={}", b64.encode(&spki)),
        // RFC 8463: the raw 32-byte key, the tail of the SubjectPublicKeyInfo.
        _ => format!(
            "v=DKIM1; k=ed25519; p={}",
            b64.encode(&spki[spki.len() - 32..])
        ),
    };
    (key, record)
}

/// dkimpy verifies `message` with `record` served for `name`; PASS or FAIL + why.
pub(crate) fn dkimpy_verify(dir: &TestDir, message: &[u8], name: &str, record: &str) -> String {
    let path = dir.write("to-verify.eml", message);
    let script = r#"
import sys, dkim, logging, io
msg = open(sys.argv[1], 'rb').read()
name, record = sys.argv[2].encode(), sys.argv[3].encode()
def dnsfunc(qname, timeout=5):
    return record if qname.rstrip(b'.') == name else None
log = io.StringIO()
logger = logging.getLogger('dkim'); logger.addHandler(logging.StreamHandler(log)); logger.setLevel(logging.DEBUG)
d = dkim.DKIM(msg, logger=logger)
try:
    ok = d.verify(dnsfunc=dnsfunc)
except Exception as e:
    ok = False; print('error', e)
print('PASS' if ok else 'FAIL ' + log.getvalue().replace('\n', ' '))
"#;
    let (ok, stdout, stderr) = python(script, &[path.to_str().unwrap(), name, record]);
    assert!(ok, "python: {stderr}");
    stdout.trim().to_string()
}

fn dkim_job(dir: &TestDir, port: u16, key: &Path) {
    dir.write(
        "letter.md",
        "# Hello {{ name }}\n\nA *signed* letter.  \nTrailing   spaces   \n\n\n",
    );
    dir.write(
        "recipients.csv",
        "email,name\nann@example.org,Ann\nbob@example.org,Bob\n",
    );
    dir.write(
        "job.yaml",
        format!(
            "{}from: \"Sender <sender@example.com>\"\nsubject: \"Signed für {{{{ name }}}}\"\n\
             markdown: letter.md\nlist_unsubscribe: \"https://example.com/u?e={{{{ email | urlencode }}}}\"\n\
             headers:\n  X-Campaign: dkim-test\nrecipients:\n  file: recipients.csv\n\
             dkim: {{ domain: example.com, selector: s1, key_file: {} }}\n",
            plain_smtp(port),
            key.file_name().unwrap().to_str().unwrap()
        ),
    );
}

fn dkim_end_to_end(kind: &str) {
    let server = FaultServer::builder().chunking(true).start();
    let dir = TestDir::new();
    let (key, record) = dkim_key(&dir, kind);
    dkim_job(&dir, server.port(), &key);
    let out = run_quiet(&dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let msgs = server.messages();
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        let h = head(&m.data);
        assert!(h.starts_with("DKIM-Signature: v=1; "), "{h}");
        assert!(h.contains(&format!("a={kind}-sha256")), "{h}");
        assert!(h.contains("d=example.com") && h.contains("s=s1"), "{h}");
        let verdict = dkimpy_verify(&dir, &m.data, "s1._domainkey.example.com", &record);
        assert_eq!(
            verdict,
            "PASS",
            "{verdict}\n{}",
            String::from_utf8_lossy(&m.data)
        );
    }
    // The verifier is not a rubber stamp: one changed body byte fails it.
    let mut tampered = msgs[0].data.clone();
    let at = tampered.len() - 5;
    tampered[at] ^= 0x01;
    let verdict = dkimpy_verify(&dir, &tampered, "s1._domainkey.example.com", &record);
    assert!(verdict.contains("FAIL"), "{verdict}");
    // And so does a record with another key.
    let (_, other) = dkim_key(&TestDir::new(), kind);
    assert!(
        dkimpy_verify(&dir, &msgs[0].data, "s1._domainkey.example.com", &other).contains("FAIL")
    );

    // check names the DNS record to publish, the same key openssl derives.
    let out = check(&dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("s1._domainkey.example.com") && out.stderr.contains(&record),
        "{}",
        out.stderr
    );

    // preview prints the same signed form.
    let out = mailshot(&dir, &["preview", "job.yaml", "--row", "2"], &[], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("DKIM-Signature: "));
    assert_eq!(
        dkimpy_verify(&dir, &out.raw_stdout, "s1._domainkey.example.com", &record),
        "PASS"
    );
}

#[test]
fn dkim_rsa_sha256_signature_verifies_with_dkimpy() {
    dkim_end_to_end("rsa");
}

#[test]
fn dkim_ed25519_signature_verifies_with_dkimpy() {
    dkim_end_to_end("ed25519");
}

#[test]
fn dkim_bad_key_file_is_an_invalid_job() {
    let dir = TestDir::new();
    dir.write(
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    dkim_job(&dir, free_port(), &dir.join("bad.pem"));
    let out = check(&dir);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("bad.pem"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// 7. Markdown and inline images

/// A tiny valid PNG (1×1).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xff, 0xff, 0x3f,
    0x00, 0x05, 0xfe, 0x02, 0xfe, 0xa7, 0x35, 0x81, 0x84, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Checks the message has text + HTML alternatives, the HTML inside a
/// multipart/related with the PNG as an inline part the HTML refers to by cid.
fn assert_inline_image(data: &[u8]) -> String {
    let msg = parse(data);
    let root = msg.root_part().content_type().unwrap();
    assert_eq!(
        (root.ctype(), root.subtype()),
        ("multipart", Some("alternative"))
    );
    let related = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "multipart" && c.subtype() == Some("related"))
        })
        .expect("a multipart/related part");
    let ids = related.sub_parts().expect("related has parts");
    let kinds: Vec<String> = ids
        .iter()
        .map(|&i| {
            let c = msg.parts[i as usize].content_type().unwrap();
            format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))
        })
        .collect();
    assert_eq!(kinds, ["text/html", "image/png"]);
    let image = &msg.parts[ids[1] as usize];
    assert_eq!(image.contents(), PNG);
    let cid = image
        .content_id()
        .expect("Content-ID on the image")
        .to_string();
    let html = msg.body_html(0).unwrap().into_owned();
    assert!(
        html.contains(&format!("src=\"cid:{cid}\"")),
        "{html}\ncid {cid}"
    );
    assert!(!html.contains("img/logo.png"), "{html}");
    html
}

/// Writes `img/logo.png`, a one-row CSV and `job.yaml` (from
/// a@example.com, with `body` giving the subject and body keys) for a plain
/// server on `port`, and runs it, which must succeed.
fn run_image_job(dir: &TestDir, port: u16, body: &str) {
    dir.write("img/logo.png", PNG);
    dir.write("recipients.csv", "email,name\nann@example.org,Ann\n");
    dir.write(
        "job.yaml",
        format!(
            "{}from: a@example.com\n{body}recipients:\n  file: recipients.csv\n",
            plain_smtp(port)
        ),
    );
    let out = run_quiet(dir);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn markdown_renders_text_and_html_with_the_local_image_inline() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    dir.write(
        "letter.md",
        "# Hello {{ name }}\n\nThis is **important**.\n\n![logo](img/logo.png)\n",
    );
    run_image_job(&dir, server.port(), "subject: md\nmarkdown: letter.md\n");
    let m = one_message(server.messages());
    let html = assert_inline_image(&m.data);
    assert!(html.contains("<h1>Hello Ann</h1>"), "{html}");
    assert!(html.contains("<strong>important</strong>"), "{html}");
    let msg = parse(&m.data);
    let text = msg.body_text(0).unwrap();
    assert!(text.contains("Hello Ann"), "{text}");
    assert!(
        text.contains("**important**"),
        "the text part is the Markdown: {text}"
    );
}

#[test]
fn html_template_img_src_path_becomes_an_inline_related_part() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    dir.write(
        "page.html",
        "<p>Hi {{ name }}</p><img alt=\"logo\" src=\"img/logo.png\">\n",
    );
    dir.write("page.txt", "Hi {{ name }}\n");
    run_image_job(
        &dir,
        server.port(),
        "subject: html\ntext: page.txt\nhtml: page.html\n",
    );
    assert_inline_image(&one_message(server.messages()).data);
}

// ---------------------------------------------------------------------------
// 8. The scheduled status mail sample

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/status")
}

/// Copies samples/status into `dir/name`, keeping modes (status.sh is executable).
fn copy_sample(dir: &TestDir, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(sample_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    to
}

#[test]
fn status_sample_shows_the_vars_passed_on_the_command_line() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    copy_sample(&dir, "status");
    let url = format!("smtp+plain://127.0.0.1:{}", server.port());
    let out = mailshot(
        &dir,
        &[
            "run",
            "status/job.yaml",
            "--quiet",
            "--smtp",
            &url,
            "--var",
            "host=web-7",
            "--var",
            "load=0.42 0.30 0.11",
            "--var",
            "disk=73%",
        ],
        &[],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = one_message(server.messages());
    let msg = parse(&m.data);
    assert_eq!(
        msg.subject(),
        Some("[web-7] load 0.42 0.30 0.11, disk 73% used")
    );
    let text = msg.body_text(0).unwrap();
    assert!(text.contains("web-7"), "{text}");
    assert!(text.contains("0.42 0.30 0.11"), "{text}");
    assert!(text.contains("73%"), "{text}");
}

#[test]
fn status_script_sends_a_fresh_mail_every_run() {
    let server = FaultServer::start();
    let dir = TestDir::new();
    let sample = copy_sample(&dir, "mailshot-status");
    let url = format!("smtp+plain://127.0.0.1:{}", server.port());
    let run = || {
        let out = Command::new(sample.join("status.sh"))
            .args(["--smtp", &url])
            .env("MAILSHOT", cmd::mailshot_bin())
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .stdin(Stdio::null())
            .output()
            .expect("run status.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Two scheduler ticks: each must send, not be skipped as "already sent".
    run();
    run();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 2, "one status mail per run");
    let node = Command::new("uname").arg("-n").output().unwrap().stdout;
    let node = String::from_utf8_lossy(&node).trim().to_string();
    for m in &msgs {
        let msg = parse(&m.data);
        let subject = msg.subject().unwrap();
        assert!(subject.starts_with(&format!("[{node}] load ")), "{subject}");
        // The load average, as /proc/loadavg has it: three decimals.
        let load = subject
            .split("load ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        assert_eq!(load.split(' ').count(), 3, "{subject}");
        assert!(
            load.split(' ').all(|f| f.parse::<f64>().is_ok()),
            "{subject}"
        );
        assert!(subject.ends_with("% used"), "{subject}");
    }
    assert_ne!(
        parse(&msgs[0].data).message_id(),
        parse(&msgs[1].data).message_id()
    );
}

#[test]
fn status_units_and_crontab_run_every_minute() {
    let service = std::fs::read_to_string(sample_dir().join("mailshot-status.service")).unwrap();
    let timer = std::fs::read_to_string(sample_dir().join("mailshot-status.timer")).unwrap();
    let cron = std::fs::read_to_string(sample_dir().join("crontab.txt")).unwrap();
    let key = |unit: &str, k: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::trim)
            .map(String::from)
    };
    assert_eq!(key(&timer, "OnCalendar").as_deref(), Some("*-*-* *:*:00"));
    assert_eq!(
        key(&timer, "Unit").as_deref(),
        Some("mailshot-status.service")
    );
    assert_eq!(key(&service, "Type").as_deref(), Some("oneshot"));
    let exec = key(&service, "ExecStart").unwrap();
    assert!(exec.ends_with("/status.sh"), "{exec}");
    let cron_line = cron
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("status.sh"))
        .expect("a crontab entry");
    assert!(cron_line.starts_with("* * * * * "), "{cron_line}");

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: unit syntax checked by keys only");
        return;
    };
    assert!(version.status.success());
    // verify resolves %h and checks ExecStart exists: give it a home with the script.
    let dir = TestDir::new();
    copy_sample(&dir, "home/mailshot-status");
    let units = copy_sample(&dir, "units");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("mailshot-status.timer"))
        .arg(units.join("mailshot-status.service"))
        .env("HOME", dir.join("home"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["calendar", "--iterations=3", "*-*-* *:*:00"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let times: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(_, v)| v))
        .filter(|v| v.ends_with(" UTC") || v.split(' ').count() == 4)
        .filter_map(|v| v.split(' ').nth(2))
        .collect();
    assert_eq!(times.len(), 3, "{text}");
    let minute = |t: &str| {
        let f: Vec<u32> = t.split(':').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[2], 0, "fires at second 0: {t}");
        f[0] * 60 + f[1]
    };
    let m: Vec<u32> = times.iter().map(|t| minute(t)).collect();
    assert_eq!((m[1] + 1440 - m[0]) % 1440, 1, "{text}");
    assert_eq!((m[2] + 1440 - m[1]) % 1440, 1, "{text}");
}
