//! Job + recipients + templates → a stream of rows, each a message, a skipped
//! duplicate, a suppressed address (never rendered) or the problems that stop
//! it; and the validation pass that renders every row before anything is sent.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::compose::message::{Draft, Outgoing};
use crate::compose::mime::{self, MimeOptions};
use crate::compose::parallel::{Work, CHUNK_BYTES};
use crate::compose::recipients::{Checked, RawRow, Recipient, RecipientReader, RowCheck};
use crate::compose::render::{Renderer, RowsRenderer};
use crate::compose::seen::FirstSeen;
use crate::error::{Diagnostic, Location, Problems, Result};
use crate::job::Job;
use crate::suppression::Suppression;

/// What one chunk of built messages may weigh while it waits for the
/// feed: less than a validation pass's chunk, because the feed's own queue
/// already holds hundreds of messages ahead of the sessions.
const FEED_CHUNK_BYTES: usize = 64 * 1024;

/// A job whose templates compiled.
pub struct Prepared {
    /// The validated job.
    pub job: Job,
    /// Its compiled templates.
    pub renderer: Renderer,
    /// The DKIM signer, when the job has `dkim:`.
    pub dkim: Option<crate::compose::dkim::Signer>,
    /// The addresses of the job's `suppress` files.
    pub suppression: Suppression,
    /// Only the rows of this shard (`--shard I/N`); invalid rows stay in
    /// every shard, so every shard refuses a job with one.
    pub shard: Option<crate::job::shard::Shard>,
    /// Threads that render the rows of a pass (at least one; every core
    /// unless limited, e.g. by `--threads`).
    pub threads: usize,
    /// Rows the last pass over the whole list read: the next pass sizes its
    /// duplicate detector for them at once (see [`FirstSeen::for_rows`]).
    rows_read: std::sync::atomic::AtomicU64,
}

/// What a validation pass counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows that render into a message.
    pub messages: u64,
    /// Duplicate rows, skipped.
    pub duplicates: u64,
    /// Rows whose address is suppressed, neither rendered nor sent.
    pub suppressed: u64,
}

impl Tally {
    /// Every row counted.
    pub fn rows(&self) -> u64 {
        self.messages + self.duplicates + self.suppressed
    }
}

/// One CSV row after rendering: by default into a message ready to send,
/// or just into its [`Draft`].
#[derive(Debug)]
pub enum Row<M = Box<Outgoing>> {
    /// A message ready to send (or its draft).
    Message(M),
    /// A duplicate address, skipped (the first row with it is sent).
    Duplicate {
        /// The row.
        row: u64,
        /// Its email.
        email: String,
        /// The first row with the same address.
        first: u64,
    },
    /// The row's address is in a suppression file: not rendered, not sent.
    Suppressed {
        /// The row.
        row: u64,
        /// Its email.
        email: String,
    },
    /// The row cannot be sent.
    Invalid {
        /// The row (0 when the problem is not tied to one).
        row: u64,
        /// The row's email, if it could be read.
        email: String,
        /// What is wrong.
        problems: Vec<Diagnostic>,
    },
}

impl<M> Row<M> {
    /// The same row with its message (or draft) turned into another form.
    fn map_message<N>(self, f: impl FnOnce(M) -> N) -> Row<N> {
        match self {
            Row::Message(m) => Row::Message(f(m)),
            Row::Duplicate { row, email, first } => Row::Duplicate { row, email, first },
            Row::Suppressed { row, email } => Row::Suppressed { row, email },
            Row::Invalid {
                row,
                email,
                problems,
            } => Row::Invalid {
                row,
                email,
                problems,
            },
        }
    }
}

/// Load the job and compile its templates.
pub fn prepare(path: &std::path::Path, vars: &[String]) -> Result<Prepared> {
    let vars = crate::job::parse_vars(vars)?;
    let job = crate::job::load(path, &vars)?;
    let renderer = Renderer::new(&job)?;
    let dkim = crate::compose::dkim::for_job(job.dkim.as_ref())?;
    let suppression = Suppression::load(&job.suppress)?;
    Ok(Prepared {
        job,
        renderer,
        dkim,
        suppression,
        shard: None,
        threads: crate::compose::parallel::available_threads(),
        rows_read: Default::default(),
    })
}

