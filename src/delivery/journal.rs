//! Run: the durable journal that makes reruns exactly-once (`JOB.journal`).
//!
//! An append-only file of records, one a line: a JSON object, a TAB and the
//! CRC-32 of the JSON (hex). The first record is a header naming the format
//! version, the run id and the fingerprint of the run's inputs (`run::inputs`).
//!
//! The records of one message, in order:
//! - `inflight` — synced to disk before the message is handed to a session
//!   (a reservation, written in batches so one `sync_data` covers many);
//! - `commit` — appended (not synced) right before the bytes carrying its final
//!   dot or `BDAT LAST` are written to the socket;
//! - `rcpt` — one per envelope recipient (To, Cc, Bcc) that accepted the
//!   message or refused it for good, appended before the row's outcome and
//!   before the message is handed out again for the others (so any later
//!   `inflight` sync covers it): a rerun sends only to the recipients
//!   without one;
//! - `outcome` — appended when the server answers, synced before the outcome
//!   is reported (group commit, see [`Journal::sync`]);
//! - `open` — after an outcome whose row still has recipients to retry (a
//!   4xx for a Cc while the To was refused for good): the row is resumed.
//!
//! Every open also writes a `dest` record naming where this run sends
//! (`capture:DIR` or `smtp://USER@HOST:PORT`) and over how many sessions
//! (`sessions`, for the HTML report), so each outcome after it is
//! known to come from that destination, and a run that walked every row ends
//! with an `end` record. A journal is resumed only towards the destination it
//! records: after a rehearsal (the built-in capture server) a run to a real
//! server starts afresh (the rehearsal's journal is kept as
//! `JOB.journal.rehearsal`); any other change of destination is refused,
//! naming both and `--restart`.
//!
//! After a crash every row is settled, retryable, or `uncertain`: the server
//! may have accepted it (RFC 5321 section 6 leaves the sender unable to tell
//! when the connection drops after the final dot), and it is not resent
//! unless the user asks. An `inflight` row with no `commit` was never sent —
//! but an unsynced `commit` survives only a process crash, not a power loss,
//! so that conclusion is drawn only when the machine has not rebooted since
//! (the kernel's boot id, recorded in a `boot` record at every open, is
//! unchanged); otherwise such rows are `uncertain` too.
//!
//! A crash mid-append leaves a torn last line, which the next open detects
//! (no newline, bad JSON or bad CRC) and truncates away. An exclusive lock on
//! `JOB.journal.lock` keeps two runs of the same job apart.

use std::collections::HashMap;
use std::fs::{self, File, TryLockError};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::delivery::outcome::{one_line, Outcome, Status};
use crate::delivery::seal::{self, Seal};
use crate::error::{Error, Location, Result};

pub use crate::delivery::inputs::Fingerprint;

/// The journal format this code writes. Version 1 (no `rcpt` and `open`
/// records: one outcome per row) is still read.
const VERSION: u32 = 2;

/// The oldest journal format this code reads.
const OLDEST: u32 = 1;

/// A row an earlier run settled for good (sent, rejected or skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// The final status.
    pub status: Status,
    /// How many times it was handed to a server.
    pub attempts: u32,
    /// Where its outcome record is; [`Journal::outcome_at`] reads it back in
    /// full (kept out of memory so a million settled rows stay small).
    pub offset: u64,
}

/// What an earlier run of this job left behind.
///
/// The feed skips rows in `done` (reporting them via
/// [`Journal::outcome_at`] and `Report::record_previous`), reports rows in
/// `uncertain` as uncertain unless `--resend-uncertain`, and sends everything
/// else, continuing the attempt count from `attempts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The run id (kept across resumes so Message-IDs stay in one namespace).
    pub run_id: String,
    /// Last outcome per row, when it is final.
    pub done: HashMap<u64, Done>,
    /// Rows whose delivery is unknown, with the Message-ID that may have arrived.
    pub uncertain: HashMap<u64, String>,
    /// Highest attempt number seen per row.
    pub attempts: HashMap<u64, u32>,
    /// Envelope recipients settled for good (accepted or refused) per row,
    /// for rows not in `done`: a rerun sends only to the others.
    pub rcpts: HashMap<u64, Vec<RcptOutcome>>,
    /// Something the user should know about how this journal was opened
    /// (a rehearsal's journal set aside).
    pub note: Option<String>,
    /// The last run this journal records handled every row (its `end` record).
    pub finished: bool,
}

/// What one envelope recipient of a row finally answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RcptOutcome {
    /// The row.
    pub row: u64,
    /// The envelope address.
    pub rcpt: String,
    /// The deciding reply's code (for an accepted recipient, the reply to
    /// the end of data).
    pub code: u16,
    /// Its enhanced status code, if any.
    pub enhanced: Option<String>,
    /// Its text, on one line.
    pub reply: String,
}

