//! Exchange tests: the exact bytes a server sends and the exact bytes the
//! client answers, in the shapes of RFC 1939 §§4-7, RFC 2449, RFC 2595 §4
//! and RFC 5034 §4.

use super::*;
use crate::smtp::auth::AuthMech;

fn creds(mechanism: Option<AuthMech>) -> Credentials {
    Credentials {
        username: "bounces@example.com".into(),
        secret: "s3cret".into(),
        mechanism,
    }
}

fn client(tls: TlsMode, mechanism: Option<AuthMech>) -> Client {
    Client::new(SessionConfig::new(tls, creds(mechanism)))
}

/// Feeds the server's bytes; returns what the client wrote back.
fn step(c: &mut Client, server: &[u8]) -> String {
    c.feed(server);
    String::from_utf8(c.take_output()).unwrap()
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

const GREETING: &[u8] = b"+OK Dovecot ready.\r\n";
const CAPA_USER: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nUSER\r\n.\r\n";

/// Logs in with USER/PASS over implicit TLS.
fn ready_client() -> Client {
    let mut c = client(TlsMode::Implicit, None);
    assert_eq!(step(&mut c, GREETING), "CAPA\r\n");
    assert_eq!(step(&mut c, CAPA_USER), "USER bounces@example.com\r\n");
    assert_eq!(step(&mut c, b"+OK\r\n"), "PASS s3cret\r\n");
    assert_eq!(step(&mut c, b"+OK Logged in.\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    c
}

#[test]
fn user_pass_session_reads_lists_and_deletes() {
    let mut c = ready_client();
    c.stat();
    assert_eq!(String::from_utf8(c.take_output()).unwrap(), "STAT\r\n");
    // Requests made while one is out wait their turn (lock-step).
    c.uidl();
    c.list();
    assert_eq!(c.take_output(), b"");
    assert_eq!(step(&mut c, b"+OK 2 320\r\n"), "UIDL\r\n");
    assert_eq!(
        step(
            &mut c,
            b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n"
        ),
        "LIST\r\n"
    );
    assert_eq!(
        step(&mut c, b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n"),
        ""
    );
    c.top(1, 0);
    assert_eq!(
        step(&mut c, b""),
        "TOP 1 0\r\n",
        "a request made when idle goes out at once"
    );
    c.retr(2);
    c.dele(2);
    c.quit();
    assert_eq!(
        step(&mut c, b"+OK\r\nSubject: a\r\n\r\n.\r\n"),
        "RETR 2\r\n"
    );
    assert_eq!(
        step(
            &mut c,
            b"+OK 200 octets\r\nSubject: b\r\n\r\n..dot\r\n.\r\n"
        ),
        "DELE 2\r\n"
    );
    assert_eq!(step(&mut c, b"+OK message 2 deleted\r\n"), "QUIT\r\n");
    assert!(c.wants_read());
    assert_eq!(step(&mut c, b"+OK Logging out.\r\n"), "");
    assert!(!c.wants_read());
    assert_eq!(
        events(&mut c),
        vec![
            Event::Stat {
                count: 2,
                size: 320
            },
            Event::Uidl(vec![
                (1, "whqtswO00WBw418f9t5JxYwZ".into()),
                (2, "QhdPYR:00WBw1Ph7x7".into())
            ]),
            Event::List(vec![(1, 120), (2, 200)]),
            Event::Top {
                msg: 1,
                data: b"Subject: a\r\n\r\n".to_vec()
            },
            Event::Message {
                msg: 2,
                data: b"Subject: b\r\n\r\n.dot\r\n".to_vec()
            },
            Event::Deleted(2),
            Event::Closed(CloseReason::Quit),
        ]
    );
}

#[test]
fn the_same_session_under_every_chunking() {
    let server: &[u8] = b"+OK Dovecot ready.\r\n\
        +OK\r\nCAPA\r\nTOP\r\nUIDL\r\nUSER\r\n.\r\n\
        +OK\r\n+OK Logged in.\r\n\
        +OK 1 30\r\n\
        +OK\r\n1 a1\r\n.\r\n\
        +OK\r\nSubject: x\r\n\r\n..\r\nbody\r\n.\r\n\
        +OK\r\n+OK bye\r\n";
    let want_out = "CAPA\r\nUSER bounces@example.com\r\nPASS s3cret\r\nSTAT\r\nUIDL\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n";
    let want_events = vec![
        Event::Ready,
        Event::Stat { count: 1, size: 30 },
        Event::Uidl(vec![(1, "a1".into())]),
        Event::Message {
            msg: 1,
            data: b"Subject: x\r\n\r\n.\r\nbody\r\n".to_vec(),
        },
        Event::Deleted(1),
        Event::Closed(CloseReason::Quit),
    ];
    for chunk in [1, 2, 3, 5, 10, 17, server.len()] {
        let mut c = client(TlsMode::Implicit, None);
        c.stat();
        c.uidl();
        c.retr(1);
        c.dele(1);
        c.quit();
        let mut out = Vec::new();
        for piece in server.chunks(chunk) {
            c.feed(piece);
            out.extend(c.take_output());
        }
        assert_eq!(String::from_utf8(out).unwrap(), want_out, "chunk {chunk}");
        assert_eq!(events(&mut c), want_events, "chunk {chunk}");
    }
}

#[test]
fn stls_upgrades_forgets_capabilities_and_then_uses_sasl_plain() {
    let mut c = client(TlsMode::StartTls, None);
    assert_eq!(step(&mut c, GREETING), "CAPA\r\n");
    assert_eq!(
        step(&mut c, b"+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
        "STLS\r\n",
        "nothing about the login goes out before TLS"
    );
    assert_eq!(step(&mut c, b"+OK Begin TLS negotiation now.\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::StartTls]);
    assert!(!c.wants_read(), "the driver runs the handshake first");
    c.tls_started();
    assert_eq!(String::from_utf8(c.take_output()).unwrap(), "CAPA\r\n");
    // RFC 5034 §4: AUTH PLAIN with an initial response of "\0user\0pass".
    assert_eq!(
        step(&mut c, b"+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"),
        "AUTH PLAIN AGJvdW5jZXNAZXhhbXBsZS5jb20AczNjcmV0\r\n"
    );
    assert_eq!(step(&mut c, b"+OK Logged in.\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    assert_eq!(c.capabilities().unwrap().sasl, vec!["PLAIN", "LOGIN"]);
    let trace = c.take_trace().join("\n");
    assert!(trace.contains("C: AUTH PLAIN ***"), "{trace}");
    assert!(!trace.contains("AGJvdW5j"), "{trace}");
}

#[test]
fn stls_required_but_not_offered_sends_no_credentials() {
    let mut c = client(TlsMode::StartTls, None);
    step(&mut c, GREETING);
    assert_eq!(step(&mut c, CAPA_USER), "");
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::Error(SessionError::TlsRequired))]
    );
    // A server without CAPA at all is treated the same.
    let mut c = client(TlsMode::StartTls, None);
    step(&mut c, GREETING);
    assert_eq!(step(&mut c, b"-ERR unknown command\r\n"), "");
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::Error(SessionError::TlsRequired))]
    );
}

#[test]
fn stls_refused_and_injection_end_the_session() {
    let mut c = client(TlsMode::StartTls, None);
    step(&mut c, GREETING);
    step(&mut c, b"+OK\r\nSTLS\r\n.\r\n");
    assert_eq!(step(&mut c, b"-ERR not now\r\n"), "");
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::Error(
            SessionError::StlsRefused("not now".into())
        ))]
    );
    // A reply smuggled in behind the +OK (read in plain text, it would be
    // taken as the answer to the first command sent over TLS).
    let mut c = client(TlsMode::StartTls, None);
    step(&mut c, GREETING);
    step(&mut c, b"+OK\r\nSTLS\r\n.\r\n");
    assert_eq!(step(&mut c, b"+OK Begin TLS\r\n+OK\r\nUSER\r\n.\r\n"), "");
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::Error(
            SessionError::StlsInjection
        ))]
    );
}

