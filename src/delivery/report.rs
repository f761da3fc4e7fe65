//! The per-recipient report (`JOB.report.csv`) and the closing summary.
//!
//! Outcomes arrive out of order from N sessions, but the report lists one row
//! per recipient in input order. So that a million-row run does not keep a
//! million reply strings in memory, each outcome is formatted as its final CSV
//! line at once and appended to a scratch file; memory holds only a per-row
//! index (offset, length, status: 13 bytes a row). At the end the lines are
//! copied out in row order (RFC 4180 CSV) and the scratch file is removed.
//!
//! Cells that a spreadsheet would read as a formula get a leading `'`
//! (OWASP "CSV Injection" guidance): the reply text and the email come from
//! servers and CSV files the user does not control.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::outcome::{one_line, Outcome, Status};
use crate::error::ExitCode;
use crate::smtp::known_replies::explain_parts;

/// The report's header line, as the README's "Big runs" section gives it.
pub const HEADER: [&str; 8] = [
    "row",
    "email",
    "status",
    "code",
    "enhanced",
    "reply",
    "message_id",
    "attempts",
];

/// Neutralise a cell a spreadsheet would evaluate as a formula by prefixing `'`.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// Marks a row with no outcome in [`Index::status`].
const NO_OUTCOME: u8 = u8::MAX;

/// Where each row's formatted line is in the scratch file.
#[derive(Default)]
struct Index {
    offset: Vec<u64>,
    len: Vec<u32>,
    status: Vec<u8>,
}

struct Inner {
    /// Formats each outcome straight into the scratch file.
    scratch: csv::Writer<Counting>,
    index: Index,
    /// Outcomes recorded by this run (not replayed), for the rate.
    this_run: u64,
    /// Rows replayed from an earlier run's journal.
    previous: u64,
}

/// Collects outcomes in any order and writes the report in row order.
///
/// Thread-safe: every method takes `&self`, so sessions can share it in an `Arc`.
/// If a row is recorded twice, the later outcome wins.
pub struct Report {
    path: PathBuf,
    scratch_file: ScratchFile,
    started: Instant,
    inner: Mutex<Inner>,
}

impl Report {
    /// Start a report that [`Report::finish`] will write to `path`. A scratch
    /// file `path.scratch` holds the outcomes until then. Both are created
    /// mode 0600 (they hold addresses), never through a symbolic link.
    pub fn create(path: &Path) -> io::Result<Report> {
        let scratch_path = crate::outputs::with_suffix(path, ".scratch");
        let file = crate::outputs::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&scratch_path)?;
        Ok(Report {
            path: path.to_path_buf(),
            scratch_file: ScratchFile(scratch_path),
            started: Instant::now(),
            inner: Mutex::new(Inner {
                scratch: csv::Writer::from_writer(Counting {
                    file: BufWriter::new(file),
                    written: 0,
                }),
                index: Index::default(),
                this_run: 0,
                previous: 0,
            }),
        })
    }

    /// The final report's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record an outcome of this run.
    pub fn record(&self, outcome: &Outcome) -> io::Result<()> {
        self.add(outcome, Some(false))
    }

    /// Record what a row will say if nothing better arrives (a queued message
    /// the run stops before sending); counts towards neither run.
    pub fn record_placeholder(&self, outcome: &Outcome) -> io::Result<()> {
        self.add(outcome, None)
    }

    /// Record an outcome an earlier run settled (replayed from the journal);
    /// it is reported but does not count towards this run's rate.
    pub fn record_previous(&self, outcome: &Outcome) -> io::Result<()> {
        self.add(outcome, Some(true))
    }

    /// `previous`: Some(true) an earlier run's, Some(false) this run's, None not counted.
    fn add(&self, outcome: &Outcome, previous: Option<bool>) -> io::Result<()> {
        let row = usize::try_from(outcome.row)
            .ok()
            .and_then(|r| r.checked_sub(1))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "report rows are 1-based")
            })?;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        let start = inner.scratch.get_ref().written;
        format_line(outcome, &mut inner.scratch)?;
        let len = u32::try_from(inner.scratch.get_ref().written - start)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "report line too long"))?;
        let index = &mut inner.index;
        if index.status.len() <= row {
            index.offset.resize(row + 1, 0);
            index.len.resize(row + 1, 0);
            index.status.resize(row + 1, NO_OUTCOME);
        }
        index.offset[row] = start;
        index.len[row] = len;
        index.status[row] = outcome.status.index() as u8;
        match previous {
            Some(true) => inner.previous += 1,
            Some(false) => inner.this_run += 1,
            None => {}
        }
        Ok(())
    }

    /// Write the report in row order (rows never recorded are left out), remove
    /// the scratch file and return the summary. `journal` is named in it.
    pub fn finish(self, journal: Option<&Path>) -> io::Result<Summary> {
        let elapsed = self.started.elapsed();
        let inner = self.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        let counting = inner.scratch.into_inner().map_err(|e| e.into_error())?;
        let mut scratch = counting.file.into_inner().map_err(|e| e.into_error())?;
        scratch.rewind()?;
        // Rows mostly finish in about input order, so reads are mostly sequential
        // and seek_relative stays inside the buffer.
        let mut scratch = io::BufReader::with_capacity(64 * 1024, scratch);
        let mut pos = 0u64;
        let mut counts = [0u64; Status::ALL.len()];
        let mut failures = FailureTally::default();
        let tmp_path = crate::outputs::with_suffix(&self.path, ".tmp");
        let mut out = BufWriter::new(crate::outputs::create(&tmp_path)?);
        {
            let mut header = csv::Writer::from_writer(&mut out);
            header.write_record(HEADER)?;
            header.flush()?;
        }
        let mut buf = Vec::new();
        for (row, &status) in inner.index.status.iter().enumerate() {
            let Some(status) = Status::from_index(status) else {
                continue;
            };
            counts[status.index()] += 1;
            buf.resize(inner.index.len[row] as usize, 0);
            let offset = inner.index.offset[row];
            if offset != pos {
                scratch.seek_relative(offset as i64 - pos as i64)?;
            }
            scratch.read_exact(&mut buf)?;
            pos = offset + buf.len() as u64;
            out.write_all(&buf)?;
            if matches!(
                status,
                Status::Rejected | Status::Failed | Status::Uncertain
            ) {
                failures.add_line(&buf);
            }
        }
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        fs::rename(&tmp_path, &self.path)?;
        drop(scratch);
        drop(self.scratch_file);
        Ok(Summary {
            counts,
            this_run: inner.this_run,
            previous: inner.previous,
            failures: failures.entries,
            elapsed,
            report: Some(self.path.clone()),
            journal: journal.map(Path::to_path_buf),
            retry_left: 0,
        })
    }
}

