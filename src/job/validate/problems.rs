//! The problems found while checking one YAML file, each located at its key
//! (see `job::position`), reported together.

use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, Error, Location, Result};
use crate::job::position::key_position;

/// Problems found so far; all are reported together.
pub(super) struct Problems<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    pub(super) diags: Vec<Diagnostic>,
    pub(super) missing: Vec<PathBuf>,
    /// Where an `smtp:`-style section really sits (e.g. `accounts.work`),
    /// so its problems point at the right key.
    pub(super) section: Option<Vec<String>>,
}

impl<'a> Problems<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Problems {
            file,
            text,
            diags: Vec::new(),
            missing: Vec::new(),
            section: None,
        }
    }

    /// Record a problem at the key `path` (e.g. `["smtp", "rate"]`).
    pub(super) fn at(&mut self, path: &[&str], message: impl Into<String>) {
        let (line, column) = match (&self.section, path.split_first()) {
            (Some(section), Some((&"smtp", rest))) => {
                let full: Vec<&str> = section
                    .iter()
                    .map(String::as_str)
                    .chain(rest.iter().copied())
                    .collect();
                key_position(self.text, &full)
            }
            _ => key_position(self.text, path),
        };
        self.diags.push(Diagnostic::new(
            Location {
                file: self.file.to_path_buf(),
                line,
                column,
                // `field` is shown as a CSV "column"; the messages name the key instead.
                ..Default::default()
            },
            message,
        ));
    }

    /// Resolve `value` against `dir`; record it if it is not a readable file.
    pub(super) fn input_file(&mut self, dir: &Path, key: &[&str], value: &str) -> PathBuf {
        let path = dir.join(value.trim());
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => self.at(key, format!("{} is not a file", path.display())),
            Err(_) => self.missing.push(path.clone()),
        }
        path
    }

    /// Invalid if any diagnostic (missing files listed too); else NoInput if a
    /// file is missing.
    pub(super) fn finish(self) -> Result<()> {
        if !self.diags.is_empty() {
            let mut diags = self.diags;
            diags.extend(
                self.missing
                    .iter()
                    .map(|m| Diagnostic::new(Location::file(m), "file not found")),
            );
            return Err(Error::Invalid(diags));
        }
        if let Some(first) = self.missing.first() {
            let mut message = "file not found".to_string();
            if self.missing.len() > 1 {
                let others: Vec<String> = self.missing[1..]
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect();
                message.push_str(&format!(" (also missing: {})", others.join(", ")));
            }
            return Err(Error::NoInput {
                path: first.clone(),
                message,
            });
        }
        Ok(())
    }
}
