//! The report says what the server did: end-to-end runs of the built
//! `mailshot` against the scripted fault server for replies that do not fit
//! their commands, AUTH answers that are not a login, servers that trickle,
//! echo secrets, refuse commands pipelined after the dot, drop the
//! connection mid-message, or send endless replies.
//!
//! References: RFC 5321 §4.3.2 (replies per command) and §4.5.3.2
//! (timeouts), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING), RFC 4954 (AUTH).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;

use crate::support::cmd::{mailshot, Output};
use crate::support::fault::{FaultHandle, FaultServer};
use crate::support::report::{read_report, row_of, ReportRow};
use crate::support::TestDir;

/// A job folder with `job.yaml`, `recipients.csv` (columns email,name) and a body.
struct Job {
    dir: TestDir,
}

impl Job {
    fn new(smtp: &str, n: usize) -> Job {
        let dir = TestDir::new();
        dir.write(
            "job.yaml",
            format!(
                "smtp: {smtp}\nfrom: \"Sender <sender@example.test>\"\n\
                 to: \"{{{{ name }}}} <{{{{ email }}}}>\"\nsubject: \"Hello {{{{ name }}}}\"\n\
                 text: body.txt\nrecipients: {{ file: recipients.csv }}\n"
            ),
        );
        dir.write("body.txt", "Dear {{ name }},\nthis is row {{ row }}.\n");
        let mut csv = String::from("email,name\n");
        for i in 1..=n {
            csv.push_str(&format!("user{i}@example.test,User {i}\n"));
        }
        dir.write("recipients.csv", csv);
        Job { dir }
    }

    /// `mailshot run job.yaml --quiet EXTRA...` with `env` (bounded by the builder).
    fn run(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        mailshot(self.dir.path(), ["run", "job.yaml", "--quiet"])
            .args(extra)
            .envs(env)
            .run()
    }

    /// The report rows.
    fn report(&self) -> Vec<ReportRow> {
        read_report(&self.dir.join("job.report.csv"))
    }
}

/// The smtp section for a plain-text fault server; `extra` adds keys.
fn smtp(fault: &FaultHandle, extra: &str) -> String {
    format!(
        "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 2s, retry_delay: 50ms{extra} }}",
        fault.port()
    )
}

/// Accepted copies per envelope recipient.
fn deliveries(fault: &FaultHandle) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for m in fault.messages() {
        for r in m.rcpts {
            *n.entry(r).or_default() += 1;
        }
    }
    n
}

/// Every row reported `sent` was accepted by the server, exactly once.
fn sent_means_delivered(job: &Job, fault: &FaultHandle) {
    let got = deliveries(fault);
    for r in job.report() {
        if r["status"] == "sent" {
            assert_eq!(got.get(&r["email"]), Some(&1), "{r:?} / {got:?}");
        }
    }
}

// ------------------------------------------------------------ only a delivery is sent

