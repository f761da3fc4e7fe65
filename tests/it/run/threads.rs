//! `run --threads N`: messages rendered on several threads while the
//! sessions send still reach the right recipient with the right content,
//! once each, and the report has one right row per recipient.

use std::collections::BTreeMap;

use super::helpers::*;
use crate::support::fault::FaultServer;

/// Rows of the list; every 37th repeats row 1's address (skipped).
const ROWS: usize = 600;

fn is_duplicate(i: usize) -> bool {
    i % 37 == 5
}

fn list() -> String {
    let mut csv = String::from("email,name\n");
    for i in 1..=ROWS {
        let email = if is_duplicate(i) { addr(1) } else { addr(i) };
        csv.push_str(&format!("{email},Name {i}\n"));
    }
    csv
}

/// Runs the list with `--threads threads`; the report's (row, email,
/// status, reply) rows by row number.
fn run_with(threads: &str) -> BTreeMap<u64, (String, String, String)> {
    let server = FaultServer::start();
    let job = Job::with_csv(&smtp_plain(server.port(), "sessions: 2"), &list(), "");
    let out = job.run(&["--threads", threads, "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = deliveries(&server);
    let mut sent = 0;
    for m in server.messages() {
        // The message for row i goes to row i's address and says row i.
        let text = String::from_utf8_lossy(&m.data).into_owned();
        let row = text
            .split("this is row ")
            .nth(1)
            .and_then(|s| s.split('.').next())
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no row in message:\n{text}"));
        assert_eq!(m.rcpts, [addr(row)], "row {row}");
        assert!(
            text.contains(&format!("Dear Name {row},")),
            "row {row}:\n{text}"
        );
        sent += 1;
    }
    let unique = (1..=ROWS).filter(|&i| !is_duplicate(i)).count();
    assert_eq!(sent, unique, "one message per unique address");
    assert!(got.values().all(|&n| n == 1), "each once: {got:?}");
    job.report()
        .into_iter()
        .map(|r| (r.row, (r.email, r.status, r.reply)))
        .collect()
}

#[test]
fn four_render_threads_send_each_row_its_own_message_once() {
    let four = run_with("4");
    assert_eq!(four.len(), ROWS, "one report row per row");
    for (row, (email, status, reply)) in &four {
        let i = *row as usize;
        if is_duplicate(i) {
            assert_eq!(
                (email.as_str(), status.as_str()),
                (addr(1).as_str(), "skipped")
            );
            assert_eq!(reply, "duplicate of row 1");
        } else {
            assert_eq!((email, status.as_str()), (&addr(i), "sent"), "row {row}");
        }
    }
    // One thread: the same report (the server's reply texts are the same).
    let one = run_with("1");
    let status = |m: &BTreeMap<u64, (String, String, String)>| {
        m.iter()
            .map(|(r, (e, s, _))| (*r, e.clone(), s.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(status(&four), status(&one));
}
