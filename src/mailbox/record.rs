//! What `mailshot bounces` makes of the messages it fetched: each is
//! classified, matched to a job row (by the VERP return path, the ENVID, or
//! the Message-ID the report recorded for the row), written to
//! `JOB.bounces.csv`, and the addresses that must never be mailed again are
//! appended to the first suppression file. Then the messages are recorded as
//! read. Each file is synced before the next step, so what was learnt is on
//! disk before it changes anything.
//!
//! The three writes form one batch in the state file (see [`super::seen`]):
//! if a run stops after the rows but before the read marks, the next run
//! takes `JOB.bounces.csv` back to its length before the batch and reads
//! those messages again, so none is counted twice (a suppression already
//! added is not added again).
//!
//! Soft bounces are counted per address over every `JOB.bounces.csv` row; an
//! address whose count reaches `soft_bounce_limit` is suppressed (as
//! Mailman's bounce score reaching its threshold).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::classify::{classify, mailto_address, AddressPattern, Context, Kind};
use super::reader::Received;
use super::seen::{MessageKey, Seen};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::suppression::Suppression;

/// The columns of `JOB.bounces.csv`.
pub const HEADER: [&str; 7] = [
    "email",
    "row",
    "kind",
    "status",
    "diagnostic",
    "message_id",
    "received",
];

/// Every kind, in summary order.
pub const KINDS: [Kind; 6] = [
    Kind::Hard,
    Kind::Soft,
    Kind::Complaint,
    Kind::Unsubscribe,
    Kind::AutoReply,
    Kind::Unknown,
];

/// One row of `JOB.bounces.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceRow {
    /// The address it is about, if known.
    pub email: Option<String>,
    /// The job row, if matched.
    pub row: Option<u64>,
    /// The kind.
    pub kind: Kind,
    /// RFC 3463 status.
    pub status: Option<String>,
    /// The server's words.
    pub diagnostic: Option<String>,
    /// The Message-ID of the message that bounced.
    pub message_id: Option<String>,
}

/// What one `bounces` run learnt.
#[derive(Debug, Default)]
pub struct Learnt {
    /// The rows, in the order read.
    pub rows: Vec<BounceRow>,
    /// Messages skipped because one with the same Message-ID was read before.
    pub duplicates: usize,
    /// Addresses added to the suppression file, with the reason.
    pub suppressed: Vec<(String, String)>,
}

impl Learnt {
    /// How many rows of each kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m: BTreeMap<&'static str, usize> = BTreeMap::new();
        for r in &self.rows {
            *m.entry(r.kind.as_str()).or_default() += 1;
        }
        m
    }
}

/// The job's side of the matching: what the report says each row was sent.
pub struct Books {
    ctx: Context,
    by_message_id: HashMap<String, (u64, String)>,
    by_row: HashMap<u64, String>,
    by_email: HashMap<String, u64>,
    bounces_csv: PathBuf,
    suppress_file: Option<PathBuf>,
    suppression: Suppression,
    soft_counts: HashMap<String, u32>,
    soft_limit: u32,
    /// The length of `JOB.bounces.csv` that counts; rows beyond it belong
    /// to a batch that was cut short.
    csv_len: Option<u64>,
}

