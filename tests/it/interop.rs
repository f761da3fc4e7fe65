//! The interop matrix: `mailshot run` against three real servers besides
//! Postfix and aiosmtpd — Exim 4.96, Haraka 3 and nodemailer's
//! `smtp-server` — each started privately on loopback by its fixture.
//!
//! For each server: STARTTLS with AUTH PLAIN and LOGIN, implicit TLS, 100
//! messages with Cc, Bcc and an attachment over two sessions, refused
//! recipients (5xx, 4xx) and a rerun once the 4xx is lifted, and what the
//! server offers with the round trips mailshot needs per message. Everything
//! is judged on the server side (the copies each envelope recipient got),
//! by the report rows and by exit codes.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mail_parser::MimeHeaders;

use crate::support::exim::Exim;
use crate::support::haraka::Haraka;
use crate::support::recording::{count, wait_for, Copy};
use crate::support::smtp_server::SmtpServer;
use crate::support::{mailshot_bin, RawClient, TestDir};

#[path = "../../benches/throughput/proxy.rs"]
#[allow(dead_code)]
mod proxy;

const USER: &str = "sender@example.test";
const PASSWORD: &str = "interop-s3cret";
/// No single run may take longer than this; a hang fails the test instead.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long the server side may take to store what it accepted.
const STORE_LIMIT: Duration = Duration::from_secs(20);

/// What the tests need from each server fixture.
trait Server {
    /// The server's name in messages and in the figures file.
    const NAME: &'static str;
    fn start(user: &str, password: &str) -> Self;
    fn starttls_port(&self) -> u16;
    fn tls_port(&self) -> u16;
    fn ca_pem(&self) -> String;
    fn ca_file(&self) -> PathBuf;
    fn set_refusals(&self, refusals: &[(&str, u16)]);
    fn copies(&self) -> Vec<Copy>;
}

macro_rules! server {
    ($ty:ty, $name:literal) => {
        impl Server for $ty {
            const NAME: &'static str = $name;
            fn start(user: &str, password: &str) -> Self {
                <$ty>::start(user, password)
            }
            fn starttls_port(&self) -> u16 {
                <$ty>::starttls_port(self)
            }
            fn tls_port(&self) -> u16 {
                <$ty>::tls_port(self)
            }
            fn ca_pem(&self) -> String {
                <$ty>::ca_pem(self).to_owned()
            }
            fn ca_file(&self) -> PathBuf {
                <$ty>::ca_file(self)
            }
            fn set_refusals(&self, refusals: &[(&str, u16)]) {
                <$ty>::set_refusals(self, refusals)
            }
            fn copies(&self) -> Vec<Copy> {
                <$ty>::copies(self)
            }
        }
    };
}

server!(Exim, "exim");
server!(Haraka, "haraka");
server!(SmtpServer, "smtp-server");

// ---------------------------------------------------------------- the job

/// How mailshot reaches the server.
#[derive(Clone, Copy, Debug)]
enum Tls {
    Starttls,
    Implicit,
}

/// A job folder: `job.yaml`, `recipients.csv` (`email,name,cc,bcc`),
/// `body.txt` and `report.pdf` (attached to every message).
struct Job {
    dir: TestDir,
}

/// Bytes no text encoder would leave alone.
fn pdf_bytes() -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend(0u8..=255);
    pdf
}

/// The To, Cc and Bcc addresses of row `i` in a job whose addresses carry `tag`.
fn row_addrs(tag: &str, i: usize) -> [String; 3] {
    [
        format!("to{i}.{tag}@to.example.test"),
        format!("cc{i}.{tag}@cc.example.test"),
        format!("bcc{i}.{tag}@bcc.example.test"),
    ]
}

