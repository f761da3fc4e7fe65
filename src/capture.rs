//! The built-in capture SMTP server behind `mailshot capture`: accepts every
//! message and stores it as `DIR/<unix-nanos>-<seq>.eml`.
//!
//! It is a real, small ESMTP server (RFC 5321) with PIPELINING (RFC 2920),
//! CHUNKING/BDAT (RFC 3030), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), SIZE
//! (RFC 1870), ENHANCEDSTATUSCODES (RFC 2034/3463), STARTTLS (RFC 3207) with a
//! certificate from an ephemeral CA, and AUTH PLAIN/LOGIN (RFC 4954, 4616)
//! accepting any credentials. One thread per connection, std::net only.
//!
//! It bounds what a client can make it hold: [`Limits::max_connections`]
//! connections (and so threads) at once, with any more answered `421` and
//! closed; an idle timeout that is also a deadline for each whole line, so a
//! client trickling bytes is dropped like a silent one; the length of a line
//! and the size of a message.
//!
//! Replies are buffered and flushed only when the server must wait for more
//! input, as RFC 2920 section 3.1 allows, so a pipelined batch costs the client
//! a single round trip and the read buffer is never discarded between commands.
//! Each stored file starts with `Return-Path:` and `X-Mailshot-Rcpt:` headers
//! carrying the envelope, so tests can see Bcc recipients that the message
//! headers must not show.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::outputs::write_atomically;
use crate::smtp::net::tls::{generate_pki, server_config};

/// The SIZE limit advertised in EHLO (50 MiB).
pub const MAX_SIZE: u64 = 52_428_800;
/// Recipients accepted in one transaction before answering 452 (RFC 5321 4.5.3.1.8).
const MAX_RCPTS: usize = 1000;
/// Longest command line accepted; RFC 5321 says 512, extensions make it longer.
const MAX_COMMAND_LINE: usize = 4096;
/// Longest DATA line kept before the message is refused (RFC 5321 says 1000).
const MAX_DATA_LINE: usize = 1 << 20;
/// How long a refused connection may take to receive its 421.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the server lets clients make it hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (each has a thread); more get `421` and are closed.
    pub max_connections: usize,
    /// A client is dropped after sending nothing, or no whole line, for this
    /// long (RFC 5321 4.5.3.2.7 suggests 5 minutes).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(300),
        }
    }
}
/// The name the server greets with.
const HOSTNAME: &str = "mailshot-capture";
/// The file the ephemeral CA is written to inside the capture directory.
pub const CA_FILE_NAME: &str = "capture-ca.pem";

/// State shared by the accept loop and every connection thread.
struct Shared {
    dir: PathBuf,
    seq: AtomicU64,
    tls: Arc<rustls::ServerConfig>,
    stop: AtomicBool,
    limits: Limits,
    /// Connections being served; each gives its place up before it closes,
    /// so a client that saw the close can count on the place being free.
    active: AtomicUsize,
}

/// A bound, not yet running capture server.
pub struct CaptureServer {
    listener: TcpListener,
    shared: Arc<Shared>,
    ca_pem: String,
}

impl CaptureServer {
    /// Binds `addr`, creates `dir` if needed, and writes the ephemeral CA that
    /// signs the STARTTLS certificate to `dir/capture-ca.pem`.
    pub fn bind(addr: SocketAddr, dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let ip = local.ip().to_string();
        let pki = generate_pki(&[ip.as_str()]);
        let ca_path = dir.join(CA_FILE_NAME);
        write_atomically(&ca_path, pki.ca_pem.as_bytes())?;
        Ok(CaptureServer {
            listener,
            shared: Arc::new(Shared {
                dir,
                seq: AtomicU64::new(0),
                tls: server_config(&pki),
                stop: AtomicBool::new(false),
                limits: Limits::default(),
                active: AtomicUsize::new(0),
            }),
            ca_pem: pki.ca_pem,
        })
    }

