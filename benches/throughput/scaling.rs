//! Parallel sessions: mailshot with 1, 2, 4 and 8 sessions against the
//! slow-commit server (each end-of-data reply held back, so one session
//! moves at most one message per hold), and with 1 and 4 sessions against
//! Postfix behind the delaying proxy. Every figure is compared with one
//! session measured in the same run.

use std::fmt::Write as _;
use std::time::Duration;

use crate::contenders::{self, Contender, Env};
use crate::proxy::DelayProxy;
use crate::results::Record;
use crate::servers::{Kind, Server};
use crate::slow::SlowServer;
use crate::{attach::median, Opts};

/// How long the slow-commit server holds each end-of-data reply.
pub const SLOW_HOLD: Duration = Duration::from_millis(100);

/// The session counts raced against the slow-commit server.
pub const SESSIONS: [usize; 4] = [1, 2, 4, 8];

/// The added round-trip time for the Postfix comparison.
pub const POSTFIX_RTT_MS: u64 = 50;

/// Sessions must deliver at least this share of N × the one-session rate.
pub const EFFICIENCY: f64 = 0.85;

/// Up to this many sessions the efficiency goal applies (8 is printed only).
pub const GOAL_UP_TO: usize = 4;

/// What one section run measured.
pub struct Scaling {
    /// Messages a run against the slow-commit server.
    pub n: usize,
    /// Per session count, the rate (msg/s) of every run, or why not.
    pub slow: Vec<(usize, Result<Vec<f64>, String>)>,
    /// Postfix behind the proxy: 1 and 4 sessions (median msg/s), when Postfix runs.
    pub postfix: Option<(Result<f64, String>, Result<f64, String>)>,
}

/// One run of `sessions` against the slow server: msg/s when mailshot and the
/// server agree that all `n` messages arrived.
fn slow_once(server: &SlowServer, env: &Env, sessions: usize, n: usize) -> Result<f64, String> {
    let before = server.received();
    let o = contenders::run(Contender::Mailshot(sessions), env, server.addr.port(), n)
        .map_err(|e| e.to_string())?;
    let received = server.received() - before;
    if !o.all_sent {
        Err(o.detail)
    } else if received != n as u64 {
        Err(format!("server received {received} of {n}"))
    } else {
        Ok(n as f64 / o.m.wall.as_secs_f64())
    }
}

/// Runs the section: the slow server with every count of [`SESSIONS`]
/// (`reps` rounds, the counts taking turns), then Postfix at
/// [`POSTFIX_RTT_MS`] when it is among `servers`.
pub fn measure(opts: &Opts, env: &Env, servers: &[Server]) -> Scaling {
    // One session needs n × 100 ms: 12 s in the full run, under a second in
    // the smoke run; 8 sessions get 15 messages each.
    let n = if opts.full { 120 } else { 8 }.min(opts.n_max).max(1);
    let mut slow: Vec<(usize, Result<Vec<f64>, String>)> =
        SESSIONS.iter().map(|&s| (s, Ok(Vec::new()))).collect();
    match SlowServer::start(SLOW_HOLD) {
        Err(e) => {
            for (_, r) in &mut slow {
                *r = Err(format!("slow server not started: {e}"));
            }
        }
        Ok(server) => {
            for _ in 0..opts.reps {
                for (s, r) in &mut slow {
                    if let Ok(list) = r {
                        match slow_once(&server, env, *s, n) {
                            Ok(rate) => list.push(rate),
                            Err(e) => *r = Err(e),
                        }
                    }
                }
            }
        }
    }
    for (s, r) in &slow {
        eprintln!(
            "  slow      hold {} ms mailshot x{s}  n={n:<6} {}",
            SLOW_HOLD.as_millis(),
            match r {
                Ok(v) => format!("{:.1} msg/s", median(v)),
                Err(e) => format!("FAILED: {e}"),
            }
        );
    }
    let postfix = servers
        .iter()
        .find(|s| s.kind == Kind::Postfix)
        .map(|server| {
            let proxy = match DelayProxy::start(server.addr, Duration::from_millis(POSTFIX_RTT_MS))
            {
                Ok(p) => p,
                Err(e) => {
                    let e = format!("delaying proxy not started: {e}");
                    return (Err(e.clone()), Err(e));
                }
            };
            let port = proxy.addr().port();
            let rate = |s: usize| {
                let row = crate::measure(
                    opts,
                    env,
                    server,
                    port,
                    POSTFIX_RTT_MS,
                    Contender::Mailshot(s),
                );
                match row.failure {
                    Some(f) => Err(f),
                    None => Ok(row.median()),
                }
            };
            (rate(1), rate(4))
        });
    Scaling { n, slow, postfix }
}

