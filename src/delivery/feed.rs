//! The feed: rows rendered ahead (on every thread the run may use, handed
//! over in row order to a thread of the feed's own), behind a bounded
//! queue, while the dispatcher's sessions send. Rows an earlier run settled
//! are reported from the journal, duplicates and invalid rows are skipped,
//! suppressed addresses are reported `suppressed` (and not journaled, so the
//! next run asks the suppression list again),
//! rows left uncertain wait for `--resend-uncertain`; only the rest is
//! queued. A heartbeat makes settled outcomes durable and reported (group
//! commit) while the sessions work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

use super::dispatch::{RunEnd, Work};
use super::journal::{Journal, RcptOutcome, Replay};
use super::ledger::{Ledger, RunLedger, SYNC_EVERY};
use super::outcome::{Outcome, Status};
use super::plan::Plan;
use super::settle::row_outcome;
use super::worker::deliver;
use crate::compose::prepare::{Prepared, Row};
use crate::error::{Error, Result};
use crate::smtp::reply::{EnhancedCode, Reply};

/// Rendered messages waiting for a session; bounds memory however long the CSV.
const QUEUE: usize = 512;

/// The rows of one run and what an earlier run left of them.
pub struct Feed<'a> {
    /// The job, ready to render.
    pub prepared: &'a Prepared,
    /// Only the first rows (`--limit`).
    pub limit: Option<u64>,
    /// Send again the rows an earlier run left uncertain.
    pub resend_uncertain: bool,
    /// What the journal holds of earlier runs.
    pub replay: &'a Replay,
    /// The journal (settled rows are read back from it).
    pub journal: &'a Journal,
    /// The Date header of every message, seconds since the epoch.
    pub date: i64,
}

