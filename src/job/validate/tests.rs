//! Loading jobs and user configs: what is accepted and where each problem is reported.

use super::smtp_section::parse_smtp_url_settings;
use super::user_config::load_user_smtp_from;
use super::*;
use crate::error::Diagnostic;
use crate::job::{PasswordSource, Security};
use crate::smtp::auth::AuthMech;
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
    std::fs::write(&path, "subject: hi\n").unwrap();
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

#[test]
fn var_arguments_split_at_the_first_equals_sign_and_need_a_name() {
    let args = [" campaign =Nov=2".to_string(), "empty=".to_string()];
    assert_eq!(
        parse_vars(&args).unwrap(),
        [
            ("campaign".into(), "Nov=2".into()),
            ("empty".into(), String::new())
        ]
    );
    for bad in ["novalue", "=x", " =x"] {
        match parse_vars(&[bad.to_string()]) {
            Err(Error::Usage(m)) => assert!(m.contains("KEY=VALUE"), "{m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}
