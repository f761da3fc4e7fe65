//! Big attachments: a 1 MB file attached to every message, in MB/s on the
//! wire, next to `smtp-source` sending messages of the same size (`-l`) to
//! the same server in the same run; and, with no contender, a different
//! 1 MB file for every recipient.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::contenders::{self, Contender, Env};
use crate::data;
use crate::servers::{Kind, Server};

/// The attachment's size.
pub const BYTES: usize = 1 << 20;

/// One server's figures.
pub struct Figures {
    /// The server's short name.
    pub server: &'static str,
    /// Messages a run.
    pub n: usize,
    /// Bytes of one message as stored by the capture server (or estimated).
    pub msg_bytes: u64,
    /// mailshot, the shared attachment: MB/s of each run.
    pub mailshot: Result<Vec<f64>, String>,
    /// smtp-source with messages of `msg_bytes`: MB/s of each run.
    pub source: Result<Vec<f64>, String>,
    /// mailshot with a different file per recipient (capture only).
    pub per_recipient: Option<Result<f64, String>>,
}

/// The median of `v` (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        l if l % 2 == 1 => v[l / 2],
        l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
    }
}

/// The median of the run-by-run ratios `a[i] / b[i]` of two series
/// measured alternately: each pair saw about the same load, so this moves
/// less with the machine than the ratio of the two medians.
pub fn paired_median(a: &[f64], b: &[f64]) -> Option<f64> {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    (!ratios.is_empty()).then(|| median(&ratios))
}

/// The wire size of the bench message with a `BYTES` attachment: base64 in
/// 76-character lines plus about 3 KB of headers, text and HTML.
fn estimated_size() -> u64 {
    let b64 = BYTES.div_ceil(3) * 4;
    (b64 + b64.div_ceil(76) * 2 + 3_000) as u64
}

/// Where the server and the contenders run on a machine of two CPUs or
/// more: the server on CPU 0, the contender on CPU 1 (both contenders
/// alike). Left to the scheduler, a contender's threads now and then share
/// the server's CPU, and since the server is what bounds these runs, the
/// same run's figure moved by ±10% from one run to the next.
fn placement() -> Option<(usize, usize)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus >= 2).then_some((0, 1))
}

/// One run of `c`; MB/s when the contender and the server agree that all
/// `n` messages arrived.
fn once(c: Contender, env: &Env, server: &Server, n: usize, bytes: u64) -> Result<f64, String> {
    server.clear();
    let before = server.received().unwrap_or(0);
    let o = contenders::run(c, env, server.addr.port(), n).map_err(|e| e.to_string())?;
    if !o.all_sent {
        return Err(o.detail);
    }
    if let Some(got) = server.wait_received(before + n as u64, Duration::from_secs(30)) {
        if got != before + n as u64 {
            return Err(format!("server received {} of {n}", got - before));
        }
    }
    Ok(n as f64 * bytes as f64 / o.m.wall.as_secs_f64() / 1e6)
}

/// Measures the servers that can take big messages (smtp-sink, capture),
/// `reps` runs of `n` messages each, mailshot and smtp-source alternating.
pub fn measure(env: &Env, servers: &[Server], n: usize, reps: usize) -> Vec<Figures> {
    let dir = env.work.join("attach");
    let setup = || -> std::io::Result<(Env, Env)> {
        fs::create_dir_all(dir.join("pdf"))?;
        data::write_pdf(&dir.join("statement.pdf"), BYTES, 0)?;
        fs::copy(&env.csv, dir.join("recipients.csv"))?;
        let shared = data::write_attachment_job(&dir, "shared", "recipients.csv", "statement.pdf")?;
        let own = data::write_attachment_job(&dir, "own", "recipients.csv", "pdf/{{ id }}.pdf")?;
        Ok((with_job(env, &shared), with_job(env, &own)))
    };
    let (mut shared, mut own) = match setup() {
        Ok(x) => x,
        Err(e) => {
            return vec![Figures {
                server: "-",
                n,
                msg_bytes: 0,
                mailshot: Err(format!("set-up: {e}")),
                source: Err("not run".into()),
                per_recipient: None,
            }]
        }
    };
    let place = placement();
    shared.cpu = place.map(|(_, client)| client);
    own.cpu = shared.cpu;
    // The capture server first: it tells the message's real size.
    let mut order: Vec<&Server> = servers
        .iter()
        .filter(|s| matches!(s.kind, Kind::Capture))
        .collect();
    order.extend(servers.iter().filter(|s| matches!(s.kind, Kind::Sink)));
    let mut msg_bytes = estimated_size();
    let mut out = Vec::new();
    for server in order {
        let mut f = Figures {
            server: server.name(),
            n,
            msg_bytes,
            mailshot: Ok(Vec::new()),
            source: Ok(Vec::new()),
            per_recipient: None,
        };
        if let Some((cpu, _)) = place {
            if let Err(e) = server.pin(Some(cpu)) {
                eprintln!("  {}: not kept on CPU {cpu}: {e}", server.name());
            }
        }
        if server.kind == Kind::Capture {
            match once(Contender::Mailshot(1), &shared, server, 1, msg_bytes) {
                Ok(_) => {
                    msg_bytes = server.stored_size().unwrap_or(msg_bytes);
                    f.msg_bytes = msg_bytes;
                }
                Err(e) => f.mailshot = Err(e),
            }
        }
        let source_env = Env {
            body_len: msg_bytes as usize,
            ..with_job(&shared, &shared.job)
        };
        // One unmeasured run each first: the files are in the page cache and
        // the server's buffers have grown before anything is timed.
        let _ = once(Contender::Mailshot(1), &shared, server, n, msg_bytes);
        let _ = once(Contender::SmtpSource(1), &source_env, server, n, msg_bytes);
        for _ in 0..reps {
            if let Ok(list) = &mut f.mailshot {
                match once(Contender::Mailshot(1), &shared, server, n, msg_bytes) {
                    Ok(r) => list.push(r),
                    Err(e) => f.mailshot = Err(e),
                }
            }
            if let Ok(list) = &mut f.source {
                match once(Contender::SmtpSource(1), &source_env, server, n, msg_bytes) {
                    Ok(r) => list.push(r),
                    Err(e) => f.source = Err(e),
                }
            }
        }
        if server.kind == Kind::Capture {
            f.per_recipient = Some(per_recipient(&own, &dir, server, n, msg_bytes));
        }
        server.clear();
        let _ = server.pin(None);
        eprintln!(
            "  {:<9} 1 MB attachment x{n}: mailshot {} MB/s, smtp-source {} MB/s",
            f.server,
            f.mailshot
                .as_ref()
                .map_or("-".into(), |v| format!("{:.0}", median(v))),
            f.source
                .as_ref()
                .map_or("-".into(), |v| format!("{:.0}", median(v)))
        );
        out.push(f);
    }
    out
}