impl Feed<'_> {
    /// Render and send every row over `plan` until all are settled or the
    /// run stops; outcomes go to `ledger`.
    pub fn send(
        &self,
        plan: &Plan,
        ledger: &RunLedger<'_>,
        stop: &Arc<AtomicBool>,
    ) -> Result<RunEnd> {
        let (tx, rx) = sync_channel::<Work>(QUEUE);
        let sending = AtomicBool::new(true);
        std::thread::scope(|s| -> Result<RunEnd> {
            let producer = s.spawn(|| self.produce(ledger, tx, stop));
            // Outcomes wait for a group commit, and a slow server sends none for a
            // while: a heartbeat keeps the display (and the report of what is
            // durable) moving.
            let heartbeat = s.spawn(|| {
                while sending.load(Ordering::SeqCst) {
                    // Unparked when sending ends, so the run does not wait out a beat.
                    std::thread::park_timeout(SYNC_EVERY);
                    let _ = ledger.flush();
                    ledger.progress.tick();
                }
            });
            let end = deliver(plan, rx, ledger, stop.clone());
            sending.store(false, Ordering::SeqCst);
            heartbeat.thread().unpark();
            let fed = producer
                .join()
                .map_err(|_| Error::Software("the renderer thread panicked".into()))?;
            // A write failure the ledger recorded is reported by the caller, with the report.
            if let Err(e) = fed {
                if !ledger.has_failed() {
                    return Err(e);
                }
            }
            Ok(end)
        })
    }

    /// The producer: render rows in order, settle what needs no sending
    /// (already done, duplicates, uncertain), queue the rest.
    fn produce(
        &self,
        ledger: &RunLedger<'_>,
        tx: SyncSender<Work>,
        stop: &AtomicBool,
    ) -> Result<()> {
        let (prepared, replay, journal) = (self.prepared, self.replay, self.journal);
        // The ledger remembers which file failed; the run then ends with exit 74.
        let io = |e: std::io::Error| Error::Output(format!("cannot record an outcome: {e}"));
        // Once stopped (Ctrl-C, or the dispatcher gave up), the remaining rows are
        // still walked so the report keeps one row per recipient; they are
        // recorded as not sent, never queued. Rendering them again costs no more
        // than the validation pass the run began with.
        let mut stopped = false;
        // Rendered on every thread the job may use, handed over in row order.
        prepared.each_message(self.limit, &replay.run_id, self.date, |row| {
            stopped = stopped || stop.load(Ordering::SeqCst);
            let row_no = match &row {
                Row::Message(m) => m.row,
                Row::Duplicate { row, .. }
                | Row::Suppressed { row, .. }
                | Row::Invalid { row, .. } => *row,
            };
            if let Some(done) = replay.done.get(&row_no) {
                let previous = ledger
                    .journal_io(journal.outcome_at(done.offset))
                    .map_err(io)?;
                ledger
                    .report_io(ledger.report.record_previous(&previous))
                    .map_err(io)?;
                ledger.progress.outcome(&previous);
                return Ok(());
            }
            match row {
                Row::Message(m) => {
                    if let (Some(id), false) = (replay.uncertain.get(&m.row), self.resend_uncertain)
                    {
                        let o = Outcome {
                            row: m.row,
                            email: m.email.clone(),
                            status: Status::Uncertain,
                            code: None,
                            enhanced: None,
                            reply: "an earlier run lost the connection after sending it; \
                                    not resent unless --resend-uncertain"
                                .into(),
                            message_id: Some(id.clone()),
                            attempts: replay.attempts.get(&m.row).copied().unwrap_or(1),
                            relay: None,
                        };
                        ledger
                            .report_io(ledger.report.record_previous(&o))
                            .map_err(io)?;
                        ledger.progress.outcome(&o);
                        return Ok(());
                    }
                    let attempts = replay.attempts.get(&m.row).copied().unwrap_or(0);
                    let settled: Vec<(String, Reply)> = replay
                        .rcpts
                        .get(&m.row)
                        .map(|rs| rs.iter().map(|r| (r.rcpt.clone(), reply_of(r))).collect())
                        .unwrap_or_default();
                    let work = Work::resume(*m, attempts, settled);
                    if work.rcpts.is_empty() {
                        // Every recipient answered for good in an earlier run.
                        let o = row_outcome(&work, None);
                        ledger.settled(&[o]).map_err(io)?;
                        return Ok(());
                    }
                    let m = &work.out;
                    // Shown only if the run stops before this message's outcome.
                    let placeholder = ledger.report.record_placeholder(&Outcome {
                        row: m.row,
                        email: m.email.clone(),
                        status: Status::Failed,
                        code: None,
                        enhanced: None,
                        reply: "not sent: the run stopped first; rerun to resume".into(),
                        message_id: Some(m.message_id.clone()),
                        attempts,
                        relay: None,
                    });
                    ledger.report_io(placeholder).map_err(io)?;
                    if !stopped && tx.send(work).is_err() {
                        stopped = true;
                    }
                }
                Row::Duplicate { row, email, first } => {
                    let o = Outcome {
                        row,
                        email,
                        status: Status::Skipped,
                        code: None,
                        enhanced: None,
                        reply: format!("duplicate of row {first}"),
                        message_id: None,
                        attempts: 0,
                        relay: None,
                    };
                    ledger.settled(&[o]).map_err(io)?;
                }
                Row::Suppressed { row, email } => {
                    let o = Outcome {
                        row,
                        email,
                        status: Status::Suppressed,
                        code: None,
                        enhanced: None,
                        reply: "in a suppression file; not sent".into(),
                        message_id: None,
                        attempts: 0,
                        relay: None,
                    };
                    ledger.report_io(ledger.report.record(&o)).map_err(io)?;
                    ledger.progress.outcome(&o);
                }
                Row::Invalid {
                    row,
                    email,
                    problems,
                } => {
                    let o = Outcome {
                        row,
                        email,
                        status: Status::Skipped,
                        code: None,
                        enhanced: None,
                        reply: problems
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                        message_id: None,
                        attempts: 0,
                        relay: None,
                    };
                    ledger.settled(&[o]).map_err(io)?;
                }
            }
            Ok(())
        })
    }
}

/// A recipient's reply as the journal kept it.
fn reply_of(r: &RcptOutcome) -> Reply {
    let enhanced = r.enhanced.as_deref().and_then(|e| {
        let mut parts = e.split('.');
        let class = parts.next()?.parse().ok()?;
        let subject = parts.next()?.parse().ok()?;
        let detail = parts.next()?.parse().ok()?;
        Some(EnhancedCode {
            class,
            subject,
            detail,
        })
    });
    Reply {
        code: r.code,
        enhanced,
        lines: vec![r.reply.clone()],
    }
}
