//! The ledger behind the dispatcher: where settled outcomes go. The
//! [`Ledger`] trait is what sessions record through; [`RunLedger`] keeps it
//! over the journal (durably, first), the report and the progress display,
//! with group commit: one `sync_data` covers every outcome of a short window.
//!
//! Exactly-once rests on one ordering rule: a message is recorded in flight
//! (durably) before it is handed to the protocol core, so before its final
//! dot or `BDAT LAST` can leave; its outcome is recorded before it is
//! reported. What each To, Cc and Bcc answered is recorded before the rest of
//! the row is queued again.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::journal::{Journal, RcptOutcome};
use super::learn::Learner;
use super::outcome::Outcome;
use super::progress::Progress;
use super::report::Report;
use crate::error::Error;
use crate::smtp::reply::Reply;

/// Where sessions record what happens: [`RunLedger`] for `run`, an
/// in-memory one for `send`.
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
    /// Something the user should know while the run goes on (a relay
    /// paused or left).
    fn note(&self, _text: &str) {}
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

/// How long an outcome may wait, written but not yet synced, before it is
/// made durable and reported: one `sync_data` covers every outcome of that
/// window (group commit), so a slow disk does not slow the sending.
pub const SYNC_EVERY: Duration = Duration::from_millis(50);

/// The journal, report and progress display behind a run's sessions.
pub struct RunLedger<'a> {
    pub(crate) journal: &'a Journal,
    pub(crate) report: &'a Report,
    pub(crate) progress: &'a Progress,
    /// Outcomes written to the journal, waiting for the sync that lets them be reported.
    unreported: Mutex<Vec<Outcome>>,
    /// The first failure to write the journal or the report (exit 74).
    failure: Mutex<Option<Error>>,
    /// Set on such a failure, so no new message is handed to a server.
    stop: Arc<AtomicBool>,
    /// Rows settled with recipients still to retry (a rerun resumes them).
    open: AtomicUsize,
    /// Adds recipients refused as nonexistent to the suppression list.
    learner: Option<Learner>,
    /// Addresses it added.
    learned: AtomicUsize,
}

impl<'a> RunLedger<'a> {
    /// A ledger over these; `stop` is set when writing one of them fails.
    pub fn new(
        journal: &'a Journal,
        report: &'a Report,
        progress: &'a Progress,
        stop: Arc<AtomicBool>,
    ) -> Self {
        RunLedger {
            journal,
            report,
            progress,
            unreported: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            stop,
            open: AtomicUsize::new(0),
            learner: None,
            learned: AtomicUsize::new(0),
        }
    }

    /// Recipients refused because their address does not exist go to
    /// `learner`'s suppression file, durably, before the journal records them.
    pub fn with_learner(mut self, learner: Option<Learner>) -> Self {
        self.learner = learner;
        self
    }

    /// How many addresses this run added to the suppression file, and which file.
    pub fn learned(&self) -> Option<(usize, &Path)> {
        let learner = self.learner.as_ref()?;
        Some((self.learned.load(Ordering::SeqCst), learner.path()))
    }

    /// Remember the first failure to write `what` (the journal or the
    /// report) and stop sending.
    fn failed(&self, what: &str, path: &Path, e: &std::io::Error) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert_with(|| crate::outputs::write_failed(what, path, e));
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn journal_io<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.inspect_err(|e| self.failed("journal", self.journal.path(), e))
    }

    pub(crate) fn report_io<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.inspect_err(|e| self.failed("report", self.report.path(), e))
    }

    /// Whether writing the journal or the report failed.
    pub fn has_failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Rows settled with recipients still to retry.
    pub fn open_rows(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The first write failure, if any.
    pub fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Sync the journal, then report what it now holds durably. The list is
    /// taken before the sync (everything in it was written before it was
    /// listed), so sessions keep settling while the disk works.
    pub fn flush(&self) -> std::io::Result<()> {
        let ready = {
            let mut u = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *u)
        };
        self.journal_io(self.journal.sync())?;
        for o in &ready {
            self.report_io(self.report.record(o))?;
            self.progress.outcome(o);
        }
        Ok(())
    }
}

impl Ledger for RunLedger<'_> {
    fn inflight(&self, batch: &[(u64, &str, u32)]) -> std::io::Result<()> {
        self.journal_io(self.journal.record_inflight(batch))
    }

    fn committing(&self, rows: &[u64]) -> std::io::Result<()> {
        self.journal_io(self.journal.record_commits(rows))
    }

    fn settled(&self, batch: &[Outcome]) -> std::io::Result<()> {
        self.journal_io(self.journal.record_outcomes(batch))?;
        // Made durable and reported by the next flush (the heartbeat's).
        self.unreported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(batch);
        Ok(())
    }

    fn settled_rcpts(&self, batch: &[Settled]) -> std::io::Result<()> {
        let rcpts: Vec<RcptOutcome> = batch
            .iter()
            .flat_map(|s| {
                s.rcpts.iter().map(|(rcpt, reply)| RcptOutcome {
                    row: s.row,
                    rcpt: rcpt.clone(),
                    code: reply.code,
                    enhanced: reply.enhanced.map(|e| e.to_string()),
                    reply: reply.text(),
                })
            })
            .collect();
        let outcomes: Vec<Outcome> = batch.iter().filter_map(|s| s.outcome.clone()).collect();
        let open: Vec<u64> = batch.iter().filter(|s| s.open).map(|s| s.row).collect();
        if let Some(learner) = &self.learner {
            let replies: Vec<(&str, &Reply)> = batch
                .iter()
                .flat_map(|s| s.rcpts.iter().map(|(rcpt, reply)| (rcpt.as_str(), reply)))
                .collect();
            let n = learner
                .learn(&replies)
                .inspect_err(|e| self.failed("suppression list", learner.path(), e))?;
            self.learned.fetch_add(n, Ordering::SeqCst);
        }
        self.journal.record_settled(&rcpts, &outcomes, &open)?;
        self.open.fetch_add(open.len(), Ordering::SeqCst);
        self.unreported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(outcomes);
        Ok(())
    }

    fn sessions_active(&self, n: usize) {
        self.progress.sessions_active(n);
    }

    fn note(&self, text: &str) {
        self.progress.note(text);
    }
}
