//! Queue → sessions: the dispatcher hands rendered messages to the parallel
//! sessions' workers as they ask, applies the shared rate limit, holds work
//! waiting for a retry, and reports how the run ended.
//!
//! Sessions connect at once and share the work: each takes messages only up
//! to its fair share of what is outstanding, so the first session to connect
//! cannot fill its whole window while the others idle.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::limiter::Limiter;
use crate::compose::message::Outgoing;
use crate::error::Error;
use crate::job::Rate;
use crate::smtp::reply::Reply;

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

/// What a session gets when it asks for work.
pub(crate) enum Next {
    /// A message to send.
    Work(Box<Work>),
    /// Nothing now; ask again after this long.
    Wait(Duration),
    /// Nothing more will come.
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

/// The work shared between a run's sessions.
pub(crate) struct Dispatcher {
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
    /// Messages a server accepted in this run.
    pub(crate) accepted: AtomicUsize,
    /// Sessions currently connected.
    pub(crate) active: AtomicUsize,
}

impl Dispatcher {
    /// Whether the run is stopping (interrupted, or failed for good).
    pub(crate) fn halted(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.failed_hard.load(Ordering::SeqCst)
    }

    /// Stop the run with `err` (the first such error wins).
    pub(crate) fn set_fatal(&self, err: Error) {
        let mut f = self.fatal.lock().unwrap();
        if f.is_none() {
            *f = Some(err);
        }
        self.failed_hard.store(true, Ordering::SeqCst);
    }

    /// The next message for a session that already holds `held` in flight.
    pub(crate) fn next(&self, held: usize) -> Next {
        if self.halted() {
            return Next::Done;
        }
        self.take(Instant::now(), held)
    }

    /// Wait for a send slot of the rate limit, taken right before the message
    /// is handed to its session so that the slot's time is the send time;
    /// false if the run stops meanwhile.
    pub(crate) fn rate_slot(&self) -> bool {
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
    pub(crate) fn requeue(&self, work: Work, delay: Duration) {
        self.retry
            .lock()
            .unwrap()
            .push((Instant::now() + delay, work));
    }

    /// One message taken from the source is settled for good.
    pub(crate) fn done_one(&self) {
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

impl Dispatcher {
    /// A dispatcher over the renderer's queue `source`, sharing the work
    /// between `sessions`, at most `rate` messages per window if set.
    pub(crate) fn new(
        source: Receiver<Work>,
        sessions: usize,
        rate: Option<Rate>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Dispatcher {
            source: Mutex::new(Source {
                rx: Some(source),
                ready: VecDeque::new(),
            }),
            sessions: sessions.max(1),
            retry: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            limiter: rate.map(|r| Mutex::new(Limiter::new(r))),
            stop,
            fatal: Mutex::new(None),
            failed_hard: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
        }
    }

    /// How the run ended, once every session is done.
    pub(crate) fn end(self) -> RunEnd {
        let fatal = self.fatal.lock().unwrap().take();
        RunEnd {
            unsent: self.unsent(),
            accepted: self.accepted.load(Ordering::SeqCst),
            interrupted: self.stop.load(Ordering::SeqCst),
            fatal,
        }
    }
}
