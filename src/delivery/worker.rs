//! The sessions' workers: [`deliver`] runs one thread per session of each
//! route (a relay, or the single server). Each connects when there is work
//! (to the route's endpoints, in order), keeps the protocol core's pipeline window
//! full (RFC 2920 pipelining, RFC 3030 BDAT), records every batch in flight
//! before handing it over, settles what the server answers through
//! [`settle`](super::settle), and reconnects after
//! `max_messages_per_session`, a 421 or a dropped connection, with
//! exponential backoff and jitter. A limit reply pauses the route (its
//! sessions leave, the message goes back to the queue for another route); a
//! route that cannot be opened is retired while the others carry on, except
//! that a pool's relay whose TLS or login fails is paused and tried again,
//! with backoff, up to `max_attempts` times.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::daily::DailyCounts;
use super::dispatch::SessionKey;
use super::dispatch::{Dispatcher, Next, RunEnd, Work};
use super::ledger::Ledger;
use super::plan::{worth_retrying, Plan, Route};
use super::settle::{backoff, settle};
use crate::error::Error;
use crate::smtp::client::{CloseReason, Event, SessionError, Transaction, TxOutcome, TxResult};
use crate::smtp::known_replies::is_limit;
use crate::smtp::net::session::{Session, SessionFailure};
use crate::smtp::reply::Reply;

/// Send everything `source` yields over the parallel sessions of every
/// route of `plan`; returns when it is exhausted and every message is
/// settled, or when the run is stopped (`stop`) or fails.
pub fn deliver(
    plan: &Plan,
    source: Receiver<Work>,
    ledger: &dyn Ledger,
    stop: Arc<AtomicBool>,
) -> RunEnd {
    if let Some(mx) = &plan.mx {
        return super::mx::deliver(plan, mx, source, ledger, stop);
    }
    let daily = DailyCounts::load(plan.daily_state.as_deref());
    let dispatch = Dispatcher::new(source, plan, daily, stop);
    std::thread::scope(|s| {
        // Sessions are numbered across routes: the trace tells them apart.
        let mut id = 0;
        for route in 0..plan.routes.len() {
            for _ in 0..dispatch.route_plan(route).sessions.max(1) {
                id += 1;
                let (dispatch, id) = (&dispatch, id);
                s.spawn(move || SessionWorker::new(plan, route, dispatch, ledger, id).work());
            }
        }
    });
    dispatch.end()
}

