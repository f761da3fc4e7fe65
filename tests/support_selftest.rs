//! Tests of the test fixtures themselves and of the capture server: each one
//! starts, speaks SMTP with an independent client (raw lines, rustls, or
//! Python's smtplib), delivers a message, and records it correctly.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use mailshot::capture::CaptureServer;
use mailshot::smtp::net::tls::generate_pki;
use support::aiosmtpd::{AuthServer, TlsMode};
use support::fault::FaultServer;
use support::postfix::{Postfix, SmtpSink};
use support::{python, RawClient, TestDir};

const DELAY: Duration = Duration::from_millis(25);

/// Python smtplib client: `MODE PORT CAFILE USER PASSWORD MECH`, sends one
/// message to two envelope recipients (the second a "Bcc").
/// Prints SENT, AUTHFAIL <code> or NOAUTH.
const SMTPLIB_CLIENT: &str = r#"
import smtplib, ssl, sys
mode, port, cafile, user, password, mech = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile) if cafile else None
msg = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: selftest\r\n\r\n"
       b"hello\r\n.leading dot\r\n")
if mode == "implicit":
    s = smtplib.SMTP_SSL("127.0.0.1", int(port), context=ctx, timeout=20)
    s.ehlo()
else:
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
    s.ehlo()
    if mode == "starttls":
        if "auth" in s.esmtp_features:
            print("AUTH OFFERED BEFORE TLS")
        s.starttls(context=ctx)
        s.ehlo()
if user:
    s.user, s.password = user, password
    try:
        s.auth(mech, getattr(s, "auth_" + mech.lower()))
    except smtplib.SMTPAuthenticationError as e:
        print("AUTHFAIL", e.smtp_code)
        s.quit()
        sys.exit(0)
s.sendmail("a@example.com", ["b@example.com", "hidden@example.com"], msg)
print("SENT")
s.quit()
"#;

fn smtplib(mode: &str, port: u16, ca: Option<&Path>, auth: Option<(&str, &str, &str)>) -> String {
    let ca = ca.map(|p| p.display().to_string()).unwrap_or_default();
    let (user, pass, mech) = auth.unwrap_or(("", "", ""));
    let (ok, out, err) = python(
        SMTPLIB_CLIENT,
        &[mode, &port.to_string(), &ca, user, pass, mech],
    );
    assert!(ok, "smtplib client failed:\n{out}\n{err}");
    out
}

fn connect_refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

// ---------------------------------------------------------------- capture

fn capture() -> (TestDir, mailshot::capture::CaptureHandle) {
    let dir = TestDir::new();
    let server = CaptureServer::bind("127.0.0.1:0".parse().unwrap(), dir.join("out")).unwrap();
    let handle = server.spawn();
    (dir, handle)
}

fn stored(dir: &TestDir, name: &str) -> String {
    dir.read(Path::new("out").join(name))
}

fn queued_name(reply: &support::Reply) -> String {
    reply
        .text()
        .rsplit(' ')
        .next()
        .expect("queued as NAME")
        .to_owned()
}

