//! Direct delivery to each recipient domain's MX hosts (`smtp.mx: true`):
//! the rendered messages are split by recipient domain, and each domain
//! gets its own sessions, its own rate limit and retries, through the same
//! worker as a relay (so the journal's exactly-once rules hold unchanged).
//! Each domain is one route whose endpoints are its candidates (RFC 5321
//! §5.1, see `crate::dns`), tried in order whenever a session opens: a host
//! that cannot be reached, greets with 4xx or fails TLS passes to the next,
//! and a 4xx to a message sends its retry to the next host (the worker's
//! part). A row whose recipients span several domains goes to each of
//! them, one part per domain, joined back into one row (`mx_split`). Null
//! MX and NXDOMAIN reject the
//! domain's recipients with the DNS's own answer as the reply, no
//! connection made; a DNS that cannot answer now is asked again after
//! `retry_delay` (doubling) up to `max_attempts`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::dispatch::{RunEnd, Work};
use super::ledger::Ledger;
use super::mx_split::Joins;
use super::plan::{Plan, Route};
use super::settle::{backoff, settle};
use crate::dns::{Candidate, DnsFailure, MxResolver};
use crate::error::{Error, Result};
use crate::job::{MxTls, SmtpSettings};
use crate::smtp::client::{TlsMode, TxOutcome, TxResult};
use crate::smtp::net::session::Endpoint;
use crate::smtp::net::{opportunistic, tls};
use crate::smtp::reply::Reply;

/// Domains being delivered to at once; the others wait their turn (each
/// has `sessions` connections and a thread per connection).
const DOMAINS_AT_ONCE: usize = 16;

/// What every destination shares: the resolver and the TLS policy.
pub struct MxPlan {
    resolver: MxResolver,
    tls: MxTls,
    verified: Arc<rustls::ClientConfig>,
}

impl MxPlan {
    /// The resolver (`smtp.resolver` or the system's) and TLS
    /// configuration for `settings` of an `mx: true` section.
    pub fn new(settings: &SmtpSettings, resolver: Option<SocketAddr>, mode: MxTls) -> Result<Self> {
        let verified = match mode {
            MxTls::Verified => tls::client_config(settings.ca_file.as_deref())?,
            MxTls::Opportunistic => opportunistic::client_config()?,
            MxTls::None => tls::plain_text_config()?,
        };
        Ok(MxPlan {
            resolver: MxResolver::new(resolver, settings.port)?,
            tls: mode,
            verified,
        })
    }

    fn tls_mode(&self) -> TlsMode {
        match self.tls {
            MxTls::Opportunistic => TlsMode::Opportunistic,
            MxTls::Verified => TlsMode::StartTls,
            MxTls::None => TlsMode::None,
        }
    }

    /// The plan of one destination: one route over these candidates, with
    /// `base`'s sessions, rate, retries and `domains:` limits.
    fn destination(&self, base: &Plan, domain: &str, candidates: &[Candidate]) -> Plan {
        let template = base.first();
        let connect_timeout = template.endpoints[0].connect_timeout;
        let endpoints = candidates
            .iter()
            .map(|c| Endpoint {
                host: c.host.clone(),
                address: Some(c.ip),
                port: c.port,
                implicit_tls: false,
                tls: self.verified.clone(),
                connect_timeout,
            })
            .collect();
        let mut core = template.core.clone();
        core.tls = self.tls_mode();
        let route = Route {
            name: format!("mx:{domain}"),
            endpoints,
            core,
            sessions: template.sessions,
            max_messages_per_session: template.max_messages_per_session,
            rate: template.rate,
            daily_limit: None,
            domain: Some(domain.to_owned()),
            auth_advice: None,
        };
        Plan {
            routes: vec![route],
            rate: base.rate,
            retry: base.retry,
            patience: base.patience,
            domains: base.domains.clone(),
            // Traces and events say which destination a session served.
            named: true,
            daily_state: None,
            trace: base.trace.clone(),
            capture: None,
            capture_dir: None,
            mx: None,
        }
    }
}

