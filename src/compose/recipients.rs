//! The recipient list: a streamed CSV (csv crate, RFC 4180 with a chosen
//! delimiter) in UTF-8 (BOM tolerated) or a legacy encoding (encoding_rs),
//! with address checks (RFC 5321 / RFC 6531) and duplicate detection.
//!
//! Memory stays flat however long the file is: rows are read one at a time
//! from a buffered file, legacy encodings are transcoded as a stream (Excel
//! in China saves CSV as GBK), and duplicate detection keeps a 64-bit hash
//! per address rather than the address. Every unusable row becomes a
//! [`Diagnostic`] and reading goes on, so the caller can report all of them.

use std::fs::File;
use std::hash::Hasher;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use encoding_rs_io::DecodeReaderBytesBuilder;

use crate::address;
use crate::compose::seen::FirstSeen;
use crate::error::{Diagnostic, Error, Location, Result};
use crate::job::RecipientsSpec;

/// One CSV data row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// 1-based data row (the header row is not counted).
    pub row: u64,
    /// 1-based physical line where the row starts.
    pub line: u64,
    /// The email column's value, trimmed.
    pub email: String,
    /// Column names, shared by all rows.
    pub headers: Arc<Vec<String>>,
    /// The row's values, one per header: the record as read, checked to be
    /// UTF-8, not copied value by value (the reading thread is the one that
    /// cannot be shared, so it does as little as it can).
    pub values: csv::StringRecord,
    /// When this address already appeared (case-insensitively), the first
    /// row with it: told by [`RecipientReader`] as it reads; a pass that
    /// checks rows on several threads ([`RowCheck`]) tells it afterwards, in
    /// row order, from the row's fingerprint.
    pub duplicate_of: Option<u64>,
}

impl Recipient {
    /// The value of column `name`, if the header has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.headers.iter().position(|h| h == name)?;
        self.values.get(i)
    }
}

/// A streaming reader over the recipients file; yields one item per data row,
/// an `Err` for a row that cannot be used (ragged, bad encoding, bad address),
/// and keeps going after errors.
///
/// Rows whose fields are all blank (spreadsheets leave them at the end) are
/// skipped silently; they still count in the row numbering so that row N is
/// always the N-th line of data in the file.
///
/// Reading splits in two ([`RecipientReader::split`]): [`RawRows`], the
/// part that must go row after row (the CSV parser), and [`RowCheck`], which
/// turns any raw row into a recipient on any thread.
pub struct RecipientReader {
    rows: RawRows,
    check: RowCheck,
    /// Address fingerprint → first row with it.
    seen: FirstSeen,
}

/// The data rows of a recipients file as the CSV parser reads them, in
/// order: rows not yet checked, or the reading errors that end the file.
pub struct RawRows {
    file: PathBuf,
    reader: csv::Reader<QuoteWatch<Box<dyn Read + Send>>>,
    record: csv::ByteRecord,
    row: u64,
    done: bool,
}

/// One data row as read, not yet checked.
#[derive(Debug)]
pub struct RawRow {
    /// 1-based data row.
    pub row: u64,
    /// 1-based physical line where the row starts.
    pub line: u64,
    record: csv::ByteRecord,
}

/// Turns raw rows into recipients: the checks of a row that need no other
/// row (field count, encoding, address), shareable between threads.
#[derive(Debug, Clone)]
pub struct RowCheck {
    file: PathBuf,
    headers: Arc<Vec<String>>,
    email_index: usize,
    /// The source is not UTF-8, so U+FFFD in a value means undecodable bytes.
    transcoded: Option<&'static encoding_rs::Encoding>,
}

/// A row that passed its checks.
#[derive(Debug)]
pub struct Checked {
    /// The recipient (`duplicate_of` not told yet).
    pub recipient: Recipient,
    /// The 64-bit fingerprint of its lowercased address, by which
    /// [`FirstSeen`] tells duplicates.
    pub fingerprint: u64,
}

