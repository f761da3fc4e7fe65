//! `JOB.retry.csv`: the original rows (header first) of every recipient
//! left `failed` or `uncertain`, and a job pointed at it sends exactly those.

use std::collections::BTreeSet;

use super::helpers::*;
use crate::support::fault::FaultServer;

#[test]
fn retry_file_holds_failed_and_uncertain_rows_and_a_job_on_it_sends_exactly_those() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| match to {
            "r2@example.test" => Some("451 4.3.0 try again later".to_owned()),
            "r4@example.test" => Some("550 5.1.1 no such user".to_owned()),
            _ => None,
        })
        // The second message's reply never comes: its outcome is unknown.
        .drop_after_final_dot(2)
        .start();
    let csv = "email,name\n\
               r1@example.test,\"One, first\"\n\
               r2@example.test,Two\n\
               r3@example.test,Three\n\
               r4@example.test,Four\n\
               r5@example.test,Five\n\
               r6@example.test,\"Six \"\"quoted\"\"\"\n";
    let job = Job::with_csv(&smtp_plain(server.port(), "sessions: 1"), csv, "");
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);

    let rows = job.report();
    let left: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r.status == "failed" || r.status == "uncertain")
        .map(|r| r.row)
        .collect();
    assert_eq!(by_email(&rows)["r2@example.test"].status, "failed");
    assert_eq!(by_email(&rows)["r4@example.test"].status, "rejected");
    let uncertain: Vec<u64> = rows
        .iter()
        .filter(|r| r.status == "uncertain")
        .map(|r| r.row)
        .collect();
    assert_eq!(uncertain.len(), 1, "{rows:?}");

    // The header and exactly the rows left open, as the original CSV has them.
    let lines: Vec<&str> = csv.lines().collect();
    let mut want = format!("{}\n", lines[0]);
    for row in &left {
        want.push_str(lines[*row as usize]);
        want.push('\n');
    }
    assert_eq!(job.dir.read("job.retry.csv"), want);

    // A job whose recipients file is the retry file sends exactly those.
    let relay = FaultServer::builder().start();
    job.dir.write(
        "again.yaml",
        format!(
            "smtp: {}\n\
             from: \"Sender <sender@example.test>\"\n\
             subject: \"Hello {{{{ name }}}}\"\n\
             text: body.txt\n\
             recipients: {{ file: job.retry.csv }}\n",
            smtp_plain(relay.port(), "")
        ),
    );
    let again = Mailshot::new(job.dir.path())
        .args(["run", "again.yaml"])
        .env_remove("XDG_CONFIG_HOME")
        .limit(RUN_LIMIT)
        .run();
    assert_eq!(again.code, 0, "{}", again.stderr);
    let got: BTreeSet<String> = deliveries(&relay).into_keys().collect();
    let want: BTreeSet<String> = left.iter().map(|&r| addr(r as usize)).collect();
    assert_eq!(got, want);
    assert!(deliveries(&relay).values().all(|&n| n == 1));
    // Nothing is left after that run: its own retry file is the header alone.
    assert_eq!(job.dir.read("again.retry.csv"), "email,name\n");
}

#[test]
fn a_finished_run_replaces_a_stale_retry_file_with_the_header_alone() {
    let server = FaultServer::builder().start();
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    job.dir
        .write("job.retry.csv", "email,name\nold@example.test,Old\n");
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 3);
    assert_eq!(job.dir.read("job.retry.csv"), "email,name\n");
}
