//! Delivery checks: TLS and AUTH, a bulk run with Cc, Bcc and an
//! attachment over two sessions, refused recipients and reruns.

use std::collections::HashMap;
use std::time::Duration;

use mail_parser::MimeHeaders;

use super::job::{assert_copies, copies_after, pdf_bytes, row_addrs, Job, Tls, PASSWORD, USER};
use super::servers::Server;
use crate::support::report::ReportRow;

/// STARTTLS and implicit TLS, each with AUTH PLAIN and LOGIN: every
/// recipient gets one copy, stored under the account that logged in; a wrong
/// password is exit 77 and nothing is stored.
pub fn auth_over_both_tls_modes<S: Server>() {
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
pub fn hundred_messages_two_sessions<S: Server>() {
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
pub fn refusals_and_rerun<S: Server>() {
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