/// Counts the bytes written so each record's offset and length are known.
/// `flush` stops here: the csv writer flushes after every record so the count
/// is exact, and passing that on would cost a system call per row.
struct Counting {
    file: BufWriter<File>,
    written: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Removes the scratch file when the report is finished or abandoned.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The outcome as one CSV record (with its line ending), cells neutralised.
fn format_line(o: &Outcome, w: &mut csv::Writer<Counting>) -> io::Result<()> {
    let row = o.row.to_string();
    let code = o.code.map(|c| c.to_string()).unwrap_or_default();
    let enhanced = one_line(o.enhanced.as_deref().unwrap_or(""));
    let reply = one_line(&o.reply);
    let message_id = one_line(o.message_id.as_deref().unwrap_or(""));
    let email = one_line(&o.email);
    let attempts = o.attempts.to_string();
    w.write_record([
        row.as_str(),
        &neutralise(&email),
        o.status.as_str(),
        &code,
        &neutralise(&enhanced),
        &neutralise(&reply),
        &neutralise(&message_id),
        &attempts,
    ])?;
    w.flush()?;
    Ok(())
}

/// The first few distinct failure replies, in row order, with how often each occurred.
#[derive(Default)]
struct FailureTally {
    entries: Vec<(String, u64, Option<&'static str>)>,
}

impl FailureTally {
    const KEEP: usize = 5;

    fn add_line(&mut self, line: &[u8]) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line);
        let mut record = csv::StringRecord::new();
        if !matches!(reader.read_record(&mut record), Ok(true)) {
            return;
        }
        let reply = record.get(5).unwrap_or("");
        let code = record.get(3).unwrap_or("");
        let key = match (code.is_empty(), reply.starts_with(code)) {
            (false, false) => format!("{code} {reply}"),
            _ => reply.to_string(),
        };
        if let Some(entry) = self.entries.iter_mut().find(|(r, ..)| *r == key) {
            entry.1 += 1;
        } else if self.entries.len() < Self::KEEP {
            let enhanced = record.get(4).filter(|e| !e.is_empty());
            let known = explain_parts(code.parse().ok(), enhanced, reply);
            self.entries.push((key, 1, known.map(|k| k.explanation)));
        }
    }
}