impl Job {
    /// `rows` rows, each with a To, a Cc and a Bcc, sent to `port` with
    /// `auth` and `password`.
    fn new(server: &impl Server, tls: Tls, port: u16, auth: &str, tag: &str, rows: usize) -> Job {
        let dir = TestDir::new();
        let mut csv = String::from("email,name,cc,bcc\n");
        for i in 1..=rows {
            let [to, cc, bcc] = row_addrs(tag, i);
            csv.push_str(&format!("{to},Name {i},{cc},{bcc}\n"));
        }
        dir.write("recipients.csv", csv);
        dir.write("body.txt", "Dear {{ name }},\nyour report is attached.\n");
        dir.write("report.pdf", pdf_bytes());
        let scheme = match tls {
            Tls::Starttls => "smtp",
            Tls::Implicit => "smtps",
        };
        dir.write(
            "job.yaml",
            format!(
                "smtp: {{ url: \"{scheme}://127.0.0.1:{port}\", ca_file: \"{ca}\", \
                 username: \"{USER}\", password_env: INTEROP_PW, auth: {auth}, \
                 timeout: 10s, retry_delay: 100ms, max_attempts: 2 }}\n\
                 from: \"Sender <{USER}>\"\n\
                 to: \"{{{{ name }}}} <{{{{ email }}}}>\"\n\
                 cc: \"{{{{ cc }}}}\"\n\
                 bcc: \"{{{{ bcc }}}}\"\n\
                 subject: \"Report for {{{{ name }}}}\"\n\
                 text: body.txt\n\
                 attachments:\n  - path: report.pdf\n\
                 recipients: {{ file: recipients.csv }}\n",
                ca = server.ca_file().display(),
            ),
        );
        Job { dir }
    }

    /// Runs `mailshot run job.yaml ARGS` with `password`, bounded.
    fn run(&self, args: &[&str], password: &str) -> Run {
        let mut cmd = Command::new(mailshot_bin());
        cmd.current_dir(self.dir.path())
            .arg("run")
            .arg("job.yaml")
            .args(args)
            .env("INTEROP_PW", password)
            .env("XDG_CONFIG_HOME", self.dir.join("xdg"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("start mailshot");
        let mut err = child.stderr.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for mailshot") {
                break status;
            }
            if start.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mailshot did not finish within {RUN_LIMIT:?}; stderr:\n{}",
                    t_err.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();
        let _ = t_out.join();
        Run {
            code: status.code().unwrap_or(-1),
            stderr: t_err.join().unwrap(),
            elapsed,
        }
    }

    /// The report rows by row number.
    fn report(&self) -> HashMap<u64, ReportRow> {
        let path = self.dir.join("job.report.csv");
        let mut rd = csv::Reader::from_path(&path)
            .unwrap_or_else(|e| panic!("read report {}: {e}", path.display()));
        let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
        let col = |name: &str| header.iter().position(|h| h == name).expect(name);
        let (row, status, code, reply) = (col("row"), col("status"), col("code"), col("reply"));
        rd.records()
            .map(|r| {
                let r = r.expect("report record");
                let n: u64 = r[row].parse().expect("row number");
                let entry = ReportRow {
                    status: r[status].to_owned(),
                    code: r[code].to_owned(),
                    reply: r[reply].to_owned(),
                };
                (n, entry)
            })
            .collect()
    }
}

/// What one run did.
struct Run {
    code: i32,
    stderr: String,
    elapsed: Duration,
}

/// The columns of a report row these tests judge.
#[derive(Debug, Clone)]
struct ReportRow {
    status: String,
    code: String,
    reply: String,
}

/// Copies per recipient, once the server has stored at least `n`.
fn copies_after(server: &impl Server, n: usize) -> (Vec<Copy>, HashMap<String, usize>) {
    let copies = wait_for(|| server.copies(), n, STORE_LIMIT);
    let counted = count(&copies);
    (copies, counted)
}

/// Asserts each address got exactly `want` copies.
fn assert_copies(name: &str, got: &HashMap<String, usize>, want: &[(&str, usize)]) {
    for (addr, n) in want {
        assert_eq!(
            got.get(*addr).copied().unwrap_or(0),
            *n,
            "{name}: copies for {addr} (all: {got:?})"
        );
    }
}

// ----------------------------------------------------------------- checks

/// STARTTLS and implicit TLS, each with AUTH PLAIN and LOGIN: every
/// recipient gets one copy, stored under the account that logged in; a wrong
/// password is exit 77 and nothing is stored.
fn auth_over_both_tls_modes<S: Server>() {
    let server = S::start(USER, PASSWORD);
    let combos = [
        (Tls::Starttls, "plain"),
        (Tls::Starttls, "login"),
        (Tls::Implicit, "plain"),
        (Tls::Implicit, "login"),
    ];
    let mut expected = 0;
    for (tls, auth) in combos {
        let port = match tls {
            Tls::Starttls => server.starttls_port(),
            Tls::Implicit => server.tls_port(),
        };
        let tag = format!("{tls:?}-{auth}").to_ascii_lowercase();
        let job = Job::new(&server, tls, port, auth, &tag, 2);
        let run = job.run(&[], PASSWORD);
        assert_eq!(run.code, 0, "{} {tls:?} {auth}: {}", S::NAME, run.stderr);
        expected += 6;
        let (copies, got) = copies_after(&server, expected);
        for i in 1..=2 {
            let addrs = row_addrs(&tag, i);
            let want: Vec<(&str, usize)> = addrs.iter().map(|a| (a.as_str(), 1)).collect();
            assert_copies(S::NAME, &got, &want);
        }
        for c in copies.iter().filter(|c| c.rcpt.contains(&tag)) {
            assert_eq!(
                c.header("X-Auth-User").as_deref(),
                Some(USER),
                "{} {tls:?} {auth}: stored without that login",
                S::NAME
            );
        }
        let report = job.report();
        assert!(
            (1..=2).all(|r| report[&r].status == "sent"),
            "{}: {report:?}",
            S::NAME
        );
    }
    let job = Job::new(
        &server,
        Tls::Starttls,
        server.starttls_port(),
        "plain",
        "wrong",
        1,
    );
    let run = job.run(&[], "not-the-password");
    assert_eq!(run.code, 77, "{} wrong password: {}", S::NAME, run.stderr);
    assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.copies().len(),
        expected,
        "{}: nothing stored",
        S::NAME
    );
}

