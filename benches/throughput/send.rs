//! One-off message latency: `mailshot send` against msmtp (Debian's
//! `msmtp`), both talking STARTTLS to the capture server with its
//! throwaway CA trusted, taking turns; the wall time of each whole process
//! (start-up, handshake, the message, QUIT), median of the runs.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::attach::median;
use crate::contenders::Env;
use crate::procs;
use crate::results::Record;
use crate::servers::Server;

/// mailshot's median must be at most this share of msmtp's.
pub const GOAL: f64 = 0.5;

/// The figures of one section run (milliseconds per message).
pub struct Figures {
    /// `mailshot send`: wall milliseconds of each run.
    pub mailshot: Result<Vec<f64>, String>,
    /// msmtp: wall milliseconds of each run.
    pub msmtp: Result<Vec<f64>, String>,
}

const BODY: &str = "Hello,\n\nyour statement for November is ready.\n\nRegards,\nThe bench\n";

/// msmtp, when installed.
fn msmtp() -> Option<PathBuf> {
    ["/usr/bin/msmtp", "/usr/local/bin/msmtp"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Writes both programs' configuration (and their input) under `dir`.
fn setup(dir: &Path, port: u16, ca: &Path) -> io::Result<()> {
    let conf = dir.join("xdg").join("mailshot");
    fs::create_dir_all(&conf)?;
    fs::write(
        conf.join("config.yaml"),
        format!(
            "smtp:\n  url: \"smtp://127.0.0.1:{port}\"\n  ca_file: \"{}\"\n",
            ca.display()
        ),
    )?;
    let rc = dir.join("msmtprc");
    fs::write(
        &rc,
        format!(
            "account bench\nhost 127.0.0.1\nport {port}\ntls on\ntls_starttls on\ntls_trust_file {}\nauth off\nfrom sender@bench.example\naccount default : bench\n",
            ca.display()
        ),
    )?;
    // msmtp refuses a configuration file others may read.
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600))?;
    fs::write(dir.join("body.txt"), BODY)?;
    fs::write(
        dir.join("message.eml"),
        format!(
            "From: sender@bench.example\r\nTo: user1@example.com\r\nSubject: Your statement\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <latency@bench.example>\r\n\r\n{}",
            BODY.replace('\n', "\r\n")
        ),
    )?;
    Ok(())
}

/// One run of `cmd` with `input` on stdin; its wall milliseconds when it
/// succeeded and the capture server took exactly one more message.
fn once(cmd: &mut Command, input: &Path, err: &Path, server: &Server) -> Result<f64, String> {
    let before = server.received().unwrap_or(0);
    cmd.stdin(fs::File::open(input).map_err(|e| e.to_string())?)
        .stdout(Stdio::null())
        .stderr(fs::File::create(err).map_err(|e| e.to_string())?);
    let m = procs::run_measured(cmd, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    if !m.ok() {
        return Err(format!(
            "exit {}: {}",
            m.code,
            fs::read_to_string(err).unwrap_or_default().trim()
        ));
    }
    match server.wait_received(before + 1, Duration::from_secs(10)) {
        Some(got) if got != before + 1 => Err(format!("server received {}", got - before)),
        _ => Ok(m.wall.as_secs_f64() * 1000.0),
    }
}

/// `reps` runs of each, alternating, against `capture`.
pub fn measure(env: &Env, capture: &Server, reps: usize) -> Figures {
    let dir = env.work.join("send");
    let fail = |e: String| Figures {
        mailshot: Err(e.clone()),
        msmtp: Err(e),
    };
    let Some(ca) = capture.ca_file() else {
        return fail("the capture server wrote no CA file".into());
    };
    if let Err(e) = setup(&dir, capture.addr.port(), &ca) {
        return fail(format!("set-up: {e}"));
    }
    let mut f = Figures {
        mailshot: Ok(Vec::new()),
        msmtp: match msmtp() {
            Some(_) => Ok(Vec::new()),
            None => Err("msmtp not installed (Debian package msmtp)".into()),
        },
    };
    let mailshot = || {
        let mut c = Command::new(&env.mailshot);
        c.env("XDG_CONFIG_HOME", dir.join("xdg"))
            .arg("send")
            .args(["--from", "sender@bench.example"])
            .args(["--to", "user1@example.com"])
            .args(["--subject", "Your statement"]);
        c
    };
    let msmtp_cmd = || {
        let mut c = Command::new(msmtp().unwrap_or_default());
        c.arg("-C")
            .arg(dir.join("msmtprc"))
            .arg("user1@example.com");
        c
    };
    // One warm-up each: the binaries and the CA file in the page cache.
    let err = dir.join("err.txt");
    let _ = once(&mut mailshot(), &dir.join("body.txt"), &err, capture);
    let _ = once(&mut msmtp_cmd(), &dir.join("message.eml"), &err, capture);
    for _ in 0..reps {
        if let Ok(list) = &mut f.mailshot {
            match once(&mut mailshot(), &dir.join("body.txt"), &err, capture) {
                Ok(ms) => list.push(ms),
                Err(e) => f.mailshot = Err(format!("mailshot send: {e}")),
            }
        }
        if let Ok(list) = &mut f.msmtp {
            match once(&mut msmtp_cmd(), &dir.join("message.eml"), &err, capture) {
                Ok(ms) => list.push(ms),
                Err(e) => f.msmtp = Err(format!("msmtp: {e}")),
            }
        }
    }
    capture.clear();
    let show = |r: &Result<Vec<f64>, String>| match r {
        Ok(v) => format!("{:.1} ms", median(v)),
        Err(e) => format!("FAILED: {e}"),
    };
    eprintln!(
        "  capture   STARTTLS, one message: mailshot send {} / msmtp {}",
        show(&f.mailshot),
        show(&f.msmtp)
    );
    f
}

/// The Markdown section with its target line, the record, and whether a run failed.
pub fn report(f: &Figures, reps: usize) -> (String, Vec<Record>, bool) {
    let mut text = format!(
        "### One message (`mailshot send` and msmtp, STARTTLS to the capture server, median of {reps}, alternating)\n\n"
    );
    let line = |r: &Result<Vec<f64>, String>| match r {
        Ok(v) => {
            let runs: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
            format!("{:.1} ms (runs: {})", median(v), runs.join(", "))
        }
        Err(e) => format!("FAILED: {e}"),
    };
    let _ = writeln!(text, "- mailshot send: {}", line(&f.mailshot));
    let _ = writeln!(text, "- msmtp: {}", line(&f.msmtp));
    let mut records = Vec::new();
    if let (Ok(a), Ok(b)) = (&f.mailshot, &f.msmtp) {
        let (a, b) = (median(a), median(b));
        let mut rec = Record::new(
            "send",
            "mailshot send, one message over STARTTLS, wall time",
            "ms",
            a,
            "msmtp, the same over STARTTLS",
            b,
        );
        rec.server = Some("capture".into());
        records.push(rec);
        let _ = writeln!(
            text,
            "- {} mailshot send {a:.1} ms ≤ {GOAL} × msmtp {b:.1} ms: {:.2}×",
            if a <= GOAL * b { "PASS" } else { "FAIL" },
            a / b
        );
    }
    (text, records, f.mailshot.is_err() || f.msmtp.is_err())
}
