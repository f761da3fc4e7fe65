//! A server whose replies to a pipelined group leave one by one under
//! Nagle's algorithm (Haraka's way, scripted here with the fault server):
//! only the first reply goes out at once, the others wait for the client's
//! acknowledgement of it. A client that delays that acknowledgement (about
//! 40 ms) makes every message wait that long. Judged by when the server
//! had each message in full: on loopback one message follows the other
//! within a few milliseconds.

use std::time::Duration;

use super::helpers::*;
use crate::support::fault::FaultServer;

/// Messages in the run.
const MESSAGES: usize = 60;
/// The median time between two messages' arrivals must stay below this:
/// a delayed acknowledgement per message makes each gap 40 ms or more
/// (48 ms measured), without one it is about 5 ms.
const MEDIAN_GAP: Duration = Duration::from_millis(25);

#[test]
fn replies_held_by_nagle_on_the_server_cost_no_delayed_ack_per_message() {
    let fault = FaultServer::builder()
        .nagle()
        .refuse_pipelined_after_dot()
        .start();
    let job = Job::new(&smtp_plain(fault.port(), ""), MESSAGES);
    let out = job.run(&["--sessions", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&fault, MESSAGES);
    let report = job.report();
    assert!(report.iter().all(|r| r.status == "sent"), "{report:?}");

    let mut arrivals: Vec<_> = fault.messages().iter().map(|m| m.received).collect();
    arrivals.sort();
    let mut gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    eprintln!("median gap between messages: {median:?}");
    assert!(
        median < MEDIAN_GAP,
        "median gap between messages {median:?} (at most {MEDIAN_GAP:?}); \
         the slowest {:?}: each message waits for a delayed acknowledgement",
        gaps.last()
    );
}
