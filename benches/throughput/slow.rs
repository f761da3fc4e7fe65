//! A server that commits slowly: it holds the reply to each end of data for a
//! fixed time (as an MTA does while it writes and syncs its queue file), one
//! message at a time per connection. One session can then move at most one
//! message per hold however deep it pipelines, so this is where parallel
//! sessions must pay off.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A running slow-commit server on 127.0.0.1; stops accepting when dropped.
pub struct SlowServer {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SlowServer {
    /// Starts a server that waits `hold` before answering each final dot.
    pub fn start(hold: Duration) -> io::Result<SlowServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let r = r.clone();
                thread::spawn(move || {
                    let _ = serve(conn, hold, &r);
                });
            }
        });
        Ok(SlowServer {
            addr,
            received,
            stop,
        })
    }

    /// Messages accepted so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, hold: Duration, received: &AtomicU64) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    // Each reply is its own small write: without this, Nagle would hold the
    // replies to pipelined commands until the client's delayed ACK (40 ms),
    // a stall on top of the hold that a real server, which answers a
    // pipelined group in one write, does not have.
    conn.set_nodelay(true)?;
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    out.write_all(b"220 slow.bench ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-slow.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 Ok\r\n",
            "DATA" => {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                loop {
                    line.clear();
                    if input.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                }
                thread::sleep(hold);
                received.fetch_add(1, Ordering::SeqCst);
                b"250 2.0.0 Ok: queued\r\n"
            }
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not implemented\r\n",
        };
        out.write_all(reply)?;
    }
}
