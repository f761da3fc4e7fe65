//! Passwords from `password_env`, `password_file` or `password_command`; never from YAML.
//!
//! A [`Secret`] prints as `***` in every format, so it cannot leak through a
//! `{:?}` in a log line or an error. Errors name the variable, file or
//! command, never the value or the command's output. A password file that
//! group or others can read is refused, as ssh refuses such private keys.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::PasswordSource;
use crate::error::{Error, Result};

/// A password or token; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the AUTH exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: do not leave the password in freed heap memory.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// How long a `password_command` may run when no other limit is given
/// (the default `smtp.timeout`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Fetch the password from its source; `Ok(None)` for [`PasswordSource::None`].
pub fn resolve(source: &PasswordSource) -> Result<Option<Secret>> {
    resolve_within(source, COMMAND_TIMEOUT)
}

/// Like [`resolve`], with a `password_command` stopped (killed) when it runs
/// longer than `timeout`: an authentication error (exit 77) that says so.
pub fn resolve_within(source: &PasswordSource, timeout: Duration) -> Result<Option<Secret>> {
    match source {
        PasswordSource::None => Ok(None),
        PasswordSource::Env(name) => from_env(name).map(Some),
        PasswordSource::File(path) => from_file(path).map(Some),
        PasswordSource::Command(cmd) => from_command(cmd, timeout).map(Some),
    }
}

fn from_env(name: &str) -> Result<Secret> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Err(Error::Auth(format!(
            "password_env: the environment variable {name} is empty"
        ))),
        Ok(v) => Ok(Secret(v)),
        Err(std::env::VarError::NotPresent) => Err(Error::Auth(format!(
            "password_env: the environment variable {name} is not set"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Auth(format!(
            "password_env: the environment variable {name} is not valid UTF-8"
        ))),
    }
}

fn from_file(path: &std::path::Path) -> Result<Secret> {
    let file = std::fs::File::open(path).map_err(|e| Error::no_input(path, &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file.metadata().map_err(|e| Error::no_input(path, &e))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Error::NoInput {
                path: path.to_path_buf(),
                message: format!(
                    "password_file is accessible by group or others (mode {:o}); \
                     mailshot refuses it, like ssh does with keys: run `chmod 600 {}`",
                    mode & 0o777,
                    path.display()
                ),
            });
        }
    }
    let line = first_line(file).map_err(|e| Error::NoInput {
        path: path.to_path_buf(),
        message: format!("password_file: {e}"),
    })?;
    line.ok_or_else(|| Error::NoInput {
        path: path.to_path_buf(),
        message: "password_file is empty".into(),
    })
}

fn from_command(cmd: &str, timeout: Duration) -> Result<Secret> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Inherited so that gpg/pass prompts and errors reach the user.
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            Error::Auth(format!(
                "password_command `{cmd}` could not be started: {e}"
            ))
        })?;
    // Read on a thread of its own, so a command that writes much cannot
    // block on a full pipe while we wait for it to exit.
    let mut pipe = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(p) = pipe.as_mut() {
            let _ = p.take(64 * 1024).read_to_end(&mut out);
        }
        out
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                // The shell's children too: one left running would keep
                // the inherited stderr open for whoever reads it.
                let tree = descendants(child.id());
                let _ = child.kill();
                kill_all(&tree);
                let _ = child.wait();
                // The reader ends when the pipe closes; it is not waited for.
                drop(reader);
                return Err(Error::Auth(format!(
                    "password_command `{cmd}` did not finish within {}s (smtp.timeout) \
                     and was stopped",
                    timeout.as_secs_f64().round()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(Error::Auth(format!("password_command `{cmd}`: {e}")));
            }
        }
    };
    let stdout = reader.join().unwrap_or_default();
    if !status.success() {
        let mut stdout = stdout;
        stdout.fill(0);
        return Err(Error::Auth(format!(
            "password_command `{cmd}` failed ({status})"
        )));
    }
    // The output buffer holds the password; wipe it when done.
    let mut stdout = stdout;
    let line = first_line(&stdout[..]);
    stdout.fill(0);
    std::hint::black_box(&stdout);
    match line {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(Error::Auth(format!(
            "password_command `{cmd}` printed nothing"
        ))),
        Err(e) => Err(Error::Auth(format!("password_command `{cmd}`: {e}"))),
    }
}

