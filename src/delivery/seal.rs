//! Run: the journal's seal (`JOB.journal.seal`), a one-line side file that
//! records which run the journal belongs to and how long it was when last
//! made durable.
//!
//! The journal can tell a torn last line from a whole one, but not a journal
//! cut short at a line boundary, emptied, deleted or swapped for another run's:
//! every one of those would make a rerun resend to recipients that already
//! got the message. The seal catches them without knowing anything about the
//! journal's records: after each sync of the journal its synced length is
//! written over the seal's only line (same length every time, one block, not
//! synced itself, so it never costs a disk flush). The seal may therefore lag
//! behind after a power loss, never run ahead, and a journal shorter than its
//! seal says, or with another run id, was changed by something other than
//! mailshot.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Location, Result};

/// The first word of a seal line.
const MAGIC: &str = "mailshot-journal-seal";

/// What an earlier run wrote in the seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The run id of the journal it seals.
    pub run_id: String,
    /// The journal's length in octets when it was last synced.
    pub len: u64,
}

/// The seal's path for `journal`: `JOB.journal.seal`.
pub fn path_for(journal: &Path) -> PathBuf {
    let mut s = journal.as_os_str().to_os_string();
    s.push(".seal");
    PathBuf::from(s)
}

fn line(run_id: &str, len: u64) -> String {
    // Fixed width, so every rewrite covers the previous line exactly.
    format!("{MAGIC} {run_id} {len:020}\n")
}

fn parse(text: &str) -> Option<Sealed> {
    let text = text.strip_suffix('\n')?;
    let mut words = text.split(' ');
    let (magic, run_id, len) = (words.next()?, words.next()?, words.next()?);
    if magic != MAGIC || words.next().is_some() || run_id.is_empty() || len.len() != 20 {
        return None;
    }
    Some(Sealed {
        run_id: run_id.to_owned(),
        len: len.parse().ok()?,
    })
}

/// Read the seal of `journal`, if there is a readable one. A seal that is
/// missing or unreadable (e.g. written by an older mailshot, or damaged) is
/// `None`: it then proves nothing either way.
pub fn read(journal: &Path) -> Option<Sealed> {
    let mut text = String::new();
    File::open(path_for(journal))
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .ok()?;
    parse(&text)
}

/// The refusal for a journal that is not the one its seal describes.
fn refusal(journal: &Path, what: String) -> Error {
    Error::invalid(
        Location::file(journal),
        format!(
            "{what}; it was deleted, cut short or replaced since, so mailshot cannot \
             tell which recipients were already sent to and will not guess. Restore \
             the journal to resume, or rerun with --restart to start over (recipients \
             already sent to would be sent again)"
        ),
    )
}

/// Check the journal as found on disk (`len`: its length, `None` if it does
/// not exist) against its seal, before anything is read from it.
pub fn check_length(journal: &Path, len: Option<u64>) -> Result<()> {
    let Some(sealed) = read(journal) else {
        return Ok(());
    };
    match len {
        None | Some(0) if sealed.len > 0 => Err(refusal(
            journal,
            format!(
                "the journal is missing or empty, but an earlier run (run id {}) had \
                 recorded {} octets in it",
                sealed.run_id, sealed.len
            ),
        )),
        Some(len) if len < sealed.len => Err(refusal(
            journal,
            format!(
                "the journal holds {len} octets, but an earlier run (run id {}) had \
                 made {} octets of it durable",
                sealed.run_id, sealed.len
            ),
        )),
        _ => Ok(()),
    }
}

/// Check that the journal just read belongs to the run its seal names.
pub fn check_run_id(journal: &Path, run_id: &str) -> Result<()> {
    match read(journal) {
        Some(sealed) if sealed.run_id != run_id => Err(refusal(
            journal,
            format!(
                "the journal is of run {run_id}, but its seal says run {} wrote it last",
                sealed.run_id
            ),
        )),
        _ => Ok(()),
    }
}

/// An open seal, kept up to date as the journal is synced.
#[derive(Debug)]
pub struct Seal {
    run_id: String,
    /// The file and the largest length written to it.
    inner: Mutex<(File, u64)>,
}

impl Seal {
    /// Create (or replace) the seal of `journal` for run `run_id`, recording
    /// `len`, and make it durable.
    pub fn create(journal: &Path, run_id: &str, len: u64) -> io::Result<Seal> {
        let file = crate::outputs::create(&path_for(journal))?;
        file.write_all_at(line(run_id, len).as_bytes(), 0)?;
        file.sync_all()?;
        Ok(Seal {
            run_id: run_id.to_owned(),
            inner: Mutex::new((file, len)),
        })
    }

    /// Record that the journal's first `len` octets are durable (ignored if
    /// an equal or larger length was recorded already).
    pub fn record(&self, len: u64) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if len <= inner.1 {
            return Ok(());
        }
        inner
            .0
            .write_all_at(line(&self.run_id, len).as_bytes(), 0)?;
        inner.1 = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_round_trips_and_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("job.journal");
        let seal = Seal::create(&journal, "0123456789abcdef", 100).unwrap();
        seal.record(250).unwrap();
        seal.record(120).unwrap();
        let sealed = read(&journal).unwrap();
        assert_eq!(sealed.run_id, "0123456789abcdef");
        assert_eq!(sealed.len, 250);
    }

    #[test]
    fn a_short_missing_or_foreign_journal_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("job.journal");
        drop(Seal::create(&journal, "aaaa", 300).unwrap());
        assert!(check_length(&journal, Some(300)).is_ok());
        assert!(check_length(&journal, Some(400)).is_ok());
        for len in [None, Some(0), Some(299)] {
            let err = check_length(&journal, len).unwrap_err();
            assert!(err.to_string().contains("--restart"), "{err}");
            assert!(err.to_string().contains("job.journal"), "{err}");
        }
        assert!(check_run_id(&journal, "aaaa").is_ok());
        assert!(check_run_id(&journal, "bbbb").is_err());
    }

    #[test]
    fn no_seal_or_a_damaged_one_proves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("job.journal");
        assert!(check_length(&journal, None).is_ok());
        std::fs::write(path_for(&journal), "mailshot-journal-seal x 12").unwrap();
        assert!(read(&journal).is_none());
        assert!(check_length(&journal, Some(0)).is_ok());
    }
}
