//! Queue → sessions: hands rendered messages to `sessions` parallel SMTP
//! sessions, reconnects after `max_messages_per_session`, a 421 or a dropped
//! connection, applies the shared rate limit, retries transient failures with
//! exponential backoff and jitter, and settles every message into exactly one
//! final [`Outcome`] through the [`Ledger`] (the journal, the report and the
//! progress display behind it).
//!
//! Exactly-once rests on one ordering rule: a message is recorded in flight
//! (durably, by the ledger) before it is handed to the protocol core, so before
//! its final dot or `BDAT LAST` can leave; its outcome is recorded before the
//! next one is reported. Outcomes are per envelope recipient: what each To,
//! Cc and Bcc answered is handed to the ledger before the rest of the row is
//! queued again (and so before its next in-flight record is synced), and a
//! row is `sent` only when every recipient accepted ([`row_outcome`]).
//!
//! Sessions connect at once and share the work: each takes messages only up
//! to its fair share of what is outstanding, so the first session to connect
//! cannot fill its whole window while the others idle.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::limiter::Limiter;
use super::outcome::{one_line, Outcome, Status};
use crate::error::Error;
use crate::job::Rate;
use crate::message::Outgoing;
use crate::smtp::client::{
    ClientConfig, CloseReason, Event, SessionError, Transaction, TxOutcome, TxResult,
};
use crate::smtp::connection::{Endpoint, Session, SessionFailure, Trace};
use crate::smtp::reply::Reply;

/// Where the scheduler records what happens; implemented by the run driver
/// over the journal, report and progress display.
pub trait Ledger: Sync {
    /// Durably record that these messages are about to be handed to a session
    /// (row, message id, attempt). An error stops all sending.
    fn inflight(&self, batch: &[(u64, &str, u32)]) -> io::Result<()>;
    /// Note (cheaply, not necessarily durably) that these rows' final dot or
    /// `BDAT LAST` is about to be written. An error stops all sending.
    fn committing(&self, _rows: &[u64]) -> io::Result<()> {
        Ok(())
    }
    /// Record final outcomes; they must be durable before they are reported
    /// (the ledger may batch them). An error stops all sending.
    fn settled(&self, batch: &[Outcome]) -> io::Result<()>;
    /// Record what transactions decided: the envelope recipients settled for
    /// good, then the rows' outcomes. Recipients must be recorded before this
    /// returns, since the rest of a row may be sent again right after. The
    /// default records only the outcomes (for a ledger with no journal).
    fn settled_rcpts(&self, batch: &[Settled]) -> io::Result<()> {
        let outcomes: Vec<Outcome> = batch.iter().filter_map(|s| s.outcome.clone()).collect();
        if outcomes.is_empty() {
            return Ok(());
        }
        self.settled(&outcomes)
    }
    /// Sessions currently connected (for the progress display).
    fn sessions_active(&self, _n: usize) {}
}

/// One message on its way, with what is left of its envelope.
#[derive(Debug, Clone)]
pub struct Work {
    /// The rendered message.
    pub out: Outgoing,
    /// Attempts made before this one (from earlier runs too).
    pub attempts: u32,
    /// Recipients still to deliver to (a 452 defers some to a new transaction).
    pub rcpts: Vec<String>,
    /// Replies of recipients already settled (accepted or refused) in earlier transactions.
    pub settled_rcpts: Vec<(String, Reply)>,
}

impl Work {
    /// A fresh work item for `out`.
    pub fn new(out: Outgoing, attempts: u32) -> Self {
        let rcpts = out.envelope.rcpt_to.clone();
        Work {
            out,
            attempts,
            rcpts,
            settled_rcpts: Vec::new(),
        }
    }

    /// Work for `out` whose recipients in `settled` already accepted or
    /// refused for good (in an earlier run): only the others are sent to.
    pub fn resume(out: Outgoing, attempts: u32, settled: Vec<(String, Reply)>) -> Self {
        let rcpts = out
            .envelope
            .rcpt_to
            .iter()
            .filter(|r| !settled.iter().any(|(s, _)| s.eq_ignore_ascii_case(r)))
            .cloned()
            .collect();
        Work {
            out,
            attempts,
            rcpts,
            settled_rcpts: settled,
        }
    }
}

/// How the scheduler runs.
#[derive(Clone)]
pub struct Plan {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// Protocol core settings for every session (credentials included).
    pub core: ClientConfig,
    /// Parallel sessions.
    pub sessions: usize,
    /// QUIT and reconnect after this many messages.
    pub max_messages_per_session: usize,
    /// Rate limit across sessions.
    pub rate: Option<Rate>,
    /// Attempts per message for transient failures.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt (with jitter), capped at 5 minutes.
    pub retry_delay: Duration,
    /// SMTP trace sink.
    pub trace: Option<Trace>,
    /// Advice appended to an authentication failure (provider specific).
    pub auth_advice: Option<String>,
}

