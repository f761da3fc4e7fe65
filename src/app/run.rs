//! `mailshot run`: validate every row, then render ahead on a thread of its
//! own behind a bounded queue while the scheduler's sessions send; every
//! outcome goes to the journal (durably, first), the report and the progress
//! display. Ctrl-C stops taking new messages and lets the ones in flight
//! finish.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::prepare::{date_now, prepare, Row};
use super::target::{self, Live};
use crate::cli::RunArgs;
use crate::error::{Error, ExitCode, Result};
use crate::job::Target;
use crate::run::journal::{self, Journal, RcptOutcome, Replay};
use crate::run::progress::{Mode, Progress};
use crate::run::report::{Outcome, Report, Status};
use crate::run::scheduler::{self, Ledger, Settled, Work};
use crate::smtp::client::{CloseReason, SessionError};
use crate::smtp::connection::SessionFailure;
use crate::smtp::reply::{EnhancedCode, Reply};

/// Rendered messages waiting for a session; bounds memory however long the CSV.
const QUEUE: usize = 512;

/// How long an outcome may wait, written but not yet synced, before it is
/// made durable and reported: one `sync_data` covers every outcome of that
/// window (group commit), so a slow disk does not slow the sending.
const SYNC_EVERY: Duration = Duration::from_millis(50);

/// The journal, report and progress display behind the scheduler.
struct RunLedger<'a> {
    journal: &'a Journal,
    report: &'a Report,
    progress: &'a Progress,
    /// Outcomes written to the journal, waiting for the sync that lets them be reported.
    unreported: Mutex<Vec<Outcome>>,
    /// Rows settled with recipients still to retry (a rerun resumes them).
    open: std::sync::atomic::AtomicUsize,
}

impl<'a> RunLedger<'a> {
    fn new(journal: &'a Journal, report: &'a Report, progress: &'a Progress) -> Self {
        RunLedger {
            journal,
            report,
            progress,
            unreported: Mutex::new(Vec::new()),
            open: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Sync the journal, then report what it now holds durably. The list is
    /// taken before the sync (everything in it was written before it was
    /// listed), so sessions keep settling while the disk works.
    fn flush(&self) -> std::io::Result<()> {
        let ready = {
            let mut u = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *u)
        };
        self.journal.sync()?;
        for o in &ready {
            self.report.record(o)?;
            self.progress.outcome(o);
        }
        Ok(())
    }
}

impl Ledger for RunLedger<'_> {
    fn inflight(&self, batch: &[(u64, &str, u32)]) -> std::io::Result<()> {
        self.journal.record_inflight(batch)
    }

    fn committing(&self, rows: &[u64]) -> std::io::Result<()> {
        self.journal.record_commits(rows)
    }

    fn settled(&self, batch: &[Outcome]) -> std::io::Result<()> {
        self.journal.record_outcomes(batch)?;
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
}

/// `JOB.<suffix>` next to the job file (`news.yaml` → `news.journal`).
fn beside(job: &Path, suffix: &str) -> PathBuf {
    let stem = job
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job".into());
    job.with_file_name(format!("{stem}.{suffix}"))
}

/// Map a failure to open a session to the error the user sees.
pub fn open_failure(live: &Live, failure: SessionFailure) -> Error {
    let server = format!("{}:{}", live.plan.endpoint.host, live.plan.endpoint.port);
    match failure {
        SessionFailure::Closed(CloseReason::Error(SessionError::AuthFailed(reply))) => {
            let mut msg = format!("{server}: authentication failed: {reply}");
            if let Some(advice) = &live.plan.auth_advice {
                msg.push_str("\n  ");
                msg.push_str(advice);
            }
            Error::Auth(msg)
        }
        SessionFailure::Closed(CloseReason::Error(
            e @ (SessionError::AuthRequiresTls | SessionError::AuthUnsupported),
        )) => Error::Auth(format!("{server}: {e}")),
        other => Error::Unavailable(format!("{server}: {other}")),
    }
}

/// `mailshot run JOB`.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let prepared = prepare(&args.job.job, &args.job.vars)?;
    // Nothing is sent unless every row renders.
    let (messages, duplicates) = prepared.validate(args.limit, false)?;
    let job = &prepared.job;

    let mut target = target::resolve(Some(job), args.smtp.as_deref())?;
    if let Target::Smtp(s) = &mut target {
        if let Some(n) = args.sessions {
            s.sessions = n;
        }
    }
    let rate = match &args.rate {
        Some(r) => Some(
            crate::job::manifest::parse_rate(r)
                .map_err(|e| Error::Usage(format!("--rate {r:?}: {e}")))?,
        ),
        None => None,
    };

