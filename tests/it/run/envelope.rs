//! Every envelope recipient counts: the journal keeps each recipient's
//! outcome, a rerun sends only to those that have not accepted, and a row is
//! `sent` only when all of its recipients accepted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::helpers::*;
use crate::support::fault::FaultServer;

/// Each row also goes to `cc{row}@cc.test` and, blind, to `bcc{row}@bcc.test`.
const COPIES: &str = "cc: \"{{ cc }}\"\nbcc: \"{{ bcc }}\"";

fn job(port: u16, extra: &str, rows: usize) -> Job {
    let mut csv = String::from("email,name,cc,bcc\n");
    for i in 1..=rows {
        csv.push_str(&format!(
            "{},Name {i},cc{i}@cc.test,bcc{i}@bcc.test\n",
            addr(i)
        ));
    }
    Job::with_csv(&smtp_plain(port, extra), &csv, COPIES)
}

#[test]
fn a_rerun_sends_only_to_recipients_that_have_not_accepted() {
    // Row 1's To is greylisted for two runs; its Cc and Bcc accept at once.
    let greylist = Arc::new(AtomicBool::new(true));
    let g = greylist.clone();
    let victim = addr(1);
    let server = FaultServer::builder()
        .rcpt_hook(move |to, _| {
            (to == victim && g.load(Ordering::SeqCst)).then(|| "451 4.3.0 Try again later".into())
        })
        .start();
    let job = job(server.port(), "sessions: 1, max_attempts: 1", 2);
    for run in 1..=2 {
        let out = job.run(&[]);
        assert_eq!(out.code, 75, "run {run}: {}", out.stderr);
        let rows = by_email(&job.report());
        let r = &rows[&addr(1)];
        assert_eq!(
            (r.status.as_str(), r.code.as_str()),
            ("failed", "451"),
            "{r:?}"
        );
        assert!(
            r.reply.contains(&format!("{}: 451", addr(1))),
            "the reply names the recipient that did not accept: {r:?}"
        );
    }
    greylist.store(false, Ordering::SeqCst);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = deliveries(&server);
    for who in [addr(1), "cc1@cc.test".into(), "bcc1@bcc.test".into()] {
        assert_eq!(got.get(&who), Some(&1), "copies for {who}: {got:?}");
    }
    for who in [addr(2), "cc2@cc.test".into(), "bcc2@bcc.test".into()] {
        assert_eq!(got.get(&who), Some(&1), "copies for {who}: {got:?}");
    }
    assert_eq!(
        rcpts_for(&server, "bcc1@bcc.test"),
        1,
        "the Bcc is never asked again"
    );
    let rows = by_email(&job.report());
    assert_eq!(rows[&addr(1)].status, "sent", "{:?}", rows[&addr(1)]);
    assert_eq!(rows[&addr(1)].attempts, 3);
}

#[test]
fn a_rejected_bcc_is_not_sent() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| (to == "bcc2@bcc.test").then(|| "550 5.1.1 No such user".into()))
        .start();
    let job = job(server.port(), "", 3);
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let rows = by_email(&job.report());
    let r = &rows[&addr(2)];
    assert_eq!(
        (r.status.as_str(), r.code.as_str(), r.enhanced.as_str()),
        ("rejected", "550", "5.1.1"),
        "{r:?}"
    );
    assert!(
        r.reply.contains("bcc2@bcc.test: 550 5.1.1 No such user"),
        "{r:?}"
    );
    assert_eq!(rows[&addr(1)].status, "sent");
    assert_eq!(rows[&addr(3)].status, "sent");
    // The To and Cc did get their copy, once, and a rerun adds none.
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let got = deliveries(&server);
    assert_eq!(got.get(&addr(2)), Some(&1), "{got:?}");
    assert_eq!(got.get("cc2@cc.test"), Some(&1), "{got:?}");
    assert_eq!(got.get("bcc2@bcc.test"), None, "{got:?}");
}

#[test]
fn a_rejected_to_does_not_hide_delivered_copies() {
    let greylist = Arc::new(AtomicBool::new(true));
    let g = greylist.clone();
    let server = FaultServer::builder()
        .rcpt_hook(move |to, _| match to {
            "r1@example.test" => Some("550 5.1.1 No such user".into()),
            "cc1@cc.test" if g.load(Ordering::SeqCst) => Some("451 4.3.0 Try again later".into()),
            _ => None,
        })
        .start();
    let job = job(server.port(), "max_attempts: 1", 1);
    let out = job.run(&["--json"]);
    // A recipient is still to retry, so the run is not finished.
    assert_eq!(out.code, 75, "{}", out.stderr);
    let summary = json_summary(&out.stdout);
    assert_eq!(summary["exit_code"], 75, "{summary}");
    let rows = job.report();
    let r = &rows[0];
    // The first recipient that did not accept decides the status.
    assert_eq!(
        (r.status.as_str(), r.code.as_str()),
        ("rejected", "550"),
        "{r:?}"
    );
    assert!(
        r.reply.contains("r1@example.test: 550 5.1.1 No such user")
            && r.reply.contains("cc1@cc.test: 451 4.3.0 Try again later"),
        "each recipient that did not accept, with its reply: {r:?}"
    );
    assert!(
        r.reply.contains("bcc1@bcc.test"),
        "the delivered Bcc copy is not hidden: {r:?}"
    );
    assert!(!r.message_id.is_empty(), "{r:?}");
    assert_eq!(deliveries(&server).get("bcc1@bcc.test"), Some(&1));

    // The rerun tries only the Cc: the To refused for good, the Bcc has its copy.
    greylist.store(false, Ordering::SeqCst);
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let got = deliveries(&server);
    assert_eq!(got.get("cc1@cc.test"), Some(&1), "{got:?}");
    assert_eq!(got.get("bcc1@bcc.test"), Some(&1), "{got:?}");
    assert_eq!(
        rcpts_for(&server, "r1@example.test"),
        1,
        "a 550 is not asked again"
    );
    let r = &job.report()[0];
    assert_eq!(
        (r.status.as_str(), r.code.as_str()),
        ("rejected", "550"),
        "{r:?}"
    );
    assert!(!r.reply.contains("451"), "{r:?}");
}