#[test]
fn no_credentials_in_plain_text_unless_allowed() {
    let mut c = client(TlsMode::None, None);
    step(&mut c, GREETING);
    assert_eq!(step(&mut c, CAPA_USER), "");
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::Error(
            SessionError::AuthRequiresTls
        ))]
    );
    let mut config = SessionConfig::new(TlsMode::None, creds(None));
    config.allow_plaintext_auth = true;
    let mut c = Client::new(config);
    step(&mut c, GREETING);
    assert_eq!(step(&mut c, CAPA_USER), "USER bounces@example.com\r\n");
}

#[test]
fn user_pass_chosen_is_used_though_sasl_is_offered() {
    let mut config = SessionConfig::new(TlsMode::Implicit, creds(None));
    config.user_pass = true;
    let mut c = Client::new(config);
    step(&mut c, GREETING);
    assert_eq!(
        step(&mut c, b"+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"),
        "USER bounces@example.com\r\n"
    );
    assert_eq!(step(&mut c, b"+OK\r\n"), "PASS s3cret\r\n");
    assert_eq!(step(&mut c, b"+OK Logged in.\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
}

#[test]
fn auth_login_answers_each_prompt() {
    let mut c = client(TlsMode::Implicit, Some(AuthMech::Login));
    step(&mut c, GREETING);
    assert_eq!(
        step(&mut c, b"+OK\r\nSASL PLAIN LOGIN\r\n.\r\n"),
        "AUTH LOGIN\r\n"
    );
    assert_eq!(
        step(&mut c, b"+ VXNlcm5hbWU6\r\n"),
        "Ym91bmNlc0BleGFtcGxlLmNvbQ==\r\n"
    );
    assert_eq!(step(&mut c, b"+ UGFzc3dvcmQ6\r\n"), "czNjcmV0\r\n");
    assert_eq!(step(&mut c, b"+OK Logged in.\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    let trace = c.take_trace().join("\n");
    assert!(
        !trace.contains("czNjcmV0") && !trace.contains("s3cret"),
        "{trace}"
    );
}

#[test]
fn xoauth2_failure_and_unoffered_mechanisms() {
    let mut c = client(TlsMode::Implicit, Some(AuthMech::XOAuth2));
    step(&mut c, GREETING);
    assert_eq!(
        step(&mut c, b"+OK\r\nSASL PLAIN XOAUTH2\r\n.\r\n"),
        "AUTH XOAUTH2 dXNlcj1ib3VuY2VzQGV4YW1wbGUuY29tAWF1dGg9QmVhcmVyIHMzY3JldAEB\r\n"
    );
    // The error challenge is answered with an empty line, then -ERR.
    assert_eq!(step(&mut c, b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"), "\r\n");
    assert_eq!(step(&mut c, b"-ERR [AUTH] Invalid credentials\r\n"), "");
    let ev = events(&mut c);
    assert_eq!(
        ev,
        vec![Event::Closed(CloseReason::Error(SessionError::AuthFailed(
            "[AUTH] Invalid credentials".into()
        )))]
    );

    let mut c = client(TlsMode::Implicit, Some(AuthMech::XOAuth2));
    step(&mut c, GREETING);
    assert_eq!(step(&mut c, CAPA_USER), "");
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::Error(
            SessionError::AuthUnsupported("XOAUTH2")
        ))]
    );
}

#[test]
fn a_refused_password_is_an_auth_failure_and_in_use_is_temporary() {
    let mut c = ready_up_to_pass();
    assert_eq!(step(&mut c, b"-ERR [AUTH] Authentication failed.\r\n"), "");
    let Some(Event::Closed(CloseReason::Error(e))) = c.poll_event() else {
        panic!("expected a close")
    };
    assert_eq!(
        e,
        SessionError::AuthFailed("[AUTH] Authentication failed.".into())
    );
    assert!(!e.is_temporary());
    let mut c = ready_up_to_pass();
    step(
        &mut c,
        b"-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n",
    );
    let Some(Event::Closed(CloseReason::Error(e))) = c.poll_event() else {
        panic!("expected a close")
    };
    assert!(e.is_temporary(), "{e}");
    assert!(SessionError::AuthFailed("[SYS/TEMP] try later".into()).is_temporary());
}

fn ready_up_to_pass() -> Client {
    let mut c = client(TlsMode::Implicit, None);
    step(&mut c, GREETING);
    step(&mut c, CAPA_USER);
    assert_eq!(step(&mut c, b"+OK\r\n"), "PASS s3cret\r\n");
    c
}

#[test]
fn a_refused_request_does_not_end_the_session() {
    let mut c = ready_client();
    c.retr(9);
    c.stat();
    assert_eq!(step(&mut c, b""), "RETR 9\r\n");
    assert_eq!(step(&mut c, b"-ERR no such message\r\n"), "STAT\r\n");
    step(&mut c, b"+OK 0 0\r\n");
    assert_eq!(
        events(&mut c),
        vec![
            Event::Refused {
                command: "RETR 9".into(),
                text: "no such message".into()
            },
            Event::Stat { count: 0, size: 0 }
        ]
    );
}

#[test]
fn greeting_err_and_garbage_end_the_session() {
    let mut c = client(TlsMode::Implicit, None);
    assert_eq!(step(&mut c, b"-ERR [SYS/TEMP] busy\r\n"), "");
    let ev = events(&mut c);
    assert_eq!(
        ev,
        vec![Event::Closed(CloseReason::Error(SessionError::Greeting(
            "[SYS/TEMP] busy".into()
        )))]
    );
    let mut c = client(TlsMode::Implicit, None);
    assert_eq!(step(&mut c, b"220 smtp.example.com ESMTP\r\n"), "");
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Closed(CloseReason::Error(SessionError::Protocol(_)))]
    ));
}