#[test]
fn a_250_to_data_is_never_reported_sent() {
    // The first connection answers DATA with 250: no body was taken. The
    // message must go again on a new session, and only then be `sent`.
    let fault = FaultServer::builder().data_reply("250 2.0.0 Ok").start();
    let job = Job::new(&smtp(&fault, ", max_attempts: 3"), 2);
    let out = job.run(&[], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = job.report();
    assert_eq!(report.len(), 2);
    assert!(report.iter().all(|r| r["status"] == "sent"), "{report:?}");
    sent_means_delivered(&job, &fault);
    assert!(fault.connections() >= 2);
}

#[test]
fn an_extra_reply_in_a_pipelined_group_shifts_no_outcome() {
    let fault = FaultServer::builder()
        .extra_reply_after_first_mail()
        .rcpt_hook(|to, _| {
            to.starts_with("user2@")
                .then(|| format!("550 5.1.1 <{to}> unknown user"))
        })
        .start();
    let job = Job::new(&smtp(&fault, ", max_attempts: 3"), 4);
    let out = job.run(&["--trace", "trace.txt"], &[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let report = job.report();
    let r2 = row_of(&report, "user2@example.test");
    assert_eq!(r2["status"], "rejected", "{r2:?}");
    assert!(r2["reply"].contains("user2@"), "{r2:?}");
    for i in [1, 3, 4] {
        let r = row_of(&report, &format!("user{i}@example.test"));
        assert_eq!(r["status"], "sent", "{r:?}");
        assert!(!r["reply"].contains("user2@"), "{r:?}");
    }
    sent_means_delivered(&job, &fault);
    assert_eq!(deliveries(&fault).len(), 3);
}

#[test]
fn a_missing_reply_in_a_pipelined_group_shifts_no_outcome() {
    for chunking in [false, true] {
        let fault = FaultServer::builder()
            .chunking(chunking)
            .skip_first_rcpt_reply()
            .rcpt_hook(|to, _| {
                to.starts_with("user2@")
                    .then(|| format!("550 5.1.1 <{to}> unknown user"))
            })
            .start();
        let job = Job::new(&smtp(&fault, ", max_attempts: 3"), 3);
        let out = job.run(&[], &[]);
        let report = job.report();
        let r2 = row_of(&report, "user2@example.test");
        assert_ne!(r2["status"], "sent", "chunking {chunking}: {r2:?}");
        for r in &report {
            if r["status"] == "rejected" {
                assert!(
                    r["reply"].contains(&r["email"]),
                    "chunking {chunking}: {r:?}"
                );
            }
        }
        sent_means_delivered(&job, &fault);
        assert_ne!(out.code, 0, "chunking {chunking}: {}", out.stderr);
    }
}

#[test]
fn auth_answered_with_anything_but_235_is_not_a_login() {
    for answer in ["250 2.0.0 OK", "334 UGFzc3dvcmQ6", "220 2.0.0 fine"] {
        let fault = FaultServer::builder().auth_reply(answer).start();
        let job = Job::new(
            &smtp(
                &fault,
                ", username: u, password_env: PW, auth: plain, allow_plaintext_auth: true",
            ),
            2,
        );
        let out = job.run(&[], &[("PW", "pw-12345")]);
        assert_eq!(out.code, 77, "{answer}: {}", out.stderr);
        let cmds = fault.commands();
        assert!(
            !cmds.iter().any(|c| c.starts_with("MAIL")),
            "{answer}: {cmds:?}"
        );
        assert!(fault.messages().is_empty());
    }
}

// ------------------------------------------------------------ timeouts

#[test]
fn a_trickling_server_is_timed_out_per_whole_reply() {
    // The EHLO reply comes one byte every 300 ms: each byte is well within
    // the 2 s timeout, the whole reply is not.
    let fault = times_out_trickling_from(1);
    assert!(fault.messages().is_empty());
}

#[test]
fn a_trickling_greeting_is_timed_out_too() {
    times_out_trickling_from(0);
}

/// Runs one message against a server that trickles every reply from reply
/// `from` on (a byte every 300 ms): the run must give up on the whole reply
/// within the 2 s timeout and exit 69. Returns the server.
fn times_out_trickling_from(from: usize) -> FaultHandle {
    let fault = FaultServer::builder()
        .trickle_from(from, Duration::from_millis(300))
        .start();
    let job = Job::new(&smtp(&fault, ", max_attempts: 1"), 1);
    let out = job.run(&[], &[]);
    assert!(out.elapsed < Duration::from_secs(8), "{:?}", out.elapsed);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains("within 2s"), "{}", out.stderr);
    fault
}

#[test]
fn a_slow_end_of_data_reply_within_data_timeout_is_waited_for() {
    let fault = FaultServer::builder()
        .data_end_delay(Duration::from_millis(2500))
        .start();
    let job = Job::new(
        &format!(
            "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 1s, data_timeout: 20s, max_attempts: 1 }}",
            fault.port()
        ),
        2,
    );
    let out = job.run(&[], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(deliveries(&fault).len(), 2);
    assert!(job.report().iter().all(|r| r["status"] == "sent"));
}

#[test]
fn a_password_command_that_hangs_is_stopped() {
    let fault = FaultServer::builder().auth(true).start();
    let job = Job::new(
        &smtp(
            &fault,
            ", username: u, password_command: \"sleep 100\", allow_plaintext_auth: true",
        ),
        1,
    );
    let out = job.run(&[], &[]);
    assert!(out.elapsed < Duration::from_secs(15), "{:?}", out.elapsed);
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(out.stderr.contains("password_command"), "{}", out.stderr);
    assert!(fault.commands().is_empty(), "{:?}", fault.commands());
}

// ------------------------------------------------------------ secrets

fn echoed_secret_is_redacted(mech: &str) {
    let user = "echo@example.test";
    let password = "Ech0-S3cret-Value-91";
    let fault = FaultServer::builder()
        .echo_auth()
        .xoauth2(mech == "xoauth2")
        .start();
    let job = Job::new(
        &smtp(
            &fault,
            &format!(
                ", username: \"{user}\", password_env: PW, auth: {mech}, allow_plaintext_auth: true"
            ),
        ),
        2,
    );
    let out = job.run(&["--trace", "trace.txt", "--json"], &[("PW", password)]);
    assert_eq!(out.code, 77, "{mech}: {}", out.stderr);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let forms = [
        password.to_string(),
        b64(password),
        b64(&format!("\0{user}\0{password}")),
        b64(&format!("user={user}\x01auth=Bearer {password}\x01\x01")),
        b64(user),
    ];
    let trace = job.dir.read("trace.txt");
    assert!(
        trace.contains("S: 535"),
        "{mech}: the echo reached the trace:\n{trace}"
    );
    let report = std::fs::read_to_string(job.dir.join("job.report.csv")).unwrap_or_default();
    for (what, text) in [
        ("trace", &trace),
        ("stderr", &out.stderr),
        ("json", &out.stdout),
        ("report", &report),
    ] {
        for form in &forms {
            let form = form.trim_end_matches('=');
            assert!(
                !text.contains(form),
                "{mech}: {what} shows {form:?}:\n{text}"
            );
        }
    }
    assert!(out.stderr.contains("***"), "{mech}: {}", out.stderr);
}

#[test]
fn an_echoed_plain_payload_is_redacted_everywhere() {
    echoed_secret_is_redacted("plain");
}

#[test]
fn echoed_login_pieces_are_redacted_everywhere() {
    echoed_secret_is_redacted("login");
}

#[test]
fn an_echoed_xoauth2_token_is_redacted_everywhere() {
    echoed_secret_is_redacted("xoauth2");
}

// ------------------------------------------------------------ pipelining after the dot

#[test]
fn a_server_refusing_commands_after_the_dot_is_learnt_once() {
    refusing_after_the_dot(FaultServer::builder().refuse_pipelined_after_dot().start());
}

#[test]
fn a_server_forgetting_a_mail_sent_behind_the_dot_is_learnt_once() {
    refusing_after_the_dot(FaultServer::builder().forget_mail_after_dot().start());
}

fn refusing_after_the_dot(fault: FaultHandle) {
    let n = 12;
    // One attempt each: a refusal caused by how mailshot wrote the commands
    // (behind a dot) costs the message no try of its own.
    let job = Job::new(&smtp(&fault, ", max_attempts: 1"), n);
    let out = job.run(&["--sessions", "2"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = deliveries(&fault);
    assert_eq!(got.len(), n, "{got:?}");
    assert!(got.values().all(|&c| c == 1), "duplicates: {got:?}");
    let report = job.report();
    assert!(report.iter().all(|r| r["status"] == "sent"), "{report:?}");
    assert!(report.iter().all(|r| r["attempts"] == "1"), "{report:?}");
    // At most one refused group per session before every session knows.
    let refused = fault.pipelining_refusals();
    assert!(refused <= 2 * 3, "{refused} commands refused");
    // Two round trips a message (354, then the dot's reply), plus setup.
    let trips = fault.round_trips();
    assert!(trips <= 2 * n + 8, "{trips} round trips for {n} messages");
}

// ------------------------------------------------------------ lost connections

#[test]
fn a_connection_lost_mid_data_and_mid_bdat_end_alike() {
    for big in [false, true] {
        lost_mid_message_alike(big);
    }
}

fn lost_mid_message_alike(big: bool) {
    let mut seen = Vec::new();
    for chunking in [false, true] {
        let fault = FaultServer::builder()
            .chunking(chunking)
            .drop_during_data(2)
            .start();
        let job = Job::new(&smtp(&fault, ", max_attempts: 3"), 4);
        if big {
            // Far more than the socket buffers: the server drops the
            // connection while the client is still writing the message.
            let line = format!("{{{{ name }}}} {}\n", "z".repeat(70));
            job.dir.write("body.txt", line.repeat(120_000));
        }
        let out = job.run(&[], &[]);
        let report = job.report();
        let status = row_of(&report, "user2@example.test")["status"].clone();
        seen.push((out.code, status, out.stderr));
    }
    assert_eq!(
        (seen[0].0, &seen[0].1),
        (seen[1].0, &seen[1].1),
        "DATA: {seen:?}"
    );
    // A big message's end never left, so it is sent again; a small one was
    // written whole before the server died, so its fate is unknown.
    let expected = if big { (0, "sent") } else { (75, "uncertain") };
    assert_eq!((seen[0].0, seen[0].1.as_str()), expected, "{seen:?}");
}

// ------------------------------------------------------------ bounded replies

#[test]
fn an_oversized_multi_line_reply_is_cut_off() {
    // 200 lines of 1000 bytes: each line is fine, the reply as a whole is not.
    let mut greeting = String::new();
    for _ in 0..200 {
        greeting.push_str(&format!("220-{}\r\n", "g".repeat(1000)));
    }
    greeting.push_str("220 fault.test ESMTP");
    let fault = FaultServer::builder().greeting(&greeting).start();
    let job = Job::new(&smtp(&fault, ""), 1);
    let out = job.run(&[], &[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains("longer than"), "{}", out.stderr);
    assert!(fault.messages().is_empty());
}

#[test]
fn an_endless_reply_is_cut_off_in_bounded_memory() {
    let fault = FaultServer::builder().endless_ehlo_reply().start();
    let job = Job::new(&smtp(&fault, ", max_attempts: 1"), 1);
    let out = job.run(&[], &[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains("longer than"), "{}", out.stderr);
    // What the client took before it left: the reader's limit plus the
    // socket buffers, far below what the server would have sent.
    let taken = fault.endless_bytes();
    assert!(taken < 64 << 20, "{taken} bytes taken");
    assert!(out.elapsed < Duration::from_secs(30), "{:?}", out.elapsed);
}

// ------------------------------------------------------------ multi-line replies

#[test]
fn multi_line_replies_read_as_one_line_without_stray_spaces() {
    let fault = FaultServer::builder()
        .rcpt_hook(|to, _| {
            to.starts_with("user1@")
                .then(|| format!("550-\r\n550-5.1.1 <{to}> unknown\r\n550 5.1.1 see the admin"))
        })
        .start();
    let job = Job::new(&smtp(&fault, ", max_attempts: 1"), 2);
    let out = job.run(&[], &[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let report = job.report();
    let r1 = row_of(&report, "user1@example.test");
    assert_eq!(r1["status"], "rejected", "{r1:?}");
    assert_eq!(
        r1["reply"], "<user1@example.test> unknown see the admin",
        "{r1:?}"
    );
}
