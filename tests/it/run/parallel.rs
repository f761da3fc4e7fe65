//! `--sessions N` is parallel: the work spreads across the sessions and they
//! are connected at the same time.

use std::time::Duration;

use super::helpers::*;
use crate::support::fault::FaultServer;

#[test]
fn four_sessions_each_carry_a_fair_share_of_100_messages() {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(15))
        .start();
    let job = Job::new(&smtp_plain(server.port(), ""), 100);
    let out = job.run(&["--sessions", "4"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 100);
    let conns = closed_stats(&server);
    assert_eq!(conns.len(), 4, "one connection per session: {conns:?}");
    let per_conn: Vec<usize> = conns.iter().map(|c| c.messages).collect();
    assert!(
        per_conn.iter().all(|&n| n >= 10),
        "each session carries at least 10 of 100: {per_conn:?}"
    );
    assert_eq!(max_overlap(&conns), 4, "the 4 sessions overlap: {conns:?}");
}
