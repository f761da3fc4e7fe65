//! Traffic shaping: per-domain queues and relay failover.
//!
//! - **Domains.** 10,000 recipients over 100 domains, one of them slow (its
//!   messages' end-of-data replies are held 100 ms), with
//!   `domains: {"*": {sessions: 2}}`. Without per-domain queues the slow
//!   domain's mail sits in front of everyone else's; with them the whole run
//!   takes about as long as the slow domain alone. The section runs the slow
//!   domain alone, the other 99 alone, and all of them together, and compares
//!   the whole with the slower of its two parts.
//! - **Failover.** Two relays share a run; part way through, one of them
//!   stops answering (it holds every connection open and says nothing, and
//!   refuses new ones). The run must go on over the other relay, losing no
//!   more than one `timeout` against the same run with both relays healthy.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::contenders::Env;
use crate::data;
use crate::procs::run_measured;
use crate::results::Record;
use crate::Opts;

/// How long the slow domain's end-of-data replies are held.
pub const SLOW_HOLD: Duration = Duration::from_millis(100);

/// The slow domain.
const SLOW: &str = "d00.shaping.example";

/// The smtp.timeout of the failover runs: the most a failover may cost.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// What failing over may cost beyond the timeout that detects a silent
/// relay: the reconnect attempt that finds it gone (`retry_delay` 200 ms)
/// and handing its messages to the other relay.
const STALL_SLACK: Duration = Duration::from_millis(500);

/// Records the section writes when every part ran.
pub const RECORDS: usize = 3;

/// The whole run may take at most this much longer than its slower part.
pub const CLOSE_TO_SLOWEST: f64 = 1.25;

/// A recording SMTP sink on 127.0.0.1: it holds the end-of-data reply of
/// messages to `slow`, notes when each message arrived and for which domain,
/// and can be frozen (it stops answering and stops accepting).
struct Sink {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    received: Arc<AtomicU64>,
}

impl Sink {
    fn start(slow: Option<&str>) -> io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let sink = Sink {
            addr,
            arrivals: Arc::default(),
            frozen: Arc::default(),
            stop: Arc::default(),
            conns: Arc::default(),
            received: Arc::default(),
        };
        let (arrivals, frozen, stop, conns, received) = (
            sink.arrivals.clone(),
            sink.frozen.clone(),
            sink.stop.clone(),
            sink.conns.clone(),
            sink.received.clone(),
        );
        let slow = slow.map(str::to_owned);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) || frozen.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    conns.lock().unwrap().push(c);
                }
                let (arrivals, frozen, received, slow) = (
                    arrivals.clone(),
                    frozen.clone(),
                    received.clone(),
                    slow.clone(),
                );
                thread::spawn(move || {
                    let _ = serve(conn, slow.as_deref(), &arrivals, &frozen, &received);
                });
            }
            // Dropping the listener refuses new connections from here on.
        });
        Ok(sink)
    }

    /// Stop answering on every connection and refuse new ones.
    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it drops the listener.
        let _ = TcpStream::connect(self.addr);
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    fn arrivals(&self) -> Vec<(String, Instant)> {
        self.arrivals.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Block for as long as the sink is frozen (a frozen server says nothing;
/// the connection is shut down when the sink is dropped).
fn hold_if_frozen(frozen: &AtomicBool) {
    while frozen.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
    }
}

fn serve(
    conn: TcpStream,
    slow: Option<&str>,
    arrivals: &Mutex<Vec<(String, Instant)>>,
    frozen: &AtomicBool,
    received: &AtomicU64,
) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    conn.set_nodelay(true)?;
    // Replies to pipelined commands go out together, once the commands
    // already here are answered.
    let mut out = io::BufWriter::new(conn.try_clone()?);
    let mut input = BufReader::new(conn);
    out.write_all(b"220 shaping.bench ESMTP\r\n")?;
    out.flush()?;
    let mut line = String::new();
    let mut domains: Vec<String> = Vec::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        hold_if_frozen(frozen);
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-shaping.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "MAIL" => {
                domains.clear();
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" => {
                let domain = line
                    .rsplit_once('@')
                    .map(|(_, d)| d.trim_end().trim_end_matches('>').to_ascii_lowercase())
                    .unwrap_or_default();
                domains.push(domain);
                b"250 2.1.5 Ok\r\n"
            }
            "HELO" | "RSET" | "NOOP" => b"250 2.0.0 Ok\r\n",
            "DATA" => {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                out.flush()?;
                loop {
                    line.clear();
                    if input.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                }
                hold_if_frozen(frozen);
                if slow.is_some_and(|s| domains.iter().any(|d| d == s)) {
                    thread::sleep(SLOW_HOLD);
                }
                let domain = domains.first().cloned().unwrap_or_default();
                arrivals.lock().unwrap().push((domain, Instant::now()));
                received.fetch_add(1, Ordering::SeqCst);
                b"250 2.0.0 Ok: queued\r\n"
            }
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                out.flush()?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not implemented\r\n",
        };
        out.write_all(reply)?;
        if input.buffer().is_empty() {
            out.flush()?;
        }
    }
}

