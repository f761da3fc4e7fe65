//! An SMTP server with AUTH PLAIN and LOGIN (RFC 4954) over STARTTLS
//! (RFC 3207) or implicit TLS (RFC 8314): Debian's `python3-aiosmtpd`, run by
//! `auth_server.py` next to this file with the system Python.
//!
//! AUTH is only possible inside TLS; a wrong password gets 535 5.7.8; MAIL
//! before AUTH gets 530.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mailshot::smtp::net::tls::generate_pki;

use super::{files_with_suffix, wait_for_count, TestDir, SYSTEM_PYTHON};

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain listener that offers STARTTLS and requires it before AUTH.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// A running aiosmtpd; killed on drop.
pub struct AuthServer {
    child: Child,
    /// Held open: the script exits when its stdin closes.
    _stdin: Option<ChildStdin>,
    port: u16,
    ca_pem: String,
    dir: TestDir,
}

impl AuthServer {
    /// Starts the server on a free loopback port accepting `user`/`password`.
    /// Panics with a clear message if aiosmtpd is not installed.
    pub fn start(mode: TlsMode, user: &str, password: &str) -> AuthServer {
        let probe = Command::new(SYSTEM_PYTHON)
            .args(["-c", "import aiosmtpd"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            _ => panic!(
                "{SYSTEM_PYTHON} cannot import aiosmtpd: install the Debian package \
                 python3-aiosmtpd (scripts/test does)"
            ),
        }
        let dir = TestDir::new();
        let pki = generate_pki(&[]);
        let cert = dir.write("cert.pem", &pki.cert_pem);
        let key = dir.write("key.pem", &pki.key_pem);
        let out = dir.join("messages");
        std::fs::create_dir_all(&out).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/auth_server.py");
        let mode_arg = match mode {
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
        };
        let mut child = Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .arg(mode_arg)
            .arg("0")
            .arg(user)
            .arg(password)
            .arg(&cert)
            .arg(&key)
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        // Read READY on a thread so a hung interpreter cannot hang the test.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(|l| l.ok());
            let _ = tx.send(first);
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let ready = rx.recv_timeout(Duration::from_secs(20)).ok().flatten();
        let port = ready
            .as_deref()
            .and_then(|l| l.strip_prefix("READY "))
            .and_then(|p| p.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aiosmtpd did not report READY (got {ready:?})");
        };
        AuthServer {
            child,
            _stdin: stdin,
            port,
            ca_pem: pki.ca_pem,
            dir,
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed its certificate (for `localhost` and `127.0.0.1`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA to a file in the server's temp dir and returns its path.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.write("ca.pem", &self.ca_pem)
    }

    /// The stored messages (`Return-Path`, `X-Mailshot-Rcpt`, `X-Auth-User`
    /// headers prepended), in arrival order.
    pub fn messages(&self) -> Vec<PathBuf> {
        files_with_suffix(&self.dir.join("messages"), ".eml")
    }

    /// Waits until at least `n` messages are stored or `timeout` passes.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<PathBuf> {
        wait_for_count(n, timeout, Duration::from_millis(20), || self.messages())
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
