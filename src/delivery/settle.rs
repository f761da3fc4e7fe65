//! Settling a transaction: a pure decision from what the server answered
//! (the [`TxOutcome`]), the attempts made and the retry [`Policy`], to what
//! happens next: the row is done (sent, rejected, failed, uncertain), or the
//! recipients still open go again after a backoff. Recipients refused with
//! 4xx (452 among them, RFC 5321 4.5.3.1.10) go again in a new transaction;
//! a row is `sent` only when every envelope recipient accepted
//! ([`row_outcome`]). A limit reply (the account or connection is over a
//! quota or rate, `smtp::known_replies`) never settles a recipient: they go
//! back to the queue and the decision names the reply, so the relay is
//! paused. Nothing here does I/O, sleeps or draws random numbers.

use std::time::Duration;

use super::dispatch::Work;
use super::ledger::Settled;
use super::outcome::{one_line, Outcome, Status};
use crate::smtp::client::{TxOutcome, TxResult};
use crate::smtp::known_replies::is_limit;
use crate::smtp::reply::Reply;

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts per message before a transient failure is final.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, capped at 5 minutes.
    pub retry_delay: Duration,
}

/// Decide one transaction: a final row outcome, or the work to send
/// again, and the recipients it settled for good either way.
pub fn settle(work: Work, o: TxOutcome, policy: &Policy) -> Decision {
    let before = work.settled_rcpts.len();
    match limit_in(&o) {
        // A quota for the day (5xx) never costs an attempt; a 4xx limit
        // costs one, so that a server answering nothing else still ends.
        Some(limit) if limit.is_permanent() || work.attempts < policy.max_attempts => {
            limited(work, before, o, limit)
        }
        Some(limit) => {
            let mut d = decide(work, before, o, policy);
            d.limit = Some(limit);
            d
        }
        None => decide(work, before, o, policy),
    }
}

/// What a transaction without a limit reply (or whose attempts are used
/// up) decides.
fn decide(mut work: Work, before: usize, o: TxOutcome, policy: &Policy) -> Decision {
    match o.result {
        TxResult::Accepted(final_reply) => {
            let mut deferred = Vec::new();
            for (rcpt, reply) in o.rcpts {
                match reply {
                    // Accepted recipients carry the end-of-data reply (it has the queue id).
                    Some(r) if r.is_positive() => {
                        work.settled_rcpts.push((rcpt, final_reply.clone()))
                    }
                    Some(r) if r.is_permanent() => work.settled_rcpts.push((rcpt, r)),
                    other => deferred.push((rcpt, other)),
                }
            }
            defer_or_settle(work, before, deferred, Some(final_reply), policy)
        }
        TxResult::NoValidRecipients => {
            let mut deferred = Vec::new();
            for (rcpt, reply) in o.rcpts {
                match reply {
                    Some(r) if r.is_permanent() => work.settled_rcpts.push((rcpt, r)),
                    other => deferred.push((rcpt, other)),
                }
            }
            defer_or_settle(work, before, deferred, None, policy)
        }
        TxResult::Failed(reply) => {
            if reply.is_transient() {
                retry_or_fail(work, before, Some(reply), policy)
            } else {
                fail_rest(work, before, reply)
            }
        }
        TxResult::TooLarge { size, limit } => {
            let row = outcome(
                &work,
                Status::Rejected,
                None,
                Some(format!(
                    "message is {size} octets, the server accepts at most {limit} (SIZE)"
                )),
            );
            Decision::row(&work, before, row)
        }
        TxResult::Unsupported(why) => {
            let row = outcome(&work, Status::Rejected, None, Some(why));
            Decision::row(&work, before, row)
        }
        TxResult::Uncertain => {
            let row = outcome(
                &work,
                Status::Uncertain,
                None,
                Some(
                    "connection lost after the end of data, before the server's reply; \
                     not resent unless --resend-uncertain"
                        .into(),
                ),
            );
            Decision::row(&work, before, row)
        }
        TxResult::Resend => {
            // Refused only for how it was written (pipelined past the dot);
            // the session now waits at each dot, so this was no try.
            work.attempts = work.attempts.saturating_sub(1);
            Decision::again(work, before, Duration::ZERO)
        }
        TxResult::NotSent => {
            // The message never left, but the attempt counts: a server that
            // refuses every MAIL (503, 421) or hangs up each time must not
            // keep the run going forever.
            let reply = o.mail.filter(|m| !m.is_positive());
            if work.attempts < policy.max_attempts {
                let delay = backoff(policy.retry_delay, work.attempts);
                Decision::again(work, before, delay)
            } else {
                not_sent(work, before, reply)
            }
        }
    }
}

