//! `mailshot run`: validate every row, then render ahead on a thread of its
//! own behind a bounded queue while the scheduler's sessions send; every
//! outcome goes to the journal (durably, first), the report and the progress
//! display. Ctrl-C (SIGINT), SIGTERM and SIGHUP stop taking new messages and
//! let the ones in flight finish; so does a journal or report that cannot be
//! written, which ends the run with exit 74.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::prepare::{date_now, prepare, Prepared, Row};
use super::target::{self, Live};
use crate::cli::RunArgs;
use crate::delivery::inputs::{self, Fingerprint, Inputs, InputsBuilder, Verdict};
use crate::delivery::journal::{self, Journal, RcptOutcome, Replay};
use crate::delivery::outcome::{Outcome, Status};
use crate::delivery::progress::{Mode, Progress};
use crate::delivery::report::Report;
use crate::delivery::scheduler::{self, Ledger, Settled, Work};
use crate::error::{Error, ExitCode, Location, Result};
use crate::job::Target;
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
    /// The first failure to write the journal or the report (exit 74).
    failure: Mutex<Option<Error>>,
    /// Set on such a failure, so no new message is handed to a server.
    stop: Arc<AtomicBool>,
    /// Rows settled with recipients still to retry (a rerun resumes them).
    open: std::sync::atomic::AtomicUsize,
}

impl<'a> RunLedger<'a> {
    fn new(
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
            open: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Remember the first failure to write `what` (the journal or the
    /// report) and stop sending.
    fn failed(&self, what: &str, path: &Path, e: &std::io::Error) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert_with(|| crate::outputs::write_failed(what, path, e));
        self.stop.store(true, Ordering::SeqCst);
    }

    fn journal_io<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.inspect_err(|e| self.failed("journal", self.journal.path(), e))
    }

    fn report_io<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.inspect_err(|e| self.failed("report", self.report.path(), e))
    }

    /// The first write failure, if any.
    fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Sync the journal, then report what it now holds durably. The list is
    /// taken before the sync (everything in it was written before it was
    /// listed), so sessions keep settling while the disk works.
    fn flush(&self) -> std::io::Result<()> {
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
    if let Some(n) = args.sessions {
        if n > crate::job::validate::MAX_SESSIONS {
            let problem = crate::job::validate::sessions_problem(n);
            return Err(Error::Usage(format!("--sessions: {problem}")));
        }
    }
    let prepared = prepare(&args.job.job, &args.job.vars)?;
    let journal_path = crate::outputs::beside(&prepared.job.path, "journal");
    let earlier = (!args.restart)
        .then(|| inputs::stored_fingerprint(&journal_path))
        .flatten();
    let mut seen = InputsBuilder::new(&prepared.job.dir, args.limit, earlier.as_ref());
    // Nothing is sent unless every row renders; the pass also hashes what
    // the messages attach.
    let (messages, duplicates) = prepared.validate_drafts(args.limit, |d| seen.draft(d))?;
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

    let inputs = run_inputs(&prepared, args, seen)?;
    let fp = match &earlier {
        Some(earlier) => match inputs.compare(earlier) {
            // The journal checks that its header matches what it is given.
            Verdict::Same => earlier.clone(),
            changed => {
                return Err(refuse_changed(
                    &journal_path,
                    earlier,
                    &changed,
                    args.limit,
                    messages + duplicates,
                ))
            }
        },
        None => inputs.fingerprint(),
    };
    let dest = target::destination(&target);
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| crate::outputs::beside(&job.path, "report.csv"));
    refuse_lost_journal(&journal_path, &report_path, args)?;
    let (journal, replay) = journal::open_to(&journal_path, &fp, args.restart, &dest)?;
    if let (Some(note), false) = (&replay.note, args.quiet) {
        eprintln!("mailshot: {note}");
    }
    let report = Report::create(&report_path)
        .map_err(|e| crate::outputs::error("report", &report_path, &e))?;

    let trace = target::open_trace(args.trace.as_deref())?;
    let mut live = target::live(&target, trace)?;
    if let Some(n) = args.sessions {
        live.plan.sessions = n.max(1);
    }
    if rate.is_some() {
        live.plan.rate = rate;
    }

    let stop = Arc::new(AtomicBool::new(false));
    // A closed terminal (SIGHUP) stops the run like Ctrl-C and SIGTERM do.
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // A second signal while the first is being honoured ends the process at once.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 75, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }

    // The total lets the bar and the plain lines show what remains, and an ETA.
    let progress = Progress::new(
        Mode::choose(args.quiet, args.json),
        Some(messages + duplicates),
    );
    let ledger = RunLedger::new(&journal, &report, &progress, stop.clone());
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
        let fed = producer
            .join()
            .map_err(|_| Error::Software("the renderer thread panicked".into()))?;
        // A write failure the ledger recorded is reported below, with the report.
        if let Err(e) = fed {
            if ledger
                .failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none()
            {
                return Err(e);
            }
        }
        Ok(end)
    })?;

    // The last outcomes become durable, then reported.
    let _ = ledger.flush();
    let write_failure = ledger.take_failure();
    let open = ledger.open.load(Ordering::SeqCst);
    drop(ledger);
    let resume = format!("rerun `mailshot run {}` to resume", args.job.job.display());
    if let Some(err) = write_failure {
        // The report still accounts for every row (what is not durable shows
        // as not sent), if it can be written at all.
        if let Ok(summary) = report.finish(Some(&journal_path)) {
            progress.finish_with(&summary, ExitCode::IoErr);
        }
        return Err(Error::Output(format!("{err}; sending stopped; {resume}")));
    }
    let mut summary = match report.finish(Some(&journal_path)) {
        Ok(summary) => summary,
        Err(e) => {
            let err = crate::outputs::write_failed("report", &report_path, &e);
            return Err(Error::Output(format!("{err}; {resume}")));
        }
    };
    summary.retry_left = open as u64;

    if end.fatal.is_none() && !end.interrupted && !stop.load(Ordering::SeqCst) && end.unsent == 0 {
        // Every row has its outcome: a later refusal can say this run finished.
        let _ = journal.record_end();
    }
    // Decide the exit first, so the JSON summary can carry the same code.
    let mut note = None;
    let ending: Result<ExitCode> = if let Some(err) = end.fatal {
        Err(match err {
            Error::TempFail(m) => Error::TempFail(format!("{m}; {resume}")),
            Error::Software(m) => Error::TempFail(format!("{m}; sending stopped; {resume}")),
            other => other,
        })
    } else if end.interrupted || stop.load(Ordering::SeqCst) {
        note = Some(format!(
            "interrupted: {} messages not sent yet; {resume}",
            end.unsent
        ));
        Ok(ExitCode::TempFail)
    } else if end.unsent > 0 {
        note = Some(format!("{} messages not sent yet; {resume}", end.unsent));
        Ok(ExitCode::TempFail)
    } else {
        if open > 0 && !args.quiet {
            note = Some(format!(
                "{open} rows have recipients still to retry (they answered 4xx); {resume} \
                 (only they are sent to)"
            ));
        }
        Ok(summary.exit_code())
    };
    let code = match &ending {
        Ok(code) => *code,
        Err(e) => e.exit_code(),
    };
    progress.finish_with(&summary, code);
    if let Some(dir) = &live.capture_dir {
        if !args.quiet && !args.json {
            eprintln!("captured messages are in {}", dir.display());
        }
    }
    drop(live);
    if let Some(note) = note {
        eprintln!("{note}");
    }
    ending
}

