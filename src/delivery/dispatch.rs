//! Queue → sessions, as Postfix's queue manager does it: rendered messages
//! wait in one queue per recipient domain, and the routes' sessions (a relay
//! each, or a destination) take from them as they ask. A domain's `rate` and
//! `sessions` limit only that domain's queue, so a slow or throttled domain
//! never holds up the others (no head-of-line blocking); each route has its
//! own sessions, rate and daily limit, and is paused (after a limit reply or
//! a failure) or retired while the others carry on. The dispatcher also
//! holds work waiting for a retry, and reports how the run ended.
//!
//! Sessions connect at once and share the work: each takes messages only up
//! to its fair share of what is outstanding, so the first session to connect
//! cannot fill its whole window while the others idle.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::daily::{self, DailyCounts};
use super::limiter::Limiter;
use super::plan::{Plan, Route};
use crate::compose::message::Outgoing;
use crate::error::Error;
use crate::job::DomainLimit;
use crate::smtp::reply::Reply;

/// A session: its route and its number.
pub(crate) type SessionKey = (usize, usize);

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
    /// The recipient domain whose queue and limits the message counts under
    /// (its first envelope recipient's, that is its first To), lowercase.
    pub domain: String,
    /// The session holding it, while one does.
    pub(crate) carrier: Option<SessionKey>,
}

/// The domain a message counts under: its first envelope recipient's.
fn domain_of(out: &Outgoing) -> String {
    out.envelope
        .rcpt_to
        .first()
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
        .unwrap_or_default()
}

