//! `mailshot capture` against hostile and careless clients: it serves a
//! bounded number of connections on a bounded number of threads, drops idle
//! and trickling clients, bounds line length, and unstuffs a leading dot only
//! at the start of a line (after CRLF), so content survives as sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::capture::Capture;
use crate::support::RawClient;

/// The first reply line a fresh connection gets (bounded wait), or "" if none.
fn first_line(sock: &TcpStream) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while let Ok(1) = (&*sock).read(&mut byte) {
        line.push(byte[0]);
        if byte[0] == b'\n' || line.len() > 512 {
            break;
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[test]
fn connections_beyond_the_limit_get_421_and_threads_stay_bounded() {
    let cap = Capture::start(&[]);
    let n = 200;
    let mut socks = Vec::new();
    let (mut greeted, mut refused) = (0, 0);
    for _ in 0..n {
        let sock = TcpStream::connect(cap.addr()).expect("connect");
        let line = first_line(&sock);
        if line.starts_with("220 ") {
            greeted += 1;
        } else if line.starts_with("421 ") {
            refused += 1;
            // A refused connection is closed by the server.
            let mut rest = [0u8; 16];
            assert!(
                matches!((&sock).read(&mut rest), Ok(0) | Err(_)),
                "a refused connection is closed"
            );
        } else {
            panic!("unexpected first line {line:?}");
        }
        socks.push(sock);
    }
    assert_eq!(greeted, 64, "64 connections served at once (default)");
    assert_eq!(refused, n - 64);
    let threads = cap.threads();
    assert!(
        threads <= 64 + 8,
        "{threads} threads for {n} connections (64 served)"
    );

    // Once clients leave, their places are free again.
    drop(socks);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sock = TcpStream::connect(cap.addr()).expect("connect");
        if first_line(&sock).starts_with("220 ") {
            break;
        }
        assert!(Instant::now() < deadline, "places never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_connection_limit_is_configurable() {
    let cap = Capture::start(&["--max-connections", "3"]);
    let socks: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(cap.addr()).unwrap())
        .collect();
    let lines: Vec<String> = socks.iter().map(first_line).collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("220 ")).count(),
        3,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("421 ")).count(),
        2,
        "{lines:?}"
    );
}

#[test]
fn idle_and_trickling_clients_are_dropped() {
    let cap = Capture::start(&["--idle-timeout", "1s"]);

    // Silent after the greeting.
    let mut idle = RawClient::connect(cap.addr());
    idle.expect(220);
    let started = Instant::now();
    let bye = idle.try_reply();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "dropped after about a second"
    );
    assert_eq!(bye.map(|r| r.code), Some(421), "says why it closes");
    assert!(idle.is_closed());

    // One byte every 200 ms: never silent for a second, but no line ever ends.
    let sock = TcpStream::connect(cap.addr()).unwrap();
    assert!(first_line(&sock).starts_with("220 "));
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..50 {
        if (&sock).write_all(b"N").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = started.elapsed();
    if !closed {
        // Writes into a closed socket may still succeed once; reading says.
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = Vec::new();
        closed = (&sock).read_to_end(&mut buf).is_ok();
    }
    assert!(closed, "a trickling client was served for {elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
}

fn begin_data(cap: &Capture) -> RawClient {
    let mut c = RawClient::connect(cap.addr());
    c.expect(220);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@example.test>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c
}

#[test]
fn a_leading_dot_is_unstuffed_only_after_crlf() {
    let cap = Capture::start(&[]);
    let mut c = begin_data(&cap);
    // After a bare LF a dot is content, not stuffing, and "\n.\r\n" does
    // not end the message; after CRLF a doubled dot is one dot.
    c.send(b"Subject: dots\r\n\r\nbare\n.kept\r\n..stuffed\r\ntail\n.\r\nmore\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.cmd("QUIT").code, 221);
    let msgs = cap.messages();
    assert_eq!(msgs.len(), 1);
    let text = String::from_utf8_lossy(&msgs[0]).into_owned();
    let body = text.split_once("\r\n\r\n").expect("headers, then body").1;
    assert_eq!(body, "bare\n.kept\r\n.stuffed\r\ntail\n.\r\nmore\r\n");
}

#[test]
fn overlong_lines_are_refused_and_the_session_goes_on() {
    let cap = Capture::start(&[]);
    let mut c = RawClient::connect(cap.addr());
    c.expect(220);
    let long = "X".repeat(64 * 1024);
    assert_eq!(c.cmd(&format!("NOOP {long}")).code, 500);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@example.test>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let line = "y".repeat(2 << 20);
    c.send(format!("Subject: long\r\n\r\n{line}\r\n.\r\n"));
    assert_eq!(c.reply().code, 552, "a 2 MiB line is refused");
    assert_eq!(c.cmd("NOOP").code, 250);
    assert!(cap.messages().is_empty());
}