/// Records as written; borrowed so writing copies nothing.
#[derive(serde::Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum RecordOut<'a> {
    Header {
        version: u32,
        run_id: &'a str,
        fingerprint: &'a str,
        created: u64,
    },
    Inflight {
        row: u64,
        message_id: &'a str,
        attempt: u32,
    },
    Boot {
        boot_id: &'a str,
    },
    Dest {
        dest: &'a str,
        /// The sessions this run sends over (the HTML report shows them);
        /// readers of the destination ignore it.
        #[serde(skip_serializing_if = "Option::is_none")]
        sessions: Option<usize>,
    },
    End,
    Commit {
        row: u64,
    },
    Rcpt(&'a RcptOutcome),
    Outcome {
        #[serde(flatten)]
        outcome: &'a Outcome,
        /// When it was recorded, in milliseconds since the Unix epoch: the
        /// HTML report's rate over the run. Readers of the outcome ignore it.
        at: u64,
    },
    Open {
        row: u64,
    },
}

#[derive(serde::Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum RecordIn {
    Header {
        version: u32,
        run_id: String,
        fingerprint: String,
        #[allow(dead_code)]
        created: u64,
    },
    Inflight {
        row: u64,
        message_id: String,
        attempt: u32,
    },
    Boot {
        boot_id: String,
    },
    Dest {
        dest: String,
    },
    End,
    Commit {
        row: u64,
    },
    Rcpt(RcptOutcome),
    Outcome(Outcome),
    Open {
        row: u64,
    },
}

/// The kernel's id for this boot; unchanged means no reboot (so no power
/// loss) since a record was written.
fn current_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A row handed out with no outcome yet, as replay sees it.
struct Pending {
    message_id: String,
    attempt: u32,
    /// Its final dot may have left.
    committed: bool,
    /// Written during this boot, so unsynced records after it are trustworthy.
    same_boot: bool,
}

/// Append one record line (JSON, TAB, CRC-32 hex, LF) to `out`.
fn encode(record: &RecordOut<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    // Serialising these plain structs to a Vec cannot fail.
    serde_json::to_writer(&mut *out, record).expect("journal record serialises");
    let crc = crc32(&out[start..]);
    out.extend_from_slice(format!("\t{crc:08x}\n").as_bytes());
}

