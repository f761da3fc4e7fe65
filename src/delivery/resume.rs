//! Resuming a run from its journal: what the run's messages are made of
//! (the [`Inputs`] fingerprint), the refusal when they changed since the run
//! that wrote the journal, and the refusal to start afresh when a journal is
//! lost but its report is not (that run's recipients would be sent to again).

use std::path::{Path, PathBuf};

use super::inputs::{self, Fingerprint, Inputs, InputsBuilder, Verdict};
use super::journal;
use crate::compose::prepare::Prepared;
use crate::error::{Error, Location, Result};

/// The fingerprint to open the journal with: the `earlier` run's when the
/// inputs are the same, a fresh one when there is no earlier run, and an
/// error naming what changed (and how far that run got) otherwise.
pub fn fingerprint(
    journal_path: &Path,
    earlier: Option<&Fingerprint>,
    inputs: &Inputs,
    limit: Option<u64>,
    total: u64,
) -> Result<Fingerprint> {
    match earlier {
        Some(earlier) => match inputs.compare(earlier) {
            // The journal checks that its header matches what it is given.
            Verdict::Same => Ok(earlier.clone()),
            changed => Err(refuse_changed(
                journal_path,
                earlier,
                &changed,
                limit,
                total,
            )),
        },
        None => Ok(inputs.fingerprint()),
    }
}

/// Refuse to start afresh when the journal is gone but the report of an
/// earlier run is still there: that run's recipients would be sent to again.
pub fn refuse_lost_journal(journal: &Path, report: &Path, restart: bool) -> Result<()> {
    if restart || std::fs::symlink_metadata(journal).is_ok() || !report.exists() {
        return Ok(());
    }
    Err(Error::invalid(
        Location::file(journal),
        format!(
            "the journal is missing, but the report of an earlier run ({}) is there, \
             so mailshot cannot tell which recipients were already sent to and will not \
             guess. Restore the journal to resume, or rerun with --restart to start over \
             (recipients already sent to would be sent again)",
            report.display()
        ),
    ))
}

/// Everything this run's messages are made of, hashed per input (`vars`:
/// the `--var` values; `smtp_url_given`: `--smtp` names the account): `seen`
/// already holds the attachments and inline images of every row; the job
/// file, the CSV, every template file the rows loaded, the `--var` values,
/// the DKIM key and the user config's settings are added here.
pub fn inputs(
    prepared: &Prepared,
    vars: &[(String, String)],
    smtp_url_given: bool,
    mut seen: InputsBuilder,
) -> Result<Inputs> {
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
    for (name, value) in vars {
        seen.var(name, value);
    }
    if job.smtp.is_none() {
        // The user config's account and EHLO name: providers stamp or
        // check the sender against the account, and the receiving server
        // records the EHLO name in the message. (The server it names is
        // the destination, which the journal judges on its own.)
        if let Some(user) = crate::job::load_user_smtp()? {
            if let (Some(name), false) = (&user.username, smtp_url_given) {
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
                .iter()
                .filter(|(row, _)| limit.is_none_or(|l| *row <= l))
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
