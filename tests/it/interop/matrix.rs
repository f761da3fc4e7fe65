//! The matrix figures: what a server offers after STARTTLS, and the round
//! trips mailshot needs per message, timed through a delaying proxy.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::job::{copies_after, Job, Tls, PASSWORD, USER};
use super::servers::Server;
use crate::support::RawClient;

#[path = "../../../benches/throughput/proxy.rs"]
mod proxy;

/// What one server offered, and what mailshot needed per message.
#[derive(Debug)]
struct Figures {
    pipelining: bool,
    chunking: bool,
    smtputf8: bool,
    round_trips: f64,
    /// 503 replies in a 30-message run.
    refusals: usize,
}

/// The EHLO keywords after STARTTLS.
fn offered(server: &impl Server) -> HashSet<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], server.starttls_port()).into();
    let mut c = RawClient::connect(addr);
    c.expect(220);
    c.cmd("EHLO client.example.test");
    let reply = c.cmd("STARTTLS");
    assert_eq!(reply.code, 220, "STARTTLS: {reply:?}");
    let mut c = c
        .starttls(&server.ca_pem(), "localhost")
        .expect("TLS handshake");
    let ehlo = c.cmd("EHLO client.example.test");
    assert_eq!(ehlo.code, 250, "{ehlo:?}");
    let _ = c.cmd("QUIT");
    ehlo.lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|k| k.to_ascii_uppercase())
        .collect()
}

/// Round trips per message: the time one session needs per extra message
/// (30 messages less 10, which cancels the connection's own set-up), through
/// a proxy adding `RTT` less the same directly (the server's and mailshot's
/// own work per message), in units of `RTT`. Also returns the 503 replies in
/// the trace of the 30-message run through the proxy.
fn round_trips_per_message(server: &impl Server, tag: &str) -> (f64, usize) {
    const RTT: Duration = Duration::from_millis(100);
    const FEW: usize = 10;
    const MANY: usize = 30;
    let upstream: SocketAddr = ([127, 0, 0, 1], server.starttls_port()).into();
    let proxy = proxy::DelayProxy::start(upstream, RTT).expect("start the delaying proxy");
    let time = |port: u16, rows: usize| {
        let tag = format!("{tag}{port}x{rows}");
        let job = Job::new(server, Tls::Starttls, port, "plain", &tag, rows);
        let run = job.run(&["--sessions", "1", "--trace", "trace.txt"], PASSWORD);
        assert_eq!(run.code, 0, "{tag}: {}", run.stderr);
        let trace = job.dir.read("trace.txt");
        let refusals = trace.lines().filter(|l| l.contains("S: 503")).count();
        (run.elapsed.as_secs_f64(), refusals)
    };
    let per_message = |port: u16| {
        let (few, _) = time(port, FEW);
        let (many, refusals) = time(port, MANY);
        ((many - few) / (MANY - FEW) as f64, refusals)
    };
    let (direct, _) = per_message(upstream.port());
    let (delayed, refusals) = per_message(proxy.addr().port());
    ((delayed - direct).max(0.0) / RTT.as_secs_f64(), refusals)
}

/// Records the figures next to the build's other test output, for the
/// README's matrix.
fn record(name: &str, f: &Figures) {
    let line = format!(
        "{name}: PIPELINING={} CHUNKING={} SMTPUTF8={} round_trips_per_message={:.2} \
         503_replies_in_30_messages={}\n",
        f.pipelining, f.chunking, f.smtputf8, f.round_trips, f.refusals
    );
    eprint!("{line}");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("interop-{name}.txt"));
    let _ = std::fs::write(path, line);
}

/// Checks the offers against `expected` (PIPELINING, CHUNKING, SMTPUTF8),
/// the round trips against `max_round_trips`, that each of the 80 messages
/// arrived exactly once, and that a refusal of commands pipelined after the
/// final dot is met once (one refused group), not on every message.
pub fn offers_and_round_trips<S: Server>(expected: (bool, bool, bool), max_round_trips: f64) {
    let server = S::start(USER, PASSWORD);
    let keywords = offered(&server);
    let (round_trips, refusals) = round_trips_per_message(&server, "rt");
    let figures = Figures {
        pipelining: keywords.contains("PIPELINING"),
        chunking: keywords.contains("CHUNKING"),
        smtputf8: keywords.contains("SMTPUTF8"),
        round_trips,
        refusals,
    };
    record(S::NAME, &figures);
    assert_eq!(
        (figures.pipelining, figures.chunking, figures.smtputf8),
        expected,
        "{}: offered {keywords:?}",
        S::NAME
    );
    let (_, got) = copies_after(&server, 3 * 80);
    assert_eq!(got.len(), 3 * 80, "{}: {got:?}", S::NAME);
    assert!(
        got.values().all(|&n| n == 1),
        "{}: duplicates {got:?}",
        S::NAME
    );
    // MAIL, three RCPT and DATA pipelined behind the first dot.
    assert!(
        refusals <= 5,
        "{}: {refusals} replies 503 in 30 messages: pipelining past the dot goes on",
        S::NAME
    );
    assert!(
        round_trips <= max_round_trips,
        "{}: {round_trips:.2} round trips per message (at most {max_round_trips})",
        S::NAME
    );
}
