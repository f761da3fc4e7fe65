//! The report: one row per recipient in input order (duplicates
//! included), spreadsheet formulas neutralised, and the closing summary.

use super::helpers::*;
use crate::support::fault::FaultServer;

#[test]
fn one_row_per_recipient_in_order_with_formulas_neutralised() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| {
            (to == "bounce@example.test")
                .then(|| "550 5.1.1 =HYPERLINK(\"http://evil.example\") unknown".to_owned())
        })
        .start();
    let csv = "email,name\n\
               a@example.test,A\n\
               =cmd@example.test,Formula\n\
               bounce@example.test,B\n\
               A@example.test,Dup of a\n\
               -minus@example.test,M\n\
               +plus@example.test,P\n";
    let job = Job::with_csv(&smtp_plain(server.port(), ""), csv, "");
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let rows = job.report();
    let got: Vec<(u64, &str, &str)> = rows
        .iter()
        .map(|r| (r.row, r.email.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "a@example.test", "sent"),
            (2, "'=cmd@example.test", "sent"),
            (3, "bounce@example.test", "rejected"),
            (4, "A@example.test", "skipped"),
            (5, "'-minus@example.test", "sent"),
            (6, "'+plus@example.test", "sent"),
        ]
    );
    assert!(rows[3].reply.contains("row 1"), "{:?}", rows[3]);
    assert!(
        rows[2].reply.starts_with('\'') || !rows[2].reply.starts_with('='),
        "{:?}",
        rows[2]
    );
    // A raw reader must never see a cell that starts a formula.
    let raw = job.dir.read("job.report.csv");
    for line in raw.lines() {
        for cell in line.split(',') {
            let c = cell.trim_start_matches('"');
            assert!(
                !c.starts_with(['=', '+', '-', '@']),
                "formula cell {cell:?} in {line:?}"
            );
        }
    }
    // The server got the real addresses, of course.
    let d = deliveries(&server);
    assert_eq!(d.get("=cmd@example.test"), Some(&1));
    assert_eq!(d.get("a@example.test"), Some(&1));
}

#[test]
fn summary_on_stderr() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| match to {
            "r2@example.test" => Some("550 5.1.1 Mailbox unavailable".to_owned()),
            "r3@example.test" => Some("553 5.7.1 Sender rejected by policy".to_owned()),
            _ => None,
        })
        .start();
    let job = Job::new(&smtp_plain(server.port(), ""), 6);
    let out = job.run(&["--report", "rep.csv"]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let e = &out.stderr;
    assert!(e.contains("4 sent"), "{e}");
    assert!(e.contains("2 rejected"), "{e}");
    assert!(e.contains("0 failed"), "{e}");
    assert!(
        e.contains("Mailbox unavailable") && e.contains("Sender rejected by policy"),
        "first failure replies: {e}"
    );
    assert!(
        e.contains("msg/s") && e.contains(" s"),
        "elapsed and rate: {e}"
    );
    assert!(e.contains("rep.csv"), "report path: {e}");
    assert!(e.contains("job.journal"), "journal path: {e}");
    assert_eq!(read_report(&job.dir.join("rep.csv")).len(), 6);
}