/// The limit reply (over a quota or rate) in what the server answered, if any.
fn limit_in(o: &TxOutcome) -> Option<Reply> {
    match &o.result {
        TxResult::Failed(r) if is_limit(r) => Some(r.clone()),
        TxResult::Accepted(_) | TxResult::NoValidRecipients => o
            .rcpts
            .iter()
            .filter_map(|(_, r)| r.as_ref())
            .find(|r| is_limit(r))
            .cloned(),
        TxResult::NotSent => o.mail.as_ref().filter(|r| is_limit(r)).cloned(),
        _ => None,
    }
}

/// A limit reply: the recipients it (or anything short of an answer for
/// good) left open go back to the queue at once, for another relay or for
/// later (a daily quota's attempt does not count); the relay is paused by
/// the caller. Recipients that accepted, or refused for good, are settled
/// as usual; a 5xx limit reply never refuses one.
fn limited(mut work: Work, before: usize, o: TxOutcome, limit: Reply) -> Decision {
    let whole = matches!(o.result, TxResult::Failed(_) | TxResult::NotSent);
    if !whole {
        let accept = match &o.result {
            TxResult::Accepted(r) => Some(r.clone()),
            _ => None,
        };
        let mut open = Vec::new();
        for (rcpt, reply) in o.rcpts {
            match (reply, &accept) {
                (Some(r), Some(fin)) if r.is_positive() => {
                    work.settled_rcpts.push((rcpt, fin.clone()))
                }
                (Some(r), _) if r.is_permanent() && !is_limit(&r) => {
                    work.settled_rcpts.push((rcpt, r))
                }
                _ => open.push(rcpt),
            }
        }
        work.rcpts = open;
    }
    if limit.is_permanent() {
        work.attempts = work.attempts.saturating_sub(1);
    }
    let mut d = Decision::again(work, before, Duration::ZERO);
    d.limit = Some(limit);
    d
}

fn retry_or_fail(work: Work, before: usize, reply: Option<Reply>, policy: &Policy) -> Decision {
    if work.attempts < policy.max_attempts {
        let delay = backoff(policy.retry_delay, work.attempts);
        return Decision::again(work, before, delay);
    }
    match reply {
        Some(reply) => fail_rest(work, before, reply),
        None => not_sent(work, before, None),
    }
}

/// The message never left (`reply`: the server's refusal of MAIL, if
/// any) and no attempt is left: `failed`, whatever that reply's class,
/// since it says nothing about the recipients (a rerun tries them).
fn not_sent(work: Work, before: usize, reply: Option<Reply>) -> Decision {
    const NOT_SENT: &str = "not sent: the session ended before the message could be sent";
    if work.settled_rcpts.is_empty() {
        let why = reply.is_none().then(|| NOT_SENT.to_owned());
        let row = outcome(&work, Status::Failed, reply.as_ref(), why);
        return Decision::row(&work, before, row);
    }
    // Some recipients accepted in an earlier transaction: name the others.
    let text = match &reply {
        Some(r) => format!("not sent: the server answered MAIL with {r}"),
        None => NOT_SENT.to_owned(),
    };
    fail_rest(work, before, Reply::new(451, text))
}

/// Recipients refused with 4xx (452 too many recipients among them, RFC 5321
/// 4.5.3.1.10) go again in a new transaction; the row settles once none is
/// left or the attempts are used up.
fn defer_or_settle(
    mut work: Work,
    before: usize,
    deferred: Vec<(String, Option<Reply>)>,
    final_reply: Option<Reply>,
    policy: &Policy,
) -> Decision {
    if !deferred.is_empty() && work.attempts < policy.max_attempts {
        let progressed = final_reply.is_some();
        work.rcpts = deferred.into_iter().map(|(r, _)| r).collect();
        // After a partial delivery the rest go right away; otherwise back off.
        let delay = if progressed {
            Duration::ZERO
        } else {
            backoff(policy.retry_delay, work.attempts)
        };
        return Decision::again(work, before, delay);
    }
    work.rcpts.clear();
    for (rcpt, reply) in deferred {
        let reply = reply.unwrap_or_else(|| Reply::new(451, "no reply to RCPT"));
        work.settled_rcpts.push((rcpt, reply));
    }
    Decision::row(&work, before, row_outcome(&work, final_reply.as_ref()))
}