/// The Markdown section with its target lines, the records, and whether a run failed.
pub fn report(sc: &Scaling) -> (String, Vec<Record>, bool) {
    let mut text = format!(
        "### Parallel sessions\n\nA server that holds each end-of-data reply {} ms ({} messages a run, median of the runs):\n\n\
         | sessions | msg/s (median) | runs | ÷ 1 session | goal |\n|---:|---:|---|---:|---|\n",
        SLOW_HOLD.as_millis(),
        sc.n
    );
    let mut records = Vec::new();
    let mut targets = String::new();
    let mut failed = false;
    let one = sc
        .slow
        .iter()
        .find(|(s, _)| *s == 1)
        .and_then(|(_, r)| r.as_ref().ok().map(|v| median(v)));
    for (s, r) in &sc.slow {
        let goal = EFFICIENCY * *s as f64;
        let goal_text = if *s == 1 {
            "-".to_string()
        } else if *s <= GOAL_UP_TO {
            format!("≥ {goal:.2}×")
        } else {
            "(printed)".to_string()
        };
        match r {
            Err(e) => {
                failed = true;
                let _ = writeln!(text, "| {s} | FAILED ({e}) | - | - | {goal_text} |");
            }
            Ok(v) => {
                let m = median(v);
                let runs: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
                let ratio = one.map(|o| m / o);
                let _ = writeln!(
                    text,
                    "| {s} | {m:.1} | {} | {} | {goal_text} |",
                    runs.join(", "),
                    ratio.map_or("-".into(), |x| format!("{x:.2}×"))
                );
                if let (Some(o), true) = (one, *s > 1) {
                    let mut rec = Record::new(
                        "parallel",
                        format!(
                            "mailshot, {s} sessions, slow-commit server ({} ms)",
                            SLOW_HOLD.as_millis()
                        ),
                        "msg/s",
                        m,
                        "mailshot, 1 session",
                        o,
                    );
                    rec.sessions = *s;
                    records.push(rec);
                    if *s <= GOAL_UP_TO {
                        let ok = m / o >= goal;
                        let _ = writeln!(
                            targets,
                            "- {} slow-commit server: {s} sessions {m:.1} msg/s ≥ {EFFICIENCY} × {s} × 1 session {o:.1} msg/s: {:.2}× (goal {goal:.2}×)",
                            if ok { "PASS" } else { "FAIL" },
                            m / o
                        );
                    }
                }
            }
        }
    }
    if let Some((one, four)) = &sc.postfix {
        let cell = |r: &Result<f64, String>| match r {
            Ok(x) => format!("{x:.0} msg/s"),
            Err(e) => format!("FAILED ({e})"),
        };
        let _ = writeln!(
            text,
            "\nPostfix at {POSTFIX_RTT_MS} ms RTT (delaying proxy): 1 session {}, 4 sessions {}",
            cell(one),
            cell(four)
        );
        match (one, four) {
            (Ok(o), Ok(f)) => {
                let mut rec = Record::new(
                    "parallel",
                    format!("mailshot, 4 sessions, postfix at {POSTFIX_RTT_MS} ms RTT"),
                    "msg/s",
                    *f,
                    "mailshot, 1 session",
                    *o,
                );
                rec.server = Some("postfix".into());
                rec.rtt_ms = POSTFIX_RTT_MS;
                rec.sessions = 4;
                records.push(rec);
                let _ = writeln!(
                    targets,
                    "- {} postfix, {POSTFIX_RTT_MS} ms RTT: 4 sessions {f:.0} msg/s > 1 session {o:.0} msg/s ({:.2}×)",
                    if f > o { "PASS" } else { "FAIL" },
                    f / o
                );
            }
            _ => failed = true,
        }
    }
    text.push('\n');
    text.push_str(&targets);
    (text, records, failed)
}
