//! Integration tests for sendmail mode: `mailshot sendmail` and the binary
//! run through a symlink named `sendmail` on PATH, the way cron and scripts
//! call it, against the scripted fault server (which records the envelope)
//! and a private Postfix (which writes the envelope into the delivered
//! copy as Return-Path and Delivered-To).

mod callers;
mod dkim;
mod mailrc;
mod package;
mod queue;
mod size;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use mail_parser::MessageParser;

use crate::support::cmd::{self, mailshot_bin, Output};
use crate::support::fault::{FaultServer, Message};
use crate::support::postfix::Postfix;
use crate::support::{free_port, TestDir};

/// A folder with a user config naming `smtp+plain://127.0.0.1:PORT` and a
/// `bin/sendmail` symlink to the built binary.
fn setup(port: u16) -> TestDir {
    let dir = TestDir::new();
    dir.write(
        "xdg/mailshot/config.yaml",
        format!(
            "smtp:\n  url: \"smtp+plain://127.0.0.1:{port}\"\n  timeout: 5s\n  \
             retry_delay: 50ms\n  max_attempts: 2\n"
        ),
    );
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::os::unix::fs::symlink(mailshot_bin(), dir.join("bin/sendmail")).unwrap();
    dir
}

/// `sh -c SCRIPT` in `dir` with `dir/bin` first on PATH (so `sendmail` is
/// mailshot), isolated from the developer's config as the cmd builder does.
fn shell(dir: &TestDir, script: &str) -> Output {
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env_remove("MAILSHOT_PASSWORD")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    cmd::spawn_command(c).finish()
}

/// `mailshot sendmail ARGS` with `stdin`, in `dir`.
fn sendmail(dir: &TestDir, args: &[&str], stdin: &[u8]) -> Output {
    cmd::mailshot(dir.path(), ["sendmail"].iter().chain(args))
        .stdin(stdin)
        .run()
}

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

fn one(server_msgs: Vec<Message>) -> Message {
    assert_eq!(server_msgs.len(), 1, "exactly one message expected");
    server_msgs.into_iter().next().unwrap()
}

/// The header block of a message, as text.
fn head(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

#[test]
fn cron_style_t_i_here_document_through_the_sendmail_symlink() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let out = shell(
        &dir,
        "sendmail -t -i <<'EOF'\n\
         From: Cron Daemon <root@host.example>\n\
         To: Admin <admin@x.example>\n\
         Cc: ops@y.example\n\
         Bcc: Auditor <audit@z.example>\n\
         Subject: cron: backup\n\
         \n\
         backup finished\n\
         .\n\
         the dot above is text with -i\n\
         EOF\n",
    );
    out.expect_code(0);
    assert_eq!(out.stdout, "", "sendmail is silent on success");
    assert_eq!(out.stderr, "", "sendmail is silent on success");
    let m = one(server.messages());
    assert_eq!(m.from, "root@host.example");
    assert_eq!(
        m.rcpts,
        ["admin@x.example", "ops@y.example", "audit@z.example"]
    );
    let h = head(&m.data);
    assert!(
        !h.to_ascii_lowercase().contains("bcc"),
        "Bcc header left:\n{h}"
    );
    assert!(!h.contains("audit@z.example"), "Bcc address left:\n{h}");
    let parsed = MessageParser::default().parse(&m.data).unwrap();
    assert!(parsed.date().is_some(), "a Date was added:\n{h}");
    assert!(
        parsed.message_id().is_some(),
        "a Message-ID was added:\n{h}"
    );
    assert!(
        m.data.ends_with(&crlf(
            "\nbackup finished\n.\nthe dot above is text with -i\n"
        )),
        "body kept byte for byte, with CRLF: {:?}",
        String::from_utf8_lossy(&m.data)
    );
}

#[test]
fn without_i_a_lone_dot_ends_the_message() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let out = sendmail(
        &dir,
        &["rcpt@x.example"],
        b"From: me@x.example\nSubject: s\n\nfirst\n.\nnot sent\n",
    );
    out.expect_code(0);
    let m = one(server.messages());
    assert!(
        m.data.ends_with(b"\r\n\r\nfirst\r\n"),
        "{:?}",
        String::from_utf8_lossy(&m.data)
    );
    assert!(!String::from_utf8_lossy(&m.data).contains("not sent"));
}