/// What the run as a whole ended with.
#[derive(Debug, Default)]
pub struct RunEnd {
    /// A condition that stopped the run early (auth failure, unreachable server, journal failure).
    pub fatal: Option<Error>,
    /// Messages accepted by a server in this run.
    pub accepted: usize,
    /// Messages never settled (left in the queue); a rerun sends them.
    pub unsent: usize,
    /// The run was interrupted.
    pub interrupted: bool,
}

enum Next {
    Work(Box<Work>),
    Wait(Duration),
    Done,
}

/// Rendered messages a dispatcher holds ready beside the renderer's queue, so
/// that it knows how much work there is to share out.
const READY: usize = 256;

/// The renderer's queue and the messages already taken from it.
struct Source {
    rx: Option<Receiver<Work>>,
    ready: VecDeque<Work>,
}

struct Dispatcher {
    source: Mutex<Source>,
    /// Parallel sessions the work is shared between.
    sessions: usize,
    retry: Mutex<Vec<(Instant, Work)>>,
    /// Items taken from the source and not yet settled.
    pending: AtomicUsize,
    limiter: Option<Mutex<Limiter>>,
    stop: Arc<AtomicBool>,
    fatal: Mutex<Option<Error>>,
    failed_hard: AtomicBool,
    accepted: AtomicUsize,
    active: AtomicUsize,
}

impl Dispatcher {
    fn halted(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.failed_hard.load(Ordering::SeqCst)
    }

    fn set_fatal(&self, err: Error) {
        let mut f = self.fatal.lock().unwrap();
        if f.is_none() {
            *f = Some(err);
        }
        self.failed_hard.store(true, Ordering::SeqCst);
    }

    /// The next message for a session that already holds `held` in flight.
    fn next(&self, held: usize) -> Next {
        if self.halted() {
            return Next::Done;
        }
        self.take(Instant::now(), held)
    }

    /// Wait for a send slot of the rate limit, taken right before the message
    /// is handed to its session so that the slot's time is the send time;
    /// false if the run stops meanwhile.
    fn rate_slot(&self) -> bool {
        let Some(lim) = &self.limiter else {
            return true;
        };
        loop {
            if self.halted() {
                return false;
            }
            match lim.lock().unwrap().try_acquire(Instant::now()) {
                Ok(()) => return true,
                Err(wait) => std::thread::sleep(wait.min(Duration::from_millis(50))),
            }
        }
    }

