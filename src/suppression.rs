//! The suppression list: addresses that are never sent to again, kept in
//! one or more CSV files with an `email` column (the job's `suppress` key).
//!
//! Reading is done once per run, into a set of lowercased addresses (a
//! mailbox's local part is case-sensitive in theory, but no provider treats
//! it so, and a list that missed `Alice@` for `alice@` would fail its one
//! job). Adding appends rows to the first file, creating it with a header
//! when missing, and syncs the file before returning: what was learned is on
//! disk before it changes what is sent next.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Location, Result};

/// The header of a suppression file mailshot creates.
pub const HEADER: [&str; 3] = ["email", "reason", "added"];

/// The addresses of every `suppress` file, ready to be asked.
#[derive(Debug, Default, Clone)]
pub struct Suppression {
    addresses: HashSet<String>,
}

impl Suppression {
    /// Read every file; the first may be missing (it is created when an
    /// address is first added), the job's validation already required the others.
    pub fn load(files: &[PathBuf]) -> Result<Suppression> {
        let mut addresses = HashSet::new();
        for (i, path) in files.iter().enumerate() {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) if i == 0 && e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::no_input(path, &e)),
            };
            read_into(path, file, &mut addresses)?;
        }
        Ok(Suppression { addresses })
    }

    /// Whether `email` is suppressed (case-insensitively).
    pub fn contains(&self, email: &str) -> bool {
        !self.addresses.is_empty() && self.addresses.contains(&normalize(email))
    }

    /// How many distinct addresses the files hold.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Whether no address is suppressed.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }
}

/// The form addresses are compared in.
fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

fn read_into(path: &Path, file: File, out: &mut HashSet<String>) -> Result<()> {
    let bad = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Io(_) => Error::no_input(path, &io::Error::other(e)),
        _ => Error::invalid(
            Location {
                line: e.position().map(|p| p.line()),
                ..Location::file(path)
            },
            format!("not a readable CSV file: {e}"),
        ),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(io::BufReader::new(file));
    let headers = reader.headers().map_err(bad)?.clone();
    let Some(column) = headers.iter().position(|h| {
        h.trim()
            .trim_start_matches('\u{feff}')
            .eq_ignore_ascii_case("email")
    }) else {
        return Err(Error::invalid(
            Location {
                line: Some(1),
                ..Location::file(path)
            },
            "a suppression file needs an `email` column in its first line",
        ));
    };
    for record in reader.records() {
        let record = record.map_err(bad)?;
        if let Some(email) = record.get(column).map(normalize) {
            if !email.is_empty() {
                out.insert(email);
            }
        }
    }
    Ok(())
}

/// Append `(email, reason)` rows to `path`, creating it (and its folder)
/// with [`HEADER`] when missing, and sync it. Rows follow the file's own header: the address goes
/// in its `email` column, the reason and the time in `reason` and `added`
/// when it has them.
pub fn append(path: &Path, entries: &[(String, String)], added: &str) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let existing = match File::open(path) {
        Ok(f) => Some(
            csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(io::BufReader::new(f))
                .headers()
                .map_err(io::Error::other)?
                .iter()
                .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
                .collect::<Vec<_>>(),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if existing.is_none() {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let header: Vec<String> = match existing {
        Some(h) if h.iter().any(|c| c == "email") => h,
        Some(_) => {
            return Err(io::Error::other(format!(
                "{} has no `email` column",
                path.display()
            )))
        }
        None => HEADER.iter().map(|s| s.to_string()).collect(),
    };
    let mut start = Vec::new();
    if file.metadata()?.len() > 0 && !ends_with_newline(path)? {
        // A file edited by hand may lack its last line break.
        start.push(b'\n');
    }
    let mut out = csv::WriterBuilder::new().from_writer(start);
    if file.metadata()?.len() == 0 {
        out.write_record(&header).map_err(io::Error::other)?;
    }
    for (email, reason) in entries {
        let row: Vec<&str> = header
            .iter()
            .map(|c| match c.as_str() {
                "email" => email.as_str(),
                "reason" => reason.as_str(),
                "added" => added,
                _ => "",
            })
            .collect();
        out.write_record(&row).map_err(io::Error::other)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?;
    file.write_all(&bytes)?;
    file.sync_data()
}

fn ends_with_newline(path: &Path) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_match_whatever_their_case_and_a_missing_first_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("none-yet.csv");
        let second = dir.path().join("old.csv");
        std::fs::write(
            &second,
            "name,Email\nA,Alice@Example.COM\nB, bob@example.com \n",
        )
        .unwrap();
        let s = Suppression::load(&[first, second]).unwrap();
        assert!(s.contains("alice@example.com"));
        assert!(s.contains("BOB@example.com"));
        assert!(!s.contains("carol@example.com"));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_file_that_is_not_utf8_csv_is_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.csv");
        std::fs::write(&f, b"email\na@example.com\n\xff\xfe@example.com\n").unwrap();
        let err = Suppression::load(&[f]).unwrap_err();
        assert_eq!(err.exit_code() as i32, 65, "{err}");
        assert!(err.to_string().contains("s.csv"), "{err}");
    }

    #[test]
    fn a_file_without_an_email_column_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.csv");
        std::fs::write(&f, "address\na@example.com\n").unwrap();
        let err = Suppression::load(&[f]).unwrap_err();
        assert_eq!(err.exit_code() as i32, 65, "{err}");
        assert!(err.to_string().contains("`email` column"), "{err}");
    }

    #[test]
    fn appending_creates_the_file_then_follows_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lists/new/s.csv");
        append(
            &f,
            &[("a@example.com".into(), "550 5.1.1 no such user".into())],
            "T1",
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "email,reason,added\na@example.com,550 5.1.1 no such user,T1\n"
        );
        let g = dir.path().join("hand.csv");
        std::fs::write(&g, "note,email\nx,b@example.com").unwrap();
        append(&g, &[("c@example.com".into(), "hard".into())], "T2").unwrap();
        assert_eq!(
            std::fs::read_to_string(&g).unwrap(),
            "note,email\nx,b@example.com\n,c@example.com\n"
        );
        let s = Suppression::load(&[f, g]).unwrap();
        assert!(
            s.contains("a@example.com")
                && s.contains("b@example.com")
                && s.contains("c@example.com")
        );
    }
}
