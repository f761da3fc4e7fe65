//! Integration tests for the SMTP engine, end to end over real
//! sockets: the built `mailshot` runs jobs against the scripted fault server,
//! aiosmtpd (AUTH), a private Postfix and `mailshot capture`, and the tests
//! check what a user would see (exit status, report rows, delivered messages,
//! the trace file) and what the server saw (commands, round trips).
//!
//! Protocol references: RFC 5321 (SMTP), RFC 2920 (PIPELINING), RFC 3030
//! (CHUNKING), RFC 3207 (STARTTLS), RFC 4954 (AUTH), RFC 1870 (SIZE),
//! RFC 6531 (SMTPUTF8).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use mailshot::smtp::net::tls::generate_pki;

use crate::support::aiosmtpd::{AuthServer, TlsMode};
use crate::support::capture::Capture;
use crate::support::cmd::{mailshot, Output};
use crate::support::fault::{FaultHandle, FaultServer};
use crate::support::postfix::Postfix;
use crate::support::report::{read_report, row_of, ReportRow};
use crate::support::TestDir;

/// `mailshot ARGS` in `dir` with `env` added (isolated and bounded by the builder).
fn mailshot_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    mailshot(dir, args).envs(env).run()
}

/// A job folder: `job.yaml`, `recipients.csv`, `body.txt`.
struct Job {
    dir: TestDir,
}