/// Parse one complete line (without its LF); `None` if damaged.
fn decode(line: &[u8]) -> Option<RecordIn> {
    let tab = line.iter().rposition(|&b| b == b'\t')?;
    let (json, crc) = (&line[..tab], &line[tab + 1..]);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc != crc32(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// CRC-32 (IEEE 802.3, reflected, as zlib): catches a damaged line that still
/// happens to parse.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

struct Writer {
    file: File,
    /// Length of the journal up to the last complete, synced batch.
    len: u64,
    /// A write failed: the tail may be torn, so nothing more may be appended.
    /// Holds that first failure, which every later call reports again.
    broken: Option<Failure>,
}

/// The first write or sync failure, kept so later calls say what went wrong
/// (e.g. "No space left on device") rather than only that something did.
#[derive(Debug, Clone)]
struct Failure {
    os: Option<i32>,
    kind: io::ErrorKind,
    text: String,
}

impl Failure {
    fn of(e: &io::Error) -> Failure {
        Failure {
            os: e.raw_os_error(),
            kind: e.kind(),
            text: e.to_string(),
        }
    }

    /// The same error again.
    fn again(&self) -> io::Error {
        match self.os {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.text.clone()),
        }
    }
}

/// An open journal, locked for this run. Thread-safe: every method takes `&self`.
pub struct Journal {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// A second handle on the file, synced without holding `writer`, so that
    /// appends from other sessions do not wait for the disk.
    syncer: File,
    /// Held for the journal's lifetime; closing it releases the lock.
    _lock: Option<File>,
    /// Records the synced length after every sync (see [`crate::delivery::seal`]).
    seal: Option<Seal>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

/// An I/O error on the journal or its lock: 73 if it cannot be created or
/// opened, 74 if writing it failed part way (see [`crate::outputs::error`]).
fn io_error(path: &Path, e: io::Error) -> Error {
    crate::outputs::error("journal", path, &e)
}

/// Take the run lock `JOB.journal.lock`, writing our pid into it so a second
/// run can say who holds it. The lock file is never deleted: unlinking a lock
/// file another process has open would let two runs each lock a different inode.
fn take_lock(journal: &Path) -> Result<File> {
    let lock_path = crate::outputs::with_suffix(journal, ".lock");
    let mut lock = crate::outputs::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io_error(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(Error::TempFail(format!(
                "another mailshot run is using {}{who}; wait for it to finish",
                journal.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(io_error(&lock_path, e)),
    }
    lock.set_len(0)
        .and_then(|()| lock.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(lock, "{}", std::process::id()))
        .map_err(|e| io_error(&lock_path, e))?;
    Ok(lock)
}

fn new_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = fastrand::u64(..) ^ nanos.rotate_left(17) ^ u64::from(std::process::id());
    format!("{mixed:016x}")
}

/// What reading an existing journal found.
enum Existing {
    /// Empty, or the header itself was torn: start afresh.
    Fresh,
    /// A valid journal; its length after dropping any torn tail.
    Resume { replay: Box<Replay>, good_len: u64 },
    /// Only a rehearsal (the capture server) is recorded, and this run goes
    /// to a real server: set it aside and start afresh.
    Rehearsal { dest: String },
}

/// Where the built-in capture server's destinations start.
const CAPTURE: &str = "capture:";

fn read_existing(
    path: &Path,
    file: &File,
    fp: &Fingerprint,
    boot_id: &str,
    dest: Option<&str>,
) -> Result<Existing> {
    let total = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut offset = 0u64;
    let mut line_no = 0u64;
    let mut replay = Replay::default();
    // Rows handed to a server whose outcome has not been recorded (yet).
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut same_boot = false;
    // The destination of the records that follow (unknown in format 1).
    let mut current: Option<String> = None;
    // Destinations something was sent to, in order.
    let mut used: Vec<String> = Vec::new();
    // The last run walked every row (its `end` is the last thing it did).
    let mut ended = false;
    let mut changed = false;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error(path, e))? as u64;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = line.last() == Some(&b'\n');
        let record = if complete {
            decode(&line[..line.len() - 1])
        } else {
            None
        };
        let Some(record) = record else {
            if offset + n == total {
                // The torn tail of an append a crash interrupted.
                break;
            }
            return Err(Error::invalid(
                Location {
                    line: Some(line_no),
                    ..Location::file(path)
                },
                "the journal is damaged in the middle (not just a torn last line); \
                 move it away to inspect it, or rerun with --restart to start over \
                 (recipients already sent to would be sent again)",
            ));
        };
        let sending = matches!(
            record,
            RecordIn::Inflight { .. } | RecordIn::Outcome(_) | RecordIn::Rcpt(_)
        );
        match (line_no, record) {
            (
                1,
                RecordIn::Header {
                    version,
                    run_id,
                    fingerprint,
                    ..
                },
            ) => {
                if !(OLDEST..=VERSION).contains(&version) {
                    return Err(Error::invalid(
                        Location::file(path),
                        format!(
                            "this journal has format version {version}, this mailshot \
                             reads versions {OLDEST} to {VERSION}; use the mailshot that \
                             wrote it to resume, or rerun with --restart to start over \
                             (recipients already sent to would be sent again)"
                        ),
                    ));
                }
                // Refused once the whole journal is read, saying how that run ended.
                changed = fingerprint != fp.0;
                replay.run_id = run_id;
            }
            (1, _) | (_, RecordIn::Header { .. }) => {
                return Err(Error::invalid(
                    Location {
                        line: Some(line_no),
                        ..Location::file(path)
                    },
                    "not a mailshot journal (the header must be the first record, and only it)",
                ));
            }
            (
                _,
                RecordIn::Inflight {
                    row,
                    message_id,
                    attempt,
                },
            ) => {
                // The latest event for a row wins.
                replay.done.remove(&row);
                replay.uncertain.remove(&row);
                bump(&mut replay.attempts, row, attempt);
                pending.insert(
                    row,
                    Pending {
                        message_id,
                        attempt,
                        committed: false,
                        same_boot,
                    },
                );
            }
            (_, RecordIn::Boot { boot_id: b }) => {
                same_boot = !boot_id.is_empty() && b == boot_id;
            }
            (_, RecordIn::Commit { row }) => {
                if let Some(p) = pending.get_mut(&row) {
                    p.committed = true;
                }
            }
            (_, RecordIn::Dest { dest }) => current = Some(dest),
            (_, RecordIn::End) => ended = true,
            (_, RecordIn::Rcpt(r)) => {
                let got = replay.rcpts.entry(r.row).or_default();
                got.retain(|g| !g.rcpt.eq_ignore_ascii_case(&r.rcpt));
                got.push(r);
            }
            (_, RecordIn::Open { row }) => {
                // Settled, but with recipients still to retry.
                replay.done.remove(&row);
            }
            (_, RecordIn::Outcome(o)) => {
                pending.remove(&o.row);
                replay.done.remove(&o.row);
                replay.uncertain.remove(&o.row);
                bump(&mut replay.attempts, o.row, o.attempts);
                if o.status.is_final() {
                    replay.done.insert(
                        o.row,
                        Done {
                            status: o.status,
                            attempts: o.attempts,
                            offset,
                        },
                    );
                } else if o.status == Status::Uncertain {
                    replay
                        .uncertain
                        .insert(o.row, o.message_id.unwrap_or_default());
                }
            }
        }
        if sending {
            ended = false;
            if let Some(d) = &current {
                if !used.contains(d) {
                    used.push(d.clone());
                }
            }
        }
        offset += n;
    }
    if offset == 0 {
        return Ok(Existing::Fresh);
    }
    if changed {
        let how = if ended {
            "the earlier run this journal records (it finished)"
        } else {
            "the interrupted run this journal records"
        };
        return Err(Error::invalid(
            Location::file(path),
            format!(
                "the job file, its CSV or a template changed since {how}, so its outcomes \
                 cannot be matched to the rows safely; restore the files to resume, or rerun \
                 with --restart to start over (recipients already sent to would be sent again)"
            ),
        ));
    }
    if let Some(dest) = dest {
        let others: Vec<&str> = used
            .iter()
            .map(String::as_str)
            // Rehearsals are alike whichever folder they wrote to.
            .filter(|u| *u != dest && !(u.starts_with(CAPTURE) && dest.starts_with(CAPTURE)))
            .collect();
        if !others.is_empty() {
            let earlier = others.join(", ");
            if !dest.starts_with(CAPTURE) && used.iter().all(|u| u.starts_with(CAPTURE)) {
                return Ok(Existing::Rehearsal { dest: earlier });
            }
            let msg = if dest.starts_with(CAPTURE) {
                format!(
                    "this journal records a run to {earlier}, but this run has no server \
                     configured and would go to the built-in capture server ({dest}); restore \
                     the smtp settings to resume that run, use --dry-run --out DIR to look at \
                     the messages, or rerun with --restart to start over (the journal is moved \
                     to .old, and a later real run sends to every recipient again)"
                )
            } else {
                format!(
                    "this journal records a run to {earlier}, but this run goes to {dest}, so \
                     what the earlier server accepted says nothing here; restore the earlier \
                     smtp settings to resume that run, or rerun with --restart to start over \
                     with {dest} (every recipient is sent to again, also those {earlier} \
                     accepted)"
                )
            };
            return Err(Error::invalid(Location::file(path), msg));
        }
    }
    // Rows settled for good need no per-recipient memory.
    replay.rcpts.retain(|row, _| !replay.done.contains_key(row));
    for (row, p) in pending {
        if p.committed || !p.same_boot {
            replay.uncertain.insert(row, p.message_id);
        } else {
            // Reserved but its data never left: this attempt did not happen.
            replay.attempts.insert(row, p.attempt.saturating_sub(1));
            if p.attempt <= 1 {
                replay.attempts.remove(&row);
            }
        }
    }
    replay.finished = ended;
    Ok(Existing::Resume {
        replay: Box::new(replay),
        good_len: offset,
    })
}

fn bump(attempts: &mut HashMap<u64, u32>, row: u64, attempt: u32) {
    let slot = attempts.entry(row).or_insert(0);
    *slot = (*slot).max(attempt);
}

/// Open (or create) the journal at `path` for a job with fingerprint `fp`.
///
/// `restart` moves an existing journal to `path.old` and starts afresh.
/// Errors: another run holds the lock → [`Error::TempFail`]; the journal
/// belongs to different inputs or is damaged → [`Error::Invalid`].
pub fn open(path: &Path, fp: &Fingerprint, restart: bool) -> Result<(Journal, Replay)> {
    open_at_boot(path, fp, restart, &current_boot_id(), None)
}

/// [`open`] for a run that sends to `dest` (`capture:DIR` for the built-in
/// capture server, else the server's URL with its user) over `sessions`
/// sessions: recorded with what follows, and checked against what the
/// journal records (see the module docs).
pub fn open_to(
    path: &Path,
    fp: &Fingerprint,
    restart: bool,
    dest: &str,
    sessions: usize,
) -> Result<(Journal, Replay)> {
    let run_to = Some((dest, sessions));
    open_at_boot(path, fp, restart, &current_boot_id(), run_to)
}

/// [`open`] as if the machine's boot id were `boot_id` (tests simulate a reboot).
fn open_at_boot(
    path: &Path,
    fp: &Fingerprint,
    restart: bool,
    boot_id: &str,
    run_to: Option<(&str, usize)>,
) -> Result<(Journal, Replay)> {
    let dest = run_to.map(|(d, _)| d);
    let lock = take_lock(path)?;
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        // Said before anything else: a link there is refused, restart or not.
        let e = io::Error::from_raw_os_error(libc::ELOOP);
        return Err(crate::outputs::cannot_create("journal", path, &e));
    }
    if restart {
        match fs::rename(path, crate::outputs::with_suffix(path, ".old")) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
    // A journal cut short, emptied or deleted since it was last synced is
    // refused before anything is read or created.
    if !restart {
        let on_disk = fs::symlink_metadata(path).ok().map(|m| m.len());
        seal::check_length(path, on_disk)?;
    }
    // Mode 0600 (it holds addresses); a symbolic link at the path is refused.
    let file = crate::outputs::options()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let mut note = None;
    let (file, existing) = match read_existing(path, &file, fp, boot_id, dest)? {
        Existing::Rehearsal { dest: earlier } => {
            // Kept for the record; this destination starts afresh.
            let aside = crate::outputs::with_suffix(path, ".rehearsal");
            fs::rename(path, &aside).map_err(|e| io_error(path, e))?;
            note = Some(format!(
                "the earlier run went to the built-in capture server ({earlier}), a \
                 rehearsal: nothing was delivered, so this run to {} sends every message \
                 (the rehearsal's journal is kept as {})",
                dest.unwrap_or_default(),
                aside.display()
            ));
            drop(file);
            let fresh = crate::outputs::options()
                .read(true)
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| io_error(path, e))?;
            (fresh, Existing::Fresh)
        }
        other => (file, other),
    };
    let (mut replay, len) = match existing {
        Existing::Rehearsal { .. } => unreachable!("handled above"),
        Existing::Resume { replay, good_len } => {
            seal::check_run_id(path, &replay.run_id)?;
            file.set_len(good_len).map_err(|e| io_error(path, e))?;
            (*replay, good_len)
        }
        Existing::Fresh => {
            file.set_len(0).map_err(|e| io_error(path, e))?;
            let replay = Replay {
                run_id: new_run_id(),
                ..Replay::default()
            };
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut buf = Vec::new();
            encode(
                &RecordOut::Header {
                    version: VERSION,
                    run_id: &replay.run_id,
                    fingerprint: &fp.0,
                    created,
                },
                &mut buf,
            );
            (&file)
                .write_all(&buf)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(path, e))?;
            (replay, buf.len() as u64)
        }
    };
    let syncer = file.try_clone().map_err(|e| io_error(path, e))?;
    let mut journal = Journal {
        path: path.to_path_buf(),
        writer: Mutex::new(Writer {
            file,
            len,
            broken: None,
        }),
        syncer,
        _lock: Some(lock),
        seal: None,
    };
    replay.note = note;
    let mut buf = Vec::new();
    encode(&RecordOut::Boot { boot_id }, &mut buf);
    if let Some((dest, sessions)) = run_to {
        let sessions = Some(sessions);
        encode(&RecordOut::Dest { dest, sessions }, &mut buf);
    }
    journal.append(&buf, true).map_err(|e| io_error(path, e))?;
    let synced = journal.writer.lock().unwrap_or_else(|e| e.into_inner()).len;
    journal.seal = Some(
        Seal::create(path, &replay.run_id, synced)
            .map_err(|e| crate::outputs::error("journal seal", &seal::path_for(path), &e))?,
    );
    Ok((journal, replay))
}