/// 100 rows, each with To, Cc, Bcc and an attachment, over two sessions:
/// every envelope recipient gets exactly one copy, the Bcc stays out of the
/// headers, the attachment arrives byte for byte, and both sessions carry
/// a share of the messages.
fn hundred_messages_two_sessions<S: Server>() {
    const ROWS: usize = 100;
    let server = S::start(USER, PASSWORD);
    let tag = "bulk";
    let job = Job::new(
        &server,
        Tls::Starttls,
        server.starttls_port(),
        "plain",
        tag,
        ROWS,
    );
    let run = job.run(&["--sessions", "2"], PASSWORD);
    assert_eq!(run.code, 0, "{}: {}", S::NAME, run.stderr);
    let (copies, got) = copies_after(&server, 3 * ROWS);
    for i in 1..=ROWS {
        let addrs = row_addrs(tag, i);
        let want: Vec<(&str, usize)> = addrs.iter().map(|a| (a.as_str(), 1)).collect();
        assert_copies(S::NAME, &got, &want);
    }
    assert_eq!(got.len(), 3 * ROWS, "{}: unexpected recipients", S::NAME);
    for c in &copies {
        let msg = mail_parser::MessageParser::default()
            .parse(&c.data)
            .expect("parse a stored copy");
        let head = String::from_utf8_lossy(&c.data[..msg.root_part().raw_body_offset() as usize])
            .to_ascii_lowercase();
        // A Bcc's own copy may name it in the server's trace headers; the
        // copies for To and Cc must not name any Bcc at all.
        let leaked = head.starts_with("bcc:")
            || head.contains("\nbcc:")
            || (!c.rcpt.contains("@bcc.") && head.contains("@bcc.example.test"));
        assert!(
            !leaked,
            "{}: Bcc visible in the copy for {}:\n{head}",
            S::NAME,
            c.rcpt
        );
        let att = msg.attachments().next().expect("an attachment");
        assert_eq!(att.attachment_name(), Some("report.pdf"), "{}", S::NAME);
        assert_eq!(att.contents(), pdf_bytes().as_slice(), "{}", S::NAME);
    }
    let report = job.report();
    assert_eq!(report.len(), ROWS, "{}", S::NAME);
    assert!(
        report.values().all(|r| r.status == "sent"),
        "{}: {report:?}",
        S::NAME
    );
    // Which connection carried each message (one copy per message: the To's).
    let mut per_session: HashMap<String, usize> = HashMap::new();
    for c in copies.iter().filter(|c| c.rcpt.contains("@to.")) {
        let session = c.header("X-Session").unwrap_or_default();
        *per_session.entry(session).or_insert(0) += 1;
    }
    assert!(
        per_session.len() >= 2 && per_session.values().all(|&n| n >= ROWS / 5),
        "{}: messages per session {per_session:?}",
        S::NAME
    );
}

