//! Input that would make mailshot lose rows silently or work without bound:
//! an unterminated CSV quote, a flood of bad rows, an absurd session count,
//! a runaway template loop, deeply nested YAML. Each ends quickly with exit
//! 65 (or 64 for a bad option), a message naming where the problem is, and
//! nothing sent.

use std::time::Duration;

use super::{assert_unchanged, simple_job, snapshot, JobDir};
use crate::support::cmd::{mailshot, Output};
use crate::support::fault::{FaultHandle, FaultServer};

/// `mailshot check job.yaml` in the job folder, killed (and the test failed)
/// if it runs longer than `limit`; also returns how long it took.
fn check_within(jd: &JobDir, limit: Duration) -> (Output, Duration) {
    let out = mailshot(jd.dir.path(), ["check", "job.yaml"])
        .private_config()
        .limit(limit)
        .run();
    let took = out.elapsed;
    (out, took)
}

/// A job sending to `server` with `extra` YAML lines.
fn job_for(server: &FaultHandle, extra: &str) -> String {
    let smtp = format!(
        "smtp: {{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 2s, retry_delay: 50ms, max_attempts: 2 }}",
        server.port()
    );
    simple_job(&format!("{smtp}\n{extra}"))
}

/// `check`, `run --dry-run` and `run` all fail with 65, leave the folder as
/// it was and open no session; returns the `check` run.
#[track_caller]
fn refused_everywhere(jd: &JobDir, server: &FaultHandle, what: &str) -> Output {
    let before = snapshot(jd.dir.path());
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    jd.dry_run_exits(65);
    jd.run(&["run", "job.yaml", "--quiet"]).expect_code(65);
    assert_unchanged(&before, jd.dir.path(), what);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections(), 0, "{what}: a session was opened");
    assert!(server.messages().is_empty(), "{what}: a message was sent");
    check
}

#[test]
fn an_unterminated_quote_names_the_file_and_the_line_it_opened_on() {
    let server = FaultServer::start();
    let jd = JobDir::new();
    // Line 4 opens a quote that is never closed: without the check, rows
    // 4-6 would become one name and `check` would call the file fine.
    jd.csv(
        "email,name\n\
         ann@example.com,Ann\n\
         bob@example.com,\"Bob \"\"B\"\"\"\n\
         cy@example.com,\"Cy\n\
         di@example.com,Di\n\
         ed@example.com,Ed\n",
    );
    jd.job(&job_for(&server, ""));
    let check = refused_everywhere(&jd, &server, "unterminated quote");
    let line = check
        .stderr
        .lines()
        .find(|l| l.contains("never closed"))
        .unwrap_or_else(|| panic!("no diagnostic about the quote:\n{}", check.stderr));
    assert!(line.contains("r.csv:4"), "names file and line: {line}");
    assert!(line.contains("line 4"), "{line}");
}

#[test]
fn a_flood_of_bad_rows_lists_fifty_and_counts_the_rest() {
    let jd = JobDir::new();
    let mut csv = String::from("email,name\n");
    for i in 0..100_000 {
        csv.push_str(&format!("not-an-address-{i},N\n"));
    }
    jd.csv(csv);
    jd.job(&simple_job(""));
    let check = jd.run(&["check", "job.yaml"]);
    check.expect_code(65);
    let lines: Vec<&str> = check.stderr.lines().collect();
    assert!(lines.len() <= 52, "{} lines of errors", lines.len());
    for row in [1, 50] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("(row {row},")) && l.contains("invalid address")),
            "row {row} listed:\n{}",
            check.stderr
        );
    }
    assert!(!check.stderr.contains("(row 51,"), "row 51 is only counted");
    assert_eq!(
        lines.last().map(|l| l.trim()),
        Some("… and 99,950 more errors"),
        "{}",
        check.stderr
    );
}

#[test]
fn sessions_are_capped_at_one_hundred() {
    let server = FaultServer::start();
    let jd = JobDir::new();
    jd.csv("email,name\nann@example.com,Ann\n");
    jd.job(&job_for(&server, "").replace(
        "max_attempts: 2 }",
        "max_attempts: 2, sessions: 4294967296 }",
    ));
    let check = refused_everywhere(&jd, &server, "sessions");
    assert!(
        check.stderr.contains("job.yaml:")
            && check.stderr.contains("4294967296")
            && check.stderr.contains("maximum of 100"),
        "{}",
        check.stderr
    );

    jd.job(&job_for(&server, ""));
    let run = jd.run(&["run", "job.yaml", "--quiet", "--sessions", "4294967296"]);
    run.expect_code(64);
    assert!(
        run.stderr.contains("--sessions") && run.stderr.contains("maximum of 100"),
        "{}",
        run.stderr
    );
    assert_eq!(server.connections(), 0);
    // The maximum itself is allowed.
    jd.run(&["run", "job.yaml", "--quiet", "--sessions", "100"])
        .expect_code(0);
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn a_runaway_template_loop_ends_fast_naming_the_row_and_the_template() {
    let server = FaultServer::start();
    for body in [
        "Hi {{ name }}\n{% for i in range(100000000) %}.{% endfor %}\n",
        "Hi {{ name }}\n{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}\n",
    ] {
        let jd = JobDir::new();
        jd.csv("email,name\nann@example.com,Ann\n");
        jd.dir.write("body.txt", body);
        jd.job(&job_for(&server, ""));
        // Bounded first, so that a loop without a bound fails the test
        // instead of hanging it.
        let (check, took) = check_within(&jd, Duration::from_secs(60));
        check.expect_code(65);
        assert!(took < Duration::from_secs(30), "took {took:?}");
        refused_everywhere(&jd, &server, body);
        let line = check
            .stderr
            .lines()
            .find(|l| l.contains("row 1"))
            .unwrap_or_else(|| panic!("no row named:\n{}", check.stderr));
        assert!(line.contains("body.txt"), "names the template: {line}");
    }
}

#[test]
fn deeply_nested_yaml_is_refused_at_once() {
    let jd = JobDir::new();
    jd.csv("email,name\nann@example.com,Ann\n");
    for open in ["[", "{a: "] {
        jd.job(&format!(
            "from: \"Sender <sender@example.com>\"\nsubject: Hi\ntext: body.txt\nrecipients:\n  file: r.csv\nvars:\n  deep: {}\n",
            open.repeat(100_000)
        ));
        let (check, took) = check_within(&jd, Duration::from_secs(60));
        check.expect_code(65);
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(
            check.stderr.contains("job.yaml:7:") && check.stderr.contains("nested more than 64"),
            "{}",
            check.stderr
        );
    }
}
