//! The mailbox driver against a real Dovecot on loopback: IMAPS, IMAP with
//! STARTTLS, POP3S and POP3 with STLS read the messages of a Maildir; an
//! untrusted certificate stops the session before any login; a wrong
//! password is an authentication failure; a server that says nothing runs
//! into the timeout.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailshot::mailbox::net::{Connection, NetFailure};
use mailshot::mailbox::{imap, pop3};
use mailshot::smtp::client::{Credentials, TlsMode};
use mailshot::smtp::net::session::Endpoint;
use mailshot::smtp::net::tls;

use crate::support::dovecot::{Dovecot, PASSWORD, USER};
use crate::support::TestDir;

fn endpoint(port: u16, implicit_tls: bool, ca: Option<&Path>) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        address: None,
        port,
        implicit_tls,
        tls: tls::client_config(ca).expect("TLS config"),
        connect_timeout: Duration::from_secs(10),
    }
}

fn creds(password: &str) -> Credentials {
    Credentials {
        username: USER.into(),
        secret: password.into(),
        mechanism: None,
    }
}

/// A Maildir with two messages, served by a fresh Dovecot.
fn mailbox_with_two() -> (TestDir, Dovecot) {
    let dir = TestDir::new();
    for (i, subject) in ["first bounce", "second bounce"].iter().enumerate() {
        dir.write(
            format!("box/new/100{i}.M1P1.test"),
            format!(
                "From: MAILER-DAEMON@example.test\r\nTo: bounces@example.test\r\n\
                 Subject: {subject}\r\nMessage-ID: <m{i}@example.test>\r\n\r\nbody {i}\r\n"
            ),
        );
    }
    let dovecot = Dovecot::start(&dir.join("box"));
    (dir, dovecot)
}

fn subjects(messages: &[Vec<u8>]) -> Vec<String> {
    let mut out: Vec<String> = messages
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect();
    out.sort();
    out
}

