//! Both cores: `mailshot check` of the bench job over a million rows with
//! every thread the machine offers, next to the same binary limited to one
//! thread (`--threads 1`), the two alternating run by run so that both see
//! the same load; then `mailshot run` to smtp-sink the same two ways, where
//! the feed renders ahead of the session (a figure, no target).

use std::fmt::Write as _;
use std::fs;
use std::process::Stdio;
use std::time::Duration;

use crate::contenders::Env;
use crate::procs::{self, Measured};
use crate::results::Record;
use crate::servers::Server;

/// The goal: all threads take at most this share of one thread's wall time.
pub const GOAL: f64 = 0.6;

/// The runs of one side (every thread, or one), or why they stopped.
type Runs = Result<Vec<Measured>, String>;

/// What the section measured.
pub struct Cores {
    /// Rows `check` rendered.
    rows: usize,
    /// Threads of the unlimited runs.
    threads: usize,
    /// `check` with every thread, then with one.
    check: [Runs; 2],
    /// Messages `run` sent, and its runs with every thread, then with one.
    send: Option<(usize, [Runs; 2])>,
}

/// `--threads 1`, or nothing (every thread).
fn threads_arg(one: bool) -> &'static [&'static str] {
    if one {
        &["--threads", "1"]
    } else {
        &[]
    }
}

fn checked(m: Measured, what: &str, err: &std::path::Path) -> Result<Measured, String> {
    if m.ok() {
        return Ok(m);
    }
    Err(format!(
        "{what} exit {}{}: {}",
        m.code,
        if m.timed_out { " (timed out)" } else { "" },
        fs::read_to_string(err).unwrap_or_default().trim()
    ))
}

/// `mailshot check` of `job`, with one thread or all.
fn check_run(env: &Env, job: &std::path::Path, one: bool) -> Result<Measured, String> {
    let err = env.work.join("cores-check.err");
    let mut cmd = procs::alone(&env.mailshot, &env.work.join("cores-check.usage"));
    cmd.arg("check")
        .arg(job)
        .args(threads_arg(one))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).map_err(|e| e.to_string())?);
    let m = procs::run_measured(&mut cmd, Duration::from_secs(900)).map_err(|e| e.to_string())?;
    checked(m, "mailshot check", &err)
}

/// `mailshot run` of the first `n` bench recipients to `port`, one session,
/// with one thread or all.
fn send_run(env: &Env, port: u16, n: usize, one: bool) -> Result<Measured, String> {
    let job = env.work.join("cores-send.yaml");
    let base = fs::read_to_string(&env.job).map_err(|e| e.to_string())?;
    fs::write(
        &job,
        format!("{base}smtp:\n  url: \"smtp+plain://127.0.0.1:{port}\"\n  max_messages_per_session: {n}\n"),
    )
    .map_err(|e| e.to_string())?;
    let err = env.work.join("cores-send.err");
    let mut cmd = procs::alone(&env.mailshot, &env.work.join("cores-send.usage"));
    cmd.arg("run")
        .arg(&job)
        .args(["--quiet", "--restart", "--sessions", "1", "--limit"])
        .arg(n.to_string())
        .arg("--report")
        .arg(env.work.join("cores-report.csv"))
        .args(threads_arg(one))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).map_err(|e| e.to_string())?);
    let m = procs::run_measured(&mut cmd, env.timeout).map_err(|e| e.to_string())?;
    checked(m, "mailshot run", &err)
}

/// Runs `f(one)` `reps` times each way, alternating; stops a side at its first failure.
fn alternate(reps: usize, mut f: impl FnMut(bool) -> Result<Measured, String>) -> [Runs; 2] {
    let mut sides: [Runs; 2] = [Ok(Vec::new()), Ok(Vec::new())];
    for _ in 0..reps {
        for (i, one) in [false, true].into_iter().enumerate() {
            if let Ok(list) = &mut sides[i] {
                match f(one) {
                    Ok(m) => list.push(m),
                    Err(e) => sides[i] = Err(e),
                }
            }
        }
    }
    sides
}

/// Measures `check` over `rows` recipients and, when `sink` is given, `run`
/// of `n` messages to it; `reps` runs of each, alternating.
pub fn measure(env: &Env, rows: usize, n: usize, reps: usize, sink: Option<&Server>) -> Cores {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let csv = "million.csv";
    let job = crate::data::write_csv(&env.work.join(csv), rows)
        .and_then(|()| crate::data::write_job(&env.work, "cores", csv))
        .map_err(|e| e.to_string());
    let check = match &job {
        Ok(job) => alternate(reps, |one| check_run(env, job, one)),
        Err(e) => [Err(e.clone()), Err(e.clone())],
    };
    let send = sink.map(|s| {
        let port = s.addr.port();
        (n, alternate(reps, |one| send_run(env, port, n, one)))
    });
    Cores {
        rows,
        threads,
        check,
        send,
    }
}