#[test]
fn capture_handles_a_pipelined_transaction_in_one_write() {
    let (dir, server) = capture();
    let mut c = RawClient::connect(server.addr());
    c.expect(220);
    let ehlo = c.cmd("EHLO client.test");
    assert_eq!(ehlo.code, 250);
    for kw in [
        "PIPELINING",
        "CHUNKING",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE 52428800",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "AUTH PLAIN LOGIN",
    ] {
        assert!(ehlo.lines.iter().any(|l| l == kw), "{kw} missing: {ehlo:?}");
    }
    // Everything, body and QUIT included, in a single write: the server must
    // keep its read buffer between commands.
    c.send(
        "MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@z.test>\r\nDATA\r\n\
         Subject: hi\r\n\r\n..hidden dot\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 354);
    let queued = c.expect(250);
    assert!(
        queued.text().starts_with("2.0.0 Ok: queued as "),
        "{queued:?}"
    );
    c.expect(221);
    assert!(c.is_closed());

    let name = queued_name(&queued);
    assert!(name.ends_with(".eml"));
    let (nanos, seq) = name.trim_end_matches(".eml").split_once('-').unwrap();
    assert!(
        nanos.parse::<u128>().is_ok() && seq.parse::<u64>().is_ok(),
        "{name}"
    );
    assert_eq!(
        stored(&dir, &name),
        "Return-Path: <a@x.test>\r\nX-Mailshot-Rcpt: b@y.test, c@z.test\r\n\
         Subject: hi\r\n\r\n.hidden dot\r\n"
    );
    assert!(dir.join("out/capture-ca.pem").exists());
    server.shutdown();
}

#[test]
fn capture_accepts_bdat_in_two_chunks() {
    let (dir, server) = capture();
    let mut c = RawClient::connect(server.addr());
    c.expect(220);
    c.cmd("EHLO client.test");
    let part1 = "Subject: chunked\r\n\r\n";
    let part2 = ".not stuffed\r\n";
    c.send(format!(
        "MAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nBDAT {}\r\n{part1}BDAT {} LAST\r\n{part2}",
        part1.len(),
        part2.len()
    ));
    c.expect(250);
    c.expect(250);
    let first = c.expect(250);
    assert_eq!(
        first.text(),
        format!("2.0.0 {} octets received", part1.len())
    );
    let queued = c.expect(250);
    let text = stored(&dir, &queued_name(&queued));
    assert_eq!(
        text,
        format!("Return-Path: <>\r\nX-Mailshot-Rcpt: b@y.test\r\n{part1}{part2}")
    );
    // DATA after BDAT in one transaction is a sequence error; a new one works.
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 3\r\nabcDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(250);
    c.expect(503);
}

#[test]
fn capture_starttls_with_a_client_trusting_its_ca() {
    let (dir, server) = capture();
    let ca = dir.read("out/capture-ca.pem");
    assert_eq!(ca, server.ca_pem());
    let mut c = RawClient::connect(server.addr());
    c.expect(220);
    c.cmd("EHLO client.test");
    c.expect_after("STARTTLS", 220);
    let mut t = c
        .starttls(server.ca_pem(), "localhost")
        .expect("TLS handshake");
    // RFC 3207 4.2: the session restarts; MAIL needs a new EHLO.
    assert_eq!(t.cmd("MAIL FROM:<a@x.test>").code, 503);
    let ehlo = t.cmd("EHLO client.test");
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert!(ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"));
    assert_eq!(t.cmd("AUTH PLAIN AHVzZXIAc2VjcmV0").code, 235);
    assert_eq!(t.cmd("STARTTLS").code, 503);
    t.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
    t.expect(250);
    t.expect(250);
    t.expect(354);
    let queued = t.cmd("Subject: secret\r\n\r\nbody\r\n.");
    assert_eq!(queued.code, 250);
    assert!(stored(&dir, &queued_name(&queued)).ends_with("Subject: secret\r\n\r\nbody\r\n"));
    assert_eq!(t.cmd("QUIT").code, 221);
}

#[test]
fn capture_rejects_bad_sequences_and_syntax() {
    let (_dir, server) = capture();
    let mut c = RawClient::connect(server.addr());
    c.expect(220);
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").code, 503);
    assert_eq!(c.cmd("EHLO").code, 501);
    assert_eq!(c.cmd("HELO client.test").code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@y.test>").code, 503);
    assert_eq!(c.cmd("DATA").code, 503);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:a@x.test").code, 501);
    assert_eq!(c.cmd("MAIL FROM:<a@x.test> SIZE=52428801").code, 552);
    assert_eq!(c.cmd("MAIL FROM:<a@x.test> FROBNICATE=1").code, 555);
    assert_eq!(c.cmd("MAIL FROM:<a@x.test> SIZE=100").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").code, 503);
    assert_eq!(c.cmd("AUTH PLAIN AHVAcA==").code, 503);
    assert_eq!(c.cmd("RCPT TO:<not an address>").code, 501);
    let data = c.cmd("DATA");
    assert_eq!(data.code, 554, "no valid recipients: {data:?}");
    let rset = c.cmd("RSET");
    assert_eq!((rset.code, rset.text()), (250, "2.0.0 Ok".to_owned()));
    assert_eq!(c.cmd("NOOP").code, 250);
    assert_eq!(c.cmd("FROB").code, 500);
    assert_eq!(c.cmd("AUTH CRAM-MD5").code, 504);
    assert_eq!(c.cmd("AUTH LOGIN").code, 334);
    assert_eq!(c.cmd("dXNlcg==").code, 334);
    assert_eq!(c.cmd("cGFzcw==").code, 235);
    assert_eq!(c.cmd("QUIT").code, 221);
}

#[test]
fn capture_receives_from_python_smtplib_with_bcc_in_envelope_only() {
    let (dir, server) = capture();
    let out = smtplib("plain", server.addr().port(), None, None);
    assert!(out.contains("SENT"), "{out}");
    let files = dir.files_with_suffix("out", ".eml");
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.starts_with(
        "Return-Path: <a@example.com>\r\nX-Mailshot-Rcpt: b@example.com, hidden@example.com\r\n"
    ));
    assert!(text.contains("\r\n.leading dot\r\n"), "{text}");
    assert!(!text.contains("Bcc"));
}

#[test]
fn capture_shutdown_stops_listening_and_closes_sessions() {
    let (_dir, server) = capture();
    let addr = server.addr();
    let mut idle = RawClient::connect(addr);
    idle.expect(220);
    let started = Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(idle.is_closed());
    assert!(connect_refused(addr));
}

// ---------------------------------------------------------------- fault server

/// A plain connection to `addr` that has been greeted and said EHLO.
fn hello(addr: std::net::SocketAddr) -> RawClient {
    let mut c = RawClient::connect(addr);
    c.expect(220);
    c.expect_after("EHLO c.test", 250);
    c
}

/// MAIL, RCPT and DATA as one pipelined group, answered 250, 250, 354.
fn begin_data(c: &mut RawClient) {
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
    for code in [250, 250, 354] {
        c.expect(code);
    }
}

#[test]
fn fault_records_message_commands_and_lockstep_round_trips() {
    let fault = FaultServer::builder().reply_delay(DELAY).start();
    let mut c = RawClient::connect(fault.addr());
    c.expect(220);
    let ehlo = c.expect_after("EHLO c.test", 250);
    assert!(ehlo.lines.contains(&"PIPELINING".to_owned()));
    assert!(!ehlo.lines.contains(&"CHUNKING".to_owned()));
    c.expect_after("MAIL FROM:<a@x.test>", 250);
    c.expect_after("RCPT TO:<b@y.test>", 250);
    c.expect_after("DATA", 354);
    c.expect_after("Subject: t\r\n\r\n..dot\r\n.", 250);
    c.expect_after("QUIT", 221);
    assert!(c.is_closed());

    let msgs = fault.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].from, "a@x.test");
    assert_eq!(msgs[0].rcpts, vec!["b@y.test"]);
    assert_eq!(msgs[0].data, b"Subject: t\r\n\r\n.dot\r\n");
    assert!(!msgs[0].bdat && !msgs[0].tls);
    assert_eq!(
        fault.commands(),
        vec![
            "EHLO c.test",
            "MAIL FROM:<a@x.test>",
            "RCPT TO:<b@y.test>",
            "DATA",
            "QUIT"
        ]
    );
    // EHLO, MAIL, RCPT, DATA, the body after 354, QUIT: six waits.
    assert_eq!(fault.round_trips(), 6);
    assert_eq!(fault.connections(), 1);
    let stats = &fault.connection_stats()[0];
    assert_eq!(
        (stats.commands, stats.messages, stats.round_trips),
        (5, 1, 6)
    );
    assert!(fault.pipelining_violations().is_empty());
}

#[test]
fn fault_reads_paths_and_dots_as_the_capture_server_does() {
    let fault = FaultServer::start();
    let mut c = RawClient::connect(fault.addr());
    c.expect(220);
    c.expect_after("EHLO c.test", 250);
    c.expect_after("MAIL FROM:<a@x.test>", 250);
    // An obsolete source route is dropped; parameters need a space before them.
    c.expect_after("RCPT TO:<b@y.test>junk", 501);
    c.expect_after("RCPT TO:<@relay.test:b@y.test>", 250);
    c.expect_after("DATA", 354);
    // Only CRLF starts a line: after a bare LF a dot is content, and a lone
    // dot there does not end the message.
    c.expect_after("bare\n.kept\r\n..stuffed\r\ntail\n.\r\nmore\r\n.", 250);
    c.expect_after("BDAT 5 LAST junk", 501);
    assert!(c.is_closed());

    let msgs = fault.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].rcpts, vec!["b@y.test"]);
    assert_eq!(
        String::from_utf8_lossy(&msgs[0].data),
        "bare\n.kept\r\n.stuffed\r\ntail\n.\r\nmore\r\n"
    );
}

