//! The suppression list: an address in a `suppress` file is never rendered
//! nor sent to, by `run`, `check` or `--dry-run`, and its row is reported
//! `suppressed`; `run` adds recipients refused as nonexistent; `send` warns
//! (and with `--skip-suppressed` leaves them out).

use super::helpers::*;
use crate::support::fault::FaultServer;
use crate::support::report::row_of;

/// Rows 1..=4; rows 2 and 4 are suppressed (one by each file, in another
/// case), and their attachment does not exist: rendering them would fail.
fn suppressed_job(smtp: &str) -> Job {
    let csv = "email,name\n\
               a@example.test,A\n\
               b@example.test,B\n\
               c@example.test,C\n\
               d@example.test,D\n";
    let job = Job::with_csv(
        smtp,
        csv,
        "attachments: [ { path: \"files/{{ name }}.txt\" } ]\n\
         suppress: [ lists/suppressed.csv, lists/old.csv ]",
    );
    job.dir.write("files/A.txt", "for A");
    job.dir.write("files/C.txt", "for C");
    job.dir.write(
        "lists/suppressed.csv",
        "email,reason\nB@Example.TEST,hard\n",
    );
    job.dir
        .write("lists/old.csv", "name,email\nold,d@example.test\n");
    job
}

#[test]
fn a_run_reports_suppressed_rows_and_sends_them_nothing() {
    let server = FaultServer::start();
    let job = suppressed_job(&smtp_plain(server.port(), ""));
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for gone in ["b@example.test", "d@example.test"] {
        assert_eq!(rcpts_for(&server, gone), 0, "{gone} got a RCPT");
    }
    let got = deliveries(&server);
    assert_eq!(got.get("a@example.test"), Some(&1), "{got:?}");
    assert_eq!(got.get("c@example.test"), Some(&1), "{got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
    let rows = job.report();
    let status: Vec<(u64, &str)> = rows.iter().map(|r| (r.row, r.status.as_str())).collect();
    assert_eq!(
        status,
        [
            (1, "sent"),
            (2, "suppressed"),
            (3, "sent"),
            (4, "suppressed")
        ]
    );
    assert!(out.stderr.contains("2 suppressed"), "{}", out.stderr);
}

#[test]
fn an_address_suppressed_after_a_run_is_not_sent_by_the_rerun() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| (to == "c@example.test").then(|| "451 4.2.0 try later".into()))
        .start();
    let job = suppressed_job(&smtp_plain(server.port(), "max_attempts: 1"));
    let first = job.run(&[]);
    assert_eq!(first.code, 75, "{}", first.stderr);
    // The list learns about c before the rerun that would retry it.
    job.dir.write(
        "lists/suppressed.csv",
        "email,reason\nb@example.test,hard\nc@example.test,complaint\n",
    );
    let rcpts_before = rcpts_for(&server, "c@example.test");
    let again = job.run(&[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(rcpts_for(&server, "c@example.test"), rcpts_before);
    let rows = job.report();
    assert_eq!(row_of(&rows, "c@example.test").status, "suppressed");
    assert_eq!(row_of(&rows, "a@example.test").status, "sent");
}

#[test]
fn the_first_suppress_file_may_be_missing_the_others_may_not() {
    let server = FaultServer::start();
    let job = suppressed_job(&smtp_plain(server.port(), ""));
    std::fs::remove_file(job.dir.join("lists/suppressed.csv")).unwrap();
    std::fs::write(job.dir.join("files/B.txt"), "for B").unwrap();
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(rcpts_for(&server, "b@example.test"), 1);
    assert_eq!(rcpts_for(&server, "d@example.test"), 0);

    std::fs::remove_file(job.dir.join("lists/old.csv")).unwrap();
    let out = job.run(&["--restart"]);
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert!(out.stderr.contains("old.csv"), "{}", out.stderr);
}

#[test]
fn check_counts_suppressed_rows_without_rendering_them() {
    let job = suppressed_job("{ url: \"smtp+plain://127.0.0.1:9\" }");
    let out = Mailshot::new(job.dir.path())
        .args(["check", "job.yaml"])
        .limit(RUN_LIMIT)
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("2 messages render cleanly")
            && out
                .stderr
                .contains("2 suppressed addresses will not be sent to"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_dry_run_writes_no_message_for_a_suppressed_row() {
    let job = suppressed_job("{ url: \"smtp+plain://127.0.0.1:9\" }");
    let out = job.run(&["--dry-run", "--out", "preview"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut written: Vec<String> = std::fs::read_dir(job.dir.join("preview"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["1.eml", "3.eml"]);
    assert!(out.stderr.contains("2 suppressed"), "{}", out.stderr);
}

#[test]
fn a_suppression_file_without_an_email_column_stops_the_run() {
    let server = FaultServer::start();
    let job = suppressed_job(&smtp_plain(server.port(), ""));
    job.dir
        .write("lists/suppressed.csv", "address\nb@example.test\n");
    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("suppressed.csv"), "{}", out.stderr);
    assert!(deliveries(&server).is_empty());
}

#[test]
fn a_recipient_refused_as_nonexistent_is_added_to_the_first_file() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| match to {
            "b@example.test" => Some("550 5.1.1 <b@example.test>: User unknown".into()),
            "c@example.test" => Some("550 5.7.1 refused as spam".into()),
            _ => None,
        })
        .start();
    let csv = "email,name\na@example.test,A\nb@example.test,B\nc@example.test,C\n";
    let job = Job::with_csv(
        &smtp_plain(server.port(), ""),
        csv,
        "suppress: [ lists/new.csv, lists/old.csv ]",
    );
    job.dir.write("lists/old.csv", "email\n");
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("1 refused addresses that do not exist were added to"),
        "{}",
        out.stderr
    );
    let list = job.dir.read("lists/new.csv");
    let emails: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(emails, ["b@example.test"], "{list}");
    assert!(list.starts_with("email,reason,added\n"), "{list}");
    assert!(list.contains("User unknown"), "{list}");
    assert_eq!(job.dir.read("lists/old.csv"), "email\n");

    // A fresh run of the job leaves b out, and still tries c.
    let (b_before, c_before) = (
        rcpts_for(&server, "b@example.test"),
        rcpts_for(&server, "c@example.test"),
    );
    let again = job.run(&["--restart"]);
    assert_eq!(again.code, 67, "{}", again.stderr);
    assert_eq!(rcpts_for(&server, "b@example.test"), b_before);
    assert_eq!(rcpts_for(&server, "c@example.test"), c_before + 1);
    let rows = job.report();
    assert_eq!(row_of(&rows, "b@example.test").status, "suppressed");
    assert_eq!(row_of(&rows, "c@example.test").status, "rejected");
}

#[test]
fn without_a_suppress_key_nothing_is_written() {
    let server = FaultServer::builder()
        .rcpt_hook(|_, _| Some("550 5.1.1 User unknown".into()))
        .start();
    let job = Job::new(&smtp_plain(server.port(), ""), 2);
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert!(!out.stderr.contains("were added to"), "{}", out.stderr);
    // Only the job's own outputs (report, retry list) are new.
    let others: Vec<String> = std::fs::read_dir(job.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv") && !n.starts_with("job.") && n != "recipients.csv")
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

/// `mailshot send` to a suppressed and a live address, with a user config
/// whose `suppress` names the list.
fn send_to_both(server_port: u16, extra: &[&str]) -> (Output, crate::support::TestDir) {
    let config = crate::support::TestDir::new();
    config.write("mailshot/config.yaml", "suppress: gone.csv\n");
    config.write("mailshot/gone.csv", "email\nGone@Example.test\n");
    let url = format!("smtp+plain://127.0.0.1:{server_port}");
    let out = Mailshot::new(config.path())
        .args([
            "send",
            "--to",
            "gone@example.test",
            "--cc",
            "live@example.test",
        ])
        .args(["-s", "hello", "--from", "me@example.test", "--smtp", &url])
        .args(extra)
        .env("XDG_CONFIG_HOME", config.path())
        .stdin("body\n")
        .limit(RUN_LIMIT)
        .run();
    (out, config)
}

#[test]
fn send_warns_about_a_suppressed_recipient_and_sends_anyway() {
    let server = FaultServer::start();
    let (out, _config) = send_to_both(server.port(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: gone@example.test is in the suppression list; sending anyway"),
        "{}",
        out.stderr
    );
    assert_eq!(rcpts_for(&server, "gone@example.test"), 1);
    assert_eq!(rcpts_for(&server, "live@example.test"), 1);
}

#[test]
fn send_skip_suppressed_leaves_the_address_out() {
    let server = FaultServer::start();
    let (out, _config) = send_to_both(server.port(), &["--skip-suppressed"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("left out"), "{}", out.stderr);
    assert_eq!(rcpts_for(&server, "gone@example.test"), 0);
    assert_eq!(rcpts_for(&server, "live@example.test"), 1);
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    let text = String::from_utf8_lossy(&msgs[0].data);
    assert!(!text.contains("gone@example.test"), "{text}");
}

#[test]
fn the_json_events_carry_suppressed_rows_and_their_count() {
    let server = FaultServer::start();
    let job = suppressed_job(&smtp_plain(server.port(), ""));
    let out = job.run(&["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = json_summary(&out.stdout);
    assert_eq!(summary["suppressed"], 2, "{summary}");
    assert_eq!(summary["sent"], 2, "{summary}");
    assert_eq!(summary["exit_code"], 0, "{summary}");
    let suppressed_events = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["status"] == "suppressed")
        .count();
    assert_eq!(suppressed_events, 2, "{}", out.stdout);
}

#[test]
fn a_suppressed_cc_is_left_out_and_the_row_goes_to_the_others() {
    let server = FaultServer::start();
    let csv =
        "email,name,cc\na@example.test,A,boss@example.test\nb@example.test,B,ok@example.test\n";
    let job = Job::with_csv(
        &smtp_plain(server.port(), ""),
        csv,
        "cc: \"{{ cc }}\"\nsuppress: gone.csv",
    );
    job.dir.write("gone.csv", "email\nBOSS@example.test\n");
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(rcpts_for(&server, "boss@example.test"), 0);
    let got = deliveries(&server);
    for who in ["a@example.test", "b@example.test", "ok@example.test"] {
        assert_eq!(got.get(who), Some(&1), "{who}: {got:?}");
    }
    let first = &server.messages()[0];
    let text = String::from_utf8_lossy(&first.data);
    assert!(!text.to_lowercase().contains("boss@example.test"), "{text}");
    assert!(job.report().iter().all(|r| r.status == "sent"));
}