impl Journal {
    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Durably note that these messages are about to be handed to a server:
    /// `(row, message_id, attempt)`. Call before writing them to the socket.
    pub fn record_inflight(&self, entries: &[(u64, &str, u32)]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(entries.len() * 96);
        for &(row, message_id, attempt) in entries {
            let message_id = one_line(message_id);
            encode(
                &RecordOut::Inflight {
                    row,
                    message_id: &message_id,
                    attempt,
                },
                &mut buf,
            );
        }
        self.append(&buf, true)
    }

    /// Note (without syncing) that these rows' final dot or `BDAT LAST` is
    /// about to be written. Cheap enough to call right before every write.
    pub fn record_commits(&self, rows: &[u64]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(rows.len() * 32);
        for &row in rows {
            encode(&RecordOut::Commit { row }, &mut buf);
        }
        self.append(&buf, false)
    }

    /// Make everything appended so far durable (`sync_data`).
    pub fn sync(&self) -> io::Result<()> {
        let len = {
            let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = &w.broken {
                return Err(f.again());
            }
            w.len
        };
        self.syncer
            .sync_data()
            .inspect_err(|e| self.mark_broken(e))?;
        // Everything up to `len` was written before the sync began.
        if let Some(seal) = &self.seal {
            seal.record(len).inspect_err(|e| self.mark_broken(e))?;
        }
        Ok(())
    }