    /// A session takes work only up to its fair share of what is
    /// outstanding (`held` counts what it has in flight), so that one session
    /// never fills its window with everything while the others idle.
    fn take(&self, now: Instant, held: usize) -> Next {
        let mut source = self.source.lock().unwrap();
        // Top up the ready list, so the share below sees the backlog.
        while source.ready.len() < READY {
            let Some(rx) = source.rx.as_ref() else { break };
            match rx.try_recv() {
                Ok(w) => {
                    self.pending.fetch_add(1, Ordering::SeqCst);
                    source.ready.push_back(w);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => source.rx = None,
            }
        }
        let pending = self.pending.load(Ordering::SeqCst);
        let share = pending.div_ceil(self.sessions.max(1)).max(1);
        if held > 0 && held >= share {
            return Next::Wait(Duration::from_millis(5));
        }
        let mut next_due = None;
        {
            let mut retry = self.retry.lock().unwrap();
            if let Some(i) = (0..retry.len()).min_by_key(|&i| retry[i].0) {
                if retry[i].0 <= now {
                    let (_, w) = retry.swap_remove(i);
                    return Next::Work(Box::new(w));
                }
                next_due = Some(retry[i].0 - now);
            }
        }
        if let Some(w) = source.ready.pop_front() {
            return Next::Work(Box::new(w));
        }
        if source.rx.is_some() {
            return Next::Wait(
                next_due
                    .unwrap_or(Duration::from_millis(5))
                    .min(Duration::from_millis(5)),
            );
        }
        if pending == 0 {
            Next::Done
        } else {
            Next::Wait(
                next_due
                    .unwrap_or(Duration::from_millis(20))
                    .min(Duration::from_millis(200)),
            )
        }
    }

    /// Put work back to be sent again after `delay`.
    fn requeue(&self, work: Work, delay: Duration) {
        self.retry
            .lock()
            .unwrap()
            .push((Instant::now() + delay, work));
    }

    fn done_one(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    fn unsent(&self) -> usize {
        let in_source = self
            .source
            .lock()
            .unwrap()
            .rx
            .as_ref()
            .map(|rx| rx.try_iter().count())
            .unwrap_or(0);
        self.pending.load(Ordering::SeqCst) + in_source
    }
}

/// Send everything `source` yields; returns when it is exhausted and every
/// message is settled, or when the run is stopped (`stop`) or fails.
pub fn run(
    plan: &Plan,
    source: Receiver<Work>,
    ledger: &dyn Ledger,
    stop: Arc<AtomicBool>,
) -> RunEnd {
    let dispatch = Dispatcher {
        source: Mutex::new(Source {
            rx: Some(source),
            ready: VecDeque::new(),
        }),
        sessions: plan.sessions.max(1),
        retry: Mutex::new(Vec::new()),
        pending: AtomicUsize::new(0),
        limiter: plan.rate.map(|r| Mutex::new(Limiter::new(r))),
        stop: stop.clone(),
        fatal: Mutex::new(None),
        failed_hard: AtomicBool::new(false),
        accepted: AtomicUsize::new(0),
        active: AtomicUsize::new(0),
    };
    std::thread::scope(|s| {
        for id in 1..=plan.sessions.max(1) {
            let dispatch = &dispatch;
            s.spawn(move || SessionWorker::new(plan, dispatch, ledger, id).run());
        }
    });
    let fatal = dispatch.fatal.lock().unwrap().take();
    RunEnd {
        unsent: dispatch.unsent(),
        accepted: dispatch.accepted.load(Ordering::SeqCst),
        interrupted: stop.load(Ordering::SeqCst),
        fatal,
    }
}

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

impl<'a> SessionWorker<'a> {
    fn new(plan: &'a Plan, dispatch: &'a Dispatcher, ledger: &'a dyn Ledger, id: usize) -> Self {
        SessionWorker {
            plan,
            dispatch,
            ledger,
            id,
            failures: 0,
        }
    }

    fn run(mut self) {
        loop {
            // Connect only when there is something to send.
            let first = loop {
                match self.dispatch.next(0) {
                    Next::Work(w) => break *w,
                    Next::Wait(d) => std::thread::sleep(d),
                    Next::Done => return,
                }
            };
            let mut session = match Session::open(
                &self.plan.endpoint,
                self.plan.core.clone(),
                self.plan.trace.clone(),
                self.id,
            ) {
                Ok(s) => s,
                Err(failure) => {
                    // Nothing of `first` left: give it back untouched.
                    self.dispatch.requeue(first, Duration::ZERO);
                    if let Some(fatal) = self.fatal_open_failure(&failure) {
                        self.dispatch.set_fatal(fatal);
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

    /// Sleep before reconnecting; false when the attempts are used up (the run
    /// then stops with what is left unsent).
    fn backoff(&mut self, why: &str) -> bool {
        self.failures += 1;
        if self.failures >= self.plan.max_attempts.max(1) {
            let err = if self.dispatch.accepted.load(Ordering::SeqCst) == 0 {
                Error::Unavailable(format!(
                    "could not use {}:{} after {} attempts: {why}",
                    self.plan.endpoint.host, self.plan.endpoint.port, self.failures
                ))
            } else {
                Error::TempFail(format!(
                    "the server became unavailable ({why}); rerun to resume"
                ))
            };
            self.dispatch.set_fatal(err);
            return false;
        }
        let delay = retry_delay(self.plan.retry_delay, self.failures);
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if self.dispatch.halted() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        true
    }

    fn fatal_open_failure(&self, failure: &SessionFailure) -> Option<Error> {
        let server = format!("{}:{}", self.plan.endpoint.host, self.plan.endpoint.port);
        match failure {
            SessionFailure::Io(_) => None,
            SessionFailure::Tls(e) => Some(Error::Unavailable(format!(
                "{server}: TLS handshake failed: {e}"
            ))),
            SessionFailure::Closed(CloseReason::ServiceClosing(_)) => None,
            SessionFailure::Closed(CloseReason::Quit) => None,
            SessionFailure::Closed(CloseReason::Error(e)) => Some(match e {
                SessionError::AuthFailed(reply) => {
                    let mut msg = format!("{server}: authentication failed: {reply}");
                    if let Some(advice) = &self.plan.auth_advice {
                        msg.push_str("\n  ");
                        msg.push_str(advice);
                    }
                    Error::Auth(msg)
                }
                SessionError::AuthRequiresTls | SessionError::AuthUnsupported => {
                    Error::Auth(format!("{server}: {e}"))
                }
                SessionError::Greeting(reply) if reply.is_transient() => {
                    return None;
                }
                other => Error::Unavailable(format!("{server}: {other}")),
            }),
        }
    }

    /// Run one connected session until it ends.
    fn drive(&mut self, mut session: Session<'_>, first: Work) -> SessionEnd {
        let mut carry = Some(first);
        let mut inflight: HashMap<u64, Work> = HashMap::new();
        let mut submitted = 0usize;
        let max = self.plan.max_messages_per_session.max(1);
        let mut exhausted = false;
        let mut withdrawn = false;
        loop {
            // Refill the window only once it is half empty, so that one durable
            // reservation (a disk sync) covers many messages.
            let window = self.plan.core.window.max(1);
            let refill = inflight.len() * 2 <= window;
            let mut batch: Vec<Work> = Vec::new();
            if refill {
                loop {
                    if submitted + batch.len() >= max || !session.client().can_submit() {
                        break;
                    }
                    // Under a rate limit, one message at a time keeps arrival
                    // times as even as the send times.
                    if self.plan.rate.is_some() && (!inflight.is_empty() || !batch.is_empty()) {
                        break;
                    }
                    if session.client().in_flight() + batch.len() >= window {
                        break;
                    }
                    let w = match carry.take() {
                        Some(w) => w,
                        None => match self.dispatch.next(inflight.len() + batch.len()) {
                            Next::Work(w) => *w,
                            Next::Wait(d) => {
                                if inflight.is_empty() && batch.is_empty() {
                                    std::thread::sleep(d);
                                    continue;
                                }
                                break;
                            }
                            Next::Done => {
                                exhausted = true;
                                break;
                            }
                        },
                    };
                    batch.push(w);
                }
            }
            if !batch.is_empty() {
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
                    self.finish_inflight(&mut session, &mut inflight);
                    session.quit();
                    return SessionEnd::Finished;
                }
                let mut batch = batch.into_iter();
                while let Some(mut w) = batch.next() {
                    if !self.dispatch.rate_slot() {
                        // Stopping: these were reserved but never sent.
                        self.dispatch.requeue(w, Duration::ZERO);
                        for w in batch.by_ref() {
                            self.dispatch.requeue(w, Duration::ZERO);
                        }
                        exhausted = true;
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
                    };
                    session.client().submit(tx);
                    inflight.insert(id, w);
                    submitted += 1;
                }
            }
            if inflight.is_empty() {
                if exhausted || self.dispatch.halted() {
                    session.quit();
                    return SessionEnd::Finished;
                }
                if submitted >= max {
                    session.quit();
                    return SessionEnd::Reconnect;
                }
                if !session.client().can_submit() && session.client().in_flight() == 0 {
                    // The server ended the session (a 421): nothing more can
                    // go on it, so reconnect instead of spinning here forever.
                    if let Some(w) = carry.take() {
                        self.dispatch.requeue(w, Duration::ZERO);
                    }
                    let why = match session.next_event() {
                        Ok(Event::Closed(reason)) => reason.to_string(),
                        Err(failure) => failure.to_string(),
                        Ok(_) => "the server ended the session".to_owned(),
                    };
                    return SessionEnd::Broken(why);
                }
                continue;
            }
            if self.dispatch.halted() && !withdrawn {
                // Stopping: what has not started goes back to the queue
                // (a rerun sends it); what is under way may finish.
                withdrawn = true;
                // Never tried: back to the queue with the attempt not counted.
                for o in session.client().withdraw_unstarted() {
                    if let Some(mut w) = inflight.remove(&o.id) {
                        w.attempts = w.attempts.saturating_sub(1);
                        self.dispatch.requeue(w, Duration::ZERO);
                    }
                }
                if inflight.is_empty() {
                    continue;
                }
            }
            match session.next_event() {
                Ok(Event::Outcome(o)) => {
                    let mut outcomes = vec![o];
                    // Group commit: settle every outcome that is already here.
                    while let Ok(Some(Event::Outcome(o))) = session.poll_ready() {
                        outcomes.push(o);
                    }
                    if !self.settle_all(outcomes, &mut inflight) {
                        self.finish_inflight(&mut session, &mut inflight);
                        session.quit();
                        return SessionEnd::Finished;
                    }
                    self.failures = 0;
                }
                Ok(Event::Closed(reason)) => {
                    let lost = session.lost();
                    self.settle_all(lost, &mut inflight);
                    self.requeue_all(&mut inflight);
                    return SessionEnd::Broken(reason.to_string());
                }
                Ok(Event::Ready) | Ok(Event::StartTls) => {}
                Err(failure) => {
                    let lost = session.lost();
                    self.settle_all(lost, &mut inflight);
                    self.requeue_all(&mut inflight);
                    return SessionEnd::Broken(failure.to_string());
                }
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
            let decision = self.settle(work, o);
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
            self.dispatch.requeue(w, delay);
        }
        true
    }

    /// Decide one transaction: a final row outcome, or the work to send
    /// again, and the recipients it settled for good either way.
    fn settle(&mut self, mut work: Work, o: TxOutcome) -> Decision {
        let before = work.settled_rcpts.len();
        match o.result {
            TxResult::Accepted(final_reply) => {
                self.dispatch.accepted.fetch_add(1, Ordering::SeqCst);
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
                self.defer_or_settle(work, before, deferred, Some(final_reply))
            }
            TxResult::NoValidRecipients => {
                let mut deferred = Vec::new();
                for (rcpt, reply) in o.rcpts {
                    match reply {
                        Some(r) if r.is_permanent() => work.settled_rcpts.push((rcpt, r)),
                        other => deferred.push((rcpt, other)),
                    }
                }
                self.defer_or_settle(work, before, deferred, None)
            }
            TxResult::Failed(reply) => {
                if reply.is_transient() {
                    self.retry_or_fail(work, before, Some(reply))
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
            TxResult::NotSent => {
                // The message never left, but the attempt counts: a server that
                // refuses every MAIL (503, 421) or hangs up each time must not
                // keep the run going forever.
                let reply = o.mail.filter(|m| !m.is_positive());
                if work.attempts < self.plan.max_attempts {
                    let delay = retry_delay(self.plan.retry_delay, work.attempts);
                    Decision::again(work, before, delay)
                } else {
                    self.not_sent(work, before, reply)
                }
            }
        }
    }

    fn retry_or_fail(&self, work: Work, before: usize, reply: Option<Reply>) -> Decision {
        if work.attempts < self.plan.max_attempts {
            let delay = retry_delay(self.plan.retry_delay, work.attempts);
            return Decision::again(work, before, delay);
        }
        match reply {
            Some(reply) => fail_rest(work, before, reply),
            None => self.not_sent(work, before, None),
        }
    }

    /// The message never left (`reply`: the server's refusal of MAIL, if
    /// any) and no attempt is left: `failed`, whatever that reply's class,
    /// since it says nothing about the recipients (a rerun tries them).
    fn not_sent(&self, work: Work, before: usize, reply: Option<Reply>) -> Decision {
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
        &self,
        mut work: Work,
        before: usize,
        deferred: Vec<(String, Option<Reply>)>,
        final_reply: Option<Reply>,
    ) -> Decision {
        if !deferred.is_empty() && work.attempts < self.plan.max_attempts {
            let progressed = final_reply.is_some();
            work.rcpts = deferred.into_iter().map(|(r, _)| r).collect();
            // After a partial delivery the rest go right away; otherwise back off.
            let delay = if progressed {
                Duration::ZERO
            } else {
                retry_delay(self.plan.retry_delay, work.attempts)
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
}

/// Every recipient still to deliver to got `reply` (a refusal of the whole
/// transaction): the row is decided from all its recipients' replies.
fn fail_rest(mut work: Work, before: usize, reply: Reply) -> Decision {
    for rcpt in std::mem::take(&mut work.rcpts) {
        work.settled_rcpts.push((rcpt, reply.clone()));
    }
    Decision::row(&work, before, row_outcome(&work, None))
}

/// What a session hands the ledger when a transaction is decided.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The row.
    pub row: u64,
    /// Envelope recipients that accepted (with the reply to the end of data)
    /// or refused for good in this transaction: never sent to again.
    pub rcpts: Vec<(String, Reply)>,
    /// The row's final outcome, when it has one (`None`: the rest of its
    /// recipients are about to be tried again).
    pub outcome: Option<Outcome>,
    /// Some recipients of this settled row got only 4xx replies: a rerun
    /// tries them again, whatever the row's status says.
    pub open: bool,
}

/// What settling one transaction decided.
struct Decision {
    record: Option<Settled>,
    again: Option<(Work, Duration)>,
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
    }
}

/// Exponential backoff with ±25% jitter, capped at 5 minutes.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(Duration::from_secs(300));
    let jitter = 0.75 + fastrand::f64() * 0.5;
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(rcpts: &[&str], settled: &[(&str, u16, &str)]) -> Work {
        let out = Outgoing {
            row: 1,
            email: rcpts[0].to_owned(),
            message_id: "<1@run>".into(),
            envelope: crate::message::Envelope {
                mail_from: "me@x".into(),
                rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
            },
            data: Arc::new(Vec::new()),
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
