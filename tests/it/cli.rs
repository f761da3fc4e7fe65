//! Integration tests for the job becoming messages, driven from the
//! command line as a user would: `mailshot check`, `mailshot preview [--row N]`
//! and `mailshot run --dry-run --out DIR` on the shipped samples and on jobs
//! written into temp folders.
//!
//! Every message is read back with independent parsers (the `mail-parser`
//! crate and Python's `email` package) and compared with the inputs — the CSV
//! values, the job's literals and the attachment files — never with output
//! the program produced earlier.

mod addresses;
mod bad_input;
mod confinement;
mod corpus;
mod injection;
mod limits;
mod recipients;
mod samples;
mod settings;
mod templates;
mod threads;
mod wire;

use crate::support::cmd::{mailshot, Output};
use crate::support::{self, TestDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs the built `mailshot` with `args` in `cwd`, isolated from the user's
/// own configuration (a user config could otherwise supply an SMTP server)
/// by a config folder outside `cwd`.
pub fn mailshot_in(cwd: &Path, args: &[&str]) -> Output {
    mailshot(cwd, args).private_config().run()
}

/// The repository root (samples/ and templates/ live there).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` with its contents, to prove a failing command wrote nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                files.insert(path.clone(), Vec::new());
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                files.insert(path, bytes);
            }
        }
    }
    files
}

/// Asserts the folder holds exactly what it held before (no outbox, report,
/// journal or .eml appeared; nothing changed).
#[track_caller]
pub fn assert_unchanged(before: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path, what: &str) {
    let after = snapshot(dir);
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(added.is_empty(), "{what}: files appeared: {added:?}");
    assert_eq!(&after, before, "{what}: files changed");
}

/// The `.eml` files `run --dry-run` wrote into `dir`, by row number.
pub fn emls(dir: &Path) -> BTreeMap<u64, Vec<u8>> {
    support::files_with_suffix(dir, ".eml")
        .into_iter()
        .map(|p| {
            let row = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{} is not ROW.eml", p.display()));
            (row, std::fs::read(&p).expect("read eml"))
        })
        .collect()
}

/// Parses a message with mail-parser, panicking if it cannot.
pub fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(raw)
        .expect("mail-parser parses the message")
}

/// The header section of a message (up to the first empty line), as text.
pub fn header_section(raw: &[u8]) -> String {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header/body separator");
    String::from_utf8(raw[..end + 2].to_vec()).expect("headers are ASCII")
}

/// Names of the top-level header fields, lower-cased, in order.
pub fn header_names(raw: &[u8]) -> Vec<String> {
    header_section(raw)
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with([' ', '\t']))
        .map(|l| {
            l.split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect()
}

/// A job folder with a body template and a helper to write the job file.
pub struct JobDir {
    /// The folder.
    pub dir: TestDir,
}

impl JobDir {
    /// A fresh folder with `body.txt` = `Hi {{ name }}`.
    pub fn new() -> Self {
        let dir = TestDir::new();
        dir.write("body.txt", "Hi {{ name }}\n");
        JobDir { dir }
    }

    /// Writes `job.yaml` and returns its path.
    pub fn job(&self, yaml: &str) -> PathBuf {
        self.dir.write("job.yaml", yaml)
    }

    /// Writes the recipients file `r.csv`.
    pub fn csv(&self, bytes: impl AsRef<[u8]>) -> PathBuf {
        self.dir.write("r.csv", bytes)
    }

    /// `mailshot ARGS` run inside the folder.
    pub fn run(&self, args: &[&str]) -> Output {
        mailshot_in(self.dir.path(), args)
    }

    /// `mailshot run job.yaml --dry-run --out out`, which must exit `code`.
    pub fn dry_run_exits(&self, code: i32) -> Output {
        let out = self.dir.join("out");
        let run = self.run(&[
            "run",
            "job.yaml",
            "--dry-run",
            "--out",
            out.to_str().unwrap(),
        ]);
        run.expect_code(code);
        run
    }

    /// `mailshot run job.yaml --dry-run --out out`, which must succeed; the
    /// messages written, by row.
    pub fn dry_run(&self) -> BTreeMap<u64, Vec<u8>> {
        self.dry_run_exits(0);
        emls(&self.dir.join("out"))
    }
}

/// The minimal job: From, Subject, body.txt, r.csv, plus `extra` YAML lines.
pub fn simple_job(extra: &str) -> String {
    format!(
        "from: \"Sender <sender@example.com>\"\nsubject: \"Hello {{{{ name }}}}\"\ntext: body.txt\n{extra}\nrecipients:\n  file: r.csv\n"
    )
}
