//! Fixtures shared by the integration tests: the one command builder
//! (`cmd`) and report reader (`report`), `mailshot capture` (`capture`),
//! the scripted fault server
//! (`fault`), a private Postfix (`postfix`), an aiosmtpd AUTH server
//! (`aiosmtpd`), a private Dovecot (`dovecot`), the interop servers Exim, Haraka and nodemailer's
//! smtp-server (`exim`, `haraka`, `smtp_server`, sharing `recording`), plus
//! small helpers (temp dirs, free ports, waiting for a greeting or a
//! count, chown/chmod, a raw SMTP line client).
//!
//! Every test binary that says `mod support;` compiles all of this, so unused
//! helpers are expected.
#![allow(dead_code)]

pub mod aiosmtpd;
pub mod capture;
pub mod chromium;
pub mod cmd;
pub mod dns;
pub mod dovecot;
pub mod exim;
pub mod exim_relay;
pub mod fault;
pub mod haraka;
pub mod postfix;
pub mod recording;
pub mod report;
pub mod slurm;
pub mod smtp_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now (bound once, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A temporary directory for job files, CSVs and outputs; removed on drop.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh empty directory.
    pub fn new() -> Self {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("mailshot-test-")
                .tempdir()
                .expect("create temp dir"),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `contents` to `rel` (creating parent directories) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// Reads `rel` as UTF-8 text.
    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        let path = self.join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Files directly in `rel` whose name ends with `suffix`, sorted by name.
    pub fn files_with_suffix(&self, rel: impl AsRef<Path>, suffix: &str) -> Vec<PathBuf> {
        files_with_suffix(&self.join(rel), suffix)
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Files directly in `dir` whose name ends with `suffix`, sorted by name; none if `dir` is missing.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(suffix) && !n.starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// One SMTP reply: the code and the text of every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text after `NNN-`/`NNN ` on each line.
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined by newlines, for `contains` checks.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A minimal line-level SMTP client for testing servers by hand, over plain
/// TCP or (after [`starttls`](RawClient::starttls)) rustls.
pub struct RawClient<S: Read + Write = TcpStream> {
    reader: BufReader<S>,
    sock: TcpStream,
}

/// A TLS stream as [`RawClient::starttls`] and [`RawClient::connect_tls`] make it.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_wrap(sock: TcpStream, ca_pem: &str, name: &str) -> TlsStream {
    let dir = TestDir::new();
    let ca = dir.write("ca.pem", ca_pem);
    let config = mailshot::smtp::net::tls::client_config(Some(&ca)).expect("client TLS config");
    let server_name = mailshot::smtp::net::tls::server_name(name).expect("server name");
    let conn = rustls::ClientConnection::new(config, server_name).expect("TLS client");
    rustls::StreamOwned::new(conn, sock)
}

impl RawClient<TcpStream> {
    /// Connects with a 10 s read timeout so a broken server fails the test instead of hanging it.
    pub fn connect(addr: SocketAddr) -> Self {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient {
            reader: BufReader::new(sock.try_clone().unwrap()),
            sock,
        }
    }

    /// Starts TLS on this connection (after the server's 220 to STARTTLS),
    /// trusting only `ca_pem` and verifying `name`. Fails if the handshake does.
    pub fn starttls(self, ca_pem: &str, name: &str) -> std::io::Result<RawClient<TlsStream>> {
        assert!(
            self.reader.buffer().is_empty(),
            "server bytes after the 220 would be lost (or injected)"
        );
        RawClient::handshake(self.sock, ca_pem, name)
    }

    /// Bytes the server sent that are buffered but not yet read as replies.
    pub fn buffered(&self) -> &[u8] {
        self.reader.buffer()
    }
}

impl RawClient<TlsStream> {
    /// Connects with implicit TLS (SMTPS), trusting only `ca_pem`.
    pub fn connect_tls(addr: SocketAddr, ca_pem: &str, name: &str) -> std::io::Result<Self> {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        RawClient::handshake(sock, ca_pem, name)
    }

    /// Completes a TLS handshake on `sock`, trusting only `ca_pem`.
    fn handshake(sock: TcpStream, ca_pem: &str, name: &str) -> std::io::Result<Self> {
        let mut tls = tls_wrap(sock.try_clone()?, ca_pem, name);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(RawClient {
            reader: BufReader::new(tls),
            sock,
        })
    }
}

impl<S: Read + Write> RawClient<S> {
    /// Changes how long a read waits before giving up (the reply is then `None`).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
    }

    /// Sends raw bytes as they are (several commands at once for pipelining).
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let w = self.reader.get_mut();
        w.write_all(bytes.as_ref()).expect("send to server");
        w.flush().expect("flush to server");
    }

    /// Reads one (possibly multi-line) reply; `None` on EOF, timeout or garbage.
    pub fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line.get(..3)?.parse().ok()?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Reads one reply, panicking on EOF.
    pub fn reply(&mut self) -> Reply {
        self.try_reply().expect("server closed the connection")
    }

    /// Sends `line` + CRLF and reads the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n"));
        self.reply()
    }

    /// Sends `line` + CRLF and checks the reply's code.
    pub fn expect_after(&mut self, line: &str, code: u16) -> Reply {
        let reply = self.cmd(line);
        assert_eq!(reply.code, code, "{line}: {reply:?}");
        reply
    }

    /// Reads one reply and checks its code.
    pub fn expect(&mut self, code: u16) -> Reply {
        let reply = self.reply();
        assert_eq!(reply.code, code, "unexpected reply {reply:?}");
        reply
    }

    /// Reads once: true if the server has closed the connection (EOF or
    /// reset), false if a byte arrived or the read timed out.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        match self.reader.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// Debian's Python, which has the distribution's `python3-*` packages; the
/// `python3` first on PATH may be another interpreter without them.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Runs `script` with [`SYSTEM_PYTHON`] and returns (success, stdout, stderr).
pub fn python(script: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(SYSTEM_PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {SYSTEM_PYTHON}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `port` on 127.0.0.1 greets with 220, or `timeout` passes.
pub fn wait_for_greeting(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(sock) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            if BufReader::new(&sock).read_line(&mut line).is_ok() && line.starts_with("220") {
                let _ = std::io::Write::write_all(&mut &sock, b"QUIT\r\n");
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits until something accepts TCP connections on `port` (an implicit-TLS
/// listener says nothing before the handshake).
pub fn wait_for_listener(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Calls `items` until it returns at least `n` of them or `timeout` passes
/// (checking every `every`), and returns the last answer.
pub fn wait_for_count<T>(
    n: usize,
    timeout: Duration,
    every: Duration,
    items: impl Fn() -> Vec<T>,
) -> Vec<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = items();
        if got.len() >= n || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(every);
    }
}

/// `chown -R OWNER PATH`, failing the test (with `hint`) if it fails.
pub fn chown(path: &Path, owner: &str, hint: &str) {
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg(owner)
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {owner} {}{hint}", path.display());
}

/// `chmod MODE PATH`, failing the test if it fails.
pub fn chmod(path: &Path, mode: &str) {
    let status = std::process::Command::new("chmod")
        .arg(mode)
        .arg(path)
        .status()
        .expect("run chmod");
    assert!(status.success(), "chmod {mode} {}", path.display());
}
