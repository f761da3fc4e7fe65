//! `mailshot capture` as a fixture: the built binary's capture server on a
//! free loopback port, storing what it accepts as `.eml` files in a temp
//! folder, killed when the fixture is dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::cmd::Mailshot;
use super::{files_with_suffix, free_port, TestDir};

/// A running `mailshot capture`; killed (by its own pid) on drop.
pub struct Capture {
    /// The capture process.
    pub child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// Where it stores messages (and its `capture-ca.pem`).
    pub dir: TestDir,
}

impl Capture {
    /// Starts `mailshot capture` with `extra` options and waits (bounded)
    /// until it greets.
    pub fn start(extra: &[&str]) -> Capture {
        let dir = TestDir::new();
        let port = free_port();
        let mut cmd = Mailshot::new(dir.path())
            .args(["capture", "--listen", &format!("127.0.0.1:{port}"), "--dir"])
            .arg(dir.path())
            .args(extra)
            .command();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mailshot capture");
        let cap = Capture { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = TcpStream::connect(cap.addr()) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 3];
                if (&s).read_exact(&mut buf).is_ok() && &buf == b"220" {
                    // Wait for the server to close, so the probe's place is free.
                    let _ = (&s).write_all(b"QUIT\r\n");
                    let _ = (&s).read_to_end(&mut Vec::new());
                    break;
                }
            }
            assert!(Instant::now() < deadline, "mailshot capture never greeted");
            std::thread::sleep(Duration::from_millis(50));
        }
        cap
    }

    /// Its loopback address.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Threads of the capture process right now.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .expect("read the capture process's threads")
            .count()
    }

    /// The stored messages' bytes.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        files_with_suffix(self.dir.path(), ".eml")
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
