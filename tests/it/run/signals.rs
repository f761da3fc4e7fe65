//! What scripts see: SIGHUP ends a run like SIGTERM (report written, exit
//! 75, a rerun completes without duplicates); the `--json` summary's
//! `exit_code` is the process's exit status; the progress line calls each
//! outcome what the summary calls it.

use std::time::Duration;

use super::helpers::*;
use crate::support::fault::FaultServer;

#[test]
fn sighup_writes_the_report_exits_75_and_rerun_completes() {
    super::interrupts::interrupt_and_resume("HUP");
}

#[test]
fn json_exit_code_is_the_process_exit_code_after_an_auth_failure() {
    let server = FaultServer::builder().credentials("me", "right").start();
    let job = Job::new(&smtp_login(server.port()), 2);
    let out = job
        .command(&["--json"])
        .env("MAILSHOT_TEST_PW", "wrong-secret")
        .run();
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert_eq!(json_summary(&out.stdout)["exit_code"], 77, "{}", out.stdout);
}

#[test]
fn json_exit_code_is_the_process_exit_code_after_an_interrupt() {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(100))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 40);
    let child = job.spawn(&["--json"]);
    server.wait_for_messages(2, Duration::from_secs(30));
    signal(&child, "TERM");
    let out = finish(child, Duration::from_secs(20));
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(json_summary(&out.stdout)["exit_code"], 75, "{}", out.stdout);
}

#[test]
fn the_progress_line_uses_the_summarys_words() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| {
            (to == "r2@example.test" || to == "r3@example.test")
                .then(|| "550 5.1.1 No such user".to_owned())
        })
        .start();
    let job = Job::new(&smtp_plain(server.port(), ""), 4);
    // stderr is a pipe: plain status lines, the last one forced at the end.
    let out = job.run(&[]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    assert!(
        out.stderr.contains("2 sent, 2 rejected,"),
        "summary: {}",
        out.stderr
    );
    let status = out
        .stderr
        .lines()
        .rfind(|l| l.starts_with("mailshot: 4/4 done"))
        .unwrap_or_else(|| panic!("no final status line: {}", out.stderr));
    assert!(status.contains("2 sent"), "{status}");
    assert!(status.contains("2 rejected"), "{status}");
    assert!(status.contains("0 failed"), "{status}");
}
