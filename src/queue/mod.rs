//! The sendmail queue (`queue: DIR` in the config): messages that could not
//! go out at once wait here, durably, until `mailshot queue flush` delivers
//! them, as nullmailer and dma keep theirs.
//!
//! Each entry is two files: `ID.msg` (the message bytes) and `ID.env` (the
//! envelope and retry state, JSON). Both are written to a temporary name,
//! fsynced, renamed and the folder fsynced; `ID.env` last, so an entry
//! exists only once it is whole. While a flush hands an entry to a server it
//! keeps the markers `ID.inflight` (before the session has it) and
//! `ID.committing` (before the final dot): an entry found with
//! `ID.committing` after a crash may have been delivered, and is moved to
//! `uncertain/` instead of being sent again — the journal's rule for
//! messages whose outcome is unknown.

pub mod flush;
pub mod ledger;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An entry's envelope and retry state (`ID.env`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// MAIL FROM.
    pub mail_from: String,
    /// Recipients that have not accepted yet.
    pub rcpts: Vec<String>,
    /// The message's Message-ID.
    pub message_id: String,
    /// The message needs BODY=8BITMIME.
    pub eight_bit: bool,
    /// Addresses need SMTPUTF8.
    pub smtputf8: bool,
    /// `-a NAME` it was submitted with.
    pub account: Option<String>,
    /// The sender that picked the account by domain.
    pub sender: Option<String>,
    /// `--smtp URL` it was submitted with.
    pub smtp: Option<String>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When it was queued (seconds since the epoch).
    pub queued: u64,
    /// Not to be tried before this (seconds since the epoch) by `flush --due`.
    pub next_try: u64,
    /// Why the last attempt failed.
    pub last_error: String,
}

/// One queued message.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id (the file stem).
    pub id: String,
    /// Its envelope and state.
    pub meta: Meta,
}

/// A queue folder.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The wait before the next try after `attempts` failed ones: 1 minute,
/// doubling, at most an hour.
pub fn backoff(attempts: u32) -> Duration {
    let secs = 60u64.saturating_mul(1 << attempts.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(3600))
}

impl Queue {
    /// The queue in `dir` (created if missing, mode 0700).
    pub fn open(dir: &Path) -> io::Result<Queue> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(Queue {
            dir: dir.to_path_buf(),
        })
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// Hold the queue's lock (one flush at a time) until the file is dropped.
    pub fn lock(&self) -> io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f)
    }

    /// Store a message durably; returns its id.
    pub fn enqueue(&self, data: &[u8], meta: &Meta) -> io::Result<String> {
        let id = format!("{:016x}-{:08x}", now(), fastrand::u32(..));
        self.write_atomic(&self.path(&id, "msg"), data)?;
        self.write_meta(&id, meta)?;
        Ok(id)
    }

    /// Replace an entry's state, atomically and durably.
    pub fn write_meta(&self, id: &str, meta: &Meta) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        self.write_atomic(&self.path(id, "env"), &json)
    }

    /// The message bytes of `id`.
    pub fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(id, "msg"))
    }

    /// Every whole entry, oldest first.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".env") else {
                continue;
            };
            let text = fs::read(self.path(id, "env"))?;
            let meta: Meta = serde_json::from_slice(&text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))?;
            out.push(Entry {
                id: id.to_string(),
                meta,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Entries set aside in `uncertain/` or `failed/`.
    pub fn set_aside(&self, which: &str) -> io::Result<Vec<Entry>> {
        match Queue::open(&self.dir.join(which)) {
            Ok(q) => q.entries(),
            Err(e) => Err(e),
        }
    }

    /// Drop the marker `ext` (`inflight`, `committing`) of `id`, durably.
    pub fn mark(&self, id: &str, ext: &str) -> io::Result<()> {
        self.write_atomic(&self.path(id, ext), b"")
    }

    /// Whether `id` has the marker `ext`.
    pub fn has_mark(&self, id: &str, ext: &str) -> bool {
        self.path(id, ext).exists()
    }

    /// Remove the markers of `id`.
    pub fn clear_marks(&self, id: &str) -> io::Result<()> {
        for ext in ["inflight", "committing"] {
            remove_if_present(&self.path(id, ext))?;
        }
        sync_dir(&self.dir)
    }

    /// Remove a delivered entry: its state first, so a crash in between
    /// leaves an orphan message file, never an entry sent twice.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        remove_if_present(&self.path(id, "env"))?;
        sync_dir(&self.dir)?;
        remove_if_present(&self.path(id, "msg"))?;
        self.clear_marks(id)
    }

    /// Move an entry to the subfolder `which` (`uncertain`, `failed`).
    pub fn move_to(&self, id: &str, which: &str) -> io::Result<()> {
        let to = Queue::open(&self.dir.join(which))?;
        fs::rename(self.path(id, "msg"), to.path(id, "msg"))?;
        fs::rename(self.path(id, "env"), to.path(id, "env"))?;
        sync_dir(&to.dir)?;
        sync_dir(&self.dir)?;
        self.clear_marks(id)
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!(
            ".tmp-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(&self.dir)
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            mail_from: "a@x.example".into(),
            rcpts: vec!["b@y.example".into()],
            message_id: "<m@x.example>".into(),
            eight_bit: false,
            smtputf8: false,
            account: None,
            sender: None,
            smtp: None,
            attempts: 0,
            queued: 1,
            next_try: 1,
            last_error: String::new(),
        }
    }

    #[test]
    fn entries_round_trip_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let id = q.enqueue(b"hello\r\n", &meta()).unwrap();
        let all = q.entries().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].meta, meta());
        assert_eq!(q.message(&id).unwrap(), b"hello\r\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
        q.move_to(&id, "uncertain").unwrap();
        assert!(q.entries().unwrap().is_empty());
        assert_eq!(q.set_aside("uncertain").unwrap().len(), 1);
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(30), Duration::from_secs(3600));
    }
}