#[test]
fn a_signed_message_is_sent_as_it_came() {
    // Date, Message-ID and a DKIM-Signature are present: nothing is added,
    // nothing reordered or refolded; only LF becomes CRLF.
    let server = FaultServer::start();
    let dir = setup(server.port());
    let input = "DKIM-Signature: v=1; a=rsa-sha256; d=x.example; s=s1;\n\th=from:to:subject; bh=AAAA; b=BBBB\n\
                 From:   \"Ann\"   <ann@x.example>\n\
                 To: bob@y.example\n\
                 Subject:  spaced   out\n\
                 Date: Tue, 1 Dec 2026 10:00:00 +0100\n\
                 Message-ID: <kept.1@x.example>\n\
                 X-Odd:trailing \n\
                 \n\
                 line one  \n\
                 \tline two\n";
    let out = sendmail(&dir, &["-t"], input.as_bytes());
    out.expect_code(0);
    let m = one(server.messages());
    assert_eq!(m.data, crlf(input));
    assert_eq!(m.rcpts, ["bob@y.example"]);
}

#[test]
fn f_sets_the_envelope_and_f_names_an_added_from() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let out = sendmail(
        &dir,
        &[
            "-f",
            "bounce@x.example",
            "-F",
            "Nightly Job",
            "--",
            "a@y.example",
        ],
        b"Subject: no from here\n\nbody\n",
    );
    out.expect_code(0);
    let m = one(server.messages());
    assert_eq!(m.from, "bounce@x.example");
    assert_eq!(m.rcpts, ["a@y.example"]);
    let parsed = MessageParser::default().parse(&m.data).unwrap();
    let from = parsed
        .from()
        .and_then(|f| f.first())
        .expect("a From was added");
    assert_eq!(from.address(), Some("bounce@x.example"));
    assert_eq!(from.name(), Some("Nightly Job"));
    // Glued form, as PHP and mailx pass it.
    let server2 = FaultServer::start();
    let dir2 = setup(server2.port());
    sendmail(
        &dir2,
        &["-fglued@x.example", "-oi", "b@y.example"],
        b"Subject: s\n\nb\n",
    )
    .expect_code(0);
    assert_eq!(one(server2.messages()).from, "glued@x.example");
}

#[test]
fn arguments_add_to_header_recipients_with_t_and_alone_without() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let msg = b"From: me@x.example\nTo: to@y.example\nSubject: s\n\nb\n";
    sendmail(&dir, &["-t", "extra@z.example"], msg).expect_code(0);
    sendmail(&dir, &["only@z.example"], msg).expect_code(0);
    let msgs = server.messages();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].rcpts, ["to@y.example", "extra@z.example"]);
    assert_eq!(msgs[1].rcpts, ["only@z.example"]);
}

#[test]
fn accepted_flags_callers_pass() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let out = sendmail(
        &dir,
        &[
            "-bm",
            "-oem",
            "-odi",
            "-B",
            "8BITMIME",
            "-N",
            "failure,delay",
            "-i",
            "-t",
        ],
        b"From: me@x.example\nTo: to@y.example\nSubject: s\n\nb\n",
    );
    out.expect_code(0);
    assert_eq!(one(server.messages()).rcpts, ["to@y.example"]);
}

#[test]
fn unknown_flags_and_modes_are_usage_errors_and_nothing_is_sent() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let msg = b"From: me@x.example\nTo: to@y.example\n\nb\n";
    for args in [
        &["-bp"][..],
        &["-q"],
        &["--frobnicate"],
        &["-N", "sometimes", "-t"],
    ] {
        let out = sendmail(&dir, args, msg);
        out.expect_code(64);
        assert!(out.stderr.contains("mailshot:"), "{args:?}: {}", out.stderr);
    }
    let out = sendmail(&dir, &[], msg);
    out.expect_code(64);
    assert!(out.stderr.contains("no recipients"), "{}", out.stderr);
    assert!(server.messages().is_empty());
}

#[test]
fn v_shows_the_smtp_conversation() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let out = sendmail(&dir, &["-v", "a@y.example"], b"From: me@x.example\n\nb\n");
    out.expect_code(0);
    assert!(
        out.stderr.contains("RCPT TO:<a@y.example>"),
        "{}",
        out.stderr
    );
}

#[test]
fn unreachable_server_exits_75_so_the_caller_retries() {
    let port = free_port();
    let dir = setup(port);
    let out = sendmail(&dir, &["a@y.example"], b"From: me@x.example\n\nb\n");
    out.expect_code(75);
    assert!(out.stderr.contains("not sent"), "{}", out.stderr);
}

