//! What the interop fixtures (`exim`, `haraka`, `smtp_server`) share: where
//! `scripts/test` installed the servers, the recipient policy file each
//! server reads on every RCPT, the copies each one stored per envelope
//! recipient, and the running server itself
//! ([`Listeners`]: its process, two listeners, CA and folder).
//!
//! Every fixture stores one file per (message, envelope recipient) with an
//! `X-Auth-User` header (the authenticated account) and an `X-Session`
//! header (which connection carried it), so a test can count the copies each
//! recipient received on the server side.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{wait_for_greeting, wait_for_listener, TestDir};

/// How long a fixture may take to start before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `scripts/test` puts the npm packages (`node/node_modules`):
/// `$MAILSHOT_TEST_CACHE`, else `~/.cache/mailshot-test`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MAILSHOT_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/mailshot-test")
}

/// The `node_modules` folder holding `Haraka` and `smtp-server`.
pub fn node_modules() -> PathBuf {
    let dir = cache_dir().join("node/node_modules");
    assert!(
        dir.join("Haraka").is_dir() && dir.join("smtp-server").is_dir(),
        "{} lacks Haraka or smtp-server: run scripts/test (it installs them from npm)",
        dir.display()
    );
    dir
}

/// A file in the support folder, e.g. a server script.
pub fn support_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// Writes the recipient policy read by the server on every RCPT: each
/// `(address, code)` is refused with that code (5xx or 4xx); any other
/// address is accepted. An empty list lifts every refusal.
pub fn write_policy(path: &Path, refusals: &[(&str, u16)]) {
    let text: String = refusals
        .iter()
        .map(|(addr, code)| format!("{} {code}\n", addr.to_ascii_lowercase()))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write policy");
    std::fs::rename(&tmp, path).expect("install policy");
}

/// One stored copy: who it was for and the message as the server kept it.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The envelope recipient, lowercased.
    pub rcpt: String,
    /// The stored bytes (the fixture's headers first).
    pub data: Vec<u8>,
}

impl Copy {
    /// The value of the first header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.data, name)
    }
}

/// The value of the first header `name` in `data`, unfolded.
pub fn header(data: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let head = head.split("\n\n").next().unwrap_or("");
    let mut found: Option<String> = None;
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(value) = found.as_mut() {
            if line.starts_with([' ', '\t']) {
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            if key.eq_ignore_ascii_case(name) {
                found = Some(value.trim().to_owned());
            }
        }
    }
    found
}

/// Copies stored as `DIR/<recipient>/*.eml`.
pub fn copies_by_folder(mail: &Path) -> Vec<Copy> {
    let mut copies = Vec::new();
    let Ok(boxes) = std::fs::read_dir(mail) else {
        return copies;
    };
    for entry in boxes.filter_map(Result::ok) {
        let rcpt = entry.file_name().to_string_lossy().into_owned();
        for file in super::files_with_suffix(&entry.path(), ".eml") {
            let data = std::fs::read(&file).expect("read stored copy");
            copies.push(Copy {
                rcpt: rcpt.clone(),
                data,
            });
        }
    }
    copies
}

/// How many copies each envelope recipient got.
pub fn count(copies: &[Copy]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for c in copies {
        *n.entry(c.rcpt.clone()).or_insert(0) += 1;
    }
    n
}

/// Polls `copies` until it returns at least `n` or `timeout` passes, then
/// waits a little longer to catch extra copies (duplicates) still arriving.
pub fn wait_for(copies: impl Fn() -> Vec<Copy>, n: usize, timeout: Duration) -> Vec<Copy> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = copies();
        if got.len() >= n || Instant::now() >= deadline {
            std::thread::sleep(Duration::from_millis(300));
            return copies();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running interop server: its process, a listener offering STARTTLS and
/// one with implicit TLS, the CA that signed its certificate, and the folder
/// it records into (`mail/`, `policy`); the process is killed on drop.
pub struct Listeners {
    /// The server process.
    pub child: Child,
    /// The listener that offers STARTTLS.
    pub starttls_port: u16,
    /// The implicit-TLS listener.
    pub tls_port: u16,
    /// The CA that signed the server certificate.
    pub ca_pem: String,
    /// The server's folder.
    pub dir: TestDir,
}

impl Listeners {
    /// Starts `cmd` (stdin empty, stdout and stderr into the file `log`) as
    /// the server behind these listeners.
    pub fn spawn(
        cmd: &mut Command,
        log: &Path,
        (starttls_port, tls_port): (u16, u16),
        ca_pem: String,
        dir: TestDir,
    ) -> Listeners {
        let out = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
        Listeners {
            child,
            starttls_port,
            tls_port,
            ca_pem,
            dir,
        }
    }

    /// Waits until the STARTTLS listener greets and the TLS one accepts;
    /// otherwise kills the process and fails the test with `log(dir)`.
    pub fn ready(mut self, name: &str, log: impl Fn(&Path) -> String) -> Self {
        let (starttls_port, tls_port) = (self.starttls_port, self.tls_port);
        if !wait_for_greeting(starttls_port, START_TIMEOUT)
            || !wait_for_listener(tls_port, START_TIMEOUT)
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "{name} did not start on 127.0.0.1:{starttls_port}/{tls_port}; log:\n{}",
                log(self.dir.path())
            );
        }
        self
    }

    /// Writes the CA to a file and returns its path.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.write("ca.pem", &self.ca_pem)
    }

    /// Refuses each `(address, code)` at RCPT from now on; `&[]` lifts all.
    pub fn set_refusals(&self, refusals: &[(&str, u16)]) {
        write_policy(&self.dir.join("policy"), refusals);
    }

    /// Every copy stored so far as `mail/<recipient>/*.eml`.
    pub fn copies(&self) -> Vec<Copy> {
        copies_by_folder(&self.dir.join("mail"))
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
