//! Exchange tests: the exact bytes an IMAP server sends (in the shapes of
//! RFC 3501 §8 and of Dovecot and NetEase) and the exact bytes the client
//! answers.

use super::*;
use proptest::prelude::*;

fn creds(mechanism: Option<AuthMech>) -> Credentials {
    Credentials {
        username: "bounces@example.com".into(),
        secret: "s3cret".into(),
        mechanism,
    }
}

fn config(tls: TlsMode, mechanism: Option<AuthMech>) -> SessionConfig {
    let mut c = SessionConfig::new(tls, creds(mechanism));
    c.id = vec![
        ("name".into(), "mailshot".into()),
        ("version".into(), "1.0".into()),
    ];
    c
}

fn client(tls: TlsMode, mechanism: Option<AuthMech>) -> Client {
    Client::new(config(tls, mechanism))
}

/// Feeds the server's bytes; returns what the client wrote back.
fn step(c: &mut Client, server: &[u8]) -> String {
    c.feed(server);
    String::from_utf8(c.take_output()).unwrap()
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn closed_with(c: &mut Client) -> SessionError {
    match events(c).pop() {
        Some(Event::Closed(CloseReason::Error(e))) => e,
        other => panic!("expected an error close, got {other:?}"),
    }
}

const DOVECOT_GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n";
const DOVECOT_LOGGED_IN: &[u8] = b"A1 OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE] Logged in\r\n";

const MAIL_1: &[u8] =
    b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n\r\nbody\r\n";
const MAIL_2: &[u8] =
    b"From: fbl@example.net\r\nSubject: report\r\n\r\n* 1 FETCH (fake)\r\nA9 OK fake\r\n";

fn fetch_response(seq: u32, uid: u32, mail: &[u8]) -> Vec<u8> {
    let mut v = format!("* {seq} FETCH (UID {uid} BODY[] {{{}}}\r\n", mail.len()).into_bytes();
    v.extend_from_slice(mail);
    v.extend_from_slice(b")\r\n");
    v
}

const SELECT_INBOX: &[u8] = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
    * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
    * 3 EXISTS\r\n* 0 RECENT\r\n\
    * OK [UIDVALIDITY 1733540000] UIDs valid\r\n\
    * OK [UIDNEXT 8] Predicted next UID\r\n\
    A3 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n";

/// A Dovecot session over implicit TLS up to Ready.
fn dovecot_ready() -> Client {
    let mut c = client(TlsMode::Implicit, None);
    // The greeting carries the capabilities: no CAPABILITY command; SASL-IR
    // lets the PLAIN response ride on the command (RFC 4959).
    assert_eq!(
        step(&mut c, DOVECOT_GREETING),
        "A1 AUTHENTICATE PLAIN AGJvdW5jZXNAZXhhbXBsZS5jb20AczNjcmV0\r\n"
    );
    // The OK carries the new capabilities: straight to ID (RFC 2971 §3.1).
    assert_eq!(
        step(&mut c, DOVECOT_LOGGED_IN),
        "A2 ID (\"name\" \"mailshot\" \"version\" \"1.0\")\r\n"
    );
    assert_eq!(
        step(
            &mut c,
            b"* ID (\"name\" \"Dovecot\")\r\nA2 OK ID completed (0.001 + 0.000 secs).\r\n"
        ),
        ""
    );
    assert_eq!(events(&mut c), vec![Event::Ready]);
    assert_eq!(
        c.server_id(),
        &[("name".to_string(), "Dovecot".to_string())]
    );
    assert!(c.has_capability("MOVE") && c.has_capability("UIDPLUS"));
    c
}

#[test]
fn dovecot_session_selects_searches_fetches_moves_and_logs_out() {
    let mut c = dovecot_ready();
    c.select("INBOX");
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A3 SELECT INBOX\r\n"
    );
    assert_eq!(step(&mut c, SELECT_INBOX), "");
    assert_eq!(
        events(&mut c),
        vec![Event::Selected(Selected {
            uid_validity: Some(1733540000),
            uid_next: Some(8),
            exists: 3
        })]
    );
    c.search_after(4);
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A4 UID SEARCH UID 5:*\r\n"
    );
    assert_eq!(
        step(&mut c, b"* SEARCH 7 5\r\nA4 OK Search completed.\r\n"),
        ""
    );
    assert_eq!(events(&mut c), vec![Event::Uids(vec![5, 7])]);
    c.fetch(&[5, 7]);
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A5 UID FETCH 5,7 (UID BODY.PEEK[])\r\n"
    );
    let mut server = fetch_response(2, 5, MAIL_1);
    // Bytes inside a literal that look like responses are message text.
    server.extend(fetch_response(3, 7, MAIL_2));
    // An unsolicited flag update in between carries no body.
    server.extend_from_slice(b"* 3 FETCH (FLAGS (\\Seen))\r\n");
    server.extend_from_slice(b"A5 OK Fetch completed.\r\n");
    assert_eq!(step(&mut c, &server), "");
    assert_eq!(
        events(&mut c),
        vec![
            Event::Message {
                uid: 5,
                data: MAIL_1.to_vec()
            },
            Event::Message {
                uid: 7,
                data: MAIL_2.to_vec()
            },
            Event::Fetched
        ]
    );
    c.move_to(&[5, 7], "Processed");
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A6 UID MOVE 5,7 Processed\r\n"
    );
    assert_eq!(
        step(
            &mut c,
            b"* OK [COPYUID 1733540001 5,7 1:2] Moved UIDs.\r\n* 2 EXPUNGE\r\n* 2 EXPUNGE\r\nA6 OK Move completed.\r\n"
        ),
        ""
    );
    assert_eq!(events(&mut c), vec![Event::Moved(vec![5, 7])]);
    c.logout();
    assert_eq!(String::from_utf8(c.take_output()).unwrap(), "A7 LOGOUT\r\n");
    assert_eq!(
        step(&mut c, b"* BYE Logging out\r\nA7 OK Logout completed.\r\n"),
        ""
    );
    assert_eq!(events(&mut c), vec![Event::Closed(CloseReason::Logout)]);
    assert!(!c.wants_read());
}

