//! Shared helpers of the run tests: a job in a temp dir and counting
//! deliveries; running the binary and reading the report come from
//! `support::cmd` and `support::report`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use crate::support::cmd::{spawn_command, Mailshot, Output, Running};
use crate::support::fault::{ConnectionStats, FaultHandle};
pub use crate::support::report::{by_email, read_report, ReportRow};
use crate::support::TestDir;

/// No single run in these tests may take longer than this.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The `smtp:` section for a plain-text fault server on `port`, with short
/// timeouts and retry delays; `extra` adds `key: value` pairs.
pub fn smtp_plain(port: u16, extra: &str) -> String {
    smtp_section(
        &format!("url: \"smtp+plain://127.0.0.1:{port}\""),
        &[
            ("timeout", "2s"),
            ("retry_delay", "50ms"),
            ("max_attempts", "3"),
        ],
        extra,
    )
}

/// An `smtp:` section in flow style: `head`, then each of `defaults` that
/// `extra` does not set, then `extra`'s own `key: value` pairs.
pub fn smtp_section(head: &str, defaults: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!("{{ {head}");
    for (key, value) in defaults {
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

/// The `smtp:` section for a fault server on `port` that wants a login as
/// `me`, the password taken from `MAILSHOT_TEST_PW`.
pub fn smtp_login(port: u16) -> String {
    format!(
        "{{ url: \"smtp+plain://me@127.0.0.1:{port}\", password_env: MAILSHOT_TEST_PW, allow_plaintext_auth: true, timeout: 2s, retry_delay: 50ms, max_attempts: 3 }}"
    )
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

    /// `mailshot run job.yaml ARGS` in the job's folder, not yet started;
    /// the user config is `$HOME/.config` (the job's folder).
    pub fn command(&self, args: &[&str]) -> Mailshot {
        Mailshot::new(self.dir.path())
            .args(["run", "job.yaml"])
            .args(args)
            .env_remove("XDG_CONFIG_HOME")
            .limit(RUN_LIMIT)
    }

    /// Runs `mailshot run job.yaml ARGS` to its end (bounded).
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).run()
    }

    /// Starts `mailshot run job.yaml ARGS` in the background.
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.command(args).spawn()
    }

    /// The report rows (default report path).
    pub fn report(&self) -> Vec<ReportRow> {
        read_report(&self.dir.join("job.report.csv"))
    }
}

/// Waits for `child` at most `limit` (then kills it and fails the test) and
/// collects its output.
pub fn finish(child: Running, limit: Duration) -> Output {
    child.finish_within(limit)
}

/// Sends `signal` (e.g. "INT", "TERM", "KILL") to a child we started.
pub fn signal(child: &Running, signal: &str) {
    child.signal(signal);
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

/// The largest number of connections open at the same moment.
pub fn max_overlap(conns: &[ConnectionStats]) -> usize {
    let mut events: Vec<(Instant, i32)> = Vec::new();
    for c in conns {
        events.push((c.opened.expect("opened"), 1));
        events.push((c.closed.expect("closed"), -1));
    }
    // Closings first at equal times: touching intervals are not parallel.
    events.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// The server's connection stats once every connection is closed on its side
/// (mailshot may exit a moment before the server notices the last QUIT).
pub fn closed_stats(server: &FaultHandle) -> Vec<ConnectionStats> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conns = server.connection_stats();
        if conns.iter().all(|c| c.closed.is_some()) || Instant::now() >= deadline {
            return conns;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `--json` summary event of a run's stdout.
pub fn json_summary(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary event in {stdout:?}"))
}