impl RecipientReader {
    /// Open the file; fails only if it is missing/unreadable or has no usable header
    /// (e.g. the email column is missing).
    pub fn open(spec: &RecipientsSpec) -> Result<Self> {
        let file = File::open(&spec.file).map_err(|e| Error::no_input(&spec.file, &e))?;
        let mut decode = DecodeReaderBytesBuilder::new();
        // UTF-8 passes through untouched so that invalid bytes reach us and
        // can be reported per row and column instead of becoming U+FFFD;
        // a BOM (UTF-8 or UTF-16, as Excel writes) wins over the setting.
        decode
            .utf8_passthru(true)
            .strip_bom(true)
            .bom_override(true);
        let transcoded = if spec.encoding == encoding_rs::UTF_8 {
            None
        } else {
            decode.encoding(Some(spec.encoding));
            Some(spec.encoding)
        };
        let source: Box<dyn Read + Send> =
            Box::new(decode.build(BufReader::with_capacity(64 * 1024, file)));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(spec.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(QuoteWatch::new(source, spec.delimiter));

        let header_loc = || Location {
            file: spec.file.clone(),
            line: Some(1),
            row: Some(0),
            ..Default::default()
        };
        let mut raw = csv::ByteRecord::new();
        match reader.read_byte_record(&mut raw) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::invalid(
                    header_loc(),
                    format!(
                        "the file is empty; the first line must name the columns, including \"{}\"",
                        spec.email_column
                    ),
                ))
            }
            Err(e) => return Err(Error::no_input(&spec.file, &std::io::Error::other(e))),
        }
        if let Some(open) = reader.get_ref().unterminated() {
            return Err(Error::invalid(
                Location {
                    line: Some(open.line),
                    ..header_loc()
                },
                open.message(),
            ));
        }
        let mut headers = Vec::with_capacity(raw.len());
        for field in raw.iter() {
            let name = std::str::from_utf8(field).map_err(|_| {
                Error::invalid(
                    header_loc(),
                    format!(
                        "the header row is not valid {}; set recipients.encoding (e.g. gbk)",
                        spec.encoding.name()
                    ),
                )
            })?;
            headers.push(name.trim().to_string());
        }
        let mut problems = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            if !h.is_empty() && headers[..i].contains(h) {
                problems.push(Diagnostic::new(
                    Location {
                        field: Some(h.clone()),
                        ..header_loc()
                    },
                    format!("column \"{h}\" appears twice in the header"),
                ));
            }
        }
        let email_index = find_column(&headers, &spec.email_column);
        if email_index.is_none() {
            let mut message = format!(
                "no column \"{}\" in the header; columns found: {} (set recipients.email_column)",
                spec.email_column,
                headers
                    .iter()
                    .map(|h| format!("\"{h}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if headers.len() == 1 {
                if let Some(d) = [';', '\t', ',', '|']
                    .into_iter()
                    .find(|&d| d as u32 != spec.delimiter as u32 && headers[0].contains(d))
                {
                    message.push_str(&format!(
                        "; the header contains {d:?}: set recipients.delimiter to it?"
                    ));
                }
            }
            problems.push(Diagnostic::new(
                Location {
                    field: Some(spec.email_column.clone()),
                    ..header_loc()
                },
                message,
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        Ok(RecipientReader {
            rows: RawRows {
                file: spec.file.clone(),
                reader,
                record: csv::ByteRecord::new(),
                row: 0,
                done: false,
            },
            check: RowCheck {
                file: spec.file.clone(),
                headers: Arc::new(headers),
                email_index: email_index.expect("checked above"),
                transcoded,
            },
            seen: FirstSeen::new(),
        })
    }

    /// The column names.
    pub fn headers(&self) -> &Arc<Vec<String>> {
        &self.check.headers
    }

    /// The email column's name as it appears in the header.
    pub fn email_column(&self) -> &str {
        self.check.email_column()
    }

    /// The two halves of reading, for a pass that checks rows on several
    /// threads: it tells duplicates itself, in row order, with a
    /// [`FirstSeen`] fed every checked row's fingerprint.
    pub fn split(self) -> (RowCheck, RawRows) {
        (self.check, self.rows)
    }
}

/// A problem with row `row` of `file`, starting on line `line`.
fn diag(
    file: &std::path::Path,
    row: u64,
    line: u64,
    field: Option<&str>,
    message: String,
) -> Diagnostic {
    Diagnostic::new(
        Location {
            file: file.to_path_buf(),
            line: Some(line),
            row: Some(row),
            field: field.map(str::to_string),
            ..Default::default()
        },
        message,
    )
}

impl RowCheck {
    /// The email column's name as it appears in the header.
    pub fn email_column(&self) -> &str {
        &self.headers[self.email_index]
    }

    /// The email column's value (trimmed) in a row's values.
    pub fn email_of<'a>(&self, values: &'a csv::StringRecord) -> &'a str {
        values.get(self.email_index).unwrap_or_default().trim()
    }

    /// Check a row and turn it into a recipient, with its address's fingerprint.
    pub fn check(&self, raw: RawRow) -> std::result::Result<Checked, Diagnostic> {
        let RawRow { row, line, record } = raw;
        let problem =
            |field: Option<&str>, message: String| diag(&self.file, row, line, field, message);
        if record.len() != self.headers.len() {
            return Err(problem(
                None,
                format!(
                    "expected {} fields (as in the header), found {}",
                    self.headers.len(),
                    record.len()
                ),
            ));
        }
        // The record itself becomes the row's values, not copied value by value.
        let values = match csv::StringRecord::from_byte_record(record) {
            Ok(values) => values,
            Err(e) => {
                let bad = e.utf8_error();
                return Err(problem(
                    Some(&self.headers[bad.field()]),
                    format!(
                        "invalid UTF-8 at byte {} of the value; if the file is not UTF-8 \
                         set recipients.encoding (e.g. gbk)",
                        bad.valid_up_to() + 1
                    ),
                ));
            }
        };
        if let Some(enc) = self.transcoded {
            if let Some(i) = values.iter().position(|v| v.contains('\u{FFFD}')) {
                return Err(problem(
                    Some(&self.headers[i]),
                    format!(
                        "bytes that are not valid {}; check recipients.encoding",
                        enc.name()
                    ),
                ));
            }
        }
        let email = self.email_of(&values).to_string();
        let column = Some(self.email_column());
        if email.is_empty() {
            return Err(problem(column, "the address is empty".into()));
        }
        if let Err(e) = address::check_addr_spec(&email) {
            return Err(problem(column, format!("invalid address: {e}")));
        }
        let fingerprint = fingerprint(&email);
        Ok(Checked {
            recipient: Recipient {
                row,
                line,
                email,
                headers: Arc::clone(&self.headers),
                values,
                duplicate_of: None,
            },
            fingerprint,
        })
    }
}

/// The 64-bit fingerprint of an address, lowercased.
fn fingerprint(email: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buf = [0u8; 256];
    if email.is_ascii() && email.len() <= buf.len() {
        // The lowercase copy on the stack (addresses are at most 254 octets).
        let lower = &mut buf[..email.len()];
        lower.copy_from_slice(email.as_bytes());
        lower.make_ascii_lowercase();
        hasher.write(lower);
    } else {
        hasher.write(email.to_lowercase().as_bytes());
    }
    hasher.finish()
}

/// Exact match first; else a unique case-insensitive match (`Email` for `email`).
fn find_column(headers: &[String], name: &str) -> Option<usize> {
    if let Some(i) = headers.iter().position(|h| h == name) {
        return Some(i);
    }
    let mut matches = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.to_lowercase() == name.to_lowercase());
    match (matches.next(), matches.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

impl Iterator for RecipientReader {
    type Item = std::result::Result<Recipient, Diagnostic>;
    fn next(&mut self) -> Option<Self::Item> {
        let checked = self.rows.next()?.and_then(|raw| self.check.check(raw));
        Some(checked.map(
            |Checked {
                 mut recipient,
                 fingerprint,
             }| {
                recipient.duplicate_of = self.seen.check(fingerprint, recipient.row);
                recipient
            },
        ))
    }
}

impl Iterator for RawRows {
    type Item = std::result::Result<RawRow, Diagnostic>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            match self.reader.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    // An I/O error: nothing after it can be trusted.
                    self.done = true;
                    let line = e.position().map_or(0, |p| p.line());
                    self.row += 1;
                    let message = format!("cannot read: {e}");
                    return Some(Err(diag(&self.file, self.row, line, None, message)));
                }
            }
            self.row += 1;
            let line = self.record.position().map_or(0, |p| p.line());
            if let Some(open) = self.reader.get_ref().unterminated() {
                // The quote swallowed the rest of the file into this row;
                // nothing after it was read as rows.
                self.done = true;
                let message = open.message();
                return Some(Err(diag(&self.file, self.row, open.line, None, message)));
            }
            if self
                .record
                .iter()
                .all(|f| f.iter().all(u8::is_ascii_whitespace))
            {
                continue;
            }
            // The record leaves with the row; the next row is read into a
            // fresh one of the same size.
            let fresh =
                csv::ByteRecord::with_capacity(self.record.as_slice().len(), self.record.len());
            return Some(Ok(RawRow {
                row: self.row,
                line,
                record: std::mem::replace(&mut self.record, fresh),
            }));
        }
    }
}

