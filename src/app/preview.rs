//! `mailshot preview` and `mailshot run --dry-run`: messages rendered and
//! shown (RFC 5322 as sent), never sent.

use std::io::Write;

use crate::cli::{PreviewArgs, RunArgs};
use crate::compose::prepare::{date_now, prepare, Row};
use crate::error::{Error, ExitCode, Location, Result};

/// `mailshot preview JOB [--row N]`.
pub fn preview(args: &PreviewArgs) -> Result<ExitCode> {
    if args.row == 0 {
        return Err(Error::Usage("--row counts from 1".into()));
    }
    let prepared = prepare(&args.job.job, &args.job.vars)?;
    let run_id = "preview";
    let mut seen = 0;
    for row in prepared.rows(Some(args.row), run_id, date_now())? {
        seen += 1;
        if seen < args.row {
            continue;
        }
        return match row {
            Row::Message(m) => {
                write_stdout(&m.data.contiguous())?;
                Ok(ExitCode::Ok)
            }
            Row::Invalid { problems, .. } => Err(Error::Invalid(problems)),
            Row::Duplicate { row, email, first } => Err(Error::invalid(
                Location {
                    row: Some(row),
                    ..Location::file(&prepared.job.recipients.file)
                },
                format!("{email} already appears in row {first}; this row is skipped when sending"),
            )),
            Row::Suppressed { row, email } => Err(Error::invalid(
                Location {
                    row: Some(row),
                    ..Location::file(&prepared.job.recipients.file)
                },
                format!("{email} is in a suppression file; this row is never sent"),
            )),
        };
    }
    Err(Error::Usage(format!(
        "--row {}: {} has only {seen} data rows",
        args.row,
        prepared.job.recipients.file.display()
    )))
}

/// `mailshot run JOB --dry-run --out DIR`: every message as `DIR/<row>.eml`.
pub fn dry_run(args: &RunArgs) -> Result<ExitCode> {
    let Some(out) = &args.out else {
        return Err(Error::Usage("--dry-run needs --out DIR".into()));
    };
    let mut prepared = prepare(&args.job.job, &args.job.vars)?;
    prepared.shard = super::run::shard_arg(args)?;
    prepared.limit_threads(args.threads);
    // Every row must render before a single file is written.
    prepared.validate(args.limit, false)?;
    std::fs::create_dir_all(out).map_err(|e| crate::outputs::error("folder", out, &e))?;
    let run_id = format!("dry{:08x}", fastrand::u32(..));
    let (mut written, mut skipped, mut suppressed) = (0u64, 0u64, 0u64);
    for row in prepared.rows(args.limit, &run_id, date_now())? {
        match row {
            Row::Message(m) => {
                let path = out.join(format!("{}.eml", m.row));
                // Mode 0600: a message names its recipients.
                crate::outputs::create(&path)
                    .map_err(|e| crate::outputs::cannot_create("message", &path, &e))
                    .and_then(|mut f| {
                        std::io::Write::write_all(&mut f, &m.data.contiguous())
                            .map_err(|e| crate::outputs::write_failed("message", &path, &e))
                    })?;
                written += 1;
            }
            Row::Duplicate { .. } => skipped += 1,
            Row::Suppressed { .. } => suppressed += 1,
            Row::Invalid { problems, .. } => {
                // The files changed between the two passes.
                return Err(Error::Invalid(problems));
            }
        }
    }
    if !args.quiet {
        eprintln!(
            "dry run: {written} messages written to {}{}{}",
            out.display(),
            if skipped > 0 {
                format!(" ({skipped} duplicate rows skipped)")
            } else {
                String::new()
            },
            if suppressed > 0 {
                format!("; {suppressed} suppressed addresses not written")
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::Ok)
}

/// Write a message to stdout; a reader that stops early (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Software(format!("stdout: {e}")))
        }
        _ => Ok(()),
    }
}
