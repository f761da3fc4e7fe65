//! `--sessions N` is parallel: the work spreads across the sessions and they
//! are connected at the same time.

use std::time::{Duration, Instant};

use super::helpers::*;
use crate::support::fault::{ConnectionStats, FaultHandle, FaultServer};

/// The largest number of connections open at the same moment.
fn max_overlap(conns: &[ConnectionStats]) -> usize {
    let mut events: Vec<(Instant, i32)> = Vec::new();
    for c in conns {
        events.push((c.opened.expect("opened"), 1));
        events.push((c.closed.expect("closed"), -1));
    }
    // Closings first at equal times: touching intervals are not parallel.
    events.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// The server's connection stats once every connection is closed on its side
/// (mailshot may exit a moment before the server notices the last QUIT).
pub fn closed_stats(server: &FaultHandle) -> Vec<ConnectionStats> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conns = server.connection_stats();
        if conns.iter().all(|c| c.closed.is_some()) || Instant::now() >= deadline {
            return conns;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

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