#[test]
fn transient_rejection_exits_75_and_permanent_67() {
    let server = FaultServer::builder()
        .rcpt_hook(|addr, _| {
            if addr.starts_with("later") {
                Some("451 4.3.0 try again later".into())
            } else if addr.starts_with("never") {
                Some("550 5.1.1 no such user".into())
            } else {
                None
            }
        })
        .start();
    let dir = setup(server.port());
    let out = sendmail(&dir, &["never@y.example"], b"From: me@x.example\n\nb\n");
    out.expect_code(67);
    assert!(out.stderr.contains("550"), "{}", out.stderr);
    let out = sendmail(&dir, &["later@y.example"], b"From: me@x.example\n\nb\n");
    out.expect_code(75);
    assert!(server.messages().is_empty());
}

#[test]
fn eight_bit_body_goes_with_body_8bitmime() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let body = "From: me@x.example\nTo: a@y.example\nSubject: s\nMIME-Version: 1.0\n\
                Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus Köln\n";
    sendmail(&dir, &["-t"], body.as_bytes()).expect_code(0);
    let mail = server
        .commands()
        .into_iter()
        .find(|c| c.starts_with("MAIL FROM"))
        .unwrap();
    assert!(mail.contains("BODY=8BITMIME"), "{mail}");
    let data = one(server.messages()).data;
    assert!(
        data.ends_with(&crlf(body)),
        "{}",
        String::from_utf8_lossy(&data)
    );
}

#[test]
fn eight_bit_body_to_a_server_without_8bitmime_says_so() {
    let server = FaultServer::builder().eight_bit(false).start();
    let dir = setup(server.port());
    let out = sendmail(
        &dir,
        &["a@y.example"],
        "From: me@x.example\n\nGrüße\n".as_bytes(),
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("8BITMIME"), "{}", out.stderr);
    assert!(server.messages().is_empty());
}

#[test]
fn postfix_receives_the_envelope_and_the_body_unchanged() {
    let pf = Postfix::start();
    let dir = setup(pf.port());
    let body = "backup of /srv finished\n\n  12 files, 3 dirs\n.\nend\n";
    let out = shell(
        &dir,
        &format!(
            "sendmail -t -i -f cron@host.example <<'EOF'\nTo: admin@x.example\nBcc: audit@z.example\nSubject: cron\n\n{body}EOF\n"
        ),
    );
    out.expect_code(0);
    let files: Vec<PathBuf> = pf.wait_for_messages(2, Duration::from_secs(30));
    assert_eq!(files.len(), 2, "one copy per envelope recipient");
    let mut delivered_to = Vec::new();
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let parsed = MessageParser::default().parse(&data).unwrap();
        assert_eq!(
            parsed.return_path().as_text(),
            Some("cron@host.example"),
            "envelope sender"
        );
        delivered_to.push(
            parsed
                .header("Delivered-To")
                .and_then(|v| v.as_text())
                .unwrap()
                .to_string(),
        );
        let h = head(&data);
        assert!(!h.to_ascii_lowercase().contains("\nbcc:"), "{h}");
        // The Maildir copy has LF line ends.
        assert!(
            data.ends_with(format!("\n\n{body}").as_bytes()),
            "body: {:?}",
            String::from_utf8_lossy(&data)
        );
    }
    delivered_to.sort();
    assert_eq!(delivered_to, ["admin@x.example", "audit@z.example"]);
}

/// `sendmail a@y.example` run with `etc` mounted over /etc (in a private
/// mount namespace), HOME = `dir`, the message from `dir/msg.eml`.
fn sendmail_with_etc(dir: &TestDir, etc: &TestDir) -> Output {
    let probe = Command::new("unshare").args(["-m", "true"]).status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test needs `unshare -m` (root or CAP_SYS_ADMIN)"
    );
    dir.write("msg.eml", "From: cron@host.example\nSubject: s\n\nbody\n");
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$1\" /etc && exec \"$2\" -i a@y.example",
        "sh",
    ])
    .arg(etc.path())
    .arg(dir.join("bin/sendmail"))
    .current_dir(dir.path())
    .env("HOME", dir.path())
    .env("XDG_CONFIG_HOME", dir.join("xdg"))
    .env_remove("MAILSHOT_PASSWORD")
    .stdin(std::fs::File::open(dir.join("msg.eml")).unwrap());
    cmd::spawn_command(c).finish()
}