#[test]
fn fault_counts_fewer_round_trips_when_pipelined() {
    let fault = FaultServer::builder()
        .chunking(true)
        .reply_delay(DELAY)
        .start();
    let mut c = hello(fault.addr());
    // DATA: MAIL/RCPT/DATA as one group, then the body.
    begin_data(&mut c);
    c.send("one\r\n.\r\n");
    c.expect(250);
    let after_data = fault.round_trips();
    // BDAT LAST: the whole transaction as one write.
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 5 LAST\r\ntwo\r\n");
    for code in [250, 250, 250] {
        c.expect(code);
    }
    c.expect_after("QUIT", 221);
    // EHLO, the group, the body, and the wait that starts right after the
    // 250 (the reply is delayed, so the server is waiting before the client
    // can answer). The BDAT transaction answers that wait; then QUIT.
    assert_eq!(after_data, 4);
    assert_eq!(fault.round_trips(), 5);
    let msgs = fault.messages();
    assert_eq!(msgs[1].data, b"two\r\n");
    assert!(msgs[1].bdat);
    assert!(fault.pipelining_violations().is_empty());
}

#[test]
fn fault_reply_delay_overlaps_like_latency() {
    let delay = Duration::from_millis(300);
    let fault = FaultServer::builder().reply_delay(delay).start();
    let mut c = hello(fault.addr());
    let start = Instant::now();
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n");
    for _ in 0..3 {
        c.expect(250);
    }
    let elapsed = start.elapsed();
    // Serial replies would take 3 × 300 ms.
    assert!(elapsed >= delay, "{elapsed:?}");
    assert!(elapsed < delay * 2, "{elapsed:?}");
}