/// What a run did, for the closing text on stderr and the JSON summary event.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Recipients per status, indexed like [`Status::ALL`].
    pub counts: [u64; Status::ALL.len()],
    /// Outcomes produced by this run.
    pub this_run: u64,
    /// Outcomes an earlier run had already settled.
    pub previous: u64,
    /// The first five distinct failure replies (row order), how many rows
    /// got each, and what a known provider reply means (`known_replies`).
    pub failures: Vec<(String, u64, Option<&'static str>)>,
    /// Time from the start of the report to its end.
    pub elapsed: Duration,
    /// The report written, if any.
    pub report: Option<PathBuf>,
    /// The journal kept, if any.
    pub journal: Option<PathBuf>,
    /// Rows with a final status (a recipient refused for good) that still
    /// have other recipients to retry (4xx): a rerun sends to those.
    pub retry_left: u64,
}

impl Summary {
    /// Recipients with this status.
    pub fn count(&self, status: Status) -> u64 {
        self.counts[status.index()]
    }

    /// All recipients in the report.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// This run's outcomes per second of elapsed time.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.this_run as f64 / secs
        } else {
            0.0
        }
    }

    /// The exit status these outcomes call for (see the README): 75 while anything
    /// is left to retry or uncertain, else 67 if some were rejected, else 0.
    pub fn exit_code(&self) -> ExitCode {
        if self.count(Status::Failed) > 0
            || self.count(Status::Uncertain) > 0
            || self.retry_left > 0
        {
            ExitCode::TempFail
        } else if self.count(Status::Rejected) > 0 {
            ExitCode::Rejected
        } else {
            ExitCode::Ok
        }
    }

    /// The summary as a `{"event":"summary",...}` JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("event".into(), "summary".into());
        for status in Status::ALL {
            map.insert(status.as_str().into(), self.count(status).into());
        }
        map.insert("total".into(), self.total().into());
        map.insert("previous".into(), self.previous.into());
        map.insert(
            "elapsed_s".into(),
            serde_json::json!(round3(self.elapsed.as_secs_f64())),
        );
        map.insert("msgs_per_s".into(), serde_json::json!(round3(self.rate())));
        map.insert(
            "failures".into(),
            self.failures
                .iter()
                .map(|(reply, count, explanation)| {
                    serde_json::json!({"reply": reply, "count": count, "explanation": explanation})
                })
                .collect(),
        );
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| serde_json::Value::from(p.display().to_string()))
                .unwrap_or(serde_json::Value::Null)
        };
        map.insert("report".into(), path(&self.report));
        map.insert("journal".into(), path(&self.journal));
        map.insert("exit_code".into(), (self.exit_code() as i32).into());
        serde_json::Value::Object(map)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `suppressed` shows only when some are: most jobs have none.
        let parts: Vec<String> = Status::ALL
            .iter()
            .filter(|&&s| s != Status::Suppressed || self.count(s) > 0)
            .map(|&s| format!("{} {}", self.count(s), s))
            .collect();
        writeln!(
            f,
            "{} ({} recipients) in {:.1} s, {:.1} msg/s",
            parts.join(", "),
            self.total(),
            self.elapsed.as_secs_f64(),
            self.rate()
        )?;
        if self.previous > 0 {
            writeln!(f, "  {} settled by an earlier run", self.previous)?;
        }
        if !self.failures.is_empty() {
            writeln!(f, "most common problems:")?;
            for (reply, count, explanation) in &self.failures {
                writeln!(f, "  {count} × {reply}")?;
                if let Some(explanation) = explanation {
                    writeln!(f, "    → {explanation}")?;
                }
            }
        }
        if let Some(report) = &self.report {
            writeln!(f, "report: {}", report.display())?;
        }
        if let Some(journal) = &self.journal {
            writeln!(f, "journal: {}", journal.display())?;
        }
        match self.exit_code() {
            ExitCode::TempFail => writeln!(
                f,
                "some recipients are not done yet: run the same command again to resume"
            )?,
            ExitCode::Rejected => writeln!(f, "some recipients were rejected; see the report")?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session threads share it in an `Arc`.
    const _: fn() = || {
        fn shared<T: Send + Sync>() {}
        shared::<Report>();
    };

    fn outcome(row: u64, email: &str, status: Status, code: Option<u16>, reply: &str) -> Outcome {
        Outcome {
            row,
            email: email.into(),
            status,
            code,
            enhanced: code.map(|c| format!("{}.0.0", c / 100)),
            reply: reply.into(),
            message_id: Some(format!("<r{row}@test>")),
            attempts: 1,
            relay: None,
        }
    }

    fn read_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
        let mut r = csv::Reader::from_path(path).unwrap();
        let header = r.headers().unwrap().iter().map(String::from).collect();
        let rows = r
            .records()
            .map(|rec| rec.unwrap().iter().map(String::from).collect())
            .collect();
        (header, rows)
    }

    #[test]
    fn rows_come_out_in_input_order_with_the_fixed_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.report.csv");
        let report = Report::create(&path).unwrap();
        for row in [3u64, 1, 4, 2] {
            report
                .record(&outcome(
                    row,
                    &format!("u{row}@x.org"),
                    Status::Sent,
                    Some(250),
                    "ok",
                ))
                .unwrap();
        }
        report.finish(None).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("row,email,status,code,enhanced,reply,message_id,attempts\n"));
        let (_, rows) = read_rows(&path);
        let order: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(order, ["1", "2", "3", "4"]);
        assert_eq!(
            rows[1],
            [
                "2",
                "u2@x.org",
                "sent",
                "250",
                "2.0.0",
                "ok",
                "<r2@test>",
                "1"
            ]
        );
        assert!(!dir.path().join("job.report.csv.scratch").exists());
    }

    #[test]
    fn many_rows_in_reverse_order_come_out_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let report = Report::create(&path).unwrap();
        let n = 20_000u64;
        for row in (1..=n).rev() {
            let status = if row % 1000 == 0 {
                Status::Rejected
            } else {
                Status::Sent
            };
            report
                .record(&outcome(
                    row,
                    &format!("u{row}@x.org"),
                    status,
                    Some(250),
                    "ok",
                ))
                .unwrap();
        }
        let summary = report.finish(None).unwrap();
        assert_eq!(summary.count(Status::Rejected), n / 1000);
        let (_, rows) = read_rows(&path);
        assert_eq!(rows.len() as u64, n);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r[0], (i + 1).to_string());
            assert_eq!(r[1], format!("u{}@x.org", i + 1));
        }
    }

    #[test]
    fn a_later_outcome_for_a_row_replaces_the_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let report = Report::create(&path).unwrap();
        report
            .record(&outcome(
                1,
                "a@x.org",
                Status::Failed,
                Some(451),
                "try later",
            ))
            .unwrap();
        report
            .record(&outcome(1, "a@x.org", Status::Sent, Some(250), "queued"))
            .unwrap();
        let summary = report.finish(None).unwrap();
        let (_, rows) = read_rows(&path);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][2], "sent");
        assert_eq!(summary.count(Status::Sent), 1);
        assert_eq!(summary.count(Status::Failed), 0);
        assert!(summary.failures.is_empty());
    }

    #[test]
    fn formula_cells_are_neutralised_and_replies_kept_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let report = Report::create(&path).unwrap();
        let mut o = outcome(
            1,
            "=HYPERLINK(\"x\")@evil.org",
            Status::Rejected,
            None,
            "-1+2",
        );
        o.message_id = Some("@cmd".into());
        report.record(&o).unwrap();
        report
            .record(&outcome(
                2,
                "b@x.org",
                Status::Rejected,
                Some(550),
                "550-first\r\n550 second",
            ))
            .unwrap();
        report.finish(None).unwrap();
        let (_, rows) = read_rows(&path);
        assert_eq!(rows[0][1], "'=HYPERLINK(\"x\")@evil.org");
        assert_eq!(rows[0][5], "'-1+2");
        assert_eq!(rows[0][6], "'@cmd");
        assert_eq!(rows[1][5], "550-first 550 second");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "a reply must not add report lines");
    }

    #[test]
    fn neutralise_covers_exactly_the_owasp_prefixes() {
        for bad in ["=1", "+1", "-1", "@1", "\t1", "\r1"] {
            assert_eq!(neutralise(bad), format!("'{bad}"));
        }
        for good in ["1=", "a@b", "", "'x", " =1"] {
            assert_eq!(neutralise(good), good);
        }
    }

    #[test]
    fn summary_counts_failures_and_names_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let report = Report::create(&path).unwrap();
        let unknown = "5.1.1 User unknown";
        report
            .record(&outcome(1, "a@x", Status::Sent, Some(250), "ok"))
            .unwrap();
        report
            .record(&outcome(2, "b@x", Status::Rejected, Some(550), unknown))
            .unwrap();
        report
            .record(&outcome(3, "c@x", Status::Rejected, Some(550), unknown))
            .unwrap();
        report
            .record(&outcome(
                4,
                "d@x",
                Status::Uncertain,
                None,
                "connection lost",
            ))
            .unwrap();
        report
            .record_previous(&outcome(5, "e@x", Status::Sent, Some(250), "ok"))
            .unwrap();
        report
            .record(&outcome(
                6,
                "a@x",
                Status::Skipped,
                None,
                "duplicate of row 1",
            ))
            .unwrap();
        for row in 7..14 {
            let reply = format!("distinct problem {row}");
            report
                .record(&outcome(row, "z@x", Status::Failed, Some(451), &reply))
                .unwrap();
        }
        let journal = dir.path().join("job.journal");
        let summary = report.finish(Some(&journal)).unwrap();
        assert_eq!(summary.counts, [2, 2, 7, 1, 1, 0]);
        assert_eq!(summary.total(), 13);
        assert_eq!(summary.previous, 1);
        assert_eq!(summary.this_run, 12);
        assert_eq!(
            summary.failures,
            vec![
                ("550 5.1.1 User unknown".to_string(), 2, None),
                ("connection lost".to_string(), 1, None),
                ("451 distinct problem 7".to_string(), 1, None),
                ("451 distinct problem 8".to_string(), 1, None),
                ("451 distinct problem 9".to_string(), 1, None),
            ]
        );
        assert_eq!(summary.exit_code(), ExitCode::TempFail);
        let text = summary.to_string();
        assert!(text.starts_with(
            "2 sent, 2 rejected, 7 failed, 1 uncertain, 1 skipped (13 recipients) in "
        ));
        assert!(text.contains("  2 × 550 5.1.1 User unknown\n"));
        assert!(text.contains("  1 settled by an earlier run\n"));
        assert!(text.contains(&format!("report: {}\n", path.display())));
        assert!(text.contains(&format!("journal: {}\n", journal.display())));
        assert!(text.contains("run the same command again"));
        let json = summary.to_json();
        assert_eq!(json["event"], "summary");
        assert_eq!(json["failed"], 7);
        assert_eq!(json["exit_code"], 75);
    }

    #[test]
    fn a_known_provider_reply_is_explained_in_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let report = Report::create(&path).unwrap();
        let spam = "DT:SPM 163 smtp14,EsCowAD3 please see help_spam_16.htm";
        for row in 1..=2 {
            report
                .record(&outcome(row, "a@x", Status::Rejected, Some(554), spam))
                .unwrap();
        }
        report
            .record(&outcome(
                3,
                "b@x",
                Status::Rejected,
                Some(550),
                "No such user",
            ))
            .unwrap();
        let summary = report.finish(None).unwrap();
        let text = summary.to_string();
        let spam_line = format!("  2 × 554 {spam}\n");
        let at = text.find(&spam_line).unwrap_or_else(|| panic!("{text}"));
        let next = text[at + spam_line.len()..].lines().next().unwrap();
        assert_eq!(
            next,
            "    → content flagged as spam: change the content, retrying will not help"
        );
        // An unknown reply gets no explanation line.
        let unknown = text.find("  1 × 550 No such user\n").unwrap();
        assert!(!text[unknown..].contains('→'), "{text}");
        let json = summary.to_json();
        assert_eq!(
            json["failures"][0]["explanation"],
            "content flagged as spam: change the content, retrying will not help"
        );
        assert!(json["failures"][1]["explanation"].is_null());
    }

    #[test]
    fn exit_code_follows_the_spec() {
        let mut s = Summary {
            counts: [3, 0, 0, 0, 1, 0],
            this_run: 4,
            previous: 0,
            failures: vec![],
            elapsed: Duration::from_secs(2),
            report: None,
            journal: None,
            retry_left: 0,
        };
        assert_eq!(s.exit_code(), ExitCode::Ok);
        assert_eq!(s.rate(), 2.0);
        s.counts[Status::Rejected.index()] = 1;
        assert_eq!(s.exit_code(), ExitCode::Rejected);
        // A rejected row with another recipient still to retry is not finished.
        s.retry_left = 1;
        assert_eq!(s.exit_code(), ExitCode::TempFail);
        s.retry_left = 0;
        s.counts[Status::Uncertain.index()] = 1;
        assert_eq!(s.exit_code(), ExitCode::TempFail);
    }
}