impl Work {
    /// A fresh work item for `out`.
    pub fn new(out: Outgoing, attempts: u32) -> Self {
        let rcpts = out.envelope.rcpt_to.clone();
        Work {
            domain: domain_of(&out),
            out,
            attempts,
            rcpts,
            settled_rcpts: Vec::new(),
            carrier: None,
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
            domain: domain_of(&out),
            out,
            attempts,
            rcpts,
            settled_rcpts: settled,
            carrier: None,
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

/// Whether a limit reply speaks of the day's quota (Gmail's `5.4.5`, or a
/// text saying "daily" or "per day"): the relay then rests until the day ends.
fn is_daily(reply: &Reply) -> bool {
    let text = reply.text().to_ascii_lowercase();
    reply.enhanced.is_some_and(|e| e.to_string() == "5.4.5")
        || text.contains("daily")
        || text.contains("per day")
}

/// What a session gets when it asks for work.
pub(crate) enum Next {
    /// A message to send.
    Work(Box<Work>),
    /// Nothing now; ask again after this long.
    Wait(Duration),
    /// Nothing more will come (for this session's route).
    Done,
}

/// Rendered messages a dispatcher holds ready beside the renderer's queue, so
/// that it knows how much work there is to share out.
const READY: usize = 256;

/// The most messages (and bytes) held ready while the ones at hand all wait
/// for their domains' limits: like Postfix's active queue limit, it bounds
/// memory while mail for other domains can still be found behind them.
const ACTIVE_LIMIT: usize = 20_000;
const ACTIVE_BYTES: usize = 256 << 20;

/// One recipient domain's queue and limits.
struct DomainQueue {
    ready: VecDeque<Work>,
    sessions: Option<usize>,
    limiter: Option<Limiter>,
    /// Messages of this domain each session holds.
    carriers: HashMap<SessionKey, usize>,
}

/// The renderer's queue, the per-domain queues and the work waiting to retry.
struct Queues {
    rx: Option<Receiver<Work>>,
    domains: indexmap::IndexMap<String, DomainQueue>,
    /// Where the next round-robin turn over the domains starts.
    cursor: usize,
    /// Messages (and their bytes) in the domain queues.
    held: usize,
    held_bytes: usize,
    retry: Vec<(Instant, Work)>,
    /// The capped domain (its index in `domains`) each session carries
    /// while it holds mail of it in flight.
    bound: HashMap<SessionKey, usize>,
}

/// Whether a route may be used now.
#[derive(Debug, Default)]
struct RouteStatus {
    /// Paused until then (a limit reply, a failure, the daily limit).
    paused_until: Option<Instant>,
    /// Why it is paused or was retired.
    why: String,
    /// Pauses after limit replies in a row (the backoff grows with them).
    pauses: u32,
    /// Given up for this run, with the error that says why.
    retired: Option<Error>,
    /// Tries to log in (TLS, AUTH, the greeting) refused since the last
    /// one that succeeded.
    logins_refused: u32,
    /// A session is trying to log in while no other may.
    probing: bool,
    /// A session logged in (and no login was refused since).
    logged_in: bool,
}

/// A route's share of the dispatcher.
struct RouteState {
    /// How its sessions connect.
    plan: Arc<Route>,
    name: String,
    sessions: usize,
    limiter: Option<Mutex<Limiter>>,
    daily_limit: Option<u32>,
    domain: Option<String>,
    /// Messages its sessions hold.
    held: AtomicUsize,
    status: Mutex<RouteStatus>,
}

/// The work shared between a run's sessions.
pub(crate) struct Dispatcher {
    queues: Mutex<Queues>,
    /// The plan's routes.
    routes: RwLock<Vec<Arc<RouteState>>>,
    /// Limits per domain (`"*"`: every other domain).
    limits: Vec<(String, DomainLimit)>,
    /// Items taken from the source and not yet settled.
    pending: AtomicUsize,
    limiter: Option<Mutex<Limiter>>,
    patience: Duration,
    /// Since when every route has been paused or retired.
    stalled_since: Mutex<Option<Instant>>,
    daily: Mutex<DailyCounts>,
    stop: Arc<AtomicBool>,
    fatal: Mutex<Option<Error>>,
    failed_hard: AtomicBool,
    /// Messages a server accepted in this run.
    pub(crate) accepted: AtomicUsize,
    /// Sessions currently connected.
    pub(crate) active: AtomicUsize,
}

impl RouteState {
    fn new(r: Route) -> Arc<Self> {
        Arc::new(RouteState {
            name: r.name.clone(),
            sessions: r.sessions.max(1),
            limiter: r.rate.map(|rate| Mutex::new(Limiter::new(rate))),
            daily_limit: r.daily_limit,
            domain: r.domain.clone(),
            held: AtomicUsize::new(0),
            status: Mutex::new(RouteStatus::default()),
            plan: Arc::new(r),
        })
    }
}

impl Dispatcher {
    /// Route number `i`.
    fn route(&self, i: usize) -> Arc<RouteState> {
        self.routes.read().unwrap()[i].clone()
    }

    /// Every route, as they stand now.
    fn all(&self) -> Vec<Arc<RouteState>> {
        self.routes.read().unwrap().clone()
    }

    /// How route `i`'s sessions connect.
    pub(crate) fn route_plan(&self, i: usize) -> Arc<Route> {
        self.route(i).plan.clone()
    }

    /// A dispatcher over the renderer's queue `source`, for the routes,
    /// rates, domain limits and patience of `plan`; daily counts are kept in
    /// `daily` (the state file beside the journal) when given.
    pub(crate) fn new(
        source: Receiver<Work>,
        plan: &Plan,
        daily: DailyCounts,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let routes = plan.routes.iter().cloned().map(RouteState::new).collect();
        Dispatcher {
            queues: Mutex::new(Queues {
                rx: Some(source),
                domains: indexmap::IndexMap::new(),
                cursor: 0,
                held: 0,
                held_bytes: 0,
                retry: Vec::new(),
                bound: HashMap::new(),
            }),
            routes: RwLock::new(routes),
            limits: plan.domains.clone(),
            pending: AtomicUsize::new(0),
            limiter: plan.rate.map(|r| Mutex::new(Limiter::new(r))),
            patience: plan.patience,
            stalled_since: Mutex::new(None),
            daily: Mutex::new(daily),
            stop,
            fatal: Mutex::new(None),
            failed_hard: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
        }
    }

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

    /// The next message for session `key` that already holds `held` in flight.
    pub(crate) fn next(&self, key: SessionKey, held: usize) -> Next {
        if self.halted() {
            return Next::Done;
        }
        let now = Instant::now();
        match self.route_blocked(key.0, now) {
            Some(next) => next,
            None => self.take(key, now, held),
        }
    }

    /// `Some` when route `route` may not take work now: retired (done),
    /// paused or at its daily limit (wait); the run ends meanwhile if every
    /// route stays unusable past the patience.
    fn route_blocked(&self, route: usize, now: Instant) -> Option<Next> {
        let r = self.route(route);
        {
            let mut st = r.status.lock().unwrap();
            if st.retired.is_some() {
                return Some(Next::Done);
            }
            if let Some(limit) = r.daily_limit {
                let today = self.daily.lock().unwrap().get(&r.name);
                let held = r.held.load(Ordering::SeqCst) as u64;
                if today + held >= u64::from(limit) && st.paused_until.is_none_or(|u| u <= now) {
                    if held > 0 {
                        // What it holds may still be refused: wait for it.
                        return Some(Next::Wait(Duration::from_millis(20)));
                    }
                    let (_, left) = daily::today();
                    st.paused_until = Some(now + left);
                    st.why = format!("its daily_limit of {limit} messages is reached");
                }
            }
            match st.paused_until {
                Some(until) if until > now => {}
                _ => return None,
            }
        }
        if self.finished() {
            return Some(Next::Done);
        }
        self.check_stalled(now);
        Some(Next::Wait(Duration::from_millis(50)))
    }

    /// Whether every message is settled and the renderer is done.
    fn finished(&self) -> bool {
        let mut q = self.queues.lock().unwrap();
        if let Some(rx) = &q.rx {
            match rx.try_recv() {
                Ok(w) => {
                    self.pending.fetch_add(1, Ordering::SeqCst);
                    self.enqueue(&mut q, w, false);
                    return false;
                }
                Err(TryRecvError::Disconnected) => q.rx = None,
                Err(TryRecvError::Empty) => return false,
            }
        }
        self.pending.load(Ordering::SeqCst) == 0
    }

    /// Every route is paused or retired: end the run (exit 75, a rerun
    /// resumes) once that has lasted, or will last, longer than the patience.
    /// The clock starts when all are first found paused and stops only when
    /// a message is accepted, so routes that wake up, are refused again and
    /// pause again do not keep a run going for ever.
    fn check_stalled(&self, now: Instant) {
        let mut earliest: Option<Instant> = None;
        let mut whys = Vec::new();
        let routes = self.all();
        for r in &routes {
            let st = r.status.lock().unwrap();
            match (&st.retired, st.paused_until) {
                (Some(e), _) => whys.push(format!("{}: {e}", r.name)),
                (None, Some(until)) if until > now => {
                    earliest = Some(earliest.map_or(until, |e| e.min(until)));
                    whys.push(format!("{}: {}", r.name, st.why));
                }
                _ => return,
            }
        }
        let mut since = self.stalled_since.lock().unwrap();
        let start = *since.get_or_insert(now);
        let resume_at = earliest.unwrap_or(now);
        if resume_at > start + self.patience || now >= start + self.patience {
            let what = if routes.len() == 1 {
                "the server is paused"
            } else {
                "every relay is paused"
            };
            self.set_fatal(Error::TempFail(format!(
                "{what} for longer than smtp.patience ({:?}): {}",
                self.patience,
                whys.join("; ")
            )));
        }
    }

    /// Pause `route` for `delay` (`why` says what happened). `limit`: a
    /// limit reply, whose pauses back off from `base`, doubling.
    /// Returns whether the route was running until now (a new pause).
    pub(crate) fn pause(&self, route: usize, delay: Duration, why: String) -> bool {
        let r = self.route(route);
        let mut st = r.status.lock().unwrap();
        let now = Instant::now();
        let until = now + delay;
        let new = st.paused_until.is_none_or(|u| u <= now);
        if st.paused_until.is_none_or(|u| u < until) {
            st.paused_until = Some(until);
            st.why = why;
        }
        new
    }

    /// Pause `route` after a limit reply: until the day ends for a daily
    /// quota, else for a backoff from `base` that doubles with each pause
    /// in a row (reset when the route delivers again).
    /// Returns the pause when it is a new one (for a note to the user).
    pub(crate) fn pause_for_limit(
        &self,
        route: usize,
        reply: &Reply,
        base: Duration,
    ) -> Option<Duration> {
        let daily = is_daily(reply);
        let delay = {
            let r = self.route(route);
            let mut st = r.status.lock().unwrap();
            st.pauses += 1;
            if daily {
                daily::today().1
            } else {
                super::settle::backoff(base, st.pauses)
            }
        };
        self.pause(route, delay, format!("it answered {reply}"))
            .then_some(delay)
    }

    /// Whether a session of `route` may try to open it now. Until a login
    /// succeeds (at first, and after a refusal) only one session tries at a
    /// time, so that each refused try is one of the route's attempts; it
    /// reports with [`Dispatcher::login_tried`].
    pub(crate) fn may_try_login(&self, route: usize) -> bool {
        let r = self.route(route);
        let mut st = r.status.lock().unwrap();
        if st.logged_in {
            return true;
        }
        !std::mem::replace(&mut st.probing, true)
    }

    /// A session's try to open `route` is over: `ok` when it logged in (the
    /// count of refusals starts over).
    pub(crate) fn login_tried(&self, route: usize, ok: bool) {
        let r = self.route(route);
        let mut st = r.status.lock().unwrap();
        st.probing = false;
        if ok {
            st.logins_refused = 0;
            st.logged_in = true;
        }
    }

    /// `route` refused a login (its TLS, AUTH or greeting failed): it is
    /// paused for a backoff that doubles from `base`, and the pause is
    /// returned with the number of refusals, or `None` once `max` tries were
    /// refused (the route is then to be left for the run: retrying a refused
    /// password without end can lock the account).
    pub(crate) fn login_refused(
        &self,
        route: usize,
        max: u32,
        base: Duration,
        why: String,
    ) -> Option<(Duration, u32)> {
        let r = self.route(route);
        let mut st = r.status.lock().unwrap();
        st.logged_in = false;
        st.logins_refused += 1;
        let n = st.logins_refused;
        if n >= max.max(1) {
            // No other session tries while the route is being left.
            st.probing = true;
            return None;
        }
        // Paused before another session may try.
        let delay = super::settle::backoff(base, n);
        let until = Instant::now() + delay;
        if st.paused_until.is_none_or(|u| u < until) {
            st.paused_until = Some(until);
            st.why = why;
        }
        st.probing = false;
        Some((delay, n))
    }

    /// A route delivered again: its limit-reply backoff starts over.
    fn relieved(&self, route: usize) {
        self.route(route).status.lock().unwrap().pauses = 0;
    }

    /// Whether `route` is paused now.
    pub(crate) fn paused(&self, route: usize) -> bool {
        let r = self.route(route);
        let st = r.status.lock().unwrap();
        st.retired.is_some() || st.paused_until.is_some_and(|u| u > Instant::now())
    }

    /// Give up on `route` for this run; when every route is given up, the
    /// run ends: with 77 when each failed authentication, else 69 (75 once
    /// something was accepted).
    /// Returns false when the run goes on without it (others are left).
    pub(crate) fn retire(&self, route: usize, err: Error) -> bool {
        self.route(route).status.lock().unwrap().retired = Some(err);
        let routes = self.all();
        let mut errors = Vec::new();
        for r in &routes {
            match &r.status.lock().unwrap().retired {
                Some(e) => errors.push((r.name.clone(), e.to_string(), e.exit_code())),
                None => return false,
            }
        }
        if routes.len() == 1 {
            let err = routes[0].status.lock().unwrap().retired.take();
            self.set_fatal(err.expect("just retired"));
            return true;
        }
        let text = errors
            .iter()
            .map(|(name, e, _)| format!("{name}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        let all_auth = errors
            .iter()
            .all(|(_, _, code)| *code == crate::error::ExitCode::NoPerm);
        let err = if all_auth {
            Error::Auth(format!("every relay failed authentication: {text}"))
        } else if self.accepted.load(Ordering::SeqCst) == 0 {
            Error::Unavailable(format!("no relay could be used: {text}"))
        } else {
            Error::TempFail(format!("every relay became unusable ({text})"))
        };
        self.set_fatal(err);
        true
    }

    /// Wait for a send slot of the route's and the run's rate limits, taken
    /// right before the message is handed to its session so that the slot's
    /// time is the send time; false if the run stops meanwhile.
    pub(crate) fn rate_slot(&self, route: usize) -> bool {
        let r = self.route(route);
        let own = r.limiter.as_ref();
        if own.is_none() && self.limiter.is_none() {
            return true;
        }
        loop {
            if self.halted() {
                return false;
            }
            let now = Instant::now();
            let wait = match own.map(|l| l.lock().unwrap().try_acquire(now)) {
                Some(Err(wait)) => Some(wait),
                taken => match self
                    .limiter
                    .as_ref()
                    .map(|l| l.lock().unwrap().try_acquire(now))
                {
                    Some(Err(wait)) => {
                        if taken.is_some() {
                            own.expect("taken").lock().unwrap().release();
                        }
                        Some(wait)
                    }
                    _ => None,
                },
            };
            match wait {
                None => return true,
                Some(wait) => std::thread::sleep(wait.min(Duration::from_millis(50))),
            }
        }
    }

    /// The limits of `domain`: its own entry, else `"*"`'s.
    fn limit_for(&self, domain: &str) -> DomainLimit {
        let find = |k: &str| self.limits.iter().find(|(d, _)| d == k).map(|(_, l)| *l);
        find(domain).or_else(|| find("*")).unwrap_or_default()
    }

    /// Put `w` in its domain's queue (at the front: it was there before).
    fn enqueue(&self, q: &mut Queues, w: Work, front: bool) {
        if !q.domains.contains_key(&w.domain) {
            let limit = self.limit_for(&w.domain);
            q.domains.insert(
                w.domain.clone(),
                DomainQueue {
                    ready: VecDeque::new(),
                    sessions: limit.sessions,
                    limiter: limit.rate.map(Limiter::new),
                    carriers: HashMap::new(),
                },
            );
        }
        q.held += 1;
        q.held_bytes += w.out.data.own_capacity();
        let dq = q.domains.get_mut(&w.domain).expect("inserted");
        if front {
            dq.ready.push_front(w);
        } else {
            dq.ready.push_back(w);
        }
    }

    /// Move up to `want` more messages from the renderer into the domain queues.
    fn pull(&self, q: &mut Queues, want: usize) {
        for _ in 0..want {
            let Some(rx) = q.rx.as_ref() else { return };
            match rx.try_recv() {
                Ok(w) => {
                    self.pending.fetch_add(1, Ordering::SeqCst);
                    self.enqueue(q, w, false);
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => q.rx = None,
            }
        }
    }

    /// A session takes work only up to its fair share of what is
    /// outstanding (`held` counts what it has in flight), so that one session
    /// never fills its window with everything while the others idle. The
    /// domains take turns; one whose rate or sessions are used up is passed over.
    ///
    /// A session that holds mail of a domain with a `sessions` cap in flight
    /// takes only that domain's mail until all of it is answered, as Postfix
    /// gives each destination connections of its own: SMTP answers in order,
    /// so other mail pipelined behind a slow domain's message would wait for
    /// its answer. Mail of domains without a cap is mixed freely. A session
    /// holds at most its share (over the domain's `sessions`) of such a
    /// domain's mail at hand, so that the domain's other sessions carry some.
    fn take(&self, key: SessionKey, now: Instant, held: usize) -> Next {
        let route = self.route(key.0);
        let mut q = self.queues.lock().unwrap();
        // Work whose retry is due goes back to the front of its domain's queue.
        let mut i = 0;
        while i < q.retry.len() {
            if q.retry[i].0 <= now {
                let (_, w) = q.retry.swap_remove(i);
                self.enqueue(&mut q, w, true);
            } else {
                i += 1;
            }
        }
        // Top up, so the share below sees the backlog.
        let room = READY.saturating_sub(q.held);
        self.pull(&mut q, room);
        let pending = self.pending.load(Ordering::SeqCst);
        let sessions: usize = self
            .all()
            .iter()
            .filter(|r| r.status.lock().unwrap().retired.is_none())
            .map(|r| r.sessions)
            .sum();
        let share = pending.div_ceil(sessions.max(1)).max(1);
        if held > 0 && held >= share {
            return Next::Wait(Duration::from_millis(5));
        }
        if let Some(limit) = route.daily_limit {
            // Checked again under the lock: sessions of one route must not
            // together overshoot the limit.
            let today = self.daily.lock().unwrap().get(&route.name);
            if today + route.held.load(Ordering::SeqCst) as u64 >= u64::from(limit) {
                return Next::Wait(Duration::from_millis(20));
            }
        }
        let mut soonest: Option<Duration> = q.retry.iter().map(|(t, _)| *t - now).min();
        let bound = match q.bound.get(&key) {
            Some(&at) if q.domains[at].carriers.contains_key(&key) => Some(at),
            Some(_) => {
                q.bound.remove(&key);
                None
            }
            None => None,
        };
        loop {
            let n = q.domains.len();
            let (start, steps) = match bound {
                Some(at) => (at, 1),
                None => (q.cursor, n),
            };
            for step in 0..steps {
                let at = (start + step) % n;
                let (name, dq) = q.domains.get_index_mut(at).expect("in range");
                if dq.ready.is_empty() || route.domain.as_ref().is_some_and(|d| d != name) {
                    continue;
                }
                if let Some(cap) = dq.sessions {
                    let mine = dq.carriers.get(&key).copied().unwrap_or(0);
                    if mine == 0 && dq.carriers.len() >= cap {
                        continue;
                    }
                    // Its share of the domain's mail at hand, so that the
                    // domain's other sessions have some to carry too.
                    let carried: usize = dq.carriers.values().sum();
                    if mine > 0 && mine >= (dq.ready.len() + carried).div_ceil(cap) {
                        continue;
                    }
                }
                if let Some(lim) = dq.limiter.as_mut() {
                    if let Err(wait) = lim.try_acquire(now) {
                        soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                        continue;
                    }
                }
                let capped = dq.sessions.is_some();
                let mut w = dq.ready.pop_front().expect("not empty");
                *dq.carriers.entry(key).or_default() += 1;
                w.carrier = Some(key);
                if capped {
                    q.bound.insert(key, at);
                }
                if bound.is_none() {
                    q.cursor = (at + 1) % n;
                }
                q.held -= 1;
                q.held_bytes -= w.out.data.own_capacity();
                route.held.fetch_add(1, Ordering::SeqCst);
                return Next::Work(Box::new(w));
            }
            // Everything at hand waits for its domain: look further down the
            // renderer's queue, within the active limit.
            let before = q.held;
            if q.rx.is_some() && q.held < ACTIVE_LIMIT && q.held_bytes < ACTIVE_BYTES {
                self.pull(&mut q, READY);
            }
            if q.held == before {
                break;
            }
        }
        // While the renderer is still at work, its next message is
        // moments away: a session waiting for it (the first one of the
        // run above all, which connects only once it has work) looks again
        // soon.
        let tick = if q.rx.is_some() { 1 } else { 200 };
        if q.rx.is_none() && pending == 0 {
            return Next::Done;
        }
        Next::Wait(
            soonest
                .unwrap_or(Duration::from_millis(20))
                .clamp(Duration::from_millis(1), Duration::from_millis(tick)),
        )
    }

    /// `work` leaves the session that held it.
    pub(crate) fn release(&self, work: &mut Work) {
        let Some(key) = work.carrier.take() else {
            return;
        };
        self.route(key.0).held.fetch_sub(1, Ordering::SeqCst);
        let mut q = self.queues.lock().unwrap();
        if let Some(dq) = q.domains.get_mut(&work.domain) {
            if let Some(n) = dq.carriers.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    dq.carriers.remove(&key);
                }
            }
        }
    }

    /// Put work back to be sent again after `delay`.
    pub(crate) fn requeue(&self, mut work: Work, delay: Duration) {
        self.release(&mut work);
        self.queues
            .lock()
            .unwrap()
            .retry
            .push((Instant::now() + delay, work));
    }

    /// One message taken from the source is settled for good.
    pub(crate) fn done_one(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// `route` had `n` messages accepted: they count towards its daily limit
    /// (in the state file, when it has a limit) and end its limit backoff.
    pub(crate) fn accepted_on(&self, route: usize, n: usize) {
        if n == 0 {
            return;
        }
        self.accepted.fetch_add(n, Ordering::SeqCst);
        self.relieved(route);
        *self.stalled_since.lock().unwrap() = None;
        let r = self.route(route);
        if r.daily_limit.is_some() {
            // The count is advisory: a file that cannot be written costs
            // only the limit's memory across runs.
            let _ = self.daily.lock().unwrap().add(&r.name, n as u64);
        }
    }

    /// The name of `route`.
    pub(crate) fn route_name(&self, route: usize) -> String {
        self.route(route).name.clone()
    }

    fn unsent(&self) -> usize {
        let in_source = self
            .queues
            .lock()
            .unwrap()
            .rx
            .as_ref()
            .map(|rx| rx.try_iter().count())
            .unwrap_or(0);
        self.pending.load(Ordering::SeqCst) + in_source
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