#[test]
fn fault_rcpt_hook_overrides_replies() {
    let fault = FaultServer::builder()
        .rcpt_hook(|addr, n| {
            if addr.starts_with("bad") {
                Some("550 5.1.1 No such user".into())
            } else if n > 2 {
                Some("452 4.5.3 Too many recipients".into())
            } else {
                None
            }
        })
        .start();
    let mut c = hello(fault.addr());
    c.send(
        "MAIL FROM:<a@x.test>\r\nRCPT TO:<bad@y.test>\r\nRCPT TO:<ok@y.test>\r\n\
         RCPT TO:<late@y.test>\r\nDATA\r\n",
    );
    c.expect(250);
    assert_eq!(c.reply().text(), "5.1.1 No such user");
    c.expect(250);
    c.expect(452);
    c.expect(354);
    c.expect_after(".", 250);
    // The count restarts with each transaction.
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<x1@y.test>\r\nRCPT TO:<x2@y.test>\r\n");
    for code in [250, 250, 250] {
        c.expect(code);
    }
    assert_eq!(fault.messages()[0].rcpts, vec!["ok@y.test"]);
}

#[test]
fn fault_close_after_messages_sends_the_reply_and_closes() {
    let fault = FaultServer::builder()
        .close_after_messages(1, "421 4.7.0 Too many messages")
        .start();
    let mut c = hello(fault.addr());
    begin_data(&mut c);
    c.send(".\r\nMAIL FROM:<a@x.test>\r\n");
    c.expect(250);
    assert_eq!(c.reply().text(), "4.7.0 Too many messages");
    assert!(c.is_closed());
    assert_eq!(fault.messages().len(), 1);
}