/// Where the CSV parser stands in a record, as csv-core sees it (RFC 4180
/// with doubled quotes): a quote opens a quoted field only at a field's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: it closes the field unless another follows.
    QuoteInQuoted,
}

/// A quote that was still open at the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenQuote {
    /// The 1-based line where it opened.
    line: u64,
    /// The last line of the file.
    last_line: u64,
}

impl OpenQuote {
    fn message(&self) -> String {
        format!(
            "a quote opened on line {} is never closed, so lines {}-{} would become one \
             value and every row after it would be lost; close the quote, or write a quote \
             inside a quoted value as two (\"\")",
            self.line, self.line, self.last_line
        )
    }
}

/// Passes the CSV bytes through while following quoting, because csv-core
/// silently ends an unterminated quoted field at the end of the input.
struct QuoteWatch<R> {
    inner: R,
    delimiter: u8,
    state: QuoteState,
    /// The current 1-based line (lines end with LF, as csv counts them).
    line: u64,
    /// Where the current quoted field opened.
    opened: u64,
    eof: bool,
}

impl<R> QuoteWatch<R> {
    fn new(inner: R, delimiter: u8) -> Self {
        QuoteWatch {
            inner,
            delimiter,
            state: QuoteState::FieldStart,
            line: 1,
            opened: 0,
            eof: false,
        }
    }

