//! A private DNS server for MX tests: Debian's `dnsmasq` on a free
//! loopback port, answering only from the records a test gives it (no
//! upstream, no /etc/hosts, no config file). Every name under `.test` that
//! the test did not give is NXDOMAIN; a domain marked `broken` is forwarded
//! to a loopback port where nothing answers, so asking for it fails as a
//! temporary DNS failure. Stopped (by its own pid) on drop.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TestDir};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// The records a [`Dns`] serves.
#[derive(Default)]
pub struct Zone {
    args: Vec<String>,
}

impl Zone {
    /// An empty zone: every `.test` name is NXDOMAIN.
    pub fn new() -> Zone {
        Zone::default()
    }

    /// `domain MX preference host`.
    pub fn mx(mut self, domain: &str, preference: u16, host: &str) -> Zone {
        self.args
            .push(format!("--mx-host={domain},{host},{preference}"));
        self
    }

    /// `name A/AAAA ip`.
    pub fn host(mut self, name: &str, ip: &str) -> Zone {
        self.args.push(format!("--host-record={name},{ip}"));
        self
    }

    /// `domain MX 0 .` (RFC 7505), written as raw record data: preference
    /// 0 and the root name.
    pub fn null_mx(mut self, domain: &str) -> Zone {
        self.args.push(format!("--dns-rr={domain},15,000000"));
        self
    }

    /// Questions about `domain` go to a server that never answers.
    pub fn broken(mut self, domain: &str) -> Zone {
        let dead = free_port();
        self.args
            .push(format!("--server=/{domain}/127.0.0.1#{dead}"));
        self
    }

    /// Starts dnsmasq serving these records.
    pub fn start(self) -> Dns {
        assert!(
            std::path::Path::new(DNSMASQ).exists(),
            "{DNSMASQ} is missing: install dnsmasq-base (scripts/test does)"
        );
        let dir = TestDir::new();
        let port = free_port();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let child = Command::new(DNSMASQ)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--local=/test/",
                "--cache-size=0",
                "--log-queries",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--user={user}"))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dnsmasq.log")).unwrap())
            .spawn()
            .expect("spawn dnsmasq");
        let dns = Dns { child, port, dir };
        dns.wait_ready();
        dns
    }
}

/// A running dnsmasq.
pub struct Dns {
    child: Child,
    port: u16,
    dir: TestDir,
}

impl Dns {
    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its log (one line per question with `--log-queries`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    /// Asks for `ready.test A` until any answer comes (bounded).
    fn wait_ready(&self) {
        // Header: id 0x1234, RD, one question; then the name, type A, class IN.
        let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["ready", "test"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 512];
        loop {
            let _ = socket.send_to(&query, self.addr());
            if matches!(socket.recv_from(&mut buf), Ok((n, _)) if n >= 12 && buf[..2] == [0x12, 0x34])
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq never answered:\n{}",
                self.log()
            );
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