/// The processes below `root`, children before grandchildren (Linux `/proc`;
/// elsewhere none, and only the shell is stopped).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|&&(_, pp)| pp == p)
                .map(|&(c, _)| c),
        );
        i += 1;
    }
    tree.remove(0);
    tree
}

fn kill_all(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    // kill(1) rather than a libc binding: this path runs once, on a timeout.
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The first line without its line ending; `None` if it is empty.
fn first_line(source: impl Read) -> std::result::Result<Option<Secret>, String> {
    let mut buf = Vec::new();
    BufReader::new(source)
        .read_until(b'\n', &mut buf)
        .map_err(|e| e.to_string())?;
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    let value = match String::from_utf8(buf) {
        Ok(s) => Secret(s),
        Err(e) => {
            let mut bytes = e.into_bytes();
            bytes.fill(0);
            std::hint::black_box(&bytes);
            return Err("the password is not valid UTF-8".into());
        }
    };
    Ok(if value.0.is_empty() {
        None
    } else {
        Some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn none_source() {
        assert!(resolve(&PasswordSource::None).unwrap().is_none());
    }

    #[test]
    fn env_source() {
        // A name unique to this test: tests run in parallel threads.
        let name = "MAILSHOT_TEST_SECRET_ENV_7F3A";
        std::env::set_var(name, "s3cret");
        let got = resolve(&PasswordSource::Env(name.into())).unwrap().unwrap();
        assert_eq!(got.expose(), "s3cret");
        std::env::remove_var(name);
        let err = resolve(&PasswordSource::Env(name.into())).unwrap_err();
        assert!(matches!(err, Error::Auth(_)));
        assert!(err.to_string().contains(name), "{err}");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[cfg(unix)]
    #[test]
    fn file_source_checks_mode_and_reads_first_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"p@ss word\r\nsecond line\n").unwrap();
        drop(f);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve(&PasswordSource::File(path.clone())).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(!msg.contains("p@ss"), "{msg}");
        assert!(matches!(err, Error::NoInput { .. }));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let got = resolve(&PasswordSource::File(path.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), "p@ss word");

        let missing = dir.path().join("nope");
        assert!(matches!(
            resolve(&PasswordSource::File(missing)).unwrap_err(),
            Error::NoInput { .. }
        ));
    }

    #[test]
    fn command_source() {
        let got = resolve(&PasswordSource::Command(
            "printf 'tok3n\\nignored\\n'".into(),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(got.expose(), "tok3n");

        // stdin is null: a command reading it sees EOF instead of hanging.
        let got = resolve(&PasswordSource::Command("cat; echo fromcmd".into()))
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), "fromcmd");

        // The output ("42leak") differs from the command text, so it can be
        // told apart from the command named in the message.
        let err =
            resolve(&PasswordSource::Command("echo $((6*7))leak; exit 3".into())).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Auth(_)));
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(!msg.contains("42leak"), "{msg}");

        let err = resolve(&PasswordSource::Command("true".into())).unwrap_err();
        assert!(err.to_string().contains("printed nothing"));
    }

    #[test]
    fn a_command_that_hangs_is_stopped_with_what_it_started() {
        let started = Instant::now();
        // A pipeline: the shell cannot exec the sleep, so it has a child.
        let source = PasswordSource::Command("sleep 60 | cat".into());
        let err = resolve_within(&source, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, Error::Auth(_)));
        let msg = err.to_string();
        assert!(msg.contains("did not finish"), "{msg}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        // A quick command is unaffected by the limit.
        let got = resolve_within(
            &PasswordSource::Command("echo quick".into()),
            Duration::from_secs(10),
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.expose(), "quick");
    }
}
