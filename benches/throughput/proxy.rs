//! A user-space delaying TCP proxy on loopback, standing in for netem (absent
//! in this kernel): every chunk read in either direction is forwarded RTT/2
//! later. Each direction is a reader thread that timestamps chunks into an
//! unbounded queue and a writer thread that sleeps until each chunk is due,
//! so order is preserved and throughput is not limited (the reader keeps
//! draining the socket while chunks wait).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A running proxy; stops accepting on drop (open connections end with
/// their peers).
pub struct DelayProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `upstream`, adding `rtt` to every round trip.
    pub fn start(upstream: SocketAddr, rtt: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let one_way = rtt / 2;
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                // Forward small chunks at once; the delay is the only latency added.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    pipe(client, s2, one_way);
                    pipe(server, c2, one_way);
                }
            }
        });
        Ok(DelayProxy {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// One direction: `from` → (delay) → `to`. An empty chunk marks EOF.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((Instant::now() + delay, Vec::new()));
                    break;
                }
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        while let Ok((due, chunk)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if chunk.is_empty() {
                let _ = to.shutdown(Shutdown::Write);
                break;
            }
            if to.write_all(&chunk).is_err() {
                // The peer is gone: make the other side notice too.
                let _ = to.shutdown(Shutdown::Both);
                break;
            }
            ack_promptly(&to);
        }
    });
}

/// The proxy's own sockets acknowledge what they receive at once: the
/// delay above is the only one the link adds. Otherwise the kernel's
/// delayed acknowledgement (about 40 ms) on the proxy's side would hold the
/// replies a server with Nagle's algorithm on (Haraka) writes one by one
/// after the first of a pipelined group, a wait that belongs to neither the
/// client nor the link. Linux re-enters delayed-ACK mode when it sends data
/// right after receiving some, hence after every write.
fn ack_promptly(sock: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    {
        let _ = socket2::SockRef::from(sock).set_tcp_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
    let _ = sock;
}
