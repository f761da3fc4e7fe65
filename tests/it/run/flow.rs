//! Flow: parallel sessions, reconnects after
//! `max_messages_per_session` and after a 421.
//!
//! Not shown here: that memory stays flat however long the CSV (the bench's
//! job) — the bounded queue between the renderer and the sessions is only
//! visible through its effects below (sessions start sending long before a
//! long list would have been rendered).

use std::time::Duration;

use super::helpers::*;
use crate::support::fault::FaultServer;

#[test]
fn three_sessions_send_in_parallel() {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(20))
        .start();
    let job = Job::new(&smtp_plain(server.port(), ""), 60);
    let out = job.run(&["--sessions", "3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 60);
    let conns = closed_stats(&server);
    assert_eq!(conns.len(), 3, "connections: {conns:?}");
    assert!(
        conns.iter().all(|c| c.messages > 0),
        "every session carries messages: {conns:?}"
    );
    assert_eq!(max_overlap(&conns), 3, "the 3 sessions overlap: {conns:?}");
    assert!(job.report().iter().all(|r| r.status == "sent"));
}

#[test]
fn reconnects_after_max_messages_per_session() {
    let server = FaultServer::start();
    let job = Job::new(
        &smtp_plain(server.port(), "sessions: 1, max_messages_per_session: 10"),
        35,
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 35);
    let per_conn: Vec<usize> = server
        .connection_stats()
        .iter()
        .map(|c| c.messages)
        .collect();
    assert_eq!(per_conn, [10, 10, 10, 5]);
    for n in 1..=4 {
        let cmds = server.commands_on(n);
        assert_eq!(
            cmds.last().map(String::as_str),
            Some("QUIT"),
            "connection {n} ends with QUIT: {cmds:?}"
        );
    }
}

#[test]
fn reconnects_after_421_mid_batch() {
    let server = FaultServer::builder()
        .close_after_messages(4, "421 4.7.0 Too many messages, closing connection")
        .start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 10);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 10);
    let per_conn: Vec<usize> = server
        .connection_stats()
        .iter()
        .map(|c| c.messages)
        .collect();
    assert_eq!(per_conn, [4, 4, 2], "a new session after each 421");
    let rows = job.report();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
}

/// The renderer runs ahead of the sessions but not without bound: with a
/// server that answers slowly, sending starts at once, long before a long
/// list could be rendered, and an interrupt leaves most rows unsent.
#[test]
fn sending_starts_before_a_long_list_is_rendered() {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(100))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 3000);
    let child = job.spawn(&["--quiet"]);
    let first = server.wait_for_messages(1, Duration::from_secs(30));
    assert!(!first.is_empty(), "nothing arrived");
    signal(&child, "INT");
    let out = finish(child, RUN_LIMIT);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let rows = job.report();
    assert_eq!(rows.len(), 3000, "every row is in the report");
    let sent = rows.iter().filter(|r| r.status == "sent").count();
    assert!((1..3000).contains(&sent), "sent {sent}");
    assert_eq!(
        sent,
        server.messages().len(),
        "report agrees with the server"
    );
}
