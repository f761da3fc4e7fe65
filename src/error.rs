//! Error kinds and their sysexits exit codes (as sendmail and msmtp use).
//!
//! Data errors carry where they happened (file, line or CSV row, column) so the
//! user can fix the input; reply errors carry the server's reply.

use std::fmt;
use std::path::PathBuf;

/// Exit codes from `sysexits.h`, as the README's "Big runs" section lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every recipient accepted.
    Ok = 0,
    /// Command line usage error.
    Usage = 64,
    /// Invalid job, CSV or template; nothing sent.
    DataErr = 65,
    /// An input file is missing or unreadable.
    NoInput = 66,
    /// Some recipients were permanently rejected.
    Rejected = 67,
    /// Internal software error.
    Software = 70,
    /// The server could not be reached.
    Unavailable = 69,
    /// An output file (journal, report, outbox) cannot be created.
    CantCreat = 73,
    /// Writing an output file failed part way (e.g. disk full); sending stopped.
    IoErr = 74,
    /// Transient failures or uncertain messages remain; rerun to resume.
    TempFail = 75,
    /// Authentication failed.
    NoPerm = 77,
}

/// Where in the input a problem is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line in the file (YAML line, template line, CSV physical line).
    pub line: Option<u64>,
    /// 1-based column in the line, when known.
    pub column: Option<u64>,
    /// 1-based CSV data row (the header is row 0), when the problem is about a recipient.
    pub row: Option<u64>,
    /// The CSV column name or template variable concerned, when known.
    pub field: Option<String>,
}

impl Location {
    /// A location that names only a file.
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Location {
            file: file.into(),
            ..Default::default()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        let mut parts = Vec::new();
        if let Some(row) = self.row {
            parts.push(format!("row {row}"));
        }
        if let Some(field) = &self.field {
            parts.push(format!("column \"{field}\""));
        }
        if self.line.is_none() {
            if let Some(col) = self.column {
                parts.push(format!("column {col}"));
            }
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// One problem found in the user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where it is.
    pub location: Location,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `location`.
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location == Location::default() {
            // A note about the listing itself, not about one place.
            return f.write_str(&self.message);
        }
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// How many problems one error lists; the rest are only counted, so a
/// million bad rows cannot flood the terminal.
pub const MAX_LISTED: usize = 50;

/// The problems found in one pass over the input: the first
/// [`MAX_LISTED`] kept, the rest counted (memory stays flat too).
#[derive(Debug, Default)]
pub struct Problems {
    listed: Vec<Diagnostic>,
    unlisted: u64,
}

impl Problems {
    /// Record one problem.
    pub fn push(&mut self, d: Diagnostic) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(d);
        } else {
            self.unlisted += 1;
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// The [`Error::Invalid`] listing the kept problems, ending with a
    /// count of the others when there are any.
    pub fn into_error(self) -> Error {
        let mut listed = self.listed;
        if self.unlisted > 0 {
            let noun = if self.unlisted == 1 {
                "error"
            } else {
                "errors"
            };
            listed.push(Diagnostic::new(
                Location::default(),
                format!("… and {} more {noun}", group_digits(self.unlisted)),
            ));
        }
        Error::Invalid(listed)
    }
}

impl Extend<Diagnostic> for Problems {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, iter: I) {
        for d in iter {
            self.push(d);
        }
    }
}

/// `999950` → `999,950`.
fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Every error mailshot reports; each maps to one exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
    /// An input file is missing or unreadable.
    #[error("{}: {message}", path.display())]
    NoInput {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        message: String,
    },
    /// The job, CSV or templates are invalid: every problem found.
    #[error("{}", format_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// The server could not be reached or refused the session.
    #[error("{0}")]
    Unavailable(String),
    /// Authentication failed.
    #[error("{0}")]
    Auth(String),
    /// A transient condition; rerun to resume.
    #[error("{0}")]
    TempFail(String),
    /// An output file (journal, report, outbox) cannot be created or opened.
    #[error("{0}")]
    CantCreate(String),
    /// Writing an output file failed part way (e.g. disk full).
    #[error("{0}")]
    Output(String),
    /// Anything else (I/O on outputs, internal errors).
    #[error("{0}")]
    Software(String),
}

fn format_diagnostics(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// The sysexits code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::NoInput { .. } => ExitCode::NoInput,
            Error::Invalid(_) => ExitCode::DataErr,
            Error::Unavailable(_) => ExitCode::Unavailable,
            Error::Auth(_) => ExitCode::NoPerm,
            Error::TempFail(_) => ExitCode::TempFail,
            Error::CantCreate(_) => ExitCode::CantCreat,
            Error::Output(_) => ExitCode::IoErr,
            Error::Software(_) => ExitCode::Software,
        }
    }

    /// A single-diagnostic invalid-input error.
    pub fn invalid(location: Location, message: impl Into<String>) -> Self {
        Error::Invalid(vec![Diagnostic::new(location, message)])
    }

    /// A missing/unreadable file error from an I/O error.
    pub fn no_input(path: impl Into<PathBuf>, err: &std::io::Error) -> Self {
        Error::NoInput {
            path: path.into(),
            message: err.to_string(),
        }
    }
}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(row: u64) -> Diagnostic {
        Diagnostic::new(
            Location {
                row: Some(row),
                ..Location::file("r.csv")
            },
            "invalid address",
        )
    }

    #[test]
    fn a_long_listing_ends_with_a_count_of_the_rest() {
        let mut p = Problems::default();
        p.extend((1..=1_000_000).map(diag));
        let err = p.into_error();
        assert_eq!(err.exit_code(), ExitCode::DataErr);
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), MAX_LISTED + 1, "{text}");
        assert_eq!(lines[0], "r.csv (row 1): invalid address");
        assert_eq!(lines[49], "r.csv (row 50): invalid address");
        assert_eq!(lines[50], "… and 999,950 more errors");
    }

    #[test]
    fn a_short_listing_is_whole() {
        let mut p = Problems::default();
        assert!(p.is_empty());
        p.extend((1..=50).map(diag));
        let text = p.into_error().to_string();
        assert_eq!(text.lines().count(), 50);
        assert!(!text.contains("more error"), "{text}");
        let mut p = Problems::default();
        p.extend((1..=51).map(diag));
        assert!(p.into_error().to_string().ends_with("\n… and 1 more error"));
    }

    #[test]
    fn digits_are_grouped_in_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(999_950), "999,950");
        assert_eq!(group_digits(12_345_678), "12,345,678");
    }
}