/// The best (shortest) wall time of a side.
fn best(runs: &Runs) -> Option<&Measured> {
    runs.as_ref().ok()?.iter().min_by_key(|m| m.wall)
}

fn lines(out: &mut String, runs: &Runs, what: &str, rate: impl Fn(&Measured) -> String) {
    match runs {
        Ok(list) => {
            for (i, m) in list.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "- {what}, run {}: {:.2} s wall, {:.2} s CPU{}, peak RSS {:.1} MB",
                    i + 1,
                    m.wall.as_secs_f64(),
                    m.cpu.as_secs_f64(),
                    rate(m),
                    m.max_rss_kb as f64 / 1024.0
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "- {what}: FAILED: {e}");
        }
    }
}

/// The median over the alternating pairs of all-threads wall ÷ one-thread
/// wall: each pair saw about the same load.
fn pairs_median(sides: &[Runs; 2]) -> Option<f64> {
    let (Ok(all), Ok(one)) = (&sides[0], &sides[1]) else {
        return None;
    };
    let mut r: Vec<f64> = all
        .iter()
        .zip(one)
        .map(|(a, o)| a.wall.as_secs_f64() / o.wall.as_secs_f64().max(1e-9))
        .collect();
    if r.is_empty() {
        return None;
    }
    r.sort_by(f64::total_cmp);
    Some(r[r.len() / 2])
}

/// The section's Markdown, its records, and whether anything failed.
pub fn report(c: &Cores) -> (String, Vec<Record>, bool) {
    let mut out = format!(
        "### Both cores (`mailshot check` of {} rows: {} threads, then `--threads 1`, alternating; the shortest wall time counts)\n\n",
        c.rows, c.threads
    );
    let all_name = format!("every thread ({})", c.threads);
    let rows = c.rows as f64;
    let per_s = |m: &Measured| format!(" → {:.0} rows/s", rows / m.wall.as_secs_f64().max(1e-6));
    lines(&mut out, &c.check[0], &format!("check, {all_name}"), per_s);
    lines(&mut out, &c.check[1], "check, --threads 1", per_s);
    let mut records = Vec::new();
    let ratio = match (best(&c.check[0]), best(&c.check[1])) {
        (Some(all), Some(one)) => {
            let (a, o) = (all.wall.as_secs_f64(), one.wall.as_secs_f64());
            let _ = writeln!(
                out,
                "- side by side: {a:.2} s with {all_name}, {o:.2} s with one thread: {:.2}×",
                a / o
            );
            if let Some(m) = pairs_median(&c.check) {
                let _ = writeln!(
                    out,
                    "- run by run (each all-threads run over the one-thread run after it), median: {m:.2}×"
                );
            }
            let rec = Record::new(
                "cores",
                format!("mailshot check, {} rows, {all_name}, wall time", c.rows),
                "s",
                a,
                "mailshot check, the same with --threads 1",
                o,
            );
            records.push(rec);
            Some(a / o)
        }
        _ => None,
    };
    let _ = writeln!(
        out,
        "- {} check of {} rows with every thread ≤ {GOAL} × the wall time with one: {}",
        match ratio {
            Some(r) if r <= GOAL => "PASS",
            Some(_) => "FAIL",
            None => "n/a ",
        },
        c.rows,
        ratio.map_or("-".into(), |r| format!("{r:.2}×"))
    );
    let mut failed = c.check.iter().any(Result::is_err);
    if let Some((n, send)) = &c.send {
        let rate =
            |m: &Measured| format!(" → {:.0} msg/s", *n as f64 / m.wall.as_secs_f64().max(1e-6));
        lines(
            &mut out,
            &send[0],
            &format!("run to smtp-sink, {n} messages, 1 session, {all_name}"),
            rate,
        );
        lines(
            &mut out,
            &send[1],
            &format!("run to smtp-sink, {n} messages, 1 session, --threads 1"),
            rate,
        );
        if let (Some(all), Some(one)) = (best(&send[0]), best(&send[1])) {
            let (a, o) = (
                *n as f64 / all.wall.as_secs_f64(),
                *n as f64 / one.wall.as_secs_f64(),
            );
            let _ = writeln!(
                out,
                "- run, side by side: {a:.0} msg/s with {all_name}, {o:.0} msg/s with one thread: {:.2}× (no target)",
                a / o
            );
            let mut rec = Record::new(
                "cores",
                format!("mailshot run to smtp-sink, {n} messages, 1 session, {all_name}"),
                "msg/s",
                a,
                "mailshot run, the same with --threads 1",
                o,
            );
            rec.server = Some("smtp-sink".into());
            records.push(rec);
        }
        failed |= send.iter().any(Result::is_err);
    }
    (out, records, failed)
}
