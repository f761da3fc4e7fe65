//! The `bounces:` section: what is accepted, and each problem reported at
//! its key.

use super::*;
use crate::job::bounces::{After, Protocol};
use crate::job::{PasswordSource, Security};

fn job(extra: &str) -> Result<Job> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body.txt"), "Hi").unwrap();
    std::fs::write(dir.path().join("list.csv"), "email\na@example.com\n").unwrap();
    let path = dir.path().join("job.yaml");
    std::fs::write(
        &path,
        format!(
            "from: Me <me@example.com>\nsubject: Hello\ntext: body.txt\n\
             recipients:\n  file: list.csv\n{extra}\n"
        ),
    )
    .unwrap();
    load(&path, &[])
}

fn problems(extra: &str) -> String {
    match job(extra) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted: {extra}"),
    }
}

#[test]
fn a_bounces_section_is_read_with_its_defaults() {
    let j = job("bounces:\n  url: imaps://bounces%40example.com@imap.example.com\n  password_env: BOUNCES_PW")
        .unwrap();
    let b = j.bounces.unwrap();
    assert_eq!(b.protocol, Protocol::Imap);
    assert_eq!(b.security, Security::Tls);
    assert_eq!((b.host.as_str(), b.port), ("imap.example.com", 993));
    assert_eq!(b.username, "bounces@example.com");
    assert_eq!(b.password, PasswordSource::Env("BOUNCES_PW".into()));
    assert_eq!(b.folder, "INBOX");
    assert_eq!(b.after, After::Keep);
    assert_eq!(b.soft_bounce_limit, 3);
}

#[test]
fn bad_bounces_settings_are_reported_at_their_keys() {
    let e = problems("bounces:\n  url: imaps://u@h");
    assert!(e.contains("needs a password"), "{e}");
    let e = problems("bounces:\n  url: imaps://u:pw@h\n  password_env: P");
    assert!(
        e.contains("contains a password") && !e.contains("pw@"),
        "{e}"
    );
    let e = problems("bounces:\n  url: pop3s://u@h\n  password_env: P\n  after: move:Done");
    assert!(e.contains("POP3 cannot move"), "{e}");
    let e = problems("bounces:\n  url: imaps://u@h\n  password_env: P\n  after: archive");
    assert!(e.contains("keep, delete or move:FOLDER"), "{e}");
    let e = problems("bounces:\n  url: imaps://h\n  password_env: P");
    assert!(e.contains("user name"), "{e}");
    let e = problems("bounces:\n  url: imaps://u@h\n  password_env: P\n  soft_bounce_limit: 0");
    assert!(e.contains("at least 1"), "{e}");
    let e = problems("bounces:\n  url: imaps://u@h\n  password_env: P\n  provider: qq");
    assert!(e.contains("either `url` or `provider`"), "{e}");
    let e = problems("bounces:\n  provider: nowhere\n  username: u\n  password_env: P");
    assert!(e.contains("unknown mailbox provider"), "{e}");
}

#[test]
fn a_provider_preset_fills_in_the_server() {
    let j = job(
        "bounces:\n  provider: 163\n  protocol: pop3\n  username: me@163.com\n  password_env: P",
    )
    .unwrap();
    let b = j.bounces.unwrap();
    assert_eq!(b.protocol, Protocol::Pop3);
    assert_eq!(b.security, Security::Tls);
    assert_eq!((b.host.as_str(), b.port), ("pop.163.com", 995));
    assert_eq!(b.username, "me@163.com");
    let b = job("bounces:\n  provider: qq\n  username: 1@qq.com\n  password_env: P")
        .unwrap()
        .bounces
        .unwrap();
    assert_eq!((b.host.as_str(), b.port), ("imap.qq.com", 993));
}