    /// The quote still open once the whole input has been read, if any.
    fn unterminated(&self) -> Option<OpenQuote> {
        (self.eof && self.state == QuoteState::Quoted).then_some(OpenQuote {
            line: self.opened,
            last_line: self.line,
        })
    }

    fn scan(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == QuoteState::Quoted {
                // Skip ahead: only quotes and line ends matter here.
                match memchr::memchr2(b'"', b'\n', &bytes[i..]) {
                    None => return,
                    Some(p) => i += p,
                }
            } else if self.state == QuoteState::Unquoted {
                // Likewise: only the end of the field (or line) matters.
                match memchr::memchr3(self.delimiter, b'\n', b'\r', &bytes[i..]) {
                    None => return,
                    Some(p) => i += p,
                }
            }
            let b = bytes[i];
            if b == b'\n' {
                self.line += 1;
            }
            let ends_field = b == self.delimiter || b == b'\n' || b == b'\r';
            self.state = match (self.state, b) {
                (QuoteState::FieldStart, b'"') => {
                    self.opened = self.line;
                    QuoteState::Quoted
                }
                (QuoteState::Quoted, b'"') => QuoteState::QuoteInQuoted,
                (QuoteState::Quoted, _) => QuoteState::Quoted,
                (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
                (_, _) if ends_field => QuoteState::FieldStart,
                (_, _) => QuoteState::Unquoted,
            };
            i += 1;
        }
    }
}

