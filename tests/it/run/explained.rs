//! Known provider replies are explained where users look: next to the
//! server's own text in the end-of-run summary and in the `--json` events.
//! A content rejection is reported `rejected`, once, not retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::helpers::*;
use crate::support::fault::{FaultHandle, FaultServer};

const SPAM: &str = "554 DT:SPM 163 smtp14,EsCowAD3pVdTrmBnSU2hAA--.5401S2 1734389331,please see \
                    http://mail.163.com/help/help_spam_16.htm?ip=127.0.0.1";
const SPAM_EXPLAINED: &str = "content flagged as spam: change the content, retrying will not help";

/// A server that answers RCPT for row 2 with NetEase's spam refusal and for
/// row 3 with a plain unknown user; `spam_rcpts` counts the refusals.
fn netease_like(spam_rcpts: Arc<AtomicUsize>) -> FaultHandle {
    FaultServer::builder()
        .rcpt_hook(move |to, _| match to {
            "r2@example.test" => {
                spam_rcpts.fetch_add(1, Ordering::SeqCst);
                Some(SPAM.to_owned())
            }
            "r3@example.test" => Some("550 5.1.1 No such user".to_owned()),
            _ => None,
        })
        .start()
}

#[test]
fn a_content_rejection_is_explained_in_the_json_events_and_not_retried() {
    let spam_rcpts = Arc::new(AtomicUsize::new(0));
    let server = netease_like(spam_rcpts.clone());
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 3"), 3);
    let out = job.run(&["--json"]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let outcome = |row: u64| {
        events
            .iter()
            .find(|e| e["event"] == "outcome" && e["row"] == row)
            .unwrap_or_else(|| panic!("no outcome for row {row}: {}", out.stdout))
    };
    let spam = outcome(2);
    assert_eq!(spam["status"], "rejected");
    assert_eq!(spam["code"], 554);
    assert!(
        spam["reply"]
            .as_str()
            .unwrap()
            .starts_with("DT:SPM 163 smtp14"),
        "the server's own text: {spam}"
    );
    assert_eq!(spam["meaning"], "content");
    assert_eq!(spam["explanation"], SPAM_EXPLAINED);
    assert_eq!(spam["attempts"], 1);
    // An unknown user is not a provider reply: nothing is made up.
    assert_eq!(outcome(3)["status"], "rejected");
    assert!(outcome(3)["explanation"].is_null(), "{}", outcome(3));
    assert_eq!(outcome(1)["status"], "sent");
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    let failures = summary["failures"].as_array().unwrap();
    let spam_failure = failures
        .iter()
        .find(|f| f["reply"].as_str().unwrap().starts_with("554 DT:SPM"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(spam_failure["explanation"], SPAM_EXPLAINED);
    // Refused once, never asked again: not retried, not paused for later.
    assert_eq!(spam_rcpts.load(Ordering::SeqCst), 1);
    let rows = by_email(&job.report());
    assert_eq!(rows["r2@example.test"].status, "rejected");
    assert_eq!(rows["r2@example.test"].code, "554");
}

#[test]
fn a_content_rejection_is_explained_in_the_summary_under_the_servers_text() {
    let server = netease_like(Arc::new(AtomicUsize::new(0)));
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("  1 × 554 DT:SPM 163 smtp14"))
        .unwrap_or_else(|| panic!("no DT:SPM line in the summary:\n{}", out.stderr));
    assert_eq!(lines[at + 1], format!("    → {SPAM_EXPLAINED}"));
    let unknown = lines
        .iter()
        .position(|l| l.starts_with("  1 × 550 No such user"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        !lines.get(unknown + 1).is_some_and(|l| l.contains('→')),
        "{}",
        out.stderr
    );
}

#[test]
fn a_spam_verdict_after_the_data_is_rejected_once_and_explained() {
    // NetEase gives its verdict on the whole message, after the final dot.
    let verdicts = Arc::new(AtomicUsize::new(0));
    let counted = verdicts.clone();
    let server = FaultServer::builder()
        .message_hook(move |m| {
            m.rcpts.iter().any(|r| r == "r2@example.test").then(|| {
                counted.fetch_add(1, Ordering::SeqCst);
                SPAM.to_owned()
            })
        })
        .start();
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 3"), 3);
    let out = job.run(&["--json"]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let spam = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "outcome" && e["row"] == 2)
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert_eq!(spam["status"], "rejected");
    assert_eq!(spam["meaning"], "content");
    assert_eq!(spam["explanation"], SPAM_EXPLAINED);
    assert_eq!(spam["attempts"], 1);
    assert_eq!(verdicts.load(Ordering::SeqCst), 1, "never sent again");
    assert_eq!(server.messages().len(), 2, "the other rows were delivered");
}