/// A counting gate: at most `DOMAINS_AT_ONCE` destinations deliver at once.
struct Gate {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    fn enter(&self, stop: &AtomicBool) -> Option<GateGuard<'_>> {
        let mut free = self.free.lock().unwrap();
        while *free == 0 {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            free = self
                .freed
                .wait_timeout(free, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        *free -= 1;
        Some(GateGuard(self))
    }
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap() += 1;
        self.0.freed.notify_one();
    }
}

/// Send everything `source` yields, each message to its recipient
/// domain's MX hosts; returns when every destination is done.
pub fn deliver(
    base: &Plan,
    mx: &MxPlan,
    source: Receiver<Work>,
    ledger: &dyn Ledger,
    stop: Arc<AtomicBool>,
) -> RunEnd {
    let gate = Gate {
        free: Mutex::new(DOMAINS_AT_ONCE),
        freed: Condvar::new(),
    };
    let ends: Mutex<Vec<(String, RunEnd)>> = Mutex::new(Vec::new());
    let active = Mutex::new(HashMap::new());
    let joins = Joins::default();
    let mut refused = 0;
    std::thread::scope(|s| {
        let mut routes: HashMap<String, Sender<Work>> = HashMap::new();
        for work in source {
            for (domain, work) in joins.split(work) {
                let tx = routes.entry(domain.clone()).or_insert_with(|| {
                    let (tx, rx) = channel();
                    let (gate, ends, active, joins) = (&gate, &ends, &active, &joins);
                    let stop = stop.clone();
                    s.spawn(move || {
                        let ledger = DestinationLedger {
                            inner: ledger,
                            active,
                            joins,
                            domain: &domain,
                        };
                        let end = match gate.enter(&stop) {
                            Some(_entered) => destination(base, mx, &domain, rx, &ledger, stop),
                            None => RunEnd {
                                unsent: rx.try_iter().count(),
                                interrupted: true,
                                ..RunEnd::default()
                            },
                        };
                        ends.lock().unwrap().push((domain, end));
                    });
                    tx
                });
                // A destination that has stopped has dropped its receiver: the
                // message stays unsent (a rerun sends it).
                if tx.send(work).is_err() {
                    refused += 1;
                }
            }
        }
    });
    let mut merged = RunEnd {
        interrupted: stop.load(Ordering::SeqCst),
        unsent: refused,
        ..RunEnd::default()
    };
    let mut unreachable = Vec::new();
    for (domain, end) in ends.into_inner().unwrap() {
        merged.accepted += end.accepted;
        merged.unsent += end.unsent;
        merged.interrupted |= end.interrupted;
        match end.fatal {
            // One destination out of reach leaves its mail for a rerun.
            Some(Error::Unavailable(why) | Error::TempFail(why) | Error::Auth(why)) => {
                unreachable.push(format!("{domain}: {why}"))
            }
            Some(other) if merged.fatal.is_none() => merged.fatal = Some(other),
            _ => {}
        }
    }
    if merged.fatal.is_none() && !unreachable.is_empty() {
        unreachable.sort();
        merged.fatal = Some(Error::TempFail(format!(
            "mail for {} domain(s) was not delivered: {}",
            unreachable.len(),
            unreachable.join("; ")
        )));
    }
    merged
}

/// The run's ledger as one destination sees it: everything passes through,
/// except that the sessions it reports are added to the other
/// destinations' for the progress display.
struct DestinationLedger<'a> {
    inner: &'a dyn Ledger,
    active: &'a Mutex<HashMap<String, usize>>,
    joins: &'a Joins,
    domain: &'a str,
}