#[test]
fn the_same_session_under_every_chunking() {
    let mut server = Vec::new();
    server.extend_from_slice(DOVECOT_GREETING);
    server.extend_from_slice(DOVECOT_LOGGED_IN);
    server.extend_from_slice(b"A2 OK ID completed.\r\n");
    server.extend_from_slice(SELECT_INBOX);
    server.extend_from_slice(b"* SEARCH 5\r\nA4 OK done\r\n");
    server.extend(fetch_response(2, 5, MAIL_2));
    server.extend_from_slice(b"A5 OK done\r\n* BYE bye\r\nA6 OK done\r\n");
    let want_out = "A1 AUTHENTICATE PLAIN AGJvdW5jZXNAZXhhbXBsZS5jb20AczNjcmV0\r\n\
        A2 ID (\"name\" \"mailshot\" \"version\" \"1.0\")\r\n\
        A3 SELECT INBOX\r\nA4 UID SEARCH UID 1:*\r\nA5 UID FETCH 5 (UID BODY.PEEK[])\r\nA6 LOGOUT\r\n";
    for chunk in [1, 2, 3, 5, 10, 64, server.len()] {
        let mut c = client(TlsMode::Implicit, None);
        c.select("INBOX");
        c.search_after(0);
        c.fetch(&[5]);
        c.logout();
        let mut out = Vec::new();
        let mut ev = Vec::new();
        for piece in server.chunks(chunk) {
            c.feed(piece);
            out.extend(c.take_output());
            ev.extend(events(&mut c));
        }
        assert_eq!(String::from_utf8(out).unwrap(), want_out, "chunk {chunk}");
        assert_eq!(
            ev,
            vec![
                Event::Ready,
                Event::Selected(Selected {
                    uid_validity: Some(1733540000),
                    uid_next: Some(8),
                    exists: 3
                }),
                Event::Uids(vec![5]),
                Event::Message {
                    uid: 5,
                    data: MAIL_2.to_vec()
                },
                Event::Fetched,
                Event::Closed(CloseReason::Logout)
            ],
            "chunk {chunk}"
        );
    }
}