/// Refuse to start afresh when the journal is gone but the report of an
/// earlier run is still there: that run's recipients would be sent to again.
fn refuse_lost_journal(journal: &Path, report: &Path, args: &RunArgs) -> Result<()> {
    if args.restart || std::fs::symlink_metadata(journal).is_ok() || !report.exists() {
        return Ok(());
    }
    Err(Error::invalid(
        crate::error::Location::file(journal),
        format!(
            "the journal is missing, but the report of an earlier run ({}) is there, \
             so mailshot cannot tell which recipients were already sent to and will not \
             guess. Restore the journal to resume, or rerun with --restart to start over \
             (recipients already sent to would be sent again)",
            report.display()
        ),
    ))
}

/// Everything this run's messages are made of, hashed per input: `seen`
/// already holds the attachments and inline images of every row; the job
/// file, the CSV, every template file the rows loaded, the `--var` values,
/// the DKIM key and the user config's settings are added here.
fn run_inputs(prepared: &Prepared, args: &RunArgs, mut seen: InputsBuilder) -> Result<Inputs> {
    let job = &prepared.job;
    let mut files: Vec<(&str, PathBuf)> = vec![
        ("job", job.path.clone()),
        ("csv", job.recipients.file.clone()),
    ];
    for path in prepared.renderer.template_files() {
        files.push(("template", path));
    }
    if let Some(dkim) = &job.dkim {
        files.push(("dkim", dkim.key_file.clone()));
    }
    for (kind, path) in files {
        seen.file(kind, &path)
            .map_err(|e| Error::no_input(&path, &e))?;
    }
    for (name, value) in super::parse_vars(&args.job.vars)? {
        seen.var(&name, &value);
    }
    if job.smtp.is_none() {
        // The user config's account and EHLO name: providers stamp or
        // check the sender against the account, and the receiving server
        // records the EHLO name in the message. (The server it names is
        // the destination, which the journal judges on its own.)
        if let Some(user) = crate::job::load_user_smtp()? {
            if let (Some(name), None) = (&user.username, &args.smtp) {
                seen.setting("smtp.username", name);
            }
            if let Some(helo) = &user.helo {
                seen.setting("smtp.helo_name", helo);
            }
        }
    }
    Ok(seen.finish())
}

/// The error for a journal whose inputs changed since the run that wrote
/// it, saying how far that run got (read from the journal as it stands).
fn refuse_changed(
    journal_path: &Path,
    earlier: &Fingerprint,
    verdict: &Verdict,
    limit: Option<u64>,
    total: u64,
) -> Error {
    let (settled, finished) = match journal::open(journal_path, earlier, false) {
        Ok((_, replay)) => (
            replay
                .done
                .keys()
                .filter(|row| limit.is_none_or(|l| **row <= l))
                .count() as u64,
            replay.finished,
        ),
        Err(e) => return e,
    };
    Error::invalid(
        Location::file(journal_path),
        inputs::refusal(verdict, settled, total, finished),
    )
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
    // The ledger remembers which file failed; the run then ends with exit 74.
    let io = |e: std::io::Error| Error::Output(format!("cannot record an outcome: {e}"));
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
            let previous = ledger
                .journal_io(journal.outcome_at(done.offset))
                .map_err(io)?;
            ledger
                .report_io(ledger.report.record_previous(&previous))
                .map_err(io)?;
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
                    ledger
                        .report_io(ledger.report.record_previous(&o))
                        .map_err(io)?;
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
                let placeholder = ledger.report.record_placeholder(&Outcome {
                    row: m.row,
                    email: m.email.clone(),
                    status: Status::Failed,
                    code: None,
                    enhanced: None,
                    reply: "not sent: the run stopped first; rerun to resume".into(),
                    message_id: Some(m.message_id.clone()),
                    attempts,
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
