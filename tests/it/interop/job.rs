//! A job folder for the interop checks, running mailshot on it, reading its
//! report, and counting what the server stored.

use std::collections::HashMap;
use std::time::Duration;

use super::servers::Server;
use crate::support::cmd::{mailshot, Output};
use crate::support::recording::{count, wait_for, Copy};
use crate::support::report::{by_row, read_report, ReportRow};
use crate::support::TestDir;

/// The account every server accepts.
pub const USER: &str = "sender@example.test";
/// Its password.
pub const PASSWORD: &str = "interop-s3cret";
/// No single run may take longer than this; a hang fails the test instead.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long the server side may take to store what it accepted.
const STORE_LIMIT: Duration = Duration::from_secs(20);

/// How mailshot reaches the server.
#[derive(Clone, Copy, Debug)]
pub enum Tls {
    /// Plain connect, then STARTTLS (`smtp://`).
    Starttls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// A job folder: `job.yaml`, `recipients.csv` (`email,name,cc,bcc`),
/// `body.txt` and `report.pdf` (attached to every message).
pub struct Job {
    pub dir: TestDir,
}

/// Bytes no text encoder would leave alone.
pub fn pdf_bytes() -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend(0u8..=255);
    pdf
}

/// The To, Cc and Bcc addresses of row `i` in a job whose addresses carry `tag`.
pub fn row_addrs(tag: &str, i: usize) -> [String; 3] {
    [
        format!("to{i}.{tag}@to.example.test"),
        format!("cc{i}.{tag}@cc.example.test"),
        format!("bcc{i}.{tag}@bcc.example.test"),
    ]
}

impl Job {
    /// `rows` rows, each with a To, a Cc and a Bcc, sent to `port` with
    /// `auth` and `password`.
    pub fn new(
        server: &impl Server,
        tls: Tls,
        port: u16,
        auth: &str,
        tag: &str,
        rows: usize,
    ) -> Job {
        let dir = TestDir::new();
        let mut csv = String::from("email,name,cc,bcc\n");
        for i in 1..=rows {
            let [to, cc, bcc] = row_addrs(tag, i);
            csv.push_str(&format!("{to},Name {i},{cc},{bcc}\n"));
        }
        dir.write("recipients.csv", csv);
        dir.write("body.txt", "Dear {{ name }},\nyour report is attached.\n");
        dir.write("report.pdf", pdf_bytes());
        let scheme = match tls {
            Tls::Starttls => "smtp",
            Tls::Implicit => "smtps",
        };
        dir.write(
            "job.yaml",
            format!(
                "smtp: {{ url: \"{scheme}://127.0.0.1:{port}\", ca_file: \"{ca}\", \
                 username: \"{USER}\", password_env: INTEROP_PW, auth: {auth}, \
                 timeout: 10s, retry_delay: 100ms, max_attempts: 2 }}\n\
                 from: \"Sender <{USER}>\"\n\
                 to: \"{{{{ name }}}} <{{{{ email }}}}>\"\n\
                 cc: \"{{{{ cc }}}}\"\n\
                 bcc: \"{{{{ bcc }}}}\"\n\
                 subject: \"Report for {{{{ name }}}}\"\n\
                 text: body.txt\n\
                 attachments:\n  - path: report.pdf\n\
                 recipients: {{ file: recipients.csv }}\n",
                ca = server.ca_file().display(),
            ),
        );
        Job { dir }
    }

    /// Runs `mailshot run job.yaml ARGS` with `password`, bounded.
    pub fn run(&self, args: &[&str], password: &str) -> Output {
        mailshot(self.dir.path(), ["run", "job.yaml"])
            .args(args)
            .env("INTEROP_PW", password)
            .limit(RUN_LIMIT)
            .run()
    }

    /// The report rows by row number.
    pub fn report(&self) -> HashMap<u64, ReportRow> {
        by_row(&read_report(&self.dir.join("job.report.csv")))
    }
}

/// Copies per recipient, once the server has stored at least `n`.
pub fn copies_after(server: &impl Server, n: usize) -> (Vec<Copy>, HashMap<String, usize>) {
    let copies = wait_for(|| server.copies(), n, STORE_LIMIT);
    let counted = count(&copies);
    (copies, counted)
}

/// Asserts each address got exactly `want` copies.
pub fn assert_copies(name: &str, got: &HashMap<String, usize>, want: &[(&str, usize)]) {
    for (addr, n) in want {
        assert_eq!(
            got.get(*addr).copied().unwrap_or(0),
            *n,
            "{name}: copies for {addr} (all: {got:?})"
        );
    }
}
