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

mod connection;

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
                    let _ = connection::Connection::new(sock, peer, &shared).run();
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
