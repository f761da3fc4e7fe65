//! The only socket code: drives the protocol core ([`Client`]) over TCP or
//! rustls TLS, applies the RFC 5321 §4.5.3.2 timeouts the core asks for, and
//! writes the trace.
//!
//! Everything protocol-shaped lives in `smtp::client`; this module only moves
//! bytes, so it stays small.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::duplex::Duplex;
use super::tls;
use super::trace::Trace;
use super::transport::Transport;
use crate::smtp::client::{Client, CloseReason, Event, SessionConfig, TxOutcome};

/// How long a broken session still waits for replies already on their way.
const DRAIN: Duration = Duration::from_millis(100);

/// Why a session could not be used.
#[derive(Debug)]
pub enum SessionFailure {
    /// TCP connect, read or write failed, or a timeout expired.
    Io(io::Error),
    /// The TLS handshake failed (certificate, protocol).
    Tls(String),
    /// The protocol core closed the session (greeting, AUTH, STARTTLS rules, 421).
    Closed(CloseReason),
}

impl std::fmt::Display for SessionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionFailure::Io(e) => write!(f, "{e}"),
            SessionFailure::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            SessionFailure::Closed(r) => write!(f, "{r}"),
        }
    }
}

/// Where to connect and how.
#[derive(Clone)]
pub struct Endpoint {
    /// Host name or IP literal (also the name a certificate is checked against).
    pub host: String,
    /// Connect to this address instead of looking `host` up (an MX host's
    /// address, already resolved).
    pub address: Option<std::net::IpAddr>,
    /// TCP port.
    pub port: u16,
    /// Start TLS before the greeting (port 465).
    pub implicit_tls: bool,
    /// rustls configuration (roots + ca_file).
    pub tls: Arc<ClientConfig>,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// Called with the ids of the transactions whose end of data is about to be
/// written, before the write (the journal's `commit` records).
pub type CommitHook<'h> = Box<dyn FnMut(&[u64]) -> io::Result<()> + 'h>;

/// One SMTP session: a socket and the protocol core that speaks over it.
pub struct Session<'h> {
    transport: Transport<Duplex>,
    client: Client,
    endpoint: Endpoint,
    trace: Option<Trace>,
    id: usize,
    buf: Vec<u8>,
    commit: Option<CommitHook<'h>>,
    /// When the reply being waited for must be complete, and how many
    /// replies had arrived when that wait began (RFC 5321 §4.5.3.2: the
    /// timeout bounds each whole reply, not the gap between two bytes).
    deadline: Option<(Instant, u64)>,
}

