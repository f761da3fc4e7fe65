//! `mailshot bounces JOB.yaml [--dry-run]`: read the job's bounce mailbox,
//! learn from what came back, and say what was learnt.

use crate::cli::BouncesArgs;
use crate::error::{Error, ExitCode, Result};
use crate::job::bounces::After;
use crate::mailbox::reader::{visit, Visit};
use crate::mailbox::record::{Books, Learnt, KINDS};
use crate::mailbox::seen::Seen;

/// Runs the command.
pub fn bounces(args: &BouncesArgs) -> Result<ExitCode> {
    let vars = crate::job::parse_vars(&args.job.vars)?;
    let job = crate::job::load(&args.job.job, &vars)?;
    let settings = job.bounces.clone().ok_or_else(|| {
        Error::Usage(format!(
            "{}: the job has no `bounces:` section naming the mailbox to read",
            job.path.display()
        ))
    })?;
    if job.suppress.is_empty() {
        return Err(Error::Usage(format!(
            "{}: `bounces` adds what it learns to the first `suppress` file; the job names none",
            job.path.display()
        )));
    }
    let secret = crate::job::secrets::resolve(&settings.password)?
        .ok_or_else(|| Error::Auth("the bounce mailbox has no password source".into()))?;
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| crate::outputs::beside(&job.path, "report.csv"));
    let state = crate::outputs::beside(&job.path, "bounces.state");
    let mut seen =
        Seen::load(&state).map_err(|e| crate::outputs::error("bounce state file", &state, &e))?;
    let mut books = Books::open(
        &job,
        &report,
        settings.soft_bounce_limit,
        &mut seen,
        args.dry_run,
    )?;
    let trace = super::open_trace(args.trace.as_deref())?;
    let after = if args.dry_run {
        After::Keep
    } else {
        settings.after.clone()
    };
    let mut learnt = Learnt::default();
    let visit = visit(
        &settings,
        secret.expose(),
        &seen.clone(),
        &after,
        trace,
        |msgs| {
            let (l, keys) = books.learn(msgs, &mut seen, args.dry_run)?;
            learnt = l;
            Ok(keys)
        },
    )?;
    print_summary(&learnt, &visit, args.dry_run);
    Ok(ExitCode::Ok)
}

fn print_summary(learnt: &Learnt, visit: &Visit, dry_run: bool) {
    let fetched = visit.fetched;
    if dry_run {
        for r in &learnt.rows {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                r.kind,
                r.email.as_deref().unwrap_or("-"),
                r.row.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                r.status.as_deref().unwrap_or("-"),
                r.diagnostic.as_deref().unwrap_or("")
            );
        }
    }
    let counts = learnt.counts();
    let per_kind: Vec<String> = KINDS
        .iter()
        .map(|k| format!("{} {}", k.as_str(), counts.get(k.as_str()).unwrap_or(&0)))
        .collect();
    println!(
        "bounces: {fetched} new message(s): {}{}",
        per_kind.join(", "),
        if learnt.duplicates > 0 {
            format!(" ({} already counted)", learnt.duplicates)
        } else {
            String::new()
        }
    );
    let verb = if dry_run {
        "would be suppressed"
    } else {
        "newly suppressed"
    };
    if learnt.suppressed.is_empty() {
        println!("{verb}: none");
    } else {
        println!("{verb} ({}):", learnt.suppressed.len());
        for (email, reason) in &learnt.suppressed {
            println!("  {email} ({reason})");
        }
    }
    if visit.removed > 0 {
        println!("removed from the mailbox: {}", visit.removed);
    }
    if visit.leftovers > 0 {
        println!(
            "left over from an earlier visit, now removed: {}",
            visit.leftovers
        );
    }
    if dry_run {
        println!("dry run: nothing written, nothing deleted or moved");
    }
}