/// The Date header value: `SOURCE_DATE_EPOCH` if set (reproducible output),
/// else now.
pub fn date_now() -> i64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return t;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Prepared {
    /// Render on `threads` threads when given (`--threads`), else keep the default.
    pub fn limit_threads(&mut self, threads: Option<u16>) {
        if let Some(n) = threads {
            self.threads = usize::from(n).max(1);
        }
    }

    /// Stream the rows (the first `limit` only, if given), DKIM-signed when
    /// the job asks for it.
    pub fn rows<'a>(
        &'a self,
        limit: Option<u64>,
        run_id: &'a str,
        date: i64,
    ) -> Result<impl Iterator<Item = Row> + 'a> {
        self.rows_with(limit, run_id, date, self.dkim.as_ref())
    }

    fn rows_with<'a>(
        &'a self,
        limit: Option<u64>,
        run_id: &'a str,
        date: i64,
        dkim: Option<&'a crate::compose::dkim::Signer>,
    ) -> Result<impl Iterator<Item = Row> + 'a> {
        Ok(self
            .drafts(limit)?
            .map(move |row| row.map_message(|draft| self.build(draft, run_id, date, dkim))))
    }

    /// Build one draft into the message sent, DKIM-signed by `dkim`.
    fn build(
        &self,
        draft: Draft,
        run_id: &str,
        date: i64,
        dkim: Option<&crate::compose::dkim::Signer>,
    ) -> Box<Outgoing> {
        let from = draft.from.as_ref().expect("drafts have a From");
        let opts = MimeOptions {
            date,
            message_id: mime::message_id(run_id, draft.row, from),
        };
        let message = mime::compose(&draft, &opts);
        // Signed last: the signature covers the final bytes.
        Box::new(match dkim {
            Some(signer) => signer.sign(&message, date),
            None => message,
        })
    }

    /// The rows rendered into drafts (every draft has a From), one after
    /// another on this thread: all that can go wrong with a row shows here,
    /// as building the message cannot fail.
    fn drafts(&self, limit: Option<u64>) -> Result<impl Iterator<Item = Row<Draft>> + '_> {
        let (check, rows) = RecipientReader::open(&self.job.recipients)?.split();
        let renderer = self.renderer.rows();
        let mut seen = FirstSeen::new();
        let allow_duplicates = self.job.recipients.allow_duplicates;
        Ok(rows
            .take(limit.map_or(usize::MAX, |l| l as usize))
            .filter_map(move |item| {
                self.stage(&check, &renderer, item, |draft| draft).told(
                    &mut seen,
                    allow_duplicates,
                    &check,
                )
            }))
    }

    /// A row that is neither suppressed by its address nor a duplicate,
    /// rendered into its draft (or refused); and its values, done with.
    fn render(&self, renderer: &RowsRenderer<'_>, r: Recipient) -> (Row<Draft>, csv::StringRecord) {
        let suppression = &self.suppression;
        let rendered = renderer.render(&r);
        let Recipient {
            row, email, values, ..
        } = r;
        let out = match rendered {
            Err(problems) => Row::Invalid {
                row,
                email,
                problems,
            },
            Ok(draft) if draft.from.is_none() => Row::Invalid {
                row,
                email,
                problems: vec![Diagnostic::new(
                    Location {
                        row: Some(row),
                        ..Location::file(&self.job.recipients.file)
                    },
                    "no From address",
                )],
            },
            Ok(mut draft) => {
                // A suppressed Cc or Bcc (or extra To) is left
                // out of the message; the row goes to the rest.
                if !suppression.is_empty() {
                    let keep = |m: &crate::address::Mailbox| !suppression.contains(&m.addr);
                    draft.to.retain(keep);
                    draft.cc.retain(keep);
                    draft.bcc.retain(keep);
                    if draft.envelope_recipients().is_empty() {
                        return (
                            Row::Suppressed {
                                row: draft.row,
                                email: draft.email,
                            },
                            values,
                        );
                    }
                }
                Row::Message(draft)
            }
        };
        (out, values)
    }

    /// One row as read, checked and rendered on a rendering thread; whether
    /// it repeats an earlier row is told later, in row order
    /// ([`Staged::told`]). A row that does is rendered all the same: which
    /// row came first is only known once the rows are back in order.
    fn stage<M>(
        &self,
        check: &RowCheck,
        renderer: &RowsRenderer<'_>,
        item: std::result::Result<RawRow, Diagnostic>,
        finish: impl Fn(Draft) -> M,
    ) -> Staged<M> {
        let Checked {
            recipient: r,
            fingerprint,
        } = match item.and_then(|raw| check.check(raw)) {
            Ok(checked) => checked,
            Err(d) => {
                return Staged {
                    number: d.location.row.unwrap_or(0),
                    row: Some(invalid(d)),
                    fingerprint: None,
                    suppressed: false,
                    values: None,
                }
            }
        };
        let number = r.row;
        if self.shard.is_some_and(|shard| !shard.contains(&r.email)) {
            return Staged {
                number,
                row: None,
                fingerprint: Some(fingerprint),
                suppressed: false,
                values: Some(r.values),
            };
        }
        if self.suppression.contains(&r.email) {
            let Recipient { email, values, .. } = r;
            return Staged {
                number,
                row: Some(Row::Suppressed { row: number, email }),
                fingerprint: Some(fingerprint),
                suppressed: true,
                values: Some(values),
            };
        }
        let (row, values) = self.render(renderer, r);
        Staged {
            number,
            row: Some(row.map_message(finish)),
            fingerprint: Some(fingerprint),
            suppressed: false,
            values: Some(values),
        }
    }

    /// Every row (the first `limit`) rendered on [`Prepared::threads`]
    /// threads, `finish` turning each draft into what the caller keeps (on
    /// the rendering thread), and handed to `sink` in row order: the same
    /// rows in the same order whatever the thread count. `weigh` tells what
    /// a kept message holds in memory, so that fewer are in flight when
    /// they are big: a chunk of rows aims at `chunk_bytes`.
    pub fn each_row<M: Send>(
        &self,
        limit: Option<u64>,
        chunk_bytes: usize,
        finish: impl Fn(Draft) -> M + Sync,
        weigh: impl Fn(&M) -> usize + Sync,
        sink: impl FnMut(Row<M>) -> Result<()>,
    ) -> Result<()> {
        let pass = Pass {
            chunk_bytes,
            reader_works: true,
        };
        self.each_row_in(limit, pass, finish, weigh, sink)
    }

    /// [`Prepared::each_row`], chunked and spread as `pass` says.
    fn each_row_in<M: Send>(
        &self,
        limit: Option<u64>,
        pass: Pass,
        finish: impl Fn(Draft) -> M + Sync,
        weigh: impl Fn(&M) -> usize + Sync,
        mut sink: impl FnMut(Row<M>) -> Result<()>,
    ) -> Result<()> {
        let (check, rows) = RecipientReader::open(&self.job.recipients)?.split();
        let work = Work {
            threads: self.threads,
            init: || self.renderer.rows(),
            work: |renderer: &mut RowsRenderer<'_>, item| {
                self.stage(&check, renderer, item, &finish)
            },
            weigh: |staged: &Staged<M>| match &staged.row {
                Some(Row::Message(m)) => weigh(m),
                _ => 0,
            },
            chunk_bytes: pass.chunk_bytes,
            reader_works: pass.reader_works,
        };
        let mut seen = FirstSeen::for_rows(self.rows_read.load(Ordering::Relaxed));
        let allow_duplicates = self.job.recipients.allow_duplicates;
        let rows = rows.take(limit.map_or(usize::MAX, |l| l as usize));
        let mut read = 0;
        work.run(rows, |staged| {
            read = read.max(staged.number);
            match staged.told(&mut seen, allow_duplicates, &check) {
                Some(row) => sink(row),
                None => Ok(()),
            }
        })?;
        self.rows_read.store(read, Ordering::Relaxed);
        Ok(())
    }

    /// [`Prepared::each_row`] with every message built (and DKIM-signed when
    /// the job asks for it), as `run` sends them.
    pub fn each_message(
        &self,
        limit: Option<u64>,
        run_id: &str,
        date: i64,
        sink: impl FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        let dkim = self.dkim.as_ref();
        // The messages go to the sessions: built on the reading thread they
        // would land in its heap among the structures that grow with the
        // list (the duplicate detector, the report's index) and keep it
        // fragmented, 6 MB more at a million rows.
        let pass = Pass {
            chunk_bytes: FEED_CHUNK_BYTES,
            reader_works: false,
        };
        self.each_row_in(
            limit,
            pass,
            |draft| self.build(draft, run_id, date, dkim),
            |m| m.data.own_capacity(),
            sink,
        )
    }

    /// Render every row (the first `limit`) and report every problem; nothing
    /// is sent by this. Returns what it counted.
    ///
    /// With `encode`, every message is also built (MIME-encoded), as `check`
    /// does; `run` skips that here, since building cannot fail and it builds
    /// each message again as it sends.
    pub fn validate(&self, limit: Option<u64>, encode: bool) -> Result<Tally> {
        let mut tally = Tally::default();
        let mut problems = Problems::default();
        // Unsigned: the key loaded in `prepare`, and signing every row of a
        // big list just to count them would cost seconds for nothing.
        let finish = |draft: Draft| {
            if encode {
                drop(self.build(draft, "check", 0, None));
            }
        };
        self.each_row(
            limit,
            CHUNK_BYTES,
            finish,
            |_| 0,
            |row| {
                tally.count(row, &mut problems);
                Ok(())
            },
        )?;
        tally.or(problems)
    }

    /// [`Prepared::validate`] without building messages, showing `see`
    /// every rendered draft in row order (the run fingerprints attachments
    /// this way).
    pub fn validate_drafts(
        &self,
        limit: Option<u64>,
        mut see: impl FnMut(&Draft),
    ) -> Result<Tally> {
        let mut tally = Tally::default();
        let mut problems = Problems::default();
        // The run keeps what grows with the list (the duplicate detector,
        // the report's index) on this thread while it sends: drafts built
        // here beside this pass's own detector would leave its heap in
        // holes, 8 MB more at the peak of a million-row run.
        let pass = Pass {
            chunk_bytes: CHUNK_BYTES,
            reader_works: false,
        };
        self.each_row_in(
            limit,
            pass,
            |draft| draft,
            draft_weight,
            |row| {
                if let Row::Message(draft) = &row {
                    see(draft);
                }
                tally.count(row, &mut problems);
                Ok(())
            },
        )?;
        tally.or(problems)
    }
}