fn imap_read_all(ep: &Endpoint, mode: TlsMode) -> Vec<Vec<u8>> {
    let core = imap::client::Client::new(imap::client::SessionConfig::new(mode, creds(PASSWORD)));
    let mut conn = Connection::open(ep, core, None).expect("connect");
    assert_eq!(conn.next_event().unwrap(), imap::client::Event::Ready);
    conn.core().select("INBOX");
    match conn.next_event().unwrap() {
        imap::client::Event::Selected(s) => {
            assert!(s.uid_validity.is_some(), "{s:?}");
            assert_eq!(s.exists, 2);
        }
        other => panic!("expected Selected, got {other:?}"),
    }
    conn.core().search_after(0);
    let uids = match conn.next_event().unwrap() {
        imap::client::Event::Uids(u) => u,
        other => panic!("expected Uids, got {other:?}"),
    };
    assert_eq!(uids.len(), 2);
    conn.core().fetch(&uids);
    let mut messages = Vec::new();
    loop {
        match conn.next_event().unwrap() {
            imap::client::Event::Message { data, .. } => messages.push(data),
            imap::client::Event::Fetched => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    conn.core().logout();
    assert_eq!(
        conn.next_event().unwrap(),
        imap::client::Event::Closed(imap::client::CloseReason::Logout)
    );
    conn.close();
    messages
}

fn pop3_read_all(ep: &Endpoint, mode: TlsMode) -> Vec<Vec<u8>> {
    let core = pop3::client::Client::new(pop3::client::SessionConfig::new(mode, creds(PASSWORD)));
    let mut conn = Connection::open(ep, core, None).expect("connect");
    assert_eq!(conn.next_event().unwrap(), pop3::client::Event::Ready);
    conn.core().uidl();
    let ids = match conn.next_event().unwrap() {
        pop3::client::Event::Uidl(ids) => ids,
        other => panic!("expected Uidl, got {other:?}"),
    };
    assert_eq!(ids.len(), 2);
    let mut messages = Vec::new();
    for (msg, _) in ids {
        conn.core().retr(msg);
        match conn.next_event().unwrap() {
            pop3::client::Event::Message { data, .. } => messages.push(data),
            other => panic!("expected Message, got {other:?}"),
        }
    }
    conn.core().quit();
    assert_eq!(
        conn.next_event().unwrap(),
        pop3::client::Event::Closed(pop3::client::CloseReason::Quit)
    );
    conn.close();
    messages
}

const BOTH: [&str; 2] = ["first bounce", "second bounce"];

#[test]
fn imaps_and_imap_starttls_read_every_message() {
    let (_dir, dc) = mailbox_with_two();
    let ca = dc.ca_file();
    let got = imap_read_all(
        &endpoint(dc.ports().imaps, true, Some(&ca)),
        TlsMode::Implicit,
    );
    assert_eq!(subjects(&got), BOTH);
    // Dovecot refuses a plain-text login here, so this only works over TLS.
    let got = imap_read_all(
        &endpoint(dc.ports().imap, false, Some(&ca)),
        TlsMode::StartTls,
    );
    assert_eq!(subjects(&got), BOTH);
}

#[test]
fn pop3s_and_pop3_stls_read_every_message() {
    let (_dir, dc) = mailbox_with_two();
    let ca = dc.ca_file();
    let got = pop3_read_all(
        &endpoint(dc.ports().pop3s, true, Some(&ca)),
        TlsMode::Implicit,
    );
    assert_eq!(subjects(&got), BOTH);
    let got = pop3_read_all(
        &endpoint(dc.ports().pop3, false, Some(&ca)),
        TlsMode::StartTls,
    );
    assert_eq!(subjects(&got), BOTH);
}

#[test]
fn an_untrusted_certificate_stops_before_login() {
    let (_dir, dc) = mailbox_with_two();
    let ep = endpoint(dc.ports().imaps, true, None);
    let core = imap::client::Client::new(imap::client::SessionConfig::new(
        TlsMode::Implicit,
        creds(PASSWORD),
    ));
    match Connection::open(&ep, core, None) {
        Err(NetFailure::Tls(e)) => assert!(e.contains("certificate"), "{e}"),
        Err(other) => panic!("expected a TLS failure, got {other}"),
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
    }
    // Over STLS, too: the handshake fails before USER or PASS is written.
    let ep = endpoint(dc.ports().pop3, false, None);
    let core = pop3::client::Client::new(pop3::client::SessionConfig::new(
        TlsMode::StartTls,
        creds(PASSWORD),
    ));
    let mut conn = Connection::open(&ep, core, None).expect("plain TCP connect");
    match conn.next_event() {
        Err(NetFailure::Tls(e)) => assert!(e.contains("certificate"), "{e}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert!(
        !dc.log().contains(&format!("user=<{USER}>")),
        "{}",
        dc.log()
    );
}

#[test]
fn a_wrong_password_is_an_authentication_failure() {
    let (_dir, dc) = mailbox_with_two();
    let ca = dc.ca_file();
    let ep = endpoint(dc.ports().imaps, true, Some(&ca));
    let core = imap::client::Client::new(imap::client::SessionConfig::new(
        TlsMode::Implicit,
        creds("wrong"),
    ));
    let mut conn = Connection::open(&ep, core, None).expect("connect");
    match conn.next_event().unwrap() {
        imap::client::Event::Closed(imap::client::CloseReason::Error(
            imap::client::SessionError::AuthFailed(_),
        )) => {}
        other => panic!("expected an authentication failure, got {other:?}"),
    }
    let ep = endpoint(dc.ports().pop3s, true, Some(&ca));
    let core = pop3::client::Client::new(pop3::client::SessionConfig::new(
        TlsMode::Implicit,
        creds("wrong"),
    ));
    let mut conn = Connection::open(&ep, core, None).expect("connect");
    match conn.next_event().unwrap() {
        pop3::client::Event::Closed(pop3::client::CloseReason::Error(
            pop3::client::SessionError::AuthFailed(_),
        )) => {}
        other => panic!("expected an authentication failure, got {other:?}"),
    }
}

#[test]
fn a_silent_server_runs_into_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold the connection without a greeting.
    let held = Arc::new(std::sync::Mutex::new(None));
    let keep = held.clone();
    std::thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept() {
            *keep.lock().unwrap() = Some(sock);
        }
    });
    let mut config = pop3::client::SessionConfig::new(TlsMode::None, creds(PASSWORD));
    config.timeout = Duration::from_secs(1);
    let ep = endpoint(port, false, None);
    let mut conn = Connection::open(&ep, pop3::client::Client::new(config), None).expect("connect");
    let start = Instant::now();
    match conn.next_event() {
        Err(NetFailure::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    drop(held);
}