#[test]
fn fault_drop_during_data_closes_mid_message_once() {
    let fault = FaultServer::builder().drop_during_data(1).start();
    let mut c = hello(fault.addr());
    begin_data(&mut c);
    c.send("Subject: first line\r\n");
    assert!(c.try_reply().is_none(), "connection should be gone");
    // The retry on a new connection is message attempt 2 and goes through.
    let mut c = hello(fault.addr());
    begin_data(&mut c);
    c.expect_after("Subject: again\r\n.", 250);
    assert_eq!(fault.messages().len(), 1);
    assert_eq!(fault.connections(), 2);
    assert_eq!(fault.messages()[0].connection, 2);
}

#[test]
fn fault_drop_after_final_dot_leaves_the_outcome_unknown() {
    let fault = FaultServer::builder()
        .chunking(true)
        .drop_after_final_dot(1)
        .start();
    let mut c = hello(fault.addr());
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 4 LAST\r\nbody");
    c.expect(250);
    c.expect(250);
    assert!(c.try_reply().is_none());
    assert!(fault.messages().is_empty());
    let lost = fault.unacknowledged();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].data, b"body");
}

#[test]
fn fault_stall_keeps_the_socket_open_without_answering() {
    let fault = FaultServer::builder().stall_after(2).start();
    let mut c = hello(fault.addr());
    c.expect_after("MAIL FROM:<a@x.test>", 250);
    c.set_read_timeout(Duration::from_millis(300));
    c.send("RCPT TO:<b@y.test>\r\n");
    assert!(!c.is_closed(), "stalled, not closed");
    assert!(c.try_reply().is_none());
    // Dropping the handle ends the stall promptly.
    let start = Instant::now();
    drop(fault);
    assert!(start.elapsed() < Duration::from_secs(5));
    c.set_read_timeout(Duration::from_secs(5));
    assert!(c.is_closed());
}