/// A stand-in for /etc holding only `mailshot/config.yaml` for `port`.
fn etc_for(port: u16) -> TestDir {
    let etc = TestDir::new();
    etc.write(
        "mailshot/config.yaml",
        format!("smtp:\n  url: \"smtp+plain://127.0.0.1:{port}\"\n  timeout: 5s\n"),
    );
    etc
}

#[test]
fn the_system_config_serves_users_without_their_own() {
    let system = FaultServer::start();
    let dir = setup(0);
    std::fs::remove_file(dir.join("xdg/mailshot/config.yaml")).unwrap();
    let out = sendmail_with_etc(&dir, &etc_for(system.port()));
    out.expect_code(0);
    assert_eq!(one(system.messages()).rcpts, ["a@y.example"]);
}

#[test]
fn the_user_config_wins_over_the_system_config() {
    let system = FaultServer::start();
    let user = FaultServer::start();
    let dir = setup(user.port());
    let out = sendmail_with_etc(&dir, &etc_for(system.port()));
    out.expect_code(0);
    assert_eq!(one(user.messages()).rcpts, ["a@y.example"]);
    assert!(system.messages().is_empty());
}

#[test]
fn accounts_by_name_and_by_the_senders_domain() {
    let default = FaultServer::start();
    let work = FaultServer::builder()
        .auth(true)
        .credentials("me@work.example", "pw1")
        .start();
    let other = FaultServer::start();
    let over = FaultServer::start();
    let dir = setup(0);
    dir.write("xdg/mailshot/work.pw", "pw1\n");
    crate::support::chmod(&dir.join("xdg/mailshot/work.pw"), "600");
    let url = |port: u16| format!("\"smtp+plain://127.0.0.1:{port}\"");
    dir.write(
        "xdg/mailshot/config.yaml",
        format!(
            "smtp:\n  url: {}\n  timeout: 5s\naccounts:\n  work:\n    url: {}\n    username: me@work.example\n    \
             password_file: work.pw\n    allow_plaintext_auth: true\n    timeout: 5s\n  other.example:\n    url: {}\n    timeout: 5s\n",
            url(default.port()),
            url(work.port()),
            url(other.port())
        ),
    );
    let msg = |from: &str| format!("From: {from}\nSubject: s\n\nb\n");
    // By name, whatever the sender.
    sendmail(
        &dir,
        &["-a", "work", "r1@y.example"],
        msg("a@elsewhere.example").as_bytes(),
    )
    .expect_code(0);
    // By the From domain: the account whose username has it.
    sendmail(&dir, &["r2@y.example"], msg("boss@work.example").as_bytes()).expect_code(0);
    // By the -f domain: the account named after it.
    sendmail(
        &dir,
        &["-f", "x@other.example", "r3@y.example"],
        msg("a@b.example").as_bytes(),
    )
    .expect_code(0);
    // No account matches: the default smtp: section.
    sendmail(
        &dir,
        &["r4@y.example"],
        msg("a@elsewhere.example").as_bytes(),
    )
    .expect_code(0);
    // --smtp still overrides.
    let over_url = format!("smtp+plain://127.0.0.1:{}", over.port());
    sendmail(
        &dir,
        &["-a", "work", "--smtp", &over_url, "r5@y.example"],
        msg("boss@work.example").as_bytes(),
    )
    .expect_code(0);
    let rcpts = |s: &crate::support::fault::FaultHandle| -> Vec<String> {
        s.messages().into_iter().flat_map(|m| m.rcpts).collect()
    };
    assert_eq!(rcpts(&work), ["r1@y.example", "r2@y.example"]);
    assert_eq!(rcpts(&other), ["r3@y.example"]);
    assert_eq!(rcpts(&default), ["r4@y.example"]);
    assert_eq!(rcpts(&over), ["r5@y.example"]);
    // An unknown account is a usage error, and nothing is sent.
    let out = sendmail(
        &dir,
        &["-a", "nosuch", "r6@y.example"],
        msg("a@b.example").as_bytes(),
    );
    out.expect_code(64);
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);
}

#[test]
fn a_mistake_in_an_account_points_at_its_line() {
    let dir = setup(0);
    dir.write(
        "xdg/mailshot/config.yaml",
        "smtp:\n  host: 127.0.0.1\naccounts:\n  work:\n    host: 127.0.0.1\n    provider: nosuch\n",
    );
    let out = sendmail(
        &dir,
        &["-a", "work", "r@y.example"],
        b"From: a@b.example\n\nb\n",
    );
    out.expect_code(65);
    assert!(out.stderr.contains(":6"), "{}", out.stderr);
}