#[test]
fn netease_gets_login_then_id_before_select() {
    // imap.163.com offers no AUTH=PLAIN and answers SELECT "Unsafe Login"
    // to clients that have not sent ID.
    let mut c = client(TlsMode::Implicit, None);
    c.select("INBOX");
    assert_eq!(
        step(
            &mut c,
            b"* OK Coremail System IMap Server Ready(163com[10.110.1.1])\r\n"
        ),
        "A1 CAPABILITY\r\n"
    );
    assert_eq!(
        step(
            &mut c,
            b"* CAPABILITY IMAP4rev1 XLIST SPECIAL-USE ID LITERAL+ STARTTLS XAPPLEPUSHSERVICE UIDPLUS X-CM-EXT-1 \r\nA1 OK CAPABILITY completed\r\n"
        ),
        "A2 LOGIN bounces@example.com s3cret\r\n"
    );
    assert_eq!(
        step(&mut c, b"A2 OK LOGIN completed\r\n"),
        "A3 CAPABILITY\r\n"
    );
    assert_eq!(
        step(
            &mut c,
            b"* CAPABILITY IMAP4rev1 XLIST SPECIAL-USE ID LITERAL+ STARTTLS XAPPLEPUSHSERVICE UIDPLUS X-CM-EXT-1 \r\nA3 OK CAPABILITY completed\r\n"
        ),
        "A4 ID (\"name\" \"mailshot\" \"version\" \"1.0\")\r\n"
    );
    assert_eq!(
        step(
            &mut c,
            b"* ID (\"name\" \"Coremail Imap\" \"vendor\" \"Mailtech\" \"TransID\" \"x\")\r\nA4 OK ID completed\r\n"
        ),
        "A5 SELECT INBOX\r\n",
        "the SELECT asked for early goes out only after ID"
    );
    assert_eq!(events(&mut c), vec![Event::Ready]);
    let trace = c.take_trace().join("\n");
    assert!(trace.contains("C: A2 LOGIN ***"), "{trace}");
    assert!(!trace.contains("s3cret"), "{trace}");
}