/// How a pass over the rows is chunked and spread over threads.
struct Pass {
    /// What one chunk of results should weigh at most.
    chunk_bytes: usize,
    /// Whether the reading thread renders too (see [`Work::reader_works`]).
    reader_works: bool,
}

/// A row as a rendering thread left it, before duplicates are told.
struct Staged<M> {
    /// The row's number.
    number: u64,
    /// What became of the row, as if its address were new; `None` when the
    /// row is not in this shard.
    row: Option<Row<M>>,
    /// The fingerprint of the row's address, when it is a valid one: every
    /// such row counts in telling duplicates, in this shard or not.
    fingerprint: Option<u64>,
    /// Suppressed by its own address: stays so, even when it repeats an
    /// earlier row.
    suppressed: bool,
    /// The row's values, done with: they go back to the thread that read
    /// them, which frees them where it allocated them (glibc's arenas slow
    /// to a crawl when two threads keep freeing each other's blocks).
    values: Option<csv::StringRecord>,
}

impl<M> Staged<M> {
    /// The row as the pass hands it on, now that `seen` has every earlier
    /// row: a duplicate unless duplicates are allowed; `None` when the row
    /// is not in this shard.
    fn told(
        self,
        seen: &mut FirstSeen,
        allow_duplicates: bool,
        check: &RowCheck,
    ) -> Option<Row<M>> {
        let first = self.fingerprint.and_then(|fp| seen.check(fp, self.number));
        let row = self.row?;
        match first {
            Some(first) if !allow_duplicates && !self.suppressed => Some(Row::Duplicate {
                row: self.number,
                email: self
                    .values
                    .as_ref()
                    .map_or_else(String::new, |v| check.email_of(v).to_string()),
                first,
            }),
            _ => Some(row),
        }
    }
}

