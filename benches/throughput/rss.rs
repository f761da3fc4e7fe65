//! The memory section: peak RSS of `mailshot check` and of `mailshot run` to
//! smtp-sink (one session, default settings) with `--rss-rows` recipients,
//! against the 64 MB goal, and with a quarter as many (the difference is
//! what one more recipient costs). Then what each structure that grows with
//! the list costs a recipient, measured in this process with the counting
//! allocator ([`crate::heap`]): the duplicate detector (next to the
//! `HashMap<u64, u32>` it replaced), the report's row index, and the
//! journal's replay of the run's own journal (what a rerun holds).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mailshot::compose::seen::FirstSeen;
use mailshot::delivery::outcome::{Outcome, Status};
use mailshot::delivery::report::Report;
use mailshot::delivery::{inputs, journal};

use crate::contenders::Env;
use crate::heap;
use crate::procs::{self, Measured};
use crate::results::Record;
use crate::{data, servers};

/// The goal: peak RSS at most this many KiB for a million recipients.
const GOAL_KB: u64 = 64 * 1024;

/// What the section measured.
pub struct Rss {
    /// Its Markdown.
    pub text: String,
    /// Its PASS/FAIL lines again, for the run's list of targets.
    pub targets: String,
    /// Its results-file records.
    pub records: Vec<Record>,
    /// Something did not run to the end.
    pub failed: bool,
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// `mailshot ARGS` under the clock; an error unless it exits 0.
fn mailshot(env: &Env, args: &[&str], job: &Path, what: &str) -> Result<Measured, String> {
    let err = env.work.join(format!("{what}.err"));
    let mut cmd = procs::alone(&env.mailshot, &env.work.join(format!("{what}.usage")));
    cmd.args(args)
        .arg(job)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).map_err(|e| e.to_string())?);
    let m = procs::run_measured(&mut cmd, Duration::from_secs(1800)).map_err(|e| e.to_string())?;
    if !m.ok() {
        return Err(format!(
            "mailshot {} exit {}: {}",
            args.join(" "),
            m.code,
            fs::read_to_string(&err).unwrap_or_default().trim()
        ));
    }
    Ok(m)
}

/// The job for `rows` recipients sending to `port` with default settings.
fn job(env: &Env, rows: usize, port: u16) -> io::Result<std::path::PathBuf> {
    let name = format!("rss-{rows}");
    let csv = format!("{name}.csv");
    data::write_csv(&env.work.join(&csv), rows)?;
    let job = data::write_job(&env.work, &name, &csv)?;
    let mut text = fs::read_to_string(&job)?;
    text.push_str(&format!(
        "smtp:\n  url: \"smtp+plain://127.0.0.1:{port}\"\n"
    ));
    fs::write(&job, text)?;
    Ok(job)
}

/// Data rows in a report CSV (its lines less the header).
fn report_rows(path: &Path) -> io::Result<usize> {
    let bytes = fs::read(path)?;
    Ok(bytes
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        .saturating_sub(1))
}

/// What `run` leaves beside a job, removed (the report alone is ~100 MB).
fn remove_outputs(job: &Path) {
    for suffix in [
        "report.csv",
        "report.html",
        "retry.csv",
        "journal",
        "journal.lock",
        "journal.seal",
    ] {
        let _ = fs::remove_file(mailshot::outputs::beside(job, suffix));
    }
}

/// `check` and `run` of `rows` recipients: (check, run) measurements.
fn both(env: &Env, rows: usize, port: u16) -> (Result<Measured, String>, Result<Measured, String>) {
    let job = match job(env, rows, port) {
        Ok(j) => j,
        Err(e) => return (Err(e.to_string()), Err(e.to_string())),
    };
    let check = mailshot(env, &["check"], &job, "rss-check");
    remove_outputs(&job);
    let run = mailshot(env, &["run", "--quiet", "--restart"], &job, "rss-run").and_then(|m| {
        let report = mailshot::outputs::beside(&job, "report.csv");
        match report_rows(&report) {
            Ok(n) if n == rows => Ok(m),
            Ok(n) => Err(format!("the report has {n} rows, not {rows}")),
            Err(e) => Err(format!("{}: {e}", report.display())),
        }
    });
    (check, run)
}

