//! The socket code under the mailbox cores: runs the POP3 or IMAP core over
//! TCP or rustls TLS (implicit, or after STLS/STARTTLS), with the same trust
//! roots and `ca_file` rules as SMTP, a deadline on every whole response and
//! a fixed read buffer (the cores bound the size of what they accept).
//!
//! Everything protocol-shaped lives in the cores; this module only moves bytes.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use super::{imap, pop3};
use crate::smtp::net::session::{connect_tcp, Endpoint};
use crate::smtp::net::tls;
use crate::smtp::net::trace::Trace;
use crate::smtp::net::transport::Transport;

/// What the driver needs from a protocol core.
pub trait Core {
    /// The core's events.
    type Event;
    /// Bytes received from the server.
    fn feed(&mut self, bytes: &[u8]);
    /// Bytes to write now.
    fn take_output(&mut self) -> Vec<u8>;
    /// The next event, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The event asks for the TLS handshake.
    fn is_start_tls(event: &Self::Event) -> bool;
    /// The TLS handshake asked for is done.
    fn tls_started(&mut self);
    /// The core waits for bytes.
    fn wants_read(&self) -> bool;
    /// The longest wait for one whole response.
    fn read_timeout(&self) -> Duration;
    /// Trace lines so far.
    fn take_trace(&mut self) -> Vec<String>;
    /// The transport ended.
    fn connection_lost(&mut self);
}

macro_rules! core_impl {
    ($m:ident) => {
        impl Core for $m::client::Client {
            type Event = $m::client::Event;
            fn feed(&mut self, bytes: &[u8]) {
                $m::client::Client::feed(self, bytes)
            }
            fn take_output(&mut self) -> Vec<u8> {
                $m::client::Client::take_output(self)
            }
            fn poll_event(&mut self) -> Option<Self::Event> {
                $m::client::Client::poll_event(self)
            }
            fn is_start_tls(event: &Self::Event) -> bool {
                matches!(event, $m::client::Event::StartTls)
            }
            fn tls_started(&mut self) {
                $m::client::Client::tls_started(self)
            }
            fn wants_read(&self) -> bool {
                $m::client::Client::wants_read(self)
            }
            fn read_timeout(&self) -> Duration {
                $m::client::Client::read_timeout(self)
            }
            fn take_trace(&mut self) -> Vec<String> {
                $m::client::Client::take_trace(self)
            }
            fn connection_lost(&mut self) {
                $m::client::Client::connection_lost(self)
            }
        }
    };
}

core_impl!(pop3);
core_impl!(imap);

/// Why a connection could not be used (protocol refusals are core events).
#[derive(Debug, thiserror::Error)]
pub enum NetFailure {
    /// TCP connect, read or write failed, or a timeout expired.
    #[error("{0}")]
    Io(io::Error),
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The core has nothing to say and waits for nothing.
    #[error("the session is idle")]
    Idle,
}

/// Size of the read buffer; what the core keeps is bounded by the core.
const READ_CHUNK: usize = 64 * 1024;

/// One mailbox connection: a socket and the core that speaks over it.
pub struct Connection<C: Core> {
    transport: Transport<TcpStream>,
    core: C,
    endpoint: Endpoint,
    trace: Option<Trace>,
    buf: Vec<u8>,
    /// When the response being waited for must be complete.
    deadline: Option<Instant>,
}

impl<C: Core> Connection<C> {
    /// Connect (and for implicit TLS, handshake) and hand the socket to `core`.
    /// The caller then waits for the core's ready event with
    /// [`Connection::next_event`].
    pub fn open(endpoint: &Endpoint, core: C, trace: Option<Trace>) -> Result<Self, NetFailure> {
        let tcp = connect_tcp(&endpoint.host, endpoint.port, endpoint.connect_timeout)
            .map_err(NetFailure::Io)?;
        let _ = tcp.set_nodelay(true);
        let transport = if endpoint.implicit_tls {
            Transport::Tls(Box::new(handshake(endpoint, tcp)?))
        } else {
            Transport::Plain(tcp)
        };
        if let Some(t) = &trace {
            let how = if endpoint.implicit_tls {
                " (implicit TLS)"
            } else {
                ""
            };
            t.write(
                0,
                &[format!(
                    "-- connected to {}:{}{how}",
                    endpoint.host, endpoint.port
                )],
            );
        }
        Ok(Connection {
            transport,
            core,
            endpoint: endpoint.clone(),
            trace,
            buf: vec![0; READ_CHUNK],
            deadline: None,
        })
    }

