//! A connection that starts in plain text and may move under TLS
//! (STARTTLS, RFC 3207; STLS, RFC 2595): one type for the SMTP session and
//! the mailbox clients, over whatever socket each reads from.

use std::io::{self, IoSlice, Read, Write};

use rustls::{ClientConnection, StreamOwned};

/// The socket `S`, in plain text or under rustls.
pub enum Transport<S: Read + Write> {
    /// Plain text.
    Plain(S),
    /// Under TLS.
    Tls(Box<StreamOwned<ClientConnection, S>>),
    /// Only while the socket moves under TLS.
    Moving,
}

impl<S: Read + Write> Transport<S> {
    /// The socket underneath, unless it is moving under TLS.
    pub fn sock(&self) -> Option<&S> {
        match self {
            Transport::Plain(s) => Some(s),
            Transport::Tls(s) => Some(&s.sock),
            Transport::Moving => None,
        }
    }

    /// The socket underneath, mutably, unless it is moving under TLS.
    pub fn sock_mut(&mut self) -> Option<&mut S> {
        match self {
            Transport::Plain(s) => Some(s),
            Transport::Tls(s) => Some(&mut s.sock),
            Transport::Moving => None,
        }
    }
}

fn moving() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake not finished")
}

impl<S: Read + Write> Read for Transport<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
            Transport::Moving => Err(moving()),
        }
    }
}

impl<S: Read + Write> Write for Transport<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
            Transport::Moving => Err(moving()),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            Transport::Tls(s) => s.write_vectored(bufs),
            Transport::Moving => Err(moving()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
            Transport::Moving => Err(moving()),
        }
    }
}
