//! YAML input safety and errors: nesting depth refused before serde_yaml
//! runs, and serde_yaml's errors located at their file, line and column.

use std::path::Path;

use crate::error::{Error, Location, Result};

const PASSWORD_KEY_ADVICE: &str = "`password` is not accepted in a YAML file (it would sit in clear text \
next to the job); use password_env (an environment variable), password_file (a file only you can read) \
or password_command (e.g. \"pass show smtp\")";

/// Deepest `[`/`{` nesting accepted in a YAML file; a job needs two or three.
pub const MAX_YAML_NESTING: usize = 64;

/// Refuse flow collections nested deeper than [`MAX_YAML_NESTING`] before
/// the YAML parser sees them: its scanner takes quadratic time in the
/// nesting (100,000 `[` take many seconds). Brackets inside quoted scalars
/// and comments do not count; in plain text they count only while open,
/// so ordinary text with brackets passes.
pub(super) fn check_nesting(path: &Path, text: &str) -> Result<()> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut prev = b' ';
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(q) = quote {
                let escaped = (b == b'\\' && q == b'"')
                    || (b == q && q == b'\'' && bytes.get(i + 1) == Some(&b'\''));
                if escaped {
                    // The next byte belongs to the scalar.
                    i += 1;
                } else if b == q {
                    quote = None;
                }
                i += 1;
                prev = b;
                continue;
            }
            let token_start = prev.is_ascii_whitespace() || (depth > 0 && b"[{,:".contains(&prev));
            match b {
                b'#' if prev.is_ascii_whitespace() => break,
                b'"' | b'\'' if token_start => quote = Some(b),
                b'[' | b'{' if token_start || depth > 0 => {
                    depth += 1;
                    if depth > MAX_YAML_NESTING {
                        return Err(Error::invalid(
                            Location {
                                file: path.to_path_buf(),
                                line: Some(n as u64 + 1),
                                column: Some(line[..i].chars().count() as u64 + 1),
                                ..Default::default()
                            },
                            format!(
                                "YAML nested more than {MAX_YAML_NESTING} levels deep; \
                                 a job needs only a few"
                            ),
                        ));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = b;
            i += 1;
        }
    }
    Ok(())
}

/// serde_yaml error → Invalid with the file, line and column.
pub(super) fn yaml_error(file: &Path, err: &serde_yaml::Error) -> Error {
    let mut message = err.to_string();
    // The location goes into `Location`; do not say it twice.
    if let Some(i) = message.rfind(" at line ") {
        let tail = &message[i + " at line ".len()..];
        if tail
            .split_once(" column ")
            .is_some_and(|(l, c)| l.parse::<u64>().is_ok() && c.parse::<u64>().is_ok())
        {
            message.truncate(i);
        }
    }
    if message.contains("unknown field `password`") {
        message = PASSWORD_KEY_ADVICE.to_string();
    }
    let loc = err.location();
    Error::invalid(
        Location {
            file: file.to_path_buf(),
            line: loc.as_ref().map(|l| l.line() as u64),
            column: loc.as_ref().map(|l| l.column() as u64),
            ..Default::default()
        },
        message,
    )
}
