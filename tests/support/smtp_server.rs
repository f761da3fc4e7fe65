//! nodemailer's `smtp-server` (npm) as a recording sink: `smtp_server.js`
//! next to this file, run with the system `node` and the packages
//! `scripts/test` installed.
//!
//! Two listeners on free loopback ports: one offering STARTTLS, one with
//! implicit TLS (RFC 8314), both with a certificate from `generate_pki`.
//! AUTH PLAIN and LOGIN (RFC 4954) with one account, only inside TLS. Each
//! accepted message is stored once per envelope recipient; a policy file
//! refuses chosen recipients with a chosen code.

use std::io::{BufRead, BufReader};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;

use mailshot::smtp::net::tls::generate_pki;

use super::recording::{node_modules, support_file, write_policy, Listeners, START_TIMEOUT};
use super::{free_port, TestDir};

/// A running `smtp-server`; killed on drop.
pub struct SmtpServer {
    listeners: Listeners,
    /// Held open: the script exits when its stdin closes.
    _stdin: Option<ChildStdin>,
}

impl std::ops::Deref for SmtpServer {
    type Target = Listeners;
    fn deref(&self) -> &Listeners {
        &self.listeners
    }
}

impl SmtpServer {
    /// Starts both listeners, accepting `user`/`password`.
    pub fn start(user: &str, password: &str) -> SmtpServer {
        let modules = node_modules();
        let dir = TestDir::new();
        let pki = generate_pki(&[]);
        let cert = dir.write("cert.pem", &pki.cert_pem);
        let key = dir.write("key.pem", &pki.key_pem);
        write_policy(&dir.join("policy"), &[]);
        let (starttls_port, tls_port) = (free_port(), free_port());
        let script = support_file("smtp_server.js");
        let mut child = Command::new("node")
            .arg(&script)
            .arg(starttls_port.to_string())
            .arg(tls_port.to_string())
            .arg(&cert)
            .arg(&key)
            .arg(user)
            .arg(password)
            .arg(dir.path())
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start node {}: {e}", script.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(|l| l.ok()));
            for _ in lines {}
        });
        let ready = rx.recv_timeout(START_TIMEOUT).ok().flatten();
        if ready.as_deref() != Some("READY") {
            let _ = child.kill();
            let _ = child.wait();
            panic!("smtp-server did not report READY (got {ready:?})");
        }
        SmtpServer {
            listeners: Listeners {
                child,
                starttls_port,
                tls_port,
                ca_pem: pki.ca_pem,
                dir,
            },
            _stdin: stdin,
        }
    }
}