/// A row that cannot be read or checked.
fn invalid<M>(d: Diagnostic) -> Row<M> {
    Row::Invalid {
        row: d.location.row.unwrap_or(0),
        email: String::new(),
        problems: vec![d],
    }
}

/// Roughly what a draft holds in memory: its bodies, and its share of the
/// files it attaches (a file every row shares costs one row little).
fn draft_weight(draft: &Draft) -> usize {
    let bodies =
        draft.text.as_ref().map_or(0, String::len) + draft.html.as_ref().map_or(0, String::len);
    let files: usize = draft
        .attachments
        .iter()
        .map(|a| a.data.as_bytes().len() / std::sync::Arc::strong_count(&a.data))
        .sum();
    bodies + files
}

impl Tally {
    /// Count one row of a validation pass, keeping its problems.
    fn count<M>(&mut self, row: Row<M>, problems: &mut Problems) {
        match row {
            Row::Message(_) => self.messages += 1,
            Row::Duplicate { .. } => self.duplicates += 1,
            Row::Suppressed { .. } => self.suppressed += 1,
            Row::Invalid { problems: p, .. } => problems.extend(p),
        }
    }

    /// This tally, or the error listing the problems when there are any.
    fn or(self, problems: Problems) -> Result<Tally> {
        if problems.is_empty() {
            return Ok(self);
        }
        Err(problems.into_error())
    }
}

#[cfg(test)]
mod tests;