impl<'h> Session<'h> {
    /// Connect, run the greeting, EHLO, STARTTLS and AUTH until the core is ready.
    pub fn open(
        endpoint: &Endpoint,
        core: SessionConfig,
        trace: Option<Trace>,
        id: usize,
    ) -> Result<Session<'h>, SessionFailure> {
        let tcp = match endpoint.address {
            Some(ip) => TcpStream::connect_timeout(
                &std::net::SocketAddr::new(ip, endpoint.port),
                endpoint.connect_timeout,
            ),
            None => connect_tcp(&endpoint.host, endpoint.port, endpoint.connect_timeout),
        }
        .map_err(SessionFailure::Io)?;
        let _ = tcp.set_nodelay(true);
        let duplex = Duplex::new(tcp).map_err(SessionFailure::Io)?;
        let transport = if endpoint.implicit_tls {
            Transport::Tls(Box::new(handshake(endpoint, duplex)?))
        } else {
            Transport::Plain(duplex)
        };
        let mut client = Client::new(core);
        client.set_trace(trace.is_some());
        let mut session = Session {
            transport,
            client,
            endpoint: endpoint.clone(),
            trace,
            id,
            buf: vec![0; 64 * 1024],
            commit: None,
            deadline: None,
        };
        if let Some(t) = &session.trace {
            let how = if endpoint.implicit_tls {
                " (implicit TLS)"
            } else {
                ""
            };
            t.write(
                id,
                &[format!(
                    "-- connected to {}:{}{how}",
                    endpoint.host, endpoint.port
                )],
            );
        }
        loop {
            match session.next_event()? {
                Event::Ready => return Ok(session),
                Event::Closed(reason) => {
                    // Say goodbye if the core queued a QUIT; the session is over anyway.
                    let _ = session.flush_output();
                    return Err(SessionFailure::Closed(reason));
                }
                Event::StartTls => unreachable!("handled in next_event"),
                Event::Outcome(_) => {}
            }
        }
    }

    /// Run `hook` before writing bytes that carry a transaction's end of data.
    pub fn set_commit_hook(&mut self, hook: CommitHook<'h>) {
        self.commit = Some(hook);
    }

    /// The protocol core, to submit transactions and ask about its state.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Write what the core has queued, then wait for the next event, reading
    /// (with the core's timeout) as needed. STARTTLS is handled here.
    pub fn next_event(&mut self) -> Result<Event, SessionFailure> {
        loop {
            if let Some(ev) = self.poll_ready()? {
                return Ok(ev);
            }
            if !self.client.wants_read() {
                self.deadline = None;
                // Nothing to read and nothing to report: the core waits for the caller.
                return Err(SessionFailure::Io(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "session idle",
                )));
            }
            self.read_once()?;
        }
    }

    /// Like [`Session::next_event`] but returns `None` instead of blocking when the
    /// core has nothing to report and waits for nothing.
    pub fn poll(&mut self) -> Result<Option<Event>, SessionFailure> {
        match self.next_event() {
            Ok(ev) => Ok(Some(ev)),
            Err(SessionFailure::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An event the core already has, without reading from the socket (used to
    /// collect every outcome of one read for a single journal commit).
    pub fn poll_ready(&mut self) -> Result<Option<Event>, SessionFailure> {
        loop {
            self.flush_output()?;
            let ev = self.client.poll_event();
            self.trace_out();
            match ev {
                Some(Event::StartTls) => {
                    self.start_tls()?;
                    self.client.tls_started();
                }
                other => return Ok(other),
            }
        }
    }

    /// The connection broke: outcomes for every unfinished transaction.
    /// Replies that arrived before it broke still count first: a server
    /// that accepted one message and then dropped the connection while the
    /// next was being written has still accepted the first (its reply must
    /// not be lost to the failed write, which would make it `uncertain`).
    pub fn lost(&mut self) -> Vec<TxOutcome> {
        let mut out = self.arrived_outcomes();
        out.extend(self.client.connection_lost());
        self.trace_out();
        out
    }

    /// Feed the core what the server sent before the connection broke
    /// (waiting at most [`DRAIN`] for the rest of it), and take the outcomes
    /// that decides. Nothing is written.
    fn arrived_outcomes(&mut self) -> Vec<TxOutcome> {
        if let Some(d) = self.transport.sock_mut() {
            d.set_read_timeout(None);
            d.set_read_deadline(Some(Instant::now() + DRAIN));
        }
        // Bounded: the read buffer is 64 KiB, replies are short.
        for _ in 0..64 {
            match self.transport.read(&mut self.buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.client.feed(&self.buf[..n]),
            }
        }
        let mut outcomes = Vec::new();
        while let Some(ev) = self.client.poll_event() {
            match ev {
                Event::Outcome(o) => outcomes.push(o),
                Event::Closed(_) => break,
                Event::Ready | Event::StartTls => {}
            }
        }
        outcomes
    }

    /// Send QUIT and wait (bounded by the command timeout) for the session to close.
    pub fn quit(mut self) {
        self.client.quit();
        for _ in 0..16 {
            match self.next_event() {
                Ok(Event::Closed(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.trace_out();
        if let Some(d) = self.transport.sock_mut() {
            let _ = d.tcp().shutdown(std::net::Shutdown::Both);
        }
    }

    fn flush_output(&mut self) -> Result<(), SessionFailure> {
        let (out, finals) = self.client.take_output_with_finals();
        self.trace_out();
        if out.is_empty() {
            return Ok(());
        }
        if !finals.is_empty() {
            if let Some(hook) = self.commit.as_mut() {
                hook(&finals).map_err(SessionFailure::Io)?;
            }
        }
        let timeout = self.client.read_timeout();
        if let Some(d) = self.transport.sock_mut() {
            d.set_write_timeout(Some(timeout));
        }
        // One vectored write for the pieces (a shared attachment is written
        // from where it lies). Count what was written, so a message whose
        // final dot never left is retried rather than reported uncertain.
        let mut slices = out.io_slices();
        let mut rest = &mut slices[..];
        let mut written = 0;
        let result = loop {
            if rest.is_empty() {
                break self.transport.flush();
            }
            match self.transport.write_vectored(rest) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    io::IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if result.is_err() {
            self.client.output_partly_written(written);
        } else if self.client.awaits_go_ahead() {
            if let Some(d) = self.transport.sock() {
                ack_promptly(d.tcp());
            }
        }
        self.client.recycle_output(out);
        result.map_err(SessionFailure::Io)
    }

    fn read_once(&mut self) -> Result<(), SessionFailure> {
        let timeout = self.client.read_timeout();
        let replies = self.client.replies_received();
        let deadline = match self.deadline {
            Some((at, seen)) if seen == replies => at,
            _ => {
                let at = Instant::now() + timeout;
                self.deadline = Some((at, replies));
                at
            }
        };
        if let Some(d) = self.transport.sock_mut() {
            d.set_read_timeout(None);
            d.set_read_deadline(Some(deadline));
        }
        match self.transport.read(&mut self.buf) {
            Ok(0) => Err(SessionFailure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ))),
            Ok(n) => {
                self.client.feed(&self.buf[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(SessionFailure::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no reply from the server within {}s",
                        timeout.as_secs_f64().round()
                    ),
                )))
            }
            Err(e) => Err(SessionFailure::Io(e)),
        }
    }

    fn start_tls(&mut self) -> Result<(), SessionFailure> {
        let duplex = match std::mem::replace(&mut self.transport, Transport::Moving) {
            Transport::Plain(d) => d,
            other => {
                self.transport = other;
                return Err(SessionFailure::Tls("STARTTLS inside TLS".into()));
            }
        };
        let tls = handshake(&self.endpoint, duplex)?;
        self.transport = Transport::Tls(Box::new(tls));
        if let Some(t) = &self.trace {
            t.write(self.id, &["-- TLS handshake done".to_string()]);
        }
        Ok(())
    }

    fn trace_out(&mut self) {
        let lines = self.client.take_trace();
        if let Some(t) = &self.trace {
            t.write(self.id, &lines);
        }
    }
}

/// Leave delayed-acknowledgement mode after a write, so each reply that
/// arrives is acknowledged at once rather than up to about 40 ms later.
///
/// A server that writes the reply to each pipelined command on its own,
/// with Nagle's algorithm on (Haraka does), sends the first reply of a
/// group at once and holds the rest until that one is acknowledged. A
/// client waiting for the 354 to DATA has nothing to send that would carry
/// the acknowledgement, so the kernel's delayed-ACK timer decides: without
/// this, every message would wait for it, on loopback about 40 ms. Linux
/// re-enters delayed-ACK mode by itself when it sends data right after
/// receiving some, hence once per such write (with BDAT nothing waits for
/// a 354, and the system call is spared). Where the option does not exist
/// this does nothing.
fn ack_promptly(tcp: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    {
        // Only a lost speed-up if it fails; the session goes on either way.
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
    let _ = tcp;
}

/// A TCP connection to the first of `host`'s addresses that answers within
/// `timeout` (each tried in turn); the SMTP session and the mailbox clients
/// connect the same way.
pub(crate) fn connect_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"))))
}

fn handshake(
    endpoint: &Endpoint,
    mut tcp: Duplex,
) -> Result<StreamOwned<ClientConnection, Duplex>, SessionFailure> {
    let name = tls::server_name(&endpoint.host).map_err(|e| SessionFailure::Tls(e.to_string()))?;
    let mut conn = ClientConnection::new(endpoint.tls.clone(), name)
        .map_err(|e| SessionFailure::Tls(e.to_string()))?;
    // The whole handshake, not each read of it, is bounded.
    tcp.set_read_deadline(Some(Instant::now() + endpoint.connect_timeout));
    tcp.set_read_timeout(None);
    tcp.set_write_timeout(Some(endpoint.connect_timeout));
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                SessionFailure::Tls(e.to_string())
            } else {
                SessionFailure::Io(e)
            }
        })?;
    }
    Ok(StreamOwned::new(conn, tcp))
}
