//! A rehearsal is not a delivery: a run to the built-in capture server
//! records nothing that a later run to a real server treats as sent, and a
//! journal is never resumed against a different server.

use super::helpers::*;
use crate::support::cmd::mailshot;
use crate::support::fault::FaultServer;
use crate::support::TestDir;

/// A job as a new user writes it: no `smtp:` section.
fn new_user_job(rows: usize) -> TestDir {
    let dir = TestDir::new();
    dir.write("recipients.csv", csv_rows(rows));
    dir.write("body.txt", "Dear {{ name }},\nthis is row {{ row }}.\n");
    dir.write(
        "job.yaml",
        "from: \"Sender <sender@example.test>\"\n\
         to: \"{{ name }} <{{ email }}>\"\n\
         subject: \"Hello {{ name }}\"\n\
         text: body.txt\n\
         recipients: { file: recipients.csv }\n",
    );
    dir
}

/// Points the user config (`$XDG_CONFIG_HOME/mailshot/config.yaml`) at `port`.
fn configure_server(dir: &TestDir, port: u16) {
    dir.write(
        "config/mailshot/config.yaml",
        format!("smtp: {}\n", smtp_plain(port, "")),
    );
}

fn run(dir: &TestDir, args: &[&str]) -> Output {
    mailshot(dir.path(), ["run", "job.yaml"])
        .args(args)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .run()
}

#[test]
fn a_rehearsal_then_a_real_server_delivers_every_message() {
    let dir = new_user_job(3);
    let out = run(&dir, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        dir.files_with_suffix("outbox", ".eml").len(),
        3,
        "the rehearsal"
    );

    let server = FaultServer::start();
    configure_server(&dir, server.port());
    let out = run(&dir, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 3);
    assert!(
        out.stderr.contains("capture"),
        "says why everything is sent again: {}",
        out.stderr
    );
    let rows = read_report(&dir.join("job.report.csv"));
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    assert!(
        rows.iter().all(|r| !r.reply.contains("earlier run")),
        "{rows:?}"
    );

    // A rerun to the same server resumes: nothing is sent twice.
    let out = run(&dir, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 3);
}

#[test]
fn a_rerun_to_a_different_server_is_refused_with_what_to_do() {
    let dir = new_user_job(2);
    let first = FaultServer::start();
    configure_server(&dir, first.port());
    let out = run(&dir, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let second = FaultServer::start();
    configure_server(&dir, second.port());
    let out = run(&dir, &[]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    let (a, b) = (
        format!("127.0.0.1:{}", first.port()),
        format!("127.0.0.1:{}", second.port()),
    );
    assert!(
        out.stderr.contains(&a) && out.stderr.contains(&b) && out.stderr.contains("--restart"),
        "names both servers and the way forward: {}",
        out.stderr
    );
    assert!(second.messages().is_empty());

    // A rehearsal after a real run is refused too (it would resume nothing real).
    std::fs::remove_file(dir.join("config/mailshot/config.yaml")).unwrap();
    let out = run(&dir, &[]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("--restart"), "{}", out.stderr);

    // --restart starts over for the new server.
    configure_server(&dir, second.port());
    let out = run(&dir, &["--restart"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&second, 2);
}

#[test]
fn a_changed_job_after_a_finished_run_is_not_called_interrupted() {
    let dir = new_user_job(2);
    let server = FaultServer::start();
    configure_server(&dir, server.port());
    let out = run(&dir, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    dir.write("recipients.csv", csv_rows(3));
    let out = run(&dir, &[]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("changed"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("interrupted"),
        "the earlier run finished: {}",
        out.stderr
    );
    assert!(out.stderr.contains("finished"), "{}", out.stderr);
}
