//! The numbers behind the HTML report, gathered in one streaming pass over
//! the report CSV(s), the journal(s) and the bounces CSV. Memory is bounded
//! whatever the run's size: domains past [`MAX_DOMAINS`] and reply codes past
//! [`MAX_CODES`] are counted under "other", and the rate keeps one counter per
//! second of the run.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::delivery::outcome::Status;

/// Distinct recipient domains counted one by one; later ones count as "other".
pub const MAX_DOMAINS: usize = 10_000;
/// Distinct reply codes kept with a sample; later ones count as "other".
pub const MAX_CODES: usize = 200;

/// What the page shows, in counts.
#[derive(Debug, Default)]
pub struct Tally {
    /// Status words, in report order (then any word this build does not know).
    pub statuses: Vec<String>,
    /// Rows per status, aligned with `statuses`.
    pub totals: Vec<u64>,
    /// Rows per recipient domain and status (aligned with `statuses`).
    domains: HashMap<String, Vec<u64>>,
    /// Rows of domains beyond [`MAX_DOMAINS`], per status.
    domain_overflow: Vec<u64>,
    /// Reply code (`550 5.1.1`) → rows and one sample reply.
    pub codes: BTreeMap<String, (u64, String)>,
    /// Rows whose code did not fit in [`MAX_CODES`].
    pub codes_overflow: u64,
    /// Attempts → rows.
    pub attempts: BTreeMap<u32, u64>,
    /// Unix second → messages the journal recorded as sent in it.
    pub per_second: BTreeMap<u64, u64>,
    /// First and last outcome the journal recorded (ms since the epoch).
    pub span_ms: Option<(u64, u64)>,
    /// Per journal that records them (one per shard): its file name and the
    /// sessions of its latest run.
    pub sessions: Vec<(String, u64)>,
    /// Bounce kind → messages, when a bounces CSV exists.
    pub bounces: Option<BTreeMap<String, u64>>,
    /// Report rows read.
    pub rows: u64,
}

impl Tally {
    /// An empty tally that knows every status word.
    pub fn new() -> Tally {
        let statuses: Vec<String> = Status::ALL.iter().map(|s| s.as_str().to_owned()).collect();
        Tally {
            totals: vec![0; statuses.len()],
            domain_overflow: vec![0; statuses.len()],
            statuses,
            ..Tally::default()
        }
    }

    fn status_index(&mut self, word: &str) -> usize {
        if let Some(i) = self.statuses.iter().position(|s| s == word) {
            return i;
        }
        self.statuses.push(word.to_owned());
        self.totals.push(0);
        self.statuses.len() - 1
    }

    /// Add one report CSV (`row,email,status,code,enhanced,reply,...`).
    pub fn add_report(&mut self, path: &Path) -> io::Result<()> {
        let mut reader = csv::Reader::from_path(path).map_err(csv_error)?;
        let headers = reader.headers().map_err(csv_error)?.clone();
        let at = |name: &str| headers.iter().position(|h| h == name);
        let (Some(email_at), Some(status_at)) = (at("email"), at("status")) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a mailshot report", path.display()),
            ));
        };
        let (code_at, enhanced_at, reply_at, attempts_at) =
            (at("code"), at("enhanced"), at("reply"), at("attempts"));
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(csv_error)? {
            self.rows += 1;
            let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("");
            let status = self.status_index(field(Some(status_at)));
            self.totals[status] += 1;
            let domain = domain_of(field(Some(email_at)));
            let width = self.statuses.len();
            let counts = if let Some(c) = self.domains.get_mut(domain.as_str()) {
                c
            } else if self.domains.len() < MAX_DOMAINS {
                self.domains.entry(domain).or_default()
            } else {
                &mut self.domain_overflow
            };
            if counts.len() < width {
                counts.resize(width, 0);
            }
            counts[status] += 1;

            let code = field(code_at);
            if !code.is_empty() {
                let key = format!("{code} {}", field(enhanced_at)).trim().to_owned();
                let reply = field(reply_at);
                if let Some(entry) = self.codes.get_mut(&key) {
                    entry.0 += 1;
                } else if self.codes.len() < MAX_CODES {
                    let sample: String = reply.chars().take(300).collect();
                    self.codes.insert(key, (1, sample));
                } else {
                    self.codes_overflow += 1;
                }
            }
            if let Ok(n) = field(attempts_at).parse::<u32>() {
                *self.attempts.entry(n).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Add the timestamps of one journal's outcome records and the sessions
    /// its latest `dest` record names (a missing journal adds nothing;
    /// damaged lines are skipped, as a replay skips them).
    pub fn add_journal(&mut self, path: &Path) -> io::Result<()> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let finder = memchr::memmem::Finder::new(b"\"t\":\"outcome\"");
        let dest = memchr::memmem::Finder::new(b"\"t\":\"dest\"");
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut line = Vec::new();
        let mut sessions = None;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if dest.find(&line).is_some() {
                let json = memchr::memrchr(b'\t', &line).map_or(&line[..0], |tab| &line[..tab]);
                if let Ok(Dest { sessions: Some(n) }) = serde_json::from_slice(json) {
                    sessions = Some(n);
                }
                continue;
            }
            if finder.find(&line).is_none() {
                continue;
            }
            let Some(tab) = memchr::memrchr(b'\t', &line) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<Stamp>(&line[..tab]) else {
                continue;
            };
            let Some(at) = record.at else { continue };
            self.span_ms = Some(match self.span_ms {
                Some((lo, hi)) => (lo.min(at), hi.max(at)),
                None => (at, at),
            });
            if record.status == Status::Sent {
                *self.per_second.entry(at / 1000).or_default() += 1;
            }
        }
        if let Some(n) = sessions {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            self.sessions.push((name.into_owned(), n));
        }
        Ok(())
    }

    /// Count the `kind` column of a bounces CSV, if the file exists.
    pub fn add_bounces(&mut self, path: &Path) -> io::Result<()> {
        let mut reader = match csv::Reader::from_path(path) {
            Ok(r) => r,
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound => return Ok(()),
                _ => return Err(csv_error(e)),
            },
        };
        let headers = reader.headers().map_err(csv_error)?.clone();
        let Some(kind_at) = headers.iter().position(|h| h == "kind") else {
            return Ok(());
        };
        let kinds = self.bounces.get_or_insert_with(BTreeMap::new);
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(csv_error)? {
            let kind = record.get(kind_at).unwrap_or("").to_owned();
            if kinds.len() < MAX_CODES || kinds.contains_key(&kind) {
                *kinds.entry(kind).or_default() += 1;
            }
        }
        Ok(())
    }

    /// The `top` domains with most rows, then "other" (every other domain),
    /// each with its rows per status (aligned with `statuses`).
    pub fn top_domains(&self, top: usize) -> Vec<(String, Vec<u64>)> {
        let width = self.statuses.len();
        let mut all: Vec<(&String, &Vec<u64>)> = self.domains.iter().collect();
        all.sort_by(|a, b| {
            let (sa, sb) = (a.1.iter().sum::<u64>(), b.1.iter().sum::<u64>());
            sb.cmp(&sa).then_with(|| a.0.cmp(b.0))
        });
        let mut out: Vec<(String, Vec<u64>)> = Vec::new();
        let mut other = self.domain_overflow.clone();
        other.resize(width, 0);
        for (i, (domain, counts)) in all.into_iter().enumerate() {
            let mut counts = counts.clone();
            counts.resize(width, 0);
            if i < top {
                out.push((domain.clone(), counts));
            } else {
                for (o, c) in other.iter_mut().zip(counts) {
                    *o += c;
                }
            }
        }
        if other.iter().any(|&n| n > 0) {
            out.push(("other".to_owned(), other));
        }
        out
    }
}

