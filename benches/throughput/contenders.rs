//! The senders being compared, each run as a child process so that wall
//! time, CPU time and peak RSS are measured the same way for all of them:
//! mailshot (`run` over pipelined sessions), Postfix's `smtp-source` (the
//! unpersonalised C load generator: the raw ceiling of a lock-step client),
//! lettre's pooled `SmtpTransport` (via the harness's own worker mode) and
//! Python `mailmerge` (one connection per message, installed into a venv).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::procs::{self, Measured};
use crate::servers::postfix_tool;

/// One sender configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// `mailshot run --sessions S`.
    Mailshot(usize),
    /// `smtp-source -s S -d` (unpersonalised, no pipelining).
    SmtpSource(usize),
    /// lettre `SmtpTransport` with a pool of S connections and S threads.
    Lettre(usize),
    /// Python `mailmerge` (sequential, a new connection per message).
    Mailmerge,
}

impl Contender {
    /// A short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            Contender::Mailshot(_) => "mailshot",
            Contender::SmtpSource(_) => "smtp-source (raw)",
            Contender::Lettre(_) => "lettre pool",
            Contender::Mailmerge => "mailmerge (py)",
        }
    }

    /// Parallel SMTP sessions.
    pub fn sessions(&self) -> usize {
        match *self {
            Contender::Mailshot(s) | Contender::SmtpSource(s) | Contender::Lettre(s) => s,
            Contender::Mailmerge => 1,
        }
    }

    /// The data-transfer command it uses against a server with or without CHUNKING.
    pub fn protocol(&self, chunking: bool) -> &'static str {
        match self {
            Contender::Mailshot(_) if chunking => "pipelined BDAT",
            Contender::Mailshot(_) => "pipelined DATA",
            _ => "lock-step DATA",
        }
    }
}

/// Everything a run needs to know about the machine and the data.
pub struct Env {
    /// The built `mailshot` binary.
    pub mailshot: PathBuf,
    /// This harness binary (re-executed as the lettre worker).
    pub me: PathBuf,
    /// Scratch folder for outputs.
    pub work: PathBuf,
    /// The recipients CSV used for sending.
    pub csv: PathBuf,
    /// The mailshot job reading `csv`.
    pub job: PathBuf,
    /// The mailmerge executable, when installed.
    pub mailmerge: Option<PathBuf>,
    /// Upper bound for one run.
    pub timeout: Duration,
    /// The body length smtp-source sends (`-l`).
    pub body_len: usize,
    /// When set, mailshot requires STARTTLS and trusts this CA (the capture
    /// server's); otherwise it talks plain text.
    pub ca_file: Option<PathBuf>,
    /// When set, the contender runs on this CPU only.
    pub cpu: Option<usize>,
}

/// The result of one run.
pub struct Outcome {
    /// Time, CPU and memory.
    pub m: Measured,
    /// The contender itself says every message was accepted.
    pub all_sent: bool,
    /// Why not, when not.
    pub detail: String,
}