#[test]
fn malformed_listings_end_the_session() {
    for (bytes, what) in [
        (&b"+OK\r\n1 has space\r\n.\r\n"[..], Command::Uidl(None)),
        (b"+OK\r\n1\r\n.\r\n", Command::Uidl(None)),
        (b"+OK\r\nx 12\r\n.\r\n", Command::List(None)),
        (b"+OK two\r\n", Command::Stat),
    ] {
        let mut c = ready_client();
        match what {
            Command::Uidl(_) => c.uidl(),
            Command::List(_) => c.list(),
            _ => c.stat(),
        }
        c.take_output();
        c.feed(bytes);
        let ev = events(&mut c);
        assert!(
            matches!(
                ev.as_slice(),
                [Event::Closed(CloseReason::Error(SessionError::Protocol(_)))]
            ),
            "{what:?}: {ev:?}"
        );
    }
    // A UID of 71 characters is too long (RFC 1939 §7).
    assert!(parse_uid(&"a".repeat(70)).is_some());
    assert!(parse_uid(&"a".repeat(71)).is_none());
}

#[test]
fn a_message_over_the_limit_ends_the_session() {
    let mut config = SessionConfig::new(TlsMode::Implicit, creds(None));
    config.max_message = 16;
    let mut c = Client::new(config);
    step(&mut c, GREETING);
    step(&mut c, b"+OK\r\nUSER\r\n.\r\n");
    step(&mut c, b"+OK\r\n+OK\r\n");
    c.retr(1);
    c.take_output();
    step(&mut c, b"+OK\r\n0123456789\r\n0123456789\r\n.\r\n");
    let ev = events(&mut c);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::Ready, Event::Closed(CloseReason::Error(SessionError::Protocol(e)))]
                if e.0.contains("larger than 16")
        ),
        "{ev:?}"
    );
}