/// The address fingerprint the recipient reader keeps (SipHash of the
/// lowercased address), for row `i`'s generated address.
fn fingerprint(i: usize) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(data::row(i)[0].as_bytes());
    h.finish()
}

/// Per-recipient structures, built in this process for `rows` recipients.
struct Structures {
    seen: heap::Cost,
    former_seen: heap::Cost,
    report: Result<heap::Cost, String>,
    replay: Result<heap::Cost, String>,
}

fn structures(env: &Env, rows: usize, journal_path: &Path) -> Structures {
    let fps: Vec<u64> = (0..rows).map(fingerprint).collect();
    let (seen, _) = heap::cost(|| {
        let mut s = FirstSeen::new();
        for (i, &fp) in fps.iter().enumerate() {
            s.check(fp, i as u64 + 1);
        }
        s
    });
    let (former_seen, _) = heap::cost(|| {
        let mut m: HashMap<u64, u32> = HashMap::new();
        for (i, &fp) in fps.iter().enumerate() {
            m.entry(fp).or_insert(i as u32 + 1);
        }
        m
    });
    drop(fps);
    let scratch = env.work.join("rss-index.report.csv");
    let report = heap::cost(|| -> io::Result<Report> {
        let r = Report::create(&scratch)?;
        for i in 0..rows {
            r.record(&Outcome {
                row: i as u64 + 1,
                email: data::row(i)[0].clone(),
                status: Status::Sent,
                code: Some(250),
                enhanced: Some("2.0.0".into()),
                reply: "2.0.0 Ok: queued as 4XyZ1234".into(),
                message_id: Some(format!("<{i}.bench@bench.example>")),
                attempts: 1,
                relay: None,
            })?;
        }
        Ok(r)
    });
    let report = match report {
        (cost, Ok(_)) => Ok(cost),
        (_, Err(e)) => Err(e.to_string()),
    };
    let replay = match inputs::stored_fingerprint(journal_path) {
        None => Err(format!("{}: no journal to replay", journal_path.display())),
        Some(fp) => match heap::cost(|| journal::open(journal_path, &fp, false)) {
            (cost, Ok((_, replay))) if replay.done.len() == rows => Ok(cost),
            (_, Ok((_, replay))) => Err(format!(
                "the replay has {} settled rows, not {rows}",
                replay.done.len()
            )),
            (_, Err(e)) => Err(e.to_string()),
        },
    };
    Structures {
        seen,
        former_seen,
        report,
        replay,
    }
}

