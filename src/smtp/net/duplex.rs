//! A TCP socket that takes the server's replies off the wire while the
//! client writes.
//!
//! A pipelining client writes many commands before it reads their replies.
//! With blocking writes, the replies to everything unanswered must fit the
//! client's receive buffer: otherwise the server blocks writing replies
//! nobody reads, stops reading commands, and the client blocks writing too
//! (RFC 2920 §3.1). Here a write that has to wait for room in the socket
//! waits for replies as well and moves them into memory as they arrive, so
//! the pipelining depth can follow the bandwidth-delay product instead of
//! the size of a socket buffer. Reads take those bytes first, then read the
//! socket itself, on the session's own thread: a reply reaches the session
//! without a hand-over between threads. TLS sits on top unchanged: rustls
//! reads and writes its records through here.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Most bytes received during writes and not yet read that are held. Far
/// more than the replies to every unanswered command (a few hundred KiB),
/// yet bounded: past it a waiting write stops taking bytes off the socket
/// until the session reads, so a hostile server cannot fill the memory.
pub const MAX_BUFFERED: usize = 16 << 20;

/// What one drain takes off the socket at most before it looks again.
const CHUNK: usize = 64 * 1024;

/// The socket (non-blocking underneath; reads and writes wait with
/// `poll(2)` up to their timeouts).
pub struct Duplex {
    tcp: TcpStream,
    /// Received while a write waited, not yet read.
    inbox: VecDeque<u8>,
    /// How the stream ended while a write waited: `None` at EOF, or the
    /// error that ended it.
    end: Option<Option<io::ErrorKind>>,
    read_timeout: Option<Duration>,
    read_deadline: Option<Instant>,
    write_timeout: Option<Duration>,
}