/// Every recipient still to deliver to got `reply` (a refusal of the whole
/// transaction): the row is decided from all its recipients' replies.
fn fail_rest(mut work: Work, before: usize, reply: Reply) -> Decision {
    for rcpt in std::mem::take(&mut work.rcpts) {
        work.settled_rcpts.push((rcpt, reply.clone()));
    }
    Decision::row(&work, before, row_outcome(&work, None))
}

/// What settling one transaction decided.
pub struct Decision {
    /// What to hand the ledger: the recipients settled for good and, when
    /// the row is decided, its outcome.
    pub record: Option<Settled>,
    /// The work to send again, and after how long (the nominal backoff,
    /// before the jitter the dispatcher adds; zero: right away).
    pub again: Option<(Work, Duration)>,
    /// A reply saying the account or connection is over a limit: the relay
    /// that gave it is to be paused.
    pub limit: Option<Reply>,
}

impl Decision {
    /// The recipients `work` settled for good since `before`.
    fn newly(work: &Work, before: usize) -> Vec<(String, Reply)> {
        work.settled_rcpts[before..]
            .iter()
            .filter(|(_, r)| r.is_positive() || r.is_permanent())
            .cloned()
            .collect()
    }

    /// The row is decided.
    fn row(work: &Work, before: usize, row: Outcome) -> Decision {
        let open = row.status != Status::Uncertain
            && work.settled_rcpts.iter().any(|(_, r)| r.is_transient());
        Decision {
            record: Some(Settled {
                row: work.out.row,
                rcpts: Self::newly(work, before),
                outcome: Some(row),
                open: open && row_status_is_final(&work.settled_rcpts),
            }),
            again: None,
            limit: None,
        }
    }

    /// The work goes out again after `delay`.
    fn again(work: Work, before: usize, delay: Duration) -> Decision {
        let rcpts = Self::newly(&work, before);
        Decision {
            record: (!rcpts.is_empty()).then_some(Settled {
                row: work.out.row,
                rcpts,
                outcome: None,
                open: false,
            }),
            again: Some((work, delay)),
            limit: None,
        }
    }
}

/// Whether a row with these recipient replies gets a final status (its first
/// refusal is permanent) although some recipients are still to retry.
fn row_status_is_final(rcpts: &[(String, Reply)]) -> bool {
    rcpts
        .iter()
        .find(|(_, r)| !r.is_positive())
        .is_some_and(|(_, r)| r.is_permanent())
}