fn tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Sends the first `n` recipients to 127.0.0.1:`port`.
pub fn run(c: Contender, env: &Env, port: u16, n: usize) -> io::Result<Outcome> {
    let out = env.work.join("contender.out");
    let err = env.work.join("contender.err");
    let mut cmd = match c {
        Contender::Mailshot(s) => {
            // Like the other contenders, each session is one connection for
            // the whole run (mailshot's default reconnects every 1,000
            // messages, which real servers want, and which costs a few round
            // trips each time).
            let job = env.work.join("send-run.yaml");
            let base = fs::read_to_string(&env.job)?;
            let security = match &env.ca_file {
                Some(ca) => format!(
                    "  url: \"smtp://127.0.0.1:{port}\"\n  ca_file: \"{}\"\n",
                    ca.display()
                ),
                None => format!("  url: \"smtp+plain://127.0.0.1:{port}\"\n"),
            };
            fs::write(
                &job,
                format!(
                    "{base}smtp:\n{security}  max_messages_per_session: {}\n",
                    n.max(1)
                ),
            )?;
            let mut cmd = Command::new(&env.mailshot);
            cmd.arg("run")
                .arg(&job)
                .args(["--quiet", "--restart"])
                .arg("--sessions")
                .arg(s.to_string())
                .arg("--limit")
                .arg(n.to_string())
                .arg("--report")
                .arg(env.work.join("report.csv"));
            cmd
        }
        Contender::SmtpSource(s) => {
            let bin = postfix_tool("smtp-source")
                .ok_or_else(|| io::Error::other("smtp-source not found"))?;
            let mut cmd = Command::new(bin);
            cmd.arg("-s")
                .arg(s.to_string())
                .arg("-m")
                .arg(n.to_string())
                // About the size of mailshot's messages.
                .arg("-l")
                .arg(env.body_len.to_string())
                .arg("-d")
                .args(["-f", "sender@bench.example", "-t", "user@example.com"])
                .args(["-M", "bench.localdomain", "-S", "Bench"])
                .arg(format!("127.0.0.1:{port}"));
            cmd
        }
        Contender::Lettre(s) => {
            let mut cmd = Command::new(&env.me);
            cmd.arg("--lettre-worker")
                .arg(port.to_string())
                .arg(&env.csv)
                .arg(n.to_string())
                .arg(s.to_string());
            cmd
        }
        Contender::Mailmerge => {
            let bin = env
                .mailmerge
                .as_ref()
                .ok_or_else(|| io::Error::other("mailmerge not installed"))?;
            let (template, config) = crate::data::write_mailmerge(&env.work, port)?;
            let mut cmd = Command::new(bin);
            cmd.arg("--template")
                .arg(template)
                .arg("--database")
                .arg(&env.csv)
                .arg("--config")
                .arg(config)
                .args(["--no-dry-run", "--output-format", "raw"])
                .arg("--limit")
                .arg(n.to_string());
            cmd
        }
    };
    if let Some(cpu) = env.cpu {
        procs::on_cpu(&mut cmd, cpu);
    }
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out)?)
        .stderr(fs::File::create(&err)?);
    let m = procs::run_measured(&mut cmd, env.timeout)?;
    let mut all_sent = m.ok();
    let mut detail = String::new();
    if c == Contender::Mailmerge && all_sent {
        // mailmerge prints ">>> message K sent" after each accepted message.
        let text = fs::read_to_string(&out).unwrap_or_default();
        let sent = text
            .lines()
            .filter(|l| l.starts_with(">>> message ") && l.ends_with(" sent"))
            .count();
        if sent != n {
            all_sent = false;
            detail = format!("mailmerge reported {sent} of {n} sent");
        }
    }
    if !all_sent && detail.is_empty() {
        detail = format!(
            "exit {}{}: {}",
            m.code,
            if m.timed_out { " (timed out)" } else { "" },
            tail(&err)
        );
    }
    Ok(Outcome {
        m,
        all_sent,
        detail,
    })
}

/// Finds or installs Python `mailmerge` into `venv`; `Err` says why not.
pub fn install_mailmerge(venv: &Path) -> Result<PathBuf, String> {
    let bin = venv.join("bin").join("mailmerge");
    if bin.exists() {
        return Ok(bin);
    }
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let mut mk = Command::new("python3");
    mk.arg("-m").arg("venv").arg(venv);
    quiet(&mut mk);
    let m = procs::run_measured(&mut mk, Duration::from_secs(120)).map_err(|e| e.to_string())?;
    if !m.ok() {
        return Err("python3 -m venv failed".into());
    }
    let mut pip = Command::new(venv.join("bin").join("pip"));
    pip.args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "mailmerge",
    ]);
    quiet(&mut pip);
    let m = procs::run_measured(&mut pip, Duration::from_secs(300)).map_err(|e| e.to_string())?;
    if !m.ok() || !bin.exists() {
        return Err(format!("pip install mailmerge failed (exit {})", m.code));
    }
    Ok(bin)
}