    /// The protocol core, to make requests.
    pub fn core(&mut self) -> &mut C {
        &mut self.core
    }

    /// Write what the core has queued, then wait for its next event, reading
    /// within the core's timeout for each whole response. The TLS upgrade
    /// the core asks for is done here and not reported.
    pub fn next_event(&mut self) -> Result<C::Event, NetFailure> {
        loop {
            self.flush_output()?;
            let ev = self.core.poll_event();
            self.trace_out();
            match ev {
                Some(ev) if C::is_start_tls(&ev) => {
                    self.start_tls()?;
                    self.core.tls_started();
                }
                Some(ev) => {
                    self.deadline = None;
                    return Ok(ev);
                }
                None if !self.core.wants_read() => {
                    self.deadline = None;
                    return Err(NetFailure::Idle);
                }
                None => self.read_once()?,
            }
        }
    }

    /// Close the socket (after the core's goodbye has been answered or not).
    pub fn close(mut self) {
        let _ = self.flush_output();
        self.trace_out();
        if let Some(tcp) = self.transport.sock() {
            let _ = tcp.shutdown(std::net::Shutdown::Both);
        }
    }

    fn flush_output(&mut self) -> Result<(), NetFailure> {
        let out = self.core.take_output();
        self.trace_out();
        if out.is_empty() {
            return Ok(());
        }
        if let Some(tcp) = self.transport.sock() {
            let _ = tcp.set_write_timeout(Some(self.core.read_timeout()));
        }
        self.transport
            .write_all(&out)
            .and_then(|()| self.transport.flush())
            .map_err(NetFailure::Io)
    }

    fn read_once(&mut self) -> Result<(), NetFailure> {
        let timeout = self.core.read_timeout();
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + timeout);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(timeout));
        }
        if let Some(tcp) = self.transport.sock() {
            let _ = tcp.set_read_timeout(Some(left));
        }
        match self.transport.read(&mut self.buf) {
            Ok(0) => {
                self.core.connection_lost();
                Ok(())
            }
            Ok(n) => {
                self.core.feed(&self.buf[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(timed_out(timeout))
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // A TLS peer that closed without close_notify.
                self.core.connection_lost();
                Ok(())
            }
            Err(e) => Err(NetFailure::Io(e)),
        }
    }

    fn start_tls(&mut self) -> Result<(), NetFailure> {
        let tcp = match std::mem::replace(&mut self.transport, Transport::Moving) {
            Transport::Plain(s) => s,
            other => {
                self.transport = other;
                return Err(NetFailure::Tls("STARTTLS inside TLS".into()));
            }
        };
        self.transport = Transport::Tls(Box::new(handshake(&self.endpoint, tcp)?));
        if let Some(t) = &self.trace {
            t.write(0, &["-- TLS handshake done".to_string()]);
        }
        Ok(())
    }

    fn trace_out(&mut self) {
        let lines = self.core.take_trace();
        if let Some(t) = &self.trace {
            t.write(0, &lines);
        }
    }
}

fn timed_out(timeout: Duration) -> NetFailure {
    NetFailure::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no response from the server within {}s",
            timeout.as_secs_f64().round()
        ),
    ))
}

fn handshake(
    endpoint: &Endpoint,
    mut tcp: TcpStream,
) -> Result<StreamOwned<ClientConnection, TcpStream>, NetFailure> {
    let name = tls::server_name(&endpoint.host).map_err(|e| NetFailure::Tls(e.to_string()))?;
    let mut conn = ClientConnection::new(endpoint.tls.clone(), name)
        .map_err(|e| NetFailure::Tls(e.to_string()))?;
    // The whole handshake, not each read of it, is bounded.
    let deadline = Instant::now() + endpoint.connect_timeout;
    let _ = tcp.set_write_timeout(Some(endpoint.connect_timeout));
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NetFailure::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )));
        }
        let _ = tcp.set_read_timeout(Some(left));
        conn.complete_io(&mut tcp).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                NetFailure::Tls(e.to_string())
            } else {
                NetFailure::Io(e)
            }
        })?;
    }
    Ok(StreamOwned::new(conn, tcp))
}