/// The row's outcome from its recipients' replies: `sent` only when every
/// envelope recipient accepted; otherwise the status of the first (in To, Cc,
/// Bcc order) that did not, with every such recipient and its reply named in
/// `reply`, and the recipients that did accept after them.
pub fn row_outcome(work: &Work, last_accept: Option<&Reply>) -> Outcome {
    let envelope = &work.out.envelope.rcpt_to;
    let place = |a: &str| {
        envelope
            .iter()
            .position(|r| r.eq_ignore_ascii_case(a))
            .unwrap_or(usize::MAX)
    };
    let mut all: Vec<&(String, Reply)> = work.settled_rcpts.iter().collect();
    all.sort_by_key(|(a, _)| place(a));
    let (accepted, refused): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, r)| r.is_positive());
    let Some((_, first)) = refused.first() else {
        let reply = last_accept.or_else(|| accepted.last().map(|(_, r)| r));
        return outcome(work, Status::Sent, reply, None);
    };
    let status = if first.is_transient() {
        Status::Failed
    } else {
        Status::Rejected
    };
    if envelope.len() <= 1 {
        return outcome(work, status, Some(first), None);
    }
    let mut text = refused
        .iter()
        .map(|(a, r)| format!("{a}: {r}"))
        .collect::<Vec<_>>()
        .join("; ");
    if !accepted.is_empty() {
        text.push_str("; accepted by ");
        text.push_str(
            &accepted
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    outcome(work, status, Some(first), Some(text))
}

fn outcome(work: &Work, status: Status, reply: Option<&Reply>, text: Option<String>) -> Outcome {
    Outcome {
        row: work.out.row,
        email: work.out.email.clone(),
        status,
        code: reply.map(|r| r.code),
        enhanced: reply.and_then(|r| r.enhanced.map(|e| e.to_string())),
        reply: one_line(&text.unwrap_or_else(|| reply.map(|r| r.text()).unwrap_or_default())),
        message_id: Some(work.out.message_id.clone()),
        attempts: work.attempts,
        relay: None,
    }
}

/// Exponential backoff before attempt `attempt + 1`: `base` doubled per
/// attempt made, capped at 5 minutes (the dispatcher adds ±25% jitter).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    exp.min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::message::Outgoing;
    use std::sync::Arc;

    fn work(rcpts: &[&str], settled: &[(&str, u16, &str)]) -> Work {
        let out = Outgoing {
            row: 1,
            email: rcpts[0].to_owned(),
            message_id: "<1@run>".into(),
            envelope: crate::compose::message::Envelope {
                mail_from: "me@x".into(),
                rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
            },
            data: Arc::default(),
            eight_bit: false,
            smtputf8: false,
        };
        let settled = settled
            .iter()
            .map(|(a, code, text)| (a.to_string(), Reply::new(*code, *text)))
            .collect();
        Work::resume(out, 1, settled)
    }

    #[test]
    fn a_row_is_sent_only_when_every_recipient_accepted() {
        let all = ["to@x", "cc@x", "bcc@x"];
        let w = work(
            &all,
            &[
                ("bcc@x", 250, "ok"),
                ("to@x", 250, "ok"),
                ("cc@x", 250, "ok"),
            ],
        );
        assert!(w.rcpts.is_empty());
        assert_eq!(row_outcome(&w, None).status, Status::Sent);
        // In envelope order the Cc is the first that did not accept.
        let w = work(
            &all,
            &[
                ("bcc@x", 550, "no"),
                ("to@x", 250, "ok"),
                ("cc@x", 451, "later"),
            ],
        );
        let o = row_outcome(&w, None);
        assert_eq!((o.status, o.code), (Status::Failed, Some(451)));
        assert_eq!(o.reply, "cc@x: 451 later; bcc@x: 550 no; accepted by to@x");
        // A one-recipient row keeps the plain reply.
        let o = row_outcome(&work(&["to@x"], &[("to@x", 550, "no")]), None);
        assert_eq!((o.status, o.reply.as_str()), (Status::Rejected, "no"));
    }

    #[test]
    fn resumed_work_sends_only_to_unsettled_recipients() {
        let w = work(&["to@x", "cc@x", "bcc@x"], &[("BCC@x", 250, "ok")]);
        assert_eq!(w.rcpts, ["to@x", "cc@x"]);
    }

    const POLICY: Policy = Policy {
        max_attempts: 3,
        retry_delay: Duration::from_secs(10),
    };

    /// A transaction on `work` (its attempt counted, as the worker does)
    /// that ended with `result`, each recipient answered as given.
    fn tx(work: &mut Work, rcpts: &[(&str, Option<u16>)], result: TxResult) -> TxOutcome {
        work.attempts += 1;
        TxOutcome {
            id: work.out.row,
            mail: Some(Reply::new(250, "ok")),
            rcpts: rcpts
                .iter()
                .map(|(a, code)| (a.to_string(), code.map(|c| Reply::new(c, "rcpt"))))
                .collect(),
            result,
        }
    }

    fn fresh(rcpts: &[&str]) -> Work {
        let mut w = work(rcpts, &[]);
        w.attempts = 0;
        w
    }

    #[test]
    fn an_accepted_message_is_done_and_sent() {
        let mut w = fresh(&["to@x"]);
        let o = tx(
            &mut w,
            &[("to@x", Some(250))],
            TxResult::Accepted(Reply::new(250, "queued as 7")),
        );
        let d = settle(w, o, &POLICY);
        assert!(d.again.is_none());
        let rec = d.record.expect("recorded");
        let row = rec.outcome.expect("decided");
        assert_eq!(
            (row.status, row.code, row.attempts),
            (Status::Sent, Some(250), 1)
        );
        assert_eq!(row.reply, "queued as 7");
        // The recipient keeps the end-of-data reply, with the queue id.
        assert_eq!(
            rec.rcpts,
            vec![("to@x".to_string(), Reply::new(250, "queued as 7"))]
        );
        assert!(!rec.open);
    }

    #[test]
    fn a_transient_refusal_is_retried_after_the_backoff_until_the_attempts_run_out() {
        let mut w = fresh(&["to@x"]);
        let o = tx(&mut w, &[], TxResult::Failed(Reply::new(451, "later")));
        let d = settle(w, o, &POLICY);
        assert!(d.record.is_none(), "nothing settled yet");
        let (mut w, delay) = d.again.expect("sent again");
        assert_eq!(delay, Duration::from_secs(10));
        let o = tx(&mut w, &[], TxResult::Failed(Reply::new(451, "later")));
        let (mut w, delay) = settle(w, o, &POLICY).again.expect("sent again");
        assert_eq!(delay, Duration::from_secs(20), "the delay doubles");
        let o = tx(&mut w, &[], TxResult::Failed(Reply::new(451, "later")));
        let d = settle(w, o, &POLICY);
        assert!(d.again.is_none(), "the third attempt was the last");
        let row = d.record.and_then(|r| r.outcome).expect("decided");
        assert_eq!(
            (row.status, row.code, row.attempts),
            (Status::Failed, Some(451), 3)
        );
    }

    #[test]
    fn a_permanent_refusal_is_rejected_at_once() {
        let mut w = fresh(&["to@x"]);
        let o = tx(&mut w, &[], TxResult::Failed(Reply::new(554, "no")));
        let d = settle(w, o, &POLICY);
        assert!(d.again.is_none());
        let row = d.record.and_then(|r| r.outcome).expect("decided");
        assert_eq!((row.status, row.code), (Status::Rejected, Some(554)));
    }

    #[test]
    fn a_lost_reply_after_the_data_is_uncertain_and_never_retried() {
        let mut w = fresh(&["to@x"]);
        let o = tx(&mut w, &[("to@x", Some(250))], TxResult::Uncertain);
        let d = settle(w, o, &POLICY);
        assert!(d.again.is_none());
        let rec = d.record.expect("recorded");
        let row = rec.outcome.expect("decided");
        assert_eq!(row.status, Status::Uncertain);
        assert!(row.reply.contains("--resend-uncertain"), "{}", row.reply);
        assert!(!rec.open, "an uncertain row is not retried by a rerun");
    }

    #[test]
    fn deferred_recipients_go_again_right_after_a_partial_delivery() {
        let mut w = fresh(&["to@x", "cc@x", "bcc@x"]);
        let o = tx(
            &mut w,
            &[
                ("to@x", Some(250)),
                ("cc@x", Some(452)),
                ("bcc@x", Some(550)),
            ],
            TxResult::Accepted(Reply::new(250, "ok")),
        );
        let d = settle(w, o, &POLICY);
        let rec = d.record.expect("settled recipients recorded first");
        assert!(rec.outcome.is_none(), "the row is not decided yet");
        let names: Vec<&str> = rec.rcpts.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["to@x", "bcc@x"]);
        let (w, delay) = d.again.expect("the rest goes again");
        assert_eq!(delay, Duration::ZERO);
        assert_eq!(w.rcpts, ["cc@x"]);
    }

    #[test]
    fn a_message_that_never_left_fails_once_the_attempts_are_used() {
        let mut w = fresh(&["to@x"]);
        w.attempts = POLICY.max_attempts - 1;
        let o = tx(&mut w, &[], TxResult::NotSent);
        let d = settle(w, o, &POLICY);
        assert!(d.again.is_none());
        let row = d.record.and_then(|r| r.outcome).expect("decided");
        assert_eq!(row.status, Status::Failed);
        assert!(row.reply.starts_with("not sent"), "{}", row.reply);
    }

    #[test]
    fn a_refusal_of_how_it_was_pipelined_goes_again_at_once_and_costs_no_attempt() {
        // Its last attempt: handing it out (in `tx`) uses the final one.
        let mut w = fresh(&["to@x"]);
        w.attempts = POLICY.max_attempts - 1;
        let o = tx(&mut w, &[], TxResult::Resend);
        let d = settle(w, o, &POLICY);
        let (again, delay) = d.again.expect("sent again");
        assert_eq!(delay, Duration::ZERO);
        assert_eq!(again.attempts, POLICY.max_attempts - 1);
        assert!(d.record.is_none());
    }

    #[test]
    fn the_nominal_backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1), Duration::from_secs(1));
        assert_eq!(backoff(base, 4), Duration::from_secs(8));
        assert_eq!(backoff(base, 30), Duration::from_secs(300));
    }
}