    let mut inputs: Vec<&Path> = vec![&job.path, &job.recipients.file];
    inputs.extend(job.text.as_deref());
    inputs.extend(job.html.as_deref());
    inputs.extend(job.markdown.as_deref());
    let fp = journal::fingerprint(&inputs).map_err(|e| Error::no_input(&job.path, &e))?;
    let journal_path = beside(&job.path, "journal");
    let dest = target::destination(&target);
    let (journal, replay) = journal::open_to(&journal_path, &fp, args.restart, &dest)?;
    if let (Some(note), false) = (&replay.note, args.quiet) {
        eprintln!("mailshot: {note}");
    }
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| beside(&job.path, "report.csv"));
    let report = Report::create(&report_path)
        .map_err(|e| Error::Software(format!("{}: {e}", report_path.display())))?;

    let trace = target::open_trace(args.trace.as_deref())?;
    let mut live = target::live(&target, trace)?;
    if let Some(n) = args.sessions {
        live.plan.sessions = n.max(1);
    }
    if rate.is_some() {
        live.plan.rate = rate;
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C while the first is being honoured ends the process at once.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 75, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }

    // The total lets the bar and the plain lines show what remains, and an ETA.
    let progress = Progress::new(
        Mode::choose(args.quiet, args.json),
        Some(messages + duplicates),
    );
    let ledger = RunLedger::new(&journal, &report, &progress);
    let (tx, rx) = sync_channel::<Work>(QUEUE);
    let date = date_now();
    let sending = AtomicBool::new(true);
    let end = std::thread::scope(|s| -> Result<scheduler::RunEnd> {
        let producer =
            s.spawn(|| feed(&prepared, args, &replay, &journal, &ledger, tx, date, &stop));
        // Outcomes wait for a group commit, and a slow server sends none for a
        // while: a heartbeat keeps the display (and the report of what is
        // durable) moving.
        let heartbeat = s.spawn(|| {
            while sending.load(Ordering::SeqCst) {
                // Unparked when sending ends, so the run does not wait out a beat.
                std::thread::park_timeout(SYNC_EVERY);
                let _ = ledger.flush();
                progress.tick();
            }
        });
        let end = scheduler::run(&live.plan, rx, &ledger, stop.clone());
        sending.store(false, Ordering::SeqCst);
        heartbeat.thread().unpark();
        producer
            .join()
            .map_err(|_| Error::Software("the renderer thread panicked".into()))??;
        Ok(end)
    })?;

    // The last outcomes become durable, then reported.
    let flushed = ledger.flush();
    let open = ledger.open.load(Ordering::SeqCst);
    drop(ledger);
    if let Err(e) = flushed {
        // The report still accounts for every row (what is not durable shows as not sent).
        let _ = report.finish(Some(&journal_path));
        return Err(Error::TempFail(format!(
            "cannot write the journal: {e}; rerun `mailshot run {}` to resume",
            args.job.job.display()
        )));
    }
    let mut summary = report
        .finish(Some(&journal_path))
        .map_err(|e| Error::Software(format!("{}: {e}", report_path.display())))?;
    summary.retry_left = open as u64;
    progress.finish(&summary);
    if let Some(dir) = &live.capture_dir {
        if !args.quiet && !args.json {
            eprintln!("captured messages are in {}", dir.display());
        }
    }
    drop(live);

    let resume = format!("rerun `mailshot run {}` to resume", args.job.job.display());
    if end.fatal.is_none() && !end.interrupted && !stop.load(Ordering::SeqCst) && end.unsent == 0 {
        // Every row has its outcome: a later refusal can say this run finished.
        let _ = journal.record_end();
    }
    if let Some(err) = end.fatal {
        return Err(match err {
            Error::TempFail(m) => Error::TempFail(format!("{m}; {resume}")),
            Error::Software(m) => Error::TempFail(format!("{m}; sending stopped; {resume}")),
            other => other,
        });
    }
    if end.interrupted || stop.load(Ordering::SeqCst) {
        eprintln!(
            "interrupted: {} messages not sent yet; {resume}",
            end.unsent
        );
        return Ok(ExitCode::TempFail);
    }
    if end.unsent > 0 {
        eprintln!("{} messages not sent yet; {resume}", end.unsent);
        return Ok(ExitCode::TempFail);
    }
    if open > 0 && !args.quiet {
        eprintln!(
            "{open} rows have recipients still to retry (they answered 4xx); rerun `mailshot run \
             {}` to send to them (only to them)",
            args.job.job.display()
        );
    }
    Ok(summary.exit_code())
}

/// The producer: render rows in order, settle what needs no sending (already
/// done, duplicates, uncertain), queue the rest.
#[allow(clippy::too_many_arguments)]
fn feed(
    prepared: &super::prepare::Prepared,
    args: &RunArgs,
    replay: &Replay,
    journal: &Journal,
    ledger: &RunLedger<'_>,
    tx: std::sync::mpsc::SyncSender<Work>,
    date: i64,
    stop: &AtomicBool,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Software(format!("journal/report: {e}"));
    // Once stopped (Ctrl-C, or the scheduler gave up), the remaining rows are
    // still walked so the report keeps one row per recipient; they are
    // recorded as not sent, never queued. Rendering them again costs no more
    // than the validation pass the run began with.
    let mut stopped = false;
    for row in prepared.rows(args.limit, &replay.run_id, date)? {
        stopped = stopped || stop.load(Ordering::SeqCst);
        let row_no = match &row {
            Row::Message(m) => m.row,
            Row::Duplicate { row, .. } | Row::Invalid { row, .. } => *row,
        };
        if let Some(done) = replay.done.get(&row_no) {
            let previous = journal.outcome_at(done.offset).map_err(io)?;
            ledger.report.record_previous(&previous).map_err(io)?;
            ledger.progress.outcome(&previous);
            continue;
        }
        match row {
            Row::Message(m) => {
                if let (Some(id), false) = (replay.uncertain.get(&m.row), args.resend_uncertain) {
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
                    };
                    ledger.report.record_previous(&o).map_err(io)?;
                    ledger.progress.outcome(&o);
                    continue;
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
                    let o = scheduler::row_outcome(&work, None);
                    ledger.settled(&[o]).map_err(io)?;
                    continue;
                }
                let m = &work.out;
                // Shown only if the run stops before this message's outcome.
                ledger
                    .report
                    .record_placeholder(&Outcome {
                        row: m.row,
                        email: m.email.clone(),
                        status: Status::Failed,
                        code: None,
                        enhanced: None,
                        reply: "not sent: the run stopped first; rerun to resume".into(),
                        message_id: Some(m.message_id.clone()),
                        attempts,
                    })
                    .map_err(io)?;
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
                };
                ledger.settled(&[o]).map_err(io)?;
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
                };
                ledger.settled(&[o]).map_err(io)?;
            }
        }
    }
    Ok(())
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
