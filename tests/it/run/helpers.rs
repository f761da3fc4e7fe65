//! Shared helpers: a job in a temp dir, running the binary with a bounded
//! wait, reading the report, counting deliveries.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fault::FaultHandle;
use crate::support::{mailshot_bin, TestDir};

/// No single run in these tests may take longer than this.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The `smtp:` section for a plain-text fault server on `port`, with short
/// timeouts and retry delays; `extra` adds `key: value` pairs.
pub fn smtp_plain(port: u16, extra: &str) -> String {
    let mut s = format!("{{ url: \"smtp+plain://127.0.0.1:{port}\"");
    // Defaults unless `extra` sets them.
    for (key, value) in [
        ("timeout", "2s"),
        ("retry_delay", "50ms"),
        ("max_attempts", "3"),
    ] {
        if !extra.contains(key) {
            s.push_str(&format!(", {key}: {value}"));
        }
    }
    if !extra.is_empty() {
        s.push_str(", ");
        s.push_str(extra);
    }
    s.push_str(" }");
    s
}

/// `r{i}@example.test`, the address of generated row `i` (1-based).
pub fn addr(i: usize) -> String {
    format!("r{i}@example.test")
}

/// A CSV of `n` generated rows (`email,name`).
pub fn csv_rows(n: usize) -> String {
    let mut csv = String::from("email,name\n");
    for i in 1..=n {
        csv.push_str(&format!("{},Name {i}\n", addr(i)));
    }
    csv
}

/// A job in a temp dir: `job.yaml`, `recipients.csv`, `body.txt`.
pub struct Job {
    pub dir: TestDir,
}

impl Job {
    /// A job sending to the `n` generated rows through `smtp`.
    pub fn new(smtp: &str, n: usize) -> Job {
        Job::with_csv(smtp, &csv_rows(n), "")
    }

    /// A job with this CSV and extra top-level YAML.
    pub fn with_csv(smtp: &str, csv: &str, extra_yaml: &str) -> Job {
        let dir = TestDir::new();
        dir.write("recipients.csv", csv);
        dir.write("body.txt", "Dear {{ name }},\nthis is row {{ row }}.\n");
        dir.write(
            "job.yaml",
            format!(
                "smtp: {smtp}\n\
                 from: \"Sender <sender@example.test>\"\n\
                 to: \"{{{{ name }}}} <{{{{ email }}}}>\"\n\
                 subject: \"Hello {{{{ name }}}}\"\n\
                 text: body.txt\n\
                 {extra_yaml}\n\
                 recipients: {{ file: recipients.csv }}\n"
            ),
        );
        Job { dir }
    }

    /// `mailshot run job.yaml ARGS` in the job's folder, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(mailshot_bin());
        cmd.current_dir(self.dir.path())
            .arg("run")
            .arg("job.yaml")
            .args(args)
            .stdin(Stdio::null())
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", self.dir.path());
        cmd
    }

    /// Runs `mailshot run job.yaml ARGS` to its end (bounded).
    pub fn run(&self, args: &[&str]) -> Out {
        finish(spawn(self.command(args)), RUN_LIMIT)
    }

    /// Starts `mailshot run job.yaml ARGS` in the background.
    pub fn spawn(&self, args: &[&str]) -> Child {
        spawn(self.command(args))
    }

    /// The report rows (default report path).
    pub fn report(&self) -> Vec<ReportRow> {
        read_report(&self.dir.join("job.report.csv"))
    }
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Out {
    /// Exit code (`-1` if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Starts `cmd` with piped stdout and stderr.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailshot")
}

/// Waits for `child` at most `limit` (then kills it and fails the test) and
/// collects its output.
pub fn finish(mut child: Child, limit: Duration) -> Out {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mailshot") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mailshot did not finish within {limit:?}; stderr:\n{}",
                t_err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Sends `signal` (e.g. "INT", "TERM", "KILL") to a child we started.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {}", child.id());
}

/// One row of the report CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub row: u64,
    pub email: String,
    pub status: String,
    pub code: String,
    pub enhanced: String,
    pub reply: String,
    pub message_id: String,
    pub attempts: u32,
}

/// Reads a report, checking its header.
pub fn read_report(path: &std::path::Path) -> Vec<ReportRow> {
    let mut rd = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("read report {}: {e}", path.display()));
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        header,
        [
            "row",
            "email",
            "status",
            "code",
            "enhanced",
            "reply",
            "message_id",
            "attempts"
        ]
    );
    rd.records()
        .map(|r| {
            let r = r.expect("report record");
            ReportRow {
                row: r[0].parse().expect("row number"),
                email: r[1].to_owned(),
                status: r[2].to_owned(),
                code: r[3].to_owned(),
                enhanced: r[4].to_owned(),
                reply: r[5].to_owned(),
                message_id: r[6].to_owned(),
                attempts: r[7].parse().expect("attempts"),
            }
        })
        .collect()
}

/// Report rows by email.
pub fn by_email(rows: &[ReportRow]) -> HashMap<String, ReportRow> {
    rows.iter().map(|r| (r.email.clone(), r.clone())).collect()
}

/// How many accepted messages each envelope recipient got from the fault server.
pub fn deliveries(server: &FaultHandle) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for m in server.messages() {
        for r in m.rcpts {
            *n.entry(r).or_insert(0) += 1;
        }
    }
    n
}

/// Asserts that each of the generated rows `1..=n` was delivered exactly once.
pub fn assert_each_once(server: &FaultHandle, n: usize) {
    let got = deliveries(server);
    for i in 1..=n {
        assert_eq!(
            got.get(&addr(i)).copied().unwrap_or(0),
            1,
            "deliveries to {}: {got:?}",
            addr(i)
        );
    }
    assert_eq!(got.len(), n, "unexpected recipients: {got:?}");
}

/// RCPT commands the server saw for `address`.
pub fn rcpts_for(server: &FaultHandle, address: &str) -> usize {
    let want = format!("RCPT TO:<{address}>");
    server
        .commands()
        .iter()
        .filter(|c| {
            c.to_ascii_uppercase()
                .starts_with(&want.to_ascii_uppercase())
        })
        .count()
}