#[test]
fn losing_the_connection_before_quit_is_answered_commits_nothing() {
    let mut c = ready_client();
    c.dele(1);
    step(&mut c, b"+OK\r\n");
    c.connection_lost();
    assert_eq!(
        events(&mut c),
        vec![
            Event::Deleted(1),
            Event::Closed(CloseReason::Error(SessionError::ConnectionLost))
        ]
    );
    let mut c = ready_client();
    c.quit();
    assert_eq!(c.take_output(), b"QUIT\r\n");
    c.connection_lost();
    assert_eq!(events(&mut c), vec![Event::Closed(CloseReason::Quit)]);
}

#[test]
fn quit_refused_means_deletions_may_remain() {
    let mut c = ready_client();
    c.dele(1);
    c.quit();
    step(&mut c, b"+OK\r\n");
    step(&mut c, b"-ERR some deleted messages not removed\r\n");
    assert_eq!(
        events(&mut c),
        vec![
            Event::Deleted(1),
            Event::Closed(CloseReason::Error(SessionError::UpdateFailed(
                "some deleted messages not removed".into()
            )))
        ]
    );
}

#[test]
fn quit_before_login_closes_without_a_word() {
    let mut c = client(TlsMode::Implicit, None);
    c.quit();
    assert_eq!(c.take_output(), b"");
    assert_eq!(events(&mut c), vec![Event::Closed(CloseReason::Quit)]);
    assert!(!c.wants_read());
}

#[test]
fn capabilities_parse_names_and_sasl() {
    let caps =
        Capabilities::parse(b"TOP\r\nuidl\r\nSASL plain XOAUTH2\r\nIMPLEMENTATION x y\r\n\r\n");
    assert!(caps.has("UIDL") && caps.has("top") && caps.has("IMPLEMENTATION"));
    assert!(!caps.has("STLS"));
    assert_eq!(caps.sasl, vec!["PLAIN", "XOAUTH2"]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_server_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..50,
            tls in 0u8..3,
        ) {
            let tls = [TlsMode::Implicit, TlsMode::StartTls, TlsMode::None][tls as usize];
            let mut c = client(tls, None);
            c.stat();
            c.uidl();
            c.retr(1);
            c.quit();
            for piece in bytes.chunks(chunk) {
                c.feed(piece);
                c.take_output();
                while c.poll_event().is_some() {}
            }
        }
    }
}