/// A worker driving one session at a time.
struct SessionWorker<'a> {
    plan: &'a Plan,
    /// The route's number in the dispatcher.
    route: usize,
    /// How the route's sessions connect.
    rp: Arc<Route>,
    dispatch: &'a Dispatcher,
    ledger: &'a dyn Ledger,
    id: usize,
    failures: u32,
    /// The endpoint the next session tries first, and the one the current
    /// session is on: an MX destination whose host answered a message with
    /// 4xx moves on to its next host.
    from: usize,
    at: usize,
    move_on: bool,
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
    /// Worker number `id` (it names the session in the trace) on `route`.
    fn new(
        plan: &'a Plan,
        route: usize,
        dispatch: &'a Dispatcher,
        ledger: &'a dyn Ledger,
        id: usize,
    ) -> Self {
        SessionWorker {
            plan,
            route,
            rp: dispatch.route_plan(route),
            dispatch,
            ledger,
            id,
            failures: 0,
            from: 0,
            at: 0,
            move_on: false,
        }
    }

    /// This worker's route.
    fn r(&self) -> &Route {
        &self.rp
    }

    /// This worker's session, as the dispatcher knows it.
    fn key(&self) -> SessionKey {
        (self.route, self.id)
    }

    /// Open a session to the route's first endpoint that answers.
    fn open(&mut self) -> Result<Session<'a>, SessionFailure> {
        let trace = self.plan.trace.clone().map(|t| match self.plan.named {
            true => t.labelled(&self.r().name),
            false => t,
        });
        let mut last = None;
        let endpoints = &self.r().endpoints;
        let n = endpoints.len().max(1);
        for i in (0..endpoints.len()).map(|k| (self.from + k) % n) {
            let endpoint = &endpoints[i];
            match Session::open(endpoint, self.r().core.clone(), trace.clone(), self.id) {
                Ok(s) => {
                    self.at = i;
                    self.move_on = false;
                    return Ok(s);
                }
                Err(f) if worth_retrying(&f) => last = Some(f),
                // An MX host that fails in any way passes to the next one.
                Err(f) if self.r().domain.is_some() => last = Some(f),
                Err(f) => return Err(f),
            }
        }
        Err(last.unwrap_or_else(|| {
            SessionFailure::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the route has no endpoint",
            ))
        }))
    }

    /// Pause the route after a limit reply, telling the user when the
    /// pause is new.
    fn paused_by(&self, reply: &Reply) {
        if let Some(d) =
            self.dispatch
                .pause_for_limit(self.route, reply, self.plan.retry.retry_delay)
        {
            let name = &self.r().name;
            let how_long = if d > Duration::from_secs(300) {
                "until the day ends".to_owned()
            } else {
                format!("for {:.1}s", d.as_secs_f64())
            };
            self.ledger.note(&format!(
                "relay {name} paused {how_long}: it answered {reply}"
            ));
        }
    }

    /// Whether this route is a relay of a pool (not the only server, nor an
    /// MX destination).
    fn in_pool(&self) -> bool {
        self.plan.named && self.r().domain.is_none()
    }

    /// Wait (holding this session's first message) while another session of
    /// the route tries to log in; true when this one may try now, false when
    /// the route was paused or left meanwhile.
    fn wait_for_login(&self) -> bool {
        loop {
            if self.dispatch.may_try_login(self.route) {
                return true;
            }
            if self.dispatch.paused(self.route) || self.dispatch.halted() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// In a pool, a relay whose TLS, login or greeting failed is paused and
    /// tried again with backoff while the others carry on, at most
    /// `max_attempts` times in the run (a refused password tried without
    /// end can lock the account). True when it is paused (the user is told);
    /// false when it is to be left: the last try was refused, or it is the
    /// only server (which fails at once, as a wrong password should).
    fn login_paused(&self, err: &Error) -> bool {
        if !self.in_pool() {
            return false;
        }
        let max = self.plan.retry.max_attempts;
        match self.dispatch.login_refused(
            self.route,
            max,
            self.plan.retry.retry_delay,
            err.to_string(),
        ) {
            Some((d, n)) => {
                let name = &self.r().name;
                self.ledger.note(&format!(
                    "relay {name} paused for {:.1}s (try {n} of {max} refused): {err}",
                    d.as_secs_f64()
                ));
                true
            }
            None => false,
        }
    }

    /// Leave the route for this run, telling the user when others go on.
    fn retire(&self, err: Error) {
        let text = err.to_string();
        if !self.dispatch.retire(self.route, err) {
            let name = &self.r().name;
            self.ledger
                .note(&format!("relay {name} is left for this run: {text}"));
        }
    }

    /// Open sessions and send on them until the dispatcher has no more work
    /// for this route or the run stops.
    fn work(mut self) {
        loop {
            // Connect only when there is something to send.
            let first = loop {
                match self.dispatch.next(self.key(), 0) {
                    Next::Work(w) => break *w,
                    Next::Wait(d) => std::thread::sleep(d),
                    Next::Done => return,
                }
            };
            if self.in_pool() && !self.wait_for_login() {
                // Another session's login was refused: the route is paused.
                self.dispatch.requeue(first, Duration::ZERO);
                continue;
            }
            let opened = self.open();
            if self.in_pool() {
                self.dispatch.login_tried(self.route, opened.is_ok());
            }
            let mut session = match opened {
                Ok(s) => s,
                Err(failure) => {
                    // Nothing of `first` left: give it back untouched.
                    self.dispatch.requeue(first, Duration::ZERO);
                    if let Some(reply) = limit_of_failure(&failure) {
                        // "Too many connections" and the like: pause the route
                        // (its attempts still count, below).
                        self.paused_by(&reply);
                    }
                    if !worth_retrying(&failure) {
                        let err = self.r().open_error(&failure);
                        if self.login_paused(&err) {
                            continue;
                        }
                        self.retire(err);
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

    /// Sleep before reconnecting (what this session held went back to the
    /// queue, for the other sessions and routes); false when the attempts
    /// are used up (the route is then retired; the run stops with what is
    /// left unsent if it was the last).
    fn backoff(&mut self, why: &str) -> bool {
        self.failures += 1;
        if self.failures >= self.plan.retry.max_attempts.max(1) {
            // In a pool the dispatcher words the run's end; this names the relay.
            let err = if self.plan.named || self.dispatch.accepted.load(Ordering::SeqCst) == 0 {
                Error::Unavailable(format!(
                    "could not use {} after {} attempts: {why}",
                    self.r().server(),
                    self.failures
                ))
            } else {
                Error::TempFail(format!(
                    "the server became unavailable ({why}); rerun to resume"
                ))
            };
            self.retire(err);
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
        let window = self.r().core.window.max(1);
        let max = self.r().max_messages_per_session.max(1);
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
            if (self.plan.rate.is_some() || self.r().rate.is_some())
                && (!round.inflight.is_empty() || !batch.is_empty())
            {
                break;
            }
            // A paused route takes nothing more; what it holds may finish.
            // Nor does a session leaving for the next MX host.
            if round.carry.is_none() && (self.dispatch.paused(self.route) || self.move_on) {
                break;
            }
            if session.client().in_flight() + batch.len() >= window {
                break;
            }
            let w = match round.carry.take() {
                Some(w) => w,
                None => match self
                    .dispatch
                    .next(self.key(), round.inflight.len() + batch.len())
                {
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
            if !self.dispatch.rate_slot(self.route) {
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
        if self.move_on {
            return Some(Close::Quit(SessionEnd::Reconnect));
        }
        if round.submitted >= self.r().max_messages_per_session.max(1)
            || (round.carry.is_none() && self.dispatch.paused(self.route))
        {
            // A paused route's session leaves; the worker waits for the pause to end.
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
                if let CloseReason::ServiceClosing(reply) = &reason {
                    if is_limit(reply) {
                        self.paused_by(reply);
                    }
                }
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
        let mut accepted = 0;
        let mut limit: Option<Reply> = None;
        for o in outcomes {
            let Some(mut work) = inflight.remove(&o.id) else {
                continue;
            };
            self.dispatch.release(&mut work);
            if matches!(o.result, TxResult::Accepted(_)) {
                accepted += 1;
            }
            let decision = settle(work, o, &self.plan.retry);
            let mut record = decision.record;
            if let (Some(rec), true) = (record.as_mut(), self.plan.named) {
                if let Some(o) = rec.outcome.as_mut() {
                    o.relay = Some(self.dispatch.route_name(self.route));
                }
            }
            records.extend(record);
            again.extend(decision.again);
            if decision.limit.is_some() {
                limit = decision.limit;
            }
        }
        self.dispatch.accepted_on(self.route, accepted);
        if let Some(reply) = &limit {
            self.paused_by(reply);
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
        let deferred = limit.is_some() || again.iter().any(|(_, d)| !d.is_zero());
        if deferred && self.r().domain.is_some() && self.r().endpoints.len() > 1 {
            // RFC 5321 §5.1: a 4xx from one MX host sends the retry to the next.
            self.from = (self.at + 1) % self.r().endpoints.len();
            self.move_on = true;
        }
        for (w, delay) in again {
            self.dispatch.requeue(w, jitter(delay));
        }
        true
    }
}

/// The limit reply that refused a session, if that is why it could not
/// be opened (a greeting or a 421 saying the connections are over a limit).
fn limit_of_failure(failure: &SessionFailure) -> Option<Reply> {
    match failure {
        SessionFailure::Closed(
            CloseReason::ServiceClosing(r) | CloseReason::Error(SessionError::Greeting(r)),
        ) if is_limit(r) => Some(r.clone()),
        _ => None,
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
