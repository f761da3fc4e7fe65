//! The programs that call sendmail, calling mailshot: git send-email
//! (`--sendmail-cmd`), PHP's `mail()` (`-d sendmail_path=`), bsd-mailx (its
//! `sendmail` variable naming the symlink) — each message delivered by a
//! private Postfix, whose Maildir copy carries the envelope as Return-Path
//! and Delivered-To, and compared with what the caller was given.

use std::process::Command;
use std::time::Duration;

use mail_parser::MessageParser;

use super::{head, setup, shell};
use crate::support::aiosmtpd::{AuthServer, TlsMode};
use crate::support::postfix::Postfix;
use crate::support::TestDir;

/// One delivered copy: (Return-Path, Delivered-To, header block, body).
struct Delivered {
    return_path: String,
    delivered_to: String,
    head: String,
    body: Vec<u8>,
}

fn delivered(pf: &Postfix, n: usize) -> Vec<Delivered> {
    let files = pf.wait_for_messages(n, Duration::from_secs(30));
    assert_eq!(files.len(), n, "messages delivered; log:\n{}", pf.log());
    let mut out: Vec<Delivered> = files
        .iter()
        .map(|f| {
            let data = std::fs::read(f).unwrap();
            let parsed = MessageParser::default().parse(&data).unwrap();
            let text = |name: &str| {
                parsed
                    .header(name)
                    .and_then(|v| v.as_text())
                    .unwrap_or_default()
                    .to_string()
            };
            // Maildir copies have LF line ends.
            let split = data
                .windows(2)
                .position(|w| w == b"\n\n")
                .expect("a header/body separator");
            Delivered {
                return_path: parsed
                    .return_path()
                    .as_text()
                    .unwrap_or_default()
                    .to_string(),
                delivered_to: text("Delivered-To"),
                head: head(&data.replace_lf()),
                body: data[split + 2..].to_vec(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.delivered_to.cmp(&b.delivered_to));
    out
}

trait ReplaceLf {
    fn replace_lf(&self) -> Vec<u8>;
}

impl ReplaceLf for Vec<u8> {
    fn replace_lf(&self) -> Vec<u8> {
        String::from_utf8_lossy(self)
            .replace('\n', "\r\n")
            .into_bytes()
    }
}

fn assert_no_bcc(d: &Delivered) {
    assert!(
        !d.head.to_ascii_lowercase().contains("\nbcc:"),
        "a Bcc header reached the server:\n{}",
        d.head
    );
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn git_send_email_sends_a_patch_series() {
    assert!(
        Command::new("git")
            .args(["send-email", "--dump-aliases"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "git send-email is missing: install the Debian package git-email (scripts/test does)"
    );
    let pf = Postfix::start();
    let dir = setup(pf.port());
    let repo = TestDir::new();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@x.example"])
            .args(args)
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    repo.write("a.txt", "one\n");
    git(&["add", "a.txt"]);
    git(&["commit", "-q", "-m", "add a"]);
    repo.write("a.txt", "one\ntwo\n.\nthree\n");
    git(&["commit", "-q", "-a", "-m", "grow a"]);
    git(&["format-patch", "-q", "-2", "-o", "patches"]);
    let out = shell(
        &dir,
        &format!(
            "cd {repo} && git -c user.name=Dev -c user.email=dev@x.example send-email --quiet --confirm=never --suppress-cc=all \
             --from='Dev <dev@x.example>' --to=list@y.example --bcc=archive@z.example \
             --sendmail-cmd=sendmail patches/*.patch",
            repo = repo.path().display()
        ),
    );
    out.expect_code(0);
    // Two patches, each to two recipients.
    let got = delivered(&pf, 4);
    let mut patches: Vec<Vec<u8>> = repo
        .files_with_suffix("patches", ".patch")
        .iter()
        .map(|p| {
            let data = std::fs::read(p).unwrap();
            let split = data.windows(2).position(|w| w == b"\n\n").unwrap();
            data[split + 2..].to_vec()
        })
        .collect();
    patches.sort();
    for d in &got {
        assert_eq!(d.return_path, "dev@x.example");
        assert_no_bcc(d);
    }
    let tos: Vec<&str> = got.iter().map(|d| d.delivered_to.as_str()).collect();
    assert_eq!(tos.iter().filter(|t| **t == "list@y.example").count(), 2);
    assert_eq!(tos.iter().filter(|t| **t == "archive@z.example").count(), 2);
    let mut bodies: Vec<Vec<u8>> = got
        .iter()
        .filter(|d| d.delivered_to == "list@y.example")
        .map(|d| d.body.clone())
        .collect();
    bodies.sort();
    assert_eq!(bodies, patches, "patch bodies arrive byte for byte");
}

#[test]
fn php_mail_through_sendmail_path() {
    // aiosmtpd keeps every header it receives (Postfix would drop a Bcc
    // header itself), over STARTTLS with AUTH as a real provider asks.
    assert!(
        have("php"),
        "php is missing: install the Debian package php-cli (scripts/test does)"
    );
    let server = AuthServer::start(TlsMode::Starttls, "shop@x.example", "s3cret");
    let dir = setup(0);
    dir.write("pw", "s3cret\n");
    crate::support::chmod(&dir.join("pw"), "600");
    dir.write(
        "xdg/mailshot/config.yaml",
        format!(
            "smtp:\n  url: \"smtp://127.0.0.1:{}\"\n  ca_file: \"{}\"\n  username: shop@x.example\n  \
             password_file: \"{}\"\n  timeout: 5s\n",
            server.port(),
            server.ca_file().display(),
            dir.join("pw").display()
        ),
    );
    // mail() writes the message and then one line end of its own.
    let body = "Order 42 shipped.\n.\nThanks,\n  the shop";
    dir.write(
        "mail.php",
        format!(
            "<?php\nexit(mail('customer@y.example', 'Your order', {body:?}, \
             \"From: Shop <shop@x.example>\\r\\nBcc: records@z.example\") ? 0 : 1);\n"
        ),
    );
    let out = shell(
        &dir,
        "php -n -d sendmail_path=\"$PWD/bin/sendmail -t -i\" mail.php",
    );
    out.expect_code(0);
    let files = server.wait_for_messages(1, Duration::from_secs(20));
    assert_eq!(files.len(), 1);
    let data = std::fs::read(&files[0]).unwrap();
    let parsed = MessageParser::default().parse(&data).unwrap();
    let text = |name: &str| {
        parsed
            .header(name)
            .and_then(|v| v.as_text())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(text("Return-Path"), "shop@x.example");
    assert_eq!(
        text("X-Mailshot-Rcpt"),
        "customer@y.example, records@z.example"
    );
    let h = head(&data);
    assert!(
        !h.to_ascii_lowercase().contains("\r\nbcc:"),
        "a Bcc header reached the server:\n{h}"
    );
    let split = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&data[split + 4..]),
        format!("{body}\n").replace('\n', "\r\n")
    );
}

#[test]
fn bsd_mailx_through_the_sendmail_symlink() {
    assert!(
        std::path::Path::new("/usr/bin/bsd-mailx").exists(),
        "bsd-mailx is missing: install the Debian package bsd-mailx (scripts/test does)"
    );
    let pf = Postfix::start();
    let dir = setup(pf.port());
    dir.write(
        ".mailrc",
        format!("set sendmail={}\n", dir.join("bin/sendmail").display()),
    );
    let body = "disk /srv is 91% full\n\n-- \nmonitor\n";
    dir.write("body.txt", body);
    let out = shell(
        &dir,
        "bsd-mailx -s 'disk space' -r monitor@x.example -b hidden@z.example admin@y.example < body.txt",
    );
    out.expect_code(0);
    let got = delivered(&pf, 2);
    assert_eq!(got[0].delivered_to, "admin@y.example");
    assert_eq!(got[1].delivered_to, "hidden@z.example");
    for d in &got {
        assert_eq!(d.return_path, "monitor@x.example");
        assert_no_bcc(d);
        assert_eq!(String::from_utf8_lossy(&d.body), body);
    }
}
