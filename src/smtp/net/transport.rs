//! A connection that starts in plain text and may move under TLS
//! (STARTTLS, RFC 3207; STLS, RFC 2595): one type for the SMTP session and
//! the mailbox clients, over whatever socket each reads from.

use std::io::{self, Read, Write};

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

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            // `StreamOwned` would write only the first piece; `Stream`
            // encrypts them all in one go.
            Transport::Tls(s) => {
                let s = &mut **s;
                rustls::Stream::new(&mut s.conn, &mut s.sock).write_vectored(bufs)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::net::duplex::Duplex;
    use crate::smtp::net::tls::{generate_pki, server_config, server_name};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use rustls::RootCertStore;
    use std::io::IoSlice;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::Duration;

    /// A TLS client over a `Duplex`, and the server end of the same loopback
    /// connection, which returns every byte it decrypts until the client closes.
    fn tls_pair() -> (Transport<Duplex>, std::thread::JoinHandle<Vec<u8>>) {
        let pki = generate_pki(&[]);
        let server = server_config(&pki);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let conn = rustls::ServerConnection::new(server).unwrap();
            let mut tls = StreamOwned::new(conn, sock);
            let mut got = Vec::new();
            let _ = tls.read_to_end(&mut got);
            got
        });
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = server_name("localhost").unwrap();
        let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut duplex = Duplex::new(TcpStream::connect(addr).unwrap()).unwrap();
        duplex.set_read_timeout(Some(Duration::from_secs(10)));
        while conn.is_handshaking() {
            conn.complete_io(&mut duplex).unwrap();
        }
        (
            Transport::Tls(Box::new(StreamOwned::new(conn, duplex))),
            srv,
        )
    }

    #[test]
    fn a_vectored_write_under_tls_delivers_every_piece_in_order() {
        let (mut transport, srv) = tls_pair();
        // Several TLS records' worth (16 KiB each), in pieces of uneven sizes.
        let pieces: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![b'a' + i; 3000 + 7000 * usize::from(i)])
            .collect();
        let want = pieces.concat();
        let mut written = 0;
        // Bounded: every call writes at least one byte or the test fails.
        while written < want.len() {
            let mut skip = written;
            let mut left = Vec::new();
            for p in &pieces {
                if skip >= p.len() {
                    skip -= p.len();
                } else {
                    left.push(IoSlice::new(&p[skip..]));
                    skip = 0;
                }
            }
            let n = transport.write_vectored(&left).unwrap();
            assert!(n > 0, "a vectored write wrote nothing");
            written += n;
        }
        transport.flush().unwrap();
        if let Transport::Tls(s) = &mut transport {
            s.conn.send_close_notify();
            s.flush().unwrap();
        }
        drop(transport);
        assert_eq!(srv.join().unwrap(), want);
    }
}