#[test]
fn without_sasl_ir_plain_waits_for_the_continuation_and_no_id_without_the_capability() {
    let mut c = client(TlsMode::Implicit, None);
    assert_eq!(
        step(&mut c, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"),
        "A1 AUTHENTICATE PLAIN\r\n"
    );
    // RFC 3501 §6.2.2: the initial response after an empty challenge.
    assert_eq!(
        step(&mut c, b"+ \r\n"),
        "AGJvdW5jZXNAZXhhbXBsZS5jb20AczNjcmV0\r\n"
    );
    assert_eq!(
        step(&mut c, b"A1 OK [CAPABILITY IMAP4rev1 UIDPLUS] done\r\n"),
        ""
    );
    assert_eq!(events(&mut c), vec![Event::Ready]);
}

#[test]
fn starttls_upgrades_then_asks_capabilities_again() {
    let mut c = client(TlsMode::StartTls, None);
    assert_eq!(
        step(
            &mut c,
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS LOGINDISABLED] Dovecot ready.\r\n"
        ),
        "A1 STARTTLS\r\n"
    );
    assert_eq!(step(&mut c, b"A1 OK Begin TLS negotiation now.\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::StartTls]);
    assert!(!c.wants_read());
    c.tls_started();
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A2 CAPABILITY\r\n"
    );
    assert_eq!(
        step(
            &mut c,
            b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\nA2 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"
        ),
        "A3 AUTHENTICATE PLAIN AGJvdW5jZXNAZXhhbXBsZS5jb20AczNjcmV0\r\n"
    );
    assert_eq!(step(&mut c, b"A3 OK Logged in\r\n"), "A4 CAPABILITY\r\n");
}

#[test]
fn starttls_missing_refused_or_injected_ends_the_session() {
    let mut c = client(TlsMode::StartTls, None);
    assert_eq!(
        step(&mut c, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"),
        ""
    );
    assert_eq!(closed_with(&mut c), SessionError::TlsRequired);

    let mut c = client(TlsMode::StartTls, None);
    step(&mut c, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
    step(&mut c, b"A1 NO not now\r\n");
    assert_eq!(
        closed_with(&mut c),
        SessionError::StartTlsRefused("not now".into())
    );

    let mut c = client(TlsMode::StartTls, None);
    step(&mut c, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
    assert_eq!(
        step(&mut c, b"A1 OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"),
        ""
    );
    assert_eq!(closed_with(&mut c), SessionError::StartTlsInjection);

    // PREAUTH leaves no chance to upgrade.
    let mut c = client(TlsMode::StartTls, None);
    step(&mut c, b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(closed_with(&mut c), SessionError::TlsRequired);
}

#[test]
fn no_credentials_in_plain_text_unless_allowed() {
    let mut c = client(TlsMode::None, None);
    assert_eq!(
        step(&mut c, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"),
        ""
    );
    assert_eq!(closed_with(&mut c), SessionError::AuthRequiresTls);
    let mut cfg = config(TlsMode::None, None);
    cfg.allow_plaintext_auth = true;
    let mut c = Client::new(cfg);
    assert_eq!(
        step(&mut c, b"* OK [CAPABILITY IMAP4rev1] hi\r\n"),
        "A1 LOGIN bounces@example.com s3cret\r\n"
    );
}

#[test]
fn login_refusals_and_unusable_logins() {
    let mut c = client(TlsMode::Implicit, None);
    step(&mut c, DOVECOT_GREETING);
    step(
        &mut c,
        b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
    );
    assert_eq!(
        closed_with(&mut c),
        SessionError::AuthFailed("Authentication failed.".into())
    );
    let mut c = client(TlsMode::Implicit, None);
    step(&mut c, b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n");
    assert!(matches!(
        closed_with(&mut c),
        SessionError::AuthUnsupported(_)
    ));
    let mut c = client(TlsMode::Implicit, Some(AuthMech::XOAuth2));
    step(&mut c, DOVECOT_GREETING);
    assert!(matches!(
        closed_with(&mut c),
        SessionError::AuthUnsupported(_)
    ));
}

#[test]
fn xoauth2_error_challenge_is_answered_empty() {
    let mut c = client(TlsMode::Implicit, Some(AuthMech::XOAuth2));
    assert_eq!(
        step(
            &mut c,
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN] Gimap ready\r\n"
        ),
        "A1 AUTHENTICATE XOAUTH2 dXNlcj1ib3VuY2VzQGV4YW1wbGUuY29tAWF1dGg9QmVhcmVyIHMzY3JldAEB\r\n"
    );
    assert_eq!(step(&mut c, b"+ eyJzdGF0dXMiOiI0MDAifQ==\r\n"), "\r\n");
    step(
        &mut c,
        b"A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n",
    );
    assert_eq!(
        closed_with(&mut c),
        SessionError::AuthFailed("Invalid credentials (Failure)".into())
    );
    let trace = c.take_trace().join("\n");
    assert!(trace.contains("AUTHENTICATE XOAUTH2 ***"), "{trace}");
    assert!(!trace.contains("dXNlcj1"), "{trace}");
}

#[test]
fn a_password_that_needs_a_literal_waits_for_the_continuation() {
    let mut cfg = config(TlsMode::Implicit, None);
    cfg.credentials.secret = "pässwörd".into();
    let mut c = Client::new(cfg);
    // Not ASCII: sent as a synchronizing literal (RFC 3501 §4.3).
    assert_eq!(
        step(&mut c, b"* OK [CAPABILITY IMAP4rev1] hi\r\n"),
        "A1 LOGIN bounces@example.com {10}\r\n"
    );
    assert_eq!(
        step(&mut c, b"+ OK\r\n"),
        "pässwörd\r\n",
        "the literal goes out only after the server's +"
    );
    assert_eq!(step(&mut c, b"A1 OK [CAPABILITY IMAP4rev1] ok\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    let trace = c.take_trace().join("\n");
    assert!(!trace.contains("pässwörd"), "{trace}");
}

#[test]
fn long_fetches_go_out_in_batches_and_end_once() {
    let mut c = dovecot_ready();
    let uids: Vec<u32> = (1..=(FETCH_BATCH as u32 + 3)).collect();
    c.fetch(&uids);
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        format!("A3 UID FETCH 1:{FETCH_BATCH} (UID BODY.PEEK[])\r\n")
    );
    let mut server = fetch_response(1, 1, MAIL_1);
    server.extend_from_slice(b"A3 OK done\r\n");
    assert_eq!(
        step(&mut c, &server),
        format!(
            "A4 UID FETCH {}:{} (UID BODY.PEEK[])\r\n",
            FETCH_BATCH + 1,
            FETCH_BATCH + 3
        )
    );
    assert_eq!(
        events(&mut c),
        vec![Event::Message {
            uid: 1,
            data: MAIL_1.to_vec()
        }],
        "no Fetched between batches"
    );
    step(&mut c, b"A4 OK done\r\n");
    assert_eq!(events(&mut c), vec![Event::Fetched]);
}

#[test]
fn a_second_select_does_not_inherit_the_first_uidvalidity() {
    let mut c = dovecot_ready();
    c.select("INBOX");
    c.take_output();
    step(&mut c, SELECT_INBOX);
    events(&mut c);
    c.select("Junk");
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A4 SELECT Junk\r\n"
    );
    step(
        &mut c,
        b"* 0 EXISTS\r\nA4 OK [READ-WRITE] Select completed.\r\n",
    );
    assert_eq!(
        events(&mut c),
        vec![Event::Selected(Selected {
            uid_validity: None,
            uid_next: None,
            exists: 0
        })]
    );
}

#[test]
fn search_above_the_highest_uid_returns_nothing_new() {
    // "UID 8:*" when the highest UID is 7 matches 7 (RFC 3501 §9: "*" is
    // the largest number in use): it is not new.
    let mut c = dovecot_ready();
    c.search_after(7);
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A3 UID SEARCH UID 8:*\r\n"
    );
    step(&mut c, b"* SEARCH 7\r\nA3 OK done\r\n");
    assert_eq!(events(&mut c), vec![Event::Uids(vec![])]);
}

#[test]
fn without_move_a_move_is_copy_store_expunge() {
    let mut c = client(TlsMode::Implicit, None);
    step(
        &mut c,
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n",
    );
    step(&mut c, b"A1 OK [CAPABILITY IMAP4rev1] in\r\n");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    c.move_to(&[3, 4, 9], "Bounces/Done");
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A2 UID COPY 3:4,9 Bounces/Done\r\n"
    );
    assert_eq!(
        step(&mut c, b"A2 OK Copy completed.\r\n"),
        "A3 UID STORE 3:4,9 +FLAGS.SILENT (\\Deleted)\r\n"
    );
    assert_eq!(
        step(&mut c, b"A3 OK Store completed.\r\n"),
        "A4 EXPUNGE\r\n"
    );
    assert_eq!(events(&mut c), vec![]);
    assert_eq!(
        step(&mut c, b"* 3 EXPUNGE\r\nA4 OK Expunge completed.\r\n"),
        ""
    );
    assert_eq!(events(&mut c), vec![Event::Moved(vec![3, 4, 9])]);
}

#[test]
fn a_refused_copy_deletes_nothing() {
    let mut c = client(TlsMode::Implicit, None);
    step(
        &mut c,
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n",
    );
    step(&mut c, b"A1 OK [CAPABILITY IMAP4rev1] in\r\n");
    events(&mut c);
    c.move_to(&[3], "Missing");
    c.search_after(0);
    c.take_output();
    assert_eq!(
        step(
            &mut c,
            b"A2 NO [TRYCREATE] Mailbox doesn't exist: Missing\r\n"
        ),
        "A3 UID SEARCH UID 1:*\r\n",
        "no STORE, no EXPUNGE; the next request goes on"
    );
    assert_eq!(
        events(&mut c),
        vec![Event::Refused {
            command: "A2 UID COPY 3 Missing".into(),
            text: "Mailbox doesn't exist: Missing".into()
        }]
    );
}

#[test]
fn folder_names_go_out_in_modified_utf7() {
    let mut c = dovecot_ready();
    c.select("退信");
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A3 SELECT &kABP4Q-\r\n"
    );
    step(&mut c, b"A3 OK [READ-WRITE] done\r\n");
    c.move_to(&[1], "已处理");
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A4 UID MOVE 1 &XfJZBHQG-\r\n"
    );
}

#[test]
fn delete_uses_uid_expunge_with_uidplus() {
    let mut c = dovecot_ready();
    c.delete(&[5]);
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "A3 UID STORE 5 +FLAGS.SILENT (\\Deleted)\r\n"
    );
    assert_eq!(
        step(&mut c, b"A3 OK Store completed.\r\n"),
        "A4 UID EXPUNGE 5\r\n"
    );
    step(&mut c, b"* 1 EXPUNGE\r\nA4 OK Expunge completed.\r\n");
    assert_eq!(events(&mut c), vec![Event::Deleted(vec![5])]);
}

#[test]
fn a_message_over_the_limit_ends_the_session() {
    let mut cfg = config(TlsMode::Implicit, None);
    cfg.max_message = 200;
    let mut c = Client::new(cfg);
    step(
        &mut c,
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n",
    );
    step(&mut c, b"A1 OK [CAPABILITY IMAP4rev1] in\r\n");
    events(&mut c);
    c.fetch(&[1]);
    c.take_output();
    let big = vec![b'x'; 300];
    step(&mut c, &fetch_response(1, 1, &big));
    let e = closed_with(&mut c);
    assert!(
        matches!(&e, SessionError::Protocol(t) if t.contains("larger than 200")),
        "{e:?}"
    );
}

#[test]
fn unsolicited_bye_and_stray_tags_end_the_session() {
    let mut c = dovecot_ready();
    c.select("INBOX");
    c.take_output();
    step(&mut c, b"* BYE Server shutting down.\r\n");
    assert_eq!(
        closed_with(&mut c),
        SessionError::Bye("Server shutting down.".into())
    );
    let mut c = dovecot_ready();
    c.select("INBOX");
    c.take_output();
    step(&mut c, b"A9 OK what\r\n");
    assert!(matches!(closed_with(&mut c), SessionError::Protocol(_)));
    let mut c = client(TlsMode::Implicit, None);
    step(&mut c, b"* BYE Too many connections\r\n");
    assert_eq!(
        closed_with(&mut c),
        SessionError::Greeting("Too many connections".into())
    );
    let mut c = client(TlsMode::Implicit, None);
    step(&mut c, b"+OK POP3 ready\r\n");
    assert!(matches!(closed_with(&mut c), SessionError::Protocol(_)));
}

#[test]
fn an_untagged_line_imap_codec_cannot_read_is_skipped() {
    let mut c = dovecot_ready();
    c.select("INBOX");
    c.take_output();
    step(&mut c, b"* XWHATEVER (((\r\n");
    step(&mut c, SELECT_INBOX);
    assert!(matches!(events(&mut c).as_slice(), [Event::Selected(_)]));
}

#[test]
fn losing_the_connection_before_logout_is_an_error() {
    let mut c = dovecot_ready();
    c.connection_lost();
    assert_eq!(closed_with(&mut c), SessionError::ConnectionLost);
    let mut c = dovecot_ready();
    c.logout();
    c.take_output();
    c.connection_lost();
    assert_eq!(events(&mut c), vec![Event::Closed(CloseReason::Logout)]);
}

proptest! {
    #[test]
    fn arbitrary_server_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..50,
    ) {
        let mut c = dovecot_ready();
        c.select("INBOX");
        c.search_after(1);
        c.fetch(&[1, 2]);
        for piece in bytes.chunks(chunk) {
            c.feed(piece);
            c.take_output();
            while c.poll_event().is_some() {}
        }
    }

    #[test]
    fn arbitrary_greetings_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut c = client(TlsMode::StartTls, None);
        c.feed(&bytes);
        while c.poll_event().is_some() {}
    }
}