    /// Serve within `limits` instead of [`Limits::default`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.limits = limits;
        }
        self
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The PEM of the CA that signed the STARTTLS certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The directory messages are written to.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Runs the accept loop on a background thread.
    pub fn spawn(self) -> CaptureHandle {
        let addr = self.local_addr();
        let shared = self.shared.clone();
        let ca_pem = self.ca_pem.clone();
        let thread = std::thread::Builder::new()
            .name("capture-accept".into())
            .spawn(move || {
                let _ = self.serve();
            })
            .expect("spawn capture accept thread");
        CaptureHandle {
            addr,
            shared,
            ca_pem,
            thread: Some(thread),
        }
    }

    /// Runs the accept loop on this thread until the server is shut down
    /// (only possible through a [`CaptureHandle`]) or accepting fails.
    pub fn serve(self) -> io::Result<()> {
        let mut conns: Vec<(TcpStream, JoinHandle<()>)> = Vec::new();
        let result = loop {
            let (sock, peer) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_transient_accept_error(&e) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => break Err(e),
            };
            if self.shared.stop.load(Ordering::SeqCst) {
                break Ok(());
            }
            conns.retain(|(_, h)| !h.is_finished());
            if self.shared.active.load(Ordering::SeqCst)
                >= self.shared.limits.max_connections.max(1)
            {
                refuse(sock);
                continue;
            }
            let Ok(clone) = sock.try_clone() else {
                continue;
            };
            let shared = self.shared.clone();
            self.shared.active.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("capture-{peer}"))
                .spawn(move || {
                    let _ = Session::new(sock, peer, &shared).run();
                });
            match spawned {
                Ok(handle) => conns.push((clone, handle)),
                Err(_) => {
                    self.shared.active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        };
        // Wake connection threads blocked in read so they end promptly.
        for (sock, _) in &conns {
            let _ = sock.shutdown(Shutdown::Both);
        }
        for (_, handle) in conns {
            let _ = handle.join();
        }
        result
    }
}

/// Answer a connection over the limit with 421 (RFC 5321 3.8) and close it,
/// without a thread and without waiting on the client.
fn refuse(mut sock: TcpStream) {
    let _ = sock.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
    let _ = sock.write_all(
        format!("421 4.7.0 {HOSTNAME} Too many connections, try again later\r\n").as_bytes(),
    );
    let _ = sock.shutdown(Shutdown::Both);
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// A capture server running in the background; stops on [`shutdown`](Self::shutdown) or drop.
pub struct CaptureHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ca_pem: String,
    thread: Option<JoinHandle<()>>,
}

impl CaptureHandle {
    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that signed the STARTTLS certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The directory messages are written to.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Stops accepting, closes open connections and joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it up.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(2));
        let _ = thread.join();
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The socket, before or after STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    /// Only while upgrading.
    Gone,
}

impl Conn {
    /// The TCP socket underneath.
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Conn::Plain(s) => Some(s),
            Conn::Tls(s) => Some(&s.sock),
            Conn::Gone => None,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Gone => Ok(0),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Gone => Ok(()),
        }
    }
}

/// One input line, or why there is none.
enum Line {
    Text(Vec<u8>),
    TooLong,
    Eof,
}

/// The mail transaction between MAIL and the end of the message.
struct Transaction {
    from: String,
    rcpts: Vec<String>,
    /// Set once a BDAT chunk arrived: DATA is then out of sequence.
    bdat: Option<Vec<u8>>,
    /// A failure that makes the final BDAT fail (e.g. over SIZE).
    bdat_error: Option<&'static str>,
}

/// Why the session loop stops.
enum Flow {
    Continue,
    Close,
}

struct Session<'a> {
    conn: Conn,
    peer: SocketAddr,
    shared: &'a Shared,
    /// Received, not yet parsed. A deque: a pipelining client can have
    /// hundreds of kilobytes in flight, and taking each line off the front
    /// of a `Vec` would move all of them every time.
    inbuf: VecDeque<u8>,
    out: Vec<u8>,
    helo: bool,
    esmtp: bool,
    tls: bool,
    authed: bool,
    tx: Option<Transaction>,
    /// When the line being read must be complete.
    deadline: Option<Instant>,
}

