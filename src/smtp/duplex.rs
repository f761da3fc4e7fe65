//! A TCP socket whose receiving side is drained by a thread of its own.
//!
//! A pipelining client writes many commands before it reads their replies.
//! With blocking writes, the replies to everything unanswered must fit the
//! client's receive buffer: otherwise the server blocks writing replies
//! nobody reads, stops reading commands, and the client blocks writing too
//! (RFC 2920 §3.1). Draining the socket into memory as bytes arrive removes
//! that bound, so the pipelining depth can follow the bandwidth-delay
//! product instead of the size of a socket buffer. TLS sits on top
//! unchanged: rustls reads its records from here.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the reader thread has received and not yet handed out.
#[derive(Default)]
struct Inbox {
    data: VecDeque<u8>,
    /// The end of the stream: `None` at EOF, or the error that ended it.
    end: Option<Option<io::ErrorKind>>,
}

#[derive(Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    arrived: Condvar,
}

/// The socket: writes go straight to it, reads come from the reader thread.
pub struct Duplex {
    tcp: TcpStream,
    shared: Arc<Shared>,
    read_timeout: Option<Duration>,
    reader: Option<JoinHandle<()>>,
}

impl Duplex {
    /// Start draining `tcp`.
    pub fn new(tcp: TcpStream) -> io::Result<Duplex> {
        let mut source = tcp.try_clone()?;
        source.set_read_timeout(None)?;
        let shared = Arc::new(Shared::default());
        let sink = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("smtp-reader".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let result = source.read(&mut buf);
                    let mut inbox = sink.inbox.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(0) => inbox.end = Some(None),
                        Ok(n) => inbox.data.extend(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => inbox.end = Some(Some(e.kind())),
                    }
                    let done = inbox.end.is_some();
                    drop(inbox);
                    sink.arrived.notify_all();
                    if done {
                        return;
                    }
                }
            })?;
        Ok(Duplex {
            tcp,
            shared,
            read_timeout: None,
            reader: Some(reader),
        })
    }

    /// The socket (for its options and to shut it down).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// How long a read waits for data; `None` waits for ever.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        let mut inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !inbox.data.is_empty() {
                let n = buf.len().min(inbox.data.len());
                for (dst, src) in buf.iter_mut().zip(inbox.data.drain(..n)) {
                    *dst = src;
                }
                return Ok(n);
            }
            match inbox.end {
                Some(None) => return Ok(0),
                Some(Some(kind)) => return Err(io::Error::new(kind, "connection error")),
                None => {}
            }
            inbox = match deadline {
                None => self
                    .shared
                    .arrived
                    .wait(inbox)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "read timed out"));
                    }
                    self.shared
                        .arrived
                        .wait_timeout(inbox, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl Drop for Duplex {
    fn drop(&mut self) {
        // Ends the reader's blocking read.
        let _ = self.tcp.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Duplex, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Duplex::new(client).unwrap(), server)
    }

    #[test]
    fn replies_are_drained_while_nobody_reads() {
        let (mut duplex, mut server) = pair();
        // Far more than any socket buffer: written in full only because the
        // reader thread keeps taking it off the socket.
        let megabytes = vec![b'x'; 8 << 20];
        server.write_all(&megabytes).unwrap();
        drop(server);
        let mut got = Vec::new();
        duplex.set_read_timeout(Some(Duration::from_secs(10)));
        duplex.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), megabytes.len());
    }

    #[test]
    fn a_read_times_out_when_nothing_arrives() {
        let (mut duplex, _server) = pair();
        duplex.set_read_timeout(Some(Duration::from_millis(50)));
        let started = Instant::now();
        let err = duplex.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn dropping_ends_the_reader_thread() {
        let (duplex, mut server) = pair();
        drop(duplex);
        // The client side is shut down: the server sees the end of the stream.
        let mut buf = [0u8; 1];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(server.read(&mut buf).unwrap(), 0);
    }
}
