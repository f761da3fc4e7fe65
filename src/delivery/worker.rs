//! The sessions' workers: [`deliver`] runs one thread per session. Each
//! connects when there is work, keeps the protocol core's pipeline window
//! full (RFC 2920 pipelining, RFC 3030 BDAT), records every batch in flight
//! before handing it over, settles what the server answers through
//! [`settle`](super::settle), and reconnects after
//! `max_messages_per_session`, a 421 or a dropped connection, with
//! exponential backoff and jitter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dispatch::{Dispatcher, Next, RunEnd, Work};
use super::ledger::Ledger;
use super::plan::{worth_retrying, Plan};
use super::settle::{backoff, settle};
use crate::error::Error;
use crate::smtp::client::{Event, Transaction, TxOutcome, TxResult};
use crate::smtp::net::session::{Session, SessionFailure};

/// Send everything `source` yields over `plan.sessions` parallel sessions;
/// returns when it is exhausted and every message is settled, or when the
/// run is stopped (`stop`) or fails.
pub fn deliver(
    plan: &Plan,
    source: Receiver<Work>,
    ledger: &dyn Ledger,
    stop: Arc<AtomicBool>,
) -> RunEnd {
    if let Some(mx) = &plan.mx {
        return super::mx::deliver(plan, mx, source, ledger, stop);
    }
    let dispatch = Dispatcher::new(source, plan.sessions, plan.rate, stop);
    std::thread::scope(|s| {
        for id in 1..=plan.sessions.max(1) {
            let dispatch = &dispatch;
            s.spawn(move || SessionWorker::new(plan, dispatch, ledger, id).work());
        }
    });
    dispatch.end()
}

/// A worker driving one session at a time.
struct SessionWorker<'a> {
    plan: &'a Plan,
    dispatch: &'a Dispatcher,
    ledger: &'a dyn Ledger,
    id: usize,
    failures: u32,
}

/// What ending a session means for the worker.
enum SessionEnd {
    /// No more work.
    Finished,
    /// Reconnect (after `max_messages_per_session` or a clean close).
    Reconnect,
    /// The session broke; reconnect after a backoff.
    Broken(String),
}

/// How a connected session is left.
enum Close {
    /// Say QUIT first.
    Quit(SessionEnd),
    /// As it is (the connection is gone or the server ended it).
    Abandon(SessionEnd),
}

/// One connected session's state.
#[derive(Default)]
struct Round {
    /// Taken from the dispatcher and not yet submitted.
    carry: Option<Work>,
    /// Submitted and not yet settled, by transaction id (the row).
    inflight: HashMap<u64, Work>,
    /// Messages submitted on this session.
    submitted: usize,
    /// The dispatcher has nothing more (or the run is stopping).
    exhausted: bool,
    /// Unstarted transactions were given back because the run is stopping.
    withdrawn: bool,
}

impl<'a> SessionWorker<'a> {
    /// Worker number `id` (it names the session in the trace).
    fn new(plan: &'a Plan, dispatch: &'a Dispatcher, ledger: &'a dyn Ledger, id: usize) -> Self {
        SessionWorker {
            plan,
            dispatch,
            ledger,
            id,
            failures: 0,
        }
    }

    /// Open sessions and send on them until the dispatcher has no more work
    /// or the run stops.
    fn work(mut self) {
        loop {
            // Connect only when there is something to send.
            let first = loop {
                match self.dispatch.next(0) {
                    Next::Work(w) => break *w,
                    Next::Wait(d) => std::thread::sleep(d),
                    Next::Done => return,
                }
            };
            let mut session = match self.open() {
                Ok(s) => s,
                Err(failure) => {
                    // Nothing of `first` left: give it back untouched.
                    self.dispatch.requeue(first, Duration::ZERO);
                    if !worth_retrying(&failure) {
                        self.dispatch.set_fatal(self.plan.open_error(&failure));
                        return;
                    }
                    if !self.backoff(&failure.to_string()) {
                        return;
                    }
                    continue;
                }
            };
            let ledger = self.ledger;
            session.set_commit_hook(Box::new(move |rows| ledger.committing(rows)));
            self.dispatch.active.fetch_add(1, Ordering::SeqCst);
            self.ledger
                .sessions_active(self.dispatch.active.load(Ordering::SeqCst));
            let end = self.drive(session, first);
            self.dispatch.active.fetch_sub(1, Ordering::SeqCst);
            self.ledger
                .sessions_active(self.dispatch.active.load(Ordering::SeqCst));
            match end {
                SessionEnd::Finished => return,
                SessionEnd::Reconnect => self.failures = 0,
                SessionEnd::Broken(why) => {
                    if !self.backoff(&why) {
                        return;
                    }
                }
            }
        }
    }