impl<'a> Session<'a> {
    fn new(sock: TcpStream, peer: SocketAddr, shared: &'a Shared) -> Self {
        let idle = shared.limits.idle_timeout;
        let _ = sock.set_read_timeout(Some(idle));
        let _ = sock.set_write_timeout(Some(idle));
        let _ = sock.set_nodelay(true);
        Session {
            conn: Conn::Plain(sock),
            peer,
            shared,
            inbuf: VecDeque::with_capacity(8192),
            out: Vec::with_capacity(1024),
            helo: false,
            esmtp: false,
            tls: false,
            authed: false,
            tx: None,
            deadline: None,
        }
    }

    fn run(mut self) -> io::Result<()> {
        let result = self.converse();
        if let Err(e) = &result {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                // RFC 5321 4.5.3.2: the server may close an idle session.
                self.out.clear();
                self.reply("421 4.4.2 Idle timeout, closing connection");
            }
        }
        let _ = self.flush();
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
        // The accept loop keeps a clone of the socket, so dropping ours would
        // not close the connection.
        match &mut self.conn {
            Conn::Plain(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Conn::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
                let _ = s.sock.shutdown(Shutdown::Both);
            }
            Conn::Gone => {}
        }
        result
    }

    /// The conversation, from the greeting to QUIT, end of input or an error.
    fn converse(&mut self) -> io::Result<()> {
        self.reply(&format!("220 {HOSTNAME} ESMTP mailshot capture ready"));
        loop {
            let line = match self.read_line(MAX_COMMAND_LINE)? {
                Line::Eof => break,
                Line::TooLong => {
                    self.reply("500 5.5.6 Line too long");
                    continue;
                }
                Line::Text(l) => l,
            };
            let line = String::from_utf8_lossy(trim_eol(&line)).into_owned();
            if let Flow::Close = self.command(&line)? {
                break;
            }
        }
        Ok(())
    }

    /// Queues a reply; it goes out when the server next waits for input.
    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.conn.write_all(&out)?;
            self.conn.flush()?;
        }
        Ok(())
    }

    /// Reads more input; replies are flushed first because the client may be
    /// waiting for them before it sends anything else.
    fn fill(&mut self) -> io::Result<bool> {
        self.flush()?;
        if let Some(tcp) = self.conn.tcp() {
            let wait = match self.deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => self.shared.limits.idle_timeout,
            };
            if wait.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            tcp.set_read_timeout(Some(wait))?;
        }
        let mut buf = [0u8; 16384];
        let n = loop {
            match self.conn.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A client that vanished is an end of input, not a server error.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break 0,
                Err(e) => return Err(e),
            }
        };
        self.inbuf.extend(&buf[..n]);
        Ok(n > 0)
    }

    /// The next LF-terminated line (terminator included). A line longer than
    /// `max` is consumed and reported as too long.
    fn read_line(&mut self, max: usize) -> io::Result<Line> {
        // The whole line is due within the idle timeout.
        self.deadline = Some(Instant::now() + self.shared.limits.idle_timeout);
        let line = self.read_line_by_deadline(max);
        self.deadline = None;
        line
    }

    fn read_line_by_deadline(&mut self, max: usize) -> io::Result<Line> {
        let mut scanned = 0;
        let mut too_long = false;
        loop {
            if let Some(pos) = self.inbuf.iter().skip(scanned).position(|&b| b == b'\n') {
                let end = scanned + pos + 1;
                let line: Vec<u8> = self.inbuf.drain(..end).collect();
                return Ok(if too_long || line.len() > max {
                    Line::TooLong
                } else {
                    Line::Text(line)
                });
            }
            if self.inbuf.len() > max {
                // Keep memory bounded: drop the excess, remember the line is bad.
                too_long = true;
                self.inbuf.clear();
            }
            scanned = self.inbuf.len();
            if !self.fill()? {
                return Ok(Line::Eof);
            }
        }
    }

    /// Reads exactly `n` bytes (a BDAT chunk); `keep` false discards them.
    fn read_exact_chunk(&mut self, n: u64, keep: bool) -> io::Result<Option<Vec<u8>>> {
        let mut remaining = n;
        let mut chunk = Vec::new();
        loop {
            let take = remaining.min(self.inbuf.len() as u64) as usize;
            if keep {
                chunk.extend(self.inbuf.drain(..take));
            } else {
                self.inbuf.drain(..take);
            }
            remaining -= take as u64;
            if remaining == 0 {
                return Ok(Some(chunk));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn command(&mut self, line: &str) -> io::Result<Flow> {
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => self.ehlo(arg, true),
            "HELO" => self.ehlo(arg, false),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => return self.data(arg),
            "BDAT" => return self.bdat(arg),
            "RSET" => {
                if arg.is_empty() {
                    self.tx = None;
                    self.reply("250 2.0.0 Ok");
                } else {
                    self.reply("501 5.5.4 Syntax: RSET");
                }
            }
            "NOOP" => self.reply("250 2.0.0 Ok"),
            "QUIT" => {
                self.reply("221 2.0.0 Bye");
                return Ok(Flow::Close);
            }
            "STARTTLS" => return self.starttls(arg),
            "AUTH" => return self.auth(arg),
            "VRFY" => self.reply("252 2.5.0 Cannot VRFY user, but will accept message"),
            "HELP" => self.reply("214 2.0.0 See RFC 5321"),
            "" => self.reply("500 5.5.2 Error: bad syntax"),
            _ => self.reply("500 5.5.2 Error: command not recognized"),
        }
        Ok(Flow::Continue)
    }

    fn ehlo(&mut self, arg: &str, esmtp: bool) {
        if arg.is_empty() {
            let verb = if esmtp { "EHLO" } else { "HELO" };
            self.reply(&format!("501 5.5.4 Syntax: {verb} hostname"));
            return;
        }
        self.helo = true;
        self.esmtp = esmtp;
        self.tx = None;
        if !esmtp {
            self.reply(&format!("250 {HOSTNAME}"));
            return;
        }
        let mut lines = vec![
            format!("{HOSTNAME} Hello {arg}"),
            "PIPELINING".to_string(),
            "CHUNKING".to_string(),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            format!("SIZE {MAX_SIZE}"),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if !self.tls {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_allowed() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.reply(&format!("250{sep}{l}"));
        }
    }

    /// Credentials only travel encrypted or over loopback (RFC 4954 section 4).
    fn auth_allowed(&self) -> bool {
        self.tls || self.peer.ip().is_loopback()
    }

    fn mail(&mut self, arg: &str) {
        if !self.helo {
            return self.reply("503 5.5.1 Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return self.reply("503 5.5.1 Error: nested MAIL command");
        }
        let Some((path, params)) = parse_path(arg, "FROM:") else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        if !path.is_empty() && !is_mailbox(&path) {
            return self.reply("501 5.1.7 Bad sender address syntax");
        }
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" if self.esmtp => match value.parse::<u64>() {
                    Ok(n) if n > MAX_SIZE => {
                        return self.reply("552 5.3.4 Message size exceeds fixed limit");
                    }
                    Ok(_) => {}
                    Err(_) => return self.reply("501 5.5.4 Bad SIZE parameter"),
                },
                "BODY" if self.esmtp => {
                    let v = value.to_ascii_uppercase();
                    if v != "7BIT" && v != "8BITMIME" && v != "BINARYMIME" {
                        return self.reply("501 5.5.4 Bad BODY parameter");
                    }
                }
                "SMTPUTF8" if self.esmtp && value.is_empty() => {}
                // AUTH= (RFC 4954 5) is accepted and ignored.
                "AUTH" if self.esmtp => {}
                _ => return self.reply("555 5.5.4 Unsupported option"),
            }
        }
        self.tx = Some(Transaction {
            from: path,
            rcpts: Vec::new(),
            bdat: None,
            bdat_error: None,
        });
        self.reply("250 2.1.0 Ok");
    }

    fn rcpt(&mut self, arg: &str) {
        let Some(tx) = self.tx.as_mut() else {
            return self.reply("503 5.5.1 Error: need MAIL command");
        };
        if tx.bdat.is_some() {
            return self.reply("503 5.5.1 Error: RCPT after BDAT");
        }
        let Some((path, params)) = parse_path(arg, "TO:") else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        if !params.trim().is_empty() {
            return self.reply("555 5.5.4 Unsupported option");
        }
        if !(is_mailbox(&path) || path.eq_ignore_ascii_case("postmaster")) {
            return self.reply("501 5.1.3 Bad recipient address syntax");
        }
        if tx.rcpts.len() >= MAX_RCPTS {
            return self.reply("452 4.5.3 Error: too many recipients");
        }
        tx.rcpts.push(path);
        self.reply("250 2.1.5 Ok");
    }

    fn data(&mut self, arg: &str) -> io::Result<Flow> {
        if !arg.is_empty() {
            self.reply("501 5.5.4 Syntax: DATA");
            return Ok(Flow::Continue);
        }
        match &self.tx {
            None => {
                self.reply("503 5.5.1 Error: need RCPT command");
                return Ok(Flow::Continue);
            }
            Some(tx) if tx.bdat.is_some() => {
                self.reply("503 5.5.1 Error: DATA after BDAT");
                return Ok(Flow::Continue);
            }
            // RFC 2920 3.1: with no accepted recipient, DATA fails (and the
            // client's pipelined body then reads as junk commands).
            Some(tx) if tx.rcpts.is_empty() => {
                self.reply("554 5.5.1 Error: no valid recipients");
                return Ok(Flow::Continue);
            }
            Some(_) => {}
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        let mut body = Vec::new();
        let mut error: Option<&'static str> = None;
        // Lines are split at every LF, but only CRLF ends a line in SMTP
        // (RFC 5321 2.3.8): after a bare LF the next piece continues the same
        // line, so it is neither the end of the data nor dot-stuffed.
        let mut line_start = true;
        loop {
            let line = match self.read_line(MAX_DATA_LINE)? {
                Line::Eof => return Ok(Flow::Close),
                Line::TooLong => {
                    error.get_or_insert("552 5.3.4 Message line too long");
                    line_start = true;
                    continue;
                }
                Line::Text(l) => l,
            };
            if line_start && line == b".\r\n" {
                break;
            }
            // RFC 5321 4.5.2: a leading dot was added by the client; remove it.
            let content = match line.strip_prefix(b".") {
                Some(rest) if line_start => rest,
                _ => &line[..],
            };
            line_start = line.ends_with(b"\r\n");
            if error.is_none() {
                if (body.len() + content.len()) as u64 > MAX_SIZE {
                    error = Some("552 5.3.4 Message size exceeds fixed limit");
                    body = Vec::new();
                } else {
                    body.extend_from_slice(content);
                }
            }
        }
        let tx = self.tx.take().expect("checked above");
        match error {
            Some(reply) => self.reply(reply),
            None => self.store(&tx, &body),
        }
        Ok(Flow::Continue)
    }

    fn bdat(&mut self, arg: &str) -> io::Result<Flow> {
        let mut words = arg.split_whitespace();
        let size = words.next().and_then(|w| w.parse::<u64>().ok());
        let last = match words.next() {
            None => Some(false),
            Some(w) if w.eq_ignore_ascii_case("LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            // The chunk length is unknown, so the input cannot be resynchronised.
            self.reply("501 5.5.4 Syntax: BDAT size [LAST]");
            return Ok(Flow::Close);
        };
        let usable = matches!(&self.tx, Some(tx) if !tx.rcpts.is_empty());
        let over = self.tx.as_ref().map_or(0, |tx| {
            tx.bdat.as_ref().map_or(0, |b| b.len() as u64) + size
        }) > MAX_SIZE;
        let keep = usable && !over && self.tx.as_ref().is_some_and(|t| t.bdat_error.is_none());
        // RFC 3030 2: the chunk is read in full even when it will be refused.
        let Some(chunk) = self.read_exact_chunk(size, keep)? else {
            return Ok(Flow::Close);
        };
        if !usable {
            let reply = if self.tx.is_none() {
                "503 5.5.1 Error: need RCPT command"
            } else {
                "554 5.5.1 Error: no valid recipients"
            };
            self.reply(reply);
            return Ok(Flow::Continue);
        }
        let tx = self.tx.as_mut().expect("usable");
        if over {
            tx.bdat_error = Some("552 5.3.4 Message size exceeds fixed limit");
        }
        let buf = tx.bdat.get_or_insert_with(Vec::new);
        if keep {
            buf.extend_from_slice(&chunk);
        }
        if let Some(reply) = tx.bdat_error {
            if last {
                self.tx = None;
            }
            self.reply(reply);
        } else if last {
            let tx = self.tx.take().expect("usable");
            let body = tx.bdat.clone().unwrap_or_default();
            self.store(&tx, &body);
        } else {
            self.reply(&format!("250 2.0.0 {size} octets received"));
        }
        Ok(Flow::Continue)
    }

    /// Writes the message; the 250 goes out only after the rename.
    fn store(&mut self, tx: &Transaction, body: &[u8]) {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seq = self.shared.seq.fetch_add(1, Ordering::SeqCst);
        let name = format!("{nanos}-{seq}.eml");
        let mut file = Vec::with_capacity(body.len() + 256);
        file.extend_from_slice(format!("Return-Path: <{}>\r\n", tx.from).as_bytes());
        file.extend_from_slice(format!("X-Mailshot-Rcpt: {}\r\n", tx.rcpts.join(", ")).as_bytes());
        file.extend_from_slice(body);
        match write_atomically(&self.shared.dir.join(&name), &file) {
            Ok(()) => self.reply(&format!("250 2.0.0 Ok: queued as {name}")),
            Err(_) => self.reply("451 4.3.0 Error: cannot store message"),
        }
    }

    fn starttls(&mut self, arg: &str) -> io::Result<Flow> {
        if self.tls {
            self.reply("503 5.5.1 Error: TLS already active");
            return Ok(Flow::Continue);
        }
        if !arg.is_empty() {
            self.reply("501 5.5.4 Syntax: STARTTLS");
            return Ok(Flow::Continue);
        }
        self.reply("220 2.0.0 Ready to start TLS");
        self.flush()?;
        // RFC 3207 4.2 / CVE-2011-0411: bytes sent before the handshake must
        // not be executed as commands after it.
        self.inbuf.clear();
        let Conn::Plain(sock) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            unreachable!("not TLS yet");
        };
        let conn =
            rustls::ServerConnection::new(self.shared.tls.clone()).map_err(io::Error::other)?;
        let mut tls = Box::new(rustls::StreamOwned::new(conn, sock));
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.conn = Conn::Tls(tls);
        self.tls = true;
        // RFC 3207 4.2: forget everything learned before TLS.
        self.helo = false;
        self.esmtp = false;
        self.authed = false;
        self.tx = None;
        Ok(Flow::Continue)
    }

    fn auth(&mut self, arg: &str) -> io::Result<Flow> {
        if !self.esmtp {
            self.reply("503 5.5.1 Error: send EHLO first");
            return Ok(Flow::Continue);
        }
        if self.authed {
            self.reply("503 5.5.1 Error: already authenticated");
            return Ok(Flow::Continue);
        }
        if self.tx.is_some() {
            self.reply("503 5.5.1 Error: MAIL transaction in progress");
            return Ok(Flow::Continue);
        }
        if !self.auth_allowed() {
            self.reply("538 5.7.11 Encryption required for requested authentication mechanism");
            return Ok(Flow::Continue);
        }
        let mut words = arg.split_whitespace();
        let mech = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next().map(str::to_owned);
        if words.next().is_some() {
            self.reply("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
            return Ok(Flow::Continue);
        }
        // Each step: the client's base64 response, or None if it cancelled or broke off.
        let prompts: &[&str] = match mech.as_str() {
            "PLAIN" => &[""],
            "LOGIN" => &["VXNlcm5hbWU6", "UGFzc3dvcmQ6"],
            "" => {
                self.reply("501 5.5.4 Syntax: AUTH mechanism");
                return Ok(Flow::Continue);
            }
            _ => {
                self.reply("504 5.5.4 Unrecognized authentication type");
                return Ok(Flow::Continue);
            }
        };
        let mut responses = Vec::new();
        let mut pending_initial = initial;
        for prompt in prompts {
            let response = match pending_initial.take() {
                // "=" is an empty initial response (RFC 4954 4).
                Some(r) if r == "=" => String::new(),
                Some(r) => r,
                None => {
                    self.reply(&format!("334 {prompt}"));
                    match self.read_line(MAX_COMMAND_LINE)? {
                        Line::Eof => return Ok(Flow::Close),
                        Line::TooLong => {
                            self.reply("500 5.5.6 Authentication exchange line too long");
                            return Ok(Flow::Continue);
                        }
                        Line::Text(l) => String::from_utf8_lossy(trim_eol(&l)).into_owned(),
                    }
                }
            };
            if response == "*" {
                self.reply("501 5.0.0 Authentication cancelled");
                return Ok(Flow::Continue);
            }
            match base64::engine::general_purpose::STANDARD.decode(response.trim()) {
                Ok(bytes) => responses.push(bytes),
                Err(_) => {
                    self.reply("501 5.5.2 Cannot decode response");
                    return Ok(Flow::Continue);
                }
            }
        }
        let well_formed = match mech.as_str() {
            // authzid NUL authcid NUL passwd (RFC 4616 2).
            "PLAIN" => responses[0].iter().filter(|&&b| b == 0).count() == 2,
            _ => true,
        };
        if !well_formed {
            self.reply("501 5.5.2 Malformed PLAIN response");
            return Ok(Flow::Continue);
        }
        self.authed = true;
        self.reply("235 2.7.0 Authentication successful");
        Ok(Flow::Continue)
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits `FROM:<path> params` into the path (without brackets or a source
/// route) and the parameters. A space after the colon is tolerated, as most
/// servers do.
fn parse_path(arg: &str, keyword: &str) -> Option<(String, String)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let close = rest.find('>')?;
    let mut path = &rest[..close];
    let params = &rest[close + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    // RFC 5321 4.1.2: an obsolete source route "@a,@b:" is ignored.
    if path.starts_with('@') {
        path = &path[path.find(':')? + 1..];
    }
    Some((path.to_owned(), params.trim().to_owned()))
}

/// A loose mailbox check: local@domain with no spaces or control characters.
fn is_mailbox(path: &str) -> bool {
    match path.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !path.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Runs `mailshot capture`: binds, reports where it listens on stderr, serves forever.
pub fn run(listen: SocketAddr, dir: PathBuf, limits: Limits) -> crate::error::Result<()> {
    let server = CaptureServer::bind(listen, dir.clone())
        .map_err(|e| crate::error::Error::Unavailable(format!("cannot listen on {listen}: {e}")))?
        .with_limits(limits);
    eprintln!(
        "mailshot capture: listening on {}, storing messages in {} (STARTTLS CA: {})",
        server.local_addr(),
        dir.display(),
        dir.join(CA_FILE_NAME).display()
    );
    server
        .serve()
        .map_err(|e| crate::error::Error::Software(format!("capture server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("FROM:<a@b.c> SIZE=10", "FROM:"),
            Some(("a@b.c".into(), "SIZE=10".into()))
        );
        assert_eq!(
            parse_path("from: <>", "FROM:"),
            Some((String::new(), String::new()))
        );
        assert_eq!(
            parse_path("TO:<@relay.example:u@x.y>", "TO:"),
            Some(("u@x.y".into(), String::new()))
        );
        assert_eq!(parse_path("TO:u@x.y", "TO:"), None);
        assert_eq!(parse_path("TO:<u@x.y>junk", "TO:"), None);
        assert_eq!(parse_path("FROM:<a@b", "FROM:"), None);
    }

    #[test]
    fn mailboxes() {
        assert!(is_mailbox("a@b"));
        assert!(is_mailbox("用户@例子.中国"));
        assert!(!is_mailbox("ab"));
        assert!(!is_mailbox("a b@c"));
        assert!(!is_mailbox("@c"));
        assert!(!is_mailbox("a@"));
    }
}
