//! A job folder for the interop checks, running mailshot on it, reading its
//! report, and counting what the server stored.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::servers::Server;
use crate::support::recording::{count, wait_for, Copy};
use crate::support::{mailshot_bin, TestDir};

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
    pub fn run(&self, args: &[&str], password: &str) -> Run {
        let mut cmd = Command::new(mailshot_bin());
        cmd.current_dir(self.dir.path())
            .arg("run")
            .arg("job.yaml")
            .args(args)
            .env("INTEROP_PW", password)
            .env("XDG_CONFIG_HOME", self.dir.join("xdg"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("start mailshot");
        let mut err = child.stderr.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for mailshot") {
                break status;
            }
            if start.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mailshot did not finish within {RUN_LIMIT:?}; stderr:\n{}",
                    t_err.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();
        let _ = t_out.join();
        Run {
            code: status.code().unwrap_or(-1),
            stderr: t_err.join().unwrap(),
            elapsed,
        }
    }

    /// The report rows by row number.
    pub fn report(&self) -> HashMap<u64, ReportRow> {
        let path = self.dir.join("job.report.csv");
        let mut rd = csv::Reader::from_path(&path)
            .unwrap_or_else(|e| panic!("read report {}: {e}", path.display()));
        let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
        let col = |name: &str| header.iter().position(|h| h == name).expect(name);
        let (row, status, code, reply) = (col("row"), col("status"), col("code"), col("reply"));
        rd.records()
            .map(|r| {
                let r = r.expect("report record");
                let n: u64 = r[row].parse().expect("row number");
                let entry = ReportRow {
                    status: r[status].to_owned(),
                    code: r[code].to_owned(),
                    reply: r[reply].to_owned(),
                };
                (n, entry)
            })
            .collect()
    }
}

/// What one run did.
pub struct Run {
    /// Exit code (`-1` if killed by a signal).
    pub code: i32,
    /// What it printed on stderr.
    pub stderr: String,
    /// Wall-clock time from start to exit.
    pub elapsed: Duration,
}

/// The columns of a report row these tests judge.
#[derive(Debug, Clone)]
pub struct ReportRow {
    pub status: String,
    pub code: String,
    pub reply: String,
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
