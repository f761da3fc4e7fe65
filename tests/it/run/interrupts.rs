//! Interrupts: SIGINT and SIGTERM stop taking new messages, let the
//! ones in flight finish, write journal and report, say how to resume, exit 75;
//! the rerun completes without duplicates.

use std::time::Duration;

use super::helpers::*;
use crate::support::fault::FaultServer;

/// Interrupts a one-session run of 40 with `sig` once sending has started:
/// exit 75, a whole report matching what the server accepted, a journal and
/// a hint to resume; the rerun completes with each row delivered once.
pub fn interrupt_and_resume(sig: &str) {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(100))
        .start();
    let n = 40;
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), n);
    let child = job.spawn(&[]);
    assert!(
        !server
            .wait_for_messages(2, Duration::from_secs(30))
            .is_empty(),
        "sending started"
    );
    signal(&child, sig);
    let out = finish(child, Duration::from_secs(20));
    assert_eq!(out.code, 75, "SIG{sig}: {}", out.stderr);
    assert!(
        out.stderr.contains("interrupted") && out.stderr.contains("mailshot run job.yaml"),
        "says how to resume: {}",
        out.stderr
    );
    assert!(out.stderr.contains("report:"), "{}", out.stderr);
    let sent_before = server.messages().len();
    assert!(sent_before < n, "SIG{sig} stopped the run early");
    let rows = job.report();
    assert_eq!(rows.len(), n, "the report is whole");
    assert_eq!(
        rows.iter().filter(|r| r.status == "sent").count(),
        sent_before,
        "the report matches what the server accepted"
    );
    assert!(job.dir.join("job.journal").exists());

    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, n);
    assert!(job.report().iter().all(|r| r.status == "sent"));
}

#[test]
fn sigint_exits_75_and_rerun_completes() {
    interrupt_and_resume("INT");
}

#[test]
fn sigterm_exits_75_and_rerun_completes() {
    interrupt_and_resume("TERM");
}