/// The part of an outcome record the rate needs.
#[derive(serde::Deserialize)]
struct Stamp {
    status: Status,
    at: Option<u64>,
}

/// The part of a `dest` record the page needs (absent before it was recorded).
#[derive(serde::Deserialize)]
struct Dest {
    sessions: Option<u64>,
}

/// The lowercased domain of a report's email cell (whose leading `'`, added
/// against spreadsheet formulas, is not part of the address).
fn domain_of(email: &str) -> String {
    let email = match email.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => email,
    };
    match email.rsplit_once('@') {
        Some((_, domain)) if !domain.is_empty() => domain.to_lowercase(),
        _ => "(none)".to_owned(),
    }
}

fn csv_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_statuses_domains_codes_and_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.csv");
        std::fs::write(
            &report,
            "row,email,status,code,enhanced,reply,message_id,attempts\n\
             1,a@X.test,sent,250,2.0.0,ok,<m1>,1\n\
             2,b@x.test,rejected,550,5.1.1,no such user,,1\n\
             3,'=c@y.test,failed,451,4.3.0,later,,3\n\
             4,d@y.test,rejected,550,5.1.1,unknown,,1\n",
        )
        .unwrap();
        let mut t = Tally::new();
        t.add_report(&report).unwrap();
        assert_eq!(t.rows, 4);
        assert_eq!(&t.totals[..4], &[1, 2, 1, 0]);
        let top = t.top_domains(1);
        // Every status has a column; these rows use the first three.
        let width = Status::ALL.len();
        let counts = |sent, rejected, failed| {
            let mut c = vec![sent, rejected, failed];
            c.resize(width, 0);
            c
        };
        assert_eq!(top[0], ("x.test".to_owned(), counts(1, 1, 0)));
        assert_eq!(top[1], ("other".to_owned(), counts(0, 1, 1)));
        assert_eq!(t.codes["550 5.1.1"], (2, "no such user".to_owned()));
        assert_eq!(t.attempts[&1], 3);
        assert_eq!(t.attempts[&3], 1);
    }

    #[test]
    fn rate_from_journal_outcome_stamps() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        std::fs::write(
            &journal,
            "{\"t\":\"header\",\"version\":2}\tcrc\n\
             {\"t\":\"outcome\",\"row\":1,\"status\":\"sent\",\"at\":5000}\tcrc\n\
             {\"t\":\"outcome\",\"row\":2,\"status\":\"sent\",\"at\":5900}\tcrc\n\
             {\"t\":\"outcome\",\"row\":3,\"status\":\"failed\",\"at\":7100}\tcrc\n\
             {\"t\":\"outcome\",\"row\":4,\"status\":\"sent\",\"at\":7200}\tcrc\n\
             {\"t\":\"dest\",\"dest\":\"smtp://h:25\",\"sessions\":3}\tcrc\n\
             {\"t\":\"dest\",\"dest\":\"smtp://h:25\",\"sessions\":5}\tcrc\n",
        )
        .unwrap();
        let mut t = Tally::new();
        t.add_journal(&journal).unwrap();
        assert_eq!(t.span_ms, Some((5000, 7200)));
        assert_eq!(t.per_second, BTreeMap::from([(5, 2), (7, 1)]));
        // The latest run's sessions.
        assert_eq!(t.sessions, vec![("j".to_owned(), 5)]);
    }
}