/// The recipient of row `i`: spread over 100 domains, `d00` the slow one.
fn email(i: usize) -> String {
    format!("user{i}@d{:02}.shaping.example", i % 100)
}

/// Writes a CSV of the rows `0..n` that `keep` selects, with the harness's
/// usual columns; returns how many rows it holds.
fn write_csv(path: &Path, n: usize, keep: impl Fn(usize) -> bool) -> io::Result<usize> {
    let mut s = data::COLUMNS.join(",");
    s.push('\n');
    let mut count = 0;
    for i in (0..n).filter(|&i| keep(i)) {
        let mut row = data::row(i);
        row[0] = email(i);
        s.push_str(&row.join(","));
        s.push('\n');
        count += 1;
    }
    fs::write(path, s)?;
    Ok(count)
}

/// One mailshot run of `job` reading `csv`, with `smtp` as its smtp section
/// and `extra` appended (top-level keys); wall time and whether it ended 0.
fn run_job(env: &Env, name: &str, csv: &str, smtp: &str, extra: &str) -> io::Result<(f64, i32)> {
    let dir = env.work.join("shaping");
    fs::create_dir_all(&dir)?;
    let job = data::write_job(&dir, name, csv)?;
    let mut yaml = fs::read_to_string(&job)?;
    let _ = write!(yaml, "smtp:\n{smtp}{extra}");
    fs::write(&job, yaml)?;
    let mut cmd = Command::new(&env.mailshot);
    cmd.arg("run")
        .arg(&job)
        .args(["--quiet", "--restart"])
        .arg("--report")
        .arg(dir.join(format!("{name}.report.csv")))
        .arg("--trace")
        .arg(dir.join(format!("{name}.trace")))
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(dir.join(format!("{name}.stderr")))?);
    let m = run_measured(&mut cmd, env.timeout)?;
    Ok((m.wall.as_secs_f64(), m.code))
}

/// What the domains part measured (seconds).
pub struct Domains {
    /// Messages in the whole run.
    pub n: usize,
    /// The whole run.
    pub all: f64,
    /// The slow domain alone.
    pub slow: f64,
    /// The other domains alone.
    pub rest: f64,
    /// In the whole run: when the last message of the other domains
    /// arrived, and when the slow domain's last did (since the first arrival).
    pub rest_done: f64,
    pub slow_done: f64,
}