fn norm_mid(mid: &str) -> String {
    mid.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

fn norm_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Books {
    /// Reads the job's report (if there is one), `JOB.bounces.csv` (for the
    /// soft-bounce counts) and the suppression files. A batch that `seen`
    /// shows was cut short is taken back first (unless `dry_run`, which
    /// only ignores its rows).
    pub fn open(
        job: &Job,
        report: &Path,
        soft_limit: u32,
        seen: &mut Seen,
        dry_run: bool,
    ) -> Result<Books> {
        let return_path = job
            .return_path
            .as_deref()
            .and_then(|t| AddressPattern::new(t).ok());
        let unsubscribe = job.list_unsubscribe.as_deref().and_then(|l| {
            l.split(',')
                .find_map(mailto_address)
                .and_then(|a| AddressPattern::new(&a).ok())
        });
        let mut books = Books {
            ctx: Context {
                return_path,
                unsubscribe,
            },
            by_message_id: HashMap::new(),
            by_row: HashMap::new(),
            by_email: HashMap::new(),
            bounces_csv: crate::outputs::beside(&job.path, "bounces.csv"),
            suppress_file: job.suppress.first().cloned(),
            suppression: Suppression::load(&job.suppress)?,
            soft_counts: HashMap::new(),
            soft_limit,
            csv_len: seen.unfinished(),
        };
        if !dry_run {
            books.take_back(seen)?;
        }
        books.read_report(report)?;
        books.read_soft_counts()?;
        Ok(books)
    }

    fn read_report(&mut self, report: &Path) -> Result<()> {
        let mut r = match csv::ReaderBuilder::new().flexible(true).from_path(report) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound) => {
                return Ok(())
            }
            Err(e) => return Err(Error::no_input(report, &io::Error::other(e))),
        };
        let headers = r
            .headers()
            .map_err(|e| Error::no_input(report, &io::Error::other(e)))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(row_c), Some(email_c)) = (col("row"), col("email")) else {
            return Ok(());
        };
        let mid_c = col("message_id");
        for rec in r.records().flatten() {
            let Some(row) = rec.get(row_c).and_then(|v| v.trim().parse::<u64>().ok()) else {
                continue;
            };
            let email = rec.get(email_c).unwrap_or("").trim().to_string();
            if let Some(mid) = mid_c
                .and_then(|c| rec.get(c))
                .filter(|m| !m.trim().is_empty())
            {
                self.by_message_id
                    .insert(norm_mid(mid), (row, email.clone()));
            }
            self.by_email.entry(norm_email(&email)).or_insert(row);
            self.by_row.entry(row).or_insert(email);
        }
        Ok(())
    }

    /// Truncates `JOB.bounces.csv` to its length before an unfinished
    /// batch, and closes that batch.
    fn take_back(&mut self, seen: &mut Seen) -> Result<()> {
        let Some(len) = seen.unfinished() else {
            return Ok(());
        };
        let path = &self.bounces_csv;
        let fail = |e: io::Error| crate::outputs::error("bounces file", path, &e);
        match std::fs::metadata(path) {
            Ok(m) if m.len() > len => {
                let f = crate::outputs::options()
                    .write(true)
                    .open(path)
                    .map_err(fail)?;
                f.set_len(len).map_err(fail)?;
                f.sync_all().map_err(fail)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        seen.abort()
            .map_err(|e| crate::outputs::error("bounce state file", seen.path(), &e))?;
        self.csv_len = None;
        Ok(())
    }

    fn read_soft_counts(&mut self) -> Result<()> {
        let path = &self.bounces_csv;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::no_input(path, &e)),
        };
        let limit = self.csv_len.unwrap_or(u64::MAX);
        let mut r = csv::Reader::from_reader(io::Read::take(file, limit));
        for rec in r.records().flatten() {
            if rec.get(2) == Some("soft") {
                if let Some(email) = rec.get(0).filter(|e| !e.is_empty()) {
                    *self.soft_counts.entry(norm_email(email)).or_default() += 1;
                }
            }
        }
        Ok(())
    }

    /// The row one classified message becomes.
    fn row_of(&self, raw: &[u8]) -> (BounceRow, Option<String>) {
        let c = classify(raw, &self.ctx);
        let by_mid = |m: &Option<String>| {
            m.as_deref()
                .and_then(|m| self.by_message_id.get(&norm_mid(m)))
        };
        let matched = by_mid(&c.envelope_id).or_else(|| by_mid(&c.message_id));
        let row = c.row.or(matched.map(|(r, _)| *r)).or_else(|| {
            c.email
                .as_deref()
                .and_then(|e| self.by_email.get(&norm_email(e)).copied())
        });
        let email = c
            .email
            .clone()
            .or_else(|| matched.map(|(_, e)| e.clone()))
            .or_else(|| row.and_then(|r| self.by_row.get(&r).cloned()))
            .filter(|e| !e.is_empty());
        (
            BounceRow {
                email,
                row,
                kind: c.kind,
                status: c.status,
                diagnostic: c.diagnostic,
                message_id: c.message_id,
            },
            c.received_message_id,
        )
    }

    /// Classifies `received`; unless `dry_run`, writes the rows, the
    /// suppression entries and the read marks (in that order, each synced)
    /// and returns the keys recorded.
    pub fn learn(
        &mut self,
        received: Vec<Received>,
        seen: &mut Seen,
        dry_run: bool,
    ) -> Result<(Learnt, Vec<MessageKey>)> {
        let mut learnt = Learnt::default();
        let mut keys = Vec::new();
        let mut mids_now = HashSet::new();
        for msg in received {
            let (row, mid) = self.row_of(&msg.data);
            let dup = mid
                .as_deref()
                .is_some_and(|m| seen.has_message_id(m) || !mids_now.insert(m.to_string()));
            keys.push((msg.key, mid));
            if dup {
                learnt.duplicates += 1;
                continue;
            }
            learnt.rows.push(row);
        }
        let mut newly = HashSet::new();
        for r in &learnt.rows {
            let Some(email) = r.email.as_deref() else {
                continue;
            };
            let key = norm_email(email);
            let reason = match r.kind {
                Kind::Hard | Kind::Complaint | Kind::Unsubscribe => r.kind.as_str().to_string(),
                Kind::Soft => {
                    let n = self.soft_counts.entry(key.clone()).or_default();
                    *n += 1;
                    if *n < self.soft_limit {
                        continue;
                    }
                    format!("soft bounces: {n}")
                }
                _ => continue,
            };
            if self.suppression.contains(&key) || !newly.insert(key.clone()) {
                continue;
            }
            learnt.suppressed.push((email.trim().to_string(), reason));
        }
        if dry_run {
            return Ok((learnt, Vec::new()));
        }
        let now = now_rfc3339();
        if !learnt.rows.is_empty() {
            let len = match std::fs::metadata(&self.bounces_csv) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                Err(e) => return Err(crate::outputs::error("bounces file", &self.bounces_csv, &e)),
            };
            seen.begin(len)
                .map_err(|e| crate::outputs::error("bounce state file", seen.path(), &e))?;
        }
        self.append_rows(&learnt.rows, &now)?;
        if !learnt.suppressed.is_empty() {
            let file = self.suppress_file.as_ref().ok_or_else(|| {
                Error::Usage(
                    "the job has no `suppress` file to add the bounced addresses to".into(),
                )
            })?;
            crate::suppression::append(file, &learnt.suppressed, &now)
                .map_err(|e| crate::outputs::error("suppression file", file, &e))?;
        }
        seen.record(&keys)
            .map_err(|e| crate::outputs::error("bounce state file", seen.path(), &e))?;
        Ok((learnt, keys.into_iter().map(|(k, _)| k).collect()))
    }

    fn append_rows(&self, rows: &[BounceRow], now: &str) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let path = &self.bounces_csv;
        let fail = |e: io::Error| crate::outputs::error("bounces file", path, &e);
        let file = crate::outputs::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(fail)?;
        // Empty also after a cut-short first batch was taken back.
        let exists = file.metadata().map_err(fail)?.len() > 0;
        let mut w = csv::Writer::from_writer(file);
        let io = |e: csv::Error| io::Error::other(e);
        if !exists {
            w.write_record(HEADER).map_err(io).map_err(fail)?;
        }
        for r in rows {
            let row = r.row.map(|n| n.to_string()).unwrap_or_default();
            w.write_record([
                r.email.as_deref().unwrap_or(""),
                &row,
                r.kind.as_str(),
                r.status.as_deref().unwrap_or(""),
                r.diagnostic.as_deref().unwrap_or(""),
                r.message_id.as_deref().unwrap_or(""),
                now,
            ])
            .map_err(io)
            .map_err(fail)?;
        }
        let mut file = w.into_inner().map_err(|e| fail(e.into_error()))?;
        file.flush().map_err(fail)?;
        file.sync_all().map_err(fail)
    }
}

fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    mail_parser::DateTime::from_timestamp(now).to_rfc3339()
}

#[cfg(test)]
mod provider_tests;
