//! `mailshot run`: validate every row, then render ahead (on every thread
//! `--threads` allows, in row order) behind a bounded queue while the
//! delivery sessions send; every
//! outcome goes to the journal (durably, first), the report and the progress
//! display. Ctrl-C (SIGINT), SIGTERM and SIGHUP stop taking new messages and
//! let the ones in flight finish; so does a journal or report that cannot be
//! written, which ends the run with exit 74.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cli::RunArgs;
use crate::compose::prepare::{date_now, prepare};
use crate::delivery::feed::Feed;
use crate::delivery::inputs::{self, InputsBuilder};
use crate::delivery::journal;
use crate::delivery::learn::Learner;
use crate::delivery::ledger::RunLedger;
use crate::delivery::plan::Plan;
use crate::delivery::progress::{Mode, Progress};
use crate::delivery::report::Report;
use crate::delivery::resume;
use crate::error::{Error, ExitCode, Result};
use crate::job::shard::Shard;
use crate::job::target;
use crate::job::validate::sender_rule::SenderCheck;

/// The `--shard I/N` of the command line, checked.
pub fn shard_arg(args: &RunArgs) -> Result<Option<Shard>> {
    args.shard
        .as_deref()
        .map(Shard::parse)
        .transpose()
        .map_err(|e| Error::Usage(format!("--shard {e}")))
}

/// `mailshot run JOB`.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    if let Some(n) = args.sessions {
        if n > crate::job::validate::smtp_section::MAX_SESSIONS {
            let problem = crate::job::validate::smtp_section::sessions_problem(n);
            return Err(Error::Usage(format!("--sessions: {problem}")));
        }
    }
    let shard = shard_arg(args)?;
    let mut prepared = prepare(&args.job.job, &args.job.vars)?;
    prepared.shard = shard;
    prepared.limit_threads(args.threads);
    let name = |what: &str| crate::job::shard::suffix(shard.as_ref(), what);
    let journal_path = crate::outputs::beside(&prepared.job.path, &name("journal"));
    let earlier = (!args.restart)
        .then(|| inputs::stored_fingerprint(&journal_path))
        .flatten();
    let mut seen = InputsBuilder::new(&prepared.job.dir, args.limit, earlier.as_ref());
    let target = target::resolve(Some(&prepared.job), args.smtp.as_deref())?;
    let mut senders = SenderCheck::new(&prepared.job.path, &target);
    // Nothing is sent unless every row renders (and, on QQ, 163 and 126,
    // sends as the login); the pass also hashes what the messages attach.
    let tally = prepared.validate_drafts(args.limit, |d| {
        seen.draft(d);
        super::check::see_senders(&mut senders, d);
    })?;
    senders.finish()?;
    let (messages, duplicates) = (tally.messages, tally.duplicates + tally.suppressed);
    let job = &prepared.job;
    let rate = match &args.rate {
        Some(r) => Some(
            crate::job::manifest::parse_rate(r)
                .map_err(|e| Error::Usage(format!("--rate {r:?}: {e}")))?,
        ),
        None => None,
    };

    let inputs = resume::inputs(
        &prepared,
        &crate::job::parse_vars(&args.job.vars)?,
        args.smtp.is_some(),
        seen,
    )?;
    let fp = resume::fingerprint(
        &journal_path,
        earlier.as_ref(),
        &inputs,
        args.limit,
        messages + duplicates,
    )?;
    let dest = target::destination(&target);
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| crate::outputs::beside(&job.path, &name("report.csv")));
    resume::refuse_lost_journal(&journal_path, &report_path, args.restart)?;
    let sessions = Plan::sessions_for(&target, args.sessions);
    let (journal, replay) = journal::open_to(&journal_path, &fp, args.restart, &dest, sessions)?;
    if let (Some(note), false) = (&replay.note, args.quiet) {
        eprintln!("mailshot: {note}");
    }
    let report = Report::create(&report_path)
        .map_err(|e| crate::outputs::error("report", &report_path, &e))?;

    let mut plan = Plan::open(&target, super::open_trace(args.trace.as_deref())?)?;
    // The command line wins over the job and the user config.
    if let Some(n) = args.sessions {
        plan.set_sessions(n);
    }
    if let Some(rate) = rate {
        plan.set_rate(rate);
    }
    plan.domains.clone_from(&job.domains);
    plan.daily_state = Some(crate::outputs::beside(&job.path, &name("relays.json")));

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
    let learner = job.suppress.first().cloned().map(Learner::new);
    let ledger = RunLedger::new(&journal, &report, &progress, stop.clone()).with_learner(learner);
    let feed = Feed {
        prepared: &prepared,
        limit: args.limit,
        resend_uncertain: args.resend_uncertain,
        replay: &replay,
        journal: &journal,
        date: date_now(),
    };
    let end = feed.send(&plan, &ledger, &stop)?;

    // The last outcomes become durable, then reported.
    let _ = ledger.flush();
    let write_failure = ledger.take_failure();
    let open = ledger.open_rows();
    let learned = match ledger.learned() {
        Some((n, path)) if n > 0 && !args.quiet => Some(format!(
            "{n} refused addresses that do not exist were added to {}",
            path.display()
        )),
        _ => None,
    };
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
    // The rows still to send (for another relay or another day) and the page.
    let outputs_written = super::report::write_outputs(
        job,
        shard.as_ref(),
        std::slice::from_ref(&report_path),
        std::slice::from_ref(&journal_path),
    );
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
    let ending = match (ending, outputs_written) {
        (Ok(_), Err(e)) => Err(e),
        (ending, _) => ending,
    };
    let code = match &ending {
        Ok(code) => *code,
        Err(e) => e.exit_code(),
    };
    progress.finish_with(&summary, code);
    if let Some(dir) = &plan.capture_dir {
        if !args.quiet && !args.json {
            eprintln!("captured messages are in {}", dir.display());
        }
    }
    drop(plan);
    for note in [learned, note].into_iter().flatten() {
        eprintln!("{note}");
    }
    ending
}
