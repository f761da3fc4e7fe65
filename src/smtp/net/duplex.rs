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

/// Most bytes received and not yet read that the reader thread holds. Far
/// more than the replies to every unanswered command (a few hundred KiB),
/// yet bounded: past it the thread stops taking bytes off the socket until
/// the session reads, so a hostile server cannot fill the memory.
pub const MAX_BUFFERED: usize = 16 << 20;

/// What the reader thread has received and not yet handed out.
#[derive(Default)]
struct Inbox {
    data: VecDeque<u8>,
    /// The end of the stream: `None` at EOF, or the error that ended it.
    end: Option<Option<io::ErrorKind>>,
    /// The socket is being dropped: the reader must stop waiting for room.
    closing: bool,
}

#[derive(Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    arrived: Condvar,
    /// Signalled when a read makes room in a full inbox.
    drained: Condvar,
}

/// The socket: writes go straight to it, reads come from the reader thread.
pub struct Duplex {
    tcp: TcpStream,
    shared: Arc<Shared>,
    read_timeout: Option<Duration>,
    read_deadline: Option<Instant>,
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
                    {
                        let mut inbox = sink.inbox.lock().unwrap_or_else(|e| e.into_inner());
                        while inbox.data.len() >= MAX_BUFFERED && !inbox.closing {
                            inbox = sink.drained.wait(inbox).unwrap_or_else(|e| e.into_inner());
                        }
                        if inbox.closing {
                            return;
                        }
                    }
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
            read_deadline: None,
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

    /// A point in time no read waits past, whatever the read timeout says
    /// (`None`: the read timeout alone applies). Every read before it,
    /// however many, shares it: a server trickling bytes cannot extend it.
    pub fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        self.read_deadline = deadline;
    }

    /// Bytes received and not yet read.
    pub fn buffered(&self) -> usize {
        let inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
        inbox.data.len()
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let by_timeout = self.read_timeout.map(|t| Instant::now() + t);
        let deadline = match (by_timeout, self.read_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !inbox.data.is_empty() {
                let n = buf.len().min(inbox.data.len());
                for (dst, src) in buf.iter_mut().zip(inbox.data.drain(..n)) {
                    *dst = src;
                }
                self.shared.drained.notify_all();
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
    /// One `writev` for many pieces: rustls hands its TLS records over this
    /// way, and without it every record would be a system call of its own.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.tcp.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl Drop for Duplex {
    fn drop(&mut self) {
        // Ends the reader's blocking read, or its wait for room.
        {
            let mut inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
            inbox.closing = true;
        }
        self.shared.drained.notify_all();
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
    fn an_endless_stream_is_held_only_up_to_the_limit() {
        let (duplex, server) = pair();
        let writer = std::thread::spawn(move || {
            let mut server = server;
            let chunk = vec![b'2'; 1 << 20];
            let mut sent = 0usize;
            // Stops when the client goes away (or after 256 MiB).
            while sent < 256 << 20 && server.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            sent
        });
        // Give the server time to write far more than the limit.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) && duplex.buffered() < MAX_BUFFERED {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            duplex.buffered() <= MAX_BUFFERED + 64 * 1024,
            "{} bytes held",
            duplex.buffered()
        );
        drop(duplex);
        let sent = writer.join().unwrap();
        assert!(sent < 256 << 20, "the server was never held back");
    }

    #[test]
    fn a_deadline_bounds_every_read_before_it() {
        let (mut duplex, mut server) = pair();
        duplex.set_read_timeout(Some(Duration::from_secs(10)));
        duplex.set_read_deadline(Some(Instant::now() + Duration::from_millis(300)));
        let trickle = std::thread::spawn(move || {
            for _ in 0..20 {
                if server.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let mut got = 0;
        let err = loop {
            match duplex.read(&mut [0u8; 16]) {
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(got > 0);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        drop(duplex);
        trickle.join().unwrap();
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