fn domains_part(env: &Env, n: usize, sessions: usize) -> Result<Domains, String> {
    let dir = env.work.join("shaping");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let smtp_for = |sink: &Sink| {
        format!(
            "  url: \"smtp+plain://127.0.0.1:{}\"\n  sessions: {sessions}\n  \
             max_messages_per_session: {n}\n",
            sink.addr.port()
        )
    };
    let limits = "domains:\n  \"*\": { sessions: 2 }\n";
    let slow_n =
        write_csv(&dir.join("slow.csv"), n, |i| i % 100 == 0).map_err(|e| e.to_string())?;
    let rest_n =
        write_csv(&dir.join("rest.csv"), n, |i| i % 100 != 0).map_err(|e| e.to_string())?;
    let all_n = write_csv(&dir.join("all.csv"), n, |_| true).map_err(|e| e.to_string())?;
    let timed =
        |name: &str, csv: &str, want: usize| -> Result<(f64, Vec<(String, Instant)>), String> {
            let sink = Sink::start(Some(SLOW)).map_err(|e| e.to_string())?;
            let (wall, code) =
                run_job(env, name, csv, &smtp_for(&sink), limits).map_err(|e| e.to_string())?;
            if code != 0 || sink.received() != want as u64 {
                return Err(format!(
                    "{name}: exit {code}, server received {} of {want}",
                    sink.received()
                ));
            }
            Ok((wall, sink.arrivals()))
        };
    let (slow, _) = timed("slow", "slow.csv", slow_n)?;
    let (rest, _) = timed("rest", "rest.csv", rest_n)?;
    let (all, arrivals) = timed("all", "all.csv", all_n)?;
    let first = arrivals
        .iter()
        .map(|(_, t)| *t)
        .min()
        .ok_or("no arrivals")?;
    let last_of = |slow_domain: bool| {
        arrivals
            .iter()
            .filter(|(d, _)| (d == SLOW) == slow_domain)
            .map(|(_, t)| (*t - first).as_secs_f64())
            .fold(0.0, f64::max)
    };
    Ok(Domains {
        n: all_n,
        all,
        slow,
        rest,
        rest_done: last_of(false),
        slow_done: last_of(true),
    })
}

/// What the failover part measured (seconds).
pub struct Failover {
    /// Messages a run.
    pub n: usize,
    /// Both relays healthy.
    pub healthy: f64,
    /// One relay frozen part way through.
    pub failed: f64,
    /// The longest gap between two arrivals (over both relays) in the failed run.
    pub longest_gap: f64,
    /// Messages the healthy relay took over and received in the failed run.
    pub carried: u64,
    /// The run's exit code in the failed run (75 when messages were caught
    /// in flight on the frozen relay and left `uncertain`).
    pub code: i32,
}

fn failover_part(env: &Env, n: usize) -> Result<Failover, String> {
    let dir = env.work.join("shaping");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    write_csv(&dir.join("failover.csv"), n, |_| true).map_err(|e| e.to_string())?;
    let smtp_for = |a: &Sink, b: &Sink| {
        format!(
            "  timeout: {}s\n  data_timeout: {0}s\n  retry_delay: 200ms\n  max_messages_per_session: {n}\n  relays:\n\
             \x20   - {{ name: a, url: \"smtp+plain://127.0.0.1:{}\", sessions: 2 }}\n\
             \x20   - {{ name: b, url: \"smtp+plain://127.0.0.1:{}\", sessions: 2 }}\n",
            FAILOVER_TIMEOUT.as_secs(),
            a.addr.port(),
            b.addr.port()
        )
    };
    // Both healthy.
    let (a, b) = (
        Sink::start(None).map_err(|e| e.to_string())?,
        Sink::start(None).map_err(|e| e.to_string())?,
    );
    let (healthy, code) = run_job(env, "healthy", "failover.csv", &smtp_for(&a, &b), "")
        .map_err(|e| e.to_string())?;
    if code != 0 || a.received() + b.received() != n as u64 {
        return Err(format!(
            "healthy run: exit {code}, relays received {} of {n}",
            a.received() + b.received()
        ));
    }
    drop((a, b));
    // Relay a freezes once it has a quarter of the messages.
    let (a, b) = (
        Arc::new(Sink::start(None).map_err(|e| e.to_string())?),
        Sink::start(None).map_err(|e| e.to_string())?,
    );
    let watcher = {
        let a = a.clone();
        let quarter = (n / 4) as u64;
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while a.received() < quarter && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            a.freeze();
        })
    };
    let (failed, code) =
        run_job(env, "failed", "failover.csv", &smtp_for(&a, &b), "").map_err(|e| e.to_string())?;
    let _ = watcher.join();
    let mut times: Vec<Instant> = a
        .arrivals()
        .into_iter()
        .chain(b.arrivals())
        .map(|(_, t)| t)
        .collect();
    times.sort();
    let longest_gap = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .fold(0.0, f64::max);
    Ok(Failover {
        n,
        healthy,
        failed,
        longest_gap,
        carried: b.received(),
        code,
    })
}

