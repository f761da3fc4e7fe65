//! Tests of the sans-I/O client: scripted server bytes in, the commands it
//! writes and the events it reports out, byte by byte.

use super::*;

const EHLO_FULL: &str = "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n";
const EHLO_PIPE: &str = "250-mx.test\r\n250-PIPELINING\r\n250 SIZE\r\n";
const EHLO_PLAIN: &str = "250 mx.test\r\n";

fn config(tls: TlsMode) -> SessionConfig {
    SessionConfig::new("client.test", tls)
}

fn out(c: &mut Client) -> String {
    String::from_utf8(c.take_output()).unwrap()
}

fn feed(c: &mut Client, server: &str) -> String {
    c.feed(server.as_bytes());
    out(c)
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn outcomes(c: &mut Client) -> Vec<TxOutcome> {
    events(c)
        .into_iter()
        .filter_map(|e| match e {
            Event::Outcome(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn tx(id: u64, rcpts: &[&str], body: &str) -> Transaction {
    Transaction {
        id,
        mail_from: "from@a.test".into(),
        rcpt_to: rcpts.iter().map(|s| s.to_string()).collect(),
        data: Arc::new(body.as_bytes().to_vec().into()),
        eight_bit: false,
        smtputf8: false,
        envid: None,
    }
}

fn r(code: u16, text: &str) -> Reply {
    Reply::new(code, text)
}

/// A client past greeting and EHLO, with its events drained.
fn ready_with(cfg: SessionConfig, ehlo: &str) -> Client {
    let mut c = Client::new(cfg);
    assert_eq!(
        feed(&mut c, "220 mx.test ESMTP\r\n"),
        "EHLO client.test\r\n"
    );
    assert_eq!(feed(&mut c, ehlo), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    c
}

fn ready(ehlo: &str) -> Client {
    ready_with(config(TlsMode::None), ehlo)
}

fn closed_error(c: &mut Client) -> SessionError {
    match events(&mut c.clone_events()).pop() {
        Some(Event::Closed(CloseReason::Error(e))) => e,
        other => panic!("expected Closed(Error), got {other:?}"),
    }
}

impl Client {
    /// Test helper: a throwaway client holding this one's events.
    fn clone_events(&mut self) -> Client {
        let mut c = Client::new(self.config.clone());
        c.events = std::mem::take(&mut self.events);
        c
    }
}

#[test]
fn greeting_ehlo_ready_with_multiline_greeting() {
    let mut c = Client::new(config(TlsMode::None));
    assert!(c.wants_read());
    assert_eq!(out(&mut c), "");
    assert_eq!(feed(&mut c, "220-mx.test ESMTP\r\n220-"), "");
    assert_eq!(
        feed(&mut c, "no UCE\r\n220 hello\r\n"),
        "EHLO client.test\r\n"
    );
    assert_eq!(feed(&mut c, EHLO_FULL), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    let caps = c.capabilities().unwrap();
    assert!(caps.pipelining && caps.chunking && caps.smtputf8);
    assert!(c.can_submit());
    assert!(!c.wants_read());
    assert!(!c.is_tls());
}

#[test]
fn greeting_554_quits_with_greeting_error() {
    let mut c = Client::new(config(TlsMode::None));
    assert_eq!(feed(&mut c, "554 5.7.1 go away\r\n"), "QUIT\r\n");
    assert_eq!(
        closed_error(&mut c),
        SessionError::Greeting(Reply {
            code: 554,
            enhanced: Some(crate::smtp::reply::EnhancedCode {
                class: 5,
                subject: 7,
                detail: 1
            }),
            lines: vec!["go away".into()]
        })
    );
    assert!(!c.wants_read());
    assert_eq!(feed(&mut c, "250 ignored\r\n"), "");
    assert!(events(&mut c).is_empty());
}

#[test]
fn ehlo_5xx_falls_back_to_helo_and_lock_step() {
    let mut c = Client::new(config(TlsMode::None));
    feed(&mut c, "220 old\r\n");
    assert_eq!(
        feed(&mut c, "502 unknown command\r\n"),
        "HELO client.test\r\n"
    );
    assert_eq!(feed(&mut c, "250 old.test\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    assert_eq!(c.capabilities().unwrap().greeting, "old.test");
    c.submit(tx(7, &["b@b.test"], "Subject: x\r\n\r\n.hi\r\n"));
    // No PIPELINING: one command per write; no SIZE parameter.
    assert_eq!(out(&mut c), "MAIL FROM:<from@a.test>\r\n");
    assert_eq!(feed(&mut c, "250 ok\r\n"), "RCPT TO:<b@b.test>\r\n");
    assert_eq!(feed(&mut c, "250 ok\r\n"), "DATA\r\n");
    assert_eq!(c.read_timeout(), Duration::from_secs(300));
    assert_eq!(
        feed(&mut c, "354 go\r\n"),
        "Subject: x\r\n\r\n..hi\r\n.\r\n"
    );
    assert_eq!(c.read_timeout(), Duration::from_secs(600));
    assert_eq!(feed(&mut c, "250 queued as X\r\n"), "");
    let o = outcomes(&mut c);
    assert_eq!(
        o,
        vec![TxOutcome {
            id: 7,
            mail: Some(r(250, "ok")),
            rcpts: vec![("b@b.test".into(), Some(r(250, "ok")))],
            result: TxResult::Accepted(r(250, "queued as X")),
        }]
    );
    c.quit();
    assert_eq!(out(&mut c), "QUIT\r\n");
    assert_eq!(feed(&mut c, "221 bye\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Closed(CloseReason::Quit)]);
    assert!(!c.wants_read());
}

#[test]
fn ehlo_4xx_is_a_helo_error() {
    let mut c = Client::new(config(TlsMode::None));
    feed(&mut c, "220 mx\r\n");
    assert_eq!(feed(&mut c, "450 busy\r\n"), "QUIT\r\n");
    assert_eq!(closed_error(&mut c), SessionError::Helo(r(450, "busy")));
}

#[test]
fn starttls_required_but_not_offered() {
    let mut c = Client::new(config(TlsMode::StartTls));
    feed(&mut c, "220 mx\r\n");
    assert_eq!(feed(&mut c, EHLO_PIPE), "QUIT\r\n");
    assert_eq!(closed_error(&mut c), SessionError::TlsRequired);
}

#[test]
fn starttls_upgrade_forgets_capabilities_and_says_ehlo_again() {
    let mut c = Client::new(config(TlsMode::StartTls));
    feed(&mut c, "220 mx\r\n");
    assert_eq!(
        feed(&mut c, "250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"),
        "STARTTLS\r\n"
    );
    assert_eq!(feed(&mut c, "220 2.0.0 ready\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::StartTls]);
    assert!(!c.wants_read(), "the driver runs the handshake now");
    assert!(!c.is_tls());
    c.tls_started();
    assert!(c.is_tls());
    assert!(c.capabilities().is_none());
    assert_eq!(out(&mut c), "EHLO client.test\r\n");
    assert_eq!(feed(&mut c, EHLO_PIPE), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    assert!(c.capabilities().unwrap().pipelining);
    let trace = c.take_trace();
    assert_eq!(
        trace,
        vec![
            "S: 220 mx",
            "C: EHLO client.test",
            "S: 250-mx",
            "S: 250-STARTTLS",
            "S: 250 AUTH PLAIN",
            "C: STARTTLS",
            "S: 220 2.0.0 ready",
            "-- TLS started",
            "C: EHLO client.test",
            "S: 250-mx.test",
            "S: 250-PIPELINING",
            "S: 250 SIZE",
        ]
    );
}

#[test]
fn starttls_injection_is_refused_in_same_or_later_read() {
    let ehlo = "250-mx\r\n250 STARTTLS\r\n";
    let mut c = Client::new(config(TlsMode::StartTls));
    feed(&mut c, "220 mx\r\n");
    feed(&mut c, ehlo);
    assert_eq!(feed(&mut c, "220 go ahead\r\n250-injected\r\n"), "");
    assert_eq!(closed_error(&mut c), SessionError::StartTlsInjection);
    c.tls_started();
    assert_eq!(out(&mut c), "", "no EHLO after an injection");

    let mut c = Client::new(config(TlsMode::StartTls));
    feed(&mut c, "220 mx\r\n");
    feed(&mut c, ehlo);
    feed(&mut c, "220 go ahead\r\n");
    assert_eq!(events(&mut c), vec![Event::StartTls]);
    c.feed(b"2");
    assert_eq!(closed_error(&mut c), SessionError::StartTlsInjection);
}

#[test]
fn starttls_refused() {
    let mut c = Client::new(config(TlsMode::StartTls));
    feed(&mut c, "220 mx\r\n");
    feed(&mut c, "250-mx\r\n250 STARTTLS\r\n");
    assert_eq!(feed(&mut c, "454 4.7.0 TLS not available\r\n"), "QUIT\r\n");
    assert!(matches!(
        closed_error(&mut c),
        SessionError::StartTlsRefused(Reply { code: 454, .. })
    ));
}

fn creds(mech: Option<AuthMech>) -> Credentials {
    Credentials {
        username: "me@163.com".into(),
        secret: "s3cret!".into(),
        mechanism: mech,
    }
}

#[test]
fn auth_over_plain_text_is_refused_before_anything_secret() {
    let mut cfg = config(TlsMode::None);
    cfg.credentials = Some(creds(None));
    let mut c = Client::new(cfg);
    feed(&mut c, "220 mx\r\n");
    assert_eq!(
        feed(&mut c, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n"),
        "QUIT\r\n"
    );
    assert_eq!(closed_error(&mut c), SessionError::AuthRequiresTls);
}

#[test]
fn auth_plain_over_implicit_tls_is_redacted_in_the_trace() {
    let mut cfg = config(TlsMode::Implicit);
    cfg.credentials = Some(creds(None));
    let mut c = Client::new(cfg);
    assert!(c.is_tls());
    feed(&mut c, "220 mx\r\n");
    let plain = auth::plain_initial("me@163.com", "s3cret!");
    assert_eq!(
        feed(&mut c, "250-mx\r\n250 AUTH LOGIN PLAIN\r\n"),
        format!("AUTH PLAIN {plain}\r\n")
    );
    assert!(events(&mut c).is_empty(), "not ready before 235");
    assert_eq!(feed(&mut c, "235 2.7.0 ok\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    let trace = c.take_trace().join("\n");
    assert!(trace.contains("C: AUTH PLAIN ***"), "{trace}");
    assert!(
        !trace.contains(&plain) && !trace.contains("s3cret"),
        "{trace}"
    );
}

#[test]
fn auth_login_answers_prompts_and_hides_them() {
    let mut cfg = config(TlsMode::None);
    cfg.credentials = Some(creds(Some(AuthMech::Login)));
    cfg.allow_plaintext_auth = true;
    let mut c = Client::new(cfg);
    feed(&mut c, "220 mx\r\n");
    assert_eq!(
        feed(&mut c, "250-mx\r\n250 AUTH=LOGIN PLAIN\r\n"),
        "AUTH LOGIN\r\n"
    );
    assert_eq!(feed(&mut c, "334 VXNlcm5hbWU6\r\n"), "bWVAMTYzLmNvbQ==\r\n");
    assert_eq!(feed(&mut c, "334 UGFzc3dvcmQ6\r\n"), "czNjcmV0IQ==\r\n");
    assert_eq!(feed(&mut c, "235 ok\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    let trace = c.take_trace();
    assert_eq!(
        trace[trace.len() - 6..],
        [
            "C: AUTH LOGIN",
            "S: 334 VXNlcm5hbWU6",
            "C: ***",
            "S: 334 UGFzc3dvcmQ6",
            "C: ***",
            "S: 235 ok",
        ]
    );
}

#[test]
fn auth_failure_and_unsupported() {
    let mut cfg = config(TlsMode::Implicit);
    cfg.credentials = Some(creds(None));
    let mut c = Client::new(cfg.clone());
    feed(&mut c, "220 mx\r\n");
    feed(&mut c, "250-mx\r\n250 AUTH PLAIN\r\n");
    assert_eq!(
        feed(&mut c, "535 5.7.8 Authentication credentials invalid\r\n"),
        "QUIT\r\n"
    );
    assert!(matches!(
        closed_error(&mut c),
        SessionError::AuthFailed(Reply { code: 535, .. })
    ));

    let mut c = Client::new(cfg.clone());
    feed(&mut c, "220 mx\r\n");
    assert_eq!(feed(&mut c, "250-mx\r\n250 AUTH CRAM-MD5\r\n"), "QUIT\r\n");
    assert_eq!(closed_error(&mut c), SessionError::AuthUnsupported);

    // A forced mechanism that is not offered is unsupported too.
    cfg.credentials = Some(creds(Some(AuthMech::XOAuth2)));
    let mut c = Client::new(cfg);
    feed(&mut c, "220 mx\r\n");
    assert_eq!(feed(&mut c, "250-mx\r\n250 AUTH PLAIN\r\n"), "QUIT\r\n");
    assert_eq!(closed_error(&mut c), SessionError::AuthUnsupported);
}

#[test]
fn xoauth2_error_challenge_gets_an_empty_line() {
    let mut cfg = config(TlsMode::Implicit);
    cfg.credentials = Some(creds(Some(AuthMech::XOAuth2)));
    let mut c = Client::new(cfg);
    feed(&mut c, "220 mx\r\n");
    let ir = auth::xoauth2_initial("me@163.com", "s3cret!");
    assert_eq!(
        feed(&mut c, "250-mx\r\n250 AUTH XOAUTH2\r\n"),
        format!("AUTH XOAUTH2 {ir}\r\n")
    );
    assert_eq!(feed(&mut c, "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"), "\r\n");
    assert_eq!(feed(&mut c, "535 5.7.8 bad token\r\n"), "QUIT\r\n");
    assert!(matches!(closed_error(&mut c), SessionError::AuthFailed(_)));
}

#[test]
fn withdraw_takes_back_only_transactions_not_yet_started() {
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test"], "one\r\n"));
    c.submit(tx(2, &["c@c.test"], "two\r\n"));
    c.submit(tx(3, &["d@d.test"], "three\r\n"));
    // Only the first is on the wire: the rest wait for its 354.
    assert_eq!(out(&mut c).matches("MAIL FROM").count(), 1);
    let back = c.withdraw_unstarted();
    let ids: Vec<u64> = back.iter().map(|o| o.id).collect();
    assert_eq!(ids, [2, 3]);
    assert!(back.iter().all(|o| o.result == TxResult::NotSent));
    // The first finishes, and nothing else follows its dot.
    assert_eq!(
        feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
        "one\r\n.\r\n"
    );
    assert_eq!(feed(&mut c, "250 queued\r\n"), "");
    let o = outcomes(&mut c);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].result, TxResult::Accepted(r(250, "queued")));
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_250_to_data_is_out_of_step_and_the_message_is_not_sent() {
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test"], "one\r\n"));
    out(&mut c);
    // The body never left: no 354 came.
    assert_eq!(feed(&mut c, "250 ok\r\n250 ok\r\n250 2.0.0 ok\r\n"), "");
    let ev = events(&mut c);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Outcome(o) if o.id == 1 && o.result == TxResult::NotSent)),
        "{ev:?}"
    );
    assert!(
        matches!(
            ev.last(),
            Some(Event::Closed(CloseReason::Error(SessionError::OutOfStep {
                command: "DATA",
                ..
            })))
        ),
        "{ev:?}"
    );
}

#[test]
fn an_extra_reply_in_a_pipelined_data_group_shifts_no_outcome() {
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test", "c@c.test"], "one\r\n"));
    out(&mut c);
    // One 250 too many after MAIL: the 550 of b@ lands on c@'s RCPT and
    // c@'s 250 on DATA, which only 354 can answer.
    feed(
        &mut c,
        "250 2.1.0 ok\r\n250 2.1.0 ok\r\n550 5.1.1 no b\r\n250 2.1.5 ok\r\n",
    );
    let ev = events(&mut c);
    let o: Vec<&TxOutcome> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Outcome(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(o.len(), 1, "{ev:?}");
    assert_eq!(o[0].result, TxResult::NotSent);
    assert!(matches!(
        ev.last(),
        Some(Event::Closed(CloseReason::Error(
            SessionError::OutOfStep { .. }
        )))
    ));
}

#[test]
fn an_extra_reply_in_a_pipelined_bdat_group_is_caught_at_the_end_of_data() {
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "one\r\n"));
    c.submit(tx(2, &["c@c.test"], "two\r\n"));
    out(&mut c);
    // MAIL gets two replies; BDAT would get the RCPT's 2.1.5.
    feed(
        &mut c,
        "250 2.1.0 ok\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n",
    );
    let ev = events(&mut c);
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::Outcome(o) if matches!(o.result, TxResult::Accepted(_)))),
        "{ev:?}"
    );
    // The BDAT chunks left, so the outcome is unknown rather than sent.
    assert!(ev.iter().all(|e| match e {
        Event::Outcome(o) => o.result == TxResult::NotSent || o.result == TxResult::Uncertain,
        _ => true,
    }));
    assert!(matches!(
        ev.last(),
        Some(Event::Closed(CloseReason::Error(SessionError::OutOfStep {
            command: "BDAT",
            ..
        })))
    ));
}

#[test]
fn only_235_is_a_login() {
    for answer in [
        "250 2.0.0 ok\r\n",
        "220 hi\r\n",
        "334 again\r\n",
        "354 what\r\n",
    ] {
        let mut cfg = config(TlsMode::Implicit);
        cfg.credentials = Some(creds(Some(AuthMech::Plain)));
        let mut c = Client::new(cfg);
        feed(&mut c, "220 mx\r\n");
        feed(&mut c, "250-mx\r\n250 AUTH PLAIN\r\n");
        assert_eq!(feed(&mut c, answer), "QUIT\r\n", "{answer}");
        let ev = events(&mut c);
        assert!(!ev.contains(&Event::Ready), "{answer}: {ev:?}");
        assert!(
            matches!(
                ev.last(),
                Some(Event::Closed(CloseReason::Error(SessionError::AuthFailed(
                    _
                ))))
            ),
            "{answer}: {ev:?}"
        );
    }
    // LOGIN answers its two prompts, and a third 334 ends it.
    let mut cfg = config(TlsMode::Implicit);
    cfg.credentials = Some(creds(Some(AuthMech::Login)));
    let mut c = Client::new(cfg);
    feed(&mut c, "220 mx\r\n");
    feed(&mut c, "250-mx\r\n250 AUTH LOGIN\r\n");
    assert_ne!(feed(&mut c, "334 VXNlcm5hbWU6\r\n"), "QUIT\r\n");
    assert_ne!(feed(&mut c, "334 UGFzc3dvcmQ6\r\n"), "QUIT\r\n");
    assert_eq!(feed(&mut c, "334 UGFzc3dvcmQ6\r\n"), "QUIT\r\n");
    assert!(matches!(closed_error(&mut c), SessionError::AuthFailed(_)));
}

#[test]
fn echoed_secrets_are_masked_in_replies_and_the_trace() {
    let mut cfg = config(TlsMode::Implicit);
    cfg.credentials = Some(creds(Some(AuthMech::Plain)));
    let mut c = Client::new(cfg);
    feed(&mut c, "220 mx\r\n");
    let ir = auth::plain_initial("me@163.com", "s3cret!");
    assert_eq!(
        feed(&mut c, "250-mx\r\n250 AUTH PLAIN\r\n"),
        format!("AUTH PLAIN {ir}\r\n")
    );
    feed(
        &mut c,
        &format!("535-5.7.8 you sent {ir}\r\n535 5.7.8 s3cret! is wrong\r\n"),
    );
    let trace = c.take_trace().join("\n");
    let err = closed_error(&mut c).to_string();
    for text in [&trace, &err] {
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains(ir.trim_end_matches('=')), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}

#[test]
fn a_transaction_lost_behind_the_dot_goes_again_and_is_learnt() {
    // Haraka's shape: MAIL written behind a dot is accepted, then the
    // transaction is gone, so RCPT and DATA get 503.
    let cfg = config(TlsMode::None);
    let shared = cfg.no_pipelining_after_dot.clone();
    let mut c = ready_with(cfg, EHLO_PIPE);
    c.submit(tx(1, &["b@b.test"], "one\r\n"));
    c.submit(tx(2, &["c@c.test"], "two\r\n"));
    out(&mut c);
    feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n");
    feed(
        &mut c,
        "250 2.0.0 queued\r\n250 2.1.0 sender ok\r\n\
         503 5.5.1 Use MAIL before RCPT\r\n503 5.5.1 MAIL required first\r\n",
    );
    let o = outcomes(&mut c);
    assert!(matches!(o[0].result, TxResult::Accepted(_)));
    // Not a rejection of c@: the message never started.
    assert_eq!((o[1].id, &o[1].result), (2, &TxResult::Resend));
    assert!(shared.load(Ordering::SeqCst));
}

#[test]
fn a_refusal_of_commands_after_the_dot_stops_pipelining_past_it() {
    let cfg = config(TlsMode::None);
    let shared = cfg.no_pipelining_after_dot.clone();
    let mut c = ready_with(cfg.clone(), EHLO_PIPE);
    c.submit(tx(1, &["b@b.test"], "one\r\n"));
    c.submit(tx(2, &["c@c.test"], "two\r\n"));
    out(&mut c);
    assert_eq!(
        feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
        "one\r\n.\r\nMAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<c@c.test>\r\nDATA\r\n"
    );
    feed(
        &mut c,
        "250 2.0.0 queued\r\n503 5.5.0 Command pipelined after DATA\r\n\
         503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n",
    );
    let o = outcomes(&mut c);
    assert!(matches!(o[0].result, TxResult::Accepted(_)));
    assert_eq!((o[1].id, &o[1].result), (2, &TxResult::Resend));
    assert!(shared.load(Ordering::SeqCst), "learnt for every session");

    // A new session with the same configuration waits after each dot.
    let mut c = ready_with(cfg, EHLO_PIPE);
    c.submit(tx(3, &["d@d.test"], "three\r\n"));
    c.submit(tx(4, &["e@e.test"], "four\r\n"));
    out(&mut c);
    assert_eq!(
        feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
        "three\r\n.\r\n"
    );
    assert_eq!(
        feed(&mut c, "250 queued\r\n"),
        "MAIL FROM:<from@a.test> SIZE=6\r\nRCPT TO:<e@e.test>\r\nDATA\r\n"
    );
    assert_eq!(
        feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
        "four\r\n.\r\n"
    );
    c.quit();
    assert_eq!(out(&mut c), "", "QUIT waits for the dot's reply too");
    assert_eq!(feed(&mut c, "250 queued\r\n"), "QUIT\r\n");
}

#[test]
fn pipelined_data_sends_next_commands_with_the_dot() {
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test", "c@c.test"], "one\r\n"));
    assert_eq!(
        out(&mut c),
        "MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<b@b.test>\r\nRCPT TO:<c@c.test>\r\nDATA\r\n"
    );
    c.submit(tx(2, &["d@d.test"], ".two"));
    assert_eq!(out(&mut c), "", "nothing may follow DATA before its 354");
    assert_eq!(
        feed(
            &mut c,
            "250 ok\r\n250 ok\r\n452 4.5.3 too many\r\n354 go\r\n"
        ),
        "one\r\n.\r\nMAIL FROM:<from@a.test> SIZE=6\r\nRCPT TO:<d@d.test>\r\nDATA\r\n"
    );
    assert_eq!(
        feed(
            &mut c,
            "250 2.0.0 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n"
        ),
        "..two\r\n.\r\n"
    );
    let o = outcomes(&mut c);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].id, 1);
    assert_eq!(
        o[0].rcpts,
        vec![
            ("b@b.test".to_string(), Some(r(250, "ok"))),
            (
                "c@c.test".to_string(),
                Some(Reply {
                    code: 452,
                    enhanced: Some(crate::smtp::reply::EnhancedCode {
                        class: 4,
                        subject: 5,
                        detail: 3
                    }),
                    lines: vec!["too many".into()]
                })
            ),
        ]
    );
    assert!(matches!(&o[0].result, TxResult::Accepted(r) if r.text() == "queued 1"));
    assert_eq!(feed(&mut c, "250 queued 2\r\n"), "");
    let o = outcomes(&mut c);
    assert_eq!(o[0].result, TxResult::Accepted(r(250, "queued 2")));
    c.quit();
    assert_eq!(out(&mut c), "QUIT\r\n");
}

#[test]
fn pipelined_bdat_writes_everything_without_waiting() {
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "one\n"));
    c.submit(tx(2, &["c@c.test"], "two"));
    assert_eq!(
        out(&mut c),
        "MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<b@b.test>\r\nBDAT 5 LAST\r\none\r\n\
         MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<c@c.test>\r\nBDAT 5 LAST\r\ntwo\r\n"
    );
    assert_eq!(c.in_flight(), 2);
    assert_eq!(c.read_timeout(), Duration::from_secs(300));
    feed(&mut c, "250 ok\r\n250 ok\r\n");
    assert_eq!(
        c.read_timeout(),
        Duration::from_secs(600),
        "next reply ends a message"
    );
    assert_eq!(feed(&mut c, "250 q1\r\n250 ok\r\n250 ok\r\n250 q2\r\n"), "");
    let o = outcomes(&mut c);
    assert_eq!(
        o.iter().map(|o| o.result.clone()).collect::<Vec<_>>(),
        vec![
            TxResult::Accepted(r(250, "q1")),
            TxResult::Accepted(r(250, "q2"))
        ]
    );
    assert_eq!(c.in_flight(), 0);
    let trace = c.take_trace();
    assert!(trace.contains(&"C: BDAT 5 LAST".to_string()));
    assert!(trace.contains(&"C: <message data, 5 octets>".to_string()));
}

#[test]
fn only_a_pending_354_counts_as_awaiting_the_go_ahead() {
    let mut c = ready(EHLO_PIPE);
    assert!(!c.awaits_go_ahead());
    c.submit(tx(1, &["b@b.test"], "one\r\n"));
    assert_eq!(
        out(&mut c),
        "MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<b@b.test>\r\nDATA\r\n"
    );
    assert!(c.awaits_go_ahead(), "DATA written, its 354 not yet read");
    feed(&mut c, "250 ok\r\n");
    assert!(c.awaits_go_ahead(), "the 354 follows the RCPT reply");
    assert_eq!(feed(&mut c, "250 ok\r\n354 go\r\n"), "one\r\n.\r\n");
    assert!(
        !c.awaits_go_ahead(),
        "only the end-of-data reply is awaited"
    );

    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "one\r\n"));
    assert!(out(&mut c).contains("BDAT 5 LAST"));
    assert!(!c.awaits_go_ahead(), "BDAT waits for no 354");
}

#[test]
fn chunking_without_pipelining_is_lock_step_bdat() {
    let mut c = ready("250-mx\r\n250 CHUNKING\r\n");
    c.submit(tx(1, &["b@b.test"], "x\r\n"));
    assert_eq!(out(&mut c), "MAIL FROM:<from@a.test>\r\n");
    assert_eq!(feed(&mut c, "250 ok\r\n"), "RCPT TO:<b@b.test>\r\n");
    assert_eq!(feed(&mut c, "250 ok\r\n"), "BDAT 3 LAST\r\nx\r\n");
    assert_eq!(feed(&mut c, "250 done\r\n"), "");
    assert_eq!(
        outcomes(&mut c)[0].result,
        TxResult::Accepted(r(250, "done"))
    );
}

#[test]
fn extensions_disabled_by_config_are_ignored() {
    let mut cfg = config(TlsMode::None);
    cfg.use_chunking = false;
    let mut c = ready_with(cfg.clone(), EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    assert!(out(&mut c).ends_with("RCPT TO:<b@b.test>\r\nDATA\r\n"));
    cfg.use_pipelining = false;
    let mut c = ready_with(cfg, EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    assert_eq!(out(&mut c), "MAIL FROM:<from@a.test> SIZE=3\r\n");
}

#[test]
fn mail_parameters_and_refusals_without_sending() {
    let mut c = ready(EHLO_FULL);
    let mut t = tx(1, &["b@b.test"], "é");
    t.eight_bit = true;
    t.smtputf8 = true;
    c.submit(t);
    assert!(out(&mut c).starts_with("MAIL FROM:<from@a.test> SIZE=4 BODY=8BITMIME SMTPUTF8\r\n"));

    let mut c = ready(EHLO_PIPE);
    let mut t = tx(2, &["b@b.test"], "x");
    t.eight_bit = true;
    c.submit(t);
    let mut t = tx(3, &["b@b.test"], "x");
    t.smtputf8 = true;
    c.submit(t);
    assert_eq!(out(&mut c), "");
    let o = outcomes(&mut c);
    assert!(matches!(&o[0].result, TxResult::Unsupported(m) if m.contains("8BITMIME")));
    assert!(matches!(&o[1].result, TxResult::Unsupported(m) if m.contains("SMTPUTF8")));
    assert_eq!(c.in_flight(), 0);

    let mut c = ready("250-mx\r\n250 SIZE 10\r\n");
    c.submit(tx(4, &["b@b.test"], "0123456789"));
    assert_eq!(out(&mut c), "");
    assert_eq!(
        outcomes(&mut c)[0].result,
        TxResult::TooLarge {
            size: 12,
            limit: 10
        }
    );
    c.submit(tx(5, &["b@b.test"], "01234567\n"));
    assert_eq!(out(&mut c), "MAIL FROM:<from@a.test> SIZE=10\r\n");
}

#[test]
fn addresses_that_could_inject_commands_are_refused() {
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test>\r\nRCPT TO:<evil@x"], "x"));
    let mut t = tx(2, &["b@b.test"], "x");
    t.mail_from = "a@a\nDATA".into();
    c.submit(t);
    assert_eq!(out(&mut c), "");
    let o = outcomes(&mut c);
    assert!(o
        .iter()
        .all(|o| matches!(o.result, TxResult::Unsupported(_))));
}

#[test]
fn all_recipients_refused_data_path_resets() {
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test", "c@c.test"], "x"));
    out(&mut c);
    assert_eq!(
        feed(
            &mut c,
            "250 ok\r\n550 no\r\n452 full\r\n554 no valid recipients\r\n"
        ),
        "RSET\r\n"
    );
    let o = outcomes(&mut c);
    assert_eq!(o[0].result, TxResult::NoValidRecipients);
    assert_eq!(o[0].rcpts[1].1, Some(r(452, "full")));
    assert_eq!(feed(&mut c, "250 reset\r\n"), "");
    assert!(!c.wants_read());
}

#[test]
fn broken_server_354_without_recipients_gets_nothing_not_even_a_dot() {
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test"], "secret body"));
    out(&mut c);
    // A dot would deliver an empty message to whatever the server holds.
    assert_eq!(feed(&mut c, "250 ok\r\n550 no\r\n354 go\r\n"), "");
    let ev = events(&mut c);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Outcome(o) if o.result == TxResult::NotSent)),
        "{ev:?}"
    );
    assert!(matches!(
        ev.last(),
        Some(Event::Closed(CloseReason::Error(
            SessionError::OutOfStep { .. }
        )))
    ));
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test"], "secret body"));
    out(&mut c);
    assert_eq!(feed(&mut c, "503 nested MAIL\r\n250 ok\r\n354 go\r\n"), "");
    assert!(matches!(
        closed_error(&mut c),
        SessionError::OutOfStep { .. }
    ));
}

#[test]
fn all_recipients_refused_bdat_path_resets() {
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    out(&mut c);
    assert_eq!(
        feed(
            &mut c,
            "250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n"
        ),
        "RSET\r\n"
    );
    assert_eq!(outcomes(&mut c)[0].result, TxResult::NoValidRecipients);
}

#[test]
fn lock_step_all_recipients_refused_skips_data() {
    let mut c = ready(EHLO_PLAIN);
    c.submit(tx(1, &["b@b.test"], "x"));
    out(&mut c);
    assert_eq!(feed(&mut c, "250 ok\r\n"), "RCPT TO:<b@b.test>\r\n");
    assert_eq!(feed(&mut c, "550 no\r\n"), "RSET\r\n");
    assert_eq!(outcomes(&mut c)[0].result, TxResult::NoValidRecipients);
}

#[test]
fn mail_refused_consumes_pipelined_replies_then_resets() {
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    out(&mut c);
    assert_eq!(
        feed(&mut c, "550 5.7.1 sender rejected\r\n503 no mail\r\n"),
        ""
    );
    assert!(outcomes(&mut c).is_empty(), "BDAT reply still owed");
    assert_eq!(feed(&mut c, "503 no mail\r\n"), "RSET\r\n");
    let o = outcomes(&mut c);
    assert!(matches!(&o[0].result, TxResult::Failed(r) if r.code == 550));
    assert!(o[0].mail.as_ref().is_some_and(|m| m.code == 550));
}

#[test]
fn failed_bdat_then_503_to_next_mail_is_not_sent() {
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    c.submit(tx(2, &["c@c.test"], "y"));
    out(&mut c);
    assert_eq!(
        feed(&mut c, "250 ok\r\n250 ok\r\n552 5.3.4 too big\r\n"),
        "RSET\r\n"
    );
    assert_eq!(
        feed(
            &mut c,
            "503 5.5.1 nested MAIL\r\n503 no\r\n503 no\r\n250 reset\r\n"
        ),
        "RSET\r\n"
    );
    let o = outcomes(&mut c);
    assert!(matches!(&o[0].result, TxResult::Failed(r) if r.code == 552));
    assert_eq!(o[1].result, TxResult::NotSent);
}

#[test]
fn reply_421_closes_with_per_transaction_outcomes() {
    // 421 as the end-of-data reply: that message failed, later ones not sent.
    let mut c = ready(EHLO_FULL);
    for id in 1..=3 {
        c.submit(tx(id, &["b@b.test"], "x"));
    }
    out(&mut c);
    feed(&mut c, "250 ok\r\n250 ok\r\n250 q1\r\n250 ok\r\n250 ok\r\n");
    assert_eq!(feed(&mut c, "421 4.3.2 shutting down\r\n"), "");
    let ev = events(&mut c);
    let results: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Outcome(o) => Some((o.id, o.result.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(results[0], (1, TxResult::Accepted(r(250, "q1"))));
    assert!(matches!(&results[1], (2, TxResult::Failed(r)) if r.code == 421));
    assert_eq!(results[2], (3, TxResult::NotSent));
    assert!(matches!(
        ev.last(),
        Some(Event::Closed(CloseReason::ServiceClosing(Reply {
            code: 421,
            ..
        })))
    ));
    assert!(!c.wants_read());

    // 421 to a RCPT: not sent; no QUIT after 421.
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test"], "x"));
    out(&mut c);
    assert_eq!(feed(&mut c, "250 ok\r\n421 too many errors\r\n"), "");
    assert_eq!(outcomes(&mut c)[0].result, TxResult::NotSent);

    // Unsolicited 421 while idle.
    let mut c = ready(EHLO_PIPE);
    assert_eq!(feed(&mut c, "421 idle timeout\r\n"), "");
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Closed(CloseReason::ServiceClosing(_))]
    ));
    assert!(!c.can_submit());
}

#[test]
fn window_bounds_transactions_in_flight() {
    let mut cfg = config(TlsMode::None);
    cfg.window = 3;
    let mut c = ready_with(cfg, EHLO_FULL);
    let mut n = 0;
    while c.can_submit() {
        n += 1;
        c.submit(tx(n, &["b@b.test"], "x"));
    }
    assert_eq!(n, 3);
    assert_eq!(out(&mut c).matches("BDAT").count(), 3);
    feed(&mut c, "250 ok\r\n250 ok\r\n250 q\r\n");
    assert!(c.can_submit());
    assert_eq!(c.in_flight(), 2);
}

#[test]
fn unanswered_commands_stay_bounded_with_a_large_window() {
    let mut cfg = config(TlsMode::None);
    let n = MAX_UNANSWERED as u64;
    cfg.window = MAX_UNANSWERED * 2;
    let mut c = ready_with(cfg, EHLO_FULL);
    for id in 0..n {
        c.submit(tx(id, &["b@b.test"], "x"));
    }
    // 3 commands a message; a message starts only below the limit.
    let first = out(&mut c);
    assert_eq!(
        first.matches("MAIL FROM").count(),
        MAX_UNANSWERED.div_ceil(3)
    );
    assert_eq!(c.in_flight(), n as usize);
    // Answering one message's commands releases exactly one more.
    let more = feed(&mut c, "250 ok\r\n250 ok\r\n250 q\r\n");
    assert_eq!(more.matches("MAIL FROM").count(), 1);
}

#[test]
fn connection_lost_uncertain_only_after_the_dot_left() {
    let mut c = ready(EHLO_PIPE);
    c.submit(tx(1, &["b@b.test"], "x"));
    c.submit(tx(2, &["c@c.test"], "y"));
    out(&mut c);
    // tx1's dot and tx2's commands leave; tx2 never reaches its data.
    assert!(!feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n").is_empty());
    let lost = c.connection_lost();
    assert_eq!(
        lost.iter()
            .map(|o| (o.id, o.result.clone()))
            .collect::<Vec<_>>(),
        vec![(1, TxResult::Uncertain), (2, TxResult::NotSent)]
    );
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Closed(CloseReason::Error(SessionError::Protocol(_)))]
    ));
    assert!(c.connection_lost().is_empty());
}

#[test]
fn data_not_taken_before_the_loss_is_not_sent() {
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    let lost = c.connection_lost();
    assert_eq!(lost[0].result, TxResult::NotSent);
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    out(&mut c);
    assert_eq!(c.connection_lost()[0].result, TxResult::Uncertain);
}

#[test]
fn a_failed_write_takes_back_only_the_ends_it_never_wrote() {
    // BDAT LAST: each message's end is in the first output.
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    c.submit(tx(2, &["c@c.test"], "y"));
    let bytes = c.take_output();
    let first_end = bytes
        .windows(4)
        .position(|w| w == b"\nx\r\n")
        .expect("message 1 in the output")
        + 4;
    // Message 1's end left, message 2's did not.
    c.output_partly_written(first_end);
    let lost = c.connection_lost();
    assert_eq!(
        lost.iter()
            .map(|o| (o.id, o.result.clone()))
            .collect::<Vec<_>>(),
        vec![(1, TxResult::Uncertain), (2, TxResult::NotSent)]
    );
}

#[test]
fn quit_waits_for_outcomes_and_eof_after_quit_is_clean() {
    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    c.quit();
    assert!(!c.can_submit());
    assert!(!out(&mut c).contains("QUIT"));
    assert_eq!(feed(&mut c, "250 ok\r\n250 ok\r\n250 q\r\n"), "QUIT\r\n");
    assert!(c.connection_lost().is_empty());
    assert_eq!(
        events(&mut c).last(),
        Some(&Event::Closed(CloseReason::Quit))
    );
}

#[test]
fn quit_before_ready_quits_once_ready() {
    let mut c = Client::new(config(TlsMode::None));
    c.quit();
    feed(&mut c, "220 mx\r\n");
    assert_eq!(feed(&mut c, EHLO_PIPE), "QUIT\r\n");
}

#[test]
fn trace_escapes_server_control_characters() {
    let mut c = Client::new(config(TlsMode::None));
    feed(&mut c, "220 evil\x1b[2J\x07 \u{202e}txt\r\n");
    assert_eq!(
        c.take_trace(),
        vec![
            "S: 220 evil\\x1b[2J\\x07 \\u{202e}txt",
            "C: EHLO client.test"
        ]
    );
    c.set_trace(false);
    feed(&mut c, EHLO_FULL);
    assert!(c.take_trace().is_empty());
}

#[test]
fn unexpected_and_malformed_replies_end_the_session() {
    let mut c = ready(EHLO_PIPE);
    feed(&mut c, "250 surprise\r\n");
    assert_eq!(
        closed_error(&mut c),
        SessionError::Unexpected(r(250, "surprise"))
    );

    let mut c = ready(EHLO_FULL);
    c.submit(tx(1, &["b@b.test"], "x"));
    out(&mut c);
    c.feed(b"HTTP/1.1 400 Bad Request\r\n");
    let ev = events(&mut c);
    assert!(matches!(&ev[0], Event::Outcome(o) if o.result == TxResult::Uncertain));
    assert!(matches!(
        &ev[1],
        Event::Closed(CloseReason::Error(SessionError::Protocol(_)))
    ));
}

#[test]
fn credentials_debug_hides_the_secret() {
    let dbg = format!("{:?}", creds(None));
    assert!(
        !dbg.contains("s3cret") && dbg.contains("me@163.com"),
        "{dbg}"
    );
    let mut cfg = config(TlsMode::Implicit);
    cfg.credentials = Some(creds(None));
    let dbg = format!("{:?}", Client::new(cfg));
    assert!(!dbg.contains("s3cret"), "{dbg}");
}

/// One scripted exchange; the server's bytes are fed in `chunk`-byte pieces.
fn scripted_exchange(chunk: usize) -> (Vec<u8>, Vec<Event>) {
    struct Run {
        c: Client,
        chunk: usize,
        wire: Vec<u8>,
        evs: Vec<Event>,
    }
    impl Run {
        fn step(&mut self, server: &str) {
            for piece in server.as_bytes().chunks(self.chunk) {
                self.c.feed(piece);
                self.wire.extend(self.c.take_output());
                self.evs.extend(std::iter::from_fn(|| self.c.poll_event()));
            }
        }
    }
    let mut run = Run {
        c: Client::new(config(TlsMode::None)),
        chunk,
        wire: Vec::new(),
        evs: Vec::new(),
    };
    run.step("220-mx\r\n220 ready\r\n");
    run.step(EHLO_PIPE);
    run.c
        .submit(tx(1, &["b@b.test", "c@c.test"], "hello\r\n.\r\n"));
    run.c.submit(tx(2, &["d@d.test"], "bye"));
    run.step("250 2.1.0 ok\r\n550-5.1.1 no\r\n550 5.1.1 user\r\n250 ok\r\n354 go\r\n");
    run.step("250 q1\r\n250 ok\r\n250 ok\r\n354 go\r\n250 q2\r\n");
    run.c.quit();
    run.wire.extend(run.c.take_output());
    run.step("221 bye\r\n");
    (run.wire, run.evs)
}

#[test]
fn replies_split_at_every_byte_give_the_same_conversation() {
    let (wire, evs) = scripted_exchange(usize::MAX);
    assert_eq!(
        String::from_utf8(wire.clone()).unwrap(),
        "EHLO client.test\r\n\
         MAIL FROM:<from@a.test> SIZE=10\r\nRCPT TO:<b@b.test>\r\nRCPT TO:<c@c.test>\r\nDATA\r\n\
         hello\r\n..\r\n.\r\n\
         MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<d@d.test>\r\nDATA\r\n\
         bye\r\n.\r\nQUIT\r\n"
    );
    assert_eq!(evs.len(), 4);
    for chunk in [1, 2, 3, 5, 7, 10] {
        assert_eq!(
            scripted_exchange(chunk),
            (wire.clone(), evs.clone()),
            "chunk {chunk}"
        );
    }
}

/// A minimal SMTP server: answers every complete command, keeps bodies.
struct FakeServer {
    ehlo: &'static str,
    buf: Vec<u8>,
    mode: Mode,
    body: Vec<u8>,
    messages: Vec<Vec<u8>>,
}

enum Mode {
    Command,
    Data,
    Bdat(usize),
}

impl FakeServer {
    fn new(ehlo: &'static str) -> Self {
        FakeServer {
            ehlo,
            buf: Vec::new(),
            mode: Mode::Command,
            body: Vec::new(),
            messages: Vec::new(),
        }
    }

    fn line(&mut self) -> Option<Vec<u8>> {
        let at = self.buf.windows(2).position(|w| w == b"\r\n")?;
        let line = self.buf[..at].to_vec();
        self.buf.drain(..at + 2);
        Some(line)
    }

    fn process(&mut self, input: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(input);
        let mut out = Vec::new();
        loop {
            match self.mode {
                Mode::Command => {
                    let Some(line) = self.line() else { break };
                    let line = String::from_utf8(line).unwrap();
                    let verb = line.split([' ', ':']).next().unwrap_or("");
                    let reply: String = match verb {
                        "EHLO" => self.ehlo.to_string(),
                        "MAIL" | "RCPT" | "RSET" => "250 ok\r\n".into(),
                        "DATA" => {
                            self.mode = Mode::Data;
                            "354 go\r\n".into()
                        }
                        "BDAT" => {
                            let n = line.split(' ').nth(1).unwrap().parse().unwrap();
                            self.mode = Mode::Bdat(n);
                            String::new()
                        }
                        "QUIT" => "221 bye\r\n".into(),
                        _ => "500 what\r\n".into(),
                    };
                    out.extend(reply.as_bytes());
                }
                Mode::Data => {
                    let Some(line) = self.line() else { break };
                    if line == b"." {
                        self.messages.push(std::mem::take(&mut self.body));
                        self.mode = Mode::Command;
                        out.extend(b"250 queued\r\n");
                    } else {
                        let l = line.strip_prefix(b".").unwrap_or(&line);
                        self.body.extend_from_slice(l);
                        self.body.extend_from_slice(b"\r\n");
                    }
                }
                Mode::Bdat(n) => {
                    if self.buf.len() < n {
                        break;
                    }
                    self.messages.push(self.buf.drain(..n).collect());
                    self.mode = Mode::Command;
                    out.extend(b"250 queued\r\n");
                }
            }
        }
        out
    }
}

/// Sends `n` messages through the fake server, counting how often the
/// client had to wait for replies before it could write again.
fn round_trips(ehlo: &'static str, n: u64, window: usize) -> usize {
    let mut cfg = config(TlsMode::None);
    cfg.window = window;
    let mut c = Client::new(cfg);
    let mut server = FakeServer::new(ehlo);
    let mut from_server = b"220 fake\r\n".to_vec();
    let mut waits = 0;
    let mut submitted = 0;
    let mut accepted = 0;
    for _ in 0..10_000 {
        c.feed(&from_server);
        let mut closed = false;
        while let Some(ev) = c.poll_event() {
            match ev {
                Event::Outcome(o) => {
                    assert!(matches!(o.result, TxResult::Accepted(_)), "{o:?}");
                    accepted += 1;
                }
                Event::Closed(reason) => {
                    assert_eq!(reason, CloseReason::Quit);
                    closed = true;
                }
                _ => {}
            }
        }
        if closed {
            break;
        }
        while c.can_submit() && submitted < n {
            let body = format!("Subject: {submitted}\r\n\r\n.line\r\nend {submitted}\r\n");
            c.submit(tx(submitted, &["b@b.test"], &body));
            submitted += 1;
        }
        if submitted == n && c.in_flight() == 0 {
            c.quit();
        }
        from_server = server.process(&c.take_output());
        assert!(c.wants_read(), "client stalled");
        waits += 1;
    }
    assert_eq!(accepted, n);
    assert_eq!(server.messages.len() as u64, n);
    for (i, m) in server.messages.iter().enumerate() {
        assert_eq!(
            m,
            format!("Subject: {i}\r\n\r\n.line\r\nend {i}\r\n").as_bytes()
        );
    }
    waits
}

#[test]
fn round_trips_pipelined_data_about_one_per_message() {
    let waits = round_trips(EHLO_PIPE, 50, 16);
    // greeting + EHLO + 50 (one per message, the last one's dot) + QUIT
    assert!((50..=55).contains(&waits), "{waits}");
}

#[test]
fn round_trips_pipelined_bdat_bounded_by_the_window() {
    let waits = round_trips(EHLO_FULL, 50, 16);
    assert!(waits <= 50usize.div_ceil(16) + 4, "{waits}");
    let waits = round_trips(EHLO_FULL, 50, 1);
    assert!(waits <= 50 + 4, "{waits}");
}

#[test]
fn round_trips_lock_step_several_per_message() {
    let waits = round_trips(EHLO_PLAIN, 50, 16);
    // MAIL, RCPT, DATA, end of data per message + greeting, EHLO, QUIT.
    assert!((4 * 50..=5 * 50 + 3).contains(&waits), "{waits}");
}

#[test]
fn a_normalised_message_is_sent_from_the_callers_bytes_not_a_copy() {
    let mut c = ready(EHLO_PIPE);
    let t = tx(1, &["b@b.test"], "one\r\n.two\r\n");
    let data = t.data.clone();
    c.submit(t);
    // Held by the test, the transaction and the bytes waiting for 354.
    assert_eq!(Arc::strong_count(&data), 3, "the message was copied");
    assert_eq!(
        out(&mut c),
        "MAIL FROM:<from@a.test> SIZE=11\r\nRCPT TO:<b@b.test>\r\nDATA\r\n"
    );
    assert_eq!(
        feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
        "one\r\n..two\r\n.\r\n"
    );
    assert_eq!(
        Arc::strong_count(&data),
        2,
        "the bytes are let go once written"
    );
    // A message that needs normalising is still normalised.
    c.submit(tx(2, &["b@b.test"], "a\nb"));
    feed(&mut c, "250 q\r\n");
    assert_eq!(
        feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
        "a\r\nb\r\n.\r\n"
    );
}

#[test]
fn a_written_output_buffer_is_reused() {
    let written = |cap: usize| {
        let mut v = Vec::with_capacity(cap);
        v.push(b'x');
        MessageBytes::from(v)
    };
    let mut c = ready(EHLO_FULL);
    c.recycle_output(written(1 << 20));
    c.submit(tx(1, &["b@b.test"], "x\r\n"));
    let bytes = c.take_output_with_finals().0.into_first_buffer().unwrap();
    assert!(bytes.starts_with(b"MAIL FROM:"));
    assert!(bytes.capacity() >= 1 << 20, "a fresh buffer was grown");
    // Output still waiting to be taken is never replaced.
    c.submit(tx(2, &["c@c.test"], "y\r\n"));
    c.recycle_output(written(1 << 21));
    assert!(c.take_output().starts_with(b"MAIL FROM:"));
}