/// Refusals at RCPT: a 550 To, a 451 Cc, a 550 Bcc and a 451 To whose Bcc
/// is accepted. The first run exits 75 and reports each row by its first
/// refused recipient; after the 4xx are lifted the rerun sends only to the
/// recipients that had not accepted and exits 67 (5xx remain). A job with
/// only a 4xx exits 75, then 0.
fn refusals_and_rerun<S: Server>() {
    let server = S::start(USER, PASSWORD);
    let tag = "mixed";
    let a = |i: usize| row_addrs(tag, i);
    let (to2, cc3, bcc4, to5) = (
        a(2)[0].clone(),
        a(3)[1].clone(),
        a(4)[2].clone(),
        a(5)[0].clone(),
    );
    server.set_refusals(&[
        (to2.as_str(), 550),
        (cc3.as_str(), 451),
        (bcc4.as_str(), 550),
        (to5.as_str(), 451),
    ]);
    let job = Job::new(
        &server,
        Tls::Starttls,
        server.starttls_port(),
        "plain",
        tag,
        6,
    );
    let run = job.run(&[], PASSWORD);
    assert_eq!(
        run.code,
        75,
        "{}: 4xx left to retry: {}",
        S::NAME,
        run.stderr
    );

    // Accepted: 18 addresses less the four refused ones.
    let (_, got) = copies_after(&server, 14);
    let refused = [&to2, &cc3, &bcc4, &to5];
    for i in 1..=6 {
        for addr in a(i) {
            let want = usize::from(!refused.contains(&&addr));
            assert_copies(S::NAME, &got, &[(addr.as_str(), want)]);
        }
    }
    let report = job.report();
    let expect_row = |report: &HashMap<u64, ReportRow>, row: u64, status: &str, names: &str| {
        let r = &report[&row];
        assert_eq!(r.status, status, "{} row {row}: {r:?}", S::NAME);
        if !names.is_empty() {
            assert!(
                r.reply.contains(names),
                "{} row {row} names {names}: {r:?}",
                S::NAME
            );
            let class = if status == "rejected" { "5" } else { "4" };
            assert!(r.code.starts_with(class), "{} row {row}: {r:?}", S::NAME);
        }
    };
    expect_row(&report, 1, "sent", "");
    expect_row(&report, 2, "rejected", &to2);
    expect_row(&report, 3, "failed", &cc3);
    expect_row(&report, 4, "rejected", &bcc4);
    expect_row(&report, 5, "failed", &to5);
    expect_row(&report, 6, "sent", "");

    // Lift the 4xx; the 5xx stay.
    server.set_refusals(&[(to2.as_str(), 550), (bcc4.as_str(), 550)]);
    let rerun = job.run(&[], PASSWORD);
    assert_eq!(
        rerun.code,
        67,
        "{}: only 5xx remain: {}",
        S::NAME,
        rerun.stderr
    );
    let (_, got) = copies_after(&server, 16);
    for i in 1..=6 {
        for addr in a(i) {
            let want = usize::from(addr != to2 && addr != bcc4);
            assert_copies(S::NAME, &got, &[(addr.as_str(), want)]);
        }
    }
    let report = job.report();
    expect_row(&report, 2, "rejected", &to2);
    expect_row(&report, 3, "sent", "");
    expect_row(&report, 4, "rejected", &bcc4);
    expect_row(&report, 5, "sent", "");

    // Only a 4xx: 75, then 0 once it is lifted, and still one copy each.
    let tag = "soft";
    let soft = row_addrs(tag, 1)[1].clone();
    server.set_refusals(&[(soft.as_str(), 451)]);
    let job = Job::new(
        &server,
        Tls::Starttls,
        server.starttls_port(),
        "plain",
        tag,
        2,
    );
    let run = job.run(&[], PASSWORD);
    assert_eq!(run.code, 75, "{}: {}", S::NAME, run.stderr);
    server.set_refusals(&[]);
    let rerun = job.run(&[], PASSWORD);
    assert_eq!(rerun.code, 0, "{}: {}", S::NAME, rerun.stderr);
    let (_, got) = copies_after(&server, 22);
    for i in 1..=2 {
        for addr in row_addrs(tag, i) {
            assert_copies(S::NAME, &got, &[(addr.as_str(), 1)]);
        }
    }
    assert!(
        job.report().values().all(|r| r.status == "sent"),
        "{}: {:?}",
        S::NAME,
        job.report()
    );
}

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

