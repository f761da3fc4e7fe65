//! Every attempt counts towards `max_attempts`, whatever kind of "not sent"
//! it ends as: a server that refuses every MAIL, or that hangs up on each one,
//! ends the run in bounded time after a bounded number of commands.

use std::time::{Duration, Instant};

use super::helpers::*;
use crate::support::fault::FaultServer;

fn mail_commands(server: &crate::support::fault::FaultHandle) -> usize {
    server
        .commands()
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("MAIL FROM:"))
        .count()
}

/// `n` rows over one session, three attempts each, 20 ms apart.
fn three_attempts_job(port: u16, n: usize) -> Job {
    Job::new(
        &smtp_plain(port, "sessions: 1, max_attempts: 3, retry_delay: 20ms"),
        n,
    )
}

#[test]
fn a_503_to_every_mail_ends_after_max_attempts_per_row() {
    let server = FaultServer::builder()
        .mail_hook(|_| Some("503 5.5.1 Error: bad sequence of commands".to_owned()))
        .start();
    let job = three_attempts_job(server.port(), 4);
    let started = Instant::now();
    let mut child = job.spawn(&[]);
    // Bounded by hand: a run that loops forever must fail here, not hang.
    let deadline = started + Duration::from_secs(30);
    while child.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let still_running = child.child.try_wait().unwrap().is_none();
    let out = finish(child, Duration::from_secs(1).min(RUN_LIMIT));
    let elapsed = started.elapsed();
    assert!(!still_running, "still running after {elapsed:?}");
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    assert_eq!(
        mail_commands(&server),
        4 * 3,
        "each of the 4 rows tried exactly max_attempts times"
    );
    let rows = job.report();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(
            (r.status.as_str(), r.code.as_str(), r.attempts),
            ("failed", "503", 3),
            "{r:?}"
        );
    }
    assert!(server.messages().is_empty());
}

#[test]
fn a_421_to_every_mail_counts_attempts_and_ends() {
    let server = FaultServer::builder()
        .mail_hook(|_| Some("421 4.3.2 Service shutting down".to_owned()))
        .start();
    let job = three_attempts_job(server.port(), 2);
    let out = job.run(&[]);
    assert!(
        out.elapsed < Duration::from_secs(20),
        "took {:?}",
        out.elapsed
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(
        mail_commands(&server) <= 2 * 3,
        "at most max_attempts MAIL per row: {:?}",
        server.commands()
    );
    for r in job.report() {
        assert_eq!((r.status.as_str(), r.attempts), ("failed", 3), "{r:?}");
    }
}

#[test]
fn a_server_that_hangs_up_at_every_mail_ends_the_run() {
    let server = FaultServer::builder()
        .close_after_messages(0, "421 4.7.0 Closing connection")
        .start();
    let job = three_attempts_job(server.port(), 3);
    let out = job.run(&[]);
    assert!(
        out.elapsed < Duration::from_secs(20),
        "took {:?}",
        out.elapsed
    );
    assert!(matches!(out.code, 69 | 75), "{}: {}", out.code, out.stderr);
    assert!(
        server.connections() <= 3,
        "at most max_attempts connections"
    );
    assert!(mail_commands(&server) <= 3 * 3, "{:?}", server.commands());
    assert!(server.messages().is_empty());
    for r in job.report() {
        assert_ne!(r.status, "sent", "{r:?}");
        assert!(r.attempts <= 3, "{r:?}");
    }
}