/// mailshot with one 1 MB file per recipient (the files are removed after).
fn per_recipient(
    env: &Env,
    dir: &Path,
    server: &Server,
    n: usize,
    bytes: u64,
) -> Result<f64, String> {
    let pdf = dir.join("pdf");
    let write = || -> std::io::Result<()> {
        for i in 0..n {
            let id = &data::row(i)[2];
            data::write_pdf(&pdf.join(format!("{id}.pdf")), BYTES, i as u64 + 1)?;
        }
        Ok(())
    };
    let got = write()
        .map_err(|e| e.to_string())
        .and_then(|()| once(Contender::Mailshot(1), env, server, n, bytes));
    let _ = fs::remove_dir_all(&pdf);
    got
}

/// `env` sending `job`, with the job's folder as the work folder (mailshot's
/// run file is written there, next to the files the job names).
fn with_job(env: &Env, job: &Path) -> Env {
    Env {
        mailshot: env.mailshot.clone(),
        me: env.me.clone(),
        work: job.parent().unwrap_or(&env.work).to_path_buf(),
        csv: env.csv.clone(),
        job: job.to_path_buf(),
        mailmerge: env.mailmerge.clone(),
        timeout: env.timeout,
        body_len: env.body_len,
        ca_file: env.ca_file.clone(),
        cpu: env.cpu,
    }
}

/// The Markdown section, its target lines, its records, and whether a run failed.
pub fn report(figs: &[Figures]) -> (String, Vec<crate::results::Record>, bool) {
    use std::fmt::Write as _;
    let mut text = String::from(
        "### A 1 MB attachment on every message (MB/s on the wire, median)\n\n\
         | server | messages | message size | mailshot, one shared file | smtp-source `-l` same size | mailshot ÷ smtp-source | mailshot, one file per recipient |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut records = Vec::new();
    let mut targets = String::new();
    let mut failed = false;
    let cell = |r: &Result<Vec<f64>, String>| match r {
        Ok(v) => format!("{:.0}", median(v)),
        Err(e) => format!("FAILED ({e})"),
    };
    for f in figs {
        failed |= f.mailshot.is_err() || f.source.is_err();
        failed |= matches!(f.per_recipient, Some(Err(_)));
        let ratio = match (&f.mailshot, &f.source) {
            (Ok(a), Ok(b)) => Some((median(a), median(b))),
            _ => None,
        };
        let per = match &f.per_recipient {
            Some(Ok(r)) => format!("{r:.0}"),
            Some(Err(e)) => format!("FAILED ({e})"),
            None => "-".into(),
        };
        let _ = writeln!(
            text,
            "| {} | {} | {:.2} MB | {} | {} | {} | {} |",
            f.server,
            f.n,
            f.msg_bytes as f64 / 1e6,
            cell(&f.mailshot),
            cell(&f.source),
            ratio.map_or("-".into(), |(a, b)| format!("{:.2}×", a / b)),
            per
        );
        if let Some((a, b)) = ratio {
            let mut rec = crate::results::Record::new(
                "attachment",
                format!("mailshot, a 1 MB attachment shared by {} recipients", f.n),
                "MB/s",
                a,
                "smtp-source (raw), -l with the same message size",
                b,
            );
            rec.server = Some(f.server.to_string());
            records.push(rec);
            let verdict = if a >= b { "PASS" } else { "FAIL" };
            let paired = match (&f.mailshot, &f.source) {
                (Ok(x), Ok(y)) => paired_median(x, y),
                _ => None,
            };
            let _ = writeln!(
                targets,
                "- {verdict} {}: a shared 1 MB attachment at {a:.0} MB/s ≥ smtp-source with messages of the same size {b:.0} MB/s ({:.2}×; run by run: {})",
                f.server,
                a / b,
                paired.map_or("-".into(), |p| format!("median {p:.2}×"))
            );
            if let Some(Ok(p)) = &f.per_recipient {
                let mut rec = crate::results::Record::new(
                    "attachment",
                    format!(
                        "mailshot, a different 1 MB attachment for each of {} recipients",
                        f.n
                    ),
                    "MB/s",
                    *p,
                    "mailshot, one 1 MB attachment shared by all",
                    a,
                );
                rec.server = Some(f.server.to_string());
                records.push(rec);
            }
        }
    }
    text.push('\n');
    text.push_str(&targets);
    (text, records, failed)
}
