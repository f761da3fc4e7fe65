//! Exit status: every code of the README's table from a real run.

use super::helpers::*;
use crate::support::fault::FaultServer;
use crate::support::free_port;

#[test]
fn exit_0_every_recipient_accepted() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    assert_eq!(job.run(&[]).code, 0);
    assert_each_once(&server, 3);
}

#[test]
fn exit_64_usage_error() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    for args in [
        &["--sessions", "many"][..],
        &["--no-such-flag"],
        &["--rate", "fast"],
    ] {
        let out = job.run(args);
        assert_eq!(out.code, 64, "{args:?}: {}", out.stderr);
    }
    assert!(server.messages().is_empty());
}

#[test]
fn exit_65_invalid_template_nothing_sent() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    job.dir.write("body.txt", "Dear {{ name }\n");
    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("body.txt"), "{}", out.stderr);
    assert_eq!(server.connections(), 0);
}

#[test]
fn exit_66_missing_csv() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    std::fs::remove_file(job.dir.join("recipients.csv")).unwrap();
    let out = job.run(&[]);
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert!(out.stderr.contains("recipients.csv"), "{}", out.stderr);
    assert_eq!(server.connections(), 0);
}

#[test]
fn exit_67_some_rejected() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| (to == "r1@example.test").then(|| "550 5.1.1 No such user".to_owned()))
        .start();
    let job = Job::new(&smtp_plain(server.port(), ""), 2);
    assert_eq!(job.run(&[]).code, 67);
}

#[test]
fn exit_69_connection_refused() {
    let port = free_port();
    let job = Job::new(&smtp_plain(port, ""), 2);
    let out = job.run(&[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(
        out.stderr.contains(&port.to_string()),
        "names the server: {}",
        out.stderr
    );
    let rows = job.report();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.status == "failed"), "{rows:?}");
}

#[test]
fn exit_75_transient_failure_left() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| (to == "r1@example.test").then(|| "452 4.2.2 Mailbox full".to_owned()))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 2"), 2);
    assert_eq!(job.run(&[]).code, 75);
}

#[test]
fn exit_77_wrong_password() {
    let server = FaultServer::builder().credentials("me", "right").start();
    let job = Job::new(&smtp_login(server.port()), 2);
    let out = job
        .command(&[])
        .env("MAILSHOT_TEST_PW", "wrong-secret")
        .run();
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(!out.stderr.contains("wrong-secret"), "no secret in errors");
    assert!(server.messages().is_empty());
    // Not retried: a wrong password stays wrong.
    let auths = server
        .commands()
        .iter()
        .filter(|c| c.starts_with("AUTH"))
        .count();
    assert_eq!(auths, 1, "{:?}", server.commands());
    // And with the right one it goes through.
    let out = job.command(&[]).env("MAILSHOT_TEST_PW", "right").run();
    assert_eq!(out.code, 0, "{}", out.stderr);
}
