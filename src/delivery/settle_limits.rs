//! Tests of how [`settle`](super::settle) treats limit replies: they
//! never settle a recipient, a daily quota costs no attempt, and what else
//! the transaction settled is kept.

use std::sync::Arc;
use std::time::Duration;

use super::dispatch::Work;
use super::settle::{settle, Policy};
use crate::compose::message::{Envelope, Outgoing};
use crate::smtp::client::{TxOutcome, TxResult};
use crate::smtp::reply::{EnhancedCode, Reply};

const POLICY: Policy = Policy {
    max_attempts: 3,
    retry_delay: Duration::from_secs(10),
};

fn work(rcpts: &[&str], attempts: u32) -> Work {
    let out = Outgoing {
        row: 7,
        email: rcpts[0].to_owned(),
        message_id: "<7@run>".into(),
        envelope: Envelope {
            mail_from: "me@x".into(),
            rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
        },
        data: Arc::default(),
        eight_bit: false,
        smtputf8: false,
    };
    Work::new(out, attempts)
}

fn reply(code: u16, (class, subject, detail): (u8, u16, u16), text: &str) -> Reply {
    Reply {
        code,
        enhanced: Some(EnhancedCode {
            class,
            subject,
            detail,
        }),
        lines: vec![text.into()],
    }
}

fn quota() -> Reply {
    reply(550, (5, 4, 5), "Daily user sending quota exceeded.")
}

fn throttled() -> Reply {
    reply(451, (4, 7, 0), "Too many messages, slow down")
}

fn failed(r: Reply) -> TxOutcome {
    TxOutcome {
        id: 7,
        mail: Some(r.clone()),
        rcpts: vec![("to@x".into(), None)],
        result: TxResult::Failed(r),
    }
}

#[test]
fn a_daily_quota_reply_requeues_the_message_without_costing_an_attempt() {
    // The worker counts the attempt before it sends (here: the third and last).
    let d = settle(work(&["to@x"], 3), failed(quota()), &POLICY);
    assert!(
        d.record.is_none(),
        "nothing is recorded: no recipient settled"
    );
    let (w, delay) = d.again.expect("goes back to the queue");
    assert_eq!((w.attempts, delay), (2, Duration::ZERO));
    assert_eq!(w.rcpts, ["to@x"]);
    assert_eq!(d.limit.map(|r| r.code), Some(550));
}

#[test]
fn a_4xx_limit_reply_pauses_but_still_counts_so_a_run_ends() {
    let d = settle(work(&["to@x"], 1), failed(throttled()), &POLICY);
    let (w, delay) = d.again.expect("goes back");
    assert_eq!((w.attempts, delay), (1, Duration::ZERO));
    assert!(d.limit.is_some());
    // The attempts used up: failed (never rejected), and the relay is still paused.
    let d = settle(work(&["to@x"], 3), failed(throttled()), &POLICY);
    let row = d.record.expect("settled").outcome.expect("row decided");
    assert_eq!(row.status.as_str(), "failed");
    assert!(d.limit.is_some());
}

#[test]
fn recipients_that_answered_for_good_stay_settled_beside_a_limited_one() {
    let ok = Reply::new(250, "ok");
    let o = TxOutcome {
        id: 7,
        mail: Some(ok.clone()),
        rcpts: vec![
            ("to@x".into(), Some(ok.clone())),
            ("cc@x".into(), Some(quota())),
            ("bcc@x".into(), Some(Reply::new(550, "5.1.1 no such user"))),
        ],
        result: TxResult::Accepted(Reply::new(250, "queued")),
    };
    let d = settle(work(&["to@x", "cc@x", "bcc@x"], 1), o, &POLICY);
    let rec = d.record.expect("the settled recipients are recorded");
    let settled: Vec<(&str, u16)> = rec
        .rcpts
        .iter()
        .map(|(a, r)| (a.as_str(), r.code))
        .collect();
    assert_eq!(settled, [("to@x", 250), ("bcc@x", 550)]);
    assert!(rec.outcome.is_none());
    let (w, _) = d.again.expect("the limited one goes again");
    assert_eq!(w.rcpts, ["cc@x"]);
    assert_eq!(w.attempts, 0);
}