#[test]
fn fault_trickle_sends_replies_byte_by_byte() {
    let fault = FaultServer::builder().trickle(true).start();
    let mut c = RawClient::connect(fault.addr());
    let start = Instant::now();
    let greeting = c.expect(220);
    let ehlo = c.expect_after("EHLO c.test", 250);
    let bytes = greeting.text().len() + ehlo.text().len();
    assert!(ehlo.lines.len() >= 5);
    // At least a millisecond per byte.
    assert!(
        start.elapsed() >= Duration::from_millis(bytes as u64),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn fault_starttls_auth_and_recorded_credentials() {
    let pki = generate_pki(&[]);
    let fault = FaultServer::builder()
        .starttls(Some(pki.clone()))
        .credentials("user", "secret")
        .start();
    let mut c = RawClient::connect(fault.addr());
    c.expect(220);
    let ehlo = c.expect_after("EHLO c.test", 250);
    assert!(ehlo.lines.contains(&"STARTTLS".to_owned()));
    c.expect_after("STARTTLS", 220);
    let mut t = c.starttls(&pki.ca_pem, "127.0.0.1").expect("handshake");
    let ehlo = t.expect_after("EHLO c.test", 250);
    assert!(!ehlo.lines.contains(&"STARTTLS".to_owned()));
    assert!(ehlo.lines.contains(&"AUTH PLAIN LOGIN".to_owned()));
    // base64("\0user\0wrong"), then LOGIN with the right password.
    t.expect_after("AUTH PLAIN AHVzZXIAd3Jvbmc=", 535);
    t.expect_after("AUTH LOGIN", 334);
    t.expect_after("dXNlcg==", 334);
    t.expect_after("c2VjcmV0", 235);
    t.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
    for code in [250, 250, 354] {
        t.expect(code);
    }
    t.expect_after("x\r\n.", 250);
    let msgs = fault.messages();
    assert!(msgs[0].tls);
    let cmds = fault.commands();
    assert!(cmds.contains(&"AUTH PLAIN AHVzZXIAd3Jvbmc=".to_owned()));
    assert!(cmds.contains(&"c2VjcmV0".to_owned()), "{cmds:?}");
}

#[test]
fn fault_injects_bytes_after_starttls() {
    let pki = generate_pki(&[]);
    let fault = FaultServer::builder()
        .starttls(Some(pki))
        .inject_after_starttls("250 injected")
        .start();
    let mut c = hello(fault.addr());
    c.expect_after("STARTTLS", 220);
    // Both lines arrive in the same write, so a client reading the 220 has
    // the injected one buffered already.
    assert_eq!(c.buffered(), b"250 injected\r\n");
}

#[test]
fn fault_tls_garbage_fails_the_handshake() {
    let pki = generate_pki(&[]);
    let fault = FaultServer::builder()
        .starttls(Some(pki.clone()))
        .tls_garbage_after_starttls()
        .start();
    let mut c = hello(fault.addr());
    c.send("STARTTLS\r\n");
    // The garbage may arrive with the 220 (then it is already buffered) or
    // just after (then rustls reads it as a broken handshake).
    let reply = c.reply();
    assert_eq!(reply.code, 220);
    let buffered = c.buffered().to_vec();
    if buffered.is_empty() {
        assert!(c.starttls(&pki.ca_pem, "localhost").is_err());
    } else {
        assert!(buffered.starts_with(b"this is not"));
    }
}

#[test]
fn fault_max_connections_refuses_extra_sessions() {
    let fault = FaultServer::builder().max_connections(1).start();
    let mut first = RawClient::connect(fault.addr());
    first.expect(220);
    let mut second = RawClient::connect(fault.addr());
    assert_eq!(second.reply().code, 421);
    assert!(second.is_closed());
    first.expect_after("QUIT", 221);
    assert!(first.is_closed());
    // Once the first is gone a new session is welcome again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut third = RawClient::connect(fault.addr());
        if third.reply().code == 220 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(fault.refused_connections() >= 1);
    assert_eq!(fault.connections(), 2);
}

#[test]
fn fault_refusing_greeting_answers_503_until_quit() {
    let fault = FaultServer::builder().greeting("554 5.3.2 go away").start();
    let mut c = RawClient::connect(fault.addr());
    assert_eq!(c.reply().code, 554);
    c.expect_after("EHLO c.test", 503);
    c.expect_after("QUIT", 221);
}

#[test]
fn fault_without_pipelining_records_violations() {
    let fault = FaultServer::builder().pipelining(false).start();
    let mut c = RawClient::connect(fault.addr());
    c.expect(220);
    let ehlo = c.expect_after("EHLO c.test", 250);
    assert!(!ehlo.lines.contains(&"PIPELINING".to_owned()));
    c.expect_after("MAIL FROM:<a@x.test>", 250);
    assert!(fault.pipelining_violations().is_empty());
    c.send("RCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n");
    c.expect(250);
    c.expect(250);
    assert_eq!(fault.pipelining_violations().len(), 1);
}

#[test]
fn fault_stops_when_the_handle_drops() {
    let fault = FaultServer::start();
    let addr = fault.addr();
    let mut c = RawClient::connect(addr);
    c.expect(220);
    drop(fault);
    assert!(c.is_closed());
    assert!(connect_refused(addr));
}

// ---------------------------------------------------------------- real servers

#[test]
fn postfix_delivers_into_its_maildir_over_starttls() {
    let pf = Postfix::start();
    let addr: SocketAddr = ([127, 0, 0, 1], pf.port()).into();
    let mut c = RawClient::connect(addr);
    c.expect(220);
    let ehlo = c.expect_after("EHLO c.test", 250);
    for kw in ["PIPELINING", "CHUNKING", "STARTTLS", "SMTPUTF8"] {
        assert!(ehlo.lines.iter().any(|l| l == kw), "{kw}: {ehlo:?}");
    }
    c.expect_after("QUIT", 221);

    let out = smtplib("starttls", pf.port(), Some(&pf.ca_file()), None);
    assert!(out.contains("SENT"), "{out}");
    let files = pf.wait_for_messages(2, Duration::from_secs(20));
    assert_eq!(files.len(), 2, "log:\n{}", pf.log());
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("Subject: selftest"), "{text}");
    assert!(text.contains("\n.leading dot"), "{text}");
    assert!(
        pf.log().contains("TLS connection established"),
        "{}",
        pf.log()
    );
}

#[test]
fn smtp_sink_accepts_a_message() {
    let sink = SmtpSink::start();
    let out = smtplib("plain", sink.port(), None, None);
    assert!(out.contains("SENT"), "{out}");
}

#[test]
fn aiosmtpd_starttls_accepts_the_right_password_and_rejects_a_wrong_one() {
    let server = AuthServer::start(TlsMode::Starttls, "user@example.com", "s3cret");
    let ca = server.ca_file();
    let bad = smtplib(
        "starttls",
        server.port(),
        Some(&ca),
        Some(("user@example.com", "nope", "PLAIN")),
    );
    assert!(bad.contains("AUTHFAIL 535"), "{bad}");
    assert!(!bad.contains("AUTH OFFERED BEFORE TLS"), "{bad}");
    let good = smtplib(
        "starttls",
        server.port(),
        Some(&ca),
        Some(("user@example.com", "s3cret", "LOGIN")),
    );
    assert!(good.contains("SENT"), "{good}");
    let msgs = server.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(msgs.len(), 1);
    let text = std::fs::read_to_string(&msgs[0]).unwrap();
    assert!(
        text.starts_with(
            "Return-Path: <a@example.com>\r\nX-Mailshot-Rcpt: b@example.com, hidden@example.com\r\n\
             X-Auth-User: user@example.com\r\n"
        ),
        "{text:?}"
    );

    // Without TLS there is no AUTH and MAIL is refused.
    let mut c = RawClient::connect(([127, 0, 0, 1], server.port()).into());
    c.expect(220);
    let ehlo = c.expect_after("EHLO c.test", 250);
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    let auth = c.cmd("AUTH PLAIN AHVAcA==");
    assert_eq!(auth.code, 530, "{auth:?}");
    assert!(auth.text().contains("STARTTLS"), "{auth:?}");
}

#[test]
fn aiosmtpd_implicit_tls_auth() {
    let server = AuthServer::start(TlsMode::Implicit, "user", "pw");
    let ca = server.ca_file();
    let bad = smtplib(
        "implicit",
        server.port(),
        Some(&ca),
        Some(("user", "wrong", "LOGIN")),
    );
    assert!(bad.contains("AUTHFAIL 535"), "{bad}");
    let good = smtplib(
        "implicit",
        server.port(),
        Some(&ca),
        Some(("user", "pw", "PLAIN")),
    );
    assert!(good.contains("SENT"), "{good}");
    assert_eq!(
        server.wait_for_messages(1, Duration::from_secs(10)).len(),
        1
    );

    // A rustls client trusting the CA gets the TLS greeting directly.
    let mut t = RawClient::connect_tls(
        ([127, 0, 0, 1], server.port()).into(),
        server.ca_pem(),
        "localhost",
    )
    .expect("implicit TLS handshake");
    t.expect(220);
    t.expect_after("EHLO c.test", 250);
    t.expect_after("MAIL FROM:<a@x.test>", 530);
}