impl Job {
    /// `smtp` is the YAML value of the `smtp:` key (empty: no section);
    /// `extra` more top-level YAML; `csv` the recipients (columns email,name).
    fn new(smtp: &str, extra: &str, csv: &str) -> Job {
        let dir = TestDir::new();
        let smtp_line = if smtp.is_empty() {
            String::new()
        } else {
            format!("smtp: {smtp}\n")
        };
        dir.write(
            "job.yaml",
            format!(
                "{smtp_line}from: \"Sender <sender@example.test>\"\n\
                 to: \"{{{{ name }}}} <{{{{ email }}}}>\"\n\
                 subject: \"Hello {{{{ name }}}}\"\n\
                 text: body.txt\n\
                 recipients: {{ file: recipients.csv }}\n{extra}"
            ),
        );
        dir.write("body.txt", "Dear {{ name }},\nthis is row {{ row }}.\n");
        dir.write("recipients.csv", csv);
        Job { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mailshot run job.yaml EXTRA...`
    fn run(&self, extra: &[&str]) -> Output {
        self.run_env(extra, &[])
    }

    fn run_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec!["run", "job.yaml", "--quiet"];
        args.extend_from_slice(extra);
        mailshot_in(self.path(), &args, env)
    }

    /// The report rows (`job.report.csv`).
    fn report(&self) -> Vec<ReportRow> {
        read_report(&self.dir.join("job.report.csv"))
    }
}

/// `n` recipients `user1@example.test`.. named `User 1`..
fn recipients(n: usize) -> String {
    let mut csv = String::from("email,name\n");
    for i in 1..=n {
        csv.push_str(&format!("user{i}@example.test,User {i}\n"));
    }
    csv
}

/// The smtp section for a plain-text fault server with small, bounded timings.
fn plain(fault: &FaultHandle) -> String {
    format!(
        "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 2s, retry_delay: 50ms, max_attempts: 3 }}",
        fault.port()
    )
}

/// How many accepted messages went to each envelope recipient.
fn deliveries(fault: &FaultHandle) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for m in fault.messages() {
        for r in m.rcpts {
            *n.entry(r).or_default() += 1;
        }
    }
    n
}

/// Parses a message with an independent parser.
fn parse(bytes: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(bytes)
        .expect("message parses")
}

/// The trace's lines without the `[session] ` prefix.
fn trace_lines(trace: &str) -> Vec<&str> {
    trace
        .lines()
        .map(
            |l| match l.strip_prefix('[').and_then(|r| r.split_once("] ")) {
                Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => rest,
                _ => l,
            },
        )
        .collect()
}

/// Every CR is followed by LF and every LF preceded by CR.
fn assert_crlf_only(bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
        if b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}");
        }
    }
}

// ------------------------------------------------------------ 1. replies

#[test]
fn garbage_greeting_ends_the_run_with_a_clear_protocol_error() {
    let fault = FaultServer::builder()
        .greeting("HELLO? this is not \u{1} SMTP")
        .start();
    let job = Job::new(&plain(&fault), "", &recipients(2));
    let out = job.run(&[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("protocol") || err.contains("malformed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{}", fault.port())),
        "{}",
        out.stderr
    );
    assert!(fault.messages().is_empty());
    assert!(!fault.commands().iter().any(|c| c.starts_with("MAIL")));
}

#[test]
fn over_long_reply_line_is_a_protocol_error_not_a_crash() {
    let long = format!("220 {}", "x".repeat(5000));
    let fault = FaultServer::builder().greeting(&long).start();
    let job = Job::new(&plain(&fault), "", &recipients(1));
    let out = job.run(&[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains("too long"), "{}", out.stderr);
    // The error quotes an excerpt, not the whole 5000-byte line.
    assert!(out.stderr.len() < 2000, "{}", out.stderr.len());
    assert!(fault.messages().is_empty());
}

// ------------------------------------------------------------ 2. session

fn starttls_smtp(port: u16, ca: Option<&Path>, extra: &str) -> String {
    let ca = ca
        .map(|p| format!(", ca_file: \"{}\"", p.display()))
        .unwrap_or_default();
    format!(
        "{{ url: \"smtp://127.0.0.1:{port}\", timeout: 3s, retry_delay: 50ms, max_attempts: 2{ca}{extra} }}"
    )
}

#[test]
fn starttls_then_a_fresh_ehlo_and_quit_at_the_end() {
    let pki = generate_pki(&[]);
    let fault = FaultServer::builder().starttls(Some(pki.clone())).start();
    let dir = TestDir::new();
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let job = Job::new(
        &starttls_smtp(fault.port(), Some(&ca), ""),
        "",
        &recipients(3),
    );
    let out = job.run(&["--trace", "trace.txt"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cmds = fault.commands();
    let verbs: Vec<&str> = cmds.iter().map(|c| c.split(' ').next().unwrap()).collect();
    // EHLO, STARTTLS, then a new EHLO before anything else.
    assert_eq!(&verbs[..3], ["EHLO", "STARTTLS", "EHLO"], "{cmds:?}");
    assert_eq!(verbs.iter().filter(|v| **v == "STARTTLS").count(), 1);
    assert_eq!(cmds.last().map(String::as_str), Some("QUIT"), "{cmds:?}");
    let msgs = fault.messages();
    assert_eq!(msgs.len(), 3);
    assert!(msgs.iter().all(|m| m.tls), "every message inside TLS");

    let trace = job.dir.read("trace.txt");
    let lines = trace_lines(&trace);
    let ehlos: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("C: EHLO"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(ehlos.len(), 2, "{trace}");
    let between = &lines[ehlos[0]..ehlos[1]];
    assert!(between.iter().any(|l| l.contains("C: STARTTLS")), "{trace}");
    assert!(
        between
            .iter()
            .any(|l| !l.starts_with("C:") && !l.starts_with("S:") && l.contains("TLS")),
        "TLS upgrade not noted between the EHLOs:\n{trace}"
    );
}

#[test]
fn starttls_response_injection_aborts_the_session_and_sends_nothing() {
    let pki = generate_pki(&[]);
    let fault = FaultServer::builder()
        .starttls(Some(pki.clone()))
        .inject_after_starttls("250 injected")
        .start();
    let dir = TestDir::new();
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let job = Job::new(
        &starttls_smtp(fault.port(), Some(&ca), ""),
        "",
        &recipients(2),
    );
    let out = job.run(&[]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.code == 69 || out.code == 75,
        "code {}: {}",
        out.code,
        out.stderr
    );
    assert!(fault.messages().is_empty());
    let cmds = fault.commands();
    assert!(
        !cmds.iter().any(|c| c.starts_with("MAIL")),
        "nothing may be sent after an injected STARTTLS reply: {cmds:?}"
    );
    for r in job.report() {
        assert_ne!(r["status"], "sent", "{r:?}");
    }
}

#[test]
fn certificate_is_verified_by_default_and_ca_file_makes_it_trusted() {
    let pki = generate_pki(&[]);
    let fault = FaultServer::builder().starttls(Some(pki.clone())).start();
    let job = Job::new(&starttls_smtp(fault.port(), None, ""), "", &recipients(2));
    let out = job.run(&[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("certificate") && err.contains("tls"),
        "{}",
        out.stderr
    );
    assert!(fault.messages().is_empty());
    assert!(!fault.commands().iter().any(|c| c.starts_with("MAIL")));

    let ca = job.dir.write("ca.pem", &pki.ca_pem);
    let job2 = Job::new(
        &starttls_smtp(fault.port(), Some(&ca), ""),
        "",
        &recipients(2),
    );
    let out = job2.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fault.messages().len(), 2);
}

#[test]
fn required_starttls_not_offered_refuses_to_continue() {
    let fault = FaultServer::builder().auth(true).start();
    let job = Job::new(
        &starttls_smtp(
            fault.port(),
            None,
            ", username: me@example.test, password_env: PW",
        ),
        "",
        &recipients(2),
    );
    let out = job.run_env(&[], &[("PW", "hunter2hunter2")]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains("STARTTLS"), "{}", out.stderr);
    let cmds = fault.commands();
    assert!(
        !cmds
            .iter()
            .any(|c| c.starts_with("MAIL") || c.starts_with("AUTH")),
        "{cmds:?}"
    );
    assert!(fault.messages().is_empty());
}

#[test]
fn auth_is_not_sent_in_plain_text_unless_allowed() {
    let fault = FaultServer::builder()
        .credentials("me", "pw-plain-1")
        .start();
    let base = format!(
        "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 2s, retry_delay: 50ms, max_attempts: 2, \
         username: me, password_env: PW",
        fault.port()
    );
    let job = Job::new(&format!("{base} }}"), "", &recipients(1));
    let out = job.run_env(&[], &[("PW", "pw-plain-1")]);
    // Refused while checking the job, before any connection.
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(
        out.stderr.contains("job.yaml") && out.stderr.contains("allow_plaintext_auth"),
        "{}",
        out.stderr
    );
    assert_eq!(fault.connections(), 0);
    assert!(fault.messages().is_empty());

    let job = Job::new(
        &format!("{base}, allow_plaintext_auth: true }}"),
        "",
        &recipients(1),
    );
    let out = job.run_env(&[], &[("PW", "pw-plain-1")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(fault.commands().iter().any(|c| c.starts_with("AUTH")));
    assert_eq!(fault.messages().len(), 1);
}

/// A job against aiosmtpd with `user`/`password` and `mech`.
fn aiosmtpd_job(server: &AuthServer, mode: TlsMode, user: &str, mech: &str) -> Job {
    let scheme = match mode {
        TlsMode::Starttls => "smtp",
        TlsMode::Implicit => "smtps",
    };
    Job::new(
        &format!(
            "{{ url: \"{scheme}://127.0.0.1:{}\", ca_file: \"{}\", username: \"{user}\", \
             password_env: PW, auth: {mech}, timeout: 5s, retry_delay: 50ms, max_attempts: 2 }}",
            server.port(),
            server.ca_file().display()
        ),
        "",
        &recipients(2),
    )
}

fn aiosmtpd_auth(mode: TlsMode) {
    let server = AuthServer::start(mode, "user@example.com", "s3cret-pass");
    for (n, mech) in ["plain", "login"].into_iter().enumerate() {
        let job = aiosmtpd_job(&server, mode, "user@example.com", mech);
        let out = job.run_env(&[], &[("PW", "s3cret-pass")]);
        assert_eq!(out.code, 0, "{mech}: {}", out.stderr);
        let msgs = server.wait_for_messages(2 * (n + 1), Duration::from_secs(10));
        assert_eq!(msgs.len(), 2 * (n + 1), "{mech}");
        let text = std::fs::read_to_string(msgs.last().unwrap()).unwrap();
        assert!(text.contains("X-Auth-User: user@example.com"), "{text}");
    }
    let job = aiosmtpd_job(&server, mode, "user@example.com", "plain");
    let out = job.run_env(&[], &[("PW", "wrong-pass")]);
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(
        out.stderr.contains("authentication failed") && out.stderr.contains("535"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-pass"));
    assert_eq!(
        server.messages().len(),
        4,
        "nothing sent with a wrong password"
    );
}

#[test]
fn aiosmtpd_auth_plain_and_login_over_starttls() {
    aiosmtpd_auth(TlsMode::Starttls);
}

#[test]
fn aiosmtpd_auth_plain_and_login_over_implicit_tls() {
    aiosmtpd_auth(TlsMode::Implicit);
}

// ------------------------------------------------------------ 3. pipelining

const DELAY: Duration = Duration::from_millis(50);

/// Sends `n` one-recipient messages through `fault` and checks each one
/// reached its own recipient with its own body.
fn send_batch(fault: &FaultHandle, n: usize) {
    let job = Job::new(&plain(fault), "", &recipients(n));
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let msgs = fault.messages();
    assert_eq!(msgs.len(), n);
    for m in &msgs {
        assert_eq!(m.rcpts.len(), 1);
        let i: usize = m.rcpts[0]
            .strip_prefix("user")
            .and_then(|r| r.strip_suffix("@example.test"))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("{:?}", m.rcpts));
        let parsed = parse(&m.data);
        assert_eq!(parsed.subject(), Some(format!("Hello User {i}").as_str()));
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains(&format!("this is row {i}.")), "{body}");
    }
    assert_eq!(deliveries(fault).len(), n, "every recipient exactly once");
    assert_eq!(fault.connections(), 1, "one reused session");
    assert!(
        fault.pipelining_violations().is_empty(),
        "{:?}",
        fault.pipelining_violations()
    );
}

#[test]
fn pipelined_data_costs_about_one_round_trip_per_message() {
    let fault = FaultServer::builder().reply_delay(DELAY).start();
    send_batch(&fault, 50);
    assert!(fault.messages().iter().all(|m| !m.bdat));
    let rt = fault.round_trips();
    // Lock-step would be about 4 per message (200); pipelined DATA needs
    // one for MAIL/RCPT/DATA and the body goes after 354: about 1-2 each.
    assert!(rt <= 2 * 50 + 5, "round trips {rt}");
    assert!(rt < 4 * 50 / 2, "round trips {rt}");
}

#[test]
fn pipelined_bdat_needs_far_fewer_round_trips_than_messages() {
    let fault = FaultServer::builder()
        .chunking(true)
        .reply_delay(DELAY)
        .start();
    send_batch(&fault, 50);
    assert!(fault.messages().iter().all(|m| m.bdat));
    let rt = fault.round_trips();
    assert!(rt < 25, "round trips {rt}");
}

#[test]
fn without_pipelining_the_engine_falls_back_to_lock_step() {
    let n = 20;
    let fault = FaultServer::builder()
        .pipelining(false)
        .reply_delay(DELAY)
        .start();
    // send_batch also checks no command went out before its reply.
    send_batch(&fault, n);
    let rt = fault.round_trips();
    assert!(rt >= 4 * n, "round trips {rt}");
}

// ------------------------------------------------------------ 4. per-recipient outcomes

#[test]
fn refused_rcpt_rejects_only_that_row_and_the_transaction_is_reset() {
    let fault = FaultServer::builder()
        .rcpt_hook(|addr, _| {
            addr.starts_with("user2@")
                .then(|| "550 5.1.1 No such user here".to_owned())
        })
        .start();
    let job = Job::new(&plain(&fault), "", &recipients(4));
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let report = job.report();
    let bad = row_of(&report, "user2@example.test");
    assert_eq!(bad["status"], "rejected");
    assert_eq!(bad["code"], "550");
    assert_eq!(bad["enhanced"], "5.1.1");
    assert!(bad["reply"].contains("No such user here"), "{bad:?}");
    assert_eq!(bad["attempts"], "1", "a 5xx is not retried");
    for i in [1, 3, 4] {
        assert_eq!(
            row_of(&report, &format!("user{i}@example.test"))["status"],
            "sent"
        );
    }
    let got = deliveries(&fault);
    assert_eq!(got.len(), 3);
    assert!(got.values().all(|&n| n == 1));
    assert!(!got.contains_key("user2@example.test"));
    // No RCPT accepted for row 2: its transaction is reset before the next.
    let cmds = fault.commands();
    let rcpt2 = cmds
        .iter()
        .position(|c| c.contains("user2@"))
        .expect("RCPT for user2");
    let next_mail = cmds[rcpt2..]
        .iter()
        .position(|c| c.starts_with("MAIL"))
        .map(|p| p + rcpt2)
        .expect("a MAIL after row 2");
    assert!(
        cmds[rcpt2..next_mail].iter().any(|c| c == "RSET"),
        "{cmds:?}"
    );
    assert_eq!(fault.connections(), 1);
}

#[test]
fn partially_refused_cc_fails_that_recipient_only() {
    let fault = FaultServer::builder()
        .rcpt_hook(|addr, _| {
            addr.starts_with("gone")
                .then(|| "550 5.1.1 Mailbox unavailable".to_owned())
        })
        .start();
    let job = Job::new(
        &plain(&fault),
        "cc: \"{{ cc1 }}, {{ cc2 }}\"\n",
        "email,name,cc1,cc2\n\
         user1@example.test,User 1,gone@example.test,cc1@example.test\n\
         user2@example.test,User 2,cc2@example.test,cc3@example.test\n",
    );
    let out = job.run(&[]);
    let got = deliveries(&fault);
    for a in [
        "user1@example.test",
        "cc1@example.test",
        "user2@example.test",
        "cc2@example.test",
        "cc3@example.test",
    ] {
        assert_eq!(got.get(a), Some(&1), "{a}: {got:?}");
    }
    assert!(!got.contains_key("gone@example.test"));
    assert_eq!(fault.messages().len(), 2);
    // Row 1 still went out; the refused Cc shows up in its report row.
    let report = job.report();
    assert_eq!(row_of(&report, "user2@example.test")["status"], "sent");
    let r1 = row_of(&report, "user1@example.test");
    assert!(
        r1["reply"].contains("gone@example.test") || r1["status"] == "rejected",
        "{r1:?} ({})",
        out.stderr
    );
}

#[test]
fn too_many_recipients_452_defers_the_rest_to_a_new_transaction() {
    let fault = FaultServer::builder()
        .rcpt_hook(|_, n| (n > 2).then(|| "452 4.5.3 Too many recipients".to_owned()))
        .start();
    let job = Job::new(
        &plain(&fault),
        "cc: \"{{ cc1 }}, {{ cc2 }}\"\nbcc: \"{{ bcc1 }}, {{ bcc2 }}\"\n",
        "email,name,cc1,cc2,bcc1,bcc2\n\
         user1@example.test,User 1,a1@example.test,a2@example.test,b1@example.test,b2@example.test\n\
         user2@example.test,User 2,c1@example.test,c2@example.test,d1@example.test,d2@example.test\n",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = deliveries(&fault);
    for a in [
        "user1@example.test",
        "a1@example.test",
        "a2@example.test",
        "b1@example.test",
        "b2@example.test",
        "user2@example.test",
        "c1@example.test",
        "c2@example.test",
        "d1@example.test",
        "d2@example.test",
    ] {
        assert_eq!(got.get(a), Some(&1), "{a}: {got:?}");
    }
    // Five recipients per row, two per transaction: three transactions each.
    let msgs = fault.messages();
    assert_eq!(msgs.len(), 6, "{msgs:?}");
    assert!(msgs.iter().all(|m| m.rcpts.len() <= 2));
    // Bcc never shows in the headers.
    for m in &msgs {
        assert!(!String::from_utf8_lossy(&m.data).contains("b1@example.test"));
    }
    for r in job.report() {
        assert_eq!(r["status"], "sent", "{r:?}");
    }
}

#[test]
fn reply_421_mid_batch_moves_the_rest_to_a_new_session() {
    let fault = FaultServer::builder()
        .close_after_messages(3, "421 4.7.0 Too many messages, come back later")
        .start();
    let job = Job::new(&plain(&fault), "", &recipients(8));
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = deliveries(&fault);
    assert_eq!(got.len(), 8);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert!(fault.connections() >= 3, "{}", fault.connections());
    for r in job.report() {
        assert_eq!(r["status"], "sent", "{r:?}");
    }
}

#[test]
fn drop_during_data_of_a_written_message_is_uncertain_until_resent_on_request() {
    // The whole (small) message leaves in one write before the server drops
    // the connection, so mailshot cannot know whether it arrived.
    let fault = FaultServer::builder().drop_during_data(2).start();
    let job = Job::new(&plain(&fault), "", &recipients(4));
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let report = job.report();
    assert_eq!(row_of(&report, "user2@example.test")["status"], "uncertain");
    let got = deliveries(&fault);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(fault.connections() >= 2, "the rest went on a new session");

    let out = job.run(&["--resend-uncertain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = deliveries(&fault);
    assert_eq!(got.len(), 4);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert_eq!(
        row_of(&job.report(), "user2@example.test")["status"],
        "sent"
    );
}

#[test]
fn drop_after_the_final_dot_is_uncertain_and_not_resent() {
    let fault = FaultServer::builder().drop_after_final_dot(2).start();
    let job = Job::new(&plain(&fault), "", &recipients(4));
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let lost = fault.unacknowledged();
    assert_eq!(lost.len(), 1);
    let lost_rcpt = lost[0].rcpts[0].clone();
    let report = job.report();
    assert_eq!(row_of(&report, &lost_rcpt)["status"], "uncertain");
    let sent = report.iter().filter(|r| r["status"] == "sent").count();
    assert_eq!(sent, 3, "{report:?}");
    let got = deliveries(&fault);
    assert_eq!(got.len(), 3);
    assert!(!got.contains_key(&lost_rcpt));

    // A rerun sends nothing: three are done, one stays uncertain.
    let before = fault.messages().len();
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(fault.messages().len(), before);
    assert_eq!(fault.unacknowledged().len(), 1);
    let report = job.report();
    assert_eq!(row_of(&report, &lost_rcpt)["status"], "uncertain");
    assert_eq!(
        report.iter().filter(|r| r["status"] == "sent").count(),
        3,
        "{report:?}"
    );
}

// ------------------------------------------------------------ 5. message data

#[test]
fn dot_stuffing_and_only_crlf_reach_the_wire() {
    let fault = FaultServer::start();
    let job = Job::new(&plain(&fault), "", &recipients(2));
    // A bare CR, a lone dot line and dot-led lines in the template, LF endings.
    job.dir.write(
        "body.txt",
        "Dear {{ name }},\n.leading dot\n.\n..two dots\nbare\rCR\nend\n",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let msgs = fault.messages();
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        assert!(!m.bdat);
        // The server saw a whole message: a lone "." would have ended it early.
        assert_crlf_only(&m.data);
        let parsed = parse(&m.data);
        let body = parsed.body_text(0).unwrap().replace("\r\n", "\n");
        assert!(body.contains("\n.leading dot\n.\n..two dots\n"), "{body:?}");
        assert!(body.contains("end"), "{body:?}");
    }
}

#[test]
fn smtputf8_address_is_rejected_when_the_server_does_not_offer_it() {
    let csv = "email,name\nuser1@example.test,User 1\n用户@例子.test,User 2\n";
    let fault = FaultServer::builder().smtputf8(false).start();
    let job = Job::new(&plain(&fault), "", csv);
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let report = job.report();
    let r = row_of(&report, "用户@例子.test");
    assert_eq!(r["status"], "rejected", "{r:?}");
    assert!(r["reply"].contains("SMTPUTF8"), "{r:?}");
    assert_eq!(row_of(&report, "user1@example.test")["status"], "sent");
    assert!(!fault
        .commands()
        .iter()
        .any(|c| c.contains("SMTPUTF8") || c.contains("用户")));

    // Offered, it is used for that message (and only that one).
    let fault = FaultServer::start();
    let job = Job::new(&plain(&fault), "", csv);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mails: Vec<String> = fault
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL"))
        .collect();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails.iter().filter(|c| c.contains("SMTPUTF8")).count(),
        1,
        "{mails:?}"
    );
    assert_eq!(deliveries(&fault).get("用户@例子.test"), Some(&1));
}

#[test]
fn size_limit_is_checked_before_sending() {
    let fault = FaultServer::builder().size(Some(4000)).start();
    let job = Job::new(
        &plain(&fault),
        "",
        &format!(
            "email,name\nsmall@example.test,Small\nbig@example.test,{}\n",
            "B".repeat(6000)
        ),
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let report = job.report();
    let big = row_of(&report, "big@example.test");
    assert_eq!(big["status"], "rejected", "{big:?}");
    assert!(big["reply"].to_lowercase().contains("size"), "{big:?}");
    assert_eq!(row_of(&report, "small@example.test")["status"], "sent");
    assert!(
        !fault.commands().iter().any(|c| c.contains("big@")),
        "nothing of the big message may be transmitted: {:?}",
        fault.commands()
    );
    let mail = fault
        .commands()
        .into_iter()
        .find(|c| c.starts_with("MAIL"))
        .unwrap();
    assert!(mail.contains("SIZE="), "{mail}");
}

// ------------------------------------------------------------ 6. timeouts

#[test]
fn a_stalled_server_cannot_hang_the_run() {
    // EHLO, MAIL, RCPT, DATA of the first message are answered; then silence.
    let fault = FaultServer::builder().stall_after(4).start();
    let job = Job::new(
        &format!(
            "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 1s, data_timeout: 1s, \
             retry_delay: 50ms, max_attempts: 1 }}",
            fault.port()
        ),
        "",
        &recipients(3),
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
    let report = job.report();
    assert_eq!(report.len(), 3);
    assert_eq!(row_of(&report, "user1@example.test")["status"], "sent");
    for i in [2, 3] {
        let r = row_of(&report, &format!("user{i}@example.test"));
        // Not answered before DATA: failed (retryable), never "sent".
        assert_eq!(r["status"], "failed", "{r:?}");
    }
    assert_eq!(fault.messages().len(), 1);
}

// ------------------------------------------------------------ 7. trace

#[test]
fn trace_redacts_auth_and_escapes_control_characters() {
    let user = "tracer@example.test";
    let password = "Tr4ce-S3cret-Pa55";
    let pki = generate_pki(&[]);
    let fault = FaultServer::builder()
        .greeting("220 fault.test \u{1b}[31mred\u{1b}[0m ESMTP")
        .starttls(Some(pki.clone()))
        .credentials(user, password)
        .start();
    let dir = TestDir::new();
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let job = Job::new(
        &starttls_smtp(
            fault.port(),
            Some(&ca),
            &format!(", username: \"{user}\", password_env: PW, auth: login"),
        ),
        "",
        &recipients(2),
    );
    let out = job.run_env(&["--trace", "trace.txt"], &[("PW", password)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fault.messages().len(), 2);
    let trace = job.dir.read("trace.txt");
    let lines = trace_lines(&trace);
    assert!(
        lines.iter().any(|l| l.starts_with("C: MAIL FROM:")),
        "{trace}"
    );
    assert!(lines.iter().any(|l| l.starts_with("S: 250")), "{trace}");
    assert!(
        lines.iter().any(|l| l.starts_with("C: AUTH LOGIN")),
        "{trace}"
    );
    // Every line the client sent after a 334 is hidden.
    let mut after_334 = 0;
    for w in lines.windows(2) {
        if w[0].starts_with("S: 334") {
            assert_eq!(w[1].trim_end(), "C: ***", "{trace}");
            after_334 += 1;
        }
    }
    assert_eq!(after_334, 2, "{trace}");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let report = std::fs::read_to_string(job.dir.join("job.report.csv")).unwrap();
    for text in [&trace, &report, &out.stderr, &out.stdout] {
        assert!(!text.contains(password));
        assert!(!text.contains(&b64(password)));
        assert!(!text.contains(&b64(user)));
    }
    // The ESC bytes are shown harmlessly, and the text around them survives.
    assert!(!trace.contains('\u{1b}'), "{trace:?}");
    let greeting = lines.iter().find(|l| l.starts_with("S: 220")).unwrap();
    assert!(greeting.contains("red"), "{greeting}");
}

#[test]
fn trace_auth_plain_initial_response_is_hidden() {
    let password = "Plain-S3cret-77";
    let fault = FaultServer::builder()
        .credentials("plainer", password)
        .start();
    let job = Job::new(
        &format!(
            "{{ url: \"smtp+plain://127.0.0.1:{}\", username: plainer, password_env: PW, \
             auth: plain, allow_plaintext_auth: true, timeout: 2s, max_attempts: 1 }}",
            fault.port()
        ),
        "",
        &recipients(1),
    );
    let out = job.run_env(&["--trace", "-"], &[("PW", password)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let auth: Vec<&str> = trace_lines(&out.stderr)
        .into_iter()
        .filter(|l| l.starts_with("C: AUTH"))
        .collect();
    assert_eq!(auth.len(), 1, "{}", out.stderr);
    assert!(auth[0].contains("***"), "{}", auth[0]);
    let payload =
        base64::engine::general_purpose::STANDARD.encode(format!("\0plainer\0{password}"));
    assert!(!out.stderr.contains(&payload));
    assert!(!out.stderr.contains(password));
}

// ------------------------------------------------------------ 8. mailshot capture

#[test]
fn capture_subprocess_receives_a_job_over_verified_starttls() {
    let capture = Capture::start(&[]);
    let (cap_dir, port) = (&capture.dir, capture.port);
    let ca = cap_dir.join("capture-ca.pem");
    assert!(ca.is_file(), "capture-ca.pem written");
    let job = Job::new(&starttls_smtp(port, Some(&ca), ""), "", &recipients(3));
    let out = job.run(&["--trace", "trace.txt"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let trace = job.dir.read("trace.txt");
    assert!(trace.contains("C: STARTTLS"), "{trace}");
    let files = cap_dir.files_with_suffix("", ".eml");
    assert_eq!(files.len(), 3, "{files:?}");
    let mut subjects: Vec<String> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            parse(&bytes).subject().unwrap().to_owned()
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["Hello User 1", "Hello User 2", "Hello User 3"]);

    // `--smtp URL` sends there too (the capture CA given in the user config).
    let job = Job::new("", "", &recipients(1));
    job.dir.write(
        "xdg/mailshot/config.yaml",
        format!(
            "smtp:\n  url: \"smtp://127.0.0.1:{port}\"\n  ca_file: \"{}\"\n",
            ca.display()
        ),
    );
    let out = job.run(&["--smtp", &format!("smtp://127.0.0.1:{port}")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(cap_dir.files_with_suffix("", ".eml").len(), 4);
}

#[test]
fn job_without_smtp_section_delivers_into_outbox() {
    let job = Job::new("", "", &recipients(3));
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let files = job.dir.files_with_suffix("outbox", ".eml");
    assert_eq!(files.len(), 3, "{files:?}");
    let mut to: Vec<String> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            let m = parse(&bytes);
            m.to()
                .unwrap()
                .first()
                .unwrap()
                .address()
                .unwrap()
                .to_owned()
        })
        .collect();
    to.sort();
    assert_eq!(
        to,
        [
            "user1@example.test",
            "user2@example.test",
            "user3@example.test"
        ]
    );
}

// ------------------------------------------------------------ 9. real servers

/// Copies `samples/NAME` and the shared `templates/` into `dir`, adding an
/// `smtp:` section for Postfix; returns the copied job path.
fn copy_sample(dir: &TestDir, name: &str, smtp: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    copy_tree(&root.join("templates"), &dir.join("templates"));
    let to = dir.join("samples").join(name);
    copy_tree(&root.join("samples").join(name), &to);
    let job = to.join("job.yaml");
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, format!("{text}\nsmtp: {smtp}\n")).unwrap();
    job
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        // Leftovers of a local run of the sample are not part of it.
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "outbox" || name.contains(".journal") || name.ends_with(".report.csv") {
            continue;
        }
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn postfix_receives_every_samples_messages() {
    let pf = Postfix::start();
    let dir = TestDir::new();
    let smtp = format!(
        "{{ url: \"smtp://127.0.0.1:{}\", ca_file: \"{}\", timeout: 10s, retry_delay: 50ms }}",
        pf.port(),
        pf.ca_file().display()
    );
    // Envelope recipients per sample: merge Cc's two account managers.
    let mut expected = 0;
    for (name, deliveries) in [("newsletter", 7), ("notify", 3), ("merge", 6)] {
        let job = copy_sample(&dir, name, &smtp);
        let out = mailshot_in(
            dir.path(),
            &[
                "run",
                job.to_str().unwrap(),
                "--quiet",
                "--trace",
                "trace.txt",
            ],
            &[],
        );
        assert_eq!(out.code, 0, "{name}: {}\n{}", out.stderr, pf.log());
        let trace = dir.read("trace.txt");
        assert!(trace.contains("C: STARTTLS"), "{name}: {trace}");
        assert!(
            trace.contains("C: BDAT"),
            "Postfix offers CHUNKING: {trace}"
        );
        expected += deliveries;
        let files = pf.wait_for_messages(expected, Duration::from_secs(30));
        assert_eq!(files.len(), expected, "{name}; log:\n{}", pf.log());
    }
    assert!(pf.log().contains("TLS connection established"));

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut by_sample: HashMap<&str, usize> = HashMap::new();
    for f in pf.messages() {
        let bytes = std::fs::read(&f).unwrap();
        let m = parse(&bytes);
        let subject = m.subject().unwrap_or_default().to_owned();
        let rcpt = m
            .header_raw("Delivered-To")
            .unwrap_or_default()
            .trim()
            .to_owned();
        assert!(!rcpt.is_empty(), "{}", String::from_utf8_lossy(&bytes));
        if subject.contains("statement") {
            *by_sample.entry("merge").or_default() += 1;
            let att = m.attachment(0).expect("statement attached");
            let id = ["1001", "1002", "1003", "1004"]
                .into_iter()
                .find(|id| {
                    std::fs::read(root.join(format!("samples/merge/reports/{id}.pdf"))).unwrap()
                        == att.contents()
                })
                .unwrap_or_else(|| panic!("attachment bytes match no report ({subject})"));
            let row: HashMap<&str, &str> = [
                ("1001", "Blue Harbor Shipping"),
                ("1002", "Kestrel Labs"),
                ("1003", "东海贸易有限公司"),
                ("1004", "Quill & Ink"),
            ]
            .into_iter()
            .collect();
            assert!(subject.contains(row[id]), "{subject} vs {id}");
        } else if subject.starts_with("[mailshot]") {
            *by_sample.entry("notify").or_default() += 1;
            assert!(rcpt.ends_with("@example.org"), "{rcpt}");
        } else {
            *by_sample.entry("newsletter").or_default() += 1;
            assert!(
                subject.contains("Tea Letter") || subject.contains("茶讯"),
                "{subject}"
            );
            let text = m.body_text(0).unwrap();
            assert!(!text.is_empty());
        }
    }
    assert_eq!(by_sample.get("newsletter"), Some(&7), "{by_sample:?}");
    assert_eq!(by_sample.get("notify"), Some(&3), "{by_sample:?}");
    assert_eq!(by_sample.get("merge"), Some(&6), "{by_sample:?}");
}