impl Ledger for DestinationLedger<'_> {
    fn inflight(&self, batch: &[(u64, &str, u32)]) -> std::io::Result<()> {
        self.joins.inflight(self.domain, self.inner, batch)
    }
    fn committing(&self, rows: &[u64]) -> std::io::Result<()> {
        self.joins.committing(self.domain, self.inner, rows)
    }
    fn settled(&self, batch: &[super::outcome::Outcome]) -> std::io::Result<()> {
        self.inner.settled(batch)
    }
    fn settled_rcpts(&self, batch: &[super::ledger::Settled]) -> std::io::Result<()> {
        self.joins.settled(self.domain, self.inner, batch)
    }
    fn sessions_active(&self, n: usize) {
        let mut active = self.active.lock().unwrap();
        active.insert(self.domain.to_owned(), n);
        self.inner.sessions_active(active.values().sum());
    }
}

/// One destination: find its candidates, then send over its own sessions.
fn destination(
    base: &Plan,
    mx: &MxPlan,
    domain: &str,
    rx: Receiver<Work>,
    ledger: &dyn Ledger,
    stop: Arc<AtomicBool>,
) -> RunEnd {
    let mut asked = 0;
    let candidates = loop {
        asked += 1;
        match mx.resolver.candidates(domain) {
            Ok(c) => break c,
            Err(DnsFailure::Temporary(_)) if asked < base.retry.max_attempts.max(1) => {
                let until = Instant::now() + backoff(base.retry.retry_delay, asked);
                while Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        return RunEnd {
                            unsent: rx.try_iter().count(),
                            interrupted: true,
                            ..RunEnd::default()
                        };
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(failure) => return settle_all(rx, failure.reply().clone(), base, ledger),
        }
    };
    let plan = mx.destination(base, domain, &candidates);
    super::worker::deliver(&plan, rx, ledger, stop)
}

/// Every message of a destination without candidates is decided by the
/// DNS's answer: rejected (5xx) or failed (4xx, after the DNS was asked
/// `max_attempts` times). Nothing was sent, so nothing can be duplicated.
fn settle_all(rx: Receiver<Work>, reply: Reply, base: &Plan, ledger: &dyn Ledger) -> RunEnd {
    let mut end = RunEnd::default();
    for work in rx {
        if let Err(e) = give_up(work, reply.clone(), base, ledger) {
            end.fatal = Some(e);
            break;
        }
    }
    end
}

/// Decide `work` with `reply` for each of its remaining recipients, as if
/// a server had answered so with its last attempt.
fn give_up(mut work: Work, reply: Reply, base: &Plan, ledger: &dyn Ledger) -> Result<()> {
    if reply.is_transient() {
        // The DNS was asked as often as a server would have been.
        work.attempts = work.attempts.max(base.retry.max_attempts);
    }
    let outcome = TxOutcome {
        id: work.out.row,
        mail: None,
        rcpts: work
            .rcpts
            .iter()
            .map(|r| (r.clone(), Some(reply.clone())))
            .collect(),
        result: TxResult::NoValidRecipients,
    };
    let decision = settle(work, outcome, &base.retry);
    if let Some(record) = decision.record {
        ledger
            .settled_rcpts(std::slice::from_ref(&record))
            .map_err(|e| Error::Software(format!("cannot write the journal: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger that only remembers the session counts it was told.
    #[derive(Default)]
    struct Sessions(Mutex<Vec<usize>>);

    impl Ledger for Sessions {
        fn inflight(&self, _: &[(u64, &str, u32)]) -> std::io::Result<()> {
            Ok(())
        }
        fn settled(&self, _: &[super::super::outcome::Outcome]) -> std::io::Result<()> {
            Ok(())
        }
        fn sessions_active(&self, n: usize) {
            self.0.lock().unwrap().push(n);
        }
    }

    #[test]
    fn the_sessions_shown_are_every_destinations_together() {
        let inner = Sessions::default();
        let active = Mutex::new(HashMap::new());
        let joins = Joins::default();
        let a = DestinationLedger {
            inner: &inner,
            active: &active,
            joins: &joins,
            domain: "a.test",
        };
        let b = DestinationLedger {
            domain: "b.test",
            ..a
        };
        a.sessions_active(2);
        b.sessions_active(1);
        a.sessions_active(0);
        assert_eq!(*inner.0.lock().unwrap(), [2, 3, 1]);
    }
}