impl Duplex {
    /// Take over `tcp`.
    pub fn new(tcp: TcpStream) -> io::Result<Duplex> {
        tcp.set_nonblocking(true)?;
        Ok(Duplex {
            tcp,
            inbox: VecDeque::new(),
            end: None,
            read_timeout: None,
            read_deadline: None,
            write_timeout: None,
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

    /// How long one write waits for room in the socket; `None` waits for ever.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Bytes received during writes and not yet read.
    pub fn buffered(&self) -> usize {
        self.inbox.len()
    }

    /// Move what the socket holds into the inbox, up to [`MAX_BUFFERED`].
    fn drain(&mut self) {
        let mut chunk = [0u8; CHUNK];
        while self.end.is_none() && self.inbox.len() < MAX_BUFFERED {
            let room = (MAX_BUFFERED - self.inbox.len()).min(CHUNK);
            match (&self.tcp).read(&mut chunk[..room]) {
                Ok(0) => self.end = Some(None),
                Ok(n) => self.inbox.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => self.end = Some(Some(e.kind())),
            }
        }
    }

    /// Run `op` (one write) until it takes something, waiting for room and
    /// taking replies off the socket meanwhile, up to the write timeout.
    fn writing(
        &mut self,
        mut op: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let deadline = self.write_timeout.map(|t| Instant::now() + t);
        loop {
            match op(&self.tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let drain = self.end.is_none() && self.inbox.len() < MAX_BUFFERED;
                    let events = if drain {
                        libc::POLLOUT | libc::POLLIN
                    } else {
                        libc::POLLOUT
                    };
                    match wait(self.tcp.as_raw_fd(), events, deadline)? {
                        None => {
                            return Err(io::Error::new(
                                io::ErrorKind::WouldBlock,
                                "write timed out",
                            ))
                        }
                        Some(got) if drain && got & libc::POLLOUT == 0 => self.drain(),
                        Some(_) => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

/// Wait until `fd` is ready for `events` or `deadline` passes (`None`: no
/// deadline); the events that happened, or `None` when the time ran out.
fn wait(fd: i32, events: i16, deadline: Option<Instant>) -> io::Result<Option<i16>> {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                // Rounded up: poll counts whole milliseconds.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, and its count.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r > 0 {
            return Ok(Some(pfd.revents));
        }
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.inbox.is_empty() {
            return self.inbox.read(buf);
        }
        match self.end {
            Some(None) => return Ok(0),
            Some(Some(kind)) => return Err(io::Error::new(kind, "connection error")),
            None => {}
        }
        let by_timeout = self.read_timeout.map(|t| Instant::now() + t);
        let deadline = match (by_timeout, self.read_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        loop {
            match (&self.tcp).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if wait(self.tcp.as_raw_fd(), libc::POLLIN, deadline)?.is_none() {
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "read timed out"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Drop for Duplex {
    /// Closes with a FIN after what was written. A socket closed with bytes
    /// unread (replies nobody waited for, TLS 1.3 session tickets) is reset
    /// instead, and the reset throws away whatever of ours the server has not
    /// read yet: so what has arrived is taken off first (no more than the
    /// inbox would hold, and without waiting for more).
    fn drop(&mut self) {
        let mut chunk = [0u8; CHUNK];
        let mut taken = 0;
        while taken < MAX_BUFFERED {
            match (&self.tcp).read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => taken += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writing(|mut tcp| tcp.write(buf))
    }
    /// One `writev` for many pieces: rustls hands its TLS records over this
    /// way, and without it every record would be a system call of its own.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.writing(|mut tcp| tcp.write_vectored(bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
    fn a_long_write_takes_the_replies_off_the_socket() {
        let (mut duplex, server) = pair();
        // Far more than any socket buffer each way: the server writes all of
        // its "replies" before it reads anything, as a server blocked on a
        // client that does not read would.
        let server = std::thread::spawn(move || {
            let mut server = server;
            server.write_all(&vec![b'r'; 8 << 20]).unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            got.len()
        });
        duplex.set_write_timeout(Some(Duration::from_secs(10)));
        duplex.write_all(&vec![b'c'; 8 << 20]).unwrap();
        duplex.tcp().shutdown(Shutdown::Write).unwrap();
        let mut replies = Vec::new();
        duplex.set_read_timeout(Some(Duration::from_secs(10)));
        duplex.read_to_end(&mut replies).unwrap();
        assert_eq!(replies.len(), 8 << 20);
        assert_eq!(server.join().unwrap(), 8 << 20);
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
        let (mut duplex, server) = pair();
        let writer = std::thread::spawn(move || {
            let mut server = server;
            let chunk = vec![b'2'; 1 << 20];
            let mut sent = 0usize;
            // Never reads; stops when the client goes away (or after 256 MiB).
            while sent < 256 << 20 && server.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            sent
        });
        // The client's write waits for room that never comes, taking the
        // server's bytes off the socket meanwhile, but only up to the limit.
        duplex.set_write_timeout(Some(Duration::from_secs(1)));
        let err = duplex.write_all(&vec![b'c'; 64 << 20]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(
            duplex.buffered() <= MAX_BUFFERED,
            "{} bytes held",
            duplex.buffered()
        );
        assert!(duplex.buffered() > 0, "nothing was taken off the socket");
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
    fn dropping_closes_the_connection() {
        let (duplex, mut server) = pair();
        drop(duplex);
        // The client side is shut down: the server sees the end of the stream.
        let mut buf = [0u8; 1];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(server.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn dropping_with_replies_unread_still_delivers_what_was_written() {
        let (mut duplex, mut server) = pair();
        // Bytes the client never reads, such as TLS 1.3 session tickets.
        server.write_all(b"unread").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let sent = vec![b'm'; 1 << 20];
        duplex.set_write_timeout(Some(Duration::from_secs(10)));
        duplex.write_all(&sent).unwrap();
        drop(duplex);
        // A socket closed with bytes unread resets the connection, and the
        // reset throws away what the server had not read yet.
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), sent.len());
    }
}