impl<R: Read> Read for QuoteWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.scan(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &tempfile::TempDir, bytes: &[u8]) -> RecipientsSpec {
        let file = dir.path().join("r.csv");
        std::fs::write(&file, bytes).unwrap();
        RecipientsSpec {
            file,
            email_column: "email".into(),
            delimiter: b',',
            encoding: encoding_rs::UTF_8,
            allow_duplicates: false,
        }
    }

    fn read_all(spec: &RecipientsSpec) -> Vec<std::result::Result<Recipient, Diagnostic>> {
        RecipientReader::open(spec).unwrap().collect()
    }

    #[test]
    fn invalid_utf8_names_its_row_column_and_byte_and_the_rows_around_it_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            &dir,
            b"email,name,city\na@x.org,Ann,Oslo\nb@x.org,Bo\xffb,Rome\nc@x.org,Cy,Lima\n",
        );
        let items = read_all(&s);
        assert_eq!(items.len(), 3);
        let d = items[1].as_ref().unwrap_err();
        assert_eq!(d.location.row, Some(2));
        assert_eq!(d.location.field.as_deref(), Some("name"));
        assert!(
            d.message.contains("at byte 3 of the value"),
            "{}",
            d.message
        );
        assert_eq!(&items[0].as_ref().unwrap().values[2], "Oslo");
        assert_eq!(&items[2].as_ref().unwrap().values[1], "Cy");
    }

    fn ok(items: Vec<std::result::Result<Recipient, Diagnostic>>) -> Vec<Recipient> {
        items
            .into_iter()
            .map(|r| r.unwrap_or_else(|d| panic!("{d}")))
            .collect()
    }

    #[test]
    fn plain_utf8_with_trimmed_headers() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&dir, b" email , name\n a@x.org ,Ann\nb@x.org,Bob\n");
        let mut reader = RecipientReader::open(&s).unwrap();
        assert_eq!(**reader.headers(), vec!["email", "name"]);
        let first = reader.next().unwrap().unwrap();
        assert_eq!(first.email, "a@x.org");
        assert_eq!(
            first.values,
            csv::StringRecord::from(vec![" a@x.org ", "Ann"])
        );
        assert_eq!((first.row, first.line), (1, 2));
        assert_eq!(first.get("name"), Some("Ann"));
        let second = reader.next().unwrap().unwrap();
        assert_eq!(
            (second.row, second.line, second.email.as_str()),
            (2, 3, "b@x.org")
        );
        assert!(reader.next().is_none());
    }

    #[test]
    fn utf8_bom_is_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&dir, "\u{FEFF}email,name\na@x.org,Zoë\n".as_bytes());
        let rows = ok(read_all(&s));
        assert_eq!(rows[0].headers[0], "email");
        assert_eq!(&rows[0].values[1], "Zoë");
    }

    #[test]
    fn utf16_bom_file_from_excel_unicode_text() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = "\u{FEFF}email\tname\r\nli@example.com\t李四\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut s = spec(&dir, &bytes);
        s.delimiter = b'\t';
        let rows = ok(read_all(&s));
        assert_eq!(rows[0].email, "li@example.com");
        assert_eq!(&rows[0].values[1], "李四");
    }

    #[test]
    fn gbk_file() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, _, bad) = encoding_rs::GBK.encode("email,姓名\nzhang@example.com,张三\n");
        assert!(!bad);
        let mut s = spec(&dir, &bytes);
        s.encoding = encoding_rs::GBK;
        let rows = ok(read_all(&s));
        assert_eq!(**rows[0].headers, vec!["email", "姓名"]);
        assert_eq!(rows[0].get("姓名"), Some("张三"));
    }

    #[test]
    fn gb18030_file_with_four_byte_characters() {
        let dir = tempfile::tempdir().unwrap();
        // U+20BB7 is outside GBK: GB18030 encodes it in four bytes.
        let text = "email,name\nji@example.com,𠮷野家\n";
        let (bytes, _, bad) = encoding_rs::GB18030.encode(text);
        assert!(!bad);
        assert_ne!(&bytes[..], text.as_bytes());
        let mut s = spec(&dir, &bytes);
        s.encoding = encoding_rs::GB18030;
        let rows = ok(read_all(&s));
        assert_eq!(&rows[0].values[1], "𠮷野家");
    }

    #[test]
    fn gbk_stream_across_buffer_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("email,name\n");
        for i in 0..20_000 {
            text.push_str(&format!("u{i}@example.com,用户{i}号\n"));
        }
        let (bytes, _, _) = encoding_rs::GBK.encode(&text);
        let mut s = spec(&dir, &bytes);
        s.encoding = encoding_rs::GBK;
        let rows = ok(read_all(&s));
        assert_eq!(rows.len(), 20_000);
        assert_eq!(&rows[12_345].values[1], "用户12345号");
        assert_eq!(rows[19_999].line, 20_001);
    }

    #[test]
    fn undecodable_legacy_bytes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        // 0xFF is not a valid GBK lead byte.
        let mut s = spec(&dir, b"email,name\na@x.org,\xFF\xFF\n");
        s.encoding = encoding_rs::GBK;
        let d = read_all(&s).remove(0).unwrap_err();
        assert_eq!(d.location.row, Some(1));
        assert_eq!(d.location.field.as_deref(), Some("name"));
        assert!(d.message.contains("GBK"), "{d}");
    }

    #[test]
    fn semicolon_and_tab_delimiters() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(&dir, b"email;name\na@x.org;Ann, Jr.\n");
        s.delimiter = b';';
        assert_eq!(&ok(read_all(&s))[0].values[1], "Ann, Jr.");
        let mut s = spec(&dir, b"name\temail\nAnn;Bo\ta@x.org\n");
        s.delimiter = b'\t';
        let rows = ok(read_all(&s));
        assert_eq!(rows[0].email, "a@x.org");
        assert_eq!(&rows[0].values[0], "Ann;Bo");
    }

    #[test]
    fn quoted_fields_with_commas_and_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            &dir,
            b"email,note\na@x.org,\"one, two\nthree \"\"q\"\"\"\nb@x.org,plain\n",
        );
        let rows = ok(read_all(&s));
        assert_eq!(&rows[0].values[1], "one, two\nthree \"q\"");
        // The second row starts on physical line 4 because of the embedded newline.
        assert_eq!((rows[1].row, rows[1].line), (2, 4));
    }

    #[test]
    fn ragged_row_is_reported_and_reading_continues() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            &dir,
            b"email,name\na@x.org,Ann,extra\nb@x.org\nc@x.org,Cy\n",
        );
        let items = read_all(&s);
        assert_eq!(items.len(), 3);
        let d = items[0].as_ref().unwrap_err();
        assert_eq!((d.location.row, d.location.line), (Some(1), Some(2)));
        assert!(
            d.message.contains("expected 2") && d.message.contains("found 3"),
            "{d}"
        );
        let d = items[1].as_ref().unwrap_err();
        assert!(d.message.contains("found 1"), "{d}");
        assert_eq!(items[2].as_ref().unwrap().email, "c@x.org");
    }

    #[test]
    fn invalid_utf8_names_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            &dir,
            b"email,name\na@x.org,Ann\nb@x.org,B\xE9a\nc@x.org,Cy\n",
        );
        let items = read_all(&s);
        let d = items[1].as_ref().unwrap_err();
        assert_eq!(d.location.row, Some(2));
        assert_eq!(d.location.line, Some(3));
        assert_eq!(d.location.field.as_deref(), Some("name"));
        let shown = d.to_string();
        assert!(
            shown.contains("row 2") && shown.contains("\"name\""),
            "{shown}"
        );
        assert!(items[2].is_ok());
    }

    #[test]
    fn missing_email_column() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&dir, b"mail,name\na@x.org,Ann\n");
        let err = RecipientReader::open(&s).err().unwrap();
        let Error::Invalid(d) = err else {
            panic!("{err:?}")
        };
        assert_eq!(d[0].location.line, Some(1));
        assert_eq!(d[0].location.file, s.file);
        assert!(
            d[0].message.contains("\"mail\", \"name\""),
            "{}",
            d[0].message
        );
        // A header that was split with the wrong delimiter gets a hint.
        let s = spec(&dir, b"email;name\na@x.org;Ann\n");
        let msg = RecipientReader::open(&s).err().unwrap().to_string();
        assert!(msg.contains("delimiter"), "{msg}");
    }

    #[test]
    fn email_column_matches_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&dir, b"Name,E-Mail\nAnn,a@x.org\n");
        let mut s2 = s.clone();
        s2.email_column = "e-mail".into();
        let rows = ok(read_all(&s2));
        assert_eq!(rows[0].email, "a@x.org");
    }

    #[test]
    fn missing_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(&dir, b"");
        assert!(matches!(
            RecipientReader::open(&s).err().unwrap(),
            Error::Invalid(_)
        ));
        s.file = dir.path().join("absent.csv");
        assert!(matches!(
            RecipientReader::open(&s).err().unwrap(),
            Error::NoInput { .. }
        ));
    }

    #[test]
    fn invalid_and_empty_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&dir, b"email,name\nnot-an-address,A\n ,B\nok@x.org,C\n");
        let items = read_all(&s);
        let d = items[0].as_ref().unwrap_err();
        assert_eq!(d.location.field.as_deref(), Some("email"));
        assert!(d.message.contains("invalid address"), "{d}");
        assert!(items[1].as_ref().unwrap_err().message.contains("empty"));
        assert!(items[2].is_ok());
    }

    #[test]
    fn a_long_list_is_read_in_little_memory_per_row() {
        // Duplicate detection is what grows with the list: at most about
        // 20 bytes a row, also while its table grows (a HashMap<u64, u32>
        // took about 33 bytes a row at its peak here).
        let dir = tempfile::tempdir().unwrap();
        let rows = 100_000;
        let mut csv = b"email,name\n".to_vec();
        for i in 0..rows {
            csv.extend_from_slice(format!("user{i}@example.com,N{i}\n").as_bytes());
        }
        csv.extend_from_slice(b"USER7@example.com,again\n");
        let s = spec(&dir, &csv);
        let (_, peak, last) = crate::test_alloc::cost(|| {
            let mut reader = RecipientReader::open(&s).unwrap();
            reader.by_ref().last().unwrap().unwrap()
        });
        assert_eq!(last.duplicate_of, Some(8));
        let per_row = peak as f64 / rows as f64;
        assert!(per_row <= 26.0, "{per_row:.1} bytes a row at the peak");
    }

    #[test]
    fn duplicates_are_marked_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            &dir,
            b"email\na@x.org\nb@x.org\nA@X.org\nbad\nb@x.org\nc@x.org\n",
        );
        let items = read_all(&s);
        let dup: Vec<Option<u64>> = items
            .iter()
            .map(|r| r.as_ref().ok().and_then(|r| r.duplicate_of))
            .collect();
        assert_eq!(dup, vec![None, None, Some(1), None, Some(2), None]);
    }

    #[test]
    fn an_unterminated_quote_names_the_line_it_opened_on() {
        let dir = tempfile::tempdir().unwrap();
        // Row 2 opens a quote on line 3 that never closes: rows 3 and 4
        // would silently become part of its value.
        let s = spec(
            &dir,
            b"email,name\na@x.org,\"Ann \"\"A\"\"\"\nb@x.org,\"Bob\nc@x.org,Cy\nd@x.org,Di\n",
        );
        let items = read_all(&s);
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(&items[0].as_ref().unwrap().values[1], "Ann \"A\"");
        let d = items[1].as_ref().unwrap_err();
        assert_eq!(d.location.file, s.file);
        assert_eq!((d.location.line, d.location.row), (Some(3), Some(2)));
        assert!(
            d.message.contains("line 3") && d.message.contains("never closed"),
            "{d}"
        );
        assert!(d.to_string().contains("r.csv:3"), "{d}");
    }

    #[test]
    fn a_quote_opened_after_a_multiline_value_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            &dir,
            b"email,note\na@x.org,\"one\ntwo\"\nb@x.org,x\"y\nc@x.org,\"open\n\nmore\n",
        );
        let items = read_all(&s);
        // A quote inside an unquoted value is text, as csv reads it.
        assert_eq!(&items[1].as_ref().unwrap().values[1], "x\"y");
        let d = items[2].as_ref().unwrap_err();
        assert_eq!(d.location.line, Some(5), "{d}");
        assert!(d.message.contains("lines 5-8"), "{d}");
    }

    #[test]
    fn an_unterminated_quote_in_the_header_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&dir, b"email,\"name\na@x.org,Ann\n");
        let err = RecipientReader::open(&s).err().unwrap();
        let Error::Invalid(d) = err else {
            panic!("{err:?}")
        };
        assert_eq!(d[0].location.line, Some(1));
        assert!(d[0].message.contains("never closed"), "{}", d[0]);
    }

    #[test]
    fn closed_quotes_at_the_end_of_the_file_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [
            &b"email,name\na@x.org,\"Ann\""[..],
            b"email,name\na@x.org,\"Ann\"\"\"\r\n",
            b"email;name\r\na@x.org;\"\"\r\nb@x.org;\"x;\ny\"",
        ] {
            let mut s = spec(&dir, bytes);
            s.delimiter = if bytes.contains(&b';') { b';' } else { b',' };
            let rows = ok(read_all(&s));
            assert!(!rows.is_empty());
        }
    }

    #[test]
    fn blank_rows_are_skipped_but_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&dir, b"email,name\na@x.org,A\n,\n , \nb@x.org,B\n");
        let rows = ok(read_all(&s));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].row, 4);
    }
}