/// Runs the section; prints its tables into `out` and returns its records.
pub fn run(opts: &Opts, env: &Env, out: &mut String) -> Vec<Record> {
    let mut records = Vec::new();
    let (n, failover_n, sessions) = if opts.full {
        (10_000, 20_000, 8)
    } else {
        (200, 200, 4)
    };
    let _ = writeln!(out, "\n## Traffic shaping\n");
    match domains_part(env, n, sessions) {
        Ok(d) => {
            let slowest = d.slow.max(d.rest);
            let ratio = d.all / slowest;
            let _ = writeln!(
                out,
                "{} recipients over 100 domains, one slow ({} ms per message), \
                 `domains: {{\"*\": {{sessions: 2}}}}`, {sessions} sessions:\n\n\
                 | run | wall (s) |\n| --- | ---: |\n\
                 | the slow domain alone ({} messages) | {:.2} |\n\
                 | the other 99 domains alone | {:.2} |\n\
                 | sum of the two | {:.2} |\n\
                 | **all together** | **{:.2}** |\n\n\
                 In the run together the other domains' last message arrived at \
                 {:.2} s, the slow domain's at {:.2} s.\n\
                 {}: together / slowest part = {ratio:.2} (goal ≤ {CLOSE_TO_SLOWEST})\n",
                d.n,
                SLOW_HOLD.as_millis(),
                d.n / 100,
                d.slow,
                d.rest,
                d.slow + d.rest,
                d.all,
                d.rest_done,
                d.slow_done,
                if ratio <= CLOSE_TO_SLOWEST {
                    "PASS"
                } else {
                    "FAIL"
                },
            );
            eprintln!(
                "  shaping   100 domains, one slow: together {:.2} s, slow alone {:.2} s, rest alone {:.2} s",
                d.all, d.slow, d.rest
            );
            records.push(Record::new(
                "shaping",
                "wall time, 100 domains with one slow, against the slower part alone",
                "s",
                d.all,
                "slowest part alone",
                slowest,
            ));
            records.push(Record::new(
                "shaping",
                "wall time, 100 domains with one slow, against the sum of the parts",
                "s",
                d.all,
                "sum of the parts",
                d.slow + d.rest,
            ));
        }
        Err(e) => {
            let _ = writeln!(out, "Per-domain queues: FAILED: {e}\n");
            eprintln!("  shaping   domains FAILED: {e}");
        }
    }
    match failover_part(env, failover_n) {
        Ok(f) => {
            // The run stalls while nothing arrives anywhere: the frozen relay's
            // sessions hold their messages until the timeout says it is gone.
            let stall = f.longest_gap;
            let limit = FAILOVER_TIMEOUT.as_secs_f64() + STALL_SLACK.as_secs_f64();
            let _ = writeln!(
                out,
                "Two relays, 2 sessions each, {} messages; relay a stops answering after a \
                 quarter (`timeout` and `data_timeout`: {}s):\n\n\
                 | run | wall (s) |\n| --- | ---: |\n\
                 | both relays healthy | {:.2} |\n\
                 | relay a frozen part way | {:.2} |\n\n\
                 The run stalled {stall:.2} s (the longest time nothing arrived at either relay); \
                 it took {:.2} s longer than with both relays healthy; relay b received {} \
                 messages; exit {} (messages caught after their final dot on the frozen relay \
                 are `uncertain`, not sent twice).\n\
                 {}: stall ≤ one timeout + {} ms to reconnect and resend ({limit:.2} s)\n",
                f.n,
                FAILOVER_TIMEOUT.as_secs(),
                f.healthy,
                f.failed,
                (f.failed - f.healthy).max(0.0),
                f.carried,
                f.code,
                if stall <= limit { "PASS" } else { "FAIL" },
                STALL_SLACK.as_millis(),
            );
            eprintln!(
                "  shaping   failover: healthy {:.2} s, one relay frozen {:.2} s (stall {stall:.2} s)",
                f.healthy, f.failed
            );
            records.push(Record::new(
                "shaping",
                "stall when one of two relays stops answering, against one timeout and a reconnect",
                "s",
                stall,
                "smtp.timeout + reconnect",
                limit,
            ));
        }
        Err(e) => {
            let _ = writeln!(out, "Relay failover: FAILED: {e}\n");
            eprintln!("  shaping   failover FAILED: {e}");
        }
    }
    records
}
