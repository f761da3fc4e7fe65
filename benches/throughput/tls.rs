//! What TLS costs: the same job sent by one mailshot session to the capture
//! server in plain text and over STARTTLS (the capture server's throwaway CA
//! trusted through `ca_file`), the two taking turns run by run.

use std::fmt::Write as _;
use std::time::Duration;

use crate::attach::{median, paired_median};
use crate::contenders::{self, Contender, Env};
use crate::results::Record;
use crate::servers::Server;

/// STARTTLS must run at least at this share of the plain-text rate.
pub const GOAL: f64 = 0.90;

/// The figures of one section run.
pub struct Figures {
    /// Messages a run.
    pub n: usize,
    /// Plain text: msg/s of each run.
    pub plain: Result<Vec<f64>, String>,
    /// STARTTLS: msg/s of each run.
    pub tls: Result<Vec<f64>, String>,
}

/// One run; msg/s when mailshot and the server agree that all `n` arrived.
fn once(env: &Env, server: &Server, n: usize) -> Result<f64, String> {
    server.clear();
    let before = server.received().unwrap_or(0);
    let o = contenders::run(Contender::Mailshot(1), env, server.addr.port(), n)
        .map_err(|e| e.to_string())?;
    if !o.all_sent {
        return Err(o.detail);
    }
    if let Some(got) = server.wait_received(before + n as u64, Duration::from_secs(30)) {
        if got != before + n as u64 {
            return Err(format!("server received {} of {n}", got - before));
        }
    }
    Ok(n as f64 / o.m.wall.as_secs_f64())
}

/// `env` with STARTTLS required and the capture server's CA trusted.
pub fn with_tls(env: &Env, capture: &Server) -> Result<Env, String> {
    let ca = capture
        .ca_file()
        .ok_or("the capture server wrote no CA file")?;
    Ok(Env {
        mailshot: env.mailshot.clone(),
        me: env.me.clone(),
        work: env.work.clone(),
        csv: env.csv.clone(),
        job: env.job.clone(),
        mailmerge: env.mailmerge.clone(),
        timeout: env.timeout,
        body_len: env.body_len,
        ca_file: Some(ca),
        cpu: env.cpu,
    })
}

/// `reps` runs of `n` messages each way against `capture`, alternating.
pub fn measure(env: &Env, capture: &Server, n: usize, reps: usize) -> Figures {
    let mut f = Figures {
        n,
        plain: Ok(Vec::new()),
        tls: Ok(Vec::new()),
    };
    let tls_env = match with_tls(env, capture) {
        Ok(e) => e,
        Err(e) => {
            f.tls = Err(e);
            return f;
        }
    };
    // A warm-up of each, so neither pays for a cold page cache alone.
    let _ = once(env, capture, n.min(100));
    let _ = once(&tls_env, capture, n.min(100));
    for _ in 0..reps {
        for (e, r) in [(env, &mut f.plain), (&tls_env, &mut f.tls)] {
            if let Ok(list) = r {
                match once(e, capture, n) {
                    Ok(x) => list.push(x),
                    Err(err) => *r = Err(err),
                }
            }
        }
    }
    capture.clear();
    let show = |r: &Result<Vec<f64>, String>| match r {
        Ok(v) => format!("{:.0} msg/s", median(v)),
        Err(e) => format!("FAILED: {e}"),
    };
    eprintln!(
        "  capture   plain {} / STARTTLS {} (n={n})",
        show(&f.plain),
        show(&f.tls)
    );
    f
}

/// The Markdown section with its target line, the record, and whether a run failed.
pub fn report(f: &Figures) -> (String, Vec<Record>, bool) {
    let mut text = format!(
        "### TLS (one session to the capture server, {} messages a run, plain text and STARTTLS alternating)\n\n",
        f.n
    );
    let line = |r: &Result<Vec<f64>, String>| match r {
        Ok(v) => {
            let runs: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
            format!("{:.0} msg/s (runs: {})", median(v), runs.join(", "))
        }
        Err(e) => format!("FAILED: {e}"),
    };
    let _ = writeln!(text, "- plain text: {}", line(&f.plain));
    let _ = writeln!(text, "- STARTTLS: {}", line(&f.tls));
    let mut records = Vec::new();
    if let (Ok(p), Ok(t)) = (&f.plain, &f.tls) {
        if let Some(r) = paired_median(t, p) {
            let _ = writeln!(
                text,
                "- STARTTLS ÷ plain text, run by run (median): {r:.2}×"
            );
        }
        let (p, t) = (median(p), median(t));
        let mut rec = Record::new(
            "tls",
            "mailshot to capture over STARTTLS",
            "msg/s",
            t,
            "mailshot to capture in plain text",
            p,
        );
        rec.server = Some("capture".into());
        records.push(rec);
        let _ = writeln!(
            text,
            "- {} STARTTLS {t:.0} msg/s ≥ {:.0}% of plain text {p:.0} msg/s: {:.0}%",
            if t >= GOAL * p { "PASS" } else { "FAIL" },
            GOAL * 100.0,
            100.0 * t / p
        );
    }
    (text, records, f.plain.is_err() || f.tls.is_err())
}