    fn mark_broken(&self, e: &io::Error) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.broken.get_or_insert_with(|| Failure::of(e));
    }

    /// Append outcomes (replies flattened to one line); durable after the
    /// next [`Journal::sync`] or synced append, which the caller must wait for
    /// before reporting them.
    pub fn record_outcomes(&self, outcomes: &[Outcome]) -> io::Result<()> {
        self.record_settled(&[], outcomes, &[])
    }

    /// Append, in this order, the recipients settled for good, the rows'
    /// outcomes and the rows among them that still have recipients to retry
    /// (`open`); as durable as [`Journal::record_outcomes`].
    pub fn record_settled(
        &self,
        rcpts: &[RcptOutcome],
        outcomes: &[Outcome],
        open: &[u64],
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(outcomes.len() * 192 + rcpts.len() * 128);
        for r in rcpts {
            if r.reply.contains(|c: char| c.is_control()) || r.rcpt.contains(char::is_control) {
                let flat = RcptOutcome {
                    rcpt: one_line(&r.rcpt),
                    reply: one_line(&r.reply),
                    ..r.clone()
                };
                encode(&RecordOut::Rcpt(&flat), &mut buf);
            } else {
                encode(&RecordOut::Rcpt(r), &mut buf);
            }
        }
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for o in outcomes {
            if o.reply.contains(|c: char| c.is_control()) {
                let flat = Outcome {
                    reply: one_line(&o.reply),
                    ..o.clone()
                };
                encode(&RecordOut::Outcome { outcome: &flat, at }, &mut buf);
            } else {
                encode(&RecordOut::Outcome { outcome: o, at }, &mut buf);
            }
        }
        for &row in open {
            encode(&RecordOut::Open { row }, &mut buf);
        }
        self.append(&buf, false)
    }

    /// Append a batch, and `sync_data` if `sync` (one group commit). Any
    /// failure is returned and leaves the journal refusing further writes,
    /// since its tail may now be torn and the run must stop (a full disk must
    /// not let sending go on).
    fn append(&self, buf: &[u8], sync: bool) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &w.broken {
            return Err(f.again());
        }
        match (&w.file).write_all(buf) {
            Ok(()) => w.len += buf.len() as u64,
            Err(e) => {
                w.broken = Some(Failure::of(&e));
                // Best effort: drop the partial batch so the file stays clean.
                let _ = w.file.set_len(w.len);
                return Err(e);
            }
        }
        drop(w);
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    /// Note that this run walked every row (its outcomes are all recorded):
    /// a later refusal can then say the run finished rather than was interrupted.
    pub fn record_end(&self) -> io::Result<()> {
        let mut buf = Vec::new();
        encode(&RecordOut::End, &mut buf);
        self.append(&buf, true)
    }

    /// Read back the outcome record at `offset` (a [`Done::offset`]).
    pub fn outcome_at(&self, offset: u64) -> io::Result<Outcome> {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // The file is in append mode, so this seek never moves where writes go.
        let mut reader = BufReader::new(&w.file);
        reader.seek(SeekFrom::Start(offset))?;
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        match decode(&line) {
            Some(RecordIn::Outcome(o)) => Ok(o),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no outcome record at offset {offset} of the journal"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    /// Session threads share it in an `Arc`.
    const _: fn() = || {
        fn shared<T: Send + Sync>() {}
        shared::<Journal>();
    };

    fn fp(s: &str) -> Fingerprint {
        Fingerprint(s.into())
    }

    fn outcome(row: u64, status: Status, attempts: u32) -> Outcome {
        Outcome {
            row,
            email: format!("u{row}@example.org"),
            status,
            code: Some(250),
            enhanced: Some("2.0.0".into()),
            reply: "2.0.0 Ok: queued".into(),
            message_id: Some(format!("<{row}@run>")),
            attempts,
            relay: None,
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn replay_sorts_rows_into_done_uncertain_and_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        let run_id;
        {
            let (j, replay) = open(&path, &fp("a"), false).unwrap();
            assert!(replay.done.is_empty() && replay.uncertain.is_empty());
            run_id = replay.run_id.clone();
            assert_eq!(run_id.len(), 16);
            j.record_inflight(&[(1, "<1@run>", 1), (2, "<2@run>", 1), (3, "<3@run>", 1)])
                .unwrap();
            j.record_inflight(&[(4, "<4@run>", 1), (5, "<5@run>", 2), (6, "<6@run>", 1)])
                .unwrap();
            // Row 4's final dot is about to leave; row 6's never does.
            j.record_commits(&[4]).unwrap();
            let mut rejected = outcome(2, Status::Rejected, 1);
            rejected.reply = "550 no\r\nsuch user".into();
            j.record_outcomes(&[
                outcome(1, Status::Sent, 1),
                rejected,
                outcome(3, Status::Failed, 1),
                outcome(5, Status::Uncertain, 2),
            ])
            .unwrap();
            // Row 4 never got an outcome: the crash came after its data went out.
        }
        let (j, replay) = open(&path, &fp("a"), false).unwrap();
        assert_eq!(replay.run_id, run_id, "a resumed run keeps its run id");
        let mut done: Vec<_> = replay.done.iter().map(|(r, d)| (*r, d.status)).collect();
        done.sort();
        assert_eq!(done, [(1, Status::Sent), (2, Status::Rejected)]);
        assert_eq!(
            replay.uncertain.get(&4).map(String::as_str),
            Some("<4@run>")
        );
        assert_eq!(
            replay.uncertain.get(&5).map(String::as_str),
            Some("<5@run>")
        );
        assert!(!replay.done.contains_key(&3) && !replay.uncertain.contains_key(&3));
        assert_eq!(replay.attempts[&5], 2);
        // Reserved, never sent, same boot: simply sent again, the attempt not counted.
        assert!(!replay.uncertain.contains_key(&6) && !replay.done.contains_key(&6));
        assert!(!replay.attempts.contains_key(&6));
        let back = j.outcome_at(replay.done[&2].offset).unwrap();
        assert_eq!(back.reply, "550 no such user");
        assert_eq!(back.email, "u2@example.org");
    }

    #[test]
    fn after_a_reboot_every_reserved_row_without_outcome_is_uncertain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        {
            let (j, _) = open_at_boot(&path, &fp("a"), false, "boot-1", None).unwrap();
            j.record_inflight(&[(1, "<1@run>", 1), (2, "<2@run>", 1)])
                .unwrap();
            j.record_commits(&[1]).unwrap();
        }
        // Same boot: the missing commit of row 2 proves it never left.
        {
            let (_, replay) = open_at_boot(&path, &fp("a"), false, "boot-1", None).unwrap();
            assert!(replay.uncertain.contains_key(&1));
            assert!(!replay.uncertain.contains_key(&2));
        }
        // Rewrite history as if both were reserved before a power loss.
        fs::remove_file(&path).unwrap();
        fs::remove_file(seal::path_for(&path)).unwrap();
        {
            let (j, _) = open_at_boot(&path, &fp("a"), false, "boot-1", None).unwrap();
            j.record_inflight(&[(1, "<1@run>", 1), (2, "<2@run>", 1)])
                .unwrap();
        }
        let (_, replay) = open_at_boot(&path, &fp("a"), false, "boot-2", None).unwrap();
        assert!(replay.uncertain.contains_key(&1) && replay.uncertain.contains_key(&2));
    }

    #[test]
    fn a_retried_row_that_later_succeeds_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        {
            let (j, _) = open(&path, &fp("a"), false).unwrap();
            j.record_inflight(&[(1, "<1@run>", 1)]).unwrap();
            j.record_outcomes(&[outcome(1, Status::Failed, 1)]).unwrap();
            j.record_inflight(&[(1, "<1@run>", 2)]).unwrap();
            j.record_outcomes(&[outcome(1, Status::Sent, 2)]).unwrap();
        }
        let (_, replay) = open(&path, &fp("a"), false).unwrap();
        assert_eq!(replay.done[&1].status, Status::Sent);
        assert_eq!(replay.done[&1].attempts, 2);
        assert!(replay.uncertain.is_empty());
    }

    fn rcpt(row: u64, rcpt: &str, code: u16) -> RcptOutcome {
        RcptOutcome {
            row,
            rcpt: rcpt.into(),
            code,
            enhanced: None,
            reply: "text".into(),
        }
    }

    #[test]
    fn recipients_settled_for_good_are_replayed_until_the_row_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        {
            let (j, _) = open(&path, &fp("a"), false).unwrap();
            // Row 1: the To greylisted, the Bcc accepted. Row 2: the To
            // refused for good, the Cc greylisted (rejected, but open).
            // Row 3: settled for good.
            let mut failed = outcome(1, Status::Failed, 1);
            failed.code = Some(451);
            j.record_settled(
                &[
                    rcpt(1, "bcc@x", 250),
                    rcpt(2, "to@y", 550),
                    rcpt(3, "to@z", 250),
                ],
                &[
                    failed,
                    outcome(2, Status::Rejected, 1),
                    outcome(3, Status::Sent, 1),
                ],
                &[2],
            )
            .unwrap();
        }
        let (_, replay) = open(&path, &fp("a"), false).unwrap();
        assert!(!replay.done.contains_key(&1) && !replay.done.contains_key(&2));
        assert_eq!(replay.done[&3].status, Status::Sent);
        assert_eq!(replay.rcpts[&1], [rcpt(1, "bcc@x", 250)]);
        assert_eq!(replay.rcpts[&2], [rcpt(2, "to@y", 550)]);
        assert!(
            !replay.rcpts.contains_key(&3),
            "a done row needs no recipients"
        );
    }

    #[test]
    fn a_version_1_journal_is_still_read_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        let mut v1 = Vec::new();
        encode(
            &RecordOut::Header {
                version: 1,
                run_id: "0123456789abcdef",
                fingerprint: "a",
                created: 0,
            },
            &mut v1,
        );
        encode(
            &RecordOut::Outcome {
                outcome: &outcome(1, Status::Sent, 1),
                at: 0,
            },
            &mut v1,
        );
        fs::write(&path, &v1).unwrap();
        let (j, replay) = open(&path, &fp("a"), false).unwrap();
        assert_eq!(replay.done[&1].status, Status::Sent);
        drop(j);
        let mut v9 = Vec::new();
        encode(
            &RecordOut::Header {
                version: 9,
                run_id: "0123456789abcdef",
                fingerprint: "a",
                created: 0,
            },
            &mut v9,
        );
        // A journal written by a newer mailshot, with no seal of this one's.
        fs::remove_file(seal::path_for(&path)).unwrap();
        fs::write(&path, &v9).unwrap();
        let err = open(&path, &fp("a"), false).unwrap_err().to_string();
        assert!(
            err.contains("version 9") && err.contains("--restart"),
            "{err}"
        );
    }

    #[test]
    fn a_rehearsal_is_set_aside_and_other_destination_changes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        let (capture, real, other) = ("capture:/tmp/outbox", "smtp://me@a:587", "smtp://me@b:587");
        {
            let (j, _) = open_to(&path, &fp("a"), false, capture, 1).unwrap();
            j.record_outcomes(&[outcome(1, Status::Sent, 1)]).unwrap();
            j.record_end().unwrap();
        }
        // Another rehearsal resumes it.
        let (j, replay) = open_to(&path, &fp("a"), false, "capture:elsewhere", 1).unwrap();
        assert_eq!(replay.done.len(), 1);
        assert!(replay.note.is_none());
        drop(j);
        // The first real run starts afresh and says why.
        {
            let (j, replay) = open_to(&path, &fp("a"), false, real, 1).unwrap();
            assert!(
                replay.done.is_empty(),
                "nothing a rehearsal did counts as sent"
            );
            let note = replay.note.expect("a note");
            assert!(note.contains(capture) && note.contains(real), "{note}");
            assert!(dir.path().join("job.journal.rehearsal").exists());
            j.record_outcomes(&[outcome(1, Status::Sent, 1)]).unwrap();
        }
        let (j, replay) = open_to(&path, &fp("a"), false, real, 1).unwrap();
        assert_eq!(replay.done.len(), 1, "the same server resumes");
        drop(j);
        for (dest, names) in [(other, other), (capture, "capture server")] {
            let err = open_to(&path, &fp("a"), false, dest, 1)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(real) && err.contains(names) && err.contains("--restart"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_appending_continues_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        {
            let (j, _) = open(&path, &fp("a"), false).unwrap();
            j.record_outcomes(&[outcome(1, Status::Sent, 1)]).unwrap();
        }
        let good_len = fs::metadata(&path).unwrap().len();
        for torn in [
            &b"{\"t\":\"outcome\",\"row\":2,\"ema"[..],
            b"{\"t\":1}\tdeadbeef\n",
        ] {
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(torn).unwrap();
            drop(f);
            let (j, replay) = open(&path, &fp("a"), false).unwrap();
            // The torn tail is gone; the open appended one whole `boot` record.
            let text = fs::read(&path).unwrap();
            assert!(text.len() as u64 > good_len && text.ends_with(b"\n"));
            assert!(!text.windows(torn.len()).any(|w| w == torn));
            assert_eq!(replay.done.len(), 1);
            drop(j);
        }
        {
            let (j, _) = open(&path, &fp("a"), false).unwrap();
            j.record_outcomes(&[outcome(2, Status::Sent, 1)]).unwrap();
        }
        let (_, replay) = open(&path, &fp("a"), false).unwrap();
        assert_eq!(replay.done.len(), 2);
    }

    #[test]
    fn damage_before_the_last_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        {
            let (j, _) = open(&path, &fp("a"), false).unwrap();
            j.record_outcomes(&[outcome(1, Status::Sent, 1), outcome(2, Status::Sent, 1)])
                .unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replacen("\"row\":1", "\"row\":7", 1)).unwrap();
        let err = open(&path, &fp("a"), false).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        // Line 1 is the header, line 2 the first open's boot record.
        assert!(err.to_string().contains(":3"), "names the line: {err}");
    }

    #[test]
    fn a_changed_job_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        drop(open(&path, &fp("a"), false).unwrap());
        let err = open(&path, &fp("b"), false).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
        let msg = err.to_string();
        assert!(msg.contains("changed"), "{msg}");
        assert!(msg.contains("--restart"), "{msg}");
        assert!(msg.contains("job.journal"), "{msg}");
    }

    #[test]
    fn restart_moves_the_old_journal_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        let old_id = {
            let (j, replay) = open(&path, &fp("a"), false).unwrap();
            j.record_outcomes(&[outcome(1, Status::Sent, 1)]).unwrap();
            replay.run_id
        };
        let (_, replay) = open(&path, &fp("b"), true).unwrap();
        assert!(replay.done.is_empty());
        assert_ne!(replay.run_id, old_id);
        let old = fs::read_to_string(dir.path().join("job.journal.old")).unwrap();
        assert!(old.contains("\"status\":\"sent\""));
    }

    #[test]
    fn a_second_open_while_locked_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        let (first, _) = open(&path, &fp("a"), false).unwrap();
        let err = open(&path, &fp("a"), false).unwrap_err();
        assert!(matches!(err, Error::TempFail(_)));
        let msg = err.to_string();
        assert!(msg.contains("another mailshot run"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        assert!(
            open(&path, &fp("a"), false).is_ok(),
            "the lock is released on drop"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_errors_surface_and_stop_further_writes() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let file = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let syncer = file.try_clone().unwrap();
        let j = Journal {
            path: PathBuf::from("/dev/full"),
            writer: Mutex::new(Writer {
                file,
                len: 0,
                broken: None,
            }),
            syncer,
            _lock: None,
            seal: None,
        };
        let err = j
            .record_outcomes(&[outcome(1, Status::Sent, 1)])
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
        assert!(j.record_inflight(&[(2, "<2@run>", 1)]).is_err());
    }
}
