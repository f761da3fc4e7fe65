//! Retries: 4xx and lost connections are retried with backoff up to
//! `max_attempts`; 5xx never; the report counts attempts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::helpers::*;
use crate::support::fault::FaultServer;

#[test]
fn transient_451_twice_then_accepted_once_with_three_attempts() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let victim = addr(2);
    let server = FaultServer::builder()
        .rcpt_hook(move |to, _| {
            (to == victim && s.fetch_add(1, Ordering::SeqCst) < 2)
                .then(|| "451 4.3.0 Try again later".to_owned())
        })
        .start();
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 3"), 4);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 4);
    assert_eq!(rcpts_for(&server, &addr(2)), 3);
    let rows = by_email(&job.report());
    assert_eq!(rows[&addr(2)].status, "sent");
    assert_eq!(rows[&addr(2)].attempts, 3);
    assert_eq!(rows[&addr(1)].attempts, 1);
}

#[test]
fn permanent_550_is_never_retried() {
    let victim = addr(3);
    let server = FaultServer::builder()
        .rcpt_hook(move |to, _| (to == victim).then(|| "550 5.1.1 No such user".to_owned()))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 5"), 5);
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert_eq!(
        rcpts_for(&server, &addr(3)),
        1,
        "one RCPT for the 550 address"
    );
    let rows = by_email(&job.report());
    let r = &rows[&addr(3)];
    assert_eq!(
        (r.status.as_str(), r.code.as_str(), r.enhanced.as_str()),
        ("rejected", "550", "5.1.1")
    );
    assert_eq!(r.attempts, 1);
    assert!(r.reply.contains("No such user"), "{r:?}");
    let got = deliveries(&server);
    assert_eq!(got.get(&addr(3)), None);
    for i in [1, 2, 4, 5] {
        assert_eq!(got.get(&addr(i)), Some(&1));
    }
}

/// A session that goes silent before a message's DATA (a lost connection
/// the client notices by its timeout) is retried on a new connection. (A
/// connection cut after the body was handed out is `uncertain` instead: see
/// `faults::reset_mid_data_is_uncertain_and_never_duplicated`.)
#[test]
fn lost_connection_is_retried() {
    // Each connection answers EHLO and two messages, then goes silent.
    let server = FaultServer::builder().stall_after(7).start();
    let job = Job::new(
        &smtp_plain(server.port(), "sessions: 1, timeout: 1s, max_attempts: 4"),
        4,
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 4);
    assert!(server.connections() >= 2, "a new connection after the loss");
    let rows = job.report();
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    // The message caught by the loss never left (no 354), so its attempt is
    // not held against it: attempts count tries that reached the server.
    assert!(rows.iter().all(|r| r.attempts >= 1));
}

#[test]
fn max_attempts_reached_is_failed_and_exit_75() {
    let victim = addr(1);
    let server = FaultServer::builder()
        .rcpt_hook(move |to, _| (to == victim).then(|| "451 4.7.1 Greylisted".to_owned()))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 3"), 3);
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(
        rcpts_for(&server, &addr(1)),
        3,
        "exactly max_attempts tries"
    );
    let rows = by_email(&job.report());
    let r = &rows[&addr(1)];
    assert_eq!(
        (r.status.as_str(), r.code.as_str(), r.attempts),
        ("failed", "451", 3)
    );
    assert_eq!(rows[&addr(2)].status, "sent");
    assert_eq!(deliveries(&server).get(&addr(1)), None);
}
