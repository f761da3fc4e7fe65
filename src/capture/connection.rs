//! One capture connection: the conversation from the greeting to QUIT over
//! plain TCP or STARTTLS (RFC 3207), the ESMTP commands of RFC 5321 with
//! PIPELINING (RFC 2920), CHUNKING (RFC 3030) and AUTH (RFC 4954), each
//! parsed by `smtp::server`, and the stored message.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{Shared, HOSTNAME, MAX_COMMAND_LINE, MAX_DATA_LINE, MAX_RCPTS, MAX_SIZE};
use crate::outputs::write_atomically;
use crate::smtp::server::auth::{
    decode, plain, AuthArg, LOGIN_PASSWORD_PROMPT, LOGIN_USERNAME_PROMPT,
};
use crate::smtp::server::bdat::{BdatArg, Chunk};
use crate::smtp::server::data::{DataLine, Unstuffer};
use crate::smtp::server::path::{is_mailbox, mail_from, rcpt_to};
use crate::smtp::server::reply::multiline;
use crate::smtp::server::request::{trim_eol, Request, Verb};

/// The socket, before or after STARTTLS.
enum Socket {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    /// Only while upgrading.
    Gone,
}

impl Socket {
    /// The TCP socket underneath.
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Socket::Plain(s) => Some(s),
            Socket::Tls(s) => Some(&s.sock),
            Socket::Gone => None,
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
            Socket::Gone => Ok(0),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
            Socket::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.flush(),
            Socket::Tls(s) => s.flush(),
            Socket::Gone => Ok(()),
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

/// Why the conversation loop stops.
enum Flow {
    Continue,
    Close,
}

/// The server's side of one connection.
pub(super) struct Connection<'a> {
    conn: Socket,
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

impl<'a> Connection<'a> {
    /// A connection on `sock`, not yet greeted.
    pub(super) fn new(sock: TcpStream, peer: SocketAddr, shared: &'a Shared) -> Self {
        let idle = shared.limits.idle_timeout;
        let _ = sock.set_read_timeout(Some(idle));
        let _ = sock.set_write_timeout(Some(idle));
        let _ = sock.set_nodelay(true);
        Connection {
            conn: Socket::Plain(sock),
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

    /// Converses until the client leaves, then gives its place up and closes.
    pub(super) fn run(mut self) -> io::Result<()> {
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
            Socket::Plain(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Socket::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
                let _ = s.sock.shutdown(Shutdown::Both);
            }
            Socket::Gone => {}
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
        let n = loop {
            match self.read_into_inbuf() {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A client that vanished is an end of input, not a server error.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break 0,
                Err(e) => return Err(e),
            }
        };
        Ok(n > 0)
    }

    /// One read from the socket onto the end of `inbuf`. Under TLS the
    /// decrypted record is taken straight from rustls's buffer, without a
    /// copy through a buffer of our own.
    fn read_into_inbuf(&mut self) -> io::Result<usize> {
        if let Socket::Tls(s) = &mut self.conn {
            let plain = s.fill_buf()?;
            let n = plain.len();
            self.inbuf.extend(plain);
            s.consume(n);
            return Ok(n);
        }
        let mut buf = [0u8; 16384];
        let n = self.conn.read(&mut buf)?;
        self.inbuf.extend(&buf[..n]);
        Ok(n)
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
        let mut chunk = Chunk::new(n, keep);
        loop {
            let taken = chunk.take(self.inbuf.make_contiguous());
            self.inbuf.drain(..taken);
            if chunk.is_complete() {
                return Ok(Some(chunk.into_data()));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn command(&mut self, line: &str) -> io::Result<Flow> {
        let Request { verb, arg } = Request::parse(line);
        match verb {
            Verb::Ehlo => self.ehlo(arg, true),
            Verb::Helo => self.ehlo(arg, false),
            Verb::Mail => self.mail(arg),
            Verb::Rcpt => self.rcpt(arg),
            Verb::Data => return self.data(arg),
            Verb::Bdat => return self.bdat(arg),
            Verb::Rset => {
                if arg.is_empty() {
                    self.tx = None;
                    self.reply("250 2.0.0 Ok");
                } else {
                    self.reply("501 5.5.4 Syntax: RSET");
                }
            }
            Verb::Noop => self.reply("250 2.0.0 Ok"),
            Verb::Quit => {
                self.reply("221 2.0.0 Bye");
                return Ok(Flow::Close);
            }
            Verb::StartTls => return self.starttls(arg),
            Verb::Auth => return self.auth(arg),
            Verb::Vrfy => self.reply("252 2.5.0 Cannot VRFY user, but will accept message"),
            Verb::Help => self.reply("214 2.0.0 See RFC 5321"),
            Verb::Empty => self.reply("500 5.5.2 Error: bad syntax"),
            Verb::Expn | Verb::Unknown => self.reply("500 5.5.2 Error: command not recognized"),
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
        self.reply(&multiline(250, &lines));
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
        let Some(from) = mail_from(arg) else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        if !from.path.is_empty() && !is_mailbox(&from.path) {
            return self.reply("501 5.1.7 Bad sender address syntax");
        }
        for (key, value) in from.params() {
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
            from: from.path,
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
        let Some(to) = rcpt_to(arg) else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        let path = to.path;
        if !to.params.is_empty() {
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
        // Input is split at every LF; the unstuffer knows which pieces start a line.
        let mut unstuffer = Unstuffer::new();
        loop {
            let line = match self.read_line(MAX_DATA_LINE)? {
                Line::Eof => return Ok(Flow::Close),
                Line::TooLong => {
                    error.get_or_insert("552 5.3.4 Message line too long");
                    unstuffer.skip_line();
                    continue;
                }
                Line::Text(l) => l,
            };
            let DataLine::Content(content) = unstuffer.line(&line) else {
                break;
            };
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
        let Some(BdatArg { size, last }) = BdatArg::parse(arg) else {
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
        let Socket::Plain(sock) = std::mem::replace(&mut self.conn, Socket::Gone) else {
            unreachable!("not TLS yet");
        };
        let conn =
            rustls::ServerConnection::new(self.shared.tls.clone()).map_err(io::Error::other)?;
        let mut tls = Box::new(rustls::StreamOwned::new(conn, sock));
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.conn = Socket::Tls(tls);
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
        let Some(AuthArg {
            mechanism: mech,
            initial,
        }) = AuthArg::parse(arg)
        else {
            self.reply("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
            return Ok(Flow::Continue);
        };
        // Each step: the client's base64 response, or None if it cancelled or broke off.
        let prompts: &[&str] = match mech.as_str() {
            "PLAIN" => &[""],
            "LOGIN" => &[LOGIN_USERNAME_PROMPT, LOGIN_PASSWORD_PROMPT],
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
        let mut pending_initial = initial.map(str::to_owned);
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
            match decode(&response) {
                Some(bytes) => responses.push(bytes),
                None => {
                    self.reply("501 5.5.2 Cannot decode response");
                    return Ok(Flow::Continue);
                }
            }
        }
        let well_formed = match mech.as_str() {
            "PLAIN" => plain(&responses[0]).is_some(),
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