    /// Open a session on the plan's endpoint, else on each fallback in
    /// turn (the next MX host); the last failure when none opens.
    fn open(&self) -> Result<Session<'a>, SessionFailure> {
        let mut last = None;
        for endpoint in std::iter::once(&self.plan.endpoint).chain(&self.plan.fallbacks) {
            match Session::open(
                endpoint,
                self.plan.core.clone(),
                self.plan.trace.clone(),
                self.id,
            ) {
                Ok(session) => return Ok(session),
                Err(failure) => last = Some(failure),
            }
        }
        Err(last.expect("the plan has an endpoint"))
    }

    /// Sleep before reconnecting; false when the attempts are used up (the run
    /// then stops with what is left unsent).
    fn backoff(&mut self, why: &str) -> bool {
        self.failures += 1;
        if self.failures >= self.plan.retry.max_attempts.max(1) {
            let err = if self.dispatch.accepted.load(Ordering::SeqCst) == 0 {
                Error::Unavailable(format!(
                    "could not use {} after {} attempts: {why}",
                    self.plan.server(),
                    self.failures
                ))
            } else {
                Error::TempFail(format!(
                    "the server became unavailable ({why}); rerun to resume"
                ))
            };
            self.dispatch.set_fatal(err);
            return false;
        }
        let delay = retry_delay(self.plan.retry.retry_delay, self.failures);
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if self.dispatch.halted() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        true
    }

    /// Run one connected session until it ends.
    fn drive(&mut self, mut session: Session<'_>, first: Work) -> SessionEnd {
        let mut round = Round {
            carry: Some(first),
            ..Round::default()
        };
        let close = loop {
            if let Some(close) = self.step(&mut session, &mut round) {
                break close;
            }
        };
        match close {
            Close::Quit(end) => {
                session.quit();
                end
            }
            Close::Abandon(end) => end,
        }
    }

    /// One turn: top up the window, then settle what the server answers;
    /// how to leave the session once it is done.
    fn step(&mut self, session: &mut Session<'_>, round: &mut Round) -> Option<Close> {
        let batch = self.fill(session, round);
        if !batch.is_empty() {
            if let Some(close) = self.submit(session, round, batch) {
                return Some(close);
            }
        }
        if round.inflight.is_empty() {
            return self.idle(session, round);
        }
        if self.dispatch.halted() && !round.withdrawn {
            self.withdraw(session, round);
            if round.inflight.is_empty() {
                return None;
            }
        }
        self.await_outcomes(session, &mut round.inflight)
    }

    /// Take the next batch from the dispatcher. The window is refilled only
    /// once it is half empty, so that one durable reservation (a disk sync)
    /// covers many messages.
    fn fill(&self, session: &mut Session<'_>, round: &mut Round) -> Vec<Work> {
        let window = self.plan.core.window.max(1);
        let max = self.plan.max_messages_per_session.max(1);
        let mut batch: Vec<Work> = Vec::new();
        if round.inflight.len() * 2 > window {
            return batch;
        }
        loop {
            if round.submitted + batch.len() >= max || !session.client().can_submit() {
                break;
            }
            // Under a rate limit, one message at a time keeps arrival
            // times as even as the send times.
            if self.plan.rate.is_some() && (!round.inflight.is_empty() || !batch.is_empty()) {
                break;
            }
            if session.client().in_flight() + batch.len() >= window {
                break;
            }
            let w = match round.carry.take() {
                Some(w) => w,
                None => match self.dispatch.next(round.inflight.len() + batch.len()) {
                    Next::Work(w) => *w,
                    Next::Wait(d) => {
                        if round.inflight.is_empty() && batch.is_empty() {
                            std::thread::sleep(d);
                            continue;
                        }
                        break;
                    }
                    Next::Done => {
                        round.exhausted = true;
                        break;
                    }
                },
            };
            batch.push(w);
        }
        batch
    }

    /// Record `batch` in flight, then hand it to the protocol core, one rate
    /// slot per message; the session's end if the journal cannot be written.
    fn submit(
        &mut self,
        session: &mut Session<'_>,
        round: &mut Round,
        batch: Vec<Work>,
    ) -> Option<Close> {
        let entries: Vec<(u64, &str, u32)> = batch
            .iter()
            .map(|w| (w.out.row, w.out.message_id.as_str(), w.attempts + 1))
            .collect();
        if let Err(e) = self.ledger.inflight(&entries) {
            self.dispatch
                .set_fatal(Error::Software(format!("cannot write the journal: {e}")));
            for w in batch {
                self.dispatch.requeue(w, Duration::ZERO);
            }
            self.finish_inflight(session, &mut round.inflight);
            return Some(Close::Quit(SessionEnd::Finished));
        }
        let mut batch = batch.into_iter();
        while let Some(mut w) = batch.next() {
            if !self.dispatch.rate_slot() {
                // Stopping: these were reserved but never sent.
                self.dispatch.requeue(w, Duration::ZERO);
                for w in batch.by_ref() {
                    self.dispatch.requeue(w, Duration::ZERO);
                }
                round.exhausted = true;
                break;
            }
            w.attempts += 1;
            // The row is the transaction id: the commit hook gets rows.
            let id = w.out.row;
            let tx = Transaction {
                id,
                mail_from: w.out.envelope.mail_from.clone(),
                rcpt_to: w.rcpts.clone(),
                data: w.out.data.clone(),
                eight_bit: w.out.eight_bit,
                smtputf8: w.out.smtputf8,
                envid: Some(
                    w.out
                        .message_id
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string(),
                ),
            };
            session.client().submit(tx);
            round.inflight.insert(id, w);
            round.submitted += 1;
        }
        None
    }

    /// Nothing in flight: leave the session if the work is done, the
    /// per-session limit is reached or the server closed it; `None` to go on.
    fn idle(&self, session: &mut Session<'_>, round: &mut Round) -> Option<Close> {
        if round.exhausted || self.dispatch.halted() {
            return Some(Close::Quit(SessionEnd::Finished));
        }
        if round.submitted >= self.plan.max_messages_per_session.max(1) {
            return Some(Close::Quit(SessionEnd::Reconnect));
        }
        if !session.client().can_submit() && session.client().in_flight() == 0 {
            // The server ended the session (a 421): nothing more can go on
            // it, so reconnect instead of spinning here forever.
            if let Some(w) = round.carry.take() {
                self.dispatch.requeue(w, Duration::ZERO);
            }
            let why = match session.next_event() {
                Ok(Event::Closed(reason)) => reason.to_string(),
                Err(failure) => failure.to_string(),
                Ok(_) => "the server ended the session".to_owned(),
            };
            return Some(Close::Abandon(SessionEnd::Broken(why)));
        }
        None
    }

    /// Stopping: what has not started goes back to the queue (a rerun sends
    /// it), with the attempt not counted; what is under way may finish.
    fn withdraw(&self, session: &mut Session<'_>, round: &mut Round) {
        round.withdrawn = true;
        for o in session.client().withdraw_unstarted() {
            if let Some(mut w) = round.inflight.remove(&o.id) {
                w.attempts = w.attempts.saturating_sub(1);
                self.dispatch.requeue(w, Duration::ZERO);
            }
        }
    }

    /// Wait for the server's next answers and settle them; the session's
    /// end if it broke or the ledger failed.
    fn await_outcomes(
        &mut self,
        session: &mut Session<'_>,
        inflight: &mut HashMap<u64, Work>,
    ) -> Option<Close> {
        match session.next_event() {
            Ok(Event::Outcome(o)) => {
                let mut outcomes = vec![o];
                // Group commit: settle every outcome that is already here.
                while let Ok(Some(Event::Outcome(o))) = session.poll_ready() {
                    outcomes.push(o);
                }
                if !self.settle_all(outcomes, inflight) {
                    self.finish_inflight(session, inflight);
                    return Some(Close::Quit(SessionEnd::Finished));
                }
                self.failures = 0;
                None
            }
            Ok(Event::Closed(reason)) => {
                let lost = session.lost();
                self.settle_all(lost, inflight);
                self.requeue_all(inflight);
                Some(Close::Abandon(SessionEnd::Broken(reason.to_string())))
            }
            Ok(Event::Ready) | Ok(Event::StartTls) => None,
            Err(failure) => {
                let lost = session.lost();
                self.settle_all(lost, inflight);
                self.requeue_all(inflight);
                Some(Close::Abandon(SessionEnd::Broken(failure.to_string())))
            }
        }
    }

    /// Wait for the outcomes of what is already in flight (the run is stopping).
    fn finish_inflight(&mut self, session: &mut Session<'_>, inflight: &mut HashMap<u64, Work>) {
        while !inflight.is_empty() {
            match session.next_event() {
                Ok(Event::Outcome(o)) => {
                    self.settle_all(vec![o], inflight);
                }
                Ok(Event::Ready) | Ok(Event::StartTls) => {}
                Ok(Event::Closed(_)) | Err(_) => {
                    let lost = session.lost();
                    self.settle_all(lost, inflight);
                    break;
                }
            }
        }
        self.requeue_all(inflight);
    }

    fn requeue_all(&self, inflight: &mut HashMap<u64, Work>) {
        for (_, w) in inflight.drain() {
            self.dispatch.requeue(w, Duration::ZERO);
        }
    }

    /// Turn protocol outcomes into row outcomes or requeued work; false if the
    /// ledger failed (sending must stop). What each recipient answered is
    /// handed to the ledger before any of the work goes out again.
    fn settle_all(&mut self, outcomes: Vec<TxOutcome>, inflight: &mut HashMap<u64, Work>) -> bool {
        let mut records = Vec::new();
        let mut again = Vec::new();
        for o in outcomes {
            let Some(work) = inflight.remove(&o.id) else {
                continue;
            };
            if matches!(o.result, TxResult::Accepted(_)) {
                self.dispatch.accepted.fetch_add(1, Ordering::SeqCst);
            }
            let decision = settle(work, o, &self.plan.retry);
            records.extend(decision.record);
            again.extend(decision.again);
        }
        if !records.is_empty() {
            if let Err(e) = self.ledger.settled_rcpts(&records) {
                self.dispatch
                    .set_fatal(Error::Software(format!("cannot write the journal: {e}")));
                return false;
            }
        }
        for r in &records {
            if r.outcome.is_some() {
                self.dispatch.done_one();
            }
        }
        for (w, delay) in again {
            self.dispatch.requeue(w, jitter(delay));
        }
        true
    }
}

/// `d` with ±25% jitter, so sessions that failed together do not retry in step.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// Exponential backoff with ±25% jitter, capped at 5 minutes.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    jitter(backoff(base, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        for attempt in 1..6 {
            let d = retry_delay(base, attempt);
            let nominal = 1u64 << (attempt - 1);
            assert!(d.as_secs_f64() >= nominal as f64 * 0.75 - 1e-9);
            assert!(d.as_secs_f64() <= nominal as f64 * 1.25 + 1e-9);
        }
        assert!(retry_delay(base, 30) <= Duration::from_secs(375));
    }
}