/// The whole section for `rows` recipients.
pub fn section(env: &Env, rows: usize) -> Rss {
    let mut text = format!(
        "### Memory: {rows} recipients (peak RSS from `wait4`, measured alone; goal ≤ 64 MB)\n\n"
    );
    let mut records = Vec::new();
    let sink = match servers::start_sink(&env.work, false) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(text, "- smtp-sink not started: {e}");
            return Rss {
                text,
                targets: String::new(),
                records,
                failed: true,
            };
        }
    };
    let port = sink.addr.port();
    let quarter = (rows / 4).max(1);
    eprintln!("  rss       {quarter} and {rows} recipients: check, then run to smtp-sink");
    let small = both(env, quarter, port);
    remove_outputs(&env.work.join(format!("rss-{quarter}.yaml")));
    let big = both(env, rows, port);
    drop(sink);
    let mut failed = false;
    let _ = writeln!(
        text,
        "| command | peak RSS, {quarter} recipients | peak RSS, {rows} recipients | bytes per added recipient | wall, {rows} |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---:|");
    let mut per_recipient = Vec::new();
    for (what, a, b) in [
        ("`mailshot check`", &small.0, &big.0),
        ("`mailshot run` to smtp-sink, 1 session", &small.1, &big.1),
    ] {
        let cell = |r: &Result<Measured, String>| match r {
            Ok(m) => mb(m.max_rss_kb),
            Err(e) => format!("FAILED ({e})"),
        };
        let slope = match (a, b) {
            (Ok(a), Ok(b)) if rows > quarter => {
                Some((b.max_rss_kb as f64 - a.max_rss_kb as f64) * 1024.0 / (rows - quarter) as f64)
            }
            _ => None,
        };
        per_recipient.push(slope);
        let _ = writeln!(
            text,
            "| {what} | {} | {} | {} | {} |",
            cell(a),
            cell(b),
            slope.map_or("-".into(), |s| format!("{s:.0}")),
            b.as_ref()
                .map_or("-".into(), |m| format!("{:.1} s", m.wall.as_secs_f64()))
        );
        failed |= a.is_err() || b.is_err();
    }
    let _ = writeln!(text);
    let mut targets = String::new();
    let goal = |m: &Result<Measured, String>| m.as_ref().ok().map(|m| m.max_rss_kb);
    for (what, kb, server) in [
        ("mailshot check", goal(&big.0), None),
        (
            "mailshot run to smtp-sink, one session",
            goal(&big.1),
            Some("smtp-sink"),
        ),
    ] {
        super::target(
            &mut targets,
            kb.map(|kb| kb <= GOAL_KB),
            format!(
                "{what}, {rows} recipients: peak RSS {} ≤ 64 MB",
                kb.map_or("not measured".into(), mb)
            ),
        );
        if let Some(kb) = kb {
            let mut r = Record::new(
                "rss",
                format!("{what}, {rows} recipients, peak RSS"),
                "MB",
                kb as f64 / 1024.0,
                "goal (at most)",
                64.0,
            );
            r.server = server.map(str::to_string);
            records.push(r);
        }
    }

    // The structures, with the run's journal (what a rerun would replay).
    let job = env.work.join(format!("rss-{rows}.yaml"));
    let s = structures(env, rows, &mailshot::outputs::beside(&job, "journal"));
    remove_outputs(&job);
    let budget = GOAL_KB as f64 * 1024.0 / rows as f64;
    let per = |c: &heap::Cost| (c.kept as f64 / rows as f64, c.peak as f64 / rows as f64);
    let _ = writeln!(
        text,
        "\nWhat grows with the list, per recipient ({rows} rows, counted by the harness's allocator; the whole budget is {budget:.0} bytes a recipient):\n"
    );
    let _ = writeln!(text, "| structure | bytes/recipient held | at its peak |");
    let _ = writeln!(text, "|---|---:|---:|");
    let lines: [(&str, Result<heap::Cost, String>); 4] = [
        (
            "duplicate detector (fingerprint per row + slot table)",
            Ok(s.seen),
        ),
        (
            "the former duplicate detector, `HashMap<u64, u32>`",
            Ok(s.former_seen),
        ),
        ("report index (line offset and status per row)", s.report),
        (
            "journal replay on a rerun (settled rows, attempts)",
            s.replay,
        ),
    ];
    for (what, cost) in &lines {
        match cost {
            Ok(c) => {
                let (held, peak) = per(c);
                let _ = writeln!(text, "| {what} | {held:.1} | {peak:.1} |");
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(text, "| {what} | FAILED ({e}) | - |");
            }
        }
    }
    if let (Ok(new), Ok(old)) = (&lines[0].1, &lines[1].1) {
        records.push(Record::new(
            "rss",
            "duplicate detector, peak bytes per recipient",
            "B/recipient",
            per(new).1,
            "the former HashMap<u64, u32>",
            per(old).1,
        ));
    }
    for (i, name) in [(2, "report index"), (3, "journal replay on a rerun")] {
        if let Ok(c) = &lines[i].1 {
            records.push(Record::new(
                "rss",
                format!("{name}, peak bytes per recipient"),
                "B/recipient",
                per(c).1.max(f64::MIN_POSITIVE),
                "the whole 64 MB budget per recipient",
                budget,
            ));
        }
    }
    for (slope, what) in per_recipient
        .iter()
        .zip(["mailshot check", "mailshot run to smtp-sink"])
    {
        if let Some(s) = slope.filter(|s| *s > 0.0) {
            records.push(Record::new(
                "rss",
                format!("{what}, peak RSS per added recipient"),
                "B/recipient",
                s,
                "the whole 64 MB budget per recipient",
                budget,
            ));
        }
    }
    text.push('\n');
    text.push_str(&targets);
    Rss {
        text,
        targets,
        records,
        failed,
    }
}