/// Round trips per message: one session through a proxy adding `RTT`, the
/// difference in run time between 30 and 10 messages, in round trips, per
/// extra message (the connection's own setup cancels out). Also returns the
/// 503 replies in the trace of the longer run.
fn round_trips_per_message(server: &impl Server, tag: &str) -> (f64, usize) {
    const RTT: Duration = Duration::from_millis(100);
    const FEW: usize = 10;
    const MANY: usize = 30;
    let upstream: SocketAddr = ([127, 0, 0, 1], server.starttls_port()).into();
    let proxy = proxy::DelayProxy::start(upstream, RTT).expect("start the delaying proxy");
    let port = proxy.addr().port();
    let time = |rows: usize| {
        let tag = format!("{tag}{rows}");
        let job = Job::new(server, Tls::Starttls, port, "plain", &tag, rows);
        let run = job.run(&["--sessions", "1", "--trace", "trace.txt"], PASSWORD);
        assert_eq!(run.code, 0, "{tag}: {}", run.stderr);
        let trace = job.dir.read("trace.txt");
        let refusals = trace.lines().filter(|l| l.contains("S: 503")).count();
        (run.elapsed, refusals)
    };
    let (few, _) = time(FEW);
    let (many, refusals) = time(MANY);
    let extra = many.saturating_sub(few).as_secs_f64();
    (extra / RTT.as_secs_f64() / (MANY - FEW) as f64, refusals)
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
/// the round trips against `max_round_trips`, that each of the 40 messages
/// arrived exactly once, and that a refusal of commands pipelined after the
/// final dot is met once (one refused group), not on every message.
fn offers_and_round_trips<S: Server>(expected: (bool, bool, bool), max_round_trips: f64) {
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
    let (_, got) = copies_after(&server, 3 * 40);
    assert_eq!(got.len(), 3 * 40, "{}: {got:?}", S::NAME);
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

// ------------------------------------------------------------------ Exim

#[test]
fn exim_auth_plain_and_login_over_starttls_and_implicit_tls() {
    auth_over_both_tls_modes::<Exim>();
}

#[test]
fn exim_hundred_messages_with_cc_bcc_and_attachment_over_two_sessions() {
    hundred_messages_two_sessions::<Exim>();
}

#[test]
fn exim_refused_recipients_then_rerun_sends_only_what_is_missing() {
    refusals_and_rerun::<Exim>();
}

/// Exim offers CHUNKING: pipelined `BDAT … LAST` needs no wait per message.
#[test]
fn exim_offers_and_round_trips_per_message() {
    offers_and_round_trips::<Exim>((true, true, true), 0.8);
}

// ---------------------------------------------------------------- Haraka

#[test]
fn haraka_auth_plain_and_login_over_starttls_and_implicit_tls() {
    auth_over_both_tls_modes::<Haraka>();
}

#[test]
fn haraka_hundred_messages_with_cc_bcc_and_attachment_over_two_sessions() {
    hundred_messages_two_sessions::<Haraka>();
}

#[test]
fn haraka_refused_recipients_then_rerun_sends_only_what_is_missing() {
    refusals_and_rerun::<Haraka>();
}

/// Haraka refuses commands pipelined after the final dot: at most two round
/// trips per message (the body's 354, then the dot's reply).
#[test]
fn haraka_offers_and_round_trips_per_message() {
    offers_and_round_trips::<Haraka>((true, false, true), 2.5);
}

// ----------------------------------------------------------- smtp-server

#[test]
fn smtp_server_auth_plain_and_login_over_starttls_and_implicit_tls() {
    auth_over_both_tls_modes::<SmtpServer>();
}

#[test]
fn smtp_server_hundred_messages_with_cc_bcc_and_attachment_over_two_sessions() {
    hundred_messages_two_sessions::<SmtpServer>();
}

#[test]
fn smtp_server_refused_recipients_then_rerun_sends_only_what_is_missing() {
    refusals_and_rerun::<SmtpServer>();
}

/// No CHUNKING: pipelined DATA waits for its 354, about one round trip.
#[test]
fn smtp_server_offers_and_round_trips_per_message() {
    offers_and_round_trips::<SmtpServer>((true, false, true), 1.6);
}
